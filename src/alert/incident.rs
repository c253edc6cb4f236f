//! Findings correlated into incidents.
//!
//! An incident is what a responder acts on: every finding about one
//! subject — the actor, and the patient when the finding names one — whose
//! window starts before the incident has been quiet for
//! [`IncidentConfig::quiet_secs`] of event time. Guarantees:
//! - **Stable ids.** An incident's id is a hash of its subject and the
//!   window start of its first finding, so the same findings (a replay
//!   after a crash, another process taking a partition over with the same
//!   history) give the same id; receivers deduplicate on it.
//! - **Deduplicated.** A finding whose detector already reported a window
//!   starting at or after its own, in this incident, changes nothing and
//!   raises no update.
//! - **Escalated on agreement.** The severity is the highest finding's,
//!   raised one level when two distinct detectors agree and two levels
//!   when three or more do (never above critical).
//! - **Event time only.** Resolution happens when the stream's event time
//!   passes the incident's last finding by the quiet period; the wall
//!   clock only stamps `raised_at`. Tests control time by the findings and
//!   times they feed.
//! - **Bounded.** At most [`IncidentConfig::max_open`] incidents are open;
//!   beyond that the one quiet for longest is resolved early (its update
//!   says so).
//!
//! The correlator's whole state is its open [`Incident`]s, each of which is
//! also a document the sinks send, so it is rebuilt exactly from the last
//! revision of every incident the outbox holds.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::detect::{Finding, Severity};

/// Grouping and resolution parameters (`[incidents]`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// Event-time seconds without a new finding after which an incident is
    /// resolved; a later finding about the same subject opens a new one.
    pub quiet_secs: u64,
    /// Open incidents held at most.
    pub max_open: usize,
    /// Evidence event ids kept per incident at most (the total is counted).
    pub max_evidence: usize,
    /// The partition number of this process's incidents chain in the
    /// store, `+incidents/<chain>`. Unset: the outbox takes the lowest
    /// empty one no other process holds and keeps it (its
    /// `incidents-chain` file).
    pub chain: Option<u32>,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            quiet_secs: 3600,
            max_open: 100_000,
            max_evidence: 100,
            chain: None,
        }
    }
}

impl IncidentConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.quiet_secs == 0 {
            problems.push(format!("{at}.quiet_secs must be at least 1"));
        }
        if self.max_open == 0 {
            problems.push(format!("{at}.max_open must be at least 1"));
        }
    }
}

/// Where an incident is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// First revision.
    Open,
    /// A later finding changed it.
    Updated,
    /// Quiet for the quiet period (or evicted to stay within the cap).
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Open => "open",
            State::Updated => "updated",
            State::Resolved => "resolved",
        }
    }
}

/// What one detector contributed to an incident: its latest finding, and
/// how many distinct windows it reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub detector: String,
    /// The highest severity this detector gave.
    pub severity: Severity,
    pub findings: u32,
    #[serde(with = "crate::event::rfc3339")]
    pub window_start: DateTime<Utc>,
    #[serde(with = "crate::event::rfc3339")]
    pub window_end: DateTime<Utc>,
    pub score: f64,
    pub observed: f64,
    pub expected: f64,
    pub summary: String,
}

/// One revision of an incident: the document every sink delivers and the
/// ledger records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    /// Stable: hex of the first 16 bytes of BLAKE3 over the subject and the
    /// first finding's window start (see [`incident_id`]).
    pub id: String,
    /// 1 for the first revision, +1 per update.
    pub revision: u32,
    pub state: State,
    pub severity: Severity,
    /// The severity of the previous revision, when it was different (an
    /// Alertmanager sink resolves the alert of the old severity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_severity: Option<Severity>,
    /// The detector of the first finding (stable across revisions, so a
    /// routing label).
    pub detector: String,
    pub actor: String,
    /// The patient pseudonym, for findings about one patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// One line a pager can show.
    pub title: String,
    /// Event time: start of the first finding's window, end of the latest.
    #[serde(with = "crate::event::rfc3339")]
    pub first_seen: DateTime<Utc>,
    #[serde(with = "crate::event::rfc3339")]
    pub last_seen: DateTime<Utc>,
    /// Event time of the resolution.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "opt_time")]
    pub resolved_at: Option<DateTime<Utc>>,
    /// Why it was resolved: `quiet` or `evicted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    /// Per detector, sorted by name.
    pub detectors: Vec<Contribution>,
    /// Distinct findings folded in.
    pub findings: u32,
    /// Evidence event ids (union, capped) and how many there were.
    pub evidence: Vec<String>,
    pub evidence_total: u64,
    /// The finding that made this revision (absent for a resolution), with
    /// its own stable id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding: Option<FindingRef>,
    /// Wall-clock time this revision was made.
    #[serde(with = "crate::event::rfc3339")]
    pub raised_at: DateTime<Utc>,
}

/// A finding inside an incident revision, with its stable id (the same
/// detector, actor and window give the same id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingRef {
    pub id: String,
    #[serde(flatten)]
    pub finding: Finding,
}

mod opt_time {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => crate::event::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.to_utc())
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

/// A severity's name, as in findings and labels.
pub fn severity_name(s: Severity) -> &'static str {
    match s {
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
    }
}

/// Length-prefixed BLAKE3 of the parts, first 16 bytes in hex.
fn short_hash(parts: &[&[u8]]) -> String {
    let mut h = blake3::Hasher::new();
    for part in parts {
        h.update(&(part.len() as u64).to_be_bytes());
        h.update(part);
    }
    hex::encode(&h.finalize().as_bytes()[..16])
}

/// The id of the incident about (`actor`, `patient`) whose first finding's
/// window starts at `start`: hex of the first 16 bytes of BLAKE3 over
/// `"incident"`, the actor, the patient (empty when none) and the start in
/// Unix seconds (8 bytes, big-endian), each prefixed by its length (8
/// bytes, big-endian).
pub fn incident_id(actor: &str, patient: Option<&str>, start: DateTime<Utc>) -> String {
    short_hash(&[
        b"incident",
        actor.as_bytes(),
        patient.unwrap_or("").as_bytes(),
        &start.timestamp().to_be_bytes(),
    ])
}

/// A finding's stable id: the same detector, actor and window start give
/// the same id (what alerts carried before incidents).
pub fn finding_id(f: &Finding) -> String {
    short_hash(&[
        f.detector.as_bytes(),
        f.actor.as_bytes(),
        &f.window_start.timestamp().to_be_bytes(),
    ])
}

fn raise(s: Severity, levels: usize) -> Severity {
    const ORDER: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
    let at = ORDER.iter().position(|&x| x == s).unwrap_or(0);
    ORDER[(at + levels).min(ORDER.len() - 1)]
}

impl Incident {
    fn subject(&self) -> (String, Option<String>) {
        (self.actor.clone(), self.patient.clone())
    }

    /// Severity from the contributions: the highest, raised per agreeing
    /// detector beyond the first (at most two levels).
    fn derived_severity(&self) -> Severity {
        let top = self
            .detectors
            .iter()
            .map(|c| c.severity)
            .max()
            .unwrap_or(Severity::Low);
        raise(top, self.detectors.len().saturating_sub(1).min(2))
    }

    fn retitle(&mut self) {
        let names: Vec<&str> = self.detectors.iter().map(|c| c.detector.as_str()).collect();
        let about = match &self.patient {
            Some(p) => format!("{} on patient {p}", self.actor),
            None => self.actor.clone(),
        };
        self.title = match names.len() {
            1 => format!("{}: {about}", names[0]),
            n => format!("{n} detectors agree ({}): {about}", names.join(", ")),
        };
    }
}

/// The open incidents, keyed by subject.
#[derive(Debug, Default)]
pub struct Correlator {
    config: IncidentConfig,
    open: HashMap<(String, Option<String>), Incident>,
    /// Newest event time seen.
    now: Option<DateTime<Utc>>,
    /// Findings that changed nothing (a replay, or a window already held).
    duplicates: u64,
}

impl Correlator {
    pub fn new(config: IncidentConfig) -> Self {
        Correlator {
            config,
            ..Default::default()
        }
    }

    /// Rebuilds the state from the last revision of each incident (any
    /// order of revisions; older ones are ignored, resolved ones dropped).
    pub fn restore(&mut self, revisions: impl IntoIterator<Item = Incident>) {
        let mut resolved = std::collections::HashSet::new();
        for inc in revisions {
            self.now = self.now.max(Some(inc.last_seen)).max(inc.resolved_at);
            let key = inc.subject();
            if inc.state == State::Resolved {
                if self.open.get(&key).is_some_and(|h| h.id == inc.id) {
                    self.open.remove(&key);
                }
                resolved.insert(inc.id);
                continue;
            }
            if resolved.contains(&inc.id) {
                continue;
            }
            match self.open.get(&key) {
                Some(held) if held.id == inc.id && held.revision >= inc.revision => continue,
                Some(held) if held.id != inc.id && held.first_seen > inc.first_seen => continue,
                _ => {}
            }
            self.open.insert(key, inc);
        }
    }

    pub fn open(&self) -> usize {
        self.open.len()
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// The open incidents, in no particular order.
    pub fn incidents(&self) -> impl Iterator<Item = &Incident> {
        self.open.values()
    }

    /// Folds `finding` into its subject's incident; returns the new
    /// revisions it causes (an eviction to stay within the cap may come
    /// with it), empty for a duplicate.
    pub fn observe(&mut self, finding: Finding, raised_at: DateTime<Utc>) -> Vec<Incident> {
        let mut out = Vec::new();
        // Findings come in event-time order per chain but not across
        // chains and SQL runs: resolve only what the stream has passed.
        self.advance_into(finding.window_end, raised_at, &mut out);
        let key = (finding.actor.clone(), finding.patient.clone());
        let quiet = Duration::seconds(self.config.quiet_secs as i64);
        let fresh = match self.open.get(&key) {
            Some(inc) => finding.window_start > inc.last_seen + quiet,
            None => true,
        };
        if fresh {
            if let Some(old) = self.open.remove(&key) {
                // Quiet for longer than the period, by this finding's own
                // clock, though the stream had not told us yet.
                out.push(resolve(old, "quiet", finding.window_start, raised_at));
            }
            if self.open.len() >= self.config.max_open {
                self.evict(raised_at, &mut out);
            }
            let mut inc = Incident {
                id: incident_id(
                    &finding.actor,
                    finding.patient.as_deref(),
                    finding.window_start,
                ),
                revision: 0,
                state: State::Open,
                severity: finding.severity,
                previous_severity: None,
                detector: finding.detector.clone(),
                actor: finding.actor.clone(),
                patient: finding.patient.clone(),
                title: String::new(),
                first_seen: finding.window_start,
                last_seen: finding.window_end,
                resolved_at: None,
                resolution: None,
                detectors: Vec::new(),
                findings: 0,
                evidence: Vec::new(),
                evidence_total: 0,
                finding: None,
                raised_at,
            };
            fold(&mut inc, finding, self.config.max_evidence, raised_at);
            out.push(inc.clone());
            self.open.insert(key, inc);
            return out;
        }
        let inc = self.open.get_mut(&key).expect("checked above");
        let duplicate = inc
            .detectors
            .iter()
            .any(|c| c.detector == finding.detector && c.window_start >= finding.window_start);
        if duplicate {
            self.duplicates += 1;
            return out;
        }
        fold(inc, finding, self.config.max_evidence, raised_at);
        out.push(inc.clone());
        out
    }

    /// Resolves the incidents the stream's event time `now` has left quiet
    /// for the quiet period.
    pub fn advance(&mut self, now: DateTime<Utc>, raised_at: DateTime<Utc>) -> Vec<Incident> {
        let mut out = Vec::new();
        self.advance_into(now, raised_at, &mut out);
        out
    }

    fn advance_into(
        &mut self,
        now: DateTime<Utc>,
        raised_at: DateTime<Utc>,
        out: &mut Vec<Incident>,
    ) {
        if self.now.is_some_and(|n| n >= now) {
            return;
        }
        self.now = Some(now);
        let quiet = Duration::seconds(self.config.quiet_secs as i64);
        let due: Vec<_> = self
            .open
            .iter()
            .filter(|(_, inc)| inc.last_seen + quiet <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut resolved: Vec<Incident> = due
            .into_iter()
            .filter_map(|k| self.open.remove(&k))
            .map(|inc| {
                let at = inc.last_seen + quiet;
                resolve(inc, "quiet", at, raised_at)
            })
            .collect();
        resolved.sort_by(|a, b| (a.last_seen, &a.id).cmp(&(b.last_seen, &b.id)));
        out.extend(resolved);
    }

    fn evict(&mut self, raised_at: DateTime<Utc>, out: &mut Vec<Incident>) {
        let Some(key) = self
            .open
            .iter()
            .min_by(|a, b| (a.1.last_seen, &a.1.id).cmp(&(b.1.last_seen, &b.1.id)))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        if let Some(inc) = self.open.remove(&key) {
            let at = self.now.unwrap_or(inc.last_seen);
            tracing::warn!(incident = %inc.id, "resolving the incident quiet longest: incidents.max_open reached");
            out.push(resolve(inc, "evicted", at, raised_at));
        }
    }
}

fn resolve(mut inc: Incident, why: &str, at: DateTime<Utc>, raised_at: DateTime<Utc>) -> Incident {
    inc.revision += 1;
    inc.state = State::Resolved;
    inc.previous_severity = None;
    inc.resolved_at = Some(at.max(inc.last_seen));
    inc.resolution = Some(why.to_owned());
    inc.finding = None;
    inc.raised_at = raised_at;
    inc
}

/// Adds a (non-duplicate) finding to an incident as its next revision.
fn fold(inc: &mut Incident, finding: Finding, max_evidence: usize, raised_at: DateTime<Utc>) {
    let before = inc.severity;
    inc.revision += 1;
    inc.state = if inc.revision == 1 {
        State::Open
    } else {
        State::Updated
    };
    inc.findings += 1;
    inc.last_seen = inc.last_seen.max(finding.window_end);
    inc.first_seen = inc.first_seen.min(finding.window_start);
    match inc
        .detectors
        .iter_mut()
        .find(|c| c.detector == finding.detector)
    {
        Some(c) => {
            c.severity = c.severity.max(finding.severity);
            c.findings += 1;
            c.window_start = finding.window_start;
            c.window_end = finding.window_end;
            c.score = finding.score;
            c.observed = finding.observed;
            c.expected = finding.expected;
            c.summary = finding.summary.clone();
        }
        None => {
            inc.detectors.push(Contribution {
                detector: finding.detector.clone(),
                severity: finding.severity,
                findings: 1,
                window_start: finding.window_start,
                window_end: finding.window_end,
                score: finding.score,
                observed: finding.observed,
                expected: finding.expected,
                summary: finding.summary.clone(),
            });
            inc.detectors.sort_by(|a, b| a.detector.cmp(&b.detector));
        }
    }
    for id in &finding.evidence {
        if inc.evidence.len() >= max_evidence {
            break;
        }
        if !inc.evidence.contains(id) {
            inc.evidence.push(id.clone());
        }
    }
    inc.evidence_total += finding.evidence_total.max(finding.evidence.len() as u64);
    inc.severity = inc.derived_severity().max(before);
    inc.previous_severity = (inc.revision > 1 && inc.severity != before).then_some(before);
    inc.retitle();
    inc.raised_at = raised_at;
    inc.finding = Some(FindingRef {
        id: finding_id(&finding),
        finding,
    });
}

#[cfg(test)]
#[path = "incident_tests.rs"]
mod tests;
