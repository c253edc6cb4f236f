//! Detection end to end through the binary: `custos gen` writes a labelled
//! workload with its reference tables, `custos eval` scores the detectors
//! on it, and `custos ingest` with those reference tables and the shipped
//! SQL detectors raises alerts from statistical, rule and SQL detectors.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// A small workload: 4 days, 120 staff.
fn generate(dir: &Path) {
    let (code, out) = custos(&[
        "gen",
        "--out",
        dir.to_str().unwrap(),
        "--days",
        "4",
        "--staff",
        "120",
        "--patients",
        "2500",
        "--seed",
        "7",
    ]);
    assert_eq!(code, 0, "{out}");
    for f in [
        "events.jsonl",
        "labels.jsonl",
        "roster.csv",
        "vip.csv",
        "care_team.csv",
        "consent.csv",
        "export_allow.csv",
        "links.csv",
    ] {
        assert!(dir.join(f).is_file(), "{f} was not written");
    }
}

/// The `[reference]` section naming the generated tables.
fn reference_section(dir: &Path) -> String {
    let mut s = String::from("[reference]\n");
    for t in [
        "vip",
        "roster",
        "care_team",
        "consent",
        "export_allow",
        "links",
    ] {
        s += &format!("{t} = \"{}\"\n", dir.join(format!("{t}.csv")).display());
    }
    s
}

#[test]
fn eval_scores_every_scenario_of_a_generated_workload() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let config = dir.path().join("eval.toml");
    std::fs::write(&config, reference_section(dir.path())).unwrap();
    let events = dir.path().join("events.jsonl");
    let (code, out) = custos(&[
        "eval",
        "--config",
        config.to_str().unwrap(),
        events.to_str().unwrap(),
        "--learn-hours",
        "24",
    ]);
    assert_eq!(code, 0, "{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| scenario"))
        .map(|l| l.split('|').map(str::trim).collect())
        .collect();
    let recall = |name: &str| -> f64 {
        let row = rows
            .iter()
            .find(|r| r[1] == name)
            .unwrap_or_else(|| panic!("no row for {name}:\n{out}"));
        row[4].parse().unwrap()
    };
    // Rule detectors against the reference tables cannot miss these.
    for rule in ["after_termination", "bulk_export", "consent_violation"] {
        assert_eq!(recall(rule), 1.0, "{rule}:\n{out}");
    }
    assert_eq!(rows.len(), 11, "one row per scenario type:\n{out}");
    assert!(
        out.contains("false alerts per 1,000 benign actor-days"),
        "{out}"
    );
    assert!(out.contains("Learning period:"), "{out}");
}

#[test]
fn ingest_raises_statistical_rule_and_sql_findings_with_reference_tables() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path());
    let alerts = dir.path().join("alerts.jsonl");
    let config = dir.path().join("custos.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[http]\nenabled = false\n[sql_detectors]\ndir = \"{}\"\n\
             [outbox]\nclose_wait_secs = 300\n[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\n{}",
            dir.path().join("store").display(),
            repo().join("queries/detectors").display(),
            alerts.display(),
            reference_section(dir.path()),
        ),
    )
    .unwrap();
    // `close_wait_secs`: ingest exits once its sinks delivered everything
    // (the default 10 s can be short on a loaded machine; what is not
    // delivered by then stays in the outbox, not in the file read here).
    let events = dir.path().join("events.jsonl");
    // One export to a destination off the allow-list, a minute after the
    // last generated event: the last SQL run, over the window as the input
    // ends, must see it.
    let text = std::fs::read_to_string(&events).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(last["time"].as_str().unwrap()).unwrap()
        + chrono::Duration::seconds(60);
    let export = serde_json::json!({
        "id": "test-export-1", "time": at.to_rfc3339(), "kind": "access",
        "actor": {"id": "emp-test", "role": "nurse", "dept": "icu"},
        "action": "export", "outcome": "success", "patient": "MRN-1",
        "records": 120, "destination": "https://paste.example/x",
    });
    std::fs::write(&events, format!("{text}{export}\n")).unwrap();
    let (code, out) = custos(&[
        "ingest",
        "--config",
        config.to_str().unwrap(),
        events.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    // Incident revisions; each finding is in the revision it made.
    let revisions: Vec<Value> = std::fs::read_to_string(&alerts)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let alerts: Vec<Value> = revisions
        .iter()
        .filter_map(|r| r.get("finding").cloned())
        .collect();
    let detectors: std::collections::BTreeSet<&str> = alerts
        .iter()
        .map(|a| a["detector"].as_str().unwrap())
        .collect();
    for expected in [
        "termination",
        "bulk_export",
        "consent",
        "volume",
        "denied_burst",
        "personal",
    ] {
        assert!(
            detectors.contains(expected),
            "no {expected} alert; got {detectors:?}"
        );
    }
    assert!(
        alerts
            .iter()
            .any(|a| a["detector"] == "sql:new_export_destination" && a["actor"] == "emp-test"),
        "no SQL detector alert for the export; got {detectors:?}"
    );
    let termination = alerts
        .iter()
        .find(|a| a["detector"] == "termination")
        .unwrap();
    assert_eq!(termination["severity"], "critical");
    assert!(
        termination["summary"]
            .as_str()
            .unwrap()
            .contains("terminated")
    );
    // No raw patient identifier reaches an alert.
    for a in &revisions {
        assert!(!a.to_string().contains("MRN-"), "{a}");
    }
}
