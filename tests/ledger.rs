//! The ledger through its public API: write a store, verify it, then tamper
//! with it in every way `DESIGN.md` names and check that `verify` says
//! where.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use custos::event::{Decoder, PseudonymKey, Pseudonymizer, RejectSealer, SealedPart};
use custos::ledger::{
    ChainId, Origin, Problem, QUERIES_STREAM, RejectBytes, Store, StoreOptions, VerifyReport,
    verify,
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

const MANIFEST: &str = "manifests/audit/0.jsonl";

/// Adds chain `+queries/0` to a store: 2 flushes of 2 query log entries.
fn add_query_chain(root: &Path) {
    let store = Store::open(root, StoreOptions::default()).unwrap();
    let mut w = store
        .chain_writer(&ChainId::new(QUERIES_STREAM, 0))
        .unwrap();
    for offset in 0..4 {
        let entry = serde_json::json!({
            "at": "2026-03-01T10:00:00Z", "who": "auditor", "surface": "sql",
            "sql": "select 1", "rows": 1, "outcome": "ok", "elapsed_ms": 2,
        });
        w.push_query(Origin::kafka(offset), &entry).unwrap();
        if offset % 2 == 1 {
            w.flush().unwrap();
        }
    }
}

#[test]
fn a_segment_of_a_table_its_chain_does_not_hold_is_refused() {
    let f = fixture();
    add_query_chain(&f.root);
    assert!(verify(&f.root).unwrap().ok());
    // The second line of the source chain (rejects) turned into incidents,
    // the first line of the query chain into events.
    edit::edit_manifest(&f.root, MANIFEST, |i, v| {
        if i == 1 {
            v["table"] = "incidents".into();
        }
    });
    let queries = format!("manifests/{QUERIES_STREAM}/0.jsonl");
    edit::edit_manifest(&f.root, &queries, |i, v| {
        if i == 0 {
            v["table"] = "events".into();
        }
    });
    let problems = problems_of(&f.root);
    let refused = |file: &str, what: &str| {
        problems
            .iter()
            .any(|p| p.file == file && p.what.starts_with(what))
    };
    assert!(
        refused(
            MANIFEST,
            r#"manifest line 2: a chain of stream "audit" holds no incidents segments"#
        ),
        "{problems:?}"
    );
    assert!(
        refused(
            &queries,
            r#"manifest line 1: a chain of stream "+queries" holds no events segments"#
        ),
        "{problems:?}"
    );
}

#[test]
fn time_fields_are_on_events_lines_only() {
    let f = fixture();
    add_query_chain(&f.root);
    let queries = format!("manifests/{QUERIES_STREAM}/0.jsonl");
    edit::edit_manifest(&f.root, &queries, |i, v| {
        if i == 1 {
            v["min_time_us"] = 1.into();
            v["max_time_us"] = 2.into();
        }
    });
    edit::edit_manifest(&f.root, MANIFEST, |i, v| {
        if i == 2 {
            v.as_object_mut().unwrap().remove("max_time_us");
        }
    });
    let problems = problems_of(&f.root);
    let has = |file: &str, what: &str| problems.iter().any(|p| p.file == file && p.what == what);
    assert!(
        has(
            &queries,
            "manifest line 2: a query_log segment has time fields"
        ),
        "{problems:?}"
    );
    assert!(
        has(
            MANIFEST,
            "manifest line 3: an events segment lacks min_time_us or max_time_us"
        ),
        "{problems:?}"
    );
}

#[test]
fn an_amendment_line_inside_a_flush_is_found() {
    let f = fixture();
    // Between the events and the rejects line of flush 1.
    let prune = r#"{"amend":"prune","table":"events","first_seq":0,"time":"2026-03-10T00:00:00Z","reason":"retention"}"#;
    fs::remove_file(f.root.join(SEGMENT)).unwrap();
    edit::edit_lines(&f.root, MANIFEST, |i, line| {
        (i == 2).then(|| Some(format!("{line}\n{prune}")))
    });
    let problems = problems_of(&f.root);
    assert_eq!(
        problems.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
        [format!(
            "{MANIFEST}: manifest line 4: an amendment line inside flush 1 (the lines of one flush are consecutive)"
        )]
    );
    // The writer refuses such a manifest too.
    let store = Store::open(&f.root, StoreOptions::default()).unwrap();
    let refused = store.chain_writer(&ChainId::new("audit", 0));
    assert!(refused.is_err_and(|e| e.to_string().contains("inside flush 1")));
}

#[test]
fn a_line_that_does_not_parse_is_not_called_a_crash() {
    let f = fixture();
    // The last line (flush 2's rejects) no longer parses.
    edit::edit_lines(&f.root, MANIFEST, |i, line| {
        (i == 5).then(|| Some(line.replace("\"rows\"", "\"rowz\"")))
    });
    let problems = problems_of(&f.root);
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert!(
        text[0].starts_with(&format!("{MANIFEST}: manifest line 6 does not parse:")),
        "{text:?}"
    );
    assert!(
        text.contains(&format!("{MANIFEST}: last flush 2 has 1 of 2 lines")),
        "{text:?}"
    );
    assert!(
        !text
            .iter()
            .any(|t| t.contains("crash") || t.contains("repairs it")),
        "{text:?}"
    );
}

#[test]
fn a_line_left_out_costs_one_problem_not_every_later_row() {
    let f = fixture();
    // Flush 1's events line: seqs 4..8 of the events log.
    edit::edit_lines(&f.root, MANIFEST, |i, _| (i == 2).then_some(None));
    let problems = problems_of(&f.root);
    let text: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        text,
        [
            format!("{MANIFEST}: manifest line 4: flush 1 has 1 of 2 lines"),
            format!("{MANIFEST}: manifest line 4: events segment starts at seq 8, expected seq 4"),
            "events/audit/0/00000000000000000004.parquet: file not in manifest".to_owned(),
        ]
    );
}
