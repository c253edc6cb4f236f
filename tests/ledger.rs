//! The ledger through its public API: write a store, verify it, then tamper
//! with it in every way `DESIGN.md` names and check that `verify` says
//! where.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use custos::event::{Decoder, PseudonymKey, Pseudonymizer, RejectSealer, SealedPart};
use custos::ledger::{
    ChainId, Origin, Problem, RejectBytes, Store, StoreOptions, VerifyReport, verify,
};

/// The tamper suite's file editing, shared.
#[path = "tamper/edit.rs"]
#[allow(dead_code)]
mod edit;

const VALID: &str = include_str!("data/events-v1.jsonl");
const INVALID: &str = include_str!("data/events-invalid.jsonl");

/// The first events segment of chain audit/0, 4 rows.
const SEGMENT: &str = "events/audit/0/00000000000000000000.parquet";

/// Writes 3 flushes of events and rejects to each of 2 chains.
fn build_store(root: &Path) {
    let store = Store::open(root, StoreOptions::default()).unwrap();
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::from_bytes([1; 32])));
    let sealer = RejectSealer::new(&PseudonymKey::from_bytes([1; 32]));
    let valid: Vec<&str> = VALID.lines().filter(|l| !l.trim().is_empty()).collect();
    let invalid: Vec<&str> = INVALID.lines().filter(|l| !l.trim().is_empty()).collect();
    for partition in 0..2 {
        let chain = ChainId::new("audit", partition);
        let mut w = store.chain_writer(&chain).unwrap();
        let mut offset = 10 * i64::from(partition);
        for flush in 0..3 {
            for i in 0..4 {
                let line = valid[(flush * 4 + i) % valid.len()];
                w.push_event(
                    Origin::kafka(offset),
                    &decoder.decode(line.as_bytes()).unwrap(),
                );
                offset += 1;
            }
            for i in 0..2 {
                let line = invalid[(flush * 2 + i) % invalid.len()];
                let reject = decoder.decode(line.as_bytes()).unwrap_err();
                let key = (i == 0).then_some(&b"emp-1"[..]);
                // The second flush's rejects sealed, as the pipeline stores
                // them; the others as received.
                if flush == 1 {
                    let key = key.map(|k| sealer.seal(SealedPart::Key, k).unwrap());
                    let payload = sealer.seal(SealedPart::Payload, line.as_bytes()).unwrap();
                    let bytes = RejectBytes::sealed(sealer.label(), key.as_deref(), &payload);
                    w.push_reject(Origin::kafka(offset), bytes, &reject);
                } else {
                    let bytes = RejectBytes::received(key, line.as_bytes());
                    w.push_reject(Origin::kafka(offset), bytes, &reject);
                }
                offset += 1;
            }
            let stats = w.flush().unwrap().unwrap();
            assert_eq!((stats.events, stats.rejects, stats.segments), (4, 2, 2));
            assert_eq!(stats.last_offset, offset - 1);
        }
        assert_eq!(w.last_offset(), Some(offset - 1));
    }
}

/// A fresh copy of a good store in its own temporary folder.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    build_store(&root);
    Fixture { _dir: dir, root }
}

fn problems_of(root: &Path) -> Vec<Problem> {
    let report = verify(root).unwrap();
    assert!(!report.ok(), "tampering went unnoticed");
    for p in &report.problems {
        eprintln!("{p}");
    }
    report.problems
}

/// The first problem naming `file`.
fn first_for<'a>(problems: &'a [Problem], file: &str) -> &'a Problem {
    problems
        .iter()
        .find(|p| p.file == file)
        .unwrap_or_else(|| panic!("no problem names {file}: {problems:?}"))
}

/// Reads a segment, lets `edit` change its rows, writes it back with the
/// same metadata (as an attacker with the format document would).
fn rewrite(path: &Path, edit: impl FnOnce(RecordBatch) -> RecordBatch) {
    let (batch, meta) = edit::read_segment(path);
    edit::write_segment(path, &edit(batch), meta);
}

/// Makes the manifest agree with the file's new digest and size, so that
/// only the row checks can catch the edit.
fn reseal_manifest(root: &Path, file: &str) {
    edit::reseal(root, "manifests/audit/0.jsonl", file);
}

#[test]
fn a_written_store_verifies() {
    let f = fixture();
    let report: VerifyReport = verify(&f.root).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.chains, 2);
    assert_eq!(report.segments, 12);
    assert_eq!((report.events, report.rejects), (24, 12));

    // Reopening continues where the last flush ended.
    let store = Store::open(&f.root, StoreOptions::default()).unwrap();
    let w = store.chain_writer(&ChainId::new("audit", 1)).unwrap();
    assert_eq!(w.last_offset(), Some(10 + 18 - 1));
}

#[test]
fn a_flipped_byte_is_found() {
    let f = fixture();
    let path = f.root.join(SEGMENT);
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    fs::write(&path, bytes).unwrap();
    let problems = problems_of(&f.root);
    assert!(first_for(&problems, SEGMENT).what.contains("BLAKE3"));
}

#[test]
fn a_deleted_row_is_found() {
    let f = fixture();
    rewrite(&f.root.join(SEGMENT), |b| edit::pick(&b, &[0, 1, 3]));
    let problems = problems_of(&f.root);
    assert!(
        problems
            .iter()
            .any(|p| p.file == SEGMENT && p.what.contains("BLAKE3"))
    );
    let row = problems.iter().find(|p| p.row.is_some()).unwrap();
    assert_eq!(
        (row.file.as_str(), row.row, row.seq),
        (SEGMENT, Some(2), Some(3))
    );

    // Even with the manifest's digest fixed up, the chain names the row.
    reseal_manifest(&f.root, SEGMENT);
    let problems = problems_of(&f.root);
    let p = first_for(&problems, SEGMENT);
    assert_eq!(p.row, Some(2), "{p}");
}

#[test]
fn reordered_rows_are_found() {
    let f = fixture();
    rewrite(&f.root.join(SEGMENT), |b| edit::pick(&b, &[0, 2, 1, 3]));
    reseal_manifest(&f.root, SEGMENT);
    let problems = problems_of(&f.root);
    let p = first_for(&problems, SEGMENT);
    assert_eq!((p.row, p.seq), (Some(1), Some(2)), "{p}");
}

#[test]
fn a_removed_segment_is_found() {
    let f = fixture();
    fs::remove_file(f.root.join(SEGMENT)).unwrap();
    let problems = problems_of(&f.root);
    assert!(first_for(&problems, SEGMENT).what.contains("missing"));
}

#[test]
fn a_stray_segment_is_found() {
    let f = fixture();
    let stray = "events/audit/0/00000000000000000099.parquet";
    fs::copy(f.root.join(SEGMENT), f.root.join(stray)).unwrap();
    let problems = problems_of(&f.root);
    assert_eq!(first_for(&problems, stray).what, "file not in manifest");
}

#[test]
fn a_truncated_segment_is_found() {
    let f = fixture();
    let path = f.root.join(SEGMENT);
    let len = fs::metadata(&path).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let problems = problems_of(&f.root);
    let mine: Vec<&Problem> = problems.iter().filter(|p| p.file == SEGMENT).collect();
    assert!(mine.iter().any(|p| p.what.contains("bytes")), "{mine:?}");
    assert!(
        mine.iter().any(|p| p.what.contains("cannot read")),
        "{mine:?}"
    );
}

#[test]
fn an_edited_typed_column_is_found() {
    let f = fixture();
    rewrite(&f.root.join(SEGMENT), |b| {
        let idx = b.schema().index_of("actor_id").unwrap();
        let mut columns: Vec<ArrayRef> = b.columns().to_vec();
        let old = b
            .column(idx)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        let new: StringArray = (0..b.num_rows())
            .map(|i| Some(if i == 1 { "someone-else" } else { old.value(i) }))
            .collect();
        columns[idx] = Arc::new(new);
        RecordBatch::try_new(b.schema(), columns).unwrap()
    });
    reseal_manifest(&f.root, SEGMENT);
    let problems = problems_of(&f.root);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(
        problems[0].to_string(),
        format!("{SEGMENT} row 1 (seq 1, event a-0002): column actor_id disagrees with the record")
    );
}

#[test]
fn a_raised_row_count_is_blamed_on_the_manifest_line() {
    let f = fixture();
    let manifest = f.root.join("manifests/audit/0.jsonl");
    let text = fs::read_to_string(&manifest).unwrap();
    let mut lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = lines
        .iter_mut()
        .rev()
        .find(|l| l["table"] == "events")
        .unwrap();
    let file = last["file"].as_str().unwrap().to_owned();
    let rows = last["rows"].as_u64().unwrap();
    last["rows"] = (rows + 5).into();
    let edited: Vec<String> = lines.iter().map(|l| l.to_string() + "\n").collect();
    fs::write(&manifest, edited.concat()).unwrap();

    let problems = problems_of(&f.root);
    assert!(
        problems.iter().any(|p| p.file == "manifests/audit/0.jsonl"
            && p.what.contains(&format!("rows is {}", rows + 5))
            && p.what.contains("the line was changed")),
        "{problems:?}"
    );
    assert!(
        !problems
            .iter()
            .any(|p| p.file == file && p.what.contains("row is missing")),
        "the file is intact: {problems:?}"
    );
}
