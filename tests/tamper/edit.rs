//! Editing a store's files as an attacker with the format document
//! would: bytes, lengths, JSON lines, and Parquet segments rewritten with
//! their `custos.*` metadata kept.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{
    DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use custos::ledger::Table;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rand::Rng;
use rand::rngs::StdRng;

/// A row, biased to the edges: the first, the last, or any.
pub fn pick_row(rng: &mut StdRng, rows: u32) -> u32 {
    match rng.random_range(0..4) {
        0 => 0,
        1 => rows - 1,
        _ => rng.random_range(0..rows),
    }
}

pub fn flip_byte(path: &Path, rng: &mut StdRng) -> usize {
    let mut bytes = fs::read(path).unwrap();
    let at = rng.random_range(0..bytes.len());
    bytes[at] ^= rng.random_range(1..=255u8);
    fs::write(path, bytes).unwrap();
    at
}

pub fn set_len(path: &Path, len: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// The span of a field's value in a JSON line (inside the quotes for a
/// string).
pub fn value_span(line: &str, field: &str) -> Option<(usize, usize)> {
    let key = format!("\"{field}\":");
    let start = line.find(&key)? + key.len();
    let rest = &line[start..];
    if let Some(text) = rest.strip_prefix('"') {
        let len = text.find('"')?;
        Some((start + 1, start + 1 + len))
    } else {
        let len = rest.find([',', '}'])?;
        Some((start, start + len))
    }
}

/// Rewrites the lines of a JSON-lines file: `edit(index, line)` returns
/// `None` to keep a line, `Some(None)` to drop it, `Some(Some(text))` to
/// replace it.
pub fn edit_lines(
    root: &Path,
    rel: &str,
    mut edit: impl FnMut(usize, &str) -> Option<Option<String>>,
) {
    let path = root.join(rel);
    let text = fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        match edit(i, line) {
            None => out.push_str(line),
            Some(None) => continue,
            Some(Some(new)) => out.push_str(&new),
        }
        out.push('\n');
    }
    fs::write(path, out).unwrap();
}

/// Edits manifest lines as JSON; lines `edit` leaves alone keep their text.
pub fn edit_manifest(root: &Path, rel: &str, mut edit: impl FnMut(usize, &mut serde_json::Value)) {
    edit_lines(root, rel, |i, line| {
        let old: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut new = old.clone();
        edit(i, &mut new);
        (new != old).then(|| Some(serde_json::to_string(&new).unwrap()))
    });
}

/// Makes the manifest agree with a segment's new digest and size, so only
/// the deeper checks can catch an edit of its rows.
pub fn reseal(root: &Path, manifest: &str, file: &str) {
    let bytes = fs::read(root.join(file)).unwrap();
    edit_manifest(root, manifest, |_, v| {
        if v["file"] == file {
            v["file_blake3"] = blake3::hash(&bytes).to_hex().to_string().into();
            v["bytes"] = (bytes.len() as u64).into();
        }
    });
}

/// A segment's rows and its `custos.*` metadata.
pub fn read_segment(path: &Path) -> (RecordBatch, Vec<KeyValue>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap();
    let meta: Vec<KeyValue> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .filter(|kv| kv.key.starts_with("custos."))
        .cloned()
        .collect();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    (concat_batches(&schema, &batches).unwrap(), meta)
}

/// Writes rows as a segment with the given metadata, as an attacker with
/// the format document would.
pub fn write_segment(path: &Path, batch: &RecordBatch, meta: Vec<KeyValue>) {
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(meta))
        .build();
    let file = fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

pub fn first_difference(old: &RecordBatch, new: &RecordBatch) -> u64 {
    assert_ne!(old, new, "the tampering changed nothing");
    let n = old.num_rows().min(new.num_rows());
    (0..n)
        .find(|&i| old.slice(i, 1) != new.slice(i, 1))
        .unwrap_or(n) as u64
}

pub fn pick(batch: &RecordBatch, rows: &[u32]) -> RecordBatch {
    take_record_batch(batch, &UInt32Array::from(rows.to_vec())).unwrap()
}

pub fn string_at(batch: &RecordBatch, column: &str, row: usize) -> String {
    batch
        .column_by_name(column)
        .unwrap()
        .as_string::<i32>()
        .value(row)
        .to_owned()
}

fn with_column(batch: &RecordBatch, column: &str, array: ArrayRef) -> RecordBatch {
    let mut columns = batch.columns().to_vec();
    columns[batch.schema().index_of(column).unwrap()] = array;
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

pub fn with_string(batch: &RecordBatch, column: &str, row: usize, value: &str) -> RecordBatch {
    let old = batch.column_by_name(column).unwrap().as_string::<i32>();
    let new: StringArray = old
        .iter()
        .enumerate()
        .map(|(i, v)| if i == row { Some(value) } else { v })
        .collect();
    with_column(batch, column, Arc::new(new))
}

/// The batch with one cell of `column` changed to another valid value.
pub fn with_cell_changed(batch: &RecordBatch, column: &str, row: usize) -> RecordBatch {
    let old = batch.column_by_name(column).unwrap();
    let at = |i: usize| i == row;
    let new: ArrayRef = match old.data_type() {
        DataType::Utf8 => {
            let a = old.as_string::<i32>();
            let value = format!("{}~", if a.is_valid(row) { a.value(row) } else { "" });
            return with_string(batch, column, row, &value);
        }
        DataType::Binary => Arc::new(
            old.as_binary::<i32>()
                .iter()
                .enumerate()
                .map(|(i, v)| match (at(i), v) {
                    (true, v) => Some([v.unwrap_or_default(), b"~"].concat()),
                    (false, v) => v.map(<[u8]>::to_vec),
                })
                .collect::<BinaryArray>(),
        ),
        DataType::UInt64 => Arc::new(
            old.as_primitive::<UInt64Type>()
                .iter()
                .enumerate()
                .map(|(i, v)| if at(i) { Some(v.unwrap_or(0) + 7) } else { v })
                .collect::<UInt64Array>(),
        ),
        DataType::Int64 => Arc::new(
            old.as_primitive::<Int64Type>()
                .iter()
                .enumerate()
                .map(|(i, v)| if at(i) { Some(v.unwrap_or(0) + 1) } else { v })
                .collect::<Int64Array>(),
        ),
        DataType::Int32 => Arc::new(
            old.as_primitive::<Int32Type>()
                .iter()
                .enumerate()
                .map(|(i, v)| if at(i) { Some(v.unwrap_or(0) + 1) } else { v })
                .collect::<Int32Array>(),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => Arc::new(
            old.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .enumerate()
                .map(|(i, v)| if at(i) { Some(v.unwrap_or(0) + 1) } else { v })
                .collect::<TimestampMicrosecondArray>()
                .with_timezone_opt(tz.clone()),
        ),
        other => panic!("no edit for a {other} column"),
    };
    with_column(batch, column, new)
}

/// The batch with the record of `row` holding another event id (events)
/// or detail (rejects), and with the matching column changed too if
/// `with_column`; also returns the new record.
pub fn changed_record(
    batch: &RecordBatch,
    table: Table,
    row: usize,
    with_column: bool,
) -> (RecordBatch, String) {
    let mut record: serde_json::Value =
        serde_json::from_str(&string_at(batch, "record", row)).unwrap();
    let (field, column) = match table {
        Table::Events => (&mut record["event"]["id"], "id"),
        Table::Rejects => (&mut record["detail"], "detail"),
        Table::Incidents => (&mut record["incident"]["actor"], "actor"),
        Table::QueryLog => (&mut record["query"]["who"], "who"),
    };
    let value = format!("{}~", field.as_str().unwrap());
    *field = value.clone().into();
    let record = serde_json::to_string(&record).unwrap();
    let mut batch = with_string(batch, "record", row, &record);
    if with_column {
        batch = with_string(&batch, column, row, &value);
    }
    (batch, record)
}
