//! Parquet segments: the Arrow schemas of the tables, the rows a writer
//! buffers, and writing/reading one segment file.
//!
//! A segment holds consecutive rows of one table of one chain. It is zstd
//! compressed with page statistics (and the page index) on, bloom filters
//! on `id`, `actor_id` and `patient`, per-row unique columns written
//! without a dictionary and growing integers as deltas, split into row
//! groups of at most
//! `row_group_rows` rows, and carries the table and chain in its key-value
//! metadata (`custos.*` keys, see `docs/ledger-format.md`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray, StringBuilder,
    TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
};
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use bytes::Bytes;

use super::crypt::SegmentKey;
use super::error::LedgerError;
use super::hash::Hash;
use super::manifest::Table;
use super::record::{EventColumns, IncidentColumns, QueryColumns};
use super::{ChainId, StoreOptions};

/// Rows per Arrow batch when reading segments back.
const READ_BATCH_ROWS: usize = 8192;

/// The Arrow schema of the `events` table.
pub fn events_schema() -> SchemaRef {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    table_schema(vec![
        utf8("id", false),
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        utf8("kind", false),
        utf8("actor_id", false),
        utf8("actor_role", true),
        utf8("actor_dept", true),
        utf8("patient", true),
        utf8("action", true),
        utf8("purpose", true),
        utf8("outcome", true),
        Field::new("records", DataType::Int64, true),
        utf8("model", true),
        utf8("record", false),
    ])
}

/// The Arrow schema of the `rejects` table.
pub fn rejects_schema() -> SchemaRef {
    table_schema(vec![
        Field::new("reason", DataType::Utf8, false),
        Field::new("detail", DataType::Utf8, false),
        Field::new("key", DataType::Binary, true),
        Field::new("payload", DataType::Binary, false),
        Field::new("record", DataType::Utf8, false),
    ])
}

/// The Arrow schema of the `incidents` table: one row per incident
/// revision, `offset` being its number in the outbox.
pub fn incidents_schema() -> SchemaRef {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    table_schema(vec![
        utf8("id", false),
        Field::new("revision", DataType::UInt64, false),
        utf8("state", false),
        utf8("severity", false),
        utf8("actor", false),
        utf8("patient", true),
        utf8("detector", false),
        Field::new(
            "raised_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        utf8("record", false),
    ])
}

/// The Arrow schema of the `query_log` table: one row per statement a
/// query surface received, `offset` being its number in the chain.
pub fn query_log_schema() -> SchemaRef {
    let utf8 = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    table_schema(vec![
        Field::new(
            "at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        utf8("who", false),
        utf8("role", true),
        utf8("surface", false),
        utf8("sql", false),
        Field::new("rows", DataType::UInt64, true),
        utf8("outcome", false),
        utf8("error", true),
        Field::new("elapsed_ms", DataType::UInt64, false),
        utf8("record", false),
    ])
}

/// A table's schema: every table starts with the row's place in the
/// ledger (`seq` in the chain's tree, and the chain and source offset it
/// came from), then `columns`.
fn table_schema(columns: Vec<Field>) -> SchemaRef {
    let mut fields = vec![
        Field::new("seq", DataType::UInt64, false),
        Field::new("stream", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
    ];
    fields.extend(columns);
    Arc::new(Schema::new(fields))
}

/// The Arrow schema of a table.
pub fn schema_of(table: Table) -> SchemaRef {
    match table {
        Table::Events => events_schema(),
        Table::Rejects => rejects_schema(),
        Table::Incidents => incidents_schema(),
        Table::QueryLog => query_log_schema(),
    }
}

/// A buffered `query_log` row.
#[derive(Debug, Clone)]
pub(crate) struct QueryRow {
    pub seq: u64,
    pub offset: i64,
    pub cols: QueryColumns,
    pub record: String,
}

pub(crate) fn query_batch(chain: &ChainId, rows: &[QueryRow]) -> Result<RecordBatch, LedgerError> {
    let s = |f: fn(&QueryRow) -> Option<&str>| strings(rows, f);
    let u = |f: fn(&QueryRow) -> Option<u64>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<UInt64Array>())
    };
    let mut columns = coordinates(chain, rows.iter().map(|r| (r.seq, r.offset)));
    columns.extend::<[ArrayRef; _]>([
        utc_micros(rows.iter().map(|r| r.cols.at_us)),
        s(|r| Some(&r.cols.who)),
        s(|r| r.cols.role.as_deref()),
        s(|r| Some(&r.cols.surface)),
        s(|r| Some(&r.cols.sql)),
        u(|r| r.cols.rows),
        s(|r| Some(&r.cols.outcome)),
        s(|r| r.cols.error.as_deref()),
        u(|r| Some(r.cols.elapsed_ms)),
        s(|r| Some(&r.record)),
    ]);
    RecordBatch::try_new(query_log_schema(), columns)
        .map_err(|e| LedgerError::Internal(format!("query_log batch: {e}")))
}

/// A buffered `incidents` row.
#[derive(Debug, Clone)]
pub(crate) struct IncidentRow {
    pub seq: u64,
    pub offset: i64,
    pub cols: IncidentColumns,
    pub record: String,
}

pub(crate) fn incident_batch(
    chain: &ChainId,
    rows: &[IncidentRow],
) -> Result<RecordBatch, LedgerError> {
    let s = |f: fn(&IncidentRow) -> Option<&str>| strings(rows, f);
    let mut columns = coordinates(chain, rows.iter().map(|r| (r.seq, r.offset)));
    columns.extend::<[ArrayRef; _]>([
        s(|r| Some(&r.cols.id)),
        Arc::new(
            rows.iter()
                .map(|r| r.cols.revision)
                .collect::<UInt64Array>(),
        ),
        s(|r| Some(&r.cols.state)),
        s(|r| Some(&r.cols.severity)),
        s(|r| Some(&r.cols.actor)),
        s(|r| r.cols.patient.as_deref()),
        s(|r| Some(&r.cols.detector)),
        utc_micros(rows.iter().map(|r| r.cols.raised_at_us)),
        s(|r| Some(&r.record)),
    ]);
    RecordBatch::try_new(incidents_schema(), columns)
        .map_err(|e| LedgerError::Internal(format!("incidents batch: {e}")))
}

/// A buffered `events` row.
#[derive(Debug, Clone)]
pub(crate) struct EventRow {
    pub seq: u64,
    pub offset: i64,
    pub cols: EventColumns,
    pub record: String,
}

/// A buffered `rejects` row.
#[derive(Debug, Clone)]
pub(crate) struct RejectRow {
    pub seq: u64,
    pub offset: i64,
    pub reason: &'static str,
    pub detail: String,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub record: String,
}

/// The `seq`, `stream`, `partition` and `offset` columns every table
/// begins with, from each row's (seq, offset).
fn coordinates(chain: &ChainId, rows: impl ExactSizeIterator<Item = (u64, i64)>) -> Vec<ArrayRef> {
    let n = rows.len();
    let (seqs, offsets): (Vec<u64>, Vec<i64>) = rows.unzip();
    vec![
        Arc::new(UInt64Array::from(seqs)),
        Arc::new(StringArray::from(vec![chain.stream.as_str(); n])),
        Arc::new(Int32Array::from(vec![chain.partition; n])),
        Arc::new(Int64Array::from(offsets)),
    ]
}

/// A string column of `rows`, its buffers sized before they are filled
/// (collecting grows the value buffer by doubling: a copy of everything
/// so far at each step, a tenth of the segment thread's time).
fn strings<R>(rows: &[R], value: impl Fn(&R) -> Option<&str>) -> ArrayRef {
    let bytes = rows.iter().filter_map(&value).map(str::len).sum();
    let mut column = StringBuilder::with_capacity(rows.len(), bytes);
    for row in rows {
        column.append_option(value(row));
    }
    Arc::new(column.finish())
}

/// A UTC timestamp column of microseconds.
fn utc_micros(values: impl Iterator<Item = i64>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values.collect::<Vec<_>>()).with_timezone("UTC"))
}

pub(crate) fn event_batch(chain: &ChainId, rows: &[EventRow]) -> Result<RecordBatch, LedgerError> {
    let s = |f: fn(&EventRow) -> Option<&str>| strings(rows, f);
    let mut columns = coordinates(chain, rows.iter().map(|r| (r.seq, r.offset)));
    columns.extend::<[ArrayRef; _]>([
        s(|r| Some(r.cols.id())),
        utc_micros(rows.iter().map(|r| r.cols.time_us)),
        s(|r| Some(r.cols.kind)),
        s(|r| Some(r.cols.actor_id())),
        s(|r| r.cols.actor_role()),
        s(|r| r.cols.actor_dept()),
        s(|r| r.cols.patient()),
        s(|r| r.cols.action()),
        s(|r| r.cols.purpose()),
        s(|r| r.cols.outcome()),
        Arc::new(rows.iter().map(|r| r.cols.records).collect::<Int64Array>()),
        s(|r| r.cols.model()),
        s(|r| Some(&r.record)),
    ]);
    RecordBatch::try_new(events_schema(), columns)
        .map_err(|e| LedgerError::Internal(format!("events batch: {e}")))
}

pub(crate) fn reject_batch(
    chain: &ChainId,
    rows: &[RejectRow],
) -> Result<RecordBatch, LedgerError> {
    let mut columns = coordinates(chain, rows.iter().map(|r| (r.seq, r.offset)));
    columns.extend::<[ArrayRef; _]>([
        Arc::new(rows.iter().map(|r| Some(r.reason)).collect::<StringArray>()),
        Arc::new(
            rows.iter()
                .map(|r| Some(&r.detail))
                .collect::<StringArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| r.key.as_deref())
                .collect::<BinaryArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(&r.payload[..]))
                .collect::<BinaryArray>(),
        ),
        Arc::new(
            rows.iter()
                .map(|r| Some(&r.record))
                .collect::<StringArray>(),
        ),
    ]);
    RecordBatch::try_new(rejects_schema(), columns)
        .map_err(|e| LedgerError::Internal(format!("rejects batch: {e}")))
}

/// The key-value metadata of a segment; `custos.pseudonym_key_id` when the
/// writer was told which pseudonym key its rows were made under.
pub(crate) fn segment_metadata(
    table: Table,
    chain: &ChainId,
    first_seq: u64,
    pseudonym_key_id: Option<&str>,
) -> Vec<KeyValue> {
    let mut kv = vec![
        KeyValue::new("custos.format_version".into(), "2".to_owned()),
        KeyValue::new("custos.table".into(), table.as_str().to_owned()),
        KeyValue::new("custos.stream".into(), chain.stream.clone()),
        KeyValue::new("custos.partition".into(), chain.partition.to_string()),
        KeyValue::new("custos.first_seq".into(), first_seq.to_string()),
    ];
    if let Some(id) = pseudonym_key_id {
        kv.push(KeyValue::new(
            "custos.pseudonym_key_id".into(),
            id.to_owned(),
        ));
    }
    kv
}

/// The columns of a segment with a bloom filter (those it has).
const BLOOM_COLUMNS: &[&str] = &["id", "actor_id", "patient"];

/// Their false-positive rate: about 1.2 bytes per row and column.
const BLOOM_FPP: f64 = 0.01;

/// Columns written without a dictionary, and their encoding instead.
/// `id`, `record` and `payload` differ on (almost) every row (an
/// incident's revisions share an id, rows apart): a dictionary would only
/// be built to be given up once its page is full. `seq` and `offset` grow
/// by one a row and `time` by the gaps between events: as deltas they
/// take a few bits a row before compression instead of eight bytes.
const COLUMN_ENCODINGS: &[(&str, Encoding)] = &[
    ("id", Encoding::PLAIN),
    ("record", Encoding::PLAIN),
    ("payload", Encoding::PLAIN),
    ("seq", Encoding::DELTA_BINARY_PACKED),
    ("offset", Encoding::DELTA_BINARY_PACKED),
    ("time", Encoding::DELTA_BINARY_PACKED),
];

/// Encodes `batches` as a segment file in memory (`path` names it in
/// errors). Returns the file's bytes and their BLAKE3.
pub(crate) fn encode_segment(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, LedgerError>>,
    metadata: Vec<KeyValue>,
    opts: &StoreOptions,
) -> Result<(Bytes, Hash), LedgerError> {
    let level = ZstdLevel::try_new(opts.zstd_level).map_err(|e| LedgerError::parquet(path, e))?;
    let mut props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(opts.row_group_rows.max(1)))
        .set_key_value_metadata(Some(metadata));
    // Bloom filters on the columns audit queries look up by value, sized
    // for the rows of a row group (the first batch is a whole one): a
    // lookup of one actor, patient or event id skips the row groups
    // without it. Rows stay in chain order (the Merkle leaves follow it).
    let mut batches = batches.into_iter().peekable();
    let ndv = match batches.peek() {
        Some(Ok(b)) => b.num_rows().max(1) as u64,
        _ => 1,
    };
    for &(column, encoding) in COLUMN_ENCODINGS {
        if schema.field_with_name(column).is_ok() {
            let column = ColumnPath::from(column);
            props = props
                .set_column_dictionary_enabled(column.clone(), false)
                .set_column_encoding(column, encoding);
        }
    }
    for column in BLOOM_COLUMNS {
        if schema.field_with_name(column).is_ok() {
            let column = ColumnPath::from(*column);
            props = props
                .set_column_bloom_filter_enabled(column.clone(), true)
                .set_column_bloom_filter_max_ndv(column.clone(), ndv)
                .set_column_bloom_filter_fpp(column, BLOOM_FPP);
        }
    }
    if let Some(key) = &opts.encryption {
        props = props.with_file_encryption_properties(key.encryption(path)?);
    }
    let props = props.build();
    let mut writer = ArrowWriter::try_new(Vec::new(), schema, Some(props))
        .map_err(|e| LedgerError::parquet(path, e))?;
    for batch in batches {
        writer
            .write(&batch?)
            .map_err(|e| LedgerError::parquet(path, e))?;
    }
    let bytes = writer
        .into_inner()
        .map_err(|e| LedgerError::parquet(path, e))?;
    let hash = *blake3::hash(&bytes).as_bytes();
    Ok((Bytes::from(bytes), hash))
}

/// A segment file read whole, and the name it is known by in messages.
#[derive(Clone)]
pub(crate) struct SegmentFile {
    pub path: PathBuf,
    pub bytes: Bytes,
}

impl SegmentFile {
    /// Whether it has an encrypted footer (it ends in `PARE`, not `PAR1`).
    pub fn is_encrypted(&self) -> bool {
        self.bytes.ends_with(b"PARE")
    }
}

/// An open segment: its key-value metadata and a reader of its batches.
pub(crate) struct SegmentReader {
    pub metadata: Vec<(String, Option<String>)>,
    pub schema: SchemaRef,
    pub reader: ParquetRecordBatchReader,
}

impl SegmentReader {
    /// Opens a segment, decrypting it with `key` if it is encrypted.
    pub fn open(
        file: &SegmentFile,
        key: Option<&SegmentKey>,
    ) -> Result<SegmentReader, LedgerError> {
        Self::open_as(file, key, false)
    }

    /// Like [`SegmentReader::open`], but the batches hold strings and bytes
    /// as views (`Utf8View`, `BinaryView`) into the decoded pages instead of
    /// copies: for readers that only look at each value once. `schema` is
    /// still the file's own.
    pub fn open_views(
        file: &SegmentFile,
        key: Option<&SegmentKey>,
    ) -> Result<SegmentReader, LedgerError> {
        Self::open_as(file, key, true)
    }

    fn open_as(
        file: &SegmentFile,
        key: Option<&SegmentKey>,
        views: bool,
    ) -> Result<SegmentReader, LedgerError> {
        let path = &file.path;
        let mut builder = reader_builder(file, key)?.with_batch_size(READ_BATCH_ROWS);
        let schema = builder.schema().clone();
        if views {
            let viewed: Vec<Field> = schema
                .fields()
                .iter()
                .map(|f| {
                    let as_view = match f.data_type() {
                        DataType::Utf8 => DataType::Utf8View,
                        DataType::Binary => DataType::BinaryView,
                        other => other.clone(),
                    };
                    f.as_ref().clone().with_data_type(as_view)
                })
                .collect();
            let hint = Arc::new(Schema::new_with_metadata(viewed, schema.metadata().clone()));
            let mut options = ArrowReaderOptions::new().with_schema(hint);
            if let Some(key) = key {
                options = options.with_file_decryption_properties(key.decryption(path)?);
            }
            let metadata = ArrowReaderMetadata::try_new(builder.metadata().clone(), options)
                .map_err(|e| LedgerError::parquet(path, e))?;
            builder =
                ParquetRecordBatchReaderBuilder::new_with_metadata(file.bytes.clone(), metadata)
                    .with_batch_size(READ_BATCH_ROWS);
        }
        let metadata = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .map(|kv| {
                kv.iter()
                    .map(|k| (k.key.clone(), k.value.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let reader = builder.build().map_err(|e| LedgerError::parquet(path, e))?;
        Ok(SegmentReader {
            metadata,
            schema,
            reader,
        })
    }

    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// The file name of the segment whose first row has `first_seq`, in its
/// `generation` (0 as flushed, then +1 per erasure that rewrote it):
/// `<first_seq:020>.parquet`, then `<first_seq:020>.e<generation>.parquet`.
pub(crate) fn segment_file_name(first_seq: u64, generation: u32) -> String {
    match generation {
        0 => format!("{first_seq:020}.parquet"),
        g => format!("{first_seq:020}.e{g}.parquet"),
    }
}

/// `<table>/<stream>/<partition>/<segment file name>`.
pub(crate) fn segment_rel_path(
    table: Table,
    chain: &ChainId,
    first_seq: u64,
    generation: u32,
) -> String {
    format!(
        "{}/{}/{}/{}",
        table.as_str(),
        chain.stream,
        chain.partition,
        segment_file_name(first_seq, generation)
    )
}

/// The first seq and generation a segment file name encodes, if the name
/// is one.
pub(crate) fn parse_segment_file_name(name: &str) -> Option<(u64, u32)> {
    let stem = name.strip_suffix(".parquet")?;
    let (digits, generation) = match stem.split_once(".e") {
        None => (stem, 0),
        Some((digits, g)) => {
            let valid =
                !g.is_empty() && !g.starts_with('0') && g.bytes().all(|b| b.is_ascii_digit());
            (
                digits,
                if valid {
                    g.parse().ok().filter(|&g| g > 0)?
                } else {
                    return None;
                },
            )
        }
    };
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, generation))
}

/// A reader of a segment file, decrypting with `key` (if any). An
/// encrypted segment without a key, or whose footer names another key, is
/// [`LedgerError::KeyNeeded`].
fn reader_builder(
    file: &SegmentFile,
    key: Option<&SegmentKey>,
) -> Result<ParquetRecordBatchReaderBuilder<Bytes>, LedgerError> {
    let path = &file.path;
    let mut options = ArrowReaderOptions::new();
    if let Some(key) = key {
        options = options.with_file_decryption_properties(key.decryption(path)?);
    }
    ParquetRecordBatchReaderBuilder::try_new_with_options(file.bytes.clone(), options).map_err(
        |e| {
            if file.is_encrypted() {
                let needed = footer_key_id(&file.bytes).unwrap_or_else(|| "(unnamed)".into());
                if key.is_none_or(|k| k.id() != needed) {
                    return LedgerError::KeyNeeded {
                        path: path.clone(),
                        needed,
                        have: key.map(|k| k.id().to_owned()),
                    };
                }
            }
            LedgerError::parquet(path, e)
        },
    )
}

/// The key id an encrypted segment's footer names (its key metadata), read
/// from the plaintext part of the file: `…‖ FileCryptoMetaData ‖ len ‖
/// "PARE"`. Found by looking for the `sk1-` id in that tail.
fn footer_key_id(bytes: &[u8]) -> Option<String> {
    let tail = &bytes[bytes.len().saturating_sub(4096)..];
    let at = memchr::memmem::rfind(tail, b"sk1-")?;
    let id = tail.get(at..at + 12)?;
    let id = std::str::from_utf8(id).ok()?;
    id[4..]
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| id.to_owned())
}

/// Reads the named columns of a segment (look them up by name), all rows
/// or one.
pub(crate) fn read_columns(
    file: &SegmentFile,
    names: &[&str],
    row: Option<usize>,
    key: Option<&SegmentKey>,
) -> Result<Vec<RecordBatch>, LedgerError> {
    let path = &file.path;
    let builder = reader_builder(file, key)?;
    let schema = builder.parquet_schema();
    let indices = schema
        .columns()
        .iter()
        .enumerate()
        .filter(|(_, c)| names.contains(&c.name()))
        .map(|(i, _)| i);
    let mask = ProjectionMask::leaves(schema, indices);
    let mut builder = builder.with_projection(mask);
    if let Some(row) = row {
        builder = builder.with_row_selection(RowSelection::from(vec![
            RowSelector::skip(row),
            RowSelector::select(1),
        ]));
    }
    let reader = builder.build().map_err(|e| LedgerError::parquet(path, e))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LedgerError::corrupt(path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_round_trip() {
        assert_eq!(segment_file_name(17, 0), "00000000000000000017.parquet");
        assert_eq!(segment_file_name(17, 2), "00000000000000000017.e2.parquet");
        assert_eq!(
            parse_segment_file_name("00000000000000000017.parquet"),
            Some((17, 0))
        );
        assert_eq!(
            parse_segment_file_name("00000000000000000017.e12.parquet"),
            Some((17, 12))
        );
        for bad in [
            "00000000000000000017.e0.parquet",
            "00000000000000000017.e01.parquet",
            "00000000000000000017.e.parquet",
            "00000000000000000017.ex.parquet",
        ] {
            assert_eq!(parse_segment_file_name(bad), None, "{bad}");
        }
        assert_eq!(parse_segment_file_name("17.parquet"), None);
        assert_eq!(
            parse_segment_file_name("00000000000000000017.parquet.tmp"),
            None
        );
    }
}
