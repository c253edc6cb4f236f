//! Erasure and retention end to end, with the real binary: `custos erase`
//! removes one patient's events and rejected messages (found by pseudonym
//! and by unsealing) and nothing else; `custos prune` and the pipeline's
//! `store.retention_days` delete old flushes; after each, `custos verify`
//! passes with the logs' sizes and roots unchanged, a proof taken before
//! still checks, and SQL sees the tombstones.

mod common;

use std::path::Path;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::DataType;
use custos::event::{PseudonymKey, Pseudonymizer, RejectSealer, SealedPart};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::Value;

use common::{KEY, run};

const ERASED: &str = "MRN-ERASE-7731";
/// Shares a prefix with [`ERASED`]: must survive its erasure.
const NEIGHBOUR: &str = "MRN-ERASE-77310";

fn event(id: &str, time: &str, patient: &str) -> String {
    format!(
        r#"{{"id":"{id}","time":"{time}","kind":"access","actor":{{"id":"emp-{}"}},"action":"read","patient":"{patient}"}}"#,
        id.len()
    )
}

/// 40 events in March (every 4th of the erased patient), 2 lineage events
/// naming that patient, and 3 malformed messages: two hold the erased
/// patient's identifier, one its neighbour's.
fn old_input() -> String {
    let mut lines = Vec::new();
    for i in 0..40 {
        let patient = if i % 4 == 0 {
            ERASED.to_owned()
        } else {
            format!("MRN-KEEP-{i}")
        };
        lines.push(event(
            &format!("old-{i}"),
            &format!("2026-03-0{}T10:00:00Z", 1 + i % 5),
            &patient,
        ));
    }
    for i in 0..2 {
        lines.push(format!(
            r#"{{"id":"lin-{i}","time":"2026-03-04T10:00:00Z","kind":"lineage","actor":{{"id":"etl"}},"op":"derive","inputs":["patient:{ERASED}"],"outputs":["dataset:cohort-{i}"]}}"#
        ));
    }
    lines.push(format!(r#"{{"id":"bad-1","patient":"{ERASED}""#));
    lines.push(format!(
        r#"{{"id":"bad-2","kind":"access","time":"x","patient":"{ERASED}"}}"#
    ));
    lines.push(format!(r#"{{"id":"bad-3","patient":"{NEIGHBOUR}""#));
    lines.join("\n") + "\n"
}

/// 20 events of today, every 5th of the erased patient.
fn new_input(prefix: &str) -> String {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    (0..20)
        .map(|i| {
            let patient = if i % 5 == 0 {
                ERASED.to_owned()
            } else {
                format!("MRN-KEEP-{i}")
            };
            event(&format!("{prefix}-{i}"), &now, &patient) + "\n"
        })
        .collect()
}

/// Every string value of every segment, and every stored reject opened
/// with the key.
fn decoded(store: &Path) -> (Vec<String>, Vec<Vec<u8>>) {
    let sealer = RejectSealer::new(&PseudonymKey::from_hex(KEY).unwrap());
    let (mut texts, mut opened) = (Vec::new(), Vec::new());
    let mut dirs = vec![store.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            texts.push(String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned());
            if path.extension().is_none_or(|e| e != "parquet") {
                continue;
            }
            let file = std::fs::File::open(&path).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap();
            for batch in reader {
                let batch: RecordBatch = batch.unwrap();
                let schema = batch.schema();
                for (field, column) in schema.fields().iter().zip(batch.columns()) {
                    if field.data_type() == &DataType::Utf8 {
                        texts.extend(
                            column
                                .as_string::<i32>()
                                .iter()
                                .flatten()
                                .map(str::to_owned),
                        );
                    }
                }
                if let Some(payloads) = batch.column_by_name("payload") {
                    let records = batch.column_by_name("record").unwrap().as_string::<i32>();
                    for (i, payload) in payloads.as_binary::<i32>().iter().enumerate() {
                        let record: Value = serde_json::from_str(records.value(i)).unwrap();
                        if let Some(label) = record["payload_sealed"].as_str() {
                            opened.push(
                                sealer
                                    .open(label, SealedPart::Payload, payload.unwrap())
                                    .unwrap(),
                            );
                        }
                    }
                }
            }
        }
    }
    (texts, opened)
}

fn verify(store: &str, verifier: &str) -> Value {
    let r = run(&["verify", store, "--key", verifier, "--json"], &[]);
    let report: Value =
        serde_json::from_str(&r.out).unwrap_or_else(|e| panic!("{e}: {}{}", r.out, r.err));
    assert_eq!(r.code, 0, "{report:#}");
    report
}

fn count(store: &str, sql: &str) -> u64 {
    let r = run(&["query", "--store", store, "--format", "json", sql], &[]);
    assert_eq!(r.code, 0, "{}", r.err);
    let row: Value = serde_json::from_str(r.out.lines().next().unwrap()).unwrap();
    row["n"].as_u64().unwrap()
}

#[test]
fn erase_a_patient_then_prune_old_flushes_and_every_proof_still_holds() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let (signer, verifier, store) = (at("signer.key"), at("verifier.key"), at("store"));
    std::fs::write(&verifier, common::keygen_checkpoint(&signer)).unwrap();
    std::fs::write(at("old.jsonl"), old_input()).unwrap();
    std::fs::write(at("new.jsonl"), new_input("new")).unwrap();
    let env = [
        ("CUSTOS_STORE_PATH", store.as_str()),
        ("CUSTOS_CHECKPOINTS_KEY_FILE", signer.as_str()),
    ];
    for file in ["old.jsonl", "new.jsonl"] {
        let r = run(&["ingest", &at(file)], &env);
        assert_eq!(r.code, 0, "{}", r.err);
    }
    let pseudonym = Pseudonymizer::new(&PseudonymKey::from_hex(KEY).unwrap()).patient(ERASED);
    let (texts, opened) = decoded(Path::new(&store));
    assert!(
        texts.iter().any(|t| t.contains(&pseudonym)),
        "the store holds the patient before"
    );
    assert_eq!(opened.len(), 3);
    let before = verify(&store, &verifier);
    let kept = run(&["prove", "new-1", "--store", &store], &[]);
    assert_eq!(kept.code, 0, "{}", kept.err);
    std::fs::write(at("kept.proof.json"), &kept.out).unwrap();

    let erase = run(
        &[
            "erase",
            "--store",
            &store,
            "--patient",
            ERASED,
            "--reason",
            "DSR-2026-17",
        ],
        &[],
    );
    assert_eq!(erase.code, 0, "{}{}", erase.out, erase.err);
    // 10 + 4 access events, 2 lineage events, 2 rejects.
    assert!(
        erase.out.contains("erased 16 events and 2 rejects"),
        "{}",
        erase.out
    );
    assert!(!erase.out.contains(ERASED) && !erase.err.contains(ERASED));

    let (texts, opened) = decoded(Path::new(&store));
    assert!(
        !texts.iter().any(|t| t.contains(&pseudonym)),
        "the pseudonym is gone"
    );
    assert!(
        texts.iter().any(|t| t.contains("DSR-2026-17")),
        "tombstones name the request"
    );
    assert_eq!(opened.len(), 1, "one sealed reject is left");
    assert!(String::from_utf8_lossy(&opened[0]).contains(NEIGHBOUR));
    let after = verify(&store, &verifier);
    assert_eq!(after["logs"], before["logs"], "sizes and roots unchanged");
    assert_eq!(after["erased"], 18);
    let proof = run(
        &["verify-proof", &at("kept.proof.json"), "--key", &verifier],
        &[],
    );
    assert_eq!(proof.code, 0, "{}{}", proof.out, proof.err);
    assert_eq!(
        count(
            &store,
            "select count(*) as n from events where kind = 'erased'"
        ),
        16
    );
    assert_eq!(
        count(
            &store,
            "select count(*) as n from rejects where reason = 'erased'"
        ),
        2
    );
    let show = run(&["rejects", "show", "--store", &store], &[]);
    assert_eq!(show.code, 0, "{}", show.err);
    assert!(
        show.out.contains(NEIGHBOUR) && show.out.contains("erased"),
        "{}",
        show.out
    );

    // The old flush ends on 2026-03-05: nothing is wholly before March 3.
    let prune = run(
        &[
            "prune",
            "--store",
            &store,
            "--before",
            "2026-03-03T00:00:00Z",
        ],
        &[],
    );
    assert_eq!(prune.code, 0, "{}", prune.err);
    assert!(prune.out.contains("pruned 0 events"), "{}", prune.out);

    // A running pipeline with a 30-day retention prunes the March flush
    // when it opens the chain.
    std::fs::write(at("newer.jsonl"), new_input("newer")).unwrap();
    let env = [
        ("CUSTOS_STORE_PATH", store.as_str()),
        ("CUSTOS_CHECKPOINTS_KEY_FILE", signer.as_str()),
        ("CUSTOS_STORE_RETENTION_DAYS", "30"),
    ];
    let r = run(&["ingest", &at("newer.jsonl")], &env);
    assert_eq!(r.code, 0, "{}", r.err);
    assert!(
        r.err.contains("pruned segments past the retention period"),
        "{}",
        r.err
    );
    let report = verify(&store, &verifier);
    assert_eq!(report["pruned"], 45, "42 events and 3 rejects of March");
    assert_eq!(report["events"], 40);
    assert_eq!(
        count(
            &store,
            "select count(*) as n from events where time < '2026-04-01'"
        ),
        0
    );
    let proof = run(
        &["verify-proof", &at("kept.proof.json"), "--key", &verifier],
        &[],
    );
    assert_eq!(proof.code, 0, "{}{}", proof.out, proof.err);
}

/// A store's decoded values hold `pseudonym`.
fn holds(store: &str, pseudonym: &str) -> bool {
    decoded(Path::new(store))
        .0
        .iter()
        .any(|t| t.contains(pseudonym))
}

#[test]
fn an_erasure_that_crashed_is_finished_by_running_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let at = |name: &str| dir.path().join(name).display().to_string();
    let store = at("store");
    std::fs::write(at("old.jsonl"), old_input()).unwrap();
    let r = run(
        &["ingest", &at("old.jsonl")],
        &[("CUSTOS_STORE_PATH", store.as_str())],
    );
    assert_eq!(r.code, 0, "{}", r.err);
    let p = Pseudonymizer::new(&PseudonymKey::from_hex(KEY).unwrap());
    let verify_plain = || run(&["verify", &store], &[]);

    for (point, patient, first, again) in [
        // Before the commit: nothing is erased yet; the rerun does it all.
        (
            "erase.written",
            ERASED,
            "",
            "erased 12 events and 2 rejects",
        ),
        // After the commit, before deleting the replaced files: the rows
        // are erased but their old files are still there until a rerun.
        (
            "amend.written",
            "MRN-KEEP-1",
            "",
            "erased 0 events and 0 rejects",
        ),
    ] {
        let args = [
            "erase",
            "--store",
            &store,
            "--patient",
            patient,
            "--reason",
            "DSR-9",
        ];
        let crashed = run(&args, &[("CUSTOS_CRASH_AT", point)]);
        assert_eq!(
            crashed.code, -1,
            "{point} must abort: {}{}",
            crashed.out, crashed.err
        );
        assert!(crashed.err.contains(point), "{}", crashed.err);
        let report = verify_plain();
        assert_eq!(
            report.code, 1,
            "{point}: the leftover is reported\n{}",
            report.out
        );
        assert!(
            report.out.contains("file not in manifest"),
            "{}",
            report.out
        );
        assert!(
            holds(&store, &p.patient(patient)),
            "{point}: still on disk{first}"
        );
        let rerun = run(&args, &[]);
        assert_eq!(rerun.code, 0, "{}", rerun.err);
        assert!(rerun.out.contains(again), "{point}: {}", rerun.out);
        assert!(
            !holds(&store, &p.patient(patient)),
            "{point}: gone after the rerun"
        );
        let report = verify_plain();
        assert_eq!(report.code, 0, "{point}: {}", report.out);
    }
}
