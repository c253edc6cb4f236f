//! Erasure and pruning: the log, its checkpoints and the remaining rows'
//! proofs hold; the removed content is gone from every file; a crash at
//! either step is completed by the next open.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::event::{Decoder, PseudonymKey, Pseudonymizer, Reject, RejectReason};
use crate::ledger::checkpoint::NoteSigner;
use crate::ledger::{
    ChainId, Erasure, Origin, RejectBytes, Store, StoreOptions, StoredRow, Table, VerifyOptions,
    verify_with,
};

fn pseudonymizer() -> Pseudonymizer {
    Pseudonymizer::new(&PseudonymKey::from_bytes([7; 32]))
}

fn time(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("example.org/custos", [1; 32]).unwrap()
}

/// A store with one chain of 4 flushes, one per day from 2026-03-01, of 25
/// events each (patients MRN-0 … MRN-4 in turn) and one reject, and a
/// signed checkpoint after each.
fn populated(root: &Path) -> (Store, ChainId) {
    let store = Store::open(
        root,
        StoreOptions {
            origin: Some("example.org/custos".into()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let chain = ChainId::new("audit", 0);
    let d = Decoder::new(pseudonymizer());
    let mut w = store.chain_writer(&chain).unwrap();
    let mut offset = 0;
    for day in 1..=4 {
        for i in 0..25 {
            let text = format!(
                r#"{{"id":"e-{day}-{i}","time":"2026-03-0{day}T10:{i:02}:00Z","kind":"access","actor":{{"id":"emp-{i}"}},"action":"read","patient":"MRN-{}"}}"#,
                i % 5
            );
            w.push_event(Origin::kafka(offset), &d.decode(text.as_bytes()).unwrap());
            offset += 1;
        }
        let reject = Reject::new(RejectReason::InvalidJson, "invalid JSON");
        let payload = format!(r#"{{"patient":"MRN-{}","#, day % 5);
        w.push_reject(
            Origin::kafka(offset),
            RejectBytes::received(None, payload.as_bytes()),
            &reject,
        );
        offset += 1;
        w.flush().unwrap();
        w.checkpoint(&signer(), time("2026-03-05T00:00:00Z"))
            .unwrap();
    }
    (store, chain)
}

fn verified(root: &Path) -> crate::ledger::VerifyReport {
    let report = verify_with(
        root,
        &VerifyOptions {
            verifier: Some(signer().verifier()),
            ..VerifyOptions::default()
        },
    )
    .unwrap();
    assert!(report.ok(), "{:#?}", report.problems);
    report
}

/// Every file under `root` that contains `needle`.
fn files_holding(root: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if contents(&path)
                .iter()
                .any(|c| memchr::memmem::find(c, needle).is_some())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// A file's bytes and, for a segment (whose pages are compressed), every
/// string and binary value in it.
fn contents(path: &Path) -> Vec<Vec<u8>> {
    use arrow::array::AsArray;
    use arrow::datatypes::DataType;
    let mut out = vec![fs::read(path).unwrap()];
    if path.extension().is_some_and(|e| e == "parquet") {
        let file = fs::File::open(path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            for column in batch.unwrap().columns() {
                match column.data_type() {
                    DataType::Utf8 => out.extend(
                        column
                            .as_string::<i32>()
                            .iter()
                            .flatten()
                            .map(|s| s.as_bytes().to_vec()),
                    ),
                    DataType::Binary => out.extend(
                        column
                            .as_binary::<i32>()
                            .iter()
                            .flatten()
                            .map(<[u8]>::to_vec),
                    ),
                    _ => {}
                }
            }
        }
    }
    out
}

/// Selects the events of `pseudonym` and the rejects whose payload holds
/// `raw` (as `custos erase` does, without sealing).
fn patient<'a>(pseudonym: &'a str, raw: &'a str) -> impl FnMut(Table, StoredRow<'_>) -> bool + 'a {
    move |_, row| match row {
        StoredRow::Event { record } => record.contains(pseudonym),
        StoredRow::Reject { payload, .. } => {
            memchr::memmem::find(payload, raw.as_bytes()).is_some()
        }
    }
}

fn erasure() -> Erasure {
    Erasure {
        reason: "DSR-2026-0042".into(),
        time: time("2026-03-10T12:00:00Z"),
    }
}

/// A populated store whose rows of patient MRN-1 are erased.
fn erased_mrn_1() -> (tempfile::TempDir, Store, ChainId) {
    let dir = tempfile::tempdir().unwrap();
    let (store, chain) = populated(dir.path());
    let pseudonym = pseudonymizer().patient("MRN-1");
    let mut w = store.chain_writer(&chain).unwrap();
    w.erase(&erasure(), &mut patient(&pseudonym, "MRN-1"))
        .unwrap();
    drop(w);
    (dir, store, chain)
}

#[test]
fn erasure_removes_the_rows_and_keeps_every_proof() {
    let dir = tempfile::tempdir().unwrap();
    let (store, chain) = populated(dir.path());
    let pseudonym = pseudonymizer().patient("MRN-1");
    assert!(!files_holding(dir.path(), pseudonym.as_bytes()).is_empty());
    let before = verified(dir.path());
    let head = |table| {
        store
            .tree_root(&chain, table, store.tree_size(&chain, table).unwrap())
            .unwrap()
    };
    let roots = (head(Table::Events), head(Table::Rejects));
    // A row that stays, proved before the erasure.
    let kept = store.locate_event("e-3-0").unwrap()[0].seq;

    let mut w = store.chain_writer(&chain).unwrap();
    let stats = w
        .erase(&erasure(), &mut patient(&pseudonym, "MRN-1"))
        .unwrap();
    drop(w);
    // MRN-1 is patient of events 1, 6, 11, 16, 21 of each day, and of the
    // reject of day 1.
    assert_eq!((stats.events, stats.rejects, stats.segments), (20, 1, 5));

    let after = verified(dir.path());
    assert_eq!(after.erased, 21);
    assert_eq!(
        after.heads, before.heads,
        "every log keeps its size and root"
    );
    assert_eq!((head(Table::Events), head(Table::Rejects)), roots);
    assert!(files_holding(dir.path(), pseudonym.as_bytes()).is_empty());
    assert!(files_holding(dir.path(), b"MRN-1\"").is_empty());
    // The other patients' rows are all there.
    let other = pseudonymizer().patient("MRN-2");
    assert!(!files_holding(dir.path(), other.as_bytes()).is_empty());
    assert!(files_holding(dir.path(), b"MRN-2").len() == 1);

    let proof = store
        .prove_inclusion(&chain, Table::Events, kept, None)
        .unwrap();
    let summary = proof.check(Some(&signer().verifier())).unwrap();
    assert!(summary.record_checked);
    // An erased row is still proved by its leaf hash, without content.
    let proof = store
        .prove_inclusion(&chain, Table::Events, 1, None)
        .unwrap();
    assert!(proof.record.is_none());
    let summary = proof.check(Some(&signer().verifier())).unwrap();
    assert!(!summary.record_checked);
    assert!(store.locate_event("e-1-1").unwrap().is_empty());

    // Again: nothing left to erase, nothing written.
    let manifest = fs::read(
        store
            .root()
            .join(crate::ledger::manifest::manifest_rel_path(&chain)),
    )
    .unwrap();
    let mut w = store.chain_writer(&chain).unwrap();
    let stats = w
        .erase(&erasure(), &mut patient(&pseudonym, "MRN-1"))
        .unwrap();
    assert_eq!(stats.segments, 0);
    // A second patient: the segments move to their second generation.
    let mrn2 = pseudonymizer().patient("MRN-2");
    let stats = w.erase(&erasure(), &mut patient(&mrn2, "MRN-2")).unwrap();
    assert_eq!((stats.events, stats.rejects), (20, 1));
    drop(w);
    assert!(
        fs::read(
            store
                .root()
                .join(crate::ledger::manifest::manifest_rel_path(&chain))
        )
        .unwrap()
        .len()
            > manifest.len()
    );
    let report = verified(dir.path());
    assert_eq!(report.erased, 42);
    assert!(
        dir.path()
            .join("events/audit/0/00000000000000000000.e2.parquet")
            .exists()
    );
    // The chain goes on after the amendments.
    let mut w = store.chain_writer(&chain).unwrap();
    let d = Decoder::new(pseudonymizer());
    let next = w.last_offset().unwrap() + 1;
    let text = r#"{"id":"late","time":"2026-03-09T10:00:00Z","kind":"access","actor":{"id":"emp-1"},"action":"read","patient":"MRN-9"}"#;
    w.push_event(Origin::kafka(next), &d.decode(text.as_bytes()).unwrap());
    w.flush().unwrap();
    drop(w);
    assert_eq!(verified(dir.path()).events, 101);
}

#[test]
fn pruning_deletes_old_flushes_and_keeps_their_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let (store, chain) = populated(dir.path());
    let before = verified(dir.path());
    let mut w = store.chain_writer(&chain).unwrap();
    // Days 1 and 2 are wholly before 2026-03-03; day 3 is not.
    let stats = w
        .prune(
            time("2026-03-03T00:00:00Z").timestamp_micros(),
            time("2026-03-10T00:00:00Z"),
        )
        .unwrap();
    assert_eq!((stats.events, stats.rejects, stats.segments), (50, 2, 4));
    let again = w
        .prune(
            time("2026-03-03T00:00:00Z").timestamp_micros(),
            time("2026-03-10T00:00:00Z"),
        )
        .unwrap();
    assert_eq!(again.segments, 0);
    drop(w);
    assert!(
        !dir.path()
            .join("events/audit/0/00000000000000000000.parquet")
            .exists()
    );
    let after = verified(dir.path());
    assert_eq!(after.heads, before.heads);
    assert_eq!((after.pruned, after.events), (52, 50));
    // Checkpoints over pruned rows, and proofs of the remaining ones.
    let kept = store.locate_event("e-4-7").unwrap()[0].seq;
    let proof = store
        .prove_inclusion(&chain, Table::Events, kept, Some(100))
        .unwrap();
    proof.check(Some(&signer().verifier())).unwrap();
    let proof = store
        .prove_consistency(&chain, Table::Events, 25, 100)
        .unwrap();
    proof.check(Some(&signer().verifier())).unwrap();
    assert!(store.locate_event("e-1-3").unwrap().is_empty());
    let mut replayed = 0;
    store
        .replay_events(&chain, 0, |_, _| replayed += 1)
        .unwrap();
    assert_eq!(replayed, 50);
    // Erasure skips pruned segments.
    let pseudonym = pseudonymizer().patient("MRN-1");
    let mut w = store.chain_writer(&chain).unwrap();
    let stats = w
        .erase(&erasure(), &mut patient(&pseudonym, "MRN-1"))
        .unwrap();
    assert_eq!((stats.events, stats.rejects), (10, 0));
    drop(w);
    verified(dir.path());
}

#[test]
fn a_crash_in_an_erasure_is_completed_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, chain) = populated(dir.path());
    let seg = dir
        .path()
        .join("events/audit/0/00000000000000000025.parquet");
    let saved = fs::read(&seg).unwrap();
    let pseudonym = pseudonymizer().patient("MRN-1");
    let mut w = store.chain_writer(&chain).unwrap();
    w.erase(&erasure(), &mut patient(&pseudonym, "MRN-1"))
        .unwrap();
    drop(w);

    // Crash after the amendment, before the old file's deletion.
    fs::write(&seg, &saved).unwrap();
    let report = verify_with(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file.ends_with("00000000000000000025.parquet")),
        "{:#?}",
        report.problems
    );
    drop(store.chain_writer(&chain).unwrap());
    assert!(!seg.exists());
    verified(dir.path());

    // Crash after writing a rewrite, before its amendment: the rewrite
    // goes, the segment stays as the manifest has it.
    let next = dir
        .path()
        .join("events/audit/0/00000000000000000025.e2.parquet");
    fs::copy(
        dir.path()
            .join("events/audit/0/00000000000000000025.e1.parquet"),
        &next,
    )
    .unwrap();
    drop(store.chain_writer(&chain).unwrap());
    assert!(!next.exists());
    verified(dir.path());

    // A generation that no crash explains is refused, not deleted.
    let odd = dir
        .path()
        .join("events/audit/0/00000000000000000025.e7.parquet");
    fs::write(&odd, b"x").unwrap();
    assert!(store.chain_writer(&chain).is_err());
    assert!(odd.exists());
}

#[test]
fn verify_catches_a_forged_tombstone_and_a_forged_amendment() {
    let dir = tempfile::tempdir().unwrap();
    let (store, chain) = populated(dir.path());
    let manifest = store
        .root()
        .join(crate::ledger::manifest::manifest_rel_path(&chain));
    let original = fs::read_to_string(&manifest).unwrap();

    // Someone hides rows by writing a prune amendment (and deleting the
    // file) for rows whose leaves they also change: the roots catch it.
    let tree = dir.path().join("tree/events/audit/0/0.hashes");
    let mut leaves = fs::read(&tree).unwrap();
    leaves[40] ^= 1;
    fs::write(&tree, &leaves).unwrap();
    fs::remove_file(
        dir.path()
            .join("events/audit/0/00000000000000000000.parquet"),
    )
    .unwrap();
    let prune = r#"{"amend":"prune","table":"events","first_seq":0,"time":"2026-03-10T00:00:00Z","reason":"retention"}"#;
    fs::write(&manifest, format!("{original}{prune}\n")).unwrap();
    let report = verify_with(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(
        report.problems.iter().any(|p| p.what.contains("root")),
        "{:#?}",
        report.problems
    );

    // An erased row whose tombstone names another leaf.
    let (dir, store, chain) = erased_mrn_1();
    let lines = store.manifest(&chain).unwrap();
    let line = &lines[0];
    let path = dir.path().join(&line.file);
    let bytes = fs::read(&path).unwrap();
    // Rewrite the segment with the first tombstone's leaf changed.
    let flip = |r: &str| {
        let digit = if &r[11..12] == "0" { "1" } else { "0" };
        format!("{}{digit}{}", &r[..11], &r[12..])
    };
    let forged = forge_first_tombstone(&path, flip);
    assert_ne!(forged, bytes);
    let report = verify_with(dir.path(), &VerifyOptions::default()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file == line.file && p.row == Some(1)),
        "{:#?}",
        report.problems
    );
    // A tombstone that keeps content in a member of its own: its bytes are
    // covered by no hash, so it is refused.
    fs::write(&path, &bytes).unwrap();
    let keep = |r: &str| r.replacen(r#","src":"#, r#","kept":"MRN-1","src":"#, 1);
    forge_first_tombstone(&path, keep);
    let report = verify_with(dir.path(), &VerifyOptions::default()).unwrap();
    let canonical = report
        .problems
        .iter()
        .find(|p| p.row == Some(1) && p.what.contains("canonical form"));
    let Some(canonical) = canonical else {
        panic!("{:#?}", report.problems);
    };
    // A tombstone's id is empty: the problem names no event.
    assert_eq!(canonical.event_id, None);
    assert!(
        canonical
            .to_string()
            .starts_with(&format!("{} row 1 (seq 1): ", line.file)),
        "{canonical}"
    );
}

#[test]
fn a_tombstone_carries_its_amendments_reason_and_time() {
    let (dir, store, chain) = erased_mrn_1();
    verified(dir.path());
    let line = &store.manifest(&chain).unwrap()[0];
    // The first tombstone (row 1) names another request: canonical all the
    // same, and the amendment line still says DSR-2026-0042.
    let path = dir.path().join(&line.file);
    forge_first_tombstone(&path, |r| r.replace("DSR-2026-0042", "DSR-2026-0043"));
    let report = verify_with(dir.path(), &VerifyOptions::default()).unwrap();
    let rows: Vec<String> = report
        .problems
        .iter()
        .filter(|p| p.row.is_some())
        .map(|p| p.to_string())
        .collect();
    // (A tombstone's id is empty: the problem names no event.)
    assert_eq!(
        rows,
        [format!(
            r#"{} row 1 (seq 1): the tombstone's erasure (reason "DSR-2026-0043", time "2026-03-10T12:00:00Z") is not the reason and time of an erase amendment of this segment"#,
            line.file
        )]
    );
}

/// Rewrites a segment with its first tombstone's record changed; returns
/// the new bytes.
fn forge_first_tombstone(path: &Path, change: impl Fn(&str) -> String) -> Vec<u8> {
    forge_first(path, |r| r.starts_with(r#"{"erased":""#), change)
}

/// Rewrites a segment with the first record that `pick` picks changed;
/// returns the new bytes.
fn forge_first(
    path: &Path,
    pick: impl Fn(&str) -> bool,
    change: impl Fn(&str) -> String,
) -> Vec<u8> {
    use arrow::array::{Array, AsArray, RecordBatch, StringArray};
    use parquet::arrow::ArrowWriter;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::sync::Arc;
    let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    let schema = batches[0].schema();
    let at = schema.index_of("record").unwrap();
    let mut done = false;
    let forged: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let records = b.column(at).as_string::<i32>();
            let new: StringArray = (0..records.len())
                .map(|i| {
                    let r = records.value(i);
                    if !done && pick(r) {
                        done = true;
                        Some(change(r))
                    } else {
                        Some(r.to_owned())
                    }
                })
                .collect();
            let mut cols = b.columns().to_vec();
            cols[at] = Arc::new(new);
            RecordBatch::try_new(schema.clone(), cols).unwrap()
        })
        .collect();
    let mut out = Vec::new();
    let mut w = ArrowWriter::try_new(&mut out, schema.clone(), None).unwrap();
    for b in &forged {
        w.write(b).unwrap();
    }
    w.close().unwrap();
    fs::write(path, &out).unwrap();
    out
}

#[test]
fn a_changed_row_is_not_erased() {
    let dir = tempfile::tempdir().unwrap();
    let (store, chain) = populated(dir.path());
    let pseudonym = pseudonymizer().patient("MRN-1");
    let path = dir
        .path()
        .join("events/audit/0/00000000000000000000.parquet");
    // Someone changed the action of one of the patient's accesses.
    let forged = forge_first(
        &path,
        |r| r.contains(&pseudonym),
        |r| r.replacen("\"read\"", "\"print\"", 1),
    );
    let mut w = store.chain_writer(&chain).unwrap();
    let err = w
        .erase(&erasure(), &mut patient(&pseudonym, "MRN-1"))
        .unwrap_err();
    assert!(
        err.to_string().contains("does not hash to its leaf"),
        "{err}"
    );
    drop(w);
    assert_eq!(fs::read(&path).unwrap(), forged, "the evidence stays");
    assert!(
        store
            .manifest(&chain)
            .unwrap()
            .iter()
            .all(|l| l.generation() == 0)
    );
}

#[test]
fn a_crash_in_a_pruning_is_completed_by_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let (store, chain) = populated(dir.path());
    let seg = dir
        .path()
        .join("events/audit/0/00000000000000000000.parquet");
    let saved = fs::read(&seg).unwrap();
    let mut w = store.chain_writer(&chain).unwrap();
    let before = time("2026-03-02T00:00:00Z").timestamp_micros();
    let stats = w.prune(before, time("2026-03-10T00:00:00Z")).unwrap();
    assert_eq!((stats.events, stats.rejects), (25, 1));
    drop(w);
    // Crash after the amendment, before the deletion: the expired rows are
    // still on disk, verify says so once, and the next open deletes them.
    fs::write(&seg, &saved).unwrap();
    let report = verify_with(dir.path(), &VerifyOptions::default()).unwrap();
    let about: Vec<_> = report
        .problems
        .iter()
        .filter(|p| p.file.ends_with("00000000000000000000.parquet"))
        .collect();
    assert_eq!(about.len(), 1, "{:#?}", report.problems);
    assert!(about[0].what.contains("pruned"), "{:#?}", about);
    drop(store.chain_writer(&chain).unwrap());
    assert!(!seg.exists());
    assert_eq!(verified(dir.path()).pruned, 26);
}
