//! Model-abuse detection end to end: real attacks on real models (the
//! generator in scripts/model-traffic trains them on scikit-learn's
//! clinical data sets and runs inversion, attribute inference and
//! extraction against them), scored by `custos eval`; and bad feature
//! vectors refused with their reasons through `custos ingest`.

mod common;

use common::*;

#[test]
fn every_attack_is_caught_within_100_queries_and_no_benign_caller_is_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traffic");
    let status = std::process::Command::new(repo().join("scripts/model-traffic/run.sh"))
        .args(["--out", out.to_str().unwrap()])
        .args(["--days", "4", "--quiet-hours", "24", "--clinicians", "60"])
        .status()
        .expect("the generator runs");
    assert!(status.success(), "the model traffic generator failed");
    let config = dir.path().join("custos.toml");
    std::fs::write(&config, "[[detectors]]\ntype = \"model_abuse\"\n").unwrap();
    let (code, report) = custos(&[
        "eval",
        "--config",
        config.to_str().unwrap(),
        out.join("events.jsonl").to_str().unwrap(),
        "--learn-hours",
        "24",
        "--per-instance",
    ]);
    assert_eq!(code, 0, "{report}");
    // One row per attack instance: | scenario | actor | events | detected | up to the first alert | delay |
    let rows: Vec<Vec<&str>> = report
        .lines()
        .filter(|l| l.starts_with("| ") && l.split('|').count() == 8)
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>())
        .filter(|c| c[4] == "yes" || c[4] == "no")
        .collect();
    let kinds: std::collections::BTreeSet<&str> = rows.iter().map(|c| c[1]).collect();
    assert_eq!(
        kinds.len(),
        8,
        "every attack kind is in the trace: {kinds:?}\n{report}"
    );
    for c in &rows {
        assert_eq!(
            c[4], "yes",
            "{} by {} was not detected\n{report}",
            c[1], c[2]
        );
        let queries: usize = c[5].parse().unwrap();
        assert!(
            queries <= 100,
            "{} by {} took {queries} queries\n{report}",
            c[1],
            c[2]
        );
    }
    assert!(report.contains("Actors with a false alert: 0"), "{report}");
}

#[test]
fn bad_feature_vectors_are_refused_with_their_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("inference.jsonl");
    let line = |id: &str, features: &str| {
        format!(
            r#"{{"id":"{id}","time":"2026-03-02T09:00:00Z","kind":"inference","actor":{{"id":"api-1"}},"model":{{"id":"risk","version":"1"}},"input":{{"features":[{features}]}}}}"#
        )
    };
    let thirty = vec!["1.5"; 30].join(",");
    let many = vec!["0.1"; 4097].join(",");
    let lines = [
        line("ok", &thirty),
        line("short", &vec!["1.5"; 29].join(",")),
        line("nan", &thirty.replacen("1.5", "\"NaN\"", 1)),
        line("many", &many),
        line("ok-2", &thirty),
    ];
    std::fs::write(&events, lines.join("\n") + "\n").unwrap();
    let store = dir.path().join("store");
    let set = format!("store.path={}", store.display());
    let (code, out) = custos(&[
        "ingest",
        "--set",
        &set,
        "--set",
        "http.enabled=false",
        events.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{out}");
    let report = custos::ledger::verify(&store).unwrap();
    assert_eq!((report.events, report.rejects), (2, 3), "{out}");
    let (code, shown) = custos(&["rejects", "show", "--store", store.to_str().unwrap()]);
    assert_eq!(code, 0, "{shown}");
    for reason in [
        "has 29 numbers; model `risk@1` takes 30",
        "`input.features[0]`",
        "more than 4096 numbers",
    ] {
        assert!(
            shown.contains(reason),
            "no reject says {reason:?}:\n{shown}"
        );
    }
}
