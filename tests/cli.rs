//! The command line without Kafka: `ingest` through the whole pipeline,
//! `verify` catching a changed byte, read-only `query`, `check-config`,
//! `keygen --checkpoint` and `verify-proof`.

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

/// Runs the binary with `stdin` and extra environment; returns (exit code,
/// stdout, stderr).
fn run(args: &[&str], stdin: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(args)
        .env_remove("CUSTOS_VERIFIER_KEY")
        .envs(env.iter().copied())
        .env("CUSTOS_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn verify_proof_checks_a_proof_under_a_keygen_checkpoint_key() {
    use custos::ledger::checkpoint::{Checkpoint, NoteSigner, NoteVerifier};
    use custos::ledger::merkle::{HashAlg, inclusion_proof, root};
    use custos::ledger::proof::{InclusionProof, LogId};
    use custos::ledger::{ChainId, Table};

    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).display().to_string();
    let signer_file = path("signer.key");
    let keygen = [
        "keygen",
        "--checkpoint",
        "custos.test",
        "--out",
        &signer_file,
    ];
    let (code, verifier_text, _) = run(&keygen, "", &[]);
    assert_eq!(code, 0);
    let (code, _, err) = run(&keygen, "", &[]);
    assert_eq!(code, 2, "overwrote a signer key");
    assert!(err.contains("never overwritten"), "{err}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&signer_file)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let signer = NoteSigner::parse(&std::fs::read_to_string(&signer_file).unwrap()).unwrap();
    let verifier = NoteVerifier::parse(&verifier_text).unwrap();
    assert_eq!(verifier.to_text(), signer.verifier().to_text());
    std::fs::write(path("verifier.key"), &verifier_text).unwrap();

    // A proof of record 5 of 12 under a checkpoint signed with the new key.
    let alg = HashAlg::Blake3;
    let records: Vec<String> = (0..12)
        .map(|i| {
            format!(
                r#"{{"event":{{"id":"e-{i}"}},"src":{{"offset":{i},"partition":3,"stream":"audit"}},"v":1}}"#
            )
        })
        .collect();
    let leaves: Vec<_> = records.iter().map(|r| alg.leaf(r.as_bytes())).collect();
    let log = LogId::new("custos.test", ChainId::new("audit", 3), Table::Events);
    let mut proof =
        InclusionProof::new(alg, log, 5, 12, leaves[5], inclusion_proof(alg, &leaves, 5));
    proof.event_id = Some("e-5".into());
    proof.record = Some(records[5].clone());
    let body = Checkpoint {
        origin: proof.log.origin.clone(),
        size: 12,
        root: root(alg, &leaves),
    }
    .body();
    proof.checkpoint = Some(signer.sign(&body).unwrap());
    let text = proof.to_json_pretty();
    std::fs::write(path("proof.json"), &text).unwrap();

    let key = path("verifier.key");
    let (code, out, err) = run(
        &["verify-proof", &path("proof.json"), "--key", &key],
        "",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("inclusion proof OK"), "{out}");
    assert!(
        out.contains("leaf 5 of 12") && out.contains("signed by key custos.test"),
        "{out}"
    );
    // From stdin, with the key in the environment.
    let env = [("CUSTOS_VERIFIER_KEY", verifier_text.as_str())];
    let (code, out, _) = run(&["verify-proof", "-"], &text, &env);
    assert_eq!(code, 0);
    assert!(out.contains("signed by key"), "{out}");

    // A changed path hash.
    let mut tampered = proof.clone();
    tampered.path[1][0] ^= 0x40;
    std::fs::write(path("tampered.json"), tampered.to_json_pretty()).unwrap();
    let (code, out, err) = run(
        &["verify-proof", &path("tampered.json"), "--key", &key],
        "",
        &[],
    );
    assert_eq!(code, 1, "accepted a tampered proof: {out}");
    assert!(
        err.starts_with("proof INVALID: ") && err.contains("root"),
        "{err}"
    );

    // Another key with the same name.
    let (code, _, err) = run(&["keygen", "--checkpoint", "custos.test"], "", &[]);
    assert_eq!(code, 0);
    let other = err.rsplit(' ').next().unwrap().trim();
    std::fs::write(path("other.key"), other).unwrap();
    let (code, _, err) = run(
        &[
            "verify-proof",
            &path("proof.json"),
            "--key",
            &path("other.key"),
        ],
        "",
        &[],
    );
    assert_eq!(code, 1);
    assert!(err.contains("proof INVALID: signature invalid"), "{err}");

    // A signer key or garbage where the verifier key belongs: exit 2.
    for bad in [&signer_file, &path("proof.json")] {
        let (code, _, err) = run(
            &["verify-proof", &path("proof.json"), "--key", bad],
            "",
            &[],
        );
        assert_eq!(code, 2, "{err}");
        assert!(err.starts_with("error: "), "{err}");
    }
}
