//! Detectors: stateful, event-time-driven checks over the event stream.
//!
//! Each detector implements [`Detector`], is configured as one variant of
//! the closed list [`DetectorConfig`] (a `type = "..."` table in the config
//! file) and is built and validated from it at start. Detectors see only
//! accepted, pseudonymized events; they never read the wall clock (event
//! time drives every window, so tests control time by the events they feed);
//! their per-key state is capped and evicts its stalest keys.
//!
//! State is kept per chain (Kafka partition): [`Detectors`] is one
//! partition's set, so a partition's baselines move with it from one
//! process to another ([`Detectors::save`] / [`Detectors::load`], written
//! as ledger snapshots). A subject's events must therefore meet in one
//! partition: producers key messages by actor (or caller), as the event
//! contract asks.

mod count;
pub mod eval;
mod hours;
mod kinds;
mod memory;
pub mod model;
mod policy;
mod rate;
pub mod reference;
mod relations;
pub mod sql;
mod table;
#[cfg(test)]
mod tests;

pub use count::{CountConfig, CountDetector, CountParams, Model as CountModel};
pub use hours::{OffHours, OffHoursConfig};
pub use kinds::{Breadth, BreakGlass, DeniedBurst, NoRelationship, Pace, Volume};
pub use model::{ModelAbuse, ModelAbuseConfig};
pub use policy::{
    BulkExport, ConsentCheck, ConsentConfig, ExportConfig, Personal, PersonalConfig, Termination,
    TerminationConfig, Vip, VipConfig,
};
pub use rate::{AccessRate, RateConfig};
pub use reference::Reference;
pub use relations::{Relation, Relations};

use crate::ledger::StateWriter;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::event::Event;
use crate::metrics::metrics;

/// What the detectors know about an event besides the event itself,
/// worked out once per event by [`Detectors`].
pub struct Context<'a> {
    /// The reference tables in force.
    pub reference: &'a Reference,
    /// Event time in UTC.
    pub time: DateTime<Utc>,
    /// A stable hash of the actor's id, the key of per-actor state
    /// ([`memory::actor_key`]).
    pub actor_key: u64,
    /// The event's id, shared by the detectors that keep it as evidence
    /// (made on first use: most events are evidence of nothing).
    pub shared_id: std::cell::OnceCell<std::sync::Arc<str>>,
    /// The actor's roster entry, if the roster has one (looked up once per
    /// event).
    pub staff: Option<&'a reference::Staff>,
    /// The actor's role and department: the event's, else the roster's.
    pub role: Option<&'a str>,
    pub dept: Option<&'a str>,
    /// A stable hash of the patient pseudonym, if the event has one.
    pub patient_key: Option<u64>,
    /// A stable hash of the role and department (the peer group), if both
    /// are known.
    pub group: Option<u64>,
    /// How the actor stands to the patient, before this event.
    pub relation: Relation,
    /// The relationship is the actor's own (they treated the patient
    /// before, or a care-team row names them), not only their
    /// department's; implies `relation` is [`Relation::Treating`].
    pub own_care: bool,
    /// The event's purpose of use is not treatment, and is one the actor or
    /// their peer group routinely works under (billing, research, …).
    pub routine_purpose: bool,
    /// The event's purpose of use is not treatment, and is one the actor or
    /// their peer group works under regularly (a few times a shift), if
    /// not routinely; implied by `routine_purpose`.
    pub regular_purpose: bool,
}

impl Context<'_> {
    /// The id of `event` (the event this context is of), one copy shared
    /// by every detector that keeps it.
    pub fn event_id(&self, event: &Event) -> std::sync::Arc<str> {
        self.shared_id
            .get_or_init(|| event.id.as_str().into())
            .clone()
    }
}

/// One detector over the stream.
pub trait Detector: Send + CloneDetector {
    /// Stable name, used in findings and as a metric label.
    fn name(&self) -> &'static str;
    /// Updates state with `event`; appends a finding when it fires.
    fn observe(&mut self, event: &Event, ctx: &Context, findings: &mut Vec<Finding>);
    /// Keys currently held.
    fn keys(&self) -> usize;
    /// Keys evicted so far to stay within the cap.
    fn evictions(&self) -> u64;
    /// The detector's whole state, for a snapshot: JSON text of an object
    /// (see `StateWriter`), which `load` takes back.
    fn save(&self) -> Vec<u8>;
    /// Replaces the state by a saved one (of the same configuration), from
    /// the JSON text `save` wrote. Read straight into the state's own
    /// types: a JSON tree of a million actors' state takes gigabytes.
    fn load(&mut self, state: &[u8]) -> Result<(), String>;
}

/// A copy of a detector with its state, so a snapshot can be encoded off
/// the loop (`Detectors::snapshot`). Every `Clone` detector has it.
pub trait CloneDetector {
    fn clone_box(&self) -> Box<dyn Detector>;
}

impl<T: Detector + Clone + 'static> CloneDetector for T {
    fn clone_box(&self) -> Box<dyn Detector> {
        Box::new(self.clone())
    }
}

/// The detectors' state copied by [`Detectors::snapshot`].
pub struct SavedDetectors {
    config_id: String,
    list: Vec<Box<dyn Detector>>,
    relations: Relations,
    saved_len: SavedLen,
}

impl SavedDetectors {
    /// The state's JSON text, as [`Detectors::save_with`] writes it.
    pub fn encode(&self, more: &[(&str, &[u8])]) -> Vec<u8> {
        self.write(StateWriter::with_capacity(self.size_hint()), more)
            .finish()
    }

    /// Bytes to reserve for the text: the last one's and an eighth, so a
    /// large state is written into one buffer instead of one that doubles
    /// (and is copied) as it grows.
    pub fn size_hint(&self) -> usize {
        self.saved_len.hint()
    }

    /// Writes the state's members (as [`Self::encode`]) into `w`, an
    /// object being written, e.g. the snapshot file's `state`.
    pub fn write(&self, w: StateWriter, more: &[(&str, &[u8])]) -> StateWriter {
        let start = w.len();
        let w = write_state(w, &self.config_id, &self.list, &self.relations, more);
        // (And the braces `encode` puts around them.)
        self.saved_len.set(w.len() - start + 2);
        w
    }
}

/// The length of the last text a chain's state was saved as, shared by
/// the live detectors and their copies.
#[derive(Debug, Clone, Default)]
struct SavedLen(Arc<std::sync::atomic::AtomicUsize>);

impl SavedLen {
    fn hint(&self) -> usize {
        let last = self.0.load(std::sync::atomic::Ordering::Relaxed);
        last + last / 8
    }

    fn set(&self, len: usize) {
        self.0.store(len, std::sync::atomic::Ordering::Relaxed);
    }
}

fn write_state(
    w: StateWriter,
    config_id: &str,
    list: &[Box<dyn Detector>],
    relations: &Relations,
    more: &[(&str, &[u8])],
) -> StateWriter {
    let mut state = w
        .field("config", &config_id)
        .raw_array("detectors", list.iter().map(|d| d.save()))
        .raw("relations", &relations.save());
    for (name, json) in more {
        state = state.raw(name, json);
    }
    state
}

/// Floats in saved state as their IEEE bits, so a restored baseline is
/// bit-for-bit the saved one (decimal text round trips are not exact with
/// every parser) and restored detectors decide exactly as before.
pub(crate) mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(x.to_bits())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        u64::deserialize(d).map(f64::from_bits)
    }
}

/// The closed list of detector types the configuration may name (a
/// `[[detectors]]` table with `type = "..."`); each type's parameters and
/// defaults are documented on its config struct and in docs/detection.md.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DetectorConfig {
    AccessRate(RateConfig),
    Volume(CountConfig<Volume>),
    Pace(CountConfig<Pace>),
    Breadth(CountConfig<Breadth>),
    NoRelationship(CountConfig<NoRelationship>),
    DeniedBurst(CountConfig<DeniedBurst>),
    BreakGlass(CountConfig<BreakGlass>),
    OffHours(OffHoursConfig),
    Vip(VipConfig),
    Personal(PersonalConfig),
    Termination(TerminationConfig),
    BulkExport(ExportConfig),
    Consent(ConsentConfig),
    ModelAbuse(ModelAbuseConfig),
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig::AccessRate(RateConfig::default())
    }
}

impl DetectorConfig {
    /// One detector of every access type with its defaults: the set a
    /// deployment starts from.
    pub fn access_defaults() -> Vec<DetectorConfig> {
        vec![
            DetectorConfig::Volume(Default::default()),
            DetectorConfig::Pace(Default::default()),
            DetectorConfig::Breadth(Default::default()),
            DetectorConfig::NoRelationship(Default::default()),
            DetectorConfig::DeniedBurst(Default::default()),
            DetectorConfig::BreakGlass(Default::default()),
            DetectorConfig::OffHours(Default::default()),
            DetectorConfig::Vip(Default::default()),
            DetectorConfig::Personal(Default::default()),
            DetectorConfig::Termination(Default::default()),
            DetectorConfig::BulkExport(Default::default()),
            DetectorConfig::Consent(Default::default()),
        ]
    }

    pub fn build(&self) -> Box<dyn Detector> {
        match self {
            DetectorConfig::AccessRate(c) => Box::new(AccessRate::new(c.clone())),
            DetectorConfig::Volume(c) => Box::new(CountDetector::new(c)),
            DetectorConfig::Pace(c) => Box::new(CountDetector::new(c)),
            DetectorConfig::Breadth(c) => Box::new(CountDetector::new(c)),
            DetectorConfig::NoRelationship(c) => Box::new(CountDetector::new(c)),
            DetectorConfig::DeniedBurst(c) => Box::new(CountDetector::new(c)),
            DetectorConfig::BreakGlass(c) => Box::new(CountDetector::new(c)),
            DetectorConfig::OffHours(c) => Box::new(OffHours::new(c)),
            DetectorConfig::Vip(c) => Box::new(Vip::new(c)),
            DetectorConfig::Personal(c) => Box::new(Personal::new(c)),
            DetectorConfig::Termination(c) => Box::new(Termination::new(c)),
            DetectorConfig::BulkExport(c) => Box::new(BulkExport::new(c)),
            DetectorConfig::Consent(c) => Box::new(ConsentCheck::new(c)),
            DetectorConfig::ModelAbuse(c) => Box::new(ModelAbuse::new(c)),
        }
    }

    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        match self {
            DetectorConfig::AccessRate(c) => c.validate(at, problems),
            DetectorConfig::Volume(c) => c.validate(at, problems),
            DetectorConfig::Pace(c) => c.validate(at, problems),
            DetectorConfig::Breadth(c) => c.validate(at, problems),
            DetectorConfig::NoRelationship(c) => c.validate(at, problems),
            DetectorConfig::DeniedBurst(c) => c.validate(at, problems),
            DetectorConfig::BreakGlass(c) => c.validate(at, problems),
            DetectorConfig::OffHours(c) => c.validate(at, problems),
            DetectorConfig::BulkExport(c) => c.validate(at, problems),
            DetectorConfig::ModelAbuse(c) => c.validate(at, problems),
            DetectorConfig::Vip(_)
            | DetectorConfig::Personal(_)
            | DetectorConfig::Termination(_)
            | DetectorConfig::Consent(_) => {}
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    /// The name used in findings, labels and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What a detector saw, with enough to explain itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub detector: String,
    pub severity: Severity,
    /// The actor (user, service, API client) the finding is about.
    pub actor: String,
    /// The patient pseudonym it is about, when it is about one patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The model (`id@version`) it is about, for model-abuse findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(with = "crate::event::rfc3339")]
    pub window_start: DateTime<Utc>,
    #[serde(with = "crate::event::rfc3339")]
    pub window_end: DateTime<Utc>,
    /// How unusual, in the detector's own unit (documented per detector).
    pub score: f64,
    pub observed: f64,
    pub expected: f64,
    pub summary: String,
    /// Ids of the events that make the evidence (capped; see `evidence_total`).
    pub evidence: Vec<String>,
    pub evidence_total: u64,
}

/// What every chain's [`Detectors`] are built from: the configured list
/// and the reference tables in force.
#[derive(Debug, Clone, Default)]
pub struct DetectorSetup {
    pub configs: Vec<DetectorConfig>,
    pub reference: Arc<Reference>,
}

impl DetectorSetup {
    pub fn new(configs: Vec<DetectorConfig>) -> Self {
        for c in &configs {
            metrics().declare_detector(c.build().name());
        }
        DetectorSetup {
            configs,
            reference: Arc::default(),
        }
    }

    pub fn build(&self) -> Detectors {
        Detectors::new(&self.configs, self.reference.clone())
    }
}

/// All configured detectors of one chain, fed in order, with what they
/// share: the reference tables and the learned treatment relationships.
pub struct Detectors {
    configs: Vec<DetectorConfig>,
    list: Vec<Box<dyn Detector>>,
    reference: Arc<Reference>,
    relations: Relations,
    findings: Vec<Finding>,
    /// Identifies the configuration a saved state belongs to.
    config_id: String,
    /// Evictions already added to the metric, per detector.
    reported_evictions: Vec<u64>,
    reported_relations: u64,
    /// Length of the last saved state: the next one is written into a
    /// buffer of about that size.
    saved_len: SavedLen,
}

impl Detectors {
    pub fn new(configs: &[DetectorConfig], reference: Arc<Reference>) -> Self {
        let config_json = serde_json::to_vec(configs).unwrap_or_default();
        Detectors {
            configs: configs.to_vec(),
            list: configs.iter().map(DetectorConfig::build).collect(),
            reference,
            relations: Relations::default(),
            findings: Vec::new(),
            config_id: blake3::hash(&config_json).to_hex()[..16].to_owned(),
            reported_evictions: vec![0; configs.len()],
            reported_relations: 0,
            saved_len: Default::default(),
        }
    }

    /// Replaces the reference tables (after a reload).
    pub fn set_reference(&mut self, reference: Arc<Reference>) {
        self.reference = reference;
    }

    /// Feeds one event to every detector and returns what they found.
    pub fn observe(&mut self, event: &Event) -> std::vec::Drain<'_, Finding> {
        self.feed(event);
        let event_time = event.time.with_timezone(&Utc);
        for f in &self.findings {
            metrics().finding(&f.detector, f.severity, event_time);
        }
        self.findings.drain(..)
    }

    /// Feeds one event without keeping findings: state rebuilt from the
    /// ledger, whose findings were raised when the events first came.
    pub fn replay(&mut self, event: &Event) {
        self.feed(event);
        self.findings.clear();
    }

    fn feed(&mut self, event: &Event) {
        let time = event.time.with_timezone(&Utc);
        let staff = self.reference.staff(&event.actor.id);
        let role = event
            .actor
            .role
            .as_deref()
            .or_else(|| staff.and_then(|s| s.role.as_deref()));
        let dept = event
            .actor
            .dept
            .as_deref()
            .or_else(|| staff.and_then(|s| s.dept.as_deref()));
        let keys = memory::Keys {
            actor: memory::actor_key(&event.actor.id),
            patient: event.patient().map(|p| memory::key_hash(&[p])),
            dept: dept.map(|d| memory::key_hash(&["d", d])),
            group: role.zip(dept).map(|(r, d)| memory::key_hash(&[r, d])),
        };
        let (relation, own_care) =
            self.relations
                .classify(event, &keys, dept, &self.reference, time);
        let routine_purpose = self.relations.routine_purpose(event, &keys);
        let ctx = Context {
            reference: &self.reference,
            time,
            actor_key: keys.actor,
            shared_id: std::cell::OnceCell::new(),
            staff,
            role,
            dept,
            patient_key: keys.patient,
            group: keys.group,
            relation,
            own_care,
            routine_purpose,
            regular_purpose: routine_purpose || self.relations.regular_purpose(event, &keys),
        };
        for d in &mut self.list {
            d.observe(event, &ctx, &mut self.findings);
        }
        self.relations.learn(event, &keys, relation);
    }

    /// Every detector's state, tagged with the configuration.
    pub fn save(&self) -> Vec<u8> {
        self.save_with(&[])
    }

    /// Every detector's state, and after it the members `more` (name, JSON
    /// text).
    pub fn save_with(&self, more: &[(&str, &[u8])]) -> Vec<u8> {
        let w = StateWriter::with_capacity(self.saved_len.hint());
        let text = write_state(w, &self.config_id, &self.list, &self.relations, more).finish();
        self.saved_len.set(text.len());
        text
    }

    /// A copy of every detector's state as it stands, to be encoded later
    /// and elsewhere ([`SavedDetectors::encode`] gives what [`save`] gives
    /// now): copying takes a few milliseconds where encoding a large state
    /// takes tens, which the loop would wait for.
    ///
    /// [`save`]: Detectors::save
    pub fn snapshot(&self) -> SavedDetectors {
        SavedDetectors {
            config_id: self.config_id.clone(),
            list: self.list.iter().map(|d| d.clone_box()).collect(),
            relations: self.relations.clone(),
            saved_len: self.saved_len.clone(),
        }
    }

    /// Restores a saved state. Refused (state unchanged) when it was saved
    /// under another detector configuration, or does not load.
    pub fn load(&mut self, state: &[u8]) -> Result<(), String> {
        /// The members, each kept as its text (other members, such as the
        /// sketcher's, are the caller's).
        #[derive(Deserialize)]
        struct Saved<'a> {
            config: Option<String>,
            #[serde(borrow)]
            detectors: Option<Vec<&'a RawValue>>,
            #[serde(borrow)]
            relations: Option<&'a RawValue>,
        }
        let m: Saved<'_> = serde_json::from_slice(state)
            .map_err(|e| format!("the saved state does not parse: {e}"))?;
        if m.config.as_deref() != Some(self.config_id.as_str()) {
            return Err("the saved state belongs to another detector configuration".into());
        }
        let Some(states) = m.detectors else {
            return Err("the saved state has no detector list".into());
        };
        if states.len() != self.list.len() {
            return Err("the saved state has another number of detectors".into());
        }
        let mut fresh: Vec<Box<dyn Detector>> = Vec::with_capacity(states.len());
        for (config, state) in self.configs.iter().zip(states) {
            let mut rebuilt = config.build();
            rebuilt
                .load(state.get().as_bytes())
                .map_err(|e| format!("{}: {e}", rebuilt.name()))?;
            fresh.push(rebuilt);
        }
        let mut relations = Relations::default();
        relations.load(m.relations.map_or(b"null", |r| r.get().as_bytes()))?;
        self.list = fresh;
        self.relations = relations;
        self.reported_evictions = self.list.iter().map(|d| d.evictions()).collect();
        self.reported_relations = self.relations.forgotten();
        // The next snapshot's text is about as long as this one.
        self.saved_len.set(state.len());
        Ok(())
    }

    /// Adds this set's new evictions to the metric; returns (detector, keys
    /// held) for the caller to sum over chains.
    pub fn report(&mut self) -> Vec<(&'static str, usize)> {
        let m = metrics();
        let mut keys = Vec::with_capacity(self.list.len());
        for (d, reported) in self.list.iter().zip(&mut self.reported_evictions) {
            let delta = d.evictions().saturating_sub(*reported);
            *reported = d.evictions();
            m.detector_evictions
                .with_label_values(&[d.name()])
                .inc_by(delta);
            keys.push((d.name(), d.keys()));
        }
        let delta = self
            .relations
            .forgotten()
            .saturating_sub(self.reported_relations);
        self.reported_relations = self.relations.forgotten();
        m.detector_evictions
            .with_label_values(&["relations"])
            .inc_by(delta);
        keys.push(("relations", self.relations.keys()));
        keys
    }
}

/// Publishes the keys held by every chain's detectors.
pub fn report_keys<'a>(chains: impl Iterator<Item = &'a mut Detectors>) {
    let mut totals: std::collections::BTreeMap<&'static str, usize> = Default::default();
    for d in chains {
        for (name, keys) in d.report() {
            *totals.entry(name).or_default() += keys;
        }
    }
    for (name, keys) in totals {
        metrics()
            .detector_keys
            .with_label_values(&[name])
            .set(keys as i64);
    }
}
