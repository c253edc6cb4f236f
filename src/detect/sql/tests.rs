//! Tests of the window, loading, the output contract, scheduling and
//! dedup; the shipped detectors are tested in `tests/shipped.rs`.

mod shipped;

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::DataType;
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};

use super::*;
use crate::detect::Severity;
use crate::event::{Access, Actor, Body, Event, Inference};

/// A successful `read` of `patient` by `actor` of `dept` at `secs`.
pub(super) fn read(id: &str, secs: i64, actor: &str, dept: &str, patient: &str) -> Event {
    Event {
        id: id.into(),
        time: DateTime::from_timestamp(secs, 0).unwrap().fixed_offset(),
        actor: Actor {
            id: actor.into(),
            dept: (!dept.is_empty()).then(|| dept.into()),
            ..Actor::default()
        },
        source: None,
        attrs: Default::default(),
        body: Body::Access(Access {
            action: "read".into(),
            outcome: "success".into(),
            patient: (!patient.is_empty()).then(|| patient.into()),
            resource_type: None,
            resource_id: None,
            purpose: None,
            records: 1,
            destination: None,
        }),
        extra: Default::default(),
    }
}

/// `read` with the access fields changed by `f`.
pub(super) fn access(
    id: &str,
    secs: i64,
    actor: &str,
    dept: &str,
    patient: &str,
    f: impl FnOnce(&mut Access),
) -> Event {
    let mut e = read(id, secs, actor, dept, patient);
    if let Body::Access(a) = &mut e.body {
        f(a);
    }
    e
}

pub(super) fn inference(id: &str, secs: i64, actor: &str, patient: &str, purpose: &str) -> Event {
    let mut e = read(id, secs, actor, "", patient);
    e.body = Body::Inference(Inference {
        model_id: "sepsis-risk".into(),
        model_version: "3.1.0".into(),
        patient: Some(patient.into()),
        fingerprint: None,
        feature_count: None,
        output_label: None,
        output_score: None,
        scores_returned: None,
        purpose: Some(purpose.into()),
    });
    e
}

pub(super) fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap()
}

/// A reference table from rows of optional texts; timestamp columns take
/// seconds since the epoch; cells left off the end of a row are null.
pub(super) fn table(name: &'static str, rows: &[&[Option<&str>]]) -> (&'static str, RecordBatch) {
    let schema = reference_schema(name).unwrap();
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| -> ArrayRef {
            let cells = rows.iter().map(|r| r.get(i).copied().flatten());
            match f.data_type() {
                DataType::Utf8 => Arc::new(cells.collect::<StringArray>()),
                _ => Arc::new(
                    cells
                        .map(|c| c.map(|s| s.parse::<i64>().unwrap() * 1_000_000))
                        .collect::<TimestampMicrosecondArray>()
                        .with_timezone("UTC"),
                ),
            }
        })
        .collect();
    (name, RecordBatch::try_new(schema, columns).unwrap())
}

fn config(dir: &Path) -> SqlDetectorsConfig {
    SqlDetectorsConfig {
        dir: dir.to_owned(),
        ..SqlDetectorsConfig::default()
    }
}

/// A folder holding `files` (name, text).
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

/// One finding per actor: the count of their events, as a low finding.
const PER_ACTOR: &str = "SELECT actor, 'low' AS severity, \
     'did ' || CAST(count(*) AS VARCHAR) || ' things' AS title, \
     array_agg(id ORDER BY time) AS evidence, CAST(count(*) AS DOUBLE) AS score, \
     max(time) AS window_end FROM recent GROUP BY actor";

async fn run(d: &mut SqlDetectors, secs: i64) -> SqlReport {
    d.tick(at(secs), &[]).expect("a run is due").execute().await
}

#[tokio::test]
async fn broken_files_are_reported_with_their_path_and_the_others_run() {
    let dir = folder(&[
        ("a_good.sql", PER_ACTOR),
        ("b_syntax.sql", "SELEC actor FROM recent"),
        (
            "c_column.sql",
            "SELECT nosuch AS actor, 'low' AS severity, 't' AS title, id AS evidence FROM recent",
        ),
        ("d_ddl.sql", "CREATE TABLE x AS SELECT 1"),
        (
            "e_missing.sql",
            "SELECT actor, 'low' AS severity, id AS evidence FROM recent",
        ),
        (
            "f_type.sql",
            "SELECT actor, 'low' AS severity, 't' AS title, time AS evidence FROM recent",
        ),
        ("notes.txt", "not a detector"),
    ]);
    let (mut d, problems) = SqlDetectors::load(config(dir.path())).await;
    let names: Vec<_> = d.names().collect();
    assert_eq!(names, ["sql:a_good"]);
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 5, "{shown:#?}");
    for (p, file) in problems
        .iter()
        .zip(["b_syntax", "c_column", "d_ddl", "e_missing", "f_type"])
    {
        assert_eq!(p.path, dir.path().join(format!("{file}.sql")));
        assert!(
            p.to_string()
                .starts_with(&format!("{}: ", p.path.display()))
        );
    }
    assert!(shown[1].contains("nosuch"), "{}", shown[1]);
    assert!(shown[2].to_lowercase().contains("ddl"), "{}", shown[2]);
    assert!(shown[3].contains("no column `title`"), "{}", shown[3]);
    assert!(shown[4].contains("`evidence`"), "{}", shown[4]);

    d.push(&read("e1", 100, "alice", "er", "p1"));
    let report = run(&mut d, 100).await;
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.findings.len(), 1);
    let f = &report.findings[0];
    assert_eq!(
        (f.detector.as_str(), f.actor.as_str()),
        ("sql:a_good", "alice")
    );
    assert_eq!(
        (f.summary.as_str(), f.severity, f.score),
        ("did 1 things", Severity::Low, 1.0)
    );
    assert_eq!(f.evidence, ["e1"]);
}

#[tokio::test]
async fn a_missing_folder_is_one_problem() {
    let (d, problems) = SqlDetectors::load(config(Path::new("/nonexistent/custos-sql"))).await;
    assert_eq!(d.names().count(), 0);
    assert_eq!(problems.len(), 1);
    assert!(
        problems[0]
            .to_string()
            .starts_with("/nonexistent/custos-sql: cannot read")
    );
}

#[tokio::test]
async fn rows_map_to_findings_with_capped_evidence_and_bad_rows_skipped() {
    let sql = "SELECT actor, CASE WHEN actor = 'bad' THEN 'urgent' ELSE 'HIGH' END AS severity, \
        'x' AS title, string_agg(id, ',') AS evidence, max(patient) AS patient, \
        7 AS observed, 2 AS expected FROM recent GROUP BY actor";
    let dir = folder(&[("s.sql", sql)]);
    let mut cfg = config(dir.path());
    cfg.max_evidence = 3;
    let (mut d, problems) = SqlDetectors::load(cfg).await;
    assert!(problems.is_empty(), "{problems:?}");
    for i in 0..5 {
        d.push(&read(&format!("a{i}"), 10 + i, "alice", "er", "p1"));
    }
    d.push(&read("b0", 20, "bad", "er", "p1"));
    let report = run(&mut d, 20).await;
    assert_eq!(report.skipped_rows, 1);
    assert_eq!(report.findings.len(), 1);
    let f = &report.findings[0];
    assert_eq!(f.severity, Severity::High);
    assert_eq!(f.evidence.len(), 3);
    assert_eq!(f.evidence_total, 5);
    assert_eq!(f.patient.as_deref(), Some("p1"));
    assert_eq!((f.observed, f.expected, f.score), (7.0, 2.0, 0.0));
    // No window columns: the run's window, ending at the newest event.
    assert_eq!(f.window_end, at(20));
    assert_eq!(f.window_start, at(20 - 3600));
}

#[tokio::test]
async fn the_window_keeps_the_last_window_secs_of_event_time_and_at_most_max_rows() {
    let dir = folder(&[("a.sql", PER_ACTOR)]);
    let mut cfg = config(dir.path());
    cfg.window_secs = 600;
    let (mut d, _) = SqlDetectors::load(cfg.clone()).await;
    for s in 0..100 {
        assert!(d.push(&read(&format!("e{s}"), s * 10, "alice", "er", "p1")));
    }
    // Lineage is not kept; inference is.
    let mut lineage = read("l", 995, "etl", "", "");
    lineage.body = Body::Lineage(crate::event::Lineage {
        op: "train".into(),
        inputs: vec![],
        outputs: vec![],
        job: None,
        run: None,
        patient: None,
    });
    assert!(!d.push(&lineage));
    assert!(d.push(&inference("i", 995, "svc", "p1", "TREAT")));
    // Newest event 995 s: rows before 395 s leave.
    let report = run(&mut d, 995).await;
    assert_eq!(report.window_rows, 61);
    assert_eq!(d.rows(), 61);
    let alice = report.findings.iter().find(|f| f.actor == "alice").unwrap();
    assert_eq!(alice.evidence_total, 60);
    assert_eq!(alice.summary, "did 60 things");

    cfg.max_rows = 10;
    let (mut d, _) = SqlDetectors::load(cfg).await;
    for s in 0..25 {
        d.push(&read(&format!("e{s}"), s, "alice", "er", "p1"));
    }
    let report = run(&mut d, 25).await;
    assert_eq!((report.window_rows, d.dropped()), (10, 15));
    assert_eq!(report.findings[0].evidence[0], "e15");
}

#[tokio::test]
async fn runs_follow_event_time_and_wait_for_the_previous_one() {
    let dir = folder(&[("a.sql", PER_ACTOR)]);
    let (mut d, _) = SqlDetectors::load(config(dir.path())).await;
    d.push(&read("e1", 1000, "alice", "er", "p1"));
    let first = d.tick(at(1000), &[]).expect("the first tick runs");
    assert!(
        d.tick(at(1029), &[]).is_none(),
        "not due before interval_secs"
    );
    assert!(d.tick(at(1030), &[]).is_none(), "due, but one is in flight");
    assert_eq!(d.deferred(), 1);
    // Runs are Send: the caller spawns them.
    let report = tokio::spawn(first.execute()).await.unwrap();
    assert_eq!(report.findings.len(), 1);
    assert!(d.tick(at(1031), &[]).is_some());
}

#[tokio::test]
async fn a_finding_is_raised_once_while_its_evidence_is_in_the_window() {
    let dir = folder(&[("a.sql", PER_ACTOR)]);
    let mut cfg = config(dir.path());
    cfg.window_secs = 600;
    let (mut d, _) = SqlDetectors::load(cfg).await;
    d.push(&read("e1", 0, "alice", "er", "p1"));
    assert_eq!(run(&mut d, 0).await.findings.len(), 1);
    d.push(&read("e2", 100, "alice", "er", "p1"));
    let again = run(&mut d, 100).await;
    assert!(again.findings.is_empty());
    assert_eq!(again.suppressed, 1);
    // 700 s: e1, all the evidence that fired, has left the window: the
    // ongoing behaviour is raised again, with evidence of its own.
    d.push(&read("e3", 700, "alice", "er", "p1"));
    let later = run(&mut d, 700).await;
    assert_eq!(later.findings.len(), 1);
    assert_eq!(later.findings[0].evidence, ["e2", "e3"]);
    d.push(&read("e4", 800, "alice", "er", "p1"));
    assert!(run(&mut d, 800).await.findings.is_empty());
    assert_eq!(d.fired.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_higher_severity_is_raised_again() {
    let sql = "SELECT actor, CASE WHEN count(*) > 2 THEN 'high' ELSE 'low' END AS severity, \
        't' AS title, array_agg(id) AS evidence FROM recent GROUP BY actor";
    let dir = folder(&[("a.sql", sql)]);
    let (mut d, _) = SqlDetectors::load(config(dir.path())).await;
    d.push(&read("e1", 0, "alice", "er", "p1"));
    assert_eq!(run(&mut d, 0).await.findings[0].severity, Severity::Low);
    d.push(&read("e2", 40, "alice", "er", "p1"));
    assert!(run(&mut d, 40).await.findings.is_empty());
    d.push(&read("e3", 80, "alice", "er", "p1"));
    assert_eq!(run(&mut d, 80).await.findings[0].severity, Severity::High);
}

#[tokio::test]
async fn a_query_that_fails_at_run_time_does_not_stop_the_others() {
    // Planned and run fine on empty tables; fails once there are rows.
    let failing = "SELECT actor, 'low' AS severity, 't' AS title, array_agg(id) AS evidence \
        FROM recent WHERE arrow_cast(actor, 'Int64') > 0 GROUP BY actor";
    let dir = folder(&[("a.sql", PER_ACTOR), ("b.sql", failing)]);
    let (mut d, problems) = SqlDetectors::load(config(dir.path())).await;
    assert!(problems.is_empty(), "{problems:?}");
    d.push(&read("e1", 0, "alice", "er", "p1"));
    let report = run(&mut d, 0).await;
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].detector, "sql:b");
    assert_eq!(report.findings.len(), 1);
}

#[test]
fn config_validation_reports_every_problem() {
    let cfg = SqlDetectorsConfig {
        dir: "".into(),
        interval_secs: 0,
        window_secs: 0,
        max_rows: 0,
        max_evidence: 0,
        enabled: true,
    };
    let mut problems = Vec::new();
    cfg.validate("sql_detectors", &mut problems);
    assert_eq!(problems.len(), 5, "{problems:?}");
    let mut problems = Vec::new();
    SqlDetectorsConfig::default().validate("sql_detectors", &mut problems);
    assert!(problems.is_empty());
}
