//! Checks of one segment file on its own: its digest, metadata and schema,
//! then every row's seq, offset and typed columns against its record, and
//! the leaf hash of every record. Whatever needs the rest of the log (the
//! tree, the chain of segments) is `verify`'s; segments are scanned in
//! parallel.

use std::borrow::Cow;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Component, Path};

use arrow::array::{Array, AsArray, RecordBatch, StringViewArray};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType, UInt64Type};

use super::view::{RecordView, parse_record};
use super::{MAX_ROW_PROBLEMS_PER_FILE, Problem};
use crate::ledger::crypt::SegmentKey;
use crate::ledger::hash::{Hash, parse_hash};
use crate::ledger::manifest::{ErasureNote, ManifestLine, Table};
use crate::ledger::merkle::HashAlg;
use crate::ledger::record::{
    ColumnsView, IncidentColumns, QueryColumns, SEAL_SCHEMES, blake3_hex, tombstone_record,
};
use crate::ledger::segment::{SegmentFile, SegmentReader, schema_of};
use crate::ledger::storage::Storage;
use crate::ledger::{ChainId, LedgerError};

/// What scanning one segment found.
#[derive(Default)]
pub(super) struct SegmentScan {
    /// Leaf hash of every row read, in order (row `i` claims seq
    /// `line.first_seq + i`; a row whose seq is not that is a problem).
    pub leaves: Vec<Hash>,
    /// Offsets of the rows read.
    pub offsets: Vec<i64>,
    /// File and row problems, rows in order.
    pub problems: Vec<Problem>,
    /// Where the file and its manifest line disagree on a fact that either
    /// side may have lost (`verify` decides which to blame, from the tree).
    pub disagreements: Vec<Disagreement>,
    /// The events' ids, to name them in problems.
    pub ids: EventIds,
    /// Rows that are tombstones of erased rows.
    pub erased: u64,
    /// Row problems found beyond the listing cap.
    row_problems: usize,
    /// The reader failed part-way (reported): later rows are unknown.
    unreadable: bool,
}

impl SegmentScan {
    fn file(&mut self, line: &ManifestLine, what: impl Into<String>) {
        self.problems.push(Problem::file(&line.file, what));
    }

    fn row(&mut self, line: &ManifestLine, row: u64, seq: u64, what: impl Into<String>) {
        self.row_problems += 1;
        if self.row_problems <= MAX_ROW_PROBLEMS_PER_FILE {
            self.problems.push(Problem {
                file: line.file.clone(),
                row: Some(row),
                seq: Some(seq),
                event_id: self.ids.id(row),
                what: what.into(),
            });
        }
    }
}

/// The `id` column of an `events` segment as read, batch by batch, to name
/// the event a problem is about.
#[derive(Default)]
pub(super) struct EventIds {
    /// (first row of the batch, its ids)
    batches: Vec<(u64, StringViewArray)>,
}

impl EventIds {
    /// The stored id of a row, if the row was read and has one (a
    /// tombstone's is empty).
    pub fn id(&self, row: u64) -> Option<String> {
        let at = self.batches.partition_point(|(first, _)| *first <= row);
        let (first, ids) = self.batches.get(at.checked_sub(1)?)?;
        let i = usize::try_from(row - first).ok()?;
        let id = (i < ids.len() && ids.is_valid(i)).then(|| ids.value(i))?;
        (!id.is_empty()).then(|| id.to_owned())
    }
}

/// A fact of the manifest line that the segment file does not bear out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Disagreement {
    /// The file's BLAKE3 or length (either may have changed).
    Digest,
    /// The rows' first/last offsets or time span.
    Span,
    /// The file ends before the line's row count (it holds `read` rows).
    Short { read: u64 },
}

/// Scans one segment: everything that can be checked from the file and its
/// manifest line alone.
pub(super) fn scan_segment(
    storage: &dyn Storage,
    chain: &ChainId,
    line: &ManifestLine,
    alg: HashAlg,
    key: Option<&SegmentKey>,
) -> SegmentScan {
    let mut scan = SegmentScan::default();
    let rel = Path::new(&line.file);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        scan.file(line, "the manifest names a path outside the store");
        return scan;
    }
    if line.is_pruned() {
        // Its rows are gone by design: the tree's leaves stand for them.
        if matches!(storage.len(&line.file), Ok(Some(_))) {
            scan.file(
                line,
                "the segment was pruned but its file is still there (a crash before its deletion; opening the chain for writing deletes it)",
            );
        }
        return scan;
    }
    let file = match storage.read(&line.file) {
        Ok(None) => {
            scan.file(line, "file is missing");
            return scan;
        }
        Err(e) => {
            scan.file(line, format!("cannot read: {e}"));
            return scan;
        }
        Ok(Some(bytes)) => SegmentFile {
            path: storage.describe(&line.file),
            bytes,
        },
    };
    let (digest, bytes) = (
        hex::encode(blake3::hash(&file.bytes).as_bytes()),
        file.bytes.len() as u64,
    );
    if bytes != line.bytes {
        scan.file(
            line,
            format!("file is {bytes} bytes; the manifest says {}", line.bytes),
        );
    }
    if digest != line.file_blake3 {
        scan.file(line, "file BLAKE3 does not match the manifest");
    }
    if bytes != line.bytes || digest != line.file_blake3 {
        scan.disagreements.push(Disagreement::Digest);
    }
    let mut times = Vec::new();
    // The Parquet and Arrow readers can panic on malformed input (a
    // tampered file is exactly that), so a panic is a finding, not a crash.
    let read = panic::catch_unwind(AssertUnwindSafe(|| {
        read_rows(&file, chain, line, alg, key, &mut scan, &mut times)
    }));
    let read_rows = scan.leaves.len() as u64;
    match read {
        Ok(true) => {}
        Ok(false) => return scan,
        Err(panic) => {
            let why = panic_text(panic.as_ref());
            if read_rows == 0 {
                scan.file(
                    line,
                    format!("cannot read as Parquet: the reader failed ({why})"),
                );
                return scan;
            }
            scan.file(
                line,
                format!("cannot read rows after row {read_rows}: the reader failed ({why})"),
            );
            scan.unreadable = true;
        }
    }

    let erased_before = line.amended.erased_rows;
    if scan.erased != erased_before && !scan.unreadable {
        scan.file(
            line,
            format!(
                "file holds {} erased rows; the manifest's amendments say {erased_before}",
                scan.erased
            ),
        );
    }
    if scan.row_problems > MAX_ROW_PROBLEMS_PER_FILE {
        let more = scan.row_problems - MAX_ROW_PROBLEMS_PER_FILE;
        scan.file(line, format!("{more} more row problems not listed"));
    }
    if read_rows < line.rows && !scan.unreadable {
        // Blamed once the rows are checked against the line's root.
        scan.disagreements
            .push(Disagreement::Short { read: read_rows });
    } else if read_rows > line.rows {
        scan.file(
            line,
            format!("file has {read_rows} rows; the manifest says {}", line.rows),
        );
    }
    let ends = (scan.offsets.first().copied(), scan.offsets.last().copied());
    if !scan.offsets.is_empty() && ends != (Some(line.first_offset), Some(line.last_offset)) {
        scan.disagreements.push(Disagreement::Span);
    }
    if line.table == Table::Events {
        let span = (times.iter().min().copied(), times.iter().max().copied());
        if !times.is_empty() && span != (line.min_time_us, line.max_time_us) {
            scan.disagreements.push(Disagreement::Span);
        }
    }
    scan
}

fn read_rows(
    file: &SegmentFile,
    chain: &ChainId,
    line: &ManifestLine,
    alg: HashAlg,
    key: Option<&SegmentKey>,
    scan: &mut SegmentScan,
    times: &mut Vec<i64>,
) -> bool {
    if line.key_id.is_some() != file.is_encrypted() {
        scan.file(
            line,
            match &line.key_id {
                Some(id) => {
                    format!("the manifest says the file is encrypted (key {id}); it is not")
                }
                None => "the file is encrypted; the manifest says it is not".to_owned(),
            },
        );
    }
    let segment = match SegmentReader::open_views(file, key) {
        Ok(segment) => segment,
        Err(e @ LedgerError::KeyNeeded { .. }) => {
            // Not damage: the rows cannot be checked without the key.
            scan.file(line, format!("rows not checked: {e}"));
            scan.unreadable = true;
            return false;
        }
        Err(e) => {
            let cause = match e {
                LedgerError::Parquet { source, .. } => source.to_string(),
                LedgerError::Io { source, .. } => source.to_string(),
                other => other.to_string(),
            };
            scan.file(line, format!("cannot read as Parquet: {cause}"));
            return false;
        }
    };
    let partition = chain.partition.to_string();
    let first_seq = line.first_seq.to_string();
    for (key, want) in [
        ("custos.table", line.table.as_str()),
        ("custos.stream", chain.stream.as_str()),
        ("custos.partition", partition.as_str()),
        ("custos.first_seq", first_seq.as_str()),
    ] {
        if segment.meta(key) != Some(want) {
            scan.file(
                line,
                format!(
                    "metadata {key} is {:?}, expected {want:?}",
                    segment.meta(key)
                ),
            );
        }
    }
    let expected = schema_of(line.table);
    if segment.schema.fields() != expected.fields() {
        scan.file(
            line,
            format!("columns do not match the {} schema", line.table.as_str()),
        );
        return false;
    }

    for batch in segment.reader {
        match batch {
            Ok(batch) => check_batch(&batch, chain, line, alg, scan, times),
            Err(e) => {
                scan.file(
                    line,
                    format!("cannot read rows after row {}: {e}", scan.leaves.len()),
                );
                scan.unreadable = true;
                break;
            }
        }
    }
    true
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("panic")
}

fn check_batch(
    batch: &RecordBatch,
    chain: &ChainId,
    line: &ManifestLine,
    alg: HashAlg,
    scan: &mut SegmentScan,
    times: &mut Vec<i64>,
) {
    // The schema was checked to be exactly the table's, so the column
    // types below are known.
    let col = |name: &str| batch.column_by_name(name).expect("schema checked");
    let seqs = col("seq").as_primitive::<UInt64Type>();
    let streams = col("stream").as_string_view();
    let partitions = col("partition").as_primitive::<Int32Type>();
    let offsets = col("offset").as_primitive::<Int64Type>();
    let records = col("record").as_string_view();
    let typed = match line.table {
        Table::Events => Typed::Events(EventCols::of(batch)),
        Table::Rejects => Typed::Rejects(RejectCols::of(batch)),
        Table::Incidents => Typed::Incidents(IncidentCols::of(batch)),
        Table::QueryLog => Typed::Queries(QueryCols::of(batch)),
    };
    if let Typed::Events(cols) = &typed {
        let first = scan.leaves.len() as u64;
        scan.ids.batches.push((first, cols.id.clone()));
    }

    let mut problems = Vec::new();
    for i in 0..batch.num_rows() {
        let row = scan.leaves.len() as u64;
        let (seq, offset) = (seqs.value(i), offsets.value(i));
        let mut bad = |what: String| problems.push(what);
        let expected_seq = line.first_seq + row;
        if seq != expected_seq {
            bad(format!("seq is {seq}, expected {expected_seq}"));
        }
        let record = records.value(i);
        if streams.value(i) != chain.stream || partitions.value(i) != chain.partition {
            bad("stream/partition columns are not the chain's".into());
        }
        if scan.offsets.last().is_some_and(|&last| offset <= last) {
            bad(format!("offset {offset} is not above the previous row's"));
        }
        let mut leaf = None;
        match parse_record(record) {
            Err(what) => bad(what),
            Ok((view, src)) => {
                if src.stream != chain.stream || src.partition != i64::from(chain.partition) {
                    bad("the record's src is another chain".into());
                }
                if src.offset != offset {
                    bad("column offset disagrees with the record".into());
                }
                if let Some(erased) = &view.erased {
                    // A tombstone: the row's content is gone, its leaf hash
                    // stands for it.
                    scan.erased += 1;
                    leaf = parse_hash(erased);
                    if leaf.is_none() {
                        bad("tombstone's `erased` is not a 64-digit hex hash".into());
                    }
                    if let Typed::Events(cols) = &typed {
                        times.push(cols.time.value(i));
                    }
                    let erasures = &line.amended.erasures;
                    check_tombstone(&typed, i, record, leaf, erasures, &mut bad);
                } else {
                    match &typed {
                        Typed::Events(cols) => {
                            times.push(cols.time.value(i));
                            check_event_columns(cols, i, &view, &mut bad);
                        }
                        Typed::Rejects(cols) => check_reject_columns(cols, i, &view, &mut bad),
                        Typed::Incidents(cols) => check_incident_columns(cols, i, record, &mut bad),
                        Typed::Queries(cols) => check_query_columns(cols, i, record, &mut bad),
                    }
                }
            }
        }
        for what in problems.drain(..) {
            scan.row(line, row, seq, what);
        }
        scan.leaves
            .push(leaf.unwrap_or_else(|| alg.leaf(record.as_bytes())));
        scan.offsets.push(offset);
    }
}

/// A tombstone holds nothing of the row but its coordinates (and, for
/// events, its time): its record is exactly the canonical tombstone of its
/// `erased`, `erasure.reason`, `erasure.time` and `src` (no other member:
/// its bytes are covered by no hash), its `erasure` is the `reason` and
/// `time` of one of the erase amendments of its segment, and its columns
/// are emptied.
fn check_tombstone(
    typed: &Typed<'_>,
    i: usize,
    record: &str,
    leaf: Option<Hash>,
    erasures: &[ErasureNote],
    bad: &mut impl FnMut(String),
) {
    let note = |v: &serde_json::Value, key: &str| v["erasure"][key].as_str().map(str::to_owned);
    let erasure = serde_json::from_str::<serde_json::Value>(record)
        .ok()
        .and_then(|v| {
            Some(ErasureNote {
                reason: note(&v, "reason")?,
                time: note(&v, "time")?,
            })
        });
    let canonical = leaf
        .zip(erasure.as_ref())
        .and_then(|(leaf, e)| tombstone_record(&leaf, &e.reason, &e.time, record).ok());
    if canonical.as_deref() != Some(record) {
        bad("a tombstone must be exactly `{\"erased\":…,\"erasure\":{\"reason\":…,\"time\":…},\"src\":…,\"v\":1}` in canonical form (it holds other members or is not canonical)".into());
    }
    let emptied = match typed {
        Typed::Events(c) => {
            c.id.value(i).is_empty()
                && c.kind.value(i) == "erased"
                && c.actor_id.value(i).is_empty()
                && [
                    c.actor_role,
                    c.actor_dept,
                    c.patient,
                    c.action,
                    c.purpose,
                    c.outcome,
                    c.model,
                ]
                .iter()
                .all(|a| a.is_null(i))
                && c.records.is_null(i)
        }
        Typed::Rejects(c) => {
            c.reason.value(i) == "erased"
                && c.detail.value(i).is_empty()
                && c.payload.value(i).is_empty()
                && c.key.is_null(i)
        }
        Typed::Queries(_) => {
            return bad("the query log is never erased, yet this row is a tombstone".into());
        }
        Typed::Incidents(_) => {
            return bad("incident revisions are never erased, yet this row is a tombstone".into());
        }
    };
    if !emptied {
        bad("an erased row's columns still hold values".into());
    }
    if let Some(erasure) = erasure
        && !erasures.contains(&erasure)
    {
        bad(format!(
            "the tombstone's erasure (reason {:?}, time {:?}) is not the reason and time of an erase amendment of this segment",
            erasure.reason, erasure.time
        ));
    }
}

/// The typed columns of a batch, looked up once.
enum Typed<'a> {
    Events(EventCols<'a>),
    Rejects(RejectCols<'a>),
    Incidents(IncidentCols<'a>),
    Queries(QueryCols<'a>),
}

struct EventCols<'a> {
    id: &'a StringViewArray,
    time: &'a arrow::array::TimestampMicrosecondArray,
    kind: &'a StringViewArray,
    actor_id: &'a StringViewArray,
    actor_role: &'a StringViewArray,
    actor_dept: &'a StringViewArray,
    patient: &'a StringViewArray,
    action: &'a StringViewArray,
    purpose: &'a StringViewArray,
    outcome: &'a StringViewArray,
    records: &'a arrow::array::Int64Array,
    model: &'a StringViewArray,
}

impl<'a> EventCols<'a> {
    fn of(batch: &'a RecordBatch) -> Self {
        let s = |name: &str| -> &'a StringViewArray {
            batch
                .column_by_name(name)
                .expect("schema checked")
                .as_string_view()
        };
        EventCols {
            id: s("id"),
            time: batch
                .column_by_name("time")
                .expect("schema checked")
                .as_primitive::<TimestampMicrosecondType>(),
            kind: s("kind"),
            actor_id: s("actor_id"),
            actor_role: s("actor_role"),
            actor_dept: s("actor_dept"),
            patient: s("patient"),
            action: s("action"),
            purpose: s("purpose"),
            outcome: s("outcome"),
            records: batch
                .column_by_name("records")
                .expect("schema checked")
                .as_primitive::<Int64Type>(),
            model: s("model"),
        }
    }
}

fn opt_str(a: &StringViewArray, i: usize) -> Option<&str> {
    a.is_valid(i).then(|| a.value(i))
}

fn check_event_columns(
    cols: &EventCols<'_>,
    i: usize,
    record: &RecordView<'_>,
    bad: &mut impl FnMut(String),
) {
    let stored = ColumnsView {
        id: cols.id.value(i),
        time_us: cols.time.value(i),
        kind: cols.kind.value(i),
        actor_id: cols.actor_id.value(i),
        actor_role: opt_str(cols.actor_role, i),
        actor_dept: opt_str(cols.actor_dept, i),
        patient: opt_str(cols.patient, i),
        action: opt_str(cols.action, i),
        purpose: opt_str(cols.purpose, i),
        outcome: opt_str(cols.outcome, i),
        records: cols.records.is_valid(i).then(|| cols.records.value(i)),
        model: opt_str(cols.model, i).map(Cow::Borrowed),
    };
    let Some(event) = &record.event else {
        bad("record lacks `event`".into());
        return;
    };
    let derived = match event.columns() {
        Ok(derived) => derived,
        Err(what) => return bad(what),
    };
    if stored == derived {
        return;
    }
    for name in stored.differing(&derived) {
        bad(format!("column {name} disagrees with the record"));
    }
}

struct RejectCols<'a> {
    reason: &'a StringViewArray,
    detail: &'a StringViewArray,
    payload: &'a arrow::array::BinaryViewArray,
    key: &'a arrow::array::BinaryViewArray,
}

impl<'a> RejectCols<'a> {
    fn of(batch: &'a RecordBatch) -> Self {
        let col = |name: &str| batch.column_by_name(name).expect("schema checked");
        RejectCols {
            reason: col("reason").as_string_view(),
            detail: col("detail").as_string_view(),
            payload: col("payload").as_binary_view(),
            key: col("key").as_binary_view(),
        }
    }
}

struct IncidentCols<'a> {
    id: &'a StringViewArray,
    revision: &'a arrow::array::UInt64Array,
    state: &'a StringViewArray,
    severity: &'a StringViewArray,
    actor: &'a StringViewArray,
    patient: &'a StringViewArray,
    detector: &'a StringViewArray,
    raised_at: &'a arrow::array::TimestampMicrosecondArray,
}

impl<'a> IncidentCols<'a> {
    fn of(batch: &'a RecordBatch) -> Self {
        let col = |name: &str| batch.column_by_name(name).expect("schema checked");
        IncidentCols {
            id: col("id").as_string_view(),
            revision: col("revision").as_primitive::<UInt64Type>(),
            state: col("state").as_string_view(),
            severity: col("severity").as_string_view(),
            actor: col("actor").as_string_view(),
            patient: col("patient").as_string_view(),
            detector: col("detector").as_string_view(),
            raised_at: col("raised_at").as_primitive::<TimestampMicrosecondType>(),
        }
    }
}

/// An incident row's columns are exactly those its record's `incident`
/// gives ([`IncidentColumns::of`]).
fn check_incident_columns(
    cols: &IncidentCols<'_>,
    i: usize,
    record: &str,
    bad: &mut impl FnMut(String),
) {
    let parsed: serde_json::Value = match serde_json::from_str(record) {
        Ok(v) => v,
        Err(e) => return bad(format!("record does not parse: {e}")),
    };
    let derived = match IncidentColumns::of(&parsed["incident"]) {
        Ok(d) => d,
        Err(what) => return bad(what),
    };
    let stored = IncidentColumns {
        id: cols.id.value(i).to_owned(),
        revision: cols.revision.value(i),
        state: cols.state.value(i).to_owned(),
        severity: cols.severity.value(i).to_owned(),
        actor: cols.actor.value(i).to_owned(),
        patient: opt_str(cols.patient, i).map(str::to_owned),
        detector: cols.detector.value(i).to_owned(),
        raised_at_us: cols.raised_at.value(i),
    };
    if stored != derived {
        bad("incident columns disagree with the record".into());
    }
}

struct QueryCols<'a> {
    at: &'a arrow::array::TimestampMicrosecondArray,
    who: &'a StringViewArray,
    role: &'a StringViewArray,
    surface: &'a StringViewArray,
    sql: &'a StringViewArray,
    rows: &'a arrow::array::UInt64Array,
    outcome: &'a StringViewArray,
    error: &'a StringViewArray,
    elapsed_ms: &'a arrow::array::UInt64Array,
}

impl<'a> QueryCols<'a> {
    fn of(batch: &'a RecordBatch) -> Self {
        let col = |name: &str| batch.column_by_name(name).expect("schema checked");
        QueryCols {
            at: col("at").as_primitive::<TimestampMicrosecondType>(),
            who: col("who").as_string_view(),
            role: col("role").as_string_view(),
            surface: col("surface").as_string_view(),
            sql: col("sql").as_string_view(),
            rows: col("rows").as_primitive::<UInt64Type>(),
            outcome: col("outcome").as_string_view(),
            error: col("error").as_string_view(),
            elapsed_ms: col("elapsed_ms").as_primitive::<UInt64Type>(),
        }
    }
}

/// A query log row's columns are exactly those its record's `query` gives
/// ([`QueryColumns::of`]).
fn check_query_columns(cols: &QueryCols<'_>, i: usize, record: &str, bad: &mut impl FnMut(String)) {
    let parsed: serde_json::Value = match serde_json::from_str(record) {
        Ok(v) => v,
        Err(e) => return bad(format!("record does not parse: {e}")),
    };
    let derived = match QueryColumns::of(&parsed["query"]) {
        Ok(d) => d,
        Err(what) => return bad(what),
    };
    let owned = |a: &StringViewArray| opt_str(a, i).map(str::to_owned);
    let stored = QueryColumns {
        at_us: cols.at.value(i),
        who: cols.who.value(i).to_owned(),
        role: owned(cols.role),
        surface: cols.surface.value(i).to_owned(),
        sql: cols.sql.value(i).to_owned(),
        rows: cols.rows.is_valid(i).then(|| cols.rows.value(i)),
        outcome: cols.outcome.value(i).to_owned(),
        error: owned(cols.error),
        elapsed_ms: cols.elapsed_ms.value(i),
    };
    if stored != derived {
        bad("query log columns disagree with the record".into());
    }
}

fn check_reject_columns(
    cols: &RejectCols<'_>,
    i: usize,
    record: &RecordView<'_>,
    bad: &mut impl FnMut(String),
) {
    let (Some(reason), Some(detail), Some(payload_blake3), Some(payload_len)) = (
        &record.reason,
        &record.detail,
        &record.payload_blake3,
        record.payload_len,
    ) else {
        return bad("record lacks one of reason, detail, payload_blake3, payload_len".into());
    };
    if cols.reason.value(i) != reason {
        bad("column reason disagrees with the record".into());
    }
    if cols.detail.value(i) != detail {
        bad("column detail disagrees with the record".into());
    }
    let payload = cols.payload.value(i);
    if payload.len() as u64 != payload_len || blake3_hex(payload) != *payload_blake3 {
        bad("column payload disagrees with the record's payload_blake3/payload_len".into());
    }
    let key = cols.key.is_valid(i).then(|| cols.key.value(i));
    let key_facts = key.map(|k| (blake3_hex(k), k.len() as u64));
    let record_facts = match (&record.key_blake3, record.key_len) {
        (Some(h), Some(n)) => Some((h.to_string(), n)),
        (None, None) => None,
        _ => return bad("record has only one of key_blake3/key_len".into()),
    };
    if key_facts != record_facts {
        bad("column key disagrees with the record's key_blake3/key_len".into());
    }
    check_sealing(record, payload_len, bad);
}

/// `payload_sealed` and `key_sealed`: absent (bytes as received), or both
/// the same `<scheme>:<key id>` of a scheme the format knows, the key's
/// only when there is a key, and each sealed length at least what the
/// scheme adds. Opening the bytes needs the key; verify does not.
fn check_sealing(record: &RecordView<'_>, payload_len: u64, bad: &mut impl FnMut(String)) {
    let Some(label) = &record.payload_sealed else {
        if record.key_sealed.is_some() {
            bad("record has key_sealed but no payload_sealed".into());
        }
        return;
    };
    let min = label
        .split_once(':')
        .filter(|(_, id)| !id.is_empty())
        .and_then(|(scheme, _)| SEAL_SCHEMES.iter().find(|(s, _)| *s == scheme))
        .map(|&(_, min)| min);
    let Some(min) = min else {
        return bad("record payload_sealed names no known sealing scheme".into());
    };
    if payload_len < min {
        bad(format!(
            "record payload_sealed, but payload_len {payload_len} is less than sealing adds ({min})"
        ));
    }
    match (record.key_len, &record.key_sealed) {
        (None, None) => {}
        (None, Some(_)) => bad("record has key_sealed but no key".into()),
        (Some(_), None) => bad("record seals the payload but not the key".into()),
        (Some(key_len), Some(key_label)) => {
            if key_label != label {
                bad("record key_sealed differs from payload_sealed".into());
            }
            if key_len < min {
                bad(format!(
                    "record key_sealed, but key_len {key_len} is less than sealing adds ({min})"
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(record: &str) -> Vec<String> {
        let (view, _) = parse_record(record).unwrap();
        let mut found = Vec::new();
        let len = view.payload_len.unwrap_or(0);
        check_sealing(&view, len, &mut |what| found.push(what));
        found
    }

    fn record(members: &str) -> String {
        format!(r#"{{{members}"src":{{"offset":1,"partition":0,"stream":"t"}},"v":1}}"#)
    }

    #[test]
    fn sealing_members_are_checked() {
        let label = r#""xchacha20poly1305:rk1-0a1b2c3d""#;
        let ok = [
            record(r#""payload_len":3,"#),
            record(r#""key_len":1,"payload_len":3,"#),
            record(&format!(r#""payload_len":40,"payload_sealed":{label},"#)),
            record(&format!(
                r#""key_len":41,"key_sealed":{label},"payload_len":90,"payload_sealed":{label},"#
            )),
        ];
        for r in ok {
            assert_eq!(problems(&r), Vec::<String>::new(), "{r}");
        }
        let bad = [
            (
                record(&format!(r#""payload_len":39,"payload_sealed":{label},"#)),
                "less than sealing adds",
            ),
            (
                record(r#""payload_len":90,"payload_sealed":"aes:rk1-0a1b2c3d","#),
                "no known sealing scheme",
            ),
            (
                record(r#""payload_len":90,"payload_sealed":"xchacha20poly1305:","#),
                "no known sealing scheme",
            ),
            (
                record(&format!(
                    r#""key_len":41,"payload_len":90,"payload_sealed":{label},"#
                )),
                "not the key",
            ),
            (
                record(&format!(r#""key_sealed":{label},"payload_len":90,"#)),
                "no payload_sealed",
            ),
            (
                record(&format!(
                    r#""key_sealed":{label},"payload_len":90,"payload_sealed":{label},"#
                )),
                "no key",
            ),
            (
                record(&format!(
                    r#""key_len":41,"key_sealed":"xchacha20poly1305:rk1-ffffffff","payload_len":90,"payload_sealed":{label},"#
                )),
                "differs",
            ),
            (
                record(&format!(
                    r#""key_len":3,"key_sealed":{label},"payload_len":90,"payload_sealed":{label},"#
                )),
                "key_len 3",
            ),
        ];
        for (r, want) in bad {
            let found = problems(&r);
            assert!(found.iter().any(|p| p.contains(want)), "{r}: {found:?}");
        }
    }
}
