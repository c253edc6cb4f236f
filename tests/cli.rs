//! The command line without Kafka: `ingest` through the whole pipeline,
//! `verify` catching a changed byte, read-only `query`, `check-config`,
//! `keygen --checkpoint` and `verify-proof`, and the ledger commands
//! (`verify --json`, `verify --checkpoint`, `prove`, `consistency`) on a
//! store ingested twice under a checkpoint key.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

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
    // The alert stage's outbox lives in the store's folder but is not
    // ledger data: verify passes over it.
    assert!(store.join("outbox/entries").is_dir());
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
            "[store]\npath = \"{}\"\n[http]\nenabled = false\n[outbox]\nclose_wait_secs = 300\n\
             [[sinks]]\ntype = \"jsonl\"\npath = \"{}\"\n",
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
    // Each line is an incident revision; the findings are in `finding`
    // (absent from resolutions).
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|r| r.get("finding").cloned())
        .collect();
    assert!(
        lines.iter().any(|a| a["detector"] == "pace"),
        "the synthetic bursts raised no alert"
    );
    assert!(
        lines.iter().any(|a| a["detector"] == "bulk_export"),
        "the synthetic exports to external destinations raised no alert"
    );
    for a in &lines {
        assert!(!a["evidence"].as_array().unwrap().is_empty(), "{a}");
        assert!(!a["summary"].as_str().unwrap().is_empty(), "{a}");
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

// ---------------------------------------------------------------------------
// The ledger commands on a signed store

/// A store ingested twice, configured by the environment only, under a
/// checkpoint key made by `custos keygen`: each ingest signs a checkpoint
/// of every log that grew when it shuts down, so the events log has two.
struct Signed {
    dir: tempfile::TempDir,
    store: PathBuf,
    signer: String,
    verifier: String,
    /// Events and rejects stored by both ingests.
    accepted: u64,
    rejected: u64,
}

impl Signed {
    /// The example events (ids made unique per run), then in the second
    /// run the invalid examples too.
    fn new() -> Signed {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name).display().to_string();
        let (signer, verifier) = (at("signer.key"), at("verifier.key"));
        let keygen = [
            "keygen",
            "--checkpoint",
            "test.example/custos",
            "--out",
            &signer,
        ];
        let (code, verifier_text, err) = run(&keygen, "", &[]);
        assert_eq!(code, 0, "{err}");
        std::fs::write(&verifier, verifier_text).unwrap();
        let store = dir.path().join("store");
        let (mut accepted, mut rejected) = (0, 0);
        for n in 1..=2 {
            let input = at(&format!("run{n}.jsonl"));
            std::fs::write(&input, examples_with_ids(&format!("run{n}-"))).unwrap();
            let invalid = invalid_examples();
            let files: &[&str] = if n == 1 {
                &[&input]
            } else {
                &[&input, &invalid]
            };
            let (a, r) = ingest_signed(&store, &signer, files);
            (accepted, rejected) = (accepted + a, rejected + r);
        }
        assert_eq!((accepted, rejected), (24, 16));
        Signed {
            dir,
            store,
            signer,
            verifier,
            accepted,
            rejected,
        }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn store(&self) -> &str {
        self.store.to_str().unwrap()
    }

    /// The notes of the events log's stored checkpoints, oldest first.
    fn event_notes(&self) -> Vec<String> {
        event_notes(&self.store)
    }
}

/// The example events with `prefix` put before each event id.
fn examples_with_ids(prefix: &str) -> String {
    let text = std::fs::read_to_string(examples()).unwrap();
    text.lines()
        .map(|line| {
            let rest = line
                .strip_prefix(r#"{"id":""#)
                .expect("an example opens with its id");
            format!("{{\"id\":\"{prefix}{rest}\n")
        })
        .collect()
}

/// Runs `custos ingest files` on `store` with checkpoints signed by the key
/// in `signer`, configured by `CUSTOS_*` variables alone; returns the
/// (accepted, rejected) counts it prints.
fn ingest_signed(store: &Path, signer: &str, files: &[&str]) -> (u64, u64) {
    let store = store.display().to_string();
    let env = [
        ("CUSTOS_CHECKPOINTS_KEY_FILE", signer),
        ("CUSTOS_PRIVACY_DEMO_KEY", "true"),
        ("CUSTOS_STORE_PATH", store.as_str()),
        ("CUSTOS_HTTP_ENABLED", "false"),
    ];
    let mut args = vec!["ingest"];
    args.extend(files);
    let (code, _, err) = run(&args, "", &env);
    assert_eq!(code, 0, "{err}");
    // "ingested N lines in …: A accepted, R rejected, D duplicate ids, …"
    let count = |what: &str| -> u64 {
        let before = err.split(&format!(" {what},")).next().unwrap();
        before.rsplit(' ').next().unwrap().parse().unwrap()
    };
    (count("accepted"), count("rejected"))
}

/// The notes of the stored checkpoints of the `+file`/0 events log.
fn event_notes(store: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(store.join("checkpoints/+file/0.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["table"] == "events")
        .map(|l| l["note"].as_str().unwrap().to_owned())
        .collect()
}

/// `custos verify store --key verifier --json [--checkpoint note]…`: the
/// exit code and the parsed report.
fn verify_json(store: &str, verifier: &str, notes: &[&str]) -> (i32, Value) {
    let mut args = vec!["verify", store, "--key", verifier, "--json"];
    for note in notes {
        args.extend(["--checkpoint", note]);
    }
    let (code, out, err) = run(&args, "", &[]);
    let report = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, report)
}

/// The report's `(stream, partition, table)` log.
fn log_of<'a>(report: &'a Value, stream: &str, partition: i32, table: &str) -> &'a Value {
    report["logs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["stream"] == stream && l["partition"] == partition && l["table"] == table)
        .unwrap_or_else(|| panic!("no {table} log of {stream}/{partition}: {report}"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn verify_reports_a_signed_store_as_json_and_warns_without_the_key() {
    let s = Signed::new();
    let (code, report) = verify_json(s.store(), &s.verifier, &[]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["signatures_checked"], true);
    assert!(report["checkpoints"].as_u64().unwrap() >= 2, "{report}");
    assert_eq!(report["events"], s.accepted);
    assert_eq!(report["rejects"], s.rejected);
    let events = log_of(&report, "+file", 0, "events");
    assert_eq!(events["size"], s.accepted, "{report}");
    let root = events["root"].as_str().unwrap();
    assert!(
        root.len() == 64 && root.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{root}"
    );
    assert_eq!(log_of(&report, "+file", 0, "rejects")["size"], s.rejected);

    let (code, out, err) = run(&["verify", s.store()], "", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok: "), "{out}");
    assert!(err.contains("signatures were NOT checked"), "{err}");
}

#[test]
fn prove_an_event_by_id_or_a_row_by_seq_and_check_the_proof_offline() {
    let s = Signed::new();
    let (code, proof, err) = run(&["prove", "run2-a-0003", "--store", s.store()], "", &[]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(doc["event_id"], "run2-a-0003");
    assert_eq!(
        doc["tree_size"], s.accepted,
        "proved against the last checkpoint"
    );
    std::fs::write(s.path("p.json"), &proof).unwrap();
    let (code, out, err) = run(
        &["verify-proof", &s.path("p.json"), "--key", &s.verifier],
        "",
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("inclusion proof OK")
            && out.contains("event run2-a-0003")
            && out.contains("signed by key test.example/custos"),
        "{out}"
    );

    let (code, out, err) = run(&["prove", "no-such-event", "--store", s.store()], "", &[]);
    assert_ne!(code, 0, "proved an unknown event: {out}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains(r#"no event with id "no-such-event" is stored"#),
        "{err}"
    );

    let by_seq = [
        "prove",
        "--store",
        s.store(),
        "--stream",
        "+file",
        "--partition",
        "0",
        "--table",
        "events",
        "--seq",
        "0",
    ];
    let (code, proof, err) = run(&by_seq, "", &[]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(
        (&doc["leaf_index"], &doc["event_id"]),
        (&0.into(), &"run1-a-0001".into())
    );
    let (code, out, err) = run(&["verify-proof", "-", "--key", &s.verifier], &proof, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("leaf 0 of 24"), "{out}");
}

#[test]
fn consistency_between_stored_checkpoints_and_between_bare_sizes() {
    let s = Signed::new();
    let notes = s.event_notes();
    assert!(notes.len() >= 2, "{notes:?}");
    std::fs::write(s.path("old.note"), &notes[0]).unwrap();
    std::fs::write(s.path("new.note"), notes.last().unwrap()).unwrap();
    let args = [
        "consistency",
        &s.path("old.note"),
        &s.path("new.note"),
        "--store",
        s.store(),
    ];
    let (code, proof, err) = run(&args, "", &[]);
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&proof).unwrap();
    assert_eq!(
        (&doc["old_size"], &doc["new_size"]),
        (&12.into(), &24.into())
    );
    std::fs::write(s.path("c.json"), &proof).unwrap();
    let (code, out, err) = run(
        &["verify-proof", &s.path("c.json"), "--key", &s.verifier],
        "",
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("consistency proof OK")
            && out.contains("signed by key test.example/custos"),
        "{out}"
    );

    // Bare sizes: no checkpoint of size 1 exists, so the old root is unsigned.
    let size = s.accepted.to_string();
    let (code, proof, err) = run(&["consistency", "1", &size, "--store", s.store()], "", &[]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(s.path("c1.json"), &proof).unwrap();
    let (code, out, err) = run(&["verify-proof", &s.path("c1.json")], "", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("consistency proof OK"), "{out}");
    let (code, out, err) = run(
        &["verify-proof", &s.path("c1.json"), "--key", &s.verifier],
        "",
        &[],
    );
    assert_eq!(code, 1, "accepted unsigned roots under a key: {out}");
    assert!(
        err.starts_with("proof INVALID: ") && err.contains("old_checkpoint"),
        "{err}"
    );
}

/// Copies the store of `s` to `copy`, edits the bytes of its `file` with
/// `tamper`, and checks that `verify --json` fails naming that file.
fn assert_tampering_named(s: &Signed, copy: &str, file: &str, tamper: impl FnOnce(&mut Vec<u8>)) {
    let copy = s.dir.path().join(copy);
    copy_dir(&s.store, &copy);
    let path = copy.join(file);
    let mut bytes = std::fs::read(&path).unwrap();
    tamper(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    let (code, report) = verify_json(copy.to_str().unwrap(), &s.verifier, &[]);
    assert_eq!(code, 1, "{file}: {report}");
    assert_eq!(report["ok"], false, "{file}: {report}");
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["file"] == file),
        "no problem names {file}: {report}"
    );
}

#[test]
fn verify_json_names_the_tampered_file() {
    let s = Signed::new();
    assert_tampering_named(&s, "appended", "tree/events/+file/0/0.hashes", |b| {
        b.push(b'x')
    });
    let mut segments: Vec<String> = std::fs::read_dir(s.store.join("events/+file/0"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".parquet"))
        .collect();
    segments.sort();
    let segment = format!("events/+file/0/{}", segments.last().unwrap());
    assert_tampering_named(&s, "flipped", &segment, |b| {
        let at = b.len() / 2;
        b[at] ^= 0x01;
    });
    let (code, report) = verify_json(s.store(), &s.verifier, &[]);
    assert_eq!(code, 0, "the original changed: {report}");
}

#[test]
fn verify_checks_external_checkpoints_and_names_one_of_another_store() {
    let s = Signed::new();
    let stored = s.event_notes();
    std::fs::write(s.path("new.note"), stored.last().unwrap()).unwrap();
    let (code, report) = verify_json(s.store(), &s.verifier, &[&s.path("new.note")]);
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    let (_, alone) = verify_json(s.store(), &s.verifier, &[]);
    assert_eq!(
        report["checkpoints"].as_u64(),
        alone["checkpoints"].as_u64().map(|n| n + 1),
        "the external checkpoint was not checked: {report}"
    );

    // A genuine checkpoint, same key, of another store (another origin).
    let other = s.dir.path().join("other");
    let input = s.path("other.jsonl");
    let two: String = examples_with_ids("other-")
        .lines()
        .take(2)
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&input, two).unwrap();
    assert_eq!(ingest_signed(&other, &s.signer, &[&input]), (2, 0));
    let foreign = event_notes(&other);
    std::fs::write(s.path("other.note"), &foreign[0]).unwrap();
    let (code, report) = verify_json(s.store(), &s.verifier, &[&s.path("other.note")]);
    assert_eq!(code, 1, "accepted another store's checkpoint: {report}");
    assert_eq!(report["ok"], false);
    let problems = report["problems"].as_array().unwrap();
    assert!(
        problems.iter().any(|p| p["file"] == "checkpoints"
            && p["what"]
                .as_str()
                .unwrap()
                .contains("which this store does not hold")),
        "{report}"
    );
}

/// A store made with `store.hash = "sha256"` is an RFC 6962 log as the RFC
/// defines it: its leaves and root recompute with plain SHA-256, and every
/// command reads it.
#[test]
fn a_sha256_store_is_plain_rfc6962() {
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    let (code, verifier, err) = run(
        &[
            "keygen",
            "--checkpoint",
            "rfc.example/custos",
            "--out",
            key.to_str().unwrap(),
        ],
        "",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let verifier_file = dir.path().join("verifier.key");
    std::fs::write(&verifier_file, verifier).unwrap();
    let store = dir.path().join("store");
    let input = PathBuf::from(examples());
    let store_s = store.display().to_string();
    let env = [
        ("CUSTOS_CHECKPOINTS_KEY_FILE", key.to_str().unwrap()),
        ("CUSTOS_PRIVACY_DEMO_KEY", "true"),
        ("CUSTOS_STORE_PATH", store_s.as_str()),
        ("CUSTOS_STORE_HASH", "sha256"),
        ("CUSTOS_HTTP_ENABLED", "false"),
    ];
    let (code, _, err) = run(&["ingest", input.to_str().unwrap()], "", &env);
    assert_eq!(code, 0, "{err}");

    let (code, out, err) = run(
        &[
            "verify",
            &store_s,
            "--key",
            verifier_file.to_str().unwrap(),
            "--json",
        ],
        "",
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let head = log_of(&report, "+file", 0, "events");
    let size = head["size"].as_u64().unwrap();
    assert!(size >= 10);

    // Recompute the root from the records with SHA-256 alone.
    let (code, out, err) = run(
        &[
            "query",
            "--store",
            &store_s,
            "--format",
            "json",
            "SELECT record FROM events ORDER BY seq",
        ],
        "",
        &[],
    );
    assert_eq!(code, 0, "{err}");
    let leaves: Vec<[u8; 32]> = out
        .lines()
        .map(|l| {
            let record = serde_json::from_str::<Value>(l).unwrap()["record"]
                .as_str()
                .unwrap()
                .to_owned();
            Sha256::new()
                .chain_update([0u8])
                .chain_update(record.as_bytes())
                .finalize()
                .into()
        })
        .collect();
    fn mth(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            1 => leaves[0],
            n => {
                let k = 1 << (usize::BITS - 1 - (n - 1).leading_zeros());
                Sha256::new()
                    .chain_update([1u8])
                    .chain_update(mth(&leaves[..k]))
                    .chain_update(mth(&leaves[k..]))
                    .finalize()
                    .into()
            }
        }
    }
    assert_eq!(leaves.len() as u64, size);
    assert_eq!(hex::encode(mth(&leaves)), head["root"].as_str().unwrap());

    let (code, proof, err) = run(&["prove", "a-0003", "--store", &store_s], "", &[]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run(
        &[
            "verify-proof",
            "-",
            "--key",
            verifier_file.to_str().unwrap(),
        ],
        &proof,
        &[],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(sha256)"), "{out}");
}
