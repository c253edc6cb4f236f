//! The command line without Kafka: `ingest` through the whole pipeline,
//! `verify` catching a changed byte, read-only `query`, `check-config`.

mod common;

use std::process::Command;

use common::*;

fn examples() -> String {
    repo()
        .join("tests/data/events-v1.jsonl")
        .display()
        .to_string()
}

fn invalid_examples() -> String {
    repo()
        .join("tests/data/events-invalid.jsonl")
        .display()
        .to_string()
}

/// Ingests `files` into a new store; returns its folder (and the tempdir
/// that owns it).
fn ingest(files: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let set = format!("store.path={}", store.display());
    let mut args = vec!["ingest", "--set", &set, "--set", "http.enabled=false"];
    args.extend(files);
    let (code, _) = custos(&args);
    assert_eq!(code, 0);
    (dir, store)
}

#[test]
fn ingest_stores_everything_and_verify_names_a_changed_byte() {
    let (_dir, store) = ingest(&[&examples(), &invalid_examples()]);
    let report = custos::ledger::verify(&store).unwrap();
    assert!(report.ok());
    assert_eq!((report.events, report.rejects), (12, 16));
    let (code, out) = custos(&["verify", store.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");

    // Change one byte in the middle of the events segment.
    let seg_dir = store.join("events/+file/0");
    let seg = std::fs::read_dir(&seg_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, bytes).unwrap();
    let (code, out) = custos(&["verify", store.to_str().unwrap()]);
    assert_eq!(code, 1, "verify accepted a changed segment: {out}");
    let name = seg.file_name().unwrap().to_str().unwrap();
    assert!(out.contains("BAD") && out.contains(name), "{out}");
}

#[test]
fn sql_is_read_only() {
    let (_dir, store) = ingest(&[&examples()]);
    let (code, out) = custos(&[
        "query",
        "--store",
        store.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT kind, count(*) AS n FROM events GROUP BY kind ORDER BY kind",
    ]);
    assert_eq!(code, 0);
    assert_eq!(out, "kind,n\naccess,7\ninference,2\nlineage,3\n");
    for statement in [
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO events SELECT * FROM events",
        "DROP TABLE events",
        "SET datafusion.execution.batch_size = 1",
        "CREATE EXTERNAL TABLE y STORED AS CSV LOCATION '/etc/passwd'",
    ] {
        let (code, _) = custos(&["query", "--store", store.to_str().unwrap(), statement]);
        assert_ne!(code, 0, "accepted: {statement}");
    }
}

#[test]
fn a_bad_configuration_lists_every_problem() {
    let out = Command::new(bin())
        .args([
            "check-config",
            "--set",
            "store.flush_rows=0",
            "--set",
            "http.listen=nowhere",
        ])
        .env_remove("CUSTOS_PRIVACY_PSEUDONYM_KEY")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "store.flush_rows",
        "http.listen",
        "privacy.pseudonym_key is not set",
    ] {
        assert!(err.contains(needle), "{needle} missing from: {err}");
    }
}

#[test]
fn ingest_detects_a_burst_in_a_synthetic_workload_and_alerts_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("synth.jsonl");
    let (code, _) = custos(&[
        "synth",
        "--events",
        "200000",
        "--rate",
        "100",
        "--out",
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let alerts = dir.path().join("alerts.jsonl");
    let config = dir.path().join("custos.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[http]\nenabled = false\n[[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\n",
            dir.path().join("store").display(),
            alerts.display()
        ),
    )
    .unwrap();
    let (code, _) = custos(&[
        "ingest",
        "--config",
        config.to_str().unwrap(),
        input.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    let report = custos::ledger::verify(&dir.path().join("store")).unwrap();
    assert!(report.ok());
    assert_eq!(report.events + report.rejects, 200_000);
    assert!(
        report.rejects > 0,
        "the workload carries malformed messages"
    );
    let text = std::fs::read_to_string(&alerts).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty(), "the synthetic bursts raised no alert");
    for a in &lines {
        assert_eq!(a["detector"], "access_rate");
        assert!(!a["evidence"].as_array().unwrap().is_empty());
    }
}

#[test]
fn the_demo_never_replaces_a_store_it_did_not_make() {
    let (_dir, store) = ingest(&[&examples()]);
    let (code, _) = custos(&[
        "demo",
        "--duration",
        "1",
        "--store",
        store.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "the demo took over a real store");
    let report = custos::ledger::verify(&store).unwrap();
    assert!(report.ok());
    assert_eq!(report.events, 12, "the real store lost events");
}
