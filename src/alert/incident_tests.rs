use chrono::{DateTime, TimeZone, Utc};

use super::*;
use crate::detect::{Finding, Severity};

fn t(minute: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap() + chrono::Duration::minutes(minute)
}

fn finding(
    detector: &str,
    actor: &str,
    patient: Option<&str>,
    start: i64,
    sev: Severity,
) -> Finding {
    Finding {
        detector: detector.into(),
        severity: sev,
        actor: actor.into(),
        patient: patient.map(str::to_owned),
        model: None,
        window_start: t(start),
        window_end: t(start + 10),
        score: 7.5,
        observed: 40.0,
        expected: 6.0,
        summary: format!("{detector} fired"),
        evidence: vec![
            format!("{detector}-{start}-a"),
            format!("{detector}-{start}-b"),
        ],
        evidence_total: 2,
    }
}

fn correlator() -> Correlator {
    Correlator::new(IncidentConfig {
        quiet_secs: 3600,
        max_open: 100,
        max_evidence: 100,
        ..IncidentConfig::default()
    })
}

#[test]
fn findings_about_one_subject_group_into_one_incident() {
    let mut c = correlator();
    let now = Utc::now();
    let a = c.observe(finding("volume", "emp-1", None, 0, Severity::Medium), now);
    let b = c.observe(finding("breadth", "emp-1", None, 5, Severity::Medium), now);
    assert_eq!(a.len(), 1);
    assert_eq!(b.len(), 1);
    assert_eq!(a[0].id, b[0].id);
    assert_eq!((a[0].state, a[0].revision), (State::Open, 1));
    assert_eq!((b[0].state, b[0].revision), (State::Updated, 2));
    assert_eq!(b[0].findings, 2);
    assert_eq!(b[0].evidence.len(), 4);
    assert_eq!(b[0].finding.as_ref().unwrap().finding.detector, "breadth");
    // Another actor, and the same actor about one patient, are other subjects.
    let other = c.observe(finding("volume", "emp-2", None, 5, Severity::Medium), now);
    let patient = c.observe(
        finding("vip", "emp-1", Some("pt_1"), 5, Severity::High),
        now,
    );
    assert_ne!(other[0].id, a[0].id);
    assert_ne!(patient[0].id, a[0].id);
    assert_eq!(c.open(), 3);
}

#[test]
fn ids_are_stable_across_correlators() {
    let f = || finding("volume", "emp-1", None, 0, Severity::Medium);
    let a = correlator().observe(f(), Utc::now());
    let b = correlator().observe(f(), Utc::now() + chrono::Duration::hours(3));
    assert_eq!(a[0].id, b[0].id);
    assert_eq!(a[0].id, incident_id("emp-1", None, t(0)));
    assert_eq!(a[0].id.len(), 32);
    assert_eq!(
        a[0].finding.as_ref().unwrap().id,
        finding_id(&f()),
        "the finding keeps its own stable id"
    );
}

#[test]
fn a_finding_already_held_raises_no_update() {
    let mut c = correlator();
    let now = Utc::now();
    assert_eq!(
        c.observe(finding("volume", "emp-1", None, 0, Severity::Medium), now)
            .len(),
        1
    );
    assert!(
        c.observe(finding("volume", "emp-1", None, 0, Severity::Medium), now)
            .is_empty()
    );
    // An older window of a detector that already reported a newer one.
    assert_eq!(
        c.observe(finding("volume", "emp-1", None, 20, Severity::Medium), now)
            .len(),
        1
    );
    assert!(
        c.observe(finding("volume", "emp-1", None, 10, Severity::Medium), now)
            .is_empty()
    );
    assert_eq!(c.duplicates(), 2);
}

#[test]
fn severity_rises_when_detectors_agree() {
    let mut c = correlator();
    let now = Utc::now();
    let one = c.observe(finding("volume", "emp-1", None, 0, Severity::Medium), now);
    assert_eq!(one[0].severity, Severity::Medium);
    // The same detector again does not escalate.
    let again = c.observe(finding("volume", "emp-1", None, 10, Severity::Medium), now);
    assert_eq!(again[0].severity, Severity::Medium);
    assert_eq!(again[0].previous_severity, None);
    let two = c.observe(finding("breadth", "emp-1", None, 12, Severity::Low), now);
    assert_eq!(
        two[0].severity,
        Severity::High,
        "two detectors: one level up"
    );
    assert_eq!(two[0].previous_severity, Some(Severity::Medium));
    let three = c.observe(finding("off_hours", "emp-1", None, 14, Severity::Low), now);
    assert_eq!(
        three[0].severity,
        Severity::Critical,
        "three: two levels up"
    );
    let four = c.observe(
        finding("denied_burst", "emp-1", None, 16, Severity::Low),
        now,
    );
    assert_eq!(four[0].severity, Severity::Critical, "never above critical");
    assert_eq!(four[0].previous_severity, None);
    assert_eq!(four[0].detectors.len(), 4);
    assert!(
        four[0].title.starts_with("4 detectors agree"),
        "{}",
        four[0].title
    );
}

#[test]
fn quiet_incidents_resolve_by_event_time_and_a_new_one_opens_after() {
    let mut c = correlator();
    let now = Utc::now();
    let first = c.observe(finding("volume", "emp-1", None, 0, Severity::Medium), now);
    // 69 minutes: the last finding ended at minute 10, quiet is 60 min.
    assert!(c.advance(t(69), now).is_empty());
    let resolved = c.advance(t(70), now);
    assert_eq!(resolved.len(), 1);
    assert_eq!(resolved[0].id, first[0].id);
    assert_eq!(resolved[0].state, State::Resolved);
    assert_eq!(resolved[0].revision, 2);
    assert_eq!(resolved[0].resolved_at, Some(t(70)));
    assert_eq!(resolved[0].resolution.as_deref(), Some("quiet"));
    assert!(resolved[0].finding.is_none());
    assert_eq!(c.open(), 0);
    // Time never goes back: an older event time resolves nothing.
    assert!(c.advance(t(30), now).is_empty());
    let again = c.observe(finding("volume", "emp-1", None, 80, Severity::Medium), now);
    assert_eq!(again[0].state, State::Open);
    assert_ne!(again[0].id, first[0].id);
}

#[test]
fn a_late_finding_resolves_the_stale_incident_first() {
    let mut c = correlator();
    let now = Utc::now();
    let first = c.observe(finding("volume", "emp-1", None, 0, Severity::Medium), now);
    let out = c.observe(finding("volume", "emp-1", None, 200, Severity::Medium), now);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].id.as_str(), out[0].state),
        (first[0].id.as_str(), State::Resolved)
    );
    assert_eq!(out[1].state, State::Open);
}

#[test]
fn the_cap_resolves_the_incident_quiet_longest() {
    let mut c = Correlator::new(IncidentConfig {
        quiet_secs: 3600,
        max_open: 2,
        max_evidence: 1,
        ..IncidentConfig::default()
    });
    let now = Utc::now();
    let a = c.observe(finding("volume", "emp-1", None, 0, Severity::Medium), now);
    c.observe(finding("volume", "emp-2", None, 5, Severity::Medium), now);
    let out = c.observe(finding("volume", "emp-3", None, 6, Severity::Medium), now);
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].id, a[0].id);
    assert_eq!(out[0].resolution.as_deref(), Some("evicted"));
    assert_eq!(c.open(), 2);
    assert_eq!(out[1].evidence.len(), 1, "evidence is capped");
    assert_eq!(out[1].evidence_total, 2, "but counted");
}

#[test]
fn restore_rebuilds_the_open_incidents_from_their_last_revisions() {
    let mut c = correlator();
    let now = Utc::now();
    let mut revisions = Vec::new();
    revisions.extend(c.observe(finding("volume", "emp-1", None, 0, Severity::Medium), now));
    revisions.extend(c.observe(finding("breadth", "emp-1", None, 5, Severity::Medium), now));
    revisions.extend(c.observe(finding("volume", "emp-2", None, 0, Severity::Medium), now));
    revisions.extend(c.advance(t(76), now));
    revisions.extend(c.observe(finding("volume", "emp-2", None, 100, Severity::Medium), now));
    assert_eq!(c.open(), 1);
    // Any order of revisions gives the same state.
    revisions.reverse();
    let mut restored = correlator();
    restored.restore(revisions.clone());
    assert_eq!(restored.open(), 1);
    let held: Vec<_> = restored.incidents().cloned().collect();
    let live: Vec<_> = c.incidents().cloned().collect();
    assert_eq!(held, live);
    // The restored correlator deduplicates and continues the same way.
    let next = restored.observe(
        finding("breadth", "emp-2", None, 101, Severity::Medium),
        now,
    );
    let expected = c.observe(
        finding("breadth", "emp-2", None, 101, Severity::Medium),
        now,
    );
    assert_eq!(next, expected);
}

#[test]
fn a_revision_round_trips_through_json() {
    let mut c = correlator();
    let inc = c.observe(
        finding("vip", "emp-1", Some("pt_9"), 0, Severity::High),
        Utc::now(),
    );
    let text = serde_json::to_string(&inc[0]).unwrap();
    let back: Incident = serde_json::from_str(&text).unwrap();
    assert_eq!(back, inc[0]);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["finding"]["detector"], "vip");
    assert_eq!(v["state"], "open");
    assert_eq!(v["patient"], "pt_9");
}
