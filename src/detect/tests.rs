//! The detectors on hand-made streams, fed through [`Detectors`] as the
//! pipeline feeds them (context, reference tables and relationships
//! included). Time is the events' own: 2026-03-02 (a Monday) 00:00 UTC is
//! `DAY0`, and every stream is laid out in event time.

use std::sync::Arc;

use super::reference::{CareAssignment, ConsentStatus, Loaded, Staff};
use super::*;
use crate::event::{Access, Actor, Body, Event};

const DAY0: i64 = 1_772_409_600;
const H: i64 = 3600;

#[derive(Clone)]
struct Ev {
    actor: &'static str,
    role: Option<&'static str>,
    dept: Option<&'static str>,
    patient: Option<String>,
    action: &'static str,
    outcome: &'static str,
    purpose: Option<&'static str>,
    records: u64,
    destination: Option<&'static str>,
    resource: Option<&'static str>,
    /// For an order: the department asked to perform it.
    performer: Option<&'static str>,
}

fn by(actor: &'static str, role: &'static str, dept: &'static str) -> Ev {
    Ev {
        actor,
        role: Some(role),
        dept: Some(dept),
        patient: None,
        action: "read",
        outcome: "success",
        purpose: Some("TREAT"),
        records: 1,
        destination: None,
        resource: None,
        performer: None,
    }
}

impl Ev {
    fn patient(mut self, p: impl Into<String>) -> Self {
        self.patient = Some(p.into());
        self
    }
    fn at(&self, secs: i64) -> Event {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Event {
            id: format!("e{n}"),
            time: DateTime::from_timestamp(secs, 0).unwrap().fixed_offset(),
            actor: Actor {
                id: self.actor.into(),
                role: self.role.map(Into::into),
                dept: self.dept.map(Into::into),
                ..Actor::default()
            },
            source: None,
            attrs: self
                .performer
                .map(|d| (super::relations::PERFORMER_ATTR.to_owned(), d.to_owned()))
                .into_iter()
                .collect(),
            body: Body::Access(Access {
                action: self.action.into(),
                outcome: self.outcome.into(),
                patient: self.patient.clone(),
                resource_type: self.resource.map(Into::into),
                resource_id: None,
                purpose: self.purpose.map(Into::into),
                records: self.records,
                destination: self.destination.map(Into::into),
            }),
            extra: Default::default(),
        }
    }
}

fn detectors(configs: Vec<DetectorConfig>, reference: Reference) -> Detectors {
    Detectors::new(&configs, Arc::new(reference))
}

fn run(d: &mut Detectors, events: impl IntoIterator<Item = Event>) -> Vec<Finding> {
    let mut out = Vec::new();
    for e in events {
        out.extend(d.observe(&e));
    }
    out
}

/// `per_hour` events per working hour, 08:00–16:00, on `days` days from
/// `first_day`, each of a patient of the actor's own panel.
fn workdays(ev: &Ev, panel: &str, first_day: i64, days: i64, per_hour: i64) -> Vec<Event> {
    let mut out = Vec::new();
    for day in first_day..first_day + days {
        for h in 8..16 {
            for k in 0..per_hour {
                let t = DAY0 + day * 86_400 + h * H + k * H / per_hour;
                out.push(ev.clone().patient(format!("{panel}-{}", k % 5)).at(t));
            }
        }
    }
    out
}

/// The `vip` detector alone, with one flagged patient, `star`, and no
/// care-team table.
fn star_vip() -> Detectors {
    let mut reference = Reference::default();
    reference.add_vip("star".into(), "vip".into());
    detectors(vec![DetectorConfig::Vip(Default::default())], reference)
}

fn only(found: &[Finding], detector: &str) -> Vec<Finding> {
    found
        .iter()
        .filter(|f| f.detector == detector)
        .cloned()
        .collect()
}

/// Three days of `nurse`'s steady work (12 views an hour, 08:00–16:00)
/// and four of three peers' (same role and department), in time order.
fn ward_history(nurse: &Ev) -> Vec<Event> {
    let mut events = Vec::new();
    for (i, a) in ["n2", "n3", "n4"].into_iter().enumerate() {
        let peer = Ev {
            actor: a,
            ..nurse.clone()
        };
        events.extend(workdays(&peer, &format!("p{i}"), 0, 4, 12));
    }
    events.extend(workdays(nurse, "q", 0, 3, 12));
    events.sort_by_key(|e| e.time);
    events
}

#[test]
fn volume_fires_on_a_burst_against_own_and_peer_baselines_only() {
    let mut d = detectors(
        vec![DetectorConfig::Volume(Default::default())],
        Reference::default(),
    );
    let nurse = by("n1", "nurse", "cardiology");
    assert!(
        run(&mut d, ward_history(&nurse)).is_empty(),
        "steady work never fires"
    );
    // Day 4, 10:00: 90 accesses in 10 minutes.
    let burst: Vec<Event> = (0..90)
        .map(|k| {
            nurse
                .clone()
                .patient(format!("x{k}"))
                .at(DAY0 + 3 * 86_400 + 10 * H + k * 6)
        })
        .collect();
    let found = run(&mut d, burst);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!((f.detector.as_str(), f.actor.as_str()), ("volume", "n1"));
    assert!(
        f.summary.contains("own usual") && f.summary.contains("peers (nurse, cardiology)"),
        "{}",
        f.summary
    );
    assert!(f.observed >= 30.0 && f.score >= 3.0);
    assert_eq!(f.evidence.len(), 20);
}

#[test]
fn pace_sees_a_short_burst_that_volume_dilutes() {
    let configs = || {
        vec![
            DetectorConfig::Volume(Default::default()),
            DetectorConfig::Pace(Default::default()),
        ]
    };
    let mut d = detectors(configs(), Reference::default());
    let nurse = by("n1", "nurse", "cardiology");
    assert!(
        run(&mut d, ward_history(&nurse)).is_empty(),
        "steady work never fires"
    );
    // Day 4, 10:00: 22 views in one minute (one every 2.7 s), then
    // ordinary work: 29 views in the ten minutes, short of `volume`'s 30.
    let at = DAY0 + 3 * 86_400 + 10 * H;
    let mut day4: Vec<Event> = (0..22)
        .map(|k| nurse.clone().patient(format!("x{k}")).at(at + k * 60 / 22))
        .collect();
    day4.extend((1..8).map(|k| nurse.clone().patient("q-1").at(at + k * 70)));
    let found = run(&mut d, day4.clone());
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!((f.detector.as_str(), f.actor.as_str()), ("pace", "n1"));
    assert!(f.summary.contains("views in 1 min"), "{}", f.summary);
    assert!(f.observed >= 15.0 && f.score >= 3.0, "{f:?}");
    // It fired within the burst, at its 15th view or a few after.
    let last = day4[..22].iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert!(f.evidence.iter().all(|id| last.contains(id)), "{f:?}");
    // The burst goes on at the same pace two more minutes: one finding
    // for the run, not one a minute (`renotify_secs`).
    let more: Vec<Event> = (0..44)
        .map(|k| {
            nurse
                .clone()
                .patient(format!("w{k}"))
                .at(at + 500 + k * 60 / 22)
        })
        .collect();
    assert!(only(&run(&mut d, more), "pace").is_empty());
    // Six charts in a minute, a brisk round, stay below `min_count`: a
    // person can read that fast; the detector waits for a pace no
    // reading keeps up.
    let mut calm = detectors(configs(), Reference::default());
    let mut history = Vec::new();
    for (i, a) in ["n2", "n3", "n4", "n1"].into_iter().enumerate() {
        let ev = Ev {
            actor: a,
            ..nurse.clone()
        };
        history.extend(workdays(&ev, &format!("p{i}"), 0, 4, 12));
    }
    history.sort_by_key(|e| e.time);
    assert!(run(&mut calm, history).is_empty());
    let brisk: Vec<Event> = (0..6)
        .map(|k| {
            nurse
                .clone()
                .patient(format!("y{k}"))
                .at(at + 86_400 + k * 10)
        })
        .collect();
    assert!(run(&mut calm, brisk).is_empty());
}

#[test]
fn breadth_judges_an_actor_against_their_own_peer_group() {
    let mut d = detectors(
        vec![DetectorConfig::Breadth(Default::default())],
        Reference::default(),
    );
    let mut events = Vec::new();
    // Emergency physicians: 25 new patients an hour. Ward nurses: 5.
    for day in 0..3 {
        for h in 8..16 {
            for k in 0..25 {
                for a in ["ed1", "ed2", "ed3"] {
                    let ev = by(a, "physician", "emergency");
                    let t = DAY0 + day * 86_400 + h * H + k * 100;
                    events.push(ev.patient(format!("{a}-{day}-{h}-{k}")).at(t));
                }
            }
            for k in 0..5 {
                for a in ["w1", "w2", "w3"] {
                    let t = DAY0 + day * 86_400 + h * H + k * 600;
                    events.push(by(a, "nurse", "surgery").patient(format!("{a}-{k}")).at(t));
                }
            }
        }
    }
    events.sort_by_key(|e| e.time);
    assert!(run(&mut d, events).is_empty());
    let t = DAY0 + 3 * 86_400 + 9 * H;
    let ed: Vec<Event> = (0..32)
        .map(|k| {
            by("ed1", "physician", "emergency")
                .patient(format!("n{k}"))
                .at(t + k * 60)
        })
        .collect();
    assert!(
        run(&mut d, ed).is_empty(),
        "a busy emergency hour is normal for emergency"
    );
    let nurse: Vec<Event> = (0..32)
        .map(|k| {
            by("w1", "nurse", "surgery")
                .patient(format!("m{k}"))
                .at(t + k * 60)
        })
        .collect();
    let found = run(&mut d, nurse);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].summary.starts_with("") && found[0].summary.contains("distinct patients"));
    assert_eq!(found[0].actor, "w1");
}

#[test]
fn no_relationship_counts_patients_treated_elsewhere_not_own_or_care_team() {
    let mut reference = Reference::default();
    reference.add_care(
        "onc-7".into(),
        CareAssignment {
            actor: Some("c1".into()),
            ..Default::default()
        },
    );
    // Each ward's own patients are assigned to the ward.
    for (dept, panel) in [
        ("cardiology", "card-c1"),
        ("cardiology", "card-c2"),
        ("cardiology", "card-c3"),
        ("oncology", "onc"),
    ] {
        for k in 0..5 {
            reference.add_care(
                format!("{panel}-{k}"),
                CareAssignment {
                    dept: Some(dept.into()),
                    ..Default::default()
                },
            );
        }
    }
    let mut d = detectors(
        vec![DetectorConfig::NoRelationship(Default::default())],
        reference,
    );
    let mut events = Vec::new();
    for a in ["c1", "c2", "c3"] {
        events.extend(workdays(
            &by(a, "nurse", "cardiology"),
            &format!("card-{a}"),
            0,
            8,
            6,
        ));
    }
    // Oncology treats its own patients.
    events.extend(workdays(&by("o1", "nurse", "oncology"), "onc", 0, 8, 6));
    events.sort_by_key(|e| e.time);
    assert!(run(&mut d, events).is_empty());
    let t = DAY0 + 8 * 86_400 + 10 * H;
    // c1 opens oncology patients: onc-7 is on c1's care team, the rest not.
    let snoop: Vec<Event> = ["onc-7", "onc-0", "onc-1", "onc-2", "onc-3", "onc-4"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            by("c1", "nurse", "cardiology")
                .patient(*p)
                .at(t + i as i64 * 120)
        })
        .collect();
    let found = run(&mut d, snoop.clone());
    assert_eq!(found.len(), 1, "{found:?}");
    // A nurse who never opens unrelated charts: two or three are enough.
    assert!(
        (2.0..=3.0).contains(&found[0].observed),
        "{}",
        found[0].summary
    );
    assert!(
        !found[0].evidence.contains(&snoop[0].id),
        "onc-7 is on the care team"
    );
    // c2 re-reads its own panel: nothing.
    let own: Vec<Event> = (0..10)
        .map(|k| {
            by("c2", "nurse", "cardiology")
                .patient(format!("card-c2-{}", k % 5))
                .at(t + k * 60)
        })
        .collect();
    assert!(run(&mut d, own).is_empty());
}

#[test]
fn off_hours_fires_in_the_night_but_not_on_overtime() {
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    let ev = by("day1", "nurse", "surgery");
    assert!(run(&mut d, workdays(&ev, "s", 0, 10, 4)).is_empty());
    // Overtime until 17:30 on day 10 (the next hour after the shift).
    let overtime: Vec<Event> = (0..8)
        .map(|k| {
            ev.clone()
                .patient("s-1")
                .at(DAY0 + 10 * 86_400 + 16 * H + k * 200)
        })
        .collect();
    assert!(
        run(&mut d, overtime).is_empty(),
        "an hour past the shift is not the night"
    );
    // 02:00 on day 11.
    let night: Vec<Event> = (0..8)
        .map(|k| {
            ev.clone()
                .patient(format!("z{k}"))
                .at(DAY0 + 11 * 86_400 + 2 * H + k * 60)
        })
        .collect();
    // The first chart opened at 02:00 fires (a login or a search would
    // wait for `min_events`).
    let found = run(&mut d, night.clone());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].evidence, vec![night[0].id.clone()]);
    assert!(found[0].summary.contains("02:00"), "{}", found[0].summary);
    // A new actor has no habit yet.
    let fresh: Vec<Event> = (0..8)
        .map(|k| {
            by("new", "nurse", "surgery")
                .patient("a")
                .at(DAY0 + 11 * 86_400 + 3 * H + k * 60)
        })
        .collect();
    assert!(run(&mut d, fresh).is_empty());
}

#[test]
fn vip_fires_without_a_relationship_once_per_actor_and_day() {
    let mut reference = Reference::default();
    reference.add_vip("star".into(), "vip".into());
    reference.add_care(
        "star".into(),
        CareAssignment {
            dept: Some("icu".into()),
            ..Default::default()
        },
    );
    let mut d = detectors(vec![DetectorConfig::Vip(Default::default())], reference);
    let t = DAY0 + 10 * H;
    let care = by("i1", "nurse", "icu").patient("star");
    assert!(
        run(&mut d, [care.at(t), care.at(t + 60)]).is_empty(),
        "the care team reads VIPs"
    );
    let curious = by("x1", "registrar", "billing").patient("star");
    let found = run(&mut d, [curious.at(t + 100), curious.at(t + 200)]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].severity, Severity::High);
    assert!(found[0].patient.as_deref() == Some("star"));
    assert!(
        found[0].summary.contains("vip patient"),
        "{}",
        found[0].summary
    );
    // Missing role and department: still judged (the care team is by department).
    let bare = Ev {
        role: None,
        dept: None,
        ..by("x2", "", "")
    }
    .patient("star");
    assert_eq!(run(&mut d, [bare.at(t + 300)]).len(), 1);
}

#[test]
fn vip_leaves_system_accounts_of_the_roster_to_the_other_detectors() {
    let mut reference = Reference::default();
    reference.add_vip("star".into(), "vip".into());
    for (actor, role) in [("svc-hie", "service"), ("n1", "nurse")] {
        reference.add_staff(
            actor.into(),
            Staff {
                role: Some(role.into()),
                dept: Some("it".into()),
                ..Default::default()
            },
        );
    }
    reference.mark_loaded(Loaded {
        roster: true,
        ..Default::default()
    });
    let mut d = detectors(vec![DetectorConfig::Vip(Default::default())], reference);
    let t = DAY0 + 10 * H;
    // The interface answers another hospital's query for the patient.
    let hie = by("svc-hie", "service", "it").patient("star");
    assert!(run(&mut d, [hie.at(t)]).is_empty());
    // A person who claims the role in the event is still judged: the
    // roster says who is a system.
    let claimed = by("n1", "service", "it").patient("star");
    assert_eq!(run(&mut d, [claimed.at(t + 60)]).len(), 1);
    // So is an account the roster does not list (of another department:
    // two reads by `it` accounts have made the patient that department's).
    let unlisted = by("svc-new", "service", "interfaces").patient("star");
    assert_eq!(run(&mut d, [unlisted.at(t + 120)]).len(), 1);
}

#[test]
fn termination_is_critical_after_the_roster_end_and_silent_before() {
    let mut reference = Reference::default();
    let end = DateTime::from_timestamp(DAY0 + 2 * 86_400, 0).unwrap();
    reference.add_staff(
        "gone".into(),
        Staff {
            terminated: Some(end),
            ..Default::default()
        },
    );
    reference.mark_loaded(Loaded {
        roster: true,
        ..Default::default()
    });
    let mut d = detectors(
        vec![DetectorConfig::Termination(Default::default())],
        reference,
    );
    let ev = Ev {
        role: None,
        dept: None,
        ..by("gone", "", "")
    }
    .patient("p");
    assert!(run(&mut d, [ev.at(DAY0 + 86_400)]).is_empty());
    let found = run(
        &mut d,
        [
            ev.at(DAY0 + 2 * 86_400 + 7200),
            ev.at(DAY0 + 2 * 86_400 + 7300),
        ],
    );
    assert_eq!(found.len(), 1, "one finding per hour: {found:?}");
    assert_eq!(found[0].severity, Severity::Critical);
    assert!(
        found[0].summary.contains("terminated 2 h before"),
        "{}",
        found[0].summary
    );
}

#[test]
fn bulk_export_sums_records_off_the_allow_list() {
    let mut reference = Reference::default();
    reference.add_export_allow("sftp://registry.local/*".into());
    reference.mark_loaded(Loaded {
        export_allow: true,
        ..Default::default()
    });
    let mut d = detectors(
        vec![DetectorConfig::BulkExport(Default::default())],
        reference,
    );
    let t = DAY0 + 2 * H;
    let allowed = Ev {
        action: "export",
        records: 50_000,
        destination: Some("sftp://registry.local/nightly"),
        ..by("svc-etl", "service", "it")
    };
    assert!(run(&mut d, [allowed.at(t)]).is_empty());
    let out = Ev {
        action: "export",
        records: 30,
        destination: Some("dropbox.com"),
        ..by("n1", "nurse", "icu")
    };
    let found = run(&mut d, [out.at(t), out.at(t + 60), out.at(t + 120)]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].summary.starts_with("60 records") && found[0].summary.contains("dropbox.com"),
        "{}",
        found[0].summary
    );
    assert_eq!(found[0].evidence.len(), 2);
}

#[test]
fn denied_bursts_and_break_glass_habits_fire_against_the_norm() {
    let mut d = detectors(
        vec![
            DetectorConfig::DeniedBurst(Default::default()),
            DetectorConfig::BreakGlass(Default::default()),
        ],
        Reference::default(),
    );
    let mut events = Vec::new();
    for a in ["e1", "e2", "e3"] {
        let ev = by(a, "physician", "emergency");
        events.extend(workdays(&ev, a, 0, 4, 6));
        // One break-the-glass a day each.
        for day in 0..4 {
            events.push(
                Ev {
                    purpose: Some("ETREAT"),
                    ..ev.clone()
                }
                .patient("bg")
                .at(DAY0 + day * 86_400 + 9 * H + 1),
            );
        }
    }
    events.sort_by_key(|e| e.time);
    assert!(run(&mut d, events).is_empty());
    let t = DAY0 + 4 * 86_400 + 9 * H;
    let probe = Ev {
        outcome: "denied",
        ..by("e1", "physician", "emergency")
    };
    let found = run(
        &mut d,
        (0..12).map(|k| probe.clone().patient(format!("d{k}")).at(t + k * 20)),
    );
    assert_eq!(only(&found, "denied_burst").len(), 1, "{found:?}");
    let glass = Ev {
        purpose: Some("ETREAT"),
        ..by("e2", "physician", "emergency")
    };
    let found = run(
        &mut d,
        (0..9).map(|k| glass.clone().patient(format!("g{k}")).at(t + k * 600)),
    );
    let bg = only(&found, "break_glass");
    assert_eq!(bg.len(), 1, "{found:?}");
    assert!(bg[0].summary.contains("break-the-glass"));
}

#[test]
fn consent_checks_secondary_use_against_the_consent_in_force() {
    let mut reference = Reference::default();
    let t0 = DateTime::from_timestamp(DAY0, 0).unwrap();
    reference.add_consent("yes".into(), "HRESCH".into(), t0, ConsentStatus::Granted);
    reference.add_consent("no".into(), "HRESCH".into(), t0, ConsentStatus::Withdrawn);
    reference.mark_loaded(Loaded {
        consent: true,
        ..Default::default()
    });
    let mut d = detectors(vec![DetectorConfig::Consent(Default::default())], reference);
    let r = |a| Ev {
        purpose: Some("HRESCH"),
        ..by(a, "researcher", "research")
    };
    assert!(run(&mut d, [r("r1").patient("yes").at(DAY0 + H)]).is_empty());
    let found = run(&mut d, [r("r1").patient("no").at(DAY0 + H + 1)]);
    assert_eq!(found[0].severity, Severity::High);
    assert!(found[0].summary.contains("withdrawn"));
    let found = run(&mut d, [r("r2").patient("never").at(DAY0 + H + 2)]);
    assert_eq!(found[0].severity, Severity::Medium);
    assert!(found[0].summary.contains("not recorded"));
    // Treatment never needs research consent.
    assert!(
        run(
            &mut d,
            [by("n", "nurse", "icu").patient("no").at(DAY0 + H + 3)]
        )
        .is_empty()
    );
}

#[test]
fn a_restored_state_decides_exactly_like_the_live_one() {
    let mut configs = DetectorConfig::access_defaults();
    configs.push(DetectorConfig::default());
    let mut events = Vec::new();
    for a in ["a1", "a2", "a3"] {
        events.extend(workdays(&by(a, "nurse", "icu"), a, 0, 4, 10));
    }
    events.sort_by_key(|e| e.time);
    let t = DAY0 + 5 * 86_400 + 2 * H;
    let tail: Vec<Event> = (0..60)
        .map(|k| {
            by("a1", "nurse", "icu")
                .patient(format!("z{k}"))
                .at(t + k * 10)
        })
        .collect();
    let mut live = detectors(configs.clone(), Reference::default());
    run(&mut live, events.clone());
    let saved = live.save();
    let mut restored = detectors(configs.clone(), Reference::default());
    restored.load(&saved).unwrap();
    assert_eq!(restored.save(), saved);
    let a = run(&mut live, tail.clone());
    let b = run(&mut restored, tail);
    assert!(!a.is_empty(), "the tail is unusual enough to fire");
    assert_eq!(a, b);
    // Another configuration's state is refused.
    let mut other = detectors(
        vec![DetectorConfig::Vip(Default::default())],
        Reference::default(),
    );
    assert!(other.load(&saved).is_err());
}

#[test]
fn state_is_capped_and_evictions_are_counted() {
    let cfg: CountConfig<Volume> =
        serde_json::from_value(serde_json::json!({ "max_actors": 100 })).unwrap();
    let mut d = detectors(vec![DetectorConfig::Volume(cfg)], Reference::default());
    let events: Vec<Event> = (0..1000)
        .map(|k| {
            let actor: &'static str = Box::leak(format!("u{k}").into_boxed_str());
            by(actor, "nurse", "icu").patient("p").at(DAY0 + k)
        })
        .collect();
    run(&mut d, events);
    let keys = d.report();
    let (_, held) = keys.iter().find(|(n, _)| *n == "volume").unwrap();
    assert!(*held <= 100, "{held}");
    assert!(d.list[0].evictions() >= 900);
}

#[test]
fn actor_state_saved_by_id_in_an_earlier_version_is_rekeyed_on_load() {
    let configs = vec![
        DetectorConfig::Volume(Default::default()),
        DetectorConfig::OffHours(Default::default()),
    ];
    let mut d = detectors(configs.clone(), Reference::default());
    run(&mut d, workdays(&by("n1", "nurse", "icu"), "q", 0, 3, 4));
    let now: serde_json::Value = serde_json::from_slice(&d.save()).unwrap();
    // The same state as an earlier version wrote it: actors by id.
    let mut old = now.clone();
    for entry in old["detectors"].as_array_mut().unwrap() {
        let keyed = entry.as_object_mut().unwrap().remove("actor_keys").unwrap();
        let (key, record) = keyed.as_object().unwrap().iter().next().unwrap();
        assert_eq!(key, &memory::actor_key("n1").to_string());
        entry["actors"] = serde_json::json!({ "n1": record });
    }
    let mut restored = detectors(configs, Reference::default());
    restored.load(&serde_json::to_vec(&old).unwrap()).unwrap();
    let again: serde_json::Value = serde_json::from_slice(&restored.save()).unwrap();
    assert_eq!(again, now);
}

#[test]
fn count_detector_parameters_validate_and_default_per_type() {
    let v: DetectorConfig = toml::from_str("type = \"breadth\"\nthreshold = 3.5").unwrap();
    let DetectorConfig::Breadth(b) = &v else {
        panic!()
    };
    assert_eq!(b.resolved().threshold, 3.5);
    assert_eq!(b.resolved().window_secs, 3600, "breadth's own default");
    let bad: DetectorConfig =
        toml::from_str("type = \"volume\"\nalpha = 2.0\nmin_count = 0").unwrap();
    let mut problems = Vec::new();
    bad.validate("detectors[0]", &mut problems);
    assert_eq!(problems.len(), 2, "{problems:?}");
    // Records are found by 32-bit slot numbers: a larger cap is refused.
    for too_many in [
        "type = \"volume\"\nmax_actors = 4294967296",
        "type = \"off_hours\"\nmax_actors = 4294967296",
    ] {
        let bad: DetectorConfig = toml::from_str(too_many).unwrap();
        let mut problems = Vec::new();
        bad.validate("detectors[0]", &mut problems);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("max_actors"), "{problems:?}");
    }
    assert!(toml::from_str::<DetectorConfig>("type = \"volume\"\nwindow = 3").is_err());
    assert!(toml::from_str::<DetectorConfig>("type = \"snooping\"").is_err());
}

#[test]
fn reference_tables_have_the_schemas_sql_detectors_plan_against() {
    let tables = reference::tables(&Reference::default());
    assert_eq!(tables.len(), sql::REFERENCE_TABLES.len());
    for (name, batch) in tables {
        let expected = sql::reference_schema(name).unwrap();
        let shape = |s: &arrow::datatypes::Schema| -> Vec<(String, arrow::datatypes::DataType)> {
            s.fields()
                .iter()
                .map(|f| (f.name().clone(), f.data_type().clone()))
                .collect()
        };
        assert_eq!(shape(&batch.schema()), shape(&expected), "{name}");
    }
}

#[test]
fn negative_binomial_tail_meets_its_geometric_and_poisson_limits() {
    use super::count::negbin_tail;
    assert_eq!(negbin_tail(0.0, 0.5, 3.0), 1.0);
    // Shape 1: geometric with p = rate / (rate + 1) = 1/2, P(X >= c) = 2^-c.
    for c in 1..8 {
        let t = negbin_tail(f64::from(c), 1.0, 1.0);
        assert!((t - 0.5f64.powi(c)).abs() < 1e-12, "{c}: {t}");
    }
    // A sure rate (huge shape and rate, mean 2): Poisson(2), P(X >= 5) = 0.0527.
    let t = negbin_tail(5.0, 2e5, 1e5);
    assert!((t - 0.052_653).abs() < 1e-4, "{t}");
    // Below the mean the tail is large, and it falls with the count.
    assert!(negbin_tail(1.0, 2e5, 1e5) > 0.85);
    assert!(negbin_tail(12.0, 0.5, 10.0) < negbin_tail(3.0, 0.5, 10.0));
}

/// Eight days of ward work (08:00–16:00) by three cardiology nurses on
/// their own patients (assigned to the ward), and by an oncology nurse on
/// hers; the oncology patients `onc-0..9` are in oncology's care.
fn wards() -> (Reference, Vec<Event>) {
    let mut reference = Reference::default();
    for (dept, panel) in [
        ("cardiology", "card-c1"),
        ("cardiology", "card-c2"),
        ("cardiology", "card-c3"),
        ("oncology", "onc"),
    ] {
        for k in 0..10 {
            reference.add_care(
                format!("{panel}-{k}"),
                CareAssignment {
                    dept: Some(dept.into()),
                    ..Default::default()
                },
            );
        }
    }
    let mut events = Vec::new();
    for a in ["c1", "c2", "c3"] {
        let ev = by(a, "nurse", "cardiology");
        events.extend(workdays(&ev, &format!("card-{a}"), 0, 8, 6));
    }
    events.extend(workdays(&by("o1", "nurse", "oncology"), "onc", 0, 8, 6));
    events.sort_by_key(|e| e.time);
    (reference, events)
}

#[test]
fn no_relationship_fires_early_for_an_actor_who_never_opens_unrelated_charts() {
    let (reference, mut events) = wards();
    // One stray unrelated chart of c1 on day 2: not enough to fire, and
    // not evidence later.
    let stray = by("c1", "nurse", "cardiology")
        .patient("onc-4")
        .at(DAY0 + 2 * 86_400 + 12 * H + 7);
    events.push(stray.clone());
    events.sort_by_key(|e| e.time);
    let mut d = detectors(
        vec![DetectorConfig::NoRelationship(Default::default())],
        reference,
    );
    assert!(run(&mut d, events).is_empty());
    // Day 8: c3, then c1, open an oncology chart an hour amid their own work.
    // (A colleague's chart is not unrelated to the ward, so each opens
    // other patients.)
    for (actor, day, most, first) in [("c3", 8, 3, 0), ("c1", 9, 4, 5)] {
        let t = DAY0 + day * 86_400 + 9 * H;
        let mut found = Vec::new();
        let mut opened = 0;
        for i in 0..5 {
            let p = format!("onc-{}", first + i);
            let at = t + i * H;
            let own = by(actor, "nurse", "cardiology").patient(format!("card-{actor}-1"));
            found.extend(run(&mut d, [own.at(at - 60)]));
            if found.is_empty() {
                opened += 1;
            }
            found.extend(run(
                &mut d,
                [by(actor, "nurse", "cardiology").patient(p).at(at)],
            ));
        }
        assert_eq!(found.len(), 1, "{actor}: {found:?}");
        assert!(opened <= most, "{actor} fired at unrelated chart {opened}");
        assert!(found[0].summary.contains("chance"), "{}", found[0].summary);
        assert!(
            !found[0].evidence.contains(&stray.id),
            "evidence is the window's: {:?}",
            found[0].evidence
        );
    }
}

#[test]
fn no_relationship_keeps_quiet_where_unrelated_charts_are_the_job() {
    let (reference, mut events) = wards();
    // Imaging reads: each radiologist opens two or three ward patients a
    // day that nobody in radiology treated before.
    for a in ["r1", "r2", "r3"] {
        let ev = by(a, "physician", "radiology");
        events.extend(workdays(&ev, &format!("rad-{a}"), 0, 8, 4));
        for day in 0..8 {
            for k in 0..3 {
                let p = format!("ward-{a}-{day}-{k}");
                let t = DAY0 + day * 86_400 + (9 + 2 * k) * H + 30;
                // Someone on the ward treats the patient first.
                events.push(
                    by("c2", "nurse", "cardiology")
                        .patient(p.clone())
                        .at(t - 600),
                );
                events.push(ev.clone().patient(p).at(t));
            }
        }
    }
    events.sort_by_key(|e| e.time);
    let mut d = detectors(
        vec![DetectorConfig::NoRelationship(Default::default())],
        reference,
    );
    assert!(run(&mut d, events).is_empty());
    let t = DAY0 + 8 * 86_400 + 9 * H;
    let reads: Vec<Event> = ["onc-0", "onc-1", "onc-2", "onc-3"]
        .iter()
        .enumerate()
        .map(|(i, p)| {
            by("r1", "physician", "radiology")
                .patient(*p)
                .at(t + i as i64 * H)
        })
        .collect();
    assert!(
        run(&mut d, reads).is_empty(),
        "four charts a shift are a radiologist's usual"
    );
}

#[test]
fn no_relationship_leaves_routine_secondary_use_to_other_detectors() {
    let (reference, mut events) = wards();
    // Billing clerks work accounts (HPAYMT) of patients nobody in billing
    // treats, all day.
    let clerk = |a: &'static str| Ev {
        purpose: Some("HPAYMT"),
        ..by(a, "billing_clerk", "billing")
    };
    let accounts = |a: &'static str, day: i64| -> Vec<Event> {
        (0..40)
            .map(|k| {
                let t = DAY0 + day * 86_400 + 8 * H + k * 600;
                clerk(a).patient(format!("acct-{a}-{day}-{k}")).at(t)
            })
            .collect()
    };
    for a in ["b1", "b2", "b3"] {
        for day in 0..9 {
            events.extend(accounts(a, day));
        }
    }
    events.sort_by_key(|e| e.time);
    let mut d = detectors(
        vec![DetectorConfig::NoRelationship(Default::default())],
        reference,
    );
    assert!(run(&mut d, events).is_empty());
    // A new clerk's first day of accounts: the job, not 40 unrelated charts.
    assert!(
        run(&mut d, accounts("b4", 9)).is_empty(),
        "accounts are the clerk's job"
    );
    // The same clerk opening charts for treatment is another matter.
    let t = DAY0 + 9 * 86_400 + 15 * H;
    let treat: Vec<Event> = (0..10)
        .map(|k| {
            let p = if k < 5 {
                format!("onc-{k}")
            } else {
                format!("card-c1-{}", k - 5)
            };
            by("b4", "billing_clerk", "billing")
                .patient(p)
                .at(t + k * 60)
        })
        .collect();
    let found = only(&run(&mut d, treat), "no_relationship");
    assert!(!found.is_empty(), "treatment charts without a relationship");
    // Any later finding reports a count grown to double (an escalation).
    for pair in found.windows(2) {
        assert!(pair[1].observed >= 2.0 * pair[0].observed, "{found:?}");
    }
}

#[test]
fn vip_needs_the_actors_own_or_the_departments_care_not_a_colleagues_consult() {
    let mut d = star_vip();
    let t = DAY0 + 10 * H;
    // Oncology treats the patient; one cardiologist consults.
    let onc = by("o1", "physician", "oncology").patient("star");
    let k1 = by("k1", "physician", "cardiology").patient("star");
    let found = run(&mut d, [onc.at(t - 3600), onc.at(t - 3500)]);
    assert_eq!(found.len(), 1, "nobody's relationship yet: {found:?}");
    assert!(
        run(&mut d, [onc.at(t - 3000)]).is_empty(),
        "the treating physician"
    );
    // The consultant writes a consult note.
    let note = Ev {
        action: "create",
        ..k1.clone()
    };
    let found = run(&mut d, [note.at(t)]);
    assert_eq!(found.len(), 1, "the consult itself has no relationship");
    // Another cardiologist, who never treated the patient: the consult
    // of one colleague does not make the patient cardiology's.
    let k2 = by("k2", "physician", "cardiology").patient("star");
    let found = run(&mut d, [k2.at(t + 600)]);
    assert_eq!(found.len(), 1, "{found:?}");
    // Two cardiologists have treated the patient now: the department's.
    let k3 = by("k3", "physician", "cardiology").patient("star");
    assert!(run(&mut d, [k3.at(t + 1200)]).is_empty());
}

#[test]
fn reading_a_patient_of_others_teaches_no_relationship() {
    let mut d = star_vip();
    let t = DAY0 + 10 * H;
    let onc = by("o1", "physician", "oncology").patient("star");
    run(&mut d, [onc.at(t - 3600), onc.at(t - 3500)]);
    // Three cardiologists only look: each look is as unexplained as the
    // first, and none of them explains a colleague's.
    for (k, a) in ["k1", "k2", "k3"].into_iter().enumerate() {
        let look = by(a, "physician", "cardiology").patient("star");
        let found = run(&mut d, [look.at(t + 600 * k as i64)]);
        assert_eq!(found.len(), 1, "{a}: {found:?}");
    }
    // The next day k1 looks again: still no relationship of their own.
    let again = by("k1", "physician", "cardiology").patient("star");
    assert_eq!(run(&mut d, [again.at(t + 86_400)]).len(), 1);
}

#[test]
fn a_departments_relationship_lapses_a_week_after_its_last_care_an_actors_does_not() {
    let mut d = star_vip();
    let t = DAY0 + 10 * H;
    // Two emergency physicians treat the patient: the department's.
    let e1 = by("e1", "physician", "emergency").patient("star");
    let e2 = by("e2", "physician", "emergency").patient("star");
    run(&mut d, [e1.at(t), e2.at(t + 60)]);
    let e3 = by("e3", "nurse", "emergency").patient("star");
    assert!(
        run(&mut d, [e3.at(t + 6 * 86_400)]).is_empty(),
        "within the episode"
    );
    // e3's care refreshed the episode; eight days after it, the department
    // no longer treats the patient, but e1 still has their own history.
    let later = t + 14 * 86_400 + 60;
    let e4 = by("e4", "nurse", "emergency").patient("star");
    assert_eq!(run(&mut d, [e4.at(later)]).len(), 1, "a past episode");
    assert!(
        run(&mut d, [e1.at(later + 60)]).is_empty(),
        "one's own patient"
    );
    // The saved state keeps the times: a restored copy decides the same.
    let mut restored = star_vip();
    restored.load(&d.save()).expect("loads");
    let e5 = by("e5", "nurse", "emergency").patient("star");
    assert_eq!(run(&mut restored, [e5.at(later + 120)]).len(), 1);
    assert!(run(&mut restored, [e2.at(later + 180)]).is_empty());
}

#[test]
fn a_departments_ongoing_care_keeps_its_relationship() {
    let mut d = star_vip();
    let t = DAY0 + 10 * H;
    // Two cardiologists treat the patient every day for ten days.
    let c1 = by("c1", "physician", "cardiology").patient("star");
    let c2 = by("c2", "physician", "cardiology").patient("star");
    let mut found = Vec::new();
    for day in 0..10 {
        let at = t + day * 86_400;
        found.extend(run(&mut d, [c1.at(at), c2.at(at + 60)]));
    }
    // Only the two first reads fire (nobody's patient yet, then one
    // colleague's): the days after are the department's.
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|f| f.window_start.timestamp() < t + 3600));
    // A nurse new to the patient on day nine: a patient of the ward.
    let n1 = by("n1", "nurse", "cardiology").patient("star");
    assert!(run(&mut d, [n1.at(t + 9 * 86_400 + 600)]).is_empty());
}

#[test]
fn volume_judges_heavy_tailed_work_on_the_log_scale() {
    // Windows of 2, 4, 8 and 16 accesses in turn: a wide, skewed habit.
    let mut events = Vec::new();
    for a in ["v1", "v2", "v3"] {
        let ev = by(a, "nurse", "surgery");
        for day in 0..4 {
            for w in 0..48 {
                let n = [2, 4, 8, 16][w as usize % 4];
                let start = DAY0 + day * 86_400 + 8 * H + w * 600;
                for k in 0..n {
                    events.push(ev.clone().patient(format!("{a}-{k}")).at(start + k * 30));
                }
            }
        }
    }
    events.sort_by_key(|e| e.time);
    let busy = |n: i64, at: i64| -> Vec<Event> {
        (0..n)
            .map(|k| {
                by("v1", "nurse", "surgery")
                    .patient(format!("b{k}"))
                    .at(at + k * 3)
            })
            .collect()
    };
    let t = DAY0 + 4 * 86_400 + 10 * H;
    let mut log = detectors(
        vec![DetectorConfig::Volume(Default::default())],
        Reference::default(),
    );
    assert!(run(&mut log, events.clone()).is_empty());
    assert!(
        run(&mut log, busy(40, t)).is_empty(),
        "40 against a habit of 2 to 16 is a busy ten minutes"
    );
    assert_eq!(run(&mut log, busy(200, t + 1200)).len(), 1, "200 is not");
    // The same on the linear scale: the busy window fires.
    let linear: CountConfig<Volume> = toml::from_str("model = \"normal\"").expect("a volume table");
    let mut normal = detectors(vec![DetectorConfig::Volume(linear)], Reference::default());
    run(&mut normal, events);
    assert_eq!(run(&mut normal, busy(40, t)).len(), 1);
}

/// An order (`create` naming `attrs.performer_dept`) by `ev`'s actor.
fn order(ev: &Ev, to: &'static str) -> Ev {
    Ev {
        action: "create",
        resource: Some("ServiceRequest"),
        performer: Some(to),
        ..ev.clone()
    }
}

#[test]
fn an_order_from_the_treating_team_relates_the_department_that_performs_it() {
    let mut reference = Reference::default();
    reference.add_vip("star".into(), "vip".into());
    reference.add_care(
        "star".into(),
        CareAssignment {
            dept: Some("oncology".into()),
            ..Default::default()
        },
    );
    let mut d = detectors(vec![DetectorConfig::Vip(Default::default())], reference);
    let t = DAY0 + 10 * H;
    let read = |a: &'static str, dept: &'static str| by(a, "physician", dept).patient("star");
    assert_eq!(
        run(&mut d, [read("r1", "radiology").at(t)]).len(),
        1,
        "no order yet: imaging has no business with the chart"
    );
    // A stranger's order opens nothing (and is itself an access).
    let stranger = by("s1", "nurse", "surgery").patient("star");
    assert_eq!(run(&mut d, [order(&stranger, "lab").at(t + 60)]).len(), 1);
    assert_eq!(run(&mut d, [read("l1", "lab").at(t + 120)]).len(), 1);
    // An order that is refused, or names no department, opens nothing.
    let onc = by("o1", "physician", "oncology").patient("star");
    let refused = Ev {
        outcome: "denied",
        ..order(&onc, "pathology")
    };
    let blank = order(&onc, " ");
    assert!(run(&mut d, [refused.at(t + 150), blank.at(t + 160)]).is_empty());
    assert_eq!(run(&mut d, [read("q1", "pathology").at(t + 170)]).len(), 1);
    // The treating oncologist orders imaging: a radiologist new to the
    // patient may read the chart; pharmacy, not asked, still may not.
    assert!(run(&mut d, [order(&onc, "radiology").at(t + 180)]).is_empty());
    assert!(run(&mut d, [read("r2", "radiology").at(t + 240)]).is_empty());
    let pharmacist = by("p1", "pharmacist", "pharmacy").patient("star");
    assert_eq!(run(&mut d, [pharmacist.at(t + 360)]).len(), 1);
    // A consult ordered of cardiology: its first physician may read, also
    // after a restart (the relationship is in the saved state).
    assert!(run(&mut d, [order(&onc, "cardiology").at(t + 380)]).is_empty());
    let mut restored = star_vip();
    restored.load(&d.save()).expect("loads");
    assert!(run(&mut restored, [read("k1", "cardiology").at(t + 400)]).is_empty());
    let mut fresh = star_vip();
    assert_eq!(
        run(&mut fresh, [read("k1", "cardiology").at(t + 400)]).len(),
        1,
        "without the order"
    );
}

#[test]
fn vip_lets_bed_management_of_a_current_inpatient_pass_but_not_clinical_content() {
    let t = DAY0 + 2 * 86_400 + 10 * H;
    let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
    let mut reference = Reference::default();
    for (p, end) in [("star", t + 86_400), ("gone", t - 86_400)] {
        reference.add_vip(p.into(), "vip".into());
        reference.add_care(
            p.into(),
            CareAssignment {
                dept: Some("icu".into()),
                start: Some(at(t - 5 * 86_400)),
                end: Some(at(end)),
                ..Default::default()
            },
        );
    }
    let mut d = detectors(vec![DetectorConfig::Vip(Default::default())], reference);
    // Registrars register all day and manage beds a few times a shift:
    // bed management is a regular part of their work, not the main part.
    let g1 = by("g1", "registrar", "admissions");
    let mut history = Vec::new();
    for k in 0..200 {
        history.push(g1.clone().patient(format!("new-{k}")).at(DAY0 + k * 300));
        if k % 20 == 0 {
            let bed = Ev {
                purpose: Some("HOPERAT"),
                resource: Some("Encounter"),
                ..g1.clone()
            };
            history.push(bed.patient(format!("bed-{k}")).at(DAY0 + k * 300 + 60));
        }
    }
    assert!(run(&mut d, history).is_empty());
    let bed = |a: &'static str, role: &'static str, dept: &'static str, p: &str, r| {
        Ev {
            purpose: Some("HOPERAT"),
            resource: Some(r),
            ..by(a, role, dept)
        }
        .patient(p)
    };
    assert!(
        run(
            &mut d,
            [bed("g2", "registrar", "admissions", "star", "Encounter").at(t)]
        )
        .is_empty(),
        "bed management of an inpatient"
    );
    let found = run(
        &mut d,
        [bed("g2", "registrar", "admissions", "star", "DocumentReference").at(t + 60)],
    );
    assert_eq!(found.len(), 1, "clinical notes are not bed management");
    let found = run(
        &mut d,
        [bed("g3", "registrar", "admissions", "gone", "Encounter").at(t + 120)],
    );
    assert_eq!(found.len(), 1, "a discharged patient has no bed");
    let found = run(
        &mut d,
        [bed("n1", "nurse", "surgery", "star", "Encounter").at(t + 180)],
    );
    assert_eq!(found.len(), 1, "not a purpose surgery nurses work under");
}

#[test]
fn off_hours_measures_the_gap_to_usual_activity_in_minutes_not_hour_slots() {
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    // Two nurses whose shifts began at 06:52 and ran to 19:00, ten days.
    let (a, b) = (by("m1", "nurse", "surgery"), by("m2", "nurse", "surgery"));
    let mut history = Vec::new();
    for day in 0..10 {
        for k in 0..37 {
            let t = DAY0 + day * 86_400 + 6 * H + 52 * 60 + k * 20 * 60;
            history.push(a.clone().patient(format!("a-{}", k % 5)).at(t));
            history.push(b.clone().patient(format!("b-{}", k % 5)).at(t));
        }
    }
    assert!(run(&mut d, history).is_empty());
    let charts = |ev: &Ev, at: i64| -> Vec<Event> {
        (0..3)
            .map(|k| ev.clone().patient(format!("x{k}")).at(at + k * 90))
            .collect()
    };
    // 05:10 is 1 h 42 min before the earliest start seen: early, not night.
    assert!(run(&mut d, charts(&a, DAY0 + 10 * 86_400 + 5 * H + 10 * 60)).is_empty());
    // 04:19 is 2 h 33 min before it, although hour slots 04 and 06 are
    // only two apart.
    let found = run(&mut d, charts(&b, DAY0 + 10 * 86_400 + 4 * H + 19 * 60));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].summary.contains("04:19") && found[0].summary.contains("06:52, 2 h 33 min away"),
        "{}",
        found[0].summary
    );
}

#[test]
fn off_hours_takes_an_early_start_of_a_day_shift_for_work_not_the_night() {
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    // Two actors seen on ten days, 08:00-16:00.
    let (early, night) = (
        by("e1", "therapist", "surgery"),
        by("e2", "therapist", "surgery"),
    );
    let mut history = workdays(&early, "e", 0, 10, 4);
    history.extend(workdays(&night, "n", 0, 10, 4));
    history.sort_by_key(|e| e.time);
    assert!(run(&mut d, history).is_empty());
    let burst = |ev: &Ev, h: i64| -> Vec<Event> {
        (0..5)
            .map(|k| {
                ev.clone()
                    .patient("x")
                    .at(DAY0 + 10 * 86_400 + h * H + k * 120)
            })
            .collect()
    };
    // 05:00: three quiet hours before the usual start, but 05:00-16:00 is
    // one working day (12 hour slots).
    assert!(run(&mut d, burst(&early, 5)).is_empty());
    // 02:00 is not: 02:00-16:00 would be a 15-hour day.
    assert_eq!(run(&mut d, burst(&night, 2)).len(), 1);
    // With a 9-hour working day, 05:00 is off hours too.
    let cfg: OffHoursConfig = toml::from_str("shift_hours = 9").expect("an off_hours table");
    let mut short = detectors(vec![DetectorConfig::OffHours(cfg)], Reference::default());
    assert!(run(&mut short, workdays(&early, "e", 0, 10, 4)).is_empty());
    assert_eq!(run(&mut short, burst(&early, 5)).len(), 1);
    let mut problems = Vec::new();
    let bad: OffHoursConfig = toml::from_str("shift_hours = 0").expect("an off_hours table");
    DetectorConfig::OffHours(bad).validate("detectors[0]", &mut problems);
    assert_eq!(problems.len(), 1, "{problems:?}");
}

/// A 12-hour shift from `start`: one read an hour of the actor's panel.
fn shift(ev: &Ev, start: i64) -> Vec<Event> {
    (0..12)
        .map(|k| {
            ev.clone()
                .patient(format!("{}-{}", ev.actor, k % 4))
                .at(start + k * H + 600)
        })
        .collect()
}

/// Staff of one department over `days` days: `day` actors on 07:00-19:00,
/// `night` on 19:00-07:00, and `rotating` alternating the two.
fn department(
    dept: &'static str,
    day: usize,
    night: usize,
    rotating: usize,
    days: i64,
) -> Vec<Event> {
    let mut events = Vec::new();
    for i in 0..day + night + rotating {
        let name: &'static str = Box::leak(format!("{dept}-{i}").into_boxed_str());
        let ev = by(name, "nurse", dept);
        for d in 0..days {
            let nights = if i < day {
                false
            } else if i < day + night {
                true
            } else {
                d % 2 == 1
            };
            let start = DAY0 + d * 86_400 + if nights { 19 * H } else { 7 * H };
            events.extend(shift(&ev, start));
        }
    }
    events.sort_by_key(|e| e.time);
    events
}

/// Three charts opened by `ev` from 02:00 of day `day`, two minutes apart.
fn night_charts(ev: &Ev, day: i64) -> Vec<Event> {
    (0..3)
        .map(|k| {
            ev.clone()
                .patient(format!("night-{k}"))
                .at(DAY0 + day * 86_400 + 2 * H + k * 120)
        })
        .collect()
}

#[test]
fn off_hours_judges_a_newcomer_by_the_peers_who_work_their_hours() {
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    // Surgery: ten day nurses and six night nurses, none rotating. ICU:
    // ten nurses who alternate day and night shifts.
    let mut history = department("surgery", 10, 6, 0, 6);
    history.extend(department("icu", 0, 0, 10, 6));
    // A newcomer to each works their first day shift on day 6.
    let (s_new, i_new) = (by("s-new", "nurse", "surgery"), by("i-new", "nurse", "icu"));
    history.extend(shift(&s_new, DAY0 + 6 * 86_400 + 7 * H));
    history.extend(shift(&i_new, DAY0 + 6 * 86_400 + 7 * H));
    // And one, in surgery, is seen for the first time at night.
    let first = by("s-first", "nurse", "surgery");
    history.sort_by_key(|e| e.time);
    assert!(run(&mut d, history).is_empty());
    let charts = |ev: &Ev| night_charts(ev, 7);
    // The surgery newcomer at 02:00: surgery's day nurses never work
    // nights, though the department does.
    let found = run(&mut d, charts(&s_new));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .summary
            .contains("peers who work the actor's hours")
            && found[0].summary.contains("0% of"),
        "{}",
        found[0].summary
    );
    // The ICU newcomer: ICU's day nurses work nights too.
    assert!(run(&mut d, charts(&i_new)).is_empty());
    // Not yet seen at work: the department works nights.
    assert!(run(&mut d, charts(&first)).is_empty());
}

#[test]
fn off_hours_asks_the_peers_until_the_actors_own_hours_are_settled() {
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    // Over twelve days: surgery's day nurses never work nights; the ICU's
    // nurses alternate day and night shifts.
    let mut history = department("surgery", 10, 6, 0, 12);
    history.extend(department("icu", 0, 0, 10, 12));
    // Two nurses hired on day 8 who have worked three day shifts, and an
    // ICU nurse who has worked only day shifts, all twelve days.
    let (s_new, i_new) = (by("s-new", "nurse", "surgery"), by("i-new", "nurse", "icu"));
    for day in 8..11 {
        history.extend(shift(&s_new, DAY0 + day * 86_400 + 7 * H));
        history.extend(shift(&i_new, DAY0 + day * 86_400 + 7 * H));
    }
    let i_days = by("i-days", "nurse", "icu");
    for day in 0..11 {
        history.extend(shift(&i_days, DAY0 + day * 86_400 + 7 * H));
    }
    history.sort_by_key(|e| e.time);
    assert!(run(&mut d, history).is_empty());
    let charts = |ev: &Ev| night_charts(ev, 11);
    // Three days of day shifts cannot tell a day worker from one who
    // rotates: the peers who work days tell. In surgery they never work
    // at 02:00.
    let found = run(&mut d, charts(&s_new));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .summary
            .contains("peers who work the actor's hours"),
        "{}",
        found[0].summary
    );
    // In the ICU they do, on half their days: the newcomer's first night
    // is a rotation.
    let found = run(&mut d, charts(&i_new));
    assert!(found.is_empty(), "{found:?}");
    // Eleven days of day shifts are the nurse's own pattern, whatever the
    // department does.
    let found = run(&mut d, charts(&i_days));
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].summary.contains("own history"),
        "{}",
        found[0].summary
    );
}

#[test]
fn volume_counts_viewing_not_documentation() {
    let mut events = Vec::new();
    for a in ["v1", "v2", "v3"] {
        let ev = by(a, "nurse", "surgery");
        for day in 0..4 {
            for w in 0..48 {
                let start = DAY0 + day * 86_400 + 8 * H + w * 600;
                for k in 0..[2, 4, 8, 16][w as usize % 4] {
                    events.push(ev.clone().patient(format!("{a}-{k}")).at(start + k * 30));
                }
            }
        }
    }
    events.sort_by_key(|e| e.time);
    let mut d = detectors(
        vec![DetectorConfig::Volume(Default::default())],
        Reference::default(),
    );
    assert!(run(&mut d, events).is_empty());
    let burst = |action: &'static str, at: i64| -> Vec<Event> {
        (0..200)
            .map(|k| {
                Ev {
                    action,
                    ..by("v1", "nurse", "surgery")
                }
                .patient(format!("b{k}"))
                .at(at + k * 3)
            })
            .collect()
    };
    let t = DAY0 + 4 * 86_400 + 10 * H;
    assert!(
        run(&mut d, burst("update", t)).is_empty(),
        "charting 200 observations discloses nothing"
    );
    assert!(run(&mut d, burst("create", t + 1200)).is_empty());
    let found = run(&mut d, burst("read", t + 2400));
    assert_eq!(found.len(), 1, "reading 200 charts does");
    assert!(found[0].summary.contains("views"), "{}", found[0].summary);
}

#[test]
fn off_hours_waits_for_a_run_of_logins_but_not_for_a_chart() {
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    let ev = by("day1", "nurse", "surgery");
    assert!(run(&mut d, workdays(&ev, "s", 0, 10, 4)).is_empty());
    let night = DAY0 + 10 * 86_400 + 2 * H;
    let login = Ev {
        action: "login",
        ..ev.clone()
    };
    let search = Ev {
        action: "search",
        ..ev.clone()
    };
    // A login and a search at 02:00 disclose nothing: one stray session
    // is not a run.
    assert!(run(&mut d, [login.at(night), search.at(night + 60)]).is_empty());
    // The first chart opened is the disclosure.
    let chart = ev.clone().patient("z").at(night + 120);
    let found = run(&mut d, [chart.clone()]);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].evidence.contains(&chart.id));
    // Three logins and searches still make a run on their own.
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    assert!(run(&mut d, workdays(&ev, "s", 0, 10, 4)).is_empty());
    let found = run(
        &mut d,
        [
            login.at(night),
            search.at(night + 60),
            search.at(night + 120),
        ],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].summary.contains("3 accesses"),
        "{}",
        found[0].summary
    );
}

#[test]
fn off_hours_wants_a_run_from_a_short_history_with_no_peers_to_ask() {
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    // Three days of 08:00-16:00, and nobody else in the department.
    let ev = by("short", "nurse", "surgery");
    assert!(run(&mut d, workdays(&ev, "s", 0, 3, 4)).is_empty());
    let night = DAY0 + 3 * 86_400 + 2 * H;
    // One chart at 02:00 may be a shift not seen yet…
    let found = run(&mut d, [ev.clone().patient("z0").at(night)]);
    assert!(found.is_empty(), "{found:?}");
    // …a run of three is off hours.
    let found = run(
        &mut d,
        [
            ev.clone().patient("z1").at(night + 300),
            ev.clone().patient("z2").at(night + 600),
        ],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].summary.starts_with("3 accesses at 02:")
            && found[0].summary.contains("of own history"),
        "{}",
        found[0].summary
    );
}

#[test]
fn off_hours_counts_the_peers_days_once_they_are_over() {
    // Ten billing clerks work days 0 and 1, 08:00-16:00; "new" only day 0.
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        Reference::default(),
    );
    let clerks = ["b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7", "b8", "b9"];
    let mut history = Vec::new();
    for a in clerks {
        history.extend(workdays(
            &by(a, "billing_clerk", "billing"),
            "acct",
            0,
            2,
            4,
        ));
    }
    let newcomer = by("new", "billing_clerk", "billing");
    history.extend(workdays(&newcomer, "acct", 0, 1, 4));
    history.sort_by_key(|e| e.time);
    assert!(run(&mut d, history).is_empty());
    // 00:30 on day 2: nobody of the group has come back yet, but day 1 is
    // over: 20 finished actor-days of office hours stand in for the
    // newcomer's single day.
    let found = run(
        &mut d,
        [newcomer
            .clone()
            .patient("acct-9")
            .at(DAY0 + 2 * 86_400 + 1800)],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].summary.contains("peers'"), "{}", found[0].summary);
}

#[test]
fn no_relationship_escalates_when_the_count_doubles_within_its_silence() {
    let (reference, events) = wards();
    let mut d = detectors(
        vec![DetectorConfig::NoRelationship(Default::default())],
        reference,
    );
    assert!(run(&mut d, events).is_empty());
    // Day 8: c1 opens ten oncology charts, 20 minutes apart.
    let t = DAY0 + 8 * 86_400 + 9 * H;
    let reads: Vec<Event> = (0..10)
        .map(|i| {
            by("c1", "nurse", "cardiology")
                .patient(format!("onc-{i}"))
                .at(t + i * 1200)
        })
        .collect();
    let found = run(&mut d, reads);
    let first = found[0].observed;
    assert!(first <= 3.0, "{found:?}");
    assert!(!found[0].summary.contains("escalation"));
    // Then once per doubling, each saying what was reported before.
    let counts: Vec<f64> = found.iter().map(|f| f.observed).collect();
    let mut expected = vec![first];
    while expected.last().copied().unwrap_or(0.0) * 2.0 <= 10.0 {
        expected.push(expected.last().copied().unwrap_or(0.0) * 2.0);
    }
    assert_eq!(counts, expected, "{found:?}");
    for (f, before) in found[1..].iter().zip(&counts) {
        assert!(
            f.summary
                .contains(&format!("escalation: {before} reported at 09:")),
            "{}",
            f.summary
        );
    }
}

#[test]
fn a_window_that_fired_does_not_teach_the_baseline() {
    let (reference, events) = wards();
    let mut d = detectors(
        vec![DetectorConfig::NoRelationship(Default::default())],
        reference,
    );
    assert!(run(&mut d, events).is_empty());
    // c1 snoops on day 8 (six charts) and again on day 9 (three): the
    // first run is not c1's habit, so the second is as improbable.
    for (day, n, first) in [(8, 6, 0), (9, 3, 6)] {
        let t = DAY0 + day * 86_400 + 9 * H;
        let mut reads = Vec::new();
        for i in 0..n {
            reads.push(
                by("c1", "nurse", "cardiology")
                    .patient(format!("card-c1-{}", i % 5))
                    .at(t + i * 1800 - 60),
            );
            reads.push(
                by("c1", "nurse", "cardiology")
                    .patient(format!("onc-{}", first + i))
                    .at(t + i * 1800),
            );
        }
        // Their own ward's work until the end of the day.
        reads.extend((0..8).map(|k| {
            by("c1", "nurse", "cardiology")
                .patient("card-c1-1")
                .at(t + 4 * H + k * 600)
        }));
        let found = run(&mut d, reads);
        assert!(!found.is_empty(), "day {day}: nothing");
        assert!(
            !found[0].summary.contains("escalation"),
            "{}",
            found[0].summary
        );
    }
}

#[test]
fn an_actor_between_windows_keeps_baselines_not_the_windows_buffers() {
    let configs = vec![
        DetectorConfig::Volume(Default::default()),
        DetectorConfig::Pace(Default::default()),
        DetectorConfig::Breadth(Default::default()),
    ];
    let mut d = detectors(configs, Reference::default());
    // The detectors started the day before, so the windows below are
    // seen whole (the window a detector starts in teaches nothing).
    run(
        &mut d,
        [by("n0", "nurse", "icu").patient("p").at(DAY0 - 86_400)],
    );
    let nurse = by("n1", "nurse", "icu");
    let views: Vec<Event> = (0..12)
        .map(|k| {
            nurse
                .clone()
                .patient(format!("p{k}"))
                .at(DAY0 + 8 * H + k * 20)
        })
        .collect();
    run(&mut d, views.clone());
    let state = |d: &Detectors| -> Vec<serde_json::Value> {
        let saved: serde_json::Value = serde_json::from_slice(&d.save()).unwrap();
        saved["detectors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["actor_keys"][memory::actor_key("n1").to_string()].clone())
            .collect()
    };
    // Members at their defaults are left out of the saved state.
    let len = |s: &serde_json::Value, key: &str| {
        s.get(key).and_then(|v| v.as_array()).map_or(0, Vec::len)
    };
    let busy = state(&d);
    // Evidence of the window: ten minutes' and an hour's all twelve, the
    // last minute's three (one view every 20 s).
    for ((name, s), n) in ["volume", "pace", "breadth"]
        .iter()
        .zip(&busy)
        .zip([12, 3, 12])
    {
        assert_eq!(len(s, "evidence"), n, "{name}: {s}");
        assert_eq!(len(s, "evidence_at"), n, "{name}: {s}");
    }
    // Only the sliding window keeps the times of what it counted; breadth
    // keeps the patients of its hour.
    assert_eq!(len(&busy[0], "recent"), 0);
    assert_eq!(len(&busy[1], "recent"), 3);
    assert_eq!(len(&busy[2], "distinct"), 12);
    // Two hours later, a login: activity, but nothing counted.
    let login = Ev {
        action: "login",
        patient: None,
        ..nurse.clone()
    };
    run(&mut d, [login.at(DAY0 + 10 * H)]);
    let idle = state(&d);
    for (name, s) in ["volume", "pace", "breadth"].iter().zip(&idle) {
        for key in [
            "evidence",
            "evidence_at",
            "recent",
            "distinct",
            "count",
            "sliding",
        ] {
            assert!(s.get(key).is_none(), "{name}: {key} in {s}");
        }
    }
    // The windows that ended were learned (a sliding one's waits for the
    // next to end).
    assert_eq!(idle[0]["own"]["n"], 1);
    assert_eq!(idle[2]["own"]["n"], 1);
    assert_eq!(idle[1]["pending"]["count"], 3);
}

#[test]
fn a_snapshot_with_every_member_written_out_loads_as_the_compact_one() {
    let configs = vec![
        DetectorConfig::Volume(Default::default()),
        DetectorConfig::Pace(Default::default()),
        DetectorConfig::OffHours(Default::default()),
    ];
    let mut d = detectors(configs.clone(), Reference::default());
    run(&mut d, workdays(&by("n1", "nurse", "icu"), "q", 0, 2, 4));
    run(
        &mut d,
        [by("n2", "nurse", "icu").patient("p").at(DAY0 + 3 * 86_400)],
    );
    let now: serde_json::Value = serde_json::from_slice(&d.save()).unwrap();
    // Earlier versions wrote every member, defaults included.
    let count_defaults = serde_json::json!({
        "count": 0, "recent": [], "sliding": 0, "fired_at": i64::MIN, "fired_count": 0,
        "group": 0, "evidence": [], "evidence_at": [], "own": {"n": 0, "mean": 0, "var": 0},
    });
    let hours_defaults = serde_json::json!({
        "run_last": i64::MIN, "run_count": 0, "run_patients": 0, "run_fired": false,
        "evidence": [],
    });
    let mut full = now.clone();
    let mut filled = 0;
    for (entry, defaults) in full["detectors"].as_array_mut().unwrap().iter_mut().zip([
        &count_defaults,
        &count_defaults,
        &hours_defaults,
    ]) {
        for record in entry["actor_keys"].as_object_mut().unwrap().values_mut() {
            for (key, value) in defaults.as_object().unwrap() {
                if record.get(key).is_none() {
                    record[key] = value.clone();
                    filled += 1;
                }
            }
        }
    }
    assert!(filled > 10, "the state has members at their defaults");
    let mut restored = detectors(configs, Reference::default());
    restored.load(&serde_json::to_vec(&full).unwrap()).unwrap();
    let again: serde_json::Value = serde_json::from_slice(&restored.save()).unwrap();
    assert_eq!(again, now);
}

/// A stream that starts late in a minute shows each count detector only
/// the end of that window. Learned as a baseline, it made a whole
/// department's next full minute look like a burst to `pace`: one finding
/// per actor (19,980 in a benchmark run at 50,000 events/s). The window a
/// detector starts in teaches nothing; steady work stays quiet.
#[test]
fn the_window_a_stream_starts_in_teaches_no_baseline() {
    let mut d = detectors(
        vec![
            DetectorConfig::Volume(Default::default()),
            DetectorConfig::Pace(Default::default()),
            DetectorConfig::Breadth(Default::default()),
        ],
        Reference::default(),
    );
    // 60 nurses of one ward, each opening a new patient's chart every 2 s
    // (30 a minute), from 8 s before a minute (and hour) boundary on.
    let start = DAY0 + 10 * H - 8;
    let mut events = Vec::new();
    for t in (start..start + 20 * 60).step_by(2) {
        for i in 0..60 {
            let nurse = Ev {
                actor: Box::leak(format!("n{i}").into_boxed_str()),
                ..by("n", "nurse", "icu")
            };
            events.push(nurse.patient(format!("p{i}-{t}")).at(t));
        }
    }
    let found = run(&mut d, events);
    assert!(
        found.is_empty(),
        "{} findings, first {:?}",
        found.len(),
        found.first().map(|f| (&f.detector, &f.summary))
    );
}

#[test]
fn personal_fires_on_people_the_actor_knows_unless_they_treat_them() {
    let mut reference = Reference::default();
    let staff = |dept: &str, patient: &str| Staff {
        dept: Some(dept.into()),
        patient: Some(patient.into()),
        ..Default::default()
    };
    reference.add_staff("n1".into(), staff("icu", "pt-n1"));
    reference.add_staff("n2".into(), staff("icu", "pt-n2"));
    reference.add_staff("c1".into(), staff("cardiology", "pt-c1"));
    reference.add_staff("c2".into(), staff("cardiology", "pt-c2"));
    reference.add_link("n1".into(), "mum".into(), "family".into());
    reference.add_link("n1".into(), "next-door".into(), "neighbour".into());
    reference.add_care(
        "mum".into(),
        CareAssignment {
            actor: Some("n2".into()),
            ..Default::default()
        },
    );
    let mut d = detectors(
        vec![DetectorConfig::Personal(Default::default())],
        reference,
    );
    let t = DAY0 + 10 * H;
    let n1 = by("n1", "nurse", "icu");
    // The first read of each fires at once; the same pair once a day.
    let found = run(
        &mut d,
        [
            n1.clone().patient("mum").at(t),
            n1.clone().patient("mum").at(t + 60),
            n1.clone().patient("next-door").at(t + 120),
            n1.clone().patient("pt-n2").at(t + 180),
            n1.clone().patient("pt-c1").at(t + 240),
            n1.clone().patient("stranger").at(t + 300),
        ],
    );
    let summaries: Vec<&str> = found.iter().map(|f| f.summary.as_str()).collect();
    assert_eq!(
        found.len(),
        3,
        "another department's staff are strangers: {summaries:#?}"
    );
    assert!(found.iter().all(|f| f.severity == Severity::High));
    assert!(
        summaries[0].contains("linked to them as family"),
        "{summaries:?}"
    );
    assert!(summaries[1].contains("as neighbour"), "{summaries:?}");
    assert!(summaries[2].contains("coworker of the same department"));
    assert_eq!(found[0].patient.as_deref(), Some("mum"));
    // The next day the same chart fires again.
    assert_eq!(
        run(&mut d, [n1.clone().patient("mum").at(t + 86_400)]).len(),
        1
    );
    // Her mother's nurse (on the care team) treats her: no finding.
    let n2 = by("n2", "nurse", "icu");
    assert!(run(&mut d, [n2.clone().patient("mum").at(t)]).is_empty());
    // A coworker's chart fires until the actor treats them (a note).
    let c2 = by("c2", "physician", "cardiology").patient("pt-c1");
    assert_eq!(run(&mut d, [c2.at(t)]).len(), 1, "a coworker's chart");
    let c2_note = Ev {
        action: "create",
        ..by("c2", "physician", "cardiology")
    };
    run(&mut d, [c2_note.patient("pt-c1").at(t + 10)]);
    assert!(
        run(&mut d, [c2.at(t + 86_400 + 20)]).is_empty(),
        "treated by the actor since"
    );
    // One's own chart is never a job: medium, whatever the relationship.
    let own = run(&mut d, [n1.clone().patient("pt-n1").at(t + 400)]);
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].severity, Severity::Medium);
    assert!(
        own[0].summary.contains("their own chart"),
        "{}",
        own[0].summary
    );
    let denied = Ev {
        outcome: "denied",
        ..by("c1", "physician", "cardiology")
    };
    let found = run(&mut d, [denied.patient("pt-c2").at(t)]);
    assert!(found[0].summary.starts_with("tried to open"), "{found:?}");
}

#[test]
fn off_hours_lets_on_call_reads_of_ones_own_patients_pass_but_not_others() {
    let mut reference = Reference::default();
    reference.add_care(
        "mine".into(),
        CareAssignment {
            actor: Some("c1".into()),
            ..Default::default()
        },
    );
    let mut d = detectors(
        vec![DetectorConfig::OffHours(Default::default())],
        reference,
    );
    // Two cardiologists, ten days of 08:00–16:00 each, with patients
    // of their own panels ("treated": their own care teaches it).
    let c1 = by("c1", "physician", "cardiology");
    let c2 = by("c2", "physician", "cardiology");
    let mut history = workdays(&c1, "p1", 0, 10, 6);
    history.extend(workdays(&c2, "p2", 0, 10, 6));
    history.sort_by_key(|e| e.time);
    assert!(run(&mut d, history).is_empty());
    let night = DAY0 + 10 * 86_400 + 2 * H;
    let login = |ev: &Ev| Ev {
        action: "login",
        ..ev.clone()
    };
    // c1 is called at 02:00: a login, her care-team patient and one she
    // treated on her shift. Not an off-hours run.
    let on_call = [
        login(&c1).at(night),
        c1.clone().patient("mine").at(night + 60),
        c1.clone().patient("p1-1").at(night + 120),
        c1.clone().patient("mine").at(night + 180),
    ];
    assert!(run(&mut d, on_call).is_empty());
    // c2, the same night, opens a chart she never treated (another of
    // the department's patients): off hours.
    let found = run(
        &mut d,
        [
            login(&c2).at(night + 30),
            c2.clone().patient("p1-1").at(night + 90),
        ],
    );
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].actor, "c2");
    assert_eq!(found[0].observed, 2.0, "the login and the chart");
}
