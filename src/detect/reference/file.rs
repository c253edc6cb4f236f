//! Reading one reference file, CSV or Parquet (chosen by the extension), as
//! rows of text cells in the columns a table asks for.
//!
//! Guarantees:
//! - columns are found by name (trimmed, case-insensitive), in any order;
//!   extra columns are ignored; a column the table does not require may be
//!   absent (its cells read as empty);
//! - a file that cannot be opened, is not valid Parquet, or lacks a
//!   required column is an error for the whole file;
//! - a row that cannot be read (an unclosed quote, a cell count unlike the
//!   header's, bytes that are not UTF-8) or that the table refuses is a
//!   [`RowProblem`] naming its line (CSV: the 1-based line in the file;
//!   Parquet: the 1-based row) and is skipped; the other rows still load;
//! - reasons never quote a cell: cells may hold raw patient identifiers.
//!
//! CSV follows RFC 4180: a header row, `,` between cells, cells with `,` or
//! `"` quoted and `"` doubled inside quotes. A quoted cell may not span
//! lines (that row is refused). Cells are trimmed; an empty cell is null.
//! Parquet text columns may be Utf8, LargeUtf8, Utf8View or dictionaries of
//! them; timestamp columns are read as RFC 3339 text (UTC).

use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit, TimestampMicrosecondType};
use chrono::{DateTime, SecondsFormat, Utc};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::load::{ReferenceError, RowProblem};

/// What a table reads from its file.
pub(super) struct Shape {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    /// Groups of columns of which the header must hold at least one each.
    pub required: &'static [&'static [&'static str]],
}

/// One data row: the cells of [`Shape::columns`], in that order.
pub(super) struct Row {
    columns: &'static [&'static str],
    cells: Vec<Option<String>>,
}

impl Row {
    /// Takes the cell of `column` (None when empty or absent).
    pub fn opt(&mut self, column: &str) -> Option<String> {
        let i = self.columns.iter().position(|c| *c == column);
        debug_assert!(i.is_some(), "{column} is not a column of this table");
        i.and_then(|i| self.cells[i].take())
    }

    /// Takes the cell of `column`, which must not be empty.
    pub fn req(&mut self, column: &str) -> Result<String, String> {
        self.opt(column)
            .ok_or_else(|| format!("`{column}` is empty"))
    }

    /// Takes the cell of `column` as an RFC 3339 time, if not empty.
    pub fn time(&mut self, column: &str) -> Result<Option<DateTime<Utc>>, String> {
        self.opt(column)
            .map(|text| {
                DateTime::parse_from_rfc3339(&text)
                    .map(|t| t.to_utc())
                    .map_err(|_| format!("`{column}` is not an RFC 3339 time"))
            })
            .transpose()
    }
}

/// Reads `path`, calling `each` for every data row; rows that cannot be
/// read or that `each` refuses (with a reason) go to `problems`.
pub(super) fn read(
    path: &Path,
    shape: &Shape,
    problems: &mut Vec<RowProblem>,
    mut each: impl FnMut(Row) -> Result<(), String>,
) -> Result<(), ReferenceError> {
    let mut on_row = |line: u64, cells: Result<Vec<Option<String>>, String>| {
        let result = cells.and_then(|cells| {
            each(Row {
                columns: shape.columns,
                cells,
            })
        });
        if let Err(reason) = result {
            problems.push(RowProblem {
                table: shape.table,
                path: path.to_owned(),
                line,
                reason,
            });
        }
    };
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext.eq_ignore_ascii_case("csv") {
        read_csv(path, shape, &mut on_row)
    } else if ext.eq_ignore_ascii_case("parquet") {
        read_parquet(path, shape, &mut on_row)
    } else {
        Err(format_error(
            path,
            "unknown file type (expected .csv or .parquet)",
        ))
    }
}

type OnRow<'a> = dyn FnMut(u64, Result<Vec<Option<String>>, String>) + 'a;

fn format_error(path: &Path, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Format {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// For each of the shape's columns, its index among `header` (if present).
fn project(
    path: &Path,
    header: &[String],
    shape: &Shape,
) -> Result<Vec<Option<usize>>, ReferenceError> {
    let mut found = Vec::with_capacity(shape.columns.len());
    for column in shape.columns {
        let mut at = header.iter().enumerate().filter(|(_, h)| h == column);
        let first = at.next().map(|(i, _)| i);
        if at.next().is_some() {
            return Err(format_error(
                path,
                format!("column `{column}` appears twice"),
            ));
        }
        found.push(first);
    }
    for group in shape.required {
        let present = group.iter().any(|g| {
            let i = shape.columns.iter().position(|c| c == g);
            i.is_some_and(|i| found[i].is_some())
        });
        if !present {
            return Err(ReferenceError::MissingColumn {
                path: path.to_owned(),
                column: group.join("` or `"),
            });
        }
    }
    Ok(found)
}

fn read_csv(path: &Path, shape: &Shape, on_row: &mut OnRow<'_>) -> Result<(), ReferenceError> {
    let bytes = std::fs::read(path).map_err(|source| ReferenceError::Io {
        path: path.to_owned(),
        source,
    })?;
    // Spreadsheet exports often start with a byte-order mark.
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes[..]);
    let mut lines = bytes
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .zip(1u64..);
    let header = match lines.next() {
        Some((text, _)) => split_record(text)
            .map_err(|reason| format_error(path, format!("line 1 (the header): {reason}")))?,
        None => Vec::new(),
    };
    let header: Vec<String> = header
        .into_iter()
        .map(|h| h.unwrap_or_default().to_ascii_lowercase())
        .collect();
    let found = project(path, &header, shape)?;
    for (text, line) in lines {
        if text.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let cells = split_record(text).and_then(|mut cells| {
            if cells.len() != header.len() {
                return Err(format!(
                    "{} cells where the header has {}",
                    cells.len(),
                    header.len()
                ));
            }
            Ok(found
                .iter()
                .map(|i| i.and_then(|i| cells[i].take()))
                .collect())
        });
        on_row(line, cells);
    }
    Ok(())
}

/// Splits one CSV line into trimmed cells (None for an empty one).
fn split_record(line: &[u8]) -> Result<Vec<Option<String>>, String> {
    let mut cells = Vec::new();
    let mut i = 0;
    loop {
        let n = cells.len() + 1;
        let (raw, next) = if line.get(i) == Some(&b'"') {
            let mut buf = Vec::new();
            let mut j = i + 1;
            loop {
                match line.get(j) {
                    None => return Err(format!("cell {n}: a quote is not closed on this line")),
                    Some(b'"') if line.get(j + 1) == Some(&b'"') => {
                        buf.push(b'"');
                        j += 2;
                    }
                    Some(b'"') => break,
                    Some(&b) => {
                        buf.push(b);
                        j += 1;
                    }
                }
            }
            // `j` is the closing quote; a comma or the end must follow.
            if !matches!(line.get(j + 1), None | Some(b',')) {
                return Err(format!("cell {n}: text after a closing quote"));
            }
            (buf, j + 1)
        } else {
            let end = memchr::memchr(b',', &line[i..]).map_or(line.len(), |k| i + k);
            (line[i..end].to_vec(), end)
        };
        let text = String::from_utf8(raw).map_err(|_| format!("cell {n} is not UTF-8"))?;
        let text = text.trim();
        cells.push((!text.is_empty()).then(|| text.to_owned()));
        if next >= line.len() {
            return Ok(cells);
        }
        i = next + 1;
    }
}

fn read_parquet(path: &Path, shape: &Shape, on_row: &mut OnRow<'_>) -> Result<(), ReferenceError> {
    let file = std::fs::File::open(path).map_err(|source| ReferenceError::Io {
        path: path.to_owned(),
        source,
    })?;
    let bad = |e: &dyn std::fmt::Display| format_error(path, e.to_string());
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(&e))?;
    let schema = builder.schema().clone();
    let header: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| f.name().trim().to_ascii_lowercase())
        .collect();
    let found = project(path, &header, shape)?;
    for i in found.iter().flatten() {
        let field = schema.field(*i);
        if !readable(field.data_type()) {
            return Err(format_error(
                path,
                format!(
                    "column `{}` has type {}; expected text or a timestamp",
                    header[*i],
                    field.data_type()
                ),
            ));
        }
    }
    let roots: Vec<usize> = found.iter().flatten().copied().collect();
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    let reader = builder
        .with_projection(mask)
        .with_batch_size(8192)
        .build()
        .map_err(|e| bad(&e))?;
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| bad(&e))?;
        let mut columns = Vec::with_capacity(found.len());
        for i in &found {
            let cells = match i {
                Some(i) => {
                    let name = schema.field(*i).name();
                    let array = batch
                        .column_by_name(name)
                        .ok_or_else(|| format_error(path, format!("column `{name}` not read")))?;
                    Some(text_cells(array).map_err(|e| bad(&e))?)
                }
                None => None,
            };
            columns.push(cells);
        }
        for r in 0..batch.num_rows() {
            row += 1;
            let cells = columns
                .iter_mut()
                .map(|c| c.as_mut().and_then(|c| c[r].take()))
                .collect();
            on_row(row, Ok(cells));
        }
    }
    Ok(())
}

fn readable(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Timestamp(..) => true,
        DataType::Dictionary(_, v) => {
            matches!(
                **v,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
            )
        }
        _ => false,
    }
}

/// A text or timestamp column as trimmed text cells (None for null or
/// empty); timestamps become RFC 3339 text in UTC.
fn text_cells(array: &ArrayRef) -> Result<Vec<Option<String>>, arrow::error::ArrowError> {
    if let DataType::Timestamp(..) = array.data_type() {
        let utc = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let micros = cast(array, &utc)?;
        return Ok(micros
            .as_primitive::<TimestampMicrosecondType>()
            .iter()
            .map(|us| {
                // Out of chrono's range (±262,000 years): text that fails
                // the time parse, so the row is reported, not loaded.
                us.map(|us| match DateTime::from_timestamp_micros(us) {
                    Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                    None => "out of range".to_owned(),
                })
            })
            .collect());
    }
    let text = cast(array, &DataType::Utf8)?;
    Ok(text
        .as_string::<i32>()
        .iter()
        .map(|s| {
            s.map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(line: &str) -> Result<Vec<Option<String>>, String> {
        split_record(line.as_bytes())
    }

    fn some(v: &[&str]) -> Vec<Option<String>> {
        v.iter()
            .map(|s| (!s.is_empty()).then(|| s.to_string()))
            .collect()
    }

    #[test]
    fn csv_cells_follow_rfc_4180_quoting() {
        assert_eq!(cells("a,b,c").unwrap(), some(&["a", "b", "c"]));
        assert_eq!(cells(" a , ,").unwrap(), some(&["a", "", ""]));
        assert_eq!(
            cells(r#""x, y","say ""hi""",z"#).unwrap(),
            some(&["x, y", r#"say "hi""#, "z"])
        );
        assert_eq!(cells(r#""""#).unwrap(), vec![None]);
        assert_eq!(cells("").unwrap(), vec![None]);
        assert!(cells(r#""open,b"#).unwrap_err().contains("not closed"));
        assert!(
            cells(r#""a"b,c"#)
                .unwrap_err()
                .contains("after a closing quote")
        );
        assert!(
            split_record(b"a,\xff")
                .unwrap_err()
                .contains("cell 2 is not UTF-8")
        );
    }

    #[test]
    fn columns_are_found_by_name_and_required_ones_enforced() {
        let shape = Shape {
            table: "care_team",
            columns: &["patient", "actor", "dept"],
            required: &[&["patient"], &["actor", "dept"]],
        };
        let p = Path::new("x.csv");
        let header = |h: &[&str]| h.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let found = project(p, &header(&["extra", "dept", "patient"]), &shape).unwrap();
        assert_eq!(found, vec![Some(2), None, Some(1)]);
        let err = project(p, &header(&["patient", "role"]), &shape).unwrap_err();
        assert_eq!(
            err.to_string(),
            "reference file x.csv has no `actor` or `dept` column"
        );
        let err = project(p, &header(&["patient", "dept", "dept"]), &shape).unwrap_err();
        assert!(err.to_string().contains("appears twice"), "{err}");
    }
}
