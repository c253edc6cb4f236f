//! The output contract of a detector query, and its rows as findings.
//!
//! Required columns: `actor` (string), `severity` (string: `low`, `medium`,
//! `high` or `critical`, any case), `title` (string: the one-line reason,
//! with the numbers behind it), `evidence` (a list of event ids, as
//! `array_agg(id)` makes, or one comma-separated string). Optional:
//! `score`, `observed`, `expected` (numbers; 0 when absent), `patient`
//! (string), `window_start` and `window_end` (timestamps; the run's window
//! when absent), `dedup_key` (string; replaces actor and patient as the key
//! a finding is raised once for). Other columns are ignored.
//!
//! A row with a null actor, title or severity, or a severity outside the
//! four words, is skipped and counted, never fatal to the run.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Float64Type, Schema, TimestampMicrosecondType};
use arrow::record_batch::RecordBatch;
use chrono::DateTime;

use super::SqlError;
use crate::detect::{Finding, Severity};

const REQUIRED: [(&str, Kind); 4] = [
    ("actor", Kind::Text),
    ("severity", Kind::Text),
    ("title", Kind::Text),
    ("evidence", Kind::Evidence),
];

const OPTIONAL: [(&str, Kind); 7] = [
    ("score", Kind::Number),
    ("observed", Kind::Number),
    ("expected", Kind::Number),
    ("patient", Kind::Text),
    ("window_start", Kind::Time),
    ("window_end", Kind::Time),
    ("dedup_key", Kind::Text),
];

#[derive(Debug, Clone, Copy)]
enum Kind {
    Text,
    Evidence,
    Number,
    Time,
}

impl Kind {
    fn accepts(self, t: &DataType) -> bool {
        let text = |t: &DataType| {
            matches!(
                t,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
            )
        };
        match self {
            Kind::Text => text(t),
            Kind::Evidence => match t {
                DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
                    text(f.data_type())
                }
                t => text(t),
            },
            Kind::Number => t.is_numeric() || *t == DataType::Null,
            Kind::Time => matches!(t, DataType::Timestamp(_, _) | DataType::Null),
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Kind::Text => "a string",
            Kind::Evidence => "a list of strings or a string",
            Kind::Number => "a number",
            Kind::Time => "a timestamp",
        }
    }
}

/// Checks a query's output schema against the contract.
pub(super) fn check_schema(schema: &Schema) -> Result<(), SqlError> {
    let check = |name: &'static str, kind: Kind| -> Result<bool, SqlError> {
        let Ok(field) = schema.field_with_name(name) else {
            return Ok(false);
        };
        if kind.accepts(field.data_type()) {
            Ok(true)
        } else {
            Err(SqlError::ColumnType {
                column: name,
                found: field.data_type().clone(),
                expected: kind.expected(),
            })
        }
    };
    for (name, kind) in REQUIRED {
        if !check(name, kind)? {
            return Err(SqlError::MissingColumn(name));
        }
    }
    for (name, kind) in OPTIONAL {
        check(name, kind)?;
    }
    Ok(())
}

/// One output row as a finding, with the key it is raised once for.
pub(super) struct Row {
    pub(super) finding: Finding,
    pub(super) key: String,
}

/// What the run passes down: the detector name, the window's bounds (µs)
/// and the evidence cap.
pub(super) struct Context<'a> {
    pub(super) detector: &'a str,
    pub(super) from: i64,
    pub(super) to: i64,
    pub(super) max_evidence: usize,
}

/// The rows of `batch` as findings; returns the number of rows skipped.
pub(super) fn rows(cx: &Context, batch: &RecordBatch, out: &mut Vec<Row>) -> Result<u64, SqlError> {
    let text = |name: &str| -> Result<Option<ArrayRef>, SqlError> {
        Ok(match batch.column_by_name(name) {
            Some(c) => Some(cast(c, &DataType::Utf8)?),
            None => None,
        })
    };
    let number = |name: &str| -> Result<Option<ArrayRef>, SqlError> {
        Ok(match batch.column_by_name(name) {
            Some(c) => Some(cast(c, &DataType::Float64)?),
            None => None,
        })
    };
    let time = |name: &str| -> Result<Option<ArrayRef>, SqlError> {
        Ok(match batch.column_by_name(name) {
            Some(c) => Some(cast(c, &super::utc_micros())?),
            None => None,
        })
    };
    let (Some(actor), Some(severity), Some(title)) =
        (text("actor")?, text("severity")?, text("title")?)
    else {
        return Err(SqlError::MissingColumn("actor"));
    };
    let evidence = match batch.column_by_name("evidence") {
        Some(c)
            if matches!(
                c.data_type(),
                DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _)
            ) =>
        {
            let list = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)));
            Evidence::List(cast(c, &list)?)
        }
        Some(c) => Evidence::Text(cast(c, &DataType::Utf8)?),
        None => return Err(SqlError::MissingColumn("evidence")),
    };
    let (patient, dedup) = (text("patient")?, text("dedup_key")?);
    let (score, observed, expected) = (number("score")?, number("observed")?, number("expected")?);
    let (start, end) = (time("window_start")?, time("window_end")?);
    let (actor, severity, title) = (
        actor.as_string::<i32>(),
        severity.as_string::<i32>(),
        title.as_string::<i32>(),
    );
    let str_at = |a: &Option<ArrayRef>, i: usize| -> Option<String> {
        a.as_ref()
            .map(|a| a.as_string::<i32>())
            .filter(|a| a.is_valid(i))
            .map(|a| a.value(i).to_owned())
    };
    let num_at = |a: &Option<ArrayRef>, i: usize| -> f64 {
        a.as_ref()
            .map(|a| a.as_primitive::<Float64Type>())
            .filter(|a| a.is_valid(i))
            .map_or(0.0, |a| a.value(i))
    };
    let time_at = |a: &Option<ArrayRef>, i: usize, default: i64| -> i64 {
        a.as_ref()
            .map(|a| a.as_primitive::<TimestampMicrosecondType>())
            .filter(|a| a.is_valid(i))
            .map_or(default, |a| a.value(i))
    };
    let mut skipped = 0;
    for i in 0..batch.num_rows() {
        let sev = severity
            .is_valid(i)
            .then(|| parse_severity(severity.value(i)))
            .flatten();
        let (Some(sev), true, true) = (sev, actor.is_valid(i), title.is_valid(i)) else {
            skipped += 1;
            continue;
        };
        let (ids, total) = evidence.at(i, cx.max_evidence);
        let actor = actor.value(i).to_owned();
        let patient = str_at(&patient, i);
        let key = str_at(&dedup, i)
            .unwrap_or_else(|| format!("{actor}\u{1f}{}", patient.as_deref().unwrap_or("")));
        let at = |us: i64| DateTime::from_timestamp_micros(us).unwrap_or_default();
        out.push(Row {
            key,
            finding: Finding {
                detector: cx.detector.to_owned(),
                severity: sev,
                actor,
                patient,
                model: None,
                window_start: at(time_at(&start, i, cx.from)),
                window_end: at(time_at(&end, i, cx.to)),
                score: num_at(&score, i),
                observed: num_at(&observed, i),
                expected: num_at(&expected, i),
                summary: title.value(i).to_owned(),
                evidence: ids,
                evidence_total: total,
            },
        });
    }
    Ok(skipped)
}

fn parse_severity(s: &str) -> Option<Severity> {
    match s.trim().to_ascii_lowercase().as_str() {
        "low" => Some(Severity::Low),
        "medium" => Some(Severity::Medium),
        "high" => Some(Severity::High),
        "critical" => Some(Severity::Critical),
        _ => None,
    }
}

enum Evidence {
    List(ArrayRef),
    Text(ArrayRef),
}

impl Evidence {
    /// The first `cap` ids of row `i`, and how many it has.
    fn at(&self, i: usize, cap: usize) -> (Vec<String>, u64) {
        let mut ids = Vec::new();
        let mut total = 0u64;
        let mut take = |id: &str| {
            total += 1;
            if ids.len() < cap {
                ids.push(id.to_owned());
            }
        };
        match self {
            Evidence::List(a) => {
                let list = a.as_list::<i32>();
                if list.is_valid(i) {
                    let values = list.value(i);
                    let values: &StringArray = values.as_string::<i32>();
                    values.iter().flatten().for_each(&mut take);
                }
            }
            Evidence::Text(a) => {
                let a = a.as_string::<i32>();
                if a.is_valid(i) {
                    a.value(i)
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .for_each(&mut take);
                }
            }
        }
        (ids, total)
    }
}
