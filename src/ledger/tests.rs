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
    w.push_reject(
        Origin::kafka(o),
        RejectBytes::received(Some(b"key"), b"{oops"),
        &reject,
    );
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
        r#"{"format":"custos-store","version":1,"hash":"blake3","origin":"x"}"#,
    )
    .unwrap();
    let err = Store::open(&root, StoreOptions::default()).unwrap_err();
    assert!(err.to_string().contains("version is 1"), "{err}");
}

#[test]
fn a_store_of_a_newer_format_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = open(&root);
    let chain = ChainId::new("audit", 0);
    let mut w = store.chain_writer(&chain).unwrap();
    push_some(&mut w, 0, 5);
    w.flush().unwrap();
    drop(w);
    let marker = r#"{"format":"custos-store","version":3,"hash":"blake3","origin":"x"}"#;
    fs::write(root.join("custos-store.json"), marker).unwrap();
    let before = snapshot_files(&root);
    let err = Store::open(&root, StoreOptions::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("version is 3, this build reads version 2"),
        "{err}"
    );
    assert!(Store::open_existing(&root).is_err());
    assert_eq!(snapshot_files(&root), before, "nothing was written");
}

/// Every file under `root` with its bytes.
fn snapshot_files(root: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push((p.clone(), fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
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
    let heads = (w.tree_head(Table::Events), w.tree_head(Table::Rejects));
    assert_eq!(heads.0.0, 5);
    assert_eq!(heads.1.0, 1);

    // A second writer on the same chain is refused while the first lives.
    assert!(matches!(
        store.chain_writer(&chain),
        Err(LedgerError::Locked { .. })
    ));
    drop(w);

    let mut w = store.chain_writer(&chain).unwrap();
    assert_eq!(w.last_offset(), Some(105));
    assert_eq!(
        (w.tree_head(Table::Events), w.tree_head(Table::Rejects)),
        heads
    );
    push_some(&mut w, next, 3);
    w.flush().unwrap();
    drop(w);

    let lines = store.manifest(&chain).unwrap();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[2].first_seq, 5);
    assert_eq!(lines[0].root, hex::encode(heads.0.1));
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
fn a_sealed_flush_is_written_while_the_writer_buffers_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let chain = ChainId::new("audit", 4);
    let mut w = store.chain_writer(&chain).unwrap();
    let next = push_some(&mut w, 0, 5);
    let sealed = w.seal().unwrap().unwrap();
    assert_eq!(w.buffered(), 0);
    // One flush at a time: the next waits for this one's commit.
    let next = push_some(&mut w, next, 4);
    assert!(matches!(w.seal(), Err(LedgerError::Internal(_))));
    // Amendments wait too; nothing of the sealed rows is durable yet.
    assert!(matches!(
        w.prune(i64::MAX, chrono::Utc::now()),
        Err(LedgerError::Internal(_))
    ));
    assert_eq!((w.last_offset(), w.tree_head(Table::Events).0), (None, 0));
    let written = std::thread::spawn(move || sealed.write_segments().unwrap())
        .join()
        .unwrap();
    let stats = w.commit(written).unwrap();
    assert_eq!((stats.events, stats.rejects, stats.last_offset), (5, 1, 5));
    assert_eq!(
        (w.last_offset(), w.tree_head(Table::Events).0),
        (Some(5), 5)
    );
    // The rows buffered meanwhile are the next flush, continuing the seqs.
    assert_eq!(w.buffered(), 5);
    let stats = w.flush().unwrap().unwrap();
    assert_eq!((stats.events, stats.last_offset), (4, next - 1));
    assert_eq!(w.tree_head(Table::Events).0, 9);
    drop(w);

    // Stored exactly as by one writer flushing the same rows in place.
    let other = tempfile::tempdir().unwrap();
    let other_store = open(other.path());
    let mut v = other_store.chain_writer(&chain).unwrap();
    let n = push_some(&mut v, 0, 5);
    v.flush().unwrap();
    push_some(&mut v, n, 4);
    v.flush().unwrap();
    let w = store.chain_writer(&chain).unwrap();
    for table in [Table::Events, Table::Rejects] {
        assert_eq!(w.tree_head(table), v.tree_head(table));
    }
    assert_eq!(
        manifest_text(&store, &chain),
        manifest_text(&other_store, &chain)
    );
    let report = verify(store.root()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!((report.events, report.rejects), (9, 2));
}

#[test]
fn a_sealed_flush_that_never_commits_leaves_the_log_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let chain = ChainId::new("audit", 5);
    let mut w = store.chain_writer(&chain).unwrap();
    let next = push_some(&mut w, 0, 3);
    w.flush().unwrap();
    let head = w.tree_head(Table::Events);
    push_some(&mut w, next, 3);
    // Its segment files are written, then the process dies before the
    // commit: the next owner deletes them and continues from the last
    // committed flush.
    w.seal().unwrap().unwrap().write_segments().unwrap();
    drop(w);
    let w = store.chain_writer(&chain).unwrap();
    assert_eq!(
        (w.last_offset(), w.tree_head(Table::Events)),
        (Some(3), head)
    );
    let report = verify(store.root()).unwrap();
    assert!(report.ok(), "{:?}", report.problems);
    assert_eq!(report.events, 3);
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
    assert_eq!(w.tree_head(Table::Events).0, 2);
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
    assert_eq!(w.tree_head(Table::Events).0, 3);
    drop(w);

    // A segment further ahead cannot come from a crash: refuse, keep it.
    let stray = seg_dir.join("00000000000000000009.parquet");
    fs::copy(&first, &stray).unwrap();
    let err = store.chain_writer(&chain).err().unwrap();
    assert!(matches!(err, LedgerError::Corrupt { .. }), "{err}");
    assert!(stray.exists());
}

/// The worked example of `docs/ledger-format.md`: a store of three events,
/// one flush, one checkpoint. If this test changes, the document must
/// change with it (run it with `--nocapture` to print the values).
#[test]
fn worked_example() {
    let d = Decoder::new(Pseudonymizer::new(&PseudonymKey::from_bytes([0; 32])));
    let inputs = [
        r#"{"id":"a-0001","time":"2026-03-02T10:14:03.120+01:00","kind":"access","actor":{"id":"emp-0042","role":"nurse"},"action":"read","patient":"MRN-200117","purpose":"TREAT"}"#,
        r#"{"id":"a-0002","time":"2026-03-02T10:15:00Z","kind":"access","actor":{"id":"emp-0042"},"action":"update","patient":"MRN-200117"}"#,
        r#"{"id":"a-0003","time":"2026-03-02T10:16:00Z","kind":"access","actor":{"id":"emp-0007"},"action":"read","patient":"MRN-300001","outcome":"denied"}"#,
    ];
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            origin: Some("example.org/custos".into()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let chain = ChainId::new("audit", 0);
    let mut w = store.chain_writer(&chain).unwrap();
    for (offset, text) in inputs.iter().enumerate() {
        w.push_event(
            Origin::kafka(offset as i64),
            &d.decode(text.as_bytes()).unwrap(),
        );
    }
    w.flush().unwrap();
    let signer = checkpoint::NoteSigner::from_seed("example.org/custos", [1; 32]).unwrap();
    let time = chrono::DateTime::parse_from_rfc3339("2026-03-02T10:20:00Z")
        .unwrap()
        .to_utc();
    let written = w.checkpoint(&signer, time).unwrap();
    drop(w);

    let read = |rel: &str| fs::read(store.root().join(rel)).unwrap();
    let records: Vec<Vec<u8>> = (0..3)
        .map(|seq| {
            let proof = store
                .prove_inclusion(&chain, Table::Events, seq, None)
                .unwrap();
            proof.record.unwrap().into_bytes()
        })
        .collect();
    let leaves: Vec<Hash> = records.iter().map(|r| HashAlg::Blake3.leaf(r)).collect();
    let strata = read("tree/events/audit/0/0.hashes");
    assert_eq!(strata, leaves.concat());
    let root = merkle::root(HashAlg::Blake3, &leaves);
    let proof = store
        .prove_inclusion(&chain, Table::Events, 1, None)
        .unwrap();
    let manifest = String::from_utf8(read("manifests/audit/0.jsonl")).unwrap();
    let checkpoints = String::from_utf8(read("checkpoints/audit/0.jsonl")).unwrap();
    println!(
        "marker: {}",
        String::from_utf8(read("custos-store.json")).unwrap()
    );
    for (r, l) in records.iter().zip(&leaves) {
        println!(
            "record: {}\nleaf:   {}",
            String::from_utf8_lossy(r),
            hex::encode(l)
        );
    }
    println!(
        "node01: {}",
        hex::encode(HashAlg::Blake3.node(&leaves[0], &leaves[1]))
    );
    println!("root:   {}", hex::encode(root));
    println!("manifest: {manifest}checkpoints: {checkpoints}");
    println!("verifier: {}", signer.verifier().to_text());
    println!("proof: {}", proof.to_json_pretty());

    assert_eq!(written.len(), 1);
    assert_eq!(
        String::from_utf8(records[0].clone()).unwrap(),
        WORKED_RECORD
    );
    assert_eq!(hex::encode(leaves[0]), WORKED_LEAF);
    assert_eq!(hex::encode(root), WORKED_ROOT);
    assert_eq!(written[0].note, WORKED_NOTE);
    assert_eq!(proof.path, vec![leaves[0], leaves[2]]);
    assert!(proof.check(Some(&signer.verifier())).is_ok());
    assert!(manifest.contains(&format!("\"root\":\"{WORKED_ROOT}\"")));
}

const WORKED_RECORD: &str = r#"{"event":{"action":"read","actor":{"id":"emp-0042","role":"nurse"},"id":"a-0001","kind":"access","outcome":"success","patient":"pt_0d3e0c9465ad05eb08a00a3a41eb267a","purpose":"TREAT","records":1,"time":"2026-03-02T10:14:03.120+01:00"},"src":{"offset":0,"partition":0,"stream":"audit"},"v":1}"#;
const WORKED_LEAF: &str = "8cbe987aad003d89b89bd7cf838656e1431871e901b4007072cde689e2645600";
const WORKED_ROOT: &str = "ce363b581d21539885a5797910f2e294a067999f756fe7139c53644da7392e0d";
const WORKED_NOTE: &str = "example.org/custos/events/audit/0\n3\nzjY7WB0hU5iFpXl5EPLilKBnmZ91b+cTnFNkTac5Lg0=\n\n— example.org/custos izpInHarlIbJgNe4o6305IEf+36es9vIZQduum4s/1vTiZdHWJllie20vP5A+x8Ola98YmhziLXb1zoJTf8xP2eI7w0=\n";

#[test]
fn rejects_read_back_as_stored_with_their_sealing_and_key_id() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        StoreOptions {
            pseudonym_key_id: Some("pk1-0a1b2c3d".into()),
            ..StoreOptions::default()
        },
    )
    .unwrap();
    let chain = ChainId::new("audit", 0);
    let mut w = store.chain_writer(&chain).unwrap();
    let reject = Reject::new(RejectReason::InvalidJson, "empty message");
    let label = "xchacha20poly1305:rk1-00000000";
    let sealed = [0xa5u8; 48];
    w.push_reject(
        Origin::kafka(3),
        RejectBytes::sealed(label, Some(&[0x5a; 41]), &sealed),
        &reject,
    );
    w.push_reject(
        Origin::kafka(4),
        RejectBytes::received(None, b"{oops"),
        &reject,
    );
    w.push_event(Origin::kafka(5), &events()[0]);
    w.flush().unwrap();
    drop(w);
    assert!(verify::verify(dir.path()).unwrap().ok());

    for (table, dir_name) in [(Table::Rejects, "rejects"), (Table::Events, "events")] {
        let path = dir.path().join(format!(
            "{dir_name}/audit/0/{}",
            segment::segment_file_name(0, 0)
        ));
        let file = segment::SegmentFile {
            bytes: std::fs::read(&path).unwrap().into(),
            path,
        };
        let seg = segment::SegmentReader::open(&file, None).unwrap();
        assert_eq!(
            seg.meta("custos.pseudonym_key_id"),
            Some("pk1-0a1b2c3d"),
            "{table:?}"
        );
    }

    let mut read = Vec::new();
    let n = store
        .read_rejects::<LedgerError>(&chain, None, |r| {
            read.push(r);
            Ok(())
        })
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!((read[0].seq, read[0].offset), (0, 3));
    assert_eq!(read[0].payload, sealed);
    assert_eq!(read[0].key.as_deref(), Some(&[0x5a; 41][..]));
    assert_eq!(read[0].payload_sealed.as_deref(), Some(label));
    assert_eq!(read[0].key_sealed.as_deref(), Some(label));
    assert!(read[0].matches_record);
    assert_eq!((read[1].seq, &read[1].payload[..]), (1, &b"{oops"[..]));
    assert_eq!(
        (read[1].payload_sealed.as_deref(), read[1].key.as_deref()),
        (None, None)
    );
    assert_eq!(read[1].reason, "invalid_json");

    let mut one = Vec::new();
    let n = store
        .read_rejects::<LedgerError>(&chain, Some(1), |r| {
            one.push(r);
            Ok(())
        })
        .unwrap();
    assert_eq!((n, one[0].seq), (1, 1));
    let none = store.read_rejects::<LedgerError>(&chain, Some(2), |_| Ok(()));
    assert_eq!(none.unwrap(), 0);
}

/// An event encoded ahead on another thread (`PreparedEvent`) is stored
/// exactly as one pushed whole: same records, leaves, columns and files.
#[test]
fn prepared_events_are_stored_as_pushed_ones() {
    let d = decoder();
    let mut workload = crate::source::synth::Workload::new(crate::source::synth::WorkloadConfig {
        seed: 3,
        ..Default::default()
    });
    let t = chrono::Utc::now();
    let mut payloads: Vec<Vec<u8>> = EXAMPLES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.as_bytes().to_vec())
        .collect();
    payloads.extend((0..2000).map(|_| workload.next_message(t).payload));
    let chain = ChainId::new("audit", 2);
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sa, sb) = (open(a.path()), open(b.path()));
    let (mut wa, mut wb) = (
        sa.chain_writer(&chain).unwrap(),
        sb.chain_writer(&chain).unwrap(),
    );
    let (mut offset, mut prepared) = (0, 0);
    for p in &payloads {
        let Ok(parsed) = d.parse(p) else { continue };
        let origin = Origin::kafka(offset);
        wa.push_event(origin.clone(), &d.decode(p).unwrap());
        match parsed.ready() {
            Some(event) => {
                prepared += 1;
                wb.push_prepared(PreparedEvent::new(sb.alg(), &chain, origin, event));
            }
            None => wb.push_event(origin, &d.finish(parsed, None).unwrap()),
        }
        offset += 1;
    }
    assert!(
        prepared > 1000 && prepared < offset,
        "{prepared} of {offset}"
    );
    wa.flush().unwrap().unwrap();
    wb.flush().unwrap().unwrap();
    assert_eq!(wa.tree_head(Table::Events), wb.tree_head(Table::Events));
    let files = |root: &Path| {
        let mut out = Vec::new();
        for entry in walkdir(root.join("events")) {
            out.push((
                entry.strip_prefix(root).unwrap().to_owned(),
                fs::read(&entry).unwrap(),
            ));
        }
        out.sort();
        out
    };
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert!(!fa.is_empty());
    assert_eq!(fa, fb);
}

fn walkdir(dir: std::path::PathBuf) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(path));
        } else {
            out.push(path);
        }
    }
    out
}
