//! Unit tests of the whole generator: determinism, the stream's mix and
//! malformed rate, the v1 contract (checked by a small independent reader),
//! and the anomalies. The JSON writer has its own tests in `json`.

use super::defects::DEFECTS;
use super::population::{hour_of, is_night};
use super::vocab::EXTERNAL_DESTINATIONS;
use super::{SynthMessage, Truth, Workload, WorkloadConfig};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()
}

/// Runs `n` messages at `per_sec` messages per simulated second.
fn run(cfg: WorkloadConfig, n: usize, per_sec: u32) -> Vec<(DateTime<Utc>, SynthMessage)> {
    let mut w = Workload::new(cfg);
    let t0 = start();
    let step = 1_000_000 / i64::from(per_sec);
    (0..n)
        .map(|i| {
            let now = t0 + Duration::microseconds(step * i as i64);
            (now, w.next_message(now))
        })
        .collect()
}

fn cfg(seed: u64) -> WorkloadConfig {
    WorkloadConfig {
        seed,
        ..WorkloadConfig::default()
    }
}

fn str_field<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    cur.as_str()
}

/// A small, independent reading of the v1 contract, for the tests.
fn check_event(payload: &[u8]) -> Result<Value, String> {
    if payload.len() > 1 << 20 {
        return Err("oversize".into());
    }
    let text = std::str::from_utf8(payload).map_err(|e| format!("utf8: {e}"))?;
    let v: Value = serde_json::from_str(text).map_err(|e| format!("json: {e}"))?;
    let obj = v.as_object().ok_or("not an object")?;
    let id = obj.get("id").and_then(Value::as_str).ok_or("id")?;
    if id.is_empty() || id.chars().count() > 128 {
        return Err("id length".into());
    }
    let time = obj.get("time").and_then(Value::as_str).ok_or("time")?;
    DateTime::parse_from_rfc3339(time).map_err(|e| format!("time {time}: {e}"))?;
    let actor = obj.get("actor").and_then(Value::as_object).ok_or("actor")?;
    let actor_id = actor.get("id").and_then(Value::as_str).ok_or("actor.id")?;
    if actor_id.is_empty() {
        return Err("actor.id empty".into());
    }
    for (k, f) in actor {
        if !f.is_string() {
            return Err(format!("actor.{k} not a string"));
        }
    }
    if let Some(attrs) = obj.get("attrs") {
        let attrs = attrs.as_object().ok_or("attrs")?;
        if attrs.values().any(|a| !a.is_string()) {
            return Err("attrs not strings".into());
        }
    }
    match obj.get("kind").and_then(Value::as_str).ok_or("kind")? {
        "access" => {
            let action = obj.get("action").and_then(Value::as_str).ok_or("action")?;
            let known = [
                "read", "create", "update", "delete", "search", "export", "print", "login",
            ];
            if !known.contains(&action) {
                return Err(format!("action {action}"));
            }
            if !matches!(action, "login" | "search" | "export") && !obj.contains_key("patient") {
                return Err("patient".into());
            }
            if let Some(o) = obj.get("outcome")
                && !matches!(o.as_str(), Some("success" | "denied" | "error"))
            {
                return Err("outcome".into());
            }
            if let Some(r) = obj.get("records")
                && r.as_u64().is_none_or(|r| r < 1)
            {
                return Err("records".into());
            }
        }
        "inference" => {
            str_field(&v, &["model", "id"]).ok_or("model.id")?;
            str_field(&v, &["model", "version"]).ok_or("model.version")?;
            if let Some(f) = v.get("input").and_then(|i| i.get("features")) {
                let f = f.as_array().ok_or("features")?;
                if f.len() > 4096 || f.iter().any(|x| !x.is_number()) {
                    return Err("features".into());
                }
            }
        }
        "lineage" => {
            let op = obj.get("op").and_then(Value::as_str).ok_or("op")?;
            if !["derive", "train", "deploy", "delete", "erase"].contains(&op) {
                return Err(format!("op {op}"));
            }
            for k in ["inputs", "outputs"] {
                if let Some(a) = obj.get(k) {
                    let a = a.as_array().ok_or(k)?;
                    if a.iter().any(|x| !x.is_string()) {
                        return Err(k.into());
                    }
                }
            }
        }
        other => return Err(format!("kind {other}")),
    }
    Ok(v)
}

#[test]
fn same_seed_same_output() {
    let a = run(cfg(7), 20_000, 50);
    let b = run(cfg(7), 20_000, 50);
    assert!(a == b);
}

#[test]
fn different_seeds_differ() {
    let a = run(cfg(1), 1000, 50);
    let b = run(cfg(2), 1000, 50);
    let same = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x.1.payload == y.1.payload)
        .count();
    assert_eq!(same, 0);
    // Not just the ids: the actors differ too.
    let same_key = a.iter().zip(&b).filter(|(x, y)| x.1.key == y.1.key).count();
    assert!(same_key < 100, "{same_key} of 1000 keys equal");
    let keys_a: HashSet<_> = a.iter().map(|m| &m.1.key).collect();
    let keys_b: HashSet<_> = b.iter().map(|m| &m.1.key).collect();
    assert_ne!(keys_a, keys_b);
}

fn kind_shares(msgs: &[(DateTime<Utc>, SynthMessage)]) -> HashMap<String, f64> {
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    for (_, m) in msgs {
        if m.truth == Truth::Malformed {
            continue;
        }
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        *counts
            .entry(v["kind"].as_str().unwrap().to_string())
            .or_default() += 1;
        total += 1;
    }
    counts
        .into_iter()
        .map(|(k, c)| (k, c as f64 / total as f64))
        .collect()
}

#[test]
fn kind_mix_is_close_to_target() {
    for (anomalies, tolerance) in [(false, 0.01), (true, 0.04)] {
        let msgs = run(
            WorkloadConfig {
                seed: 11,
                anomalies,
                ..WorkloadConfig::default()
            },
            100_000,
            20,
        );
        let shares = kind_shares(&msgs);
        for (kind, target) in [("access", 0.80), ("inference", 0.15), ("lineage", 0.05)] {
            let got = shares.get(kind).copied().unwrap_or(0.0);
            assert!(
                (got - target).abs() <= tolerance,
                "{kind}: {got:.4} vs {target} (anomalies {anomalies})"
            );
        }
    }
}

#[test]
fn malformed_rate_is_close_to_configured() {
    for (rate, n) in [(2000u32, 200_000usize), (50_000, 100_000)] {
        let msgs = run(
            WorkloadConfig {
                seed: 3,
                malformed_per_million: rate,
                ..WorkloadConfig::default()
            },
            n,
            100,
        );
        let bad = msgs
            .iter()
            .filter(|m| m.1.truth == Truth::Malformed)
            .count();
        let expected = n as f64 * f64::from(rate) / 1e6;
        let sd = expected.sqrt();
        assert!(
            (bad as f64 - expected).abs() < 4.0 * sd,
            "{bad} malformed, expected {expected}"
        );
    }
    let none = run(
        WorkloadConfig {
            malformed_per_million: 0,
            ..cfg(3)
        },
        50_000,
        100,
    );
    assert!(none.iter().all(|m| m.1.truth != Truth::Malformed));
}

#[test]
fn well_formed_messages_follow_the_contract() {
    let msgs = run(cfg(5), 100_000, 20);
    let mut ids = HashSet::new();
    let mut non_z = 0;
    for (now, m) in &msgs {
        if m.truth == Truth::Malformed {
            continue;
        }
        let v = check_event(&m.payload)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&m.payload)));
        let id = v["id"].as_str().unwrap();
        assert_eq!(m.id.as_deref(), Some(id));
        assert!(ids.insert(id.to_string()), "duplicate id {id}");
        assert_eq!(v["actor"]["id"].as_str(), Some(m.key.as_str()));
        assert!(m.defect.is_none());
        let t = DateTime::parse_from_rfc3339(v["time"].as_str().unwrap()).unwrap();
        let lag = (*now - t.with_timezone(&Utc)).num_milliseconds();
        assert!((0..1000).contains(&lag), "time {t} vs now {now}");
        if !v["time"].as_str().unwrap().ends_with('Z') {
            non_z += 1;
        }
        assert!(!m.payload.contains(&b'\n'));
        if let Some(f) = v["input"]["features"].as_array() {
            assert_eq!(f.len(), 30);
        }
    }
    assert!(non_z > 1000, "some events carry a non-Z offset");
}

#[test]
fn malformed_messages_break_the_contract() {
    let msgs = run(
        WorkloadConfig {
            malformed_per_million: 100_000,
            ..cfg(9)
        },
        100_000,
        100,
    );
    let mut seen = HashSet::new();
    for (_, m) in msgs.iter().filter(|m| m.1.truth == Truth::Malformed) {
        let defect = m.defect.unwrap();
        seen.insert(defect);
        assert!(m.id.is_none());
        assert!(!m.payload.is_empty());
        assert!(!m.payload.contains(&b'\n'), "{defect}");
        if defect == "duplicate_key" {
            // serde_json keeps the last value; check the raw text instead.
            let text = std::str::from_utf8(&m.payload).unwrap();
            let keys: Vec<&str> = ["\"id\":", "\"kind\":", "\"patient\":"]
                .into_iter()
                .filter(|k| text.matches(k).count() > 1)
                .collect();
            assert!(!keys.is_empty(), "{text}");
            continue;
        }
        assert!(
            check_event(&m.payload).is_err(),
            "{defect} accepted: {}",
            String::from_utf8_lossy(&m.payload)
        );
    }
    // Every defect class except the rarest shows up in 10 000 malformed messages.
    for &(d, w) in DEFECTS {
        if w >= 20 {
            assert!(seen.contains(d.name()), "{} never generated", d.name());
        }
    }
}

#[test]
fn rate_burst_within_two_hours_when_on_never_when_off() {
    for seed in 0..5 {
        let msgs = run(cfg(seed), 2 * 3600 * 10, 10);
        assert!(
            msgs.iter().any(|m| m.1.truth == Truth::RateBurst),
            "seed {seed}: no burst in 2 h"
        );
    }
    let off = run(
        WorkloadConfig {
            anomalies: false,
            ..cfg(0)
        },
        2 * 3600 * 10,
        10,
    );
    assert!(
        off.iter()
            .all(|m| matches!(m.1.truth, Truth::Normal | Truth::Malformed))
    );
}

#[test]
fn rate_burst_stands_out_in_a_60s_window() {
    // Daytime, 20 messages/s for 2 hours.
    let msgs = run(cfg(21), 2 * 3600 * 20, 20);
    let bursts: HashSet<&str> = msgs
        .iter()
        .filter(|m| m.1.truth == Truth::RateBurst)
        .map(|m| m.1.key.as_str())
        .collect();
    assert!(!bursts.is_empty());
    let t0 = msgs[0].0;
    for actor in bursts {
        // Messages of this actor per minute, and the minutes of its bursts.
        let mut per_min: HashMap<i64, usize> = HashMap::new();
        let mut burst_min = HashSet::new();
        for (t, m) in &msgs {
            if m.key == actor {
                let minute = (*t - t0).num_minutes();
                *per_min.entry(minute).or_default() += 1;
                if m.truth == Truth::RateBurst {
                    burst_min.insert(minute);
                }
            }
        }
        let minutes = (msgs.last().unwrap().0 - t0).num_minutes() + 1;
        let normal_total: usize = per_min
            .iter()
            .filter(|(k, _)| !burst_min.contains(k))
            .map(|(_, c)| c)
            .sum();
        let baseline = normal_total as f64 / (minutes - burst_min.len() as i64) as f64;
        let peak = *per_min.values().max().unwrap() as f64;
        assert!(
            peak >= 10.0 * baseline && peak >= 30.0,
            "{actor}: peak {peak}/min vs baseline {baseline:.2}/min"
        );
    }
}

#[test]
fn other_anomalies_appear_over_a_day() {
    let msgs = run(cfg(4), 24 * 3600 * 2, 2);
    let truths: HashSet<Truth> = msgs.iter().map(|m| m.1.truth).collect();
    for t in [Truth::BulkExport, Truth::OffHours, Truth::ModelProbe] {
        assert!(truths.contains(&t), "{t:?} missing");
    }
    for (t, m) in &msgs {
        match m.truth {
            // Episodes start at night and last up to 20 minutes.
            Truth::OffHours => {
                let h = hour_of(t.timestamp_millis());
                assert!(is_night(h) || h == 5, "off-hours event at {t}");
            }
            Truth::BulkExport => {
                let v = check_event(&m.payload).unwrap();
                if v["action"] == "export" {
                    assert!(v["records"].as_u64().unwrap() >= 1000);
                    let d = v["destination"].as_str().unwrap();
                    assert!(EXTERNAL_DESTINATIONS.contains(&d));
                }
            }
            Truth::ModelProbe => {
                let v = check_event(&m.payload).unwrap();
                assert_eq!(v["kind"], "inference");
                assert_eq!(v["output"]["scores_returned"], true);
            }
            _ => {}
        }
    }
}

#[test]
fn tiny_and_empty_populations_work() {
    for (clinicians, patients, services) in [(0, 0, 0), (1, 1, 1), (3, 5, 2)] {
        let msgs = run(
            WorkloadConfig {
                clinicians,
                patients,
                services,
                ..cfg(2)
            },
            30_000,
            5,
        );
        for (_, m) in msgs.iter().filter(|m| m.1.truth != Truth::Malformed) {
            check_event(&m.payload).unwrap();
        }
    }
}
