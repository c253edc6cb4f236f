//! Minimum PHI, end to end: `custos ingest` (the real binary) on events
//! that carry distinctive patient identifiers and feature values wherever
//! the contract pseudonymizes them, and on malformed messages that carry
//! them too (so they become rejects). None of those values may appear in
//! the raw bytes of any file of the store, in any decoded value of any
//! Parquet column or footer entry (pages are zstd-compressed, so the raw
//! search alone would prove little), or in what the process printed. The
//! rejects must still be stored, `custos rejects show` with the key must
//! give the original bytes back exactly (and refuse another key), and
//! `custos verify` must pass.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::{Array, AsArray, RecordBatch, RecordBatchReader};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine;
use custos::event::{PseudonymKey, Pseudonymizer, RejectSealer, SealedPart};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

const KEY: &str = "c0ffee5e1ec7ed0a11ce5b0b7e57ab1e0ddba11facade0123456789abcdef004";
const OTHER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
const TIME: &str = "2026-03-02T09:14:03Z";

/// The accepted events: identifiers in `patient` (access, inference,
/// lineage), in a `Patient` resource id, in `patient:` and `Patient/`
/// lineage references; feature values in `input.features`.
fn accepted() -> Vec<String> {
    vec![
        format!(
            r#"{{"id":"a-1","time":"{TIME}","kind":"access","actor":{{"id":"emp-1"}},"action":"read","patient":"MRN-7741239","purpose":"TREAT"}}"#
        ),
        format!(
            r#"{{"id":"a-2","time":"{TIME}","kind":"access","actor":{{"id":"emp-1"}},"action":"read","patient":"MRN-7741239","resource":{{"type":"Patient","id":"MRN-8812345"}}}}"#
        ),
        format!(
            r#"{{"id":"l-1","time":"{TIME}","kind":"lineage","actor":{{"id":"svc-etl"}},"op":"derive","patient":"MRN-3390172","inputs":["patient:MRN-5512077","dataset:cohort-42"],"outputs":["Patient/MRN-6634001"]}}"#
        ),
        format!(
            r#"{{"id":"i-1","time":"{TIME}","kind":"inference","actor":{{"id":"svc-risk"}},"model":{{"id":"sepsis-risk","version":"3.1.0"}},"patient":"MRN-4471108","input":{{"features":[8123.4567,4242.9137,0.5]}},"output":{{"label":"high","score":0.91}}}}"#
        ),
    ]
}

/// Malformed messages, each carrying an identifier (and one a feature
/// value), with the reason each is rejected for.
fn malformed() -> Vec<(Vec<u8>, &'static str)> {
    vec![
        (
            format!(
                r#"{{"id":"bad-1","time":"{TIME}","kind":"access","actor":{{"id":"emp-9"}},"action":"read","patient":"MRN-9002211""#
            )
            .into_bytes(),
            "invalid_json",
        ),
        (
            format!(
                r#"{{"time":"{TIME}","kind":"access","actor":{{"id":"emp-9"}},"action":"read","patient":"MRN-9002212"}}"#
            )
            .into_bytes(),
            "missing_field",
        ),
        (
            format!(
                r#"{{"id":"bad-3","time":"{TIME}","kind":"access","actor":"emp-9","action":"read","patient":"MRN-9002213"}}"#
            )
            .into_bytes(),
            "wrong_type",
        ),
        (
            format!(
                r#"{{"id":"bad-4","time":"{TIME}","kind":"inference","actor":{{"id":"svc-risk"}},"model":{{"id":"m","version":"1"}},"patient":"MRN-9002214","input":{{"features":[8123.4567,"x"]}}}}"#
            )
            .into_bytes(),
            "wrong_type",
        ),
        (
            br#"{"id":"bad-5","time":"yesterday","kind":"lineage","actor":{"id":"svc-etl"},"op":"train","inputs":["patient:MRN-9002215"]}"#
                .to_vec(),
            "invalid_time",
        ),
        (
            [
                &br#"{"id":"bad-6","patient":"MRN-9002216","note":""#[..],
                &[0xff, 0xfe],
                &br#""}"#[..],
            ]
            .concat(),
            "invalid_utf8",
        ),
        (
            // A producer retry of a-1 (same id) about another patient.
            format!(
                r#"{{"id":"a-1","time":"{TIME}","kind":"access","actor":{{"id":"emp-1"}},"action":"read","patient":"MRN-9002217"}}"#
            )
            .into_bytes(),
            "duplicate_id",
        ),
    ]
}

/// Values that must never be stored or printed.
const SECRETS: &[&str] = &[
    "MRN-7741239",
    "MRN-8812345",
    "MRN-3390172",
    "MRN-5512077",
    "MRN-6634001",
    "MRN-4471108",
    "MRN-9002211",
    "MRN-9002212",
    "MRN-9002213",
    "MRN-9002214",
    "MRN-9002215",
    "MRN-9002216",
    "MRN-9002217",
    "7741239",
    "9002211",
    "8123.4567",
    "4242.9137",
];

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    store: PathBuf,
    config: PathBuf,
    /// Malformed lines in input order (= their rejects' seq order).
    rejects: Vec<Vec<u8>>,
}

/// Writes the input (accepted and malformed lines interleaved), a key file
/// and a configuration.
fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut input = Vec::new();
    let mut rejects = Vec::new();
    let good = accepted();
    let bad = malformed();
    for (i, line) in good.iter().enumerate() {
        input.extend_from_slice(line.as_bytes());
        input.push(b'\n');
        for (bytes, _) in bad.iter().skip(i * 2).take(2) {
            input.extend_from_slice(bytes);
            input.push(b'\n');
            rejects.push(bytes.clone());
        }
    }
    for (bytes, _) in bad.iter().skip(good.len() * 2) {
        input.extend_from_slice(bytes);
        input.push(b'\n');
        rejects.push(bytes.clone());
    }
    assert_eq!(rejects.len(), bad.len());
    std::fs::write(root.join("input.jsonl"), input).unwrap();
    let key_file = root.join("pseudonym.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let store = root.join("store");
    let config = root.join("custos.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = \"{}\"\n[http]\nenabled = false\n[privacy]\npseudonym_key_file = \"{}\"\n",
            store.display(),
            key_file.display()
        ),
    )
    .unwrap();
    Setup {
        _dir: dir,
        dir: root,
        store,
        config,
        rejects,
    }
}

/// Runs the binary with only the configuration's key (no key in the
/// environment).
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_custos"));
    cmd.args(args)
        .env_remove("CUSTOS_PRIVACY_PSEUDONYM_KEY")
        .env_remove("CUSTOS_PRIVACY_PSEUDONYM_KEY_FILE")
        .env_remove("CUSTOS_PRIVACY_DEMO_KEY")
        .env("CUSTOS_LOG", "debug");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run custos")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn found_in(haystack: &[u8], needle: &str) -> bool {
    memchr::memmem::find(haystack, needle.as_bytes()).is_some()
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Every value of a segment, decoded: footer key-value entries, strings,
/// binary values (returned apart), and every other value as Arrow
/// displays it.
#[derive(Default)]
struct Decoded {
    texts: Vec<String>,
    binaries: Vec<(String, Vec<u8>)>,
    metadata: Vec<(String, String)>,
    rows: usize,
}

fn decode_segment(path: &Path, into: &mut Decoded) {
    let file = std::fs::File::open(path).unwrap();
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    for kv in builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .into_iter()
        .flatten()
    {
        into.metadata
            .push((kv.key.clone(), kv.value.clone().unwrap_or_default()));
    }
    let reader = builder.build().unwrap();
    let schema = reader.schema();
    for batch in reader {
        let batch: RecordBatch = batch.unwrap();
        into.rows += batch.num_rows();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            match field.data_type() {
                DataType::Utf8 => {
                    let a = column.as_string::<i32>();
                    into.texts.extend(a.iter().flatten().map(str::to_owned));
                }
                DataType::Binary => {
                    let a = column.as_binary::<i32>();
                    into.binaries.extend(
                        a.iter()
                            .flatten()
                            .map(|b| (field.name().clone(), b.to_vec())),
                    );
                }
                _ => {
                    let f = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
                        .unwrap();
                    into.texts.extend(
                        (0..column.len())
                            .filter(|&i| column.is_valid(i))
                            .map(|i| f.value(i).to_string()),
                    );
                }
            }
        }
    }
}

#[test]
fn raw_identifiers_and_feature_values_never_reach_disk_or_logs() {
    let s = setup();
    let config = s.config.to_str().unwrap();
    let input = s.dir.join("input.jsonl");
    let ingest = run(
        &["ingest", "--config", config, input.to_str().unwrap()],
        &[],
    );
    let (out, err) = (text(&ingest.stdout), text(&ingest.stderr));
    assert!(ingest.status.success(), "ingest failed: {err}");
    assert!(
        err.contains(&format!("{} accepted, 6 rejected", accepted().len())),
        "{err}"
    );

    // (c) Nothing printed: logs at debug level, the summary, alerts.
    for needle in SECRETS {
        assert!(!out.contains(needle), "stdout shows {needle}: {out}");
        assert!(!err.contains(needle), "stderr shows {needle}: {err}");
    }
    let key = PseudonymKey::from_hex(KEY).unwrap();
    let pseudonyms = Pseudonymizer::new(&key);
    let sealer = RejectSealer::new(&key);
    assert!(
        err.contains(pseudonyms.key_id()) && err.contains(sealer.key_id()),
        "the key ids are logged at start: {err}"
    );
    assert!(
        !err.contains(KEY) && !out.contains(KEY),
        "the key is printed"
    );

    // (a) Not in the raw bytes of any file of the store.
    let files = files_under(&s.store);
    assert!(files.len() > 5, "{files:?}");
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        for needle in SECRETS {
            assert!(
                !found_in(&bytes, needle),
                "{} holds {needle}",
                file.display()
            );
        }
    }

    // (b) Not in any decoded value of any segment.
    let mut events = Decoded::default();
    let mut rejects = Decoded::default();
    let segments: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    for seg in &segments {
        let rel = seg.strip_prefix(&s.store).unwrap();
        if rel.starts_with("rejects") {
            decode_segment(seg, &mut rejects);
        } else {
            assert!(rel.starts_with("events"), "{}", rel.display());
            decode_segment(seg, &mut events);
        }
    }
    assert_eq!(events.rows, accepted().len());
    assert_eq!(rejects.rows, s.rejects.len(), "every reject is stored");
    for d in [&events, &rejects] {
        for needle in SECRETS {
            for t in &d.texts {
                assert!(!t.contains(needle), "a column value holds {needle}: {t}");
            }
            for (name, b) in &d.binaries {
                assert!(!found_in(b, needle), "column {name} holds {needle}");
            }
            for (k, v) in &d.metadata {
                assert!(!v.contains(needle), "metadata {k} holds {needle}");
            }
        }
        // The pseudonym key's id (not the key) is in every segment's footer.
        let ids: Vec<&String> = d
            .metadata
            .iter()
            .filter(|(k, _)| k == "custos.pseudonym_key_id")
            .map(|(_, v)| v)
            .collect();
        assert!(!ids.is_empty());
        assert!(ids.iter().all(|v| *v == pseudonyms.key_id()), "{ids:?}");
    }
    // The search sees decoded values: the pseudonyms are there.
    for raw in ["MRN-7741239", "MRN-8812345", "MRN-3390172", "MRN-4471108"] {
        let p = pseudonyms.patient(raw);
        assert!(
            events.texts.iter().any(|t| t.contains(&p)),
            "pseudonym of {raw} not found"
        );
    }
    assert!(
        events
            .texts
            .iter()
            .any(|t| t.contains(&format!("patient:{}", pseudonyms.patient("MRN-5512077"))))
    );
    // ...and the binary values searched are the sealed messages: each opens
    // to one original malformed line, in order.
    let payloads: Vec<&Vec<u8>> = rejects
        .binaries
        .iter()
        .filter(|(name, _)| name == "payload")
        .map(|(_, b)| b)
        .collect();
    assert_eq!(payloads.len(), s.rejects.len());
    for (sealed, original) in payloads.iter().zip(&s.rejects) {
        assert_ne!(*sealed, original);
        assert_eq!(
            &sealer.unseal(SealedPart::Payload, sealed).unwrap(),
            original
        );
    }
    let labels: Vec<&String> = rejects
        .texts
        .iter()
        .filter(|t| t.contains(r#""payload_sealed""#))
        .collect();
    assert_eq!(
        labels.len(),
        s.rejects.len(),
        "every record says it is sealed"
    );
    let label = format!(
        r#""payload_sealed":"xchacha20poly1305:{}""#,
        sealer.key_id()
    );
    assert!(labels.iter().all(|t| t.contains(&label)), "{labels:?}");

    // The rejects are stored, with their reasons, and the store verifies.
    let store = s.store.to_str().unwrap();
    let verify = run(&["verify", "--json", store], &[]);
    assert!(verify.status.success(), "{}", text(&verify.stdout));
    let report: Value = serde_json::from_slice(&verify.stdout).unwrap();
    assert_eq!(report["ok"], true);
    assert_eq!(report["rejects"], s.rejects.len());
    assert_eq!(report["events"], accepted().len());
    for needle in SECRETS {
        assert!(!text(&verify.stdout).contains(needle));
        assert!(!text(&verify.stderr).contains(needle));
    }

    // With the key, `rejects show` gives one MRN-bearing message back exactly...
    let show = run(
        &[
            "rejects", "show", "--config", config, "--store", store, "--seq", "2", "--json",
        ],
        &[],
    );
    assert!(show.status.success(), "{}", text(&show.stderr));
    let row: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(row["seq"], 2);
    assert_eq!(row["reason"], malformed()[2].1);
    assert_eq!(
        row["payload"].as_str().unwrap().as_bytes(),
        &s.rejects[2][..]
    );
    assert!(row["payload"].as_str().unwrap().contains("MRN-9002213"));

    // ... and all of them, in order, the invalid UTF-8 one as base64.
    let show = run(&["rejects", "show", "--config", config, "--json"], &[]);
    assert!(show.status.success(), "{}", text(&show.stderr));
    let rows: Vec<Value> = text(&show.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), s.rejects.len());
    for (i, ((row, original), (_, reason))) in
        rows.iter().zip(&s.rejects).zip(malformed()).enumerate()
    {
        assert_eq!(row["seq"], i);
        assert_eq!(row["reason"], reason, "{row}");
        let bytes = match row["payload"].as_str() {
            Some(text) => text.as_bytes().to_vec(),
            None => base64::engine::general_purpose::STANDARD
                .decode(row["payload_base64"].as_str().unwrap())
                .unwrap(),
        };
        assert_eq!(&bytes, original, "seq {i}");
        // The detail names fields, never their values.
        let detail = row["detail"].as_str().unwrap();
        assert!(SECRETS.iter().all(|n| !detail.contains(n)), "{detail}");
    }
    // The text form shows them too.
    let show = run(&["rejects", "show", "--config", config], &[]);
    assert!(show.status.success());
    assert!(text(&show.stdout).contains(std::str::from_utf8(&s.rejects[0]).unwrap()));

    // Another key opens nothing: a clear error, no message bytes.
    let other_key = s.dir.join("other.key");
    std::fs::write(&other_key, OTHER_KEY).unwrap();
    let set = format!("privacy.pseudonym_key_file={}", other_key.display());
    let show = run(&["rejects", "show", "--config", config, "--set", &set], &[]);
    assert_eq!(show.status.code(), Some(1), "{}", text(&show.stderr));
    let (out, err) = (text(&show.stdout), text(&show.stderr));
    let other = RejectSealer::new(&PseudonymKey::from_hex(OTHER_KEY).unwrap());
    assert!(
        err.contains(&format!("sealed under key {}", sealer.key_id()))
            && err.contains(other.key_id()),
        "{err}"
    );
    for needle in SECRETS {
        assert!(!out.contains(needle) && !err.contains(needle), "{out}{err}");
    }
}
