//! The reference tables as Arrow record batches, for SQL.
//!
//! | table | columns |
//! |---|---|
//! | `ref_vip` | `patient`, `category` |
//! | `ref_roster` | `actor`, `role`, `dept`, `hired`, `terminated`, `patient` |
//! | `ref_care_team` | `patient`, `actor`, `dept`, `start`, `end` |
//! | `ref_consent` | `patient`, `purpose`, `status`, `time` |
//! | `ref_export_allow` | `destination` |
//! | `ref_links` | `actor`, `patient`, `relation` |
//!
//! Text columns are Utf8, times `Timestamp(Microsecond, "UTC")`; `patient`
//! holds pseudonyms, as in `events`, so the two join. Rows are sorted by
//! every column in order, so the same snapshot always gives the same
//! batches. A table that is not configured is present and empty.

use std::sync::Arc;

use arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};

use super::Reference;

/// Every reference table, by SQL name.
pub fn tables(reference: &Reference) -> Vec<(&'static str, RecordBatch)> {
    vec![
        ("ref_vip", vip(reference)),
        ("ref_roster", roster(reference)),
        ("ref_care_team", care_team(reference)),
        ("ref_consent", consent(reference)),
        ("ref_export_allow", export_allow(reference)),
        ("ref_links", links(reference)),
    ]
}

fn text(name: &str, nullable: bool) -> Field {
    Field::new(name, DataType::Utf8, nullable)
}

fn time(name: &str, nullable: bool) -> Field {
    let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Field::new(name, utc, nullable)
}

fn strings<'a>(values: impl Iterator<Item = Option<&'a str>>) -> ArrayRef {
    Arc::new(values.collect::<StringArray>())
}

fn times(values: impl Iterator<Item = Option<DateTime<Utc>>>) -> ArrayRef {
    let micros: Vec<Option<i64>> = values.map(|t| t.map(|t| t.timestamp_micros())).collect();
    Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC"))
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .expect("the columns are built for this schema")
}

fn vip(r: &Reference) -> RecordBatch {
    let mut rows: Vec<(&str, &str)> = r.vip_rows().collect();
    rows.sort_unstable();
    batch(
        vec![text("patient", false), text("category", false)],
        vec![
            strings(rows.iter().map(|r| Some(r.0))),
            strings(rows.iter().map(|r| Some(r.1))),
        ],
    )
}

fn roster(r: &Reference) -> RecordBatch {
    let mut rows: Vec<_> = r.roster_rows().collect();
    rows.sort_unstable_by_key(|(actor, _)| *actor);
    batch(
        vec![
            text("actor", false),
            text("role", true),
            text("dept", true),
            time("hired", true),
            time("terminated", true),
            text("patient", true),
        ],
        vec![
            strings(rows.iter().map(|(a, _)| Some(*a))),
            strings(rows.iter().map(|(_, s)| s.role.as_deref())),
            strings(rows.iter().map(|(_, s)| s.dept.as_deref())),
            times(rows.iter().map(|(_, s)| s.hired)),
            times(rows.iter().map(|(_, s)| s.terminated)),
            strings(rows.iter().map(|(_, s)| s.patient.as_deref())),
        ],
    )
}

fn care_team(r: &Reference) -> RecordBatch {
    let mut rows: Vec<_> = r
        .care_rows()
        .map(|(p, a)| (p, a.actor.as_deref(), a.dept.as_deref(), a.start, a.end))
        .collect();
    rows.sort_unstable();
    batch(
        vec![
            text("patient", false),
            text("actor", true),
            text("dept", true),
            time("start", true),
            time("end", true),
        ],
        vec![
            strings(rows.iter().map(|r| Some(r.0))),
            strings(rows.iter().map(|r| r.1)),
            strings(rows.iter().map(|r| r.2)),
            times(rows.iter().map(|r| r.3)),
            times(rows.iter().map(|r| r.4)),
        ],
    )
}

fn consent(r: &Reference) -> RecordBatch {
    let mut rows: Vec<_> = r
        .consent_rows()
        .map(|(p, purpose, t, s)| (p, purpose, t, s.as_str()))
        .collect();
    // Time before status: a patient's decisions read in the order made.
    rows.sort_unstable();
    batch(
        vec![
            text("patient", false),
            text("purpose", false),
            text("status", false),
            time("time", false),
        ],
        vec![
            strings(rows.iter().map(|r| Some(r.0))),
            strings(rows.iter().map(|r| Some(r.1))),
            strings(rows.iter().map(|r| Some(r.3))),
            times(rows.iter().map(|r| Some(r.2))),
        ],
    )
}

fn export_allow(r: &Reference) -> RecordBatch {
    let mut rows: Vec<String> = r.export_allow_rows().collect();
    rows.sort_unstable();
    rows.dedup();
    batch(
        vec![text("destination", false)],
        vec![strings(rows.iter().map(|d| Some(d.as_str())))],
    )
}

fn links(r: &Reference) -> RecordBatch {
    let mut rows: Vec<(&str, &str, &str)> = r.link_rows().collect();
    rows.sort_unstable();
    batch(
        vec![
            text("actor", false),
            text("patient", false),
            text("relation", false),
        ],
        vec![
            strings(rows.iter().map(|r| Some(r.0))),
            strings(rows.iter().map(|r| Some(r.1))),
            strings(rows.iter().map(|r| Some(r.2))),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::reference::{CareAssignment, ConsentStatus, Staff};
    use crate::query::register_reference;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    fn sample() -> Reference {
        let mut r = Reference::default();
        r.add_vip("pt_b".into(), "vip".into());
        r.add_vip("pt_a".into(), "restricted".into());
        r.add_staff(
            "dr.a".into(),
            Staff {
                role: Some("physician".into()),
                hired: Some(t("2020-01-01T00:00:00Z")),
                patient: Some("pt_own".into()),
                ..Default::default()
            },
        );
        r.add_care(
            "pt_a".into(),
            CareAssignment {
                dept: Some("icu".into()),
                ..Default::default()
            },
        );
        let at = t("2026-01-01T00:00:00Z");
        r.add_consent("pt_a".into(), "HRESCH".into(), at, ConsentStatus::Granted);
        r.add_export_allow("s3://archive/*".into());
        r.add_export_allow("sftp://research.local/".into());
        r.add_link("dr.a".into(), "pt_b".into(), "neighbour".into());
        r
    }

    #[test]
    fn tables_have_the_documented_schemas_and_sorted_rows() {
        let tables = tables(&sample());
        let shape: Vec<(&str, Vec<String>, usize)> = tables
            .iter()
            .map(|(name, b)| {
                let cols = b
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .collect();
                (*name, cols, b.num_rows())
            })
            .collect();
        let cols = |c: &[&str]| c.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            shape,
            vec![
                ("ref_vip", cols(&["patient", "category"]), 2),
                (
                    "ref_roster",
                    cols(&["actor", "role", "dept", "hired", "terminated", "patient"]),
                    1
                ),
                (
                    "ref_care_team",
                    cols(&["patient", "actor", "dept", "start", "end"]),
                    1
                ),
                (
                    "ref_consent",
                    cols(&["patient", "purpose", "status", "time"]),
                    1
                ),
                ("ref_export_allow", cols(&["destination"]), 2),
                ("ref_links", cols(&["actor", "patient", "relation"]), 1),
            ]
        );
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(tables[1].1.schema().field(3).data_type(), &utc);
        assert_eq!(tables[3].1.schema().field(3).data_type(), &utc);
        let vip = tables[0]
            .1
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(vip.value(0), "pt_a", "sorted");
        let own = tables[1]
            .1
            .column(5)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(own.value(0), "pt_own");
        let links = &tables[5].1;
        let cell = |c: usize| {
            let a = links.column(c).as_any().downcast_ref::<StringArray>();
            a.unwrap().value(0).to_owned()
        };
        assert_eq!([cell(0), cell(1), cell(2)], ["dr.a", "pt_b", "neighbour"]);
        let empty = super::tables(&Reference::default());
        assert!(empty.iter().all(|(_, b)| b.num_rows() == 0));
    }

    #[tokio::test]
    async fn reference_tables_answer_sql() {
        let ctx = datafusion::execution::context::SessionContext::new();
        register_reference(&ctx, &sample()).unwrap();
        let df = ctx
            .sql(
                "SELECT v.patient, v.category, c.status, r.hired \
                 FROM ref_vip v JOIN ref_consent c ON c.patient = v.patient \
                 CROSS JOIN ref_roster r \
                 WHERE c.time <= TIMESTAMP '2026-06-01T00:00:00Z'",
            )
            .await
            .unwrap();
        let out = arrow::util::pretty::pretty_format_batches(&df.collect().await.unwrap())
            .unwrap()
            .to_string();
        let row = out.lines().find(|l| l.contains("pt_a")).unwrap_or_default();
        for cell in ["restricted", "granted", "2020-01-01T00:00:00"] {
            assert!(row.contains(cell), "{out}");
        }
        assert_eq!(out.matches("pt_").count(), 1, "{out}");
        let n = ctx.sql("SELECT count(*) AS n FROM ref_export_allow WHERE destination LIKE 's3%'");
        let batches = n.await.unwrap().collect().await.unwrap();
        let n = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>();
        assert_eq!(n.unwrap().value(0), 1);
        // `end` is an SQL keyword: quoted, as docs/detection.md shows.
        let q = "SELECT count(*) FROM ref_care_team c WHERE c.dept = 'icu' \
                 AND (c.start IS NULL OR c.start <= now()) AND (c.\"end\" IS NULL)";
        let batches = ctx.sql(q).await.unwrap().collect().await.unwrap();
        let n = batches[0]
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>();
        assert_eq!(n.unwrap().value(0), 1);
    }
}
