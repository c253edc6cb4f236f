//! Scoring detectors against labelled misuse: recall per scenario type,
//! time to detect, and false alerts per 1,000 benign actor-days.
//!
//! A finding *matches* a labelled instance when it names the instance's
//! actor and either cites one of the instance's events as evidence or was
//! raised between the instance's start and one hour after its end. An
//! instance is detected when at least one finding matches it; its time to
//! detect is the event time of the event that raised the first matching
//! finding minus the instance's `detectable_at` (the first moment the
//! misuse could be seen at all), never below zero. Every finding that
//! matches no instance is a false alert. Actor-days are the (actor, UTC
//! day) pairs with any event; benign ones are those without a labelled
//! instance of that actor overlapping that day.
//!
//! Detectors that compare an actor with their own history and their
//! peers' need history first. The first `learn` of the stream is their
//! learning period: instances whose `detectable_at` falls in it are
//! reported apart (not in recall), findings raised in it are not counted
//! as false alerts, and actor-days in it are not benign actor-days.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::Finding;

/// One labelled misuse instance (a line of `labels.jsonl`).
#[derive(Debug, Clone, Deserialize)]
pub struct Label {
    pub scenario: String,
    pub actor: String,
    #[serde(with = "crate::event::rfc3339")]
    pub start: DateTime<Utc>,
    #[serde(with = "crate::event::rfc3339")]
    pub end: DateTime<Utc>,
    #[serde(with = "crate::event::rfc3339")]
    pub detectable_at: DateTime<Utc>,
    pub events: Vec<String>,
}

/// A finding and the event time of the event that raised it.
pub struct Raised {
    pub finding: Finding,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct ScenarioScore {
    pub instances: usize,
    pub detected: usize,
    /// Seconds from `detectable_at` to the first matching finding, per
    /// detected instance.
    pub delays: Vec<f64>,
    /// Detectors that matched, with the instances each matched.
    pub by_detector: BTreeMap<String, usize>,
    /// Per detected instance: its events up to and including the first
    /// alert (for attacks: the queries the attacker got in before it).
    pub events_to_detect: Vec<usize>,
}

impl ScenarioScore {
    pub fn recall(&self) -> f64 {
        if self.instances == 0 {
            return 0.0;
        }
        self.detected as f64 / self.instances as f64
    }

    /// The `q` quantile of the delays (nearest rank), if any.
    pub fn delay(&self, q: f64) -> Option<f64> {
        let mut d = self.delays.clone();
        d.sort_by(f64::total_cmp);
        let i = ((q * d.len() as f64).ceil() as usize).clamp(1, d.len().max(1)) - 1;
        d.get(i).copied()
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub scenarios: BTreeMap<String, ScenarioScore>,
    /// Instances in the learning period, and how many of them were detected.
    pub learning: (usize, usize),
    pub findings: usize,
    pub false_alerts: usize,
    pub false_by_detector: BTreeMap<String, usize>,
    pub actor_days: usize,
    pub benign_actor_days: usize,
    /// Actors with a false alert.
    pub false_actors: std::collections::BTreeSet<String>,
    /// Every instance outside the learning period, in label order.
    pub instances: Vec<Instance>,
}

/// How one labelled instance fared.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub scenario: String,
    pub actor: String,
    pub events: usize,
    /// Its events up to and including the first alert, if detected.
    pub events_to_detect: Option<usize>,
    pub delay_secs: Option<f64>,
}

impl Report {
    pub fn false_per_1000_actor_days(&self) -> f64 {
        if self.benign_actor_days == 0 {
            return 0.0;
        }
        1000.0 * self.false_alerts as f64 / self.benign_actor_days as f64
    }
}

const SLACK_SECS: i64 = 3600;

fn day(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(86_400)
}

/// Scores `raised` against `labels`; `actor_days` are the (actor, day)
/// pairs with any event; `times` the event times of labelled events.
pub fn score(
    labels: &[Label],
    raised: &[Raised],
    actor_days: &HashSet<(String, i64)>,
    times: &HashMap<String, DateTime<Utc>>,
    learned_from: DateTime<Utc>,
) -> Report {
    let mut report = Report {
        findings: raised.len(),
        actor_days: actor_days.len(),
        ..Default::default()
    };
    let mut by_actor: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, l) in labels.iter().enumerate() {
        by_actor.entry(&l.actor).or_default().push(i);
        if l.detectable_at >= learned_from {
            report
                .scenarios
                .entry(l.scenario.clone())
                .or_default()
                .instances += 1;
        }
    }
    let events: Vec<HashSet<&str>> = labels
        .iter()
        .map(|l| l.events.iter().map(String::as_str).collect())
        .collect();
    // First matching finding per label: (time, detector).
    let mut first: Vec<Option<(DateTime<Utc>, &str)>> = vec![None; labels.len()];
    let mut matched_detectors: Vec<HashSet<&str>> = vec![HashSet::new(); labels.len()];
    for r in raised {
        let f = &r.finding;
        let mut matched = false;
        for &i in by_actor.get(f.actor.as_str()).into_iter().flatten() {
            let l = &labels[i];
            let cites = f.evidence.iter().any(|id| events[i].contains(id.as_str()));
            let during = r.at >= l.start && r.at <= l.end + chrono::Duration::seconds(SLACK_SECS);
            if cites || during {
                matched = true;
                matched_detectors[i].insert(&f.detector);
                if first[i].is_none_or(|(t, _)| r.at < t) {
                    first[i] = Some((r.at, &f.detector));
                }
            }
        }
        if !matched && r.at >= learned_from {
            report.false_alerts += 1;
            report.false_actors.insert(f.actor.clone());
            *report
                .false_by_detector
                .entry(f.detector.clone())
                .or_default() += 1;
        }
    }
    for (i, l) in labels.iter().enumerate() {
        if l.detectable_at < learned_from {
            report.learning.0 += 1;
            report.learning.1 += usize::from(first[i].is_some());
            continue;
        }
        let s = report.scenarios.entry(l.scenario.clone()).or_default();
        let mut instance = Instance {
            scenario: l.scenario.clone(),
            actor: l.actor.clone(),
            events: l.events.len(),
            events_to_detect: None,
            delay_secs: None,
        };
        if let Some((t, _)) = first[i] {
            s.detected += 1;
            let delay = ((t - l.detectable_at).num_milliseconds() as f64 / 1000.0).max(0.0);
            s.delays.push(delay);
            let before = l
                .events
                .iter()
                .filter(|id| times.get(id.as_str()).is_some_and(|at| *at <= t))
                .count();
            s.events_to_detect.push(before);
            instance.events_to_detect = Some(before);
            instance.delay_secs = Some(delay);
            for d in &matched_detectors[i] {
                *s.by_detector.entry((*d).to_owned()).or_default() += 1;
            }
        }
        report.instances.push(instance);
    }
    let mut misuse_days: HashSet<(&str, i64)> = HashSet::new();
    for l in labels {
        for d in day(l.start)..=day(l.end) {
            misuse_days.insert((&l.actor, d));
        }
    }
    report.benign_actor_days = actor_days
        .iter()
        .filter(|(a, d)| *d >= day(learned_from) && !misuse_days.contains(&(a.as_str(), *d)))
        .count();
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Severity;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_772_409_600 + secs, 0).unwrap()
    }

    fn finding(actor: &str, evidence: &[&str]) -> Finding {
        Finding {
            detector: "d".into(),
            severity: Severity::High,
            actor: actor.into(),
            patient: None,
            model: None,
            window_start: t(0),
            window_end: t(0),
            score: 1.0,
            observed: 1.0,
            expected: 0.0,
            summary: String::new(),
            evidence: evidence.iter().map(|s| s.to_string()).collect(),
            evidence_total: evidence.len() as u64,
        }
    }

    fn label(scenario: &str, actor: &str, start: i64, end: i64, events: &[&str]) -> Label {
        Label {
            scenario: scenario.into(),
            actor: actor.into(),
            start: t(start),
            end: t(end),
            detectable_at: t(start + 10),
            events: events.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn matches_by_evidence_or_time_and_counts_the_rest_as_false() {
        let labels = vec![
            label("snooping", "a", 100, 200, &["e1", "e2"]),
            label("snooping", "b", 100, 200, &["e3"]),
            label("vip_curiosity", "c", 100, 200, &["e4"]),
        ];
        let raised = vec![
            // Cites e2, raised well after the end: still a match.
            Raised {
                finding: finding("a", &["e2"]),
                at: t(90_000),
            },
            // Raised during b's instance, citing other events.
            Raised {
                finding: finding("b", &["x"]),
                at: t(150),
            },
            // The same actor a day later, nothing cited: false.
            Raised {
                finding: finding("b", &["y"]),
                at: t(90_000),
            },
            // Nobody's misuse: false.
            Raised {
                finding: finding("z", &["q"]),
                at: t(150),
            },
        ];
        let days: HashSet<(String, i64)> = ["a", "b", "c", "z"]
            .iter()
            .flat_map(|a| (20514..20516).map(move |d| (a.to_string(), d)))
            .collect();
        // e1 came at 110, e2 at 120: a's first alert (at 90000) came after
        // both; b's (at 150) after e3 at 150.
        let times: HashMap<String, DateTime<Utc>> =
            [("e1", 110), ("e2", 120), ("e3", 150), ("e4", 110)]
                .iter()
                .map(|(id, s)| (id.to_string(), t(*s)))
                .collect();
        let r = score(&labels, &raised, &days, &times, t(0));
        let s = &r.scenarios["snooping"];
        assert_eq!(s.events_to_detect, vec![2, 1]);
        assert_eq!(r.instances.len(), 3);
        assert_eq!(r.instances[2].events_to_detect, None);
        assert_eq!(
            r.false_actors.iter().collect::<Vec<_>>(),
            vec!["b", "z"],
            "b's second alert is false"
        );
        assert_eq!((s.instances, s.detected), (2, 2));
        assert_eq!(s.recall(), 1.0);
        assert_eq!(r.scenarios["vip_curiosity"].recall(), 0.0);
        assert_eq!(r.false_alerts, 2);
        // 8 actor-days, 3 of them hold misuse.
        assert_eq!((r.actor_days, r.benign_actor_days), (8, 5));
        assert_eq!(r.false_per_1000_actor_days(), 400.0);
        // Delays: b at 150 - 110 = 40 s; a at 90000 - 110.
        assert_eq!(s.delay(0.0), Some(40.0));

        // With a learning period of one day: a's instance, the false alert
        // on day 0 and the actor-days of day 0 drop out.
        let r = score(&labels, &raised, &days, &times, t(86_400));
        assert_eq!(r.learning, (3, 2));
        assert!(r.scenarios.is_empty());
        assert_eq!(r.false_alerts, 1);
        assert_eq!(r.benign_actor_days, 4);
    }
}
