use super::*;
use crate::event::{Access, Actor, Body};

/// Feeds one event with no reference tables and no relationships.
fn see(d: &mut AccessRate, e: &Event, out: &mut Vec<Finding>) {
    let reference = crate::detect::Reference::default();
    let ctx = crate::detect::Context {
        reference: &reference,
        time: e.time.with_timezone(&Utc),
        actor_key: 0,
        shared_id: Default::default(),
        staff: None,
        role: None,
        dept: None,
        patient_key: None,
        group: None,
        relation: crate::detect::Relation::NoPatient,
        own_care: false,
        routine_purpose: false,
        regular_purpose: false,
    };
    d.observe(e, &ctx, out);
}

fn access(actor: &str, secs: i64, n: u64) -> Event {
    Event {
        id: format!("{actor}-{secs}-{n}"),
        time: DateTime::from_timestamp(secs, 0).unwrap().fixed_offset(),
        actor: Actor {
            id: actor.into(),
            ..Actor::default()
        },
        source: None,
        attrs: Default::default(),
        body: Body::Access(Access {
            action: "read".into(),
            outcome: "success".into(),
            patient: Some("pt_x".into()),
            resource_type: None,
            resource_id: None,
            purpose: None,
            records: 1,
            destination: None,
        }),
        extra: Default::default(),
    }
}

/// Feeds `per_window[i]` evenly spread accesses into window `i`.
fn feed(d: &mut AccessRate, actor: &str, start_window: i64, per_window: &[u64]) -> Vec<Finding> {
    let mut out = Vec::new();
    for (i, &n) in per_window.iter().enumerate() {
        let base = (start_window + i as i64) * 60;
        for k in 0..n {
            see(
                d,
                &access(actor, base + (k * 60 / n.max(1)) as i64, k),
                &mut out,
            );
        }
    }
    out
}

fn detector() -> AccessRate {
    AccessRate::new(RateConfig::default())
}

#[test]
fn steady_actor_never_fires() {
    let mut d = detector();
    let pattern: Vec<u64> = (0..600).map(|i| 8 + (i % 5)).collect();
    assert!(feed(&mut d, "emp-1", 1000, &pattern).is_empty());
}

#[test]
fn burst_against_own_baseline_fires_once_with_evidence() {
    let mut d = detector();
    let mut pattern = vec![5u64; 120];
    pattern.push(200);
    let found = feed(&mut d, "emp-1", 1000, &pattern);
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.actor, "emp-1");
    assert_eq!(f.detector, "access_rate");
    assert!(f.score >= 6.0 && (f.expected - 5.0).abs() < 0.5, "{f:?}");
    assert_eq!(f.window_start.timestamp(), (1000 + 120) * 60);
    assert!(!f.evidence.is_empty() && f.evidence.len() <= 20);
    assert!(f.evidence[0].starts_with("emp-1-"));
}

#[test]
fn quiet_actor_needs_the_absolute_floor() {
    let mut d = detector();
    // One access per ten minutes, then 12 in a minute: a large z-score but
    // below min_count (30), so not an alert.
    let mut pattern: Vec<u64> = (0..300).map(|i| u64::from(i % 10 == 0)).collect();
    pattern.push(12);
    assert!(feed(&mut d, "emp-2", 0, &pattern).is_empty());
    pattern.push(40);
    let found = feed(
        &mut AccessRate::new(RateConfig::default()),
        "emp-2",
        0,
        &pattern,
    );
    assert_eq!(found.len(), 1);
}

#[test]
fn no_alert_during_warmup() {
    let mut d = detector();
    assert!(feed(&mut d, "new", 0, &[0, 0, 500]).is_empty());
}

#[test]
fn busy_actor_is_judged_by_their_own_history() {
    let mut d = detector();
    // An actor who always does ~100 per minute is not anomalous at 120.
    let mut pattern: Vec<u64> = (0..200).map(|i| 95 + (i % 11)).collect();
    pattern.push(120);
    assert!(feed(&mut d, "svc", 0, &pattern).is_empty());
}

#[test]
fn repeated_bursts_do_not_teach_the_baseline_to_ignore_them() {
    let mut d = detector();
    let mut pattern = vec![5u64; 60];
    for _ in 0..3 {
        pattern.extend([300, 5, 5, 5, 5, 5]);
    }
    assert_eq!(feed(&mut d, "emp-3", 0, &pattern).len(), 3);
}

#[test]
fn state_is_capped() {
    let mut d = AccessRate::new(RateConfig {
        max_actors: 100,
        ..RateConfig::default()
    });
    let mut out = Vec::new();
    for i in 0..1000 {
        see(&mut d, &access(&format!("a{i}"), i, 0), &mut out);
    }
    assert!(d.keys() <= 100, "{}", d.keys());
    assert!(d.evictions() >= 900);
}

#[test]
fn a_busy_new_actor_is_learned_not_flagged() {
    // A service account that starts at ~100 a minute: its first windows set
    // the baseline, so steady traffic after warm-up is not an anomaly.
    let mut d = detector();
    let pattern: Vec<u64> = (0..60).map(|i| 95 + (i % 11)).collect();
    assert!(feed(&mut d, "svc-new", 0, &pattern).is_empty());
}

#[test]
fn a_burst_inside_the_warmup_does_not_become_the_norm() {
    let mut d = detector();
    // Bursts in windows 6-8 of the warm-up, then another right after it.
    let mut pattern = vec![20u64; 6];
    pattern.extend([900, 900, 900, 20]);
    pattern.push(900);
    let found = feed(&mut d, "emp-4", 0, &pattern);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].window_start.timestamp(), 10 * 60);
}

#[test]
fn eviction_keeps_most_actors_active_in_the_same_window() {
    let mut d = AccessRate::new(RateConfig {
        max_actors: 10,
        ..RateConfig::default()
    });
    let mut out = Vec::new();
    for i in 0..10 {
        see(&mut d, &access(&format!("a{i}"), 0, 0), &mut out);
    }
    see(&mut d, &access("newcomer", 0, 0), &mut out);
    assert_eq!(d.keys(), 10, "one actor evicted, not all of them");
    assert_eq!(d.evictions(), 1);
}
