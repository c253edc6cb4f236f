use std::sync::Arc;

use arrow::array::{
    ArrayRef, LargeStringArray, StringArray, StringViewArray, TimestampMillisecondArray,
};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;

use super::*;
use crate::detect::reference::{Consent, Tie};
use crate::event::PseudonymKey;

fn pseudo() -> Pseudonymizer {
    Pseudonymizer::new(&PseudonymKey::demo())
}

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn csv_rows_load_with_quoting_any_column_order_and_extra_columns() {
    let dir = tempfile::tempdir().unwrap();
    let vip = write(
        &dir,
        "vip.csv",
        "\u{feff}note,Category,patient\r\n\"a, quoted \"\"note\"\"\",Restricted,MRN-1\r\n,,\"MRN,2\"\r\n\r\n",
    );
    let allow = write(
        &dir,
        "allow.csv",
        "destination\nsftp://research.local/\ns3://archive/*\n",
    );
    let cfg = ReferenceConfig {
        vip: Some(vip),
        export_allow: Some(allow),
        ..Default::default()
    };
    let p = pseudo();
    let (r, problems) = load(&cfg, &p).unwrap();
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(r.vip(&p.patient("MRN-1")), Some("restricted"));
    assert_eq!(r.vip(&p.patient("MRN,2")), Some("vip"), "default category");
    assert!(r.export_allowed("s3://archive/x"));
    assert!(r.export_allowed("sftp://research.local/"));
    let loaded = r.loaded();
    assert!(loaded.vip && loaded.export_allow);
    assert!(!loaded.roster && !loaded.care_team && !loaded.consent);
}

#[test]
fn a_bad_row_is_reported_with_its_line_and_the_rest_loads() {
    let dir = tempfile::tempdir().unwrap();
    let roster = write(
        &dir,
        "roster.csv",
        "actor,role,dept,hired,terminated\n\
         dr.a,physician,icu,2020-01-01T00:00:00Z,\n\
         dr.b,nurse,er,last tuesday,\n\
         \n\
         dr.c,nurse,er\n\
         ,clerk,admin,,\n\
         dr.d,clerk,admin,2021-01-01T00:00:00Z,2020-01-01T00:00:00Z\n\
         dr.e,\"unclosed,admin,,\n\
         dr.f,clerk,admin,,2025-06-30T17:00:00+02:00\n",
    );
    let cfg = ReferenceConfig {
        roster: Some(roster.clone()),
        ..Default::default()
    };
    let (r, problems) = load(&cfg, &pseudo()).unwrap();
    let lines: Vec<u64> = problems.iter().map(|p| p.line).collect();
    assert_eq!(lines, vec![3, 5, 6, 7, 8], "{problems:#?}");
    assert!(
        problems
            .iter()
            .all(|p| p.table == "roster" && p.path == roster)
    );
    assert_eq!(
        problems[0].to_string(),
        format!("{}:3: `hired` is not an RFC 3339 time", roster.display())
    );
    assert_eq!(problems[1].reason, "3 cells where the header has 5");
    assert_eq!(problems[2].reason, "`actor` is empty");
    assert_eq!(problems[3].reason, "`terminated` is before `hired`");
    assert!(problems[4].reason.contains("not closed"));
    let a = r.staff("dr.a").unwrap();
    assert_eq!(a.role.as_deref(), Some("physician"));
    assert_eq!(a.hired, Some(t("2020-01-01T00:00:00Z")));
    assert_eq!(a.terminated, None);
    assert_eq!(
        r.staff("dr.f").unwrap().terminated,
        Some(t("2025-06-30T15:00:00Z"))
    );
    assert!(r.staff("dr.b").is_none() && r.staff("dr.e").is_none());
}

#[test]
fn a_missing_required_column_refuses_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let consent = write(
        &dir,
        "consent.csv",
        "patient,purpose,time\nMRN-200117,HRESCH,2026-01-01T00:00:00Z\n",
    );
    let cfg = ReferenceConfig {
        consent: Some(consent.clone()),
        ..Default::default()
    };
    let err = load(&cfg, &pseudo()).unwrap_err();
    assert!(matches!(err, ReferenceError::MissingColumn { ref column, .. } if column == "status"));
    let text = err.to_string();
    assert!(text.contains(&consent.display().to_string()), "{text}");
    assert!(!text.contains("MRN-200117"), "{text}");

    let care = write(&dir, "care.csv", "patient,role\nMRN-1,x\n");
    let cfg = ReferenceConfig {
        care_team: Some(care),
        ..Default::default()
    };
    let err = load(&cfg, &pseudo()).unwrap_err().to_string();
    assert!(err.ends_with("has no `actor` or `dept` column"), "{err}");

    let cfg = ReferenceConfig {
        vip: Some(dir.path().join("absent.csv")),
        ..Default::default()
    };
    let err = load(&cfg, &pseudo()).unwrap_err();
    assert!(matches!(err, ReferenceError::Io { .. }), "{err}");
}

#[test]
fn patients_are_pseudonymized_and_never_kept_or_quoted_raw() {
    let dir = tempfile::tempdir().unwrap();
    let care = write(
        &dir,
        "care.csv",
        "patient,actor,dept,start,end\n\
         MRN-200117,dr.a,,2026-01-01T00:00:00Z,2026-02-01T00:00:00Z\n\
         MRN-200117,,icu,,\n\
         MRN-200118,,,,\n\
         MRN-200119,dr.a,,2026-02-01T00:00:00Z,2026-01-01T00:00:00Z\n",
    );
    let consent = write(
        &dir,
        "consent.csv",
        "patient,purpose,status,time\n\
         MRN-200117,HRESCH,GRANTED,2026-01-01T00:00:00Z\n\
         MRN-200117,HRESCH,Withdrawn,2026-03-01T00:00:00Z\n\
         MRN-200118,HRESCH,maybe,2026-03-01T00:00:00Z\n",
    );
    let cfg = ReferenceConfig {
        care_team: Some(care),
        consent: Some(consent),
        ..Default::default()
    };
    let p = pseudo();
    let (r, problems) = load(&cfg, &p).unwrap();
    let pt = p.patient("MRN-200117");
    assert!(r.on_care_team(&pt, "dr.a", None, t("2026-01-15T00:00:00Z")));
    assert!(!r.on_care_team(&pt, "dr.a", None, t("2026-02-15T00:00:00Z")));
    assert!(r.on_care_team(&pt, "dr.z", Some("icu"), t("2026-02-15T00:00:00Z")));
    assert_eq!(
        r.consent(&pt, "HRESCH", t("2026-02-01T00:00:00Z")),
        Consent::Granted
    );
    assert_eq!(
        r.consent(&pt, "HRESCH", t("2026-04-01T00:00:00Z")),
        Consent::Withdrawn
    );
    let reasons: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(problems.len(), 3, "{reasons:?}");
    assert!(reasons[0].ends_with(":4: `actor` and `dept` are both empty"));
    assert!(reasons[1].ends_with(":5: `end` is before `start`"));
    assert!(reasons[2].ends_with(":4: `status` must be `granted` or `withdrawn`"));
    let debug = format!("{r:?} {problems:?}");
    assert!(debug.contains(&pt));
    assert!(
        !debug.contains("MRN") && !debug.contains("20011"),
        "{debug}"
    );
}

#[test]
fn links_and_the_roster_patient_are_pseudonymized_ties() {
    let dir = tempfile::tempdir().unwrap();
    let roster = write(
        &dir,
        "roster.csv",
        "actor,dept,patient\nrn.a,icu,MRN-300001\nrn.b,icu,\nrn.c,icu,MRN-300003\n",
    );
    let links = write(
        &dir,
        "links.csv",
        "relation,patient,actor\n\
         Neighbour,MRN-400001,rn.b\n\
         ,MRN-400002,rn.b\n\
         household,,rn.b\n\
         family,MRN-300003,rn.a\n\
         \"Jane Doe, MRN-1\",MRN-400004,rn.a\n",
    );
    let cfg = ReferenceConfig {
        roster: Some(roster),
        links: Some(links.clone()),
        ..Default::default()
    };
    let p = pseudo();
    let (r, problems) = load(&cfg, &p).unwrap();
    let reasons: Vec<String> = problems.iter().map(ToString::to_string).collect();
    let at = |line: u32, why: &str| format!("{}:{line}: {why}", links.display());
    assert_eq!(
        reasons,
        vec![
            at(4, "`patient` is empty"),
            at(
                6,
                "`relation` must be a word of up to 32 letters, digits, `_`, `-` or spaces"
            ),
        ]
    );
    assert!(r.loaded().links && r.loaded().roster);
    let tie = |actor: &str, dept: &str, mrn: &str| r.tie(actor, Some(dept), &p.patient(mrn));
    assert_eq!(tie("rn.a", "icu", "MRN-300001"), Some(Tie::Own));
    assert_eq!(
        tie("rn.b", "icu", "MRN-400001"),
        Some(Tie::Linked("neighbour"))
    );
    assert_eq!(
        tie("rn.b", "icu", "MRN-400002"),
        Some(Tie::Linked("family")),
        "default relation"
    );
    assert_eq!(
        tie("rn.a", "icu", "MRN-300003"),
        Some(Tie::Linked("family")),
        "a link is more specific than a coworker (rn.c is in icu too)"
    );
    assert_eq!(tie("rn.b", "icu", "MRN-300003"), Some(Tie::Coworker));
    assert_eq!(tie("rn.b", "icu", "MRN-300001"), Some(Tie::Coworker));
    assert_eq!(tie("rn.b", "icu", "MRN-400003"), None);
    assert_eq!(
        tie("rn.a", "icu", "MRN-400004"),
        None,
        "the bad row is skipped"
    );
    let debug = format!("{r:?} {problems:?}");
    assert!(!debug.contains("MRN") && !debug.contains("Jane"), "{debug}");
    let [.., (name, rows)] = r.row_counts();
    assert_eq!((name, rows), ("links", 3));
}

#[test]
fn parquet_files_load_text_and_timestamp_columns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("consent.parquet");
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("extra", Arc::new(StringArray::from(vec!["x", "y", "z"]))),
        (
            "time",
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(t("2026-01-01T00:00:00Z").timestamp_millis()),
                Some(t("2026-02-01T00:00:00.250Z").timestamp_millis()),
                None,
            ])),
        ),
        (
            "patient",
            Arc::new(StringArray::from(vec!["MRN-1", "MRN-1", "MRN-2"])),
        ),
        (
            "purpose",
            Arc::new(LargeStringArray::from(vec!["TREAT", "TREAT", "TREAT"])),
        ),
        (
            "status",
            Arc::new(StringViewArray::from(vec![
                Some("granted"),
                Some("withdrawn"),
                Some("granted"),
            ])),
        ),
    ];
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&path).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let cfg = ReferenceConfig {
        consent: Some(path.clone()),
        ..Default::default()
    };
    let p = pseudo();
    let (r, problems) = load(&cfg, &p).unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].line, 3, "the 1-based row");
    assert_eq!(problems[0].reason, "`time` is empty");
    let rows: Vec<_> = r.consent_rows().map(|(_, _, t, s)| (t, s)).collect();
    assert_eq!(
        rows,
        vec![
            (t("2026-01-01T00:00:00Z"), ConsentStatus::Granted),
            (t("2026-02-01T00:00:00.250Z"), ConsentStatus::Withdrawn)
        ]
    );
    assert_eq!(
        r.consent(&p.patient("MRN-1"), "TREAT", t("2026-01-02T00:00:00Z")),
        Consent::Granted
    );

    // A column of another type is refused, naming it.
    let bad = dir.path().join("bad.parquet");
    let batch = RecordBatch::try_from_iter(vec![(
        "destination",
        Arc::new(arrow::array::Int64Array::from(vec![1])) as ArrayRef,
    )])
    .unwrap();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(&bad).unwrap(), batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let cfg = ReferenceConfig {
        export_allow: Some(bad),
        ..Default::default()
    };
    let err = load(&cfg, &p).unwrap_err().to_string();
    assert!(err.contains("column `destination` has type Int64"), "{err}");
}

#[test]
fn config_validation_names_missing_files_and_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let vip = write(&dir, "vip.csv", "patient\n");
    let cfg = ReferenceConfig {
        vip: Some(vip),
        roster: Some(dir.path().join("roster.csv")),
        consent: Some(dir.path().join("consent.xlsx")),
        care_team: Some(PathBuf::new()),
        reload_secs: 0,
        ..Default::default()
    };
    let mut problems = Vec::new();
    cfg.validate("reference", &mut problems);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert_eq!(problems[0], "reference.reload_secs must be 1 to 86400");
    assert!(
        problems[1].starts_with("reference.roster ") && problems[1].ends_with(": no such file")
    );
    assert!(problems[2].ends_with("must end in .csv or .parquet"));
    assert_eq!(cfg.files().len(), 3, "an empty path is unset");
    let mut problems = Vec::new();
    ReferenceConfig::default().validate("reference", &mut problems);
    assert!(problems.is_empty());
}
