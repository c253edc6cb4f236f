//! The writer's hot paths one at a time, for the micro-benchmarks
//! (`benches/hot_paths.rs`): building a record and its columns, Arrow
//! batches of buffered rows, Parquet encoding of a segment. Not an API:
//! nothing here is used by custos itself.

use arrow::array::RecordBatch;
use bytes::Bytes;

use super::error::LedgerError;
use super::hash::Hash;
use super::manifest::Table;
use super::record::{EventColumns, event_record};
use super::segment::{EventRow, encode_segment, event_batch, schema_of, segment_metadata};
use super::{ChainId, Origin, StoreOptions};
use crate::event::Event;

/// Buffered `events` rows, as a writer holds them before a flush.
pub struct EventRows(Vec<EventRow>);

impl EventRows {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// What `ChainWriter::push_event` does for each event, minus the leaf
/// hash: the record bytes and the typed columns.
pub fn event_rows(chain: &ChainId, events: &[Event]) -> EventRows {
    EventRows(
        events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let origin = Origin {
                    offset: i as i64,
                    file: None,
                    line: None,
                };
                let record = event_record(chain, &origin, event);
                EventRow {
                    seq: i as u64,
                    offset: i as i64,
                    cols: EventColumns::from_event(event),
                    record: String::from_utf8(record).expect("canonical JSON is UTF-8"),
                }
            })
            .collect(),
    )
}

/// The Arrow batches a flush builds of `rows` (row groups of
/// `opts.row_group_rows`).
pub fn event_batches(
    chain: &ChainId,
    rows: &EventRows,
    opts: &StoreOptions,
) -> Result<Vec<RecordBatch>, LedgerError> {
    rows.0
        .chunks(opts.row_group_rows.max(1))
        .map(|c| event_batch(chain, c))
        .collect()
}

/// The segment file a flush writes of `batches`, in memory, and its
/// BLAKE3.
pub fn encode_events(
    chain: &ChainId,
    batches: Vec<RecordBatch>,
    opts: &StoreOptions,
) -> Result<(Bytes, Hash), LedgerError> {
    let metadata = segment_metadata(Table::Events, chain, 0, None);
    encode_segment(
        std::path::Path::new("bench.parquet"),
        schema_of(Table::Events),
        batches.into_iter().map(Ok),
        metadata,
        opts,
    )
}
