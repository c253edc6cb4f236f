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

mod rate;
pub mod reference;
pub mod sql;

pub use rate::{AccessRate, RateConfig};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::metrics::metrics;

/// One detector over the stream.
pub trait Detector: Send {
    /// Stable name, used in findings and as a metric label.
    fn name(&self) -> &'static str;
    /// Updates state with `event`; appends a finding when it fires.
    fn observe(&mut self, event: &Event, findings: &mut Vec<Finding>);
    /// Keys currently held.
    fn keys(&self) -> usize;
    /// Keys evicted so far to stay within the cap.
    fn evictions(&self) -> u64;
    /// The detector's whole state, for a snapshot.
    fn save(&self) -> serde_json::Value;
    /// Replaces the state by a saved one (of the same configuration).
    fn load(&mut self, state: serde_json::Value) -> Result<(), String>;
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

/// The closed list of detector types the configuration may name.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DetectorConfig {
    AccessRate(RateConfig),
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig::AccessRate(RateConfig::default())
    }
}

impl DetectorConfig {
    pub fn build(&self) -> Box<dyn Detector> {
        match self {
            DetectorConfig::AccessRate(c) => Box::new(AccessRate::new(c.clone())),
        }
    }

    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        match self {
            DetectorConfig::AccessRate(c) => c.validate(at, problems),
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

/// All configured detectors of one chain, fed in order.
pub struct Detectors {
    configs: Vec<DetectorConfig>,
    list: Vec<Box<dyn Detector>>,
    findings: Vec<Finding>,
    /// Identifies the configuration a saved state belongs to.
    config_id: String,
    /// Evictions already added to the metric, per detector.
    reported_evictions: Vec<u64>,
}

impl Detectors {
    pub fn new(configs: &[DetectorConfig]) -> Self {
        let config_json = serde_json::to_vec(configs).unwrap_or_default();
        Detectors {
            configs: configs.to_vec(),
            list: configs.iter().map(DetectorConfig::build).collect(),
            findings: Vec::new(),
            config_id: blake3::hash(&config_json).to_hex()[..16].to_owned(),
            reported_evictions: vec![0; configs.len()],
        }
    }

    /// Feeds one event to every detector and returns what they found.
    pub fn observe(&mut self, event: &Event) -> std::vec::Drain<'_, Finding> {
        for d in &mut self.list {
            d.observe(event, &mut self.findings);
        }
        for f in &self.findings {
            metrics().findings.with_label_values(&[&f.detector]).inc();
        }
        self.findings.drain(..)
    }

    /// Feeds one event without keeping findings: state rebuilt from the
    /// ledger, whose findings were raised when the events first came.
    pub fn replay(&mut self, event: &Event) {
        for d in &mut self.list {
            d.observe(event, &mut self.findings);
        }
        self.findings.clear();
    }

    /// Every detector's state, tagged with the configuration.
    pub fn save(&self) -> serde_json::Value {
        serde_json::json!({
            "config": self.config_id,
            "detectors": self.list.iter().map(|d| d.save()).collect::<Vec<_>>(),
        })
    }

    /// Restores a saved state. Refused (state unchanged) when it was saved
    /// under another detector configuration, or does not load.
    pub fn load(&mut self, state: serde_json::Value) -> Result<(), String> {
        let serde_json::Value::Object(mut m) = state else {
            return Err("the saved state is not an object".into());
        };
        if m.get("config").and_then(|c| c.as_str()) != Some(self.config_id.as_str()) {
            return Err("the saved state belongs to another detector configuration".into());
        }
        let Some(serde_json::Value::Array(states)) = m.remove("detectors") else {
            return Err("the saved state has no detector list".into());
        };
        if states.len() != self.list.len() {
            return Err("the saved state has another number of detectors".into());
        }
        let mut fresh: Vec<Box<dyn Detector>> = Vec::with_capacity(states.len());
        for (config, state) in self.configs.iter().zip(states) {
            let mut rebuilt = config.build();
            rebuilt
                .load(state)
                .map_err(|e| format!("{}: {e}", rebuilt.name()))?;
            fresh.push(rebuilt);
        }
        self.list = fresh;
        self.reported_evictions = self.list.iter().map(|d| d.evictions()).collect();
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
