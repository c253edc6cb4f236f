//! Rule detectors over the reference tables: each event is judged against
//! what the hospital knows (flagged patients, the roster, consents, the
//! export allow-list) rather than against a learned baseline.
//!
//! - `vip`: a flagged (VIP, restricted, employee) patient opened by an
//!   actor with no treatment relationship to them (see [`Relation`]; an
//!   order to the actor's department is one), unless for a purpose
//!   routine for the actor or their peers, or for a regular one on the
//!   administrative record of a patient in care at the time (bed
//!   management); one finding per actor, patient and `renotify_secs`.
//! - `personal`: an actor opens their own chart, or, without a job reason
//!   (as for `vip`), the chart of a relative, a neighbour (the links table)
//!   or a coworker of the same department (their roster `patient`); one finding
//!   per actor, patient and `renotify_secs`.
//! - `termination`: any event by an actor after their roster termination
//!   time (critical), or before their hire time (high); one finding per
//!   actor and `renotify_secs`.
//! - `bulk_export`: records exported or printed per actor in a window to
//!   destinations not on the allow-list (with no allow-list loaded, every
//!   destination counts); fires once per window at `min_records`.
//! - `consent`: a secondary-use access (`purposes`, default research and
//!   marketing codes) to a patient whose consent for that purpose is
//!   withdrawn, or absent, at the event's time; needs the consent table.
//!
//! State: recently fired keys ([`RecentSet`], bounded) and, for exports,
//! a per-actor window sum (bounded like the count detectors).

use crate::ledger::StateWriter;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::count::span;
use super::memory::{RecentSet, key_hash};
use super::reference::{Consent, Tie};
use super::{Context, Detector, Finding, Relation, Severity};
use crate::event::{Access, Body, Event};

/// FHIR resource types that hold where a patient is and how the stay is
/// administered, not what is wrong with them: what bed management and
/// other operations need of a current inpatient.
const ADMINISTRATIVE_RESOURCES: [&str; 4] =
    ["Encounter", "Location", "Appointment", "EpisodeOfCare"];

/// Fired keys remembered at most per rule detector.
const MAX_FIRED: usize = 200_000;

fn finding(
    detector: &str,
    severity: Severity,
    event: &Event,
    ctx: &Context,
    window_secs: u64,
    summary: String,
) -> Finding {
    let start = ctx.time;
    Finding {
        detector: detector.to_owned(),
        severity,
        actor: event.actor.id.clone(),
        patient: event.patient().map(str::to_owned),
        model: None,
        window_start: start,
        window_end: start + chrono::Duration::seconds(window_secs as i64),
        score: 1.0,
        observed: 1.0,
        expected: 0.0,
        summary,
        evidence: vec![event.id.clone()],
        evidence_total: 1,
    }
}

fn period(t: DateTime<Utc>, secs: u64) -> String {
    t.timestamp().div_euclid(secs.max(1) as i64).to_string()
}

/// An access to a patient's record: the access and the patient.
fn patient_access(event: &Event) -> Option<(&Access, &str)> {
    let Body::Access(a) = &event.body else {
        return None;
    };
    Some((a, a.patient.as_deref()?))
}

/// Whether this is the first time `actor` and `patient` fire in the period
/// of `secs` that `t` falls in (remembered in `fired`).
fn first_in_period(
    fired: &mut RecentSet,
    actor: &str,
    patient: &str,
    t: DateTime<Utc>,
    secs: u64,
) -> bool {
    fired.insert(key_hash(&[actor, patient, &period(t, secs)]))
}

macro_rules! fired_state {
    () => {
        fn keys(&self) -> usize {
            self.fired.len()
        }
        fn evictions(&self) -> u64 {
            self.fired.forgotten()
        }
        fn save(&self) -> Vec<u8> {
            self.fired.save()
        }
        fn load(&mut self, state: &[u8]) -> Result<(), String> {
            self.fired.load(state)
        }
    };
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VipConfig {
    /// Seconds before the same actor and patient fire again.
    pub renotify_secs: u64,
    /// Roster roles of system accounts (an interface answering other
    /// organisations' queries, an ETL job): they read on behalf of someone
    /// else, so a flagged chart read by one is not the account's curiosity.
    /// Matched against the roster only, never the event's `actor.role`,
    /// which a producer could set to anything.
    pub system_roles: Vec<String>,
}

impl Default for VipConfig {
    fn default() -> Self {
        VipConfig {
            renotify_secs: 86_400,
            system_roles: vec!["service".into()],
        }
    }
}

#[derive(Clone)]
pub struct Vip {
    cfg: VipConfig,
    fired: RecentSet,
}

impl Vip {
    pub fn new(cfg: &VipConfig) -> Self {
        Vip {
            cfg: cfg.clone(),
            fired: RecentSet::new(MAX_FIRED),
        }
    }
}

impl Detector for Vip {
    fn name(&self) -> &'static str {
        "vip"
    }

    fn observe(&mut self, event: &Event, ctx: &Context, findings: &mut Vec<Finding>) {
        let Some((a, patient)) = patient_access(event) else {
            return;
        };
        let Some(category) = ctx.reference.vip(patient) else {
            return;
        };
        let system = ctx
            .staff
            .and_then(|s| s.role.as_deref())
            .is_some_and(|r| self.cfg.system_roles.iter().any(|x| x == r));
        let secs = self.cfg.renotify_secs;
        if system
            || justified(a, patient, ctx)
            || !first_in_period(&mut self.fired, &event.actor.id, patient, ctx.time, secs)
        {
            return;
        }
        let how = opened(a);
        let article = if category.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        let summary = format!(
            "{how} the chart of {article} {category} patient ({} {}) with no treatment relationship \
             (not on the care team, not treated by the actor before, not their department's \
             patient in the past {} days)",
            a.action,
            a.purpose.as_deref().unwrap_or("no purpose"),
            super::relations::DEPT_EPISODE_SECS / 86_400,
        );
        findings.push(finding("vip", Severity::High, event, ctx, 0, summary));
    }

    fired_state!();
}

/// Whether an access to `patient` has a job reason: treatment needs a treatment relationship of
/// the actor's own or their department's care (one colleague's consult is
/// not one); a job function (billing, research, operations) needs to be
/// one the actor or their peers routinely work under; bed management and
/// other operations on the administrative record of a patient the hospital
/// has in care at the time (the bed board lists every current inpatient),
/// by someone whose job includes that purpose regularly, is not curiosity;
/// clinical content is.
fn justified(a: &Access, patient: &str, ctx: &Context) -> bool {
    if matches!(ctx.relation, Relation::Treating) || ctx.routine_purpose {
        return true;
    }
    ctx.regular_purpose
        && a.outcome == "success"
        && a.resource_type
            .as_deref()
            .is_some_and(|r| ADMINISTRATIVE_RESOURCES.contains(&r))
        && ctx.reference.in_care(patient, ctx.time)
}

fn opened(a: &Access) -> &'static str {
    if a.outcome == "success" {
        "opened"
    } else {
        "tried to open"
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PersonalConfig {
    /// Seconds before the same actor and patient fire again.
    pub renotify_secs: u64,
}

impl Default for PersonalConfig {
    fn default() -> Self {
        PersonalConfig {
            renotify_secs: 86_400,
        }
    }
}

/// `personal`: an actor opens the chart of someone they know outside of
/// work: their own (roster `patient`), a family member's, a household
/// member's or a neighbour's (links table), or a coworker's (the roster
/// `patient` of another member of the actor's department). Curiosity about people one knows is what
/// most snooping is; the first such chart breaks the rule, without a count
/// to wait for. A coworker's or relative's chart opened with a job reason
/// (see [`justified`]: on the care team, treated before, the department's
/// patient, a routine job function) passes; one's own never does: staff
/// read their own results through the patient portal, like any patient.
#[derive(Clone)]
pub struct Personal {
    cfg: PersonalConfig,
    fired: RecentSet,
}

impl Personal {
    pub fn new(cfg: &PersonalConfig) -> Self {
        Personal {
            cfg: cfg.clone(),
            fired: RecentSet::new(MAX_FIRED),
        }
    }
}

impl Detector for Personal {
    fn name(&self) -> &'static str {
        "personal"
    }

    fn observe(&mut self, event: &Event, ctx: &Context, findings: &mut Vec<Finding>) {
        let Some((a, patient)) = patient_access(event) else {
            return;
        };
        let Some(tie) = ctx.reference.tie(&event.actor.id, ctx.dept, patient) else {
            return;
        };
        let secs = self.cfg.renotify_secs;
        if tie != Tie::Own && justified(a, patient, ctx)
            || !first_in_period(&mut self.fired, &event.actor.id, patient, ctx.time, secs)
        {
            return;
        }
        let how = opened(a);
        let purpose = a.purpose.as_deref().unwrap_or("no purpose");
        let (severity, summary) = match tie {
            Tie::Own => (
                Severity::Medium,
                format!(
                    "{how} their own chart ({} {purpose}; roster: the actor's own patient record)",
                    a.action
                ),
            ),
            Tie::Linked(relation) => (
                Severity::High,
                format!(
                    "{how} the chart of someone linked to them as {relation} (links table) \
                     with no treatment relationship ({} {purpose})",
                    a.action
                ),
            ),
            Tie::Coworker => (
                Severity::High,
                format!(
                    "{how} the chart of a coworker of the same department (roster: their own \
                     patient record) with no treatment relationship ({} {purpose})",
                    a.action
                ),
            ),
        };
        findings.push(finding("personal", severity, event, ctx, 0, summary));
    }

    fired_state!();
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TerminationConfig {
    /// Seconds before the same actor fires again.
    pub renotify_secs: u64,
}

impl Default for TerminationConfig {
    fn default() -> Self {
        TerminationConfig {
            renotify_secs: 3600,
        }
    }
}

#[derive(Clone)]
pub struct Termination {
    cfg: TerminationConfig,
    fired: RecentSet,
}

impl Termination {
    pub fn new(cfg: &TerminationConfig) -> Self {
        Termination {
            cfg: cfg.clone(),
            fired: RecentSet::new(MAX_FIRED),
        }
    }
}

impl Detector for Termination {
    fn name(&self) -> &'static str {
        "termination"
    }

    fn observe(&mut self, event: &Event, ctx: &Context, findings: &mut Vec<Finding>) {
        let Some(staff) = ctx.staff else {
            return;
        };
        let (severity, summary) = match (staff.terminated, staff.hired) {
            (Some(end), _) if ctx.time >= end => (
                Severity::Critical,
                format!(
                    "{} by an account terminated {} before (at {})",
                    what(event),
                    ago(ctx.time - end),
                    end.to_rfc3339()
                ),
            ),
            (_, Some(start)) if ctx.time < start => (
                Severity::High,
                format!(
                    "{} by an account whose holder starts {} later (hired {})",
                    what(event),
                    ago(start - ctx.time),
                    start.to_rfc3339()
                ),
            ),
            _ => return,
        };
        let key = key_hash(&[&event.actor.id, &period(ctx.time, self.cfg.renotify_secs)]);
        if !self.fired.insert(key) {
            return;
        }
        findings.push(finding("termination", severity, event, ctx, 0, summary));
    }

    fired_state!();
}

fn what(event: &Event) -> String {
    match &event.body {
        Body::Access(a) => format!("{} ({})", a.action, a.outcome),
        Body::Inference(i) => format!("inference on {}", i.model_id),
        Body::Lineage(l) => format!("lineage {}", l.op),
    }
}

fn ago(d: chrono::Duration) -> String {
    let s = d.num_seconds().max(0);
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s / 60),
        7200..172_800 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportConfig {
    pub window_secs: u64,
    /// Records to destinations off the allow-list, per actor and window,
    /// at which it fires.
    pub min_records: u64,
    /// Actions that move records out.
    pub actions: Vec<String>,
    pub max_actors: usize,
    pub max_evidence: usize,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            window_secs: 3600,
            min_records: 50,
            actions: vec!["export".into(), "print".into()],
            max_actors: 200_000,
            max_evidence: 20,
        }
    }
}

impl ExportConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.window_secs == 0 || self.min_records == 0 || self.max_actors == 0 {
            problems.push(format!(
                "{at}: window_secs, min_records and max_actors must be at least 1"
            ));
        }
        if self.actions.is_empty() {
            problems.push(format!("{at}.actions must name at least one action"));
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ExportWindow {
    window: i64,
    records: u64,
    destinations: Vec<String>,
    evidence: Vec<String>,
    fired: bool,
}

#[derive(Clone)]
pub struct BulkExport {
    cfg: ExportConfig,
    actors: HashMap<String, ExportWindow>,
    evictions: u64,
}

impl BulkExport {
    pub fn new(cfg: &ExportConfig) -> Self {
        BulkExport {
            cfg: cfg.clone(),
            actors: HashMap::new(),
            evictions: 0,
        }
    }
}

impl Detector for BulkExport {
    fn name(&self) -> &'static str {
        "bulk_export"
    }

    fn observe(&mut self, event: &Event, ctx: &Context, findings: &mut Vec<Finding>) {
        let Body::Access(a) = &event.body else { return };
        if a.outcome != "success" || !self.cfg.actions.contains(&a.action) {
            return;
        }
        let dest = a.destination.as_deref().unwrap_or("");
        let allow = ctx.reference.loaded().export_allow;
        if allow && !dest.is_empty() && ctx.reference.export_allowed(dest) {
            return;
        }
        let w = ctx.time.timestamp().div_euclid(self.cfg.window_secs as i64);
        if !self.actors.contains_key(&event.actor.id) && self.actors.len() >= self.cfg.max_actors {
            // Exports are rare: dropping the stalest actor one at a time is cheap.
            if let Some(k) = self
                .actors
                .iter()
                .min_by_key(|(_, s)| s.window)
                .map(|(k, _)| k.clone())
            {
                self.actors.remove(&k);
                self.evictions += 1;
            }
        }
        let s = self.actors.entry(event.actor.id.clone()).or_default();
        if w > s.window {
            *s = ExportWindow {
                window: w,
                ..Default::default()
            };
        }
        s.records = s.records.saturating_add(a.records);
        let shown = if dest.is_empty() {
            "(no destination)"
        } else {
            dest
        };
        if s.destinations.len() < 5 && !s.destinations.iter().any(|d| d == shown) {
            s.destinations.push(shown.to_owned());
        }
        if s.evidence.len() < self.cfg.max_evidence {
            s.evidence.push(event.id.clone());
        }
        if s.fired || s.records < self.cfg.min_records {
            return;
        }
        s.fired = true;
        let list = if allow {
            "not on the allow-list"
        } else {
            "no allow-list loaded"
        };
        let summary = format!(
            "{} records exported or printed in {} to {} ({list}); threshold {}",
            s.records,
            span(self.cfg.window_secs),
            s.destinations.join(", "),
            self.cfg.min_records
        );
        let start =
            DateTime::from_timestamp(w * self.cfg.window_secs as i64, 0).unwrap_or_default();
        findings.push(Finding {
            detector: "bulk_export".into(),
            severity: if s.records >= 10 * self.cfg.min_records {
                Severity::Critical
            } else {
                Severity::High
            },
            actor: event.actor.id.clone(),
            patient: None,
            model: None,
            window_start: start,
            window_end: start + chrono::Duration::seconds(self.cfg.window_secs as i64),
            score: s.records as f64 / self.cfg.min_records as f64,
            observed: s.records as f64,
            expected: self.cfg.min_records as f64,
            summary,
            evidence: s.evidence.clone(),
            evidence_total: s.evidence.len() as u64,
        });
    }

    fn keys(&self) -> usize {
        self.actors.len()
    }

    fn evictions(&self) -> u64 {
        self.evictions
    }

    fn save(&self) -> Vec<u8> {
        let actors: std::collections::BTreeMap<&String, &ExportWindow> =
            self.actors.iter().collect();
        StateWriter::new()
            .field("actors", &actors)
            .field("evictions", &self.evictions)
            .finish()
    }

    fn load(&mut self, state: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Saved {
            actors: HashMap<String, ExportWindow>,
            evictions: u64,
        }
        let s: Saved = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        self.actors = s.actors;
        self.evictions = s.evictions;
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentConfig {
    /// Purposes of use that need the patient's consent (HL7 PurposeOfUse).
    pub purposes: Vec<String>,
    /// Seconds before the same actor fires again (a sweep over many
    /// patients is one finding per period, its first patient as evidence).
    pub renotify_secs: u64,
}

impl Default for ConsentConfig {
    fn default() -> Self {
        ConsentConfig {
            purposes: ["HRESCH", "CLINTRCH", "HMARKT", "HDIRECT"]
                .map(String::from)
                .to_vec(),
            renotify_secs: 3600,
        }
    }
}

#[derive(Clone)]
pub struct ConsentCheck {
    cfg: ConsentConfig,
    fired: RecentSet,
}

impl ConsentCheck {
    pub fn new(cfg: &ConsentConfig) -> Self {
        ConsentCheck {
            cfg: cfg.clone(),
            fired: RecentSet::new(MAX_FIRED),
        }
    }
}

impl Detector for ConsentCheck {
    fn name(&self) -> &'static str {
        "consent"
    }

    fn observe(&mut self, event: &Event, ctx: &Context, findings: &mut Vec<Finding>) {
        if !ctx.reference.loaded().consent {
            return;
        }
        let (Some(patient), Some(purpose)) = (event.patient(), event.purpose()) else {
            return;
        };
        if !self.cfg.purposes.iter().any(|p| p == purpose) {
            return;
        }
        let state = ctx.reference.consent(patient, purpose, ctx.time);
        let (severity, why) = match state {
            Consent::Granted => return,
            Consent::Withdrawn => (Severity::High, "withdrawn"),
            Consent::Absent => (Severity::Medium, "not recorded"),
        };
        let key = key_hash(&[&event.actor.id, &period(ctx.time, self.cfg.renotify_secs)]);
        if !self.fired.insert(key) {
            return;
        }
        let summary = format!(
            "{} for purpose {purpose} on a patient whose consent for {purpose} is {why}",
            what(event)
        );
        findings.push(finding("consent", severity, event, ctx, 0, summary));
    }

    fired_state!();
}
