//! The five count detectors: what each counts. The engine, its baselines
//! and its firing rule are in [`super::count`].

use super::count::{CountKind, CountParams, Measure, Model};
use super::relations::is_treatment;
use super::{Context, Relation};
use crate::event::{Body, Event};

fn defaults() -> CountParams {
    CountParams {
        window_secs: 600,
        threshold: 4.0,
        min_count: 10,
        alpha: 0.05,
        warmup_windows: 12,
        peer_alpha: 0.01,
        peer_warmup: 30,
        seasonal: false,
        sliding: false,
        min_ratio: 1.0,
        model: Model::Normal,
        renotify_secs: 0,
        max_actors: 200_000,
        max_evidence: 20,
    }
}

/// `volume`: accesses that view or take data (reads, searches, exports,
/// prints, deletes — not documentation: `create`, `update`, nor `login`)
/// per actor in a 10-minute window, against the actor's own baseline for
/// that part of the week (seasonal) and their peers'. Fires on a burst of
/// viewing — scripted scraping, a compromised account, a user paging
/// through charts — that is unusual both for this person at this time and
/// for people in the same job. Documentation counts as activity but not in
/// the count: writing a record discloses nothing, and a registrar
/// registering a busload of arrivals writes in bursts.
#[derive(Clone)]
pub struct Volume;

impl CountKind for Volume {
    const DISTINCT: bool = false;
    const NAME: &'static str = "volume";
    fn defaults() -> CountParams {
        CountParams {
            min_count: 30,
            threshold: 3.0,
            seasonal: true,
            min_ratio: 4.0,
            model: Model::LogNormal,
            ..defaults()
        }
    }
    fn measure(event: &Event, _: &Context) -> Measure {
        match &event.body {
            Body::Access(a) if matches!(a.action.as_str(), "create" | "update" | "login") => {
                Measure::Touch
            }
            Body::Access(_) => Measure::Add(1),
            _ => Measure::Skip,
        }
    }
    fn describe(count: u32) -> String {
        format!("{count} views")
    }
}

/// `pace`: views per actor in the last minute (sliding), against the
/// actor's own and their peers' usual minute. Reading a chart takes a
/// person seconds to minutes; a script, or someone paging through records
/// to copy them, opens one every few seconds. Such a run is short, and in
/// `volume`'s ten minutes a three-minute burst is diluted by the minutes of
/// ordinary work around it; a minute sees it at full contrast, and as soon
/// as it starts. What counts is what `volume` counts.
#[derive(Clone)]
pub struct Pace;

impl CountKind for Pace {
    const DISTINCT: bool = false;
    const NAME: &'static str = "pace";
    fn defaults() -> CountParams {
        CountParams {
            window_secs: 60,
            // One view every four seconds for a whole minute.
            min_count: 15,
            threshold: 3.0,
            sliding: true,
            min_ratio: 4.0,
            model: Model::LogNormal,
            // A burst lasts minutes: one finding for `volume`'s ten.
            renotify_secs: 600,
            ..defaults()
        }
    }
    fn measure(event: &Event, ctx: &Context) -> Measure {
        Volume::measure(event, ctx)
    }
    fn describe(count: u32) -> String {
        format!("{count} views")
    }
}

/// `breadth`: distinct patients opened per actor in an hour, against the
/// actor's own and their peers' usual breadth. An emergency physician's
/// wide breadth is normal for emergency physicians; a ward nurse opening
/// three times the charts of any ward nurse is not.
#[derive(Clone)]
pub struct Breadth;

impl CountKind for Breadth {
    const DISTINCT: bool = true;
    const NAME: &'static str = "breadth";
    fn defaults() -> CountParams {
        CountParams {
            window_secs: 3600,
            min_count: 15,
            threshold: 3.0,
            model: Model::LogNormal,
            ..defaults()
        }
    }
    fn measure(event: &Event, ctx: &Context) -> Measure {
        match &event.body {
            Body::Access(a) if a.outcome == "success" => match ctx.patient_key {
                Some(k) => Measure::Distinct(k),
                None => Measure::Touch,
            },
            Body::Access(_) => Measure::Touch,
            _ => Measure::Skip,
        }
    }
    fn describe(count: u32) -> String {
        format!("{count} distinct patients opened")
    }
}

/// `no_relationship`: distinct patients opened in 8 hours (a shift) that neither the
/// actor nor the actor's department has treated before (see
/// [`Relation`]), against the actor's and peers' usual number. Snooping
/// on coworkers, neighbours, family or patients of other wards is a run
/// of such accesses; departments whose work is to see new patients
/// (emergency, registration, radiology) have high peer baselines.
#[derive(Clone)]
pub struct NoRelationship;

impl CountKind for NoRelationship {
    const DISTINCT: bool = true;
    const NAME: &'static str = "no_relationship";
    fn defaults() -> CountParams {
        CountParams {
            window_secs: 28_800,
            min_count: 2,
            threshold: 3.0,
            sliding: true,
            warmup_windows: 6,
            peer_warmup: 20,
            model: Model::PoissonGamma,
            ..defaults()
        }
    }
    fn measure(event: &Event, ctx: &Context) -> Measure {
        match &event.body {
            // A secondary use the actor or their peers routinely work under
            // (billing, research) claims no treatment relationship.
            Body::Access(a)
                if a.outcome == "success"
                    && (is_treatment(a.purpose.as_deref()) || !ctx.routine_purpose) =>
            {
                match (ctx.relation, ctx.patient_key) {
                    (Relation::Unrelated | Relation::FirstSeen, Some(k)) => Measure::Distinct(k),
                    _ => Measure::Touch,
                }
            }
            Body::Access(_) => Measure::Touch,
            _ => Measure::Skip,
        }
    }
    fn describe(count: u32) -> String {
        format!("{count} patients opened with no treatment relationship")
    }
}

/// `denied_burst`: denied accesses per actor in 10 minutes, against the
/// actor's and peers' usual number. A run of refusals is probing: someone
/// trying records they are not allowed to open.
#[derive(Clone)]
pub struct DeniedBurst;

impl CountKind for DeniedBurst {
    const DISTINCT: bool = false;
    const NAME: &'static str = "denied_burst";
    fn defaults() -> CountParams {
        CountParams {
            min_count: 3,
            threshold: 4.0,
            model: Model::PoissonGamma,
            ..defaults()
        }
    }
    fn measure(event: &Event, _: &Context) -> Measure {
        match &event.body {
            Body::Access(a) if a.outcome == "denied" => Measure::Add(1),
            Body::Access(_) => Measure::Touch,
            _ => Measure::Skip,
        }
    }
    fn describe(count: u32) -> String {
        format!("{count} denied accesses")
    }
}

/// `break_glass`: emergency-access (`ETREAT`, break-the-glass) accesses
/// per actor in a 12-hour shift, against the actor's and peers' usual
/// number. Break-the-glass bypasses access control for emergencies; used
/// as a habit it is a way around it.
#[derive(Clone)]
pub struct BreakGlass;

impl CountKind for BreakGlass {
    const DISTINCT: bool = false;
    const NAME: &'static str = "break_glass";
    fn defaults() -> CountParams {
        CountParams {
            window_secs: 43_200,
            min_count: 3,
            threshold: 4.0,
            warmup_windows: 4,
            sliding: true,
            model: Model::PoissonGamma,
            ..defaults()
        }
    }
    fn measure(event: &Event, _: &Context) -> Measure {
        match &event.body {
            Body::Access(a) if a.purpose.as_deref() == Some("ETREAT") => Measure::Add(1),
            Body::Access(_) => Measure::Touch,
            _ => Measure::Skip,
        }
    }
    fn describe(count: u32) -> String {
        format!("{count} break-the-glass (ETREAT) accesses")
    }
}
