use chrono::Utc;

use super::*;
use crate::alert::incident::{Correlator, IncidentConfig};
use crate::detect::{Finding, Severity};

fn incidents(n: usize) -> Vec<Incident> {
    let mut c = Correlator::new(IncidentConfig::default());
    (0..n)
        .flat_map(|i| {
            let start = Utc::now();
            c.observe(
                Finding {
                    detector: "volume".into(),
                    severity: Severity::Medium,
                    actor: format!("emp-{i}"),
                    patient: None,
                    model: None,
                    window_start: start,
                    window_end: start,
                    score: 1.0,
                    observed: 2.0,
                    expected: 1.0,
                    summary: "x".into(),
                    evidence: vec![format!("ev-{i}")],
                    evidence_total: 1,
                },
                start,
            )
        })
        .collect()
}

fn sinks() -> Vec<String> {
    vec!["a".into(), "b".into()]
}

#[test]
fn entries_survive_a_reopen_and_cursors_resume() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut ob = Outbox::open(dir.path(), &sinks(), 4, 1000).unwrap().outbox;
        let appended = ob.append(incidents(10)).unwrap();
        assert_eq!(
            appended.iter().map(|e| e.n).collect::<Vec<_>>(),
            (0..10).collect::<Vec<_>>()
        );
        let (batch, dropped) = ob.batch(0, 3);
        assert_eq!((batch.len(), dropped), (3, 0));
        ob.delivered(0, 3).unwrap();
        ob.delivered(1, 9).unwrap();
    }
    let rec = Outbox::open(dir.path(), &sinks(), 4, 1000).unwrap();
    let mut ob = rec.outbox;
    assert_eq!(ob.next(), 10);
    assert_eq!((ob.cursor(0), ob.cursor(1)), (3, 9));
    let (batch, _) = ob.batch(0, 100);
    assert_eq!(batch.first().map(|e| e.n), Some(3));
    assert_eq!(batch.len(), 7);
    // Without a snapshot, every revision since the start rebuilds state.
    assert_eq!(rec.revisions.len(), 10);
    // A second process cannot use the same folder.
    assert!(matches!(
        Outbox::open(dir.path(), &sinks(), 4, 1000),
        Err(OutboxError::Locked { .. })
    ));
}

#[test]
fn a_torn_tail_is_cut_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut ob = Outbox::open(dir.path(), &sinks(), 100, 1000)
            .unwrap()
            .outbox;
        ob.append(incidents(3)).unwrap();
    }
    let seg = dir.path().join("entries").join(format!("{:020}.jsonl", 0));
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(b"{\"n\":3,\"incident\":{\"id\":").unwrap();
    drop(f);
    let mut ob = Outbox::open(dir.path(), &sinks(), 100, 1000)
        .unwrap()
        .outbox;
    assert_eq!(ob.next(), 3);
    ob.append(incidents(1)).unwrap();
    drop(ob);
    let ob = Outbox::open(dir.path(), &sinks(), 100, 1000)
        .unwrap()
        .outbox;
    assert_eq!(ob.next(), 4);
}

#[test]
fn delivered_segments_covered_by_the_snapshot_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(dir.path(), &sinks(), 4, 1000).unwrap().outbox;
    ob.append(incidents(10)).unwrap();
    let files = || {
        std::fs::read_dir(dir.path().join("entries"))
            .unwrap()
            .count()
    };
    assert_eq!(files(), 3);
    ob.delivered(0, 10).unwrap();
    ob.delivered(1, 10).unwrap();
    assert_eq!(files(), 3, "not without a snapshot covering them");
    let before = ob.bytes();
    ob.snapshot(std::iter::empty()).unwrap();
    assert_eq!(files(), 1, "the current segment stays");
    assert!(ob.bytes() < before);
    drop(ob);
    let rec = Outbox::open(dir.path(), &sinks(), 4, 1000).unwrap();
    assert_eq!(rec.outbox.next(), 10);
    assert!(rec.revisions.is_empty());
}

#[test]
fn a_sink_too_far_behind_loses_its_oldest_entries_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut ob = Outbox::open(dir.path(), &sinks(), 100, 5).unwrap().outbox;
    ob.append(incidents(8)).unwrap();
    let (batch, dropped) = ob.batch(0, 100);
    assert_eq!(dropped, 3);
    assert_eq!(batch.first().map(|e| e.n), Some(3));
    assert_eq!(batch.len(), 5);
}
