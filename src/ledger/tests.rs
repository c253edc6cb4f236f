//! Unit tests of the writer's flush and recovery, and the worked example of
//! `docs/format.md`.

use std::fs;
use std::path::Path;

use super::*;
use crate::event::{Decoder, Event, PseudonymKey, Pseudonymizer, Reject, RejectReason};

const EXAMPLES: &str = include_str!("../../tests/data/events-v1.jsonl");

fn decoder() -> Decoder {
    Decoder::new(Pseudonymizer::new(&PseudonymKey::from_bytes([7; 32])))
}

fn events() -> Vec<Event> {
    let d = decoder();
    EXAMPLES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| d.decode(l.as_bytes()).unwrap())
        .collect()
}

fn open(root: &Path) -> Store {
    Store::open(root, StoreOptions::default()).unwrap()
}

/// Pushes `n` events and one reject from `offset` on; returns the next offset.
fn push_some(w: &mut ChainWriter, offset: i64, n: usize) -> i64 {
    let evs = events();
    let mut o = offset;
    for e in evs.iter().cycle().take(n) {
        w.push_event(Origin::kafka(o), e);
        o += 1;
    }
    let reject = Reject::new(RejectReason::InvalidJson, "invalid JSON at line 1 column 2");
    w.push_reject(Origin::kafka(o), Some(b"key"), b"{oops", &reject);
    o + 1
}

fn manifest_text(store: &Store, chain: &ChainId) -> String {
    fs::read_to_string(store.root().join(format!(
        "manifests/{}/{}.jsonl",
        chain.stream, chain.partition
    )))
    .unwrap()
}

#[test]
fn chain_names_are_checked() {
    assert!(ChainId::new("audit.events-v1_x", 3).validate().is_ok());
    assert!(ChainId::file().validate().is_ok());
    for (stream, partition) in [
        ("", 0),
        ("..", 0),
        ("a/b", 0),
        ("a b", 0),
        ("t", -1),
        (FILE_STREAM, 1),
        ("+x", 0),
    ] {
        assert!(
            ChainId::new(stream, partition).validate().is_err(),
            "{stream}/{partition}"
        );
    }
    assert_eq!(ChainId::new("t", 2).to_string(), "t/2");
}

#[test]
fn store_refuses_foreign_folders_and_formats() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("notes.txt"), "x").unwrap();
    assert!(matches!(
        Store::open(dir.path(), StoreOptions::default()),
        Err(LedgerError::NotAStore { .. })
    ));
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    open(&root);
    open(&root); // reopening is fine
    fs::write(
        root.join("custos-store.json"),
        r#"{"format":"custos-store","version":2,"hash":"blake3"}"#,
    )
    .unwrap();
    let err = Store::open(&root, StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("version is 2"), "{err}");
}

#[test]
fn flush_writes_segments_and_reopen_continues_the_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let chain = ChainId::new("audit", 1);
    let mut w = store.chain_writer(&chain).unwrap();
    assert_eq!(w.last_offset(), None);
    assert_eq!(w.flush().unwrap(), None);
    let next = push_some(&mut w, 100, 5);
    assert_eq!(w.buffered(), 6);
    let stats = w.flush().unwrap().unwrap();
    assert_eq!(
        (
            stats.events,
            stats.rejects,
            stats.segments,
            stats.last_offset
        ),
        (5, 1, 2, 105)
    );
    assert!(stats.bytes > 0);
    assert_eq!(w.buffered(), 0);
    let heads = (w.head(Table::Events), w.head(Table::Rejects));
    assert_eq!(heads.0.1, 5);
    assert_eq!(heads.1.1, 1);

    // A second writer on the same chain is refused while the first lives.
    assert!(matches!(
        store.chain_writer(&chain),
        Err(LedgerError::Locked { .. })
    ));
    drop(w);

    let mut w = store.chain_writer(&chain).unwrap();
    assert_eq!(w.last_offset(), Some(105));
    assert_eq!((w.head(Table::Events), w.head(Table::Rejects)), heads);
    push_some(&mut w, next, 3);
    w.flush().unwrap();
    drop(w);

    let lines = store.manifest(&chain).unwrap();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[2].first_seq, 5);
    assert_eq!(lines[2].prev_head, lines[0].head);
    assert_eq!(lines[2].flush, 1);
    assert_eq!(store.chains().unwrap(), vec![chain]);
    let report = verify(store.root()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(
        (
            report.chains,
            report.segments,
            report.events,
            report.rejects
        ),
        (1, 4, 8, 2)
    );
}

#[test]
fn torn_manifest_tail_is_truncated_with_its_segments() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let chain = ChainId::new("t", 0);
    let mut w = store.chain_writer(&chain).unwrap();
    let next = push_some(&mut w, 0, 2);
    w.flush().unwrap();
    let good = manifest_text(&store, &chain);
    push_some(&mut w, next, 2);
    w.flush().unwrap();
    drop(w);

    // Simulate a crash while appending the second flush: its first line is
    // complete, its second is cut short.
    let full = manifest_text(&store, &chain);
    let second_flush = &full[good.len()..];
    let cut = second_flush.find('\n').unwrap() + 20;
    let manifest = store.root().join("manifests/t/0.jsonl");
    fs::write(&manifest, format!("{good}{}", &second_flush[..cut])).unwrap();
    let report = verify(store.root()).unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.what.contains("incomplete")),
        "{:?}",
        report.problems
    );

    let w = store.chain_writer(&chain).unwrap();
    assert_eq!(w.last_offset(), Some(next - 1));
    assert_eq!(w.head(Table::Events).1, 2);
    drop(w);
    assert_eq!(manifest_text(&store, &chain), good);
    assert!(
        !store
            .root()
            .join("events/t/0/00000000000000000002.parquet")
            .exists()
    );
    assert!(
        !store
            .root()
            .join("rejects/t/0/00000000000000000001.parquet")
            .exists()
    );
    let report = verify(store.root()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);

    // A bad line that is not the tail is corruption, not a crash.
    fs::write(&manifest, format!("garbage\n{good}")).unwrap();
    assert!(matches!(
        store.chain_writer(&chain),
        Err(LedgerError::Corrupt { .. })
    ));
}

#[test]
fn orphans_of_a_crash_are_deleted_and_other_strays_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let chain = ChainId::new("t", 0);
    let mut w = store.chain_writer(&chain).unwrap();
    push_some(&mut w, 0, 3);
    w.flush().unwrap();
    drop(w);

    let seg_dir = store.root().join("events/t/0");
    let first = seg_dir.join("00000000000000000000.parquet");
    // A crash after the rename, before the manifest append: the next seq.
    let orphan = seg_dir.join("00000000000000000003.parquet");
    let tmp = seg_dir.join("00000000000000000003.parquet.tmp");
    fs::copy(&first, &orphan).unwrap();
    fs::write(&tmp, b"partial").unwrap();
    let w = store.chain_writer(&chain).unwrap();
    assert!(!orphan.exists() && !tmp.exists());
    assert!(first.exists());
    assert_eq!(w.head(Table::Events).1, 3);
    drop(w);

    // A segment further ahead cannot come from a crash: refuse, keep it.
    let stray = seg_dir.join("00000000000000000009.parquet");
    fs::copy(&first, &stray).unwrap();
    let err = store.chain_writer(&chain).err().unwrap();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert!(stray.exists());
}

/// The worked example of `docs/format.md`: if this test changes, the
/// document must change with it.
#[test]
fn worked_example() {
    let d = Decoder::new(Pseudonymizer::new(&PseudonymKey::from_bytes([0; 32])));
    let e = d
        .decode(
            br#"{"id":"a-0001","time":"2026-03-02T10:14:03.120+01:00","kind":"access","actor":{"id":"emp-0042","role":"nurse"},"action":"read","patient":"MRN-200117","purpose":"TREAT"}"#,
        )
        .unwrap();
    let record = event_record(&ChainId::new("audit", 0), &Origin::kafka(0), &e);
    let leaf = leaf_hash(&record);
    let chain0 = chain_hash(&GENESIS, &leaf);
    let text = String::from_utf8(record).unwrap();
    println!(
        "record: {text}\nleaf: {}\nchain: {}",
        hex::encode(leaf),
        hex::encode(chain0)
    );
    assert_eq!(text, WORKED_RECORD);
    assert_eq!(hex::encode(leaf), WORKED_LEAF);
    assert_eq!(hex::encode(chain0), WORKED_CHAIN);

    let cols = record::EventColumns::from_event(&e);
    assert_eq!(cols.time_us, 1_772_442_843_120_000);
    assert_eq!(cols.action.as_deref(), Some("read"));
    assert_eq!(
        (cols.outcome.as_deref(), cols.records),
        (Some("success"), Some(1))
    );
    assert_eq!((cols.actor_dept, cols.model), (None, None));
}

const WORKED_RECORD: &str = r#"{"event":{"action":"read","actor":{"id":"emp-0042","role":"nurse"},"id":"a-0001","kind":"access","outcome":"success","patient":"pt_0d3e0c9465ad05eb08a00a3a41eb267a","purpose":"TREAT","records":1,"time":"2026-03-02T10:14:03.120+01:00"},"src":{"offset":0,"partition":0,"stream":"audit"},"v":1}"#;
const WORKED_LEAF: &str = "8cbe987aad003d89b89bd7cf838656e1431871e901b4007072cde689e2645600";
const WORKED_CHAIN: &str = "9e89aa59982c6aef3cfedd71bdad6b427052159cb8358399d58619da4048a6f8";
