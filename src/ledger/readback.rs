//! Reading a chain's stored rows back, for the state a chain's owner
//! rebuilds from the ledger when it opens the chain: the event-id
//! deduplication window, detector replay, and the incident revisions the
//! outbox lacks after a crash. Only what the manifest lists
//! is read (a chain is opened, and so repaired, before this runs).

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int64Type, TimestampMicrosecondType};

use super::error::LedgerError;
use super::manifest::{ManifestLine, Table};
use super::record::is_tombstone;
use super::segment::read_columns;
use super::{ChainId, Store};

/// One stored event's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredId {
    pub id: String,
    pub time_us: i64,
    pub offset: i64,
}

impl Store {
    /// The newest event time of a chain, and the ids of its last `max`
    /// stored events (by seq), oldest first.
    pub fn recent_event_ids(
        &self,
        chain: &ChainId,
        max: usize,
    ) -> Result<(Option<i64>, Vec<StoredId>), LedgerError> {
        let lines: Vec<ManifestLine> = self
            .manifest(chain)?
            .into_iter()
            .filter(|l| l.table == Table::Events && !l.is_pruned())
            .collect();
        let newest = lines.iter().filter_map(|l| l.max_time_us).max();
        let mut per_segment = Vec::new();
        let mut held = 0usize;
        for line in lines.iter().rev() {
            if held >= max {
                break;
            }
            let file = self.segment(&line.file)?;
            let path = &file.path;
            let mut ids = Vec::with_capacity(line.rows as usize);
            for batch in read_columns(&file, &["id", "time", "offset"], None, self.key())? {
                let (id, time, offset) = columns(path, &batch)?;
                for i in (0..batch.num_rows()).filter(|&i| !id.value(i).is_empty()) {
                    // (An erased row's id is empty.)
                    ids.push(StoredId {
                        id: id.value(i).to_owned(),
                        time_us: time.value(i),
                        offset: offset.value(i),
                    });
                }
            }
            held += ids.len();
            per_segment.push(ids);
        }
        let mut all: Vec<StoredId> = per_segment.into_iter().rev().flatten().collect();
        let excess = all.len().saturating_sub(max);
        all.drain(..excess);
        Ok((newest, all))
    }

    /// The offset from which the chain's newest `count` events (or a few
    /// more: whole segments) are stored; 0 when it holds fewer.
    pub fn offset_of_newest_events(&self, chain: &ChainId, count: u64) -> Result<i64, LedgerError> {
        let mut held = 0;
        for line in self.manifest(chain)?.iter().rev() {
            if line.table != Table::Events || line.is_pruned() {
                continue;
            }
            held += line.rows;
            if held >= count {
                return Ok(line.first_offset);
            }
        }
        Ok(0)
    }

    /// Calls `each(offset, record)` for every stored event of the chain at
    /// `from_offset` or later, in seq order, except erased and pruned ones;
    /// returns how many.
    pub fn replay_events(
        &self,
        chain: &ChainId,
        from_offset: i64,
        each: impl FnMut(i64, &str),
    ) -> Result<u64, LedgerError> {
        self.replay(chain, Table::Events, from_offset, each)
    }

    /// [`Self::replay_events`] for any table of the chain.
    pub fn replay(
        &self,
        chain: &ChainId,
        table: Table,
        from_offset: i64,
        mut each: impl FnMut(i64, &str),
    ) -> Result<u64, LedgerError> {
        let mut n = 0;
        for line in self.manifest(chain)? {
            if line.table != table || line.last_offset < from_offset || line.is_pruned() {
                continue;
            }
            let file = self.segment(&line.file)?;
            let path = &file.path;
            for batch in read_columns(&file, &["offset", "record"], None, self.key())? {
                let (Some(offsets), Some(records)) = (
                    batch.column_by_name("offset"),
                    batch.column_by_name("record"),
                ) else {
                    return Err(LedgerError::corrupt(path, "no offset or record column"));
                };
                let offsets = offsets.as_primitive::<Int64Type>();
                let records = records.as_string::<i32>();
                for i in 0..batch.num_rows() {
                    if offsets.value(i) >= from_offset && !is_tombstone(records.value(i)) {
                        each(offsets.value(i), records.value(i));
                        n += 1;
                    }
                }
            }
        }
        Ok(n)
    }
}

type IdColumns<'a> = (
    &'a arrow::array::StringArray,
    &'a arrow::array::PrimitiveArray<TimestampMicrosecondType>,
    &'a arrow::array::PrimitiveArray<Int64Type>,
);

fn columns<'a>(
    path: &std::path::Path,
    batch: &'a RecordBatch,
) -> Result<IdColumns<'a>, LedgerError> {
    match (
        batch.column_by_name("id"),
        batch.column_by_name("time"),
        batch.column_by_name("offset"),
    ) {
        (Some(id), Some(time), Some(offset)) => Ok((
            id.as_string::<i32>(),
            time.as_primitive::<TimestampMicrosecondType>(),
            offset.as_primitive::<Int64Type>(),
        )),
        _ => Err(LedgerError::corrupt(path, "no id, time or offset column")),
    }
}
