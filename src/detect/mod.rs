//! Detectors: stateful, event-time-driven checks over the event stream.
//!
//! Each detector implements [`Detector`], is configured as one variant of
//! the closed list [`DetectorConfig`] (a `type = "..."` table in the config
//! file) and is built and validated from it at start. Detectors see only
//! accepted, pseudonymized events; they never read the wall clock (event
//! time drives every window, so tests control time by the events they feed);
//! their per-key state is capped and evicts its stalest keys.

mod rate;

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

/// All configured detectors, fed in order.
pub struct Detectors {
    list: Vec<Box<dyn Detector>>,
    findings: Vec<Finding>,
    observed: u64,
}

impl Detectors {
    pub fn new(configs: &[DetectorConfig]) -> Self {
        Detectors {
            list: configs.iter().map(DetectorConfig::build).collect(),
            findings: Vec::new(),
            observed: 0,
        }
    }

    /// Feeds one event to every detector and returns what they found.
    pub fn observe(&mut self, event: &Event) -> std::vec::Drain<'_, Finding> {
        for d in &mut self.list {
            d.observe(event, &mut self.findings);
        }
        self.observed += 1;
        if self.observed.is_multiple_of(4096) {
            self.report();
        }
        for f in &self.findings {
            metrics().findings.with_label_values(&[&f.detector]).inc();
        }
        self.findings.drain(..)
    }

    /// Publishes state sizes to the metrics.
    pub fn report(&self) {
        let m = metrics();
        for d in &self.list {
            m.detector_keys
                .with_label_values(&[d.name()])
                .set(d.keys() as i64);
            let evicted = m.detector_evictions.with_label_values(&[d.name()]);
            let delta = d.evictions().saturating_sub(evicted.get());
            evicted.inc_by(delta);
        }
    }
}
