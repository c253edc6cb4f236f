//! The ledger: a tamper-evident, append-only store of accepted events and
//! rejected messages, as Parquet segments under RFC 6962 Merkle trees and
//! signed checkpoints.
//!
//! Guarantees:
//! - **Durable before acknowledged.** [`ChainWriter::flush`] returns `Ok`
//!   only after every buffered row is in an fsynced Parquet file that an
//!   fsynced manifest line names. The caller commits Kafka offsets only
//!   after that; [`ChainWriter::last_offset`] tells it, after a restart,
//!   which redelivered messages are already stored.
//! - **Crash-safe.** A crash at any point leaves either the whole flush or
//!   none of it: reopening a chain ([`Store::chain_writer`]) truncates a torn
//!   manifest tail, drops an incomplete flush, deletes the segment files
//!   such a crash left behind and cuts the tree strata back to the
//!   manifest. It never deletes a file that a completed flush could have
//!   written; it refuses to open a chain whose damage a crash cannot
//!   explain.
//! - **Tamper-evident.** Each table of a chain is a log: an RFC 6962 Merkle
//!   tree over `H(0x00 ‖ record)` of its rows in seq order, H being BLAKE3
//!   or SHA-256 per store ([`merkle`]). Each manifest line carries the
//!   tree's root after its segment; the tree's interior hashes are kept as
//!   strata ([`tree`]) so proofs never reread segments; signed C2SP
//!   checkpoints ([`checkpoint`]) commit to (size, root) and are kept in
//!   the store and served. [`verify`] recomputes all of it from the rows.
//!   `docs/ledger-format.md` describes the format well enough to write an
//!   independent verifier.
//! - **One writer per chain.** A chain is locked (advisory file lock on its
//!   manifest) while a [`ChainWriter`] for it is alive.
//! - **No keys.** A rejected message is stored as the caller hands it
//!   ([`RejectBytes`]): the pipeline seals it first and says so in the
//!   record (`payload_sealed`); the ledger stores opaque bytes, binds them
//!   by BLAKE3 and length, and never holds a key. The pseudonym key's id
//!   reaches segment metadata through [`StoreOptions::pseudonym_key_id`].
//!
//! A chain is one Kafka partition of one topic (or `+file`/0 for file
//! ingest). It has two logs: the `events` table and the `rejects` table,
//! each with its own seq (= leaf index) starting at 0.
//!
//! This module is synchronous and does blocking I/O and CPU-heavy work
//! (hashing, Parquet encoding): async callers run it on a blocking thread.

pub mod checkpoint;
mod crypt;
pub use crypt::SegmentKey;
mod checkpoints;
pub use checkpoints::CheckpointLine;
mod error;
mod hash;
#[doc(hidden)]
pub mod hot;
mod manifest;
pub mod merkle;
pub mod proof;
mod prove;
pub use prove::{Located, ProveError, StoredCheckpoint};
mod readback;
pub use readback::StoredId;
mod record;
mod rejects;
pub use rejects::StoredReject;
mod segment;
mod snapshot;
pub mod storage;
pub use snapshot::{SNAPSHOT_VERSION, Snapshot, StateWriter, StoredSnapshot};
mod store;
pub mod tree;
mod verify;
mod writer;

use std::fmt;

pub use error::LedgerError;
pub use hash::{Hash, parse_hash};
pub use manifest::{Amended, ErasureNote, ManifestLine, Table};
pub use merkle::HashAlg;
pub use record::{
    IncidentColumns, QueryColumns, RejectBytes, event_record, incident_record, query_record,
    reject_record,
};
pub use segment::{
    events_schema, incidents_schema, query_log_schema, rejects_schema, schema_of as table_schema,
};
pub use store::{Store, StoreOptions, valid_origin};
pub use verify::{LogHead, Problem, VerifyOptions, VerifyReport, verify, verify_with};
pub use writer::{
    AmendStats, ChainWriter, Erasure, FlushStats, PreparedEvent, SealedFlush, StoredRow,
    WrittenFlush,
};

/// The stream name used for file ingest (always partition 0).
pub const FILE_STREAM: &str = "+file";

/// The stream of the alert stage's chains: `+incidents/<n>` holds the
/// `incidents` table, one chain per process of a group (`incidents.chain`).
pub const INCIDENTS_STREAM: &str = "+incidents";

/// The stream of the query surfaces' chains: `+queries/<n>` holds the
/// `query_log` table, one chain per process answering queries at a time.
pub const QUERIES_STREAM: &str = "+queries";

/// One Kafka partition of one topic, or [`FILE_STREAM`]/0 for file ingest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainId {
    pub stream: String,
    pub partition: i32,
}

impl ChainId {
    pub fn new(stream: impl Into<String>, partition: i32) -> Self {
        ChainId {
            stream: stream.into(),
            partition,
        }
    }

    /// The chain of file ingest.
    pub fn file() -> Self {
        ChainId::new(FILE_STREAM, 0)
    }

    /// Checks that the chain can name folders: a Kafka topic name (1–249
    /// characters of `A-Z a-z 0-9 . _ -`, not `.` or `..`) or `+file`, and a
    /// partition >= 0.
    pub fn validate(&self) -> Result<(), LedgerError> {
        let bad = |what: &str| LedgerError::InvalidChain {
            stream: self.stream.clone(),
            partition: self.partition,
            what: what.to_owned(),
        };
        if self.partition < 0 {
            return Err(bad("partition must be >= 0"));
        }
        if self.stream == FILE_STREAM {
            return if self.partition == 0 {
                Ok(())
            } else {
                Err(bad("file ingest uses partition 0 only"))
            };
        }
        if self.stream == INCIDENTS_STREAM || self.stream == QUERIES_STREAM {
            return Ok(());
        }
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.stream.is_empty() || self.stream.len() > 249 {
            return Err(bad("stream name must be 1 to 249 characters"));
        }
        if !self.stream.chars().all(valid_char) {
            return Err(bad("stream name may hold only A-Z a-z 0-9 . _ -"));
        }
        if self.stream == "." || self.stream == ".." {
            return Err(bad("stream name cannot be . or .."));
        }
        Ok(())
    }
}

impl fmt::Display for ChainId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.stream, self.partition)
    }
}

/// The name of one log (one table of one chain) in checkpoints:
/// `<store origin>/<table>/<stream>/<partition>`, where a `+` in the stream
/// (only `+file` has one) is written `%2B`, as C2SP recommends origins
/// without `+`.
pub fn log_origin(store_origin: &str, chain: &ChainId, table: Table) -> String {
    format!(
        "{store_origin}/{}/{}/{}",
        table.as_str(),
        chain.stream.replace('+', "%2B"),
        chain.partition
    )
}

/// Where a message came from. `file`/`line` only for file ingest.
#[derive(Clone, Debug, PartialEq)]
pub struct Origin {
    /// Kafka offset, or for file ingest the position the source assigns
    /// (strictly increasing within a chain either way).
    pub offset: i64,
    pub file: Option<String>,
    pub line: Option<u64>,
}

impl Origin {
    /// A Kafka message at `offset`.
    pub fn kafka(offset: i64) -> Self {
        Origin {
            offset,
            file: None,
            line: None,
        }
    }
}

#[cfg(test)]
mod tests;
