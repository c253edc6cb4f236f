//! State snapshots kept with a chain: opaque JSON that the chain's owner
//! writes after a flush and a later owner reads back (detector baselines,
//! so they survive restarts and partition moves).
//!
//! One file per chain, `snapshots/<stream>/<partition>.json`, replaced
//! atomically (temporary file, fsync, rename, fsync of the folder):
//!
//! ```json
//! {"v":1,"next_offset":1200,"events":1187,"written":"2026-11-28T19:00:00Z","state":{…}}
//! ```
//!
//! `next_offset` says which messages the state has seen: every message of
//! the chain before it, which the ledger then holds (a snapshot is written
//! only after the flush that made them durable). A snapshot is not
//! evidence and is not covered by the Merkle trees: at worst a damaged one
//! changes what detectors remember, never what the ledger proves; a
//! snapshot that does not parse, or that claims more than the ledger
//! holds, is ignored (and the state is rebuilt by replaying the ledger).

use serde::{Deserialize, Serialize};

use super::error::LedgerError;
use super::{ChainId, Store};

pub const SNAPSHOT_VERSION: u64 = 1;

/// A chain's state as of `next_offset`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub v: u64,
    /// The state has seen every message of the chain before this offset.
    pub next_offset: i64,
    /// Events in the chain's events table when it was written.
    pub events: u64,
    #[serde(with = "crate::event::rfc3339")]
    pub written: chrono::DateTime<chrono::Utc>,
    pub state: serde_json::Value,
}

impl Store {
    fn snapshot_rel(&self, chain: &ChainId) -> String {
        format!("snapshots/{}/{}.json", chain.stream, chain.partition)
    }

    /// Replaces the chain's snapshot.
    pub fn write_snapshot(&self, chain: &ChainId, snapshot: &Snapshot) -> Result<(), LedgerError> {
        let bytes = serde_json::to_vec(snapshot)
            .map_err(|e| LedgerError::Internal(format!("snapshot: {e}")))?;
        self.storage()
            .replace(&self.snapshot_rel(chain), bytes.into())
    }

    /// The chain's snapshot, if there is a readable one. A damaged file is
    /// reported (`Err`) so the caller can log it and rebuild instead.
    pub fn read_snapshot(&self, chain: &ChainId) -> Result<Option<Snapshot>, LedgerError> {
        let rel = self.snapshot_rel(chain);
        let path = self.storage().describe(&rel);
        let Some(bytes) = self.storage().read(&rel)? else {
            return Ok(None);
        };
        let snapshot: Snapshot = serde_json::from_slice(&bytes)
            .map_err(|e| LedgerError::corrupt(&path, format!("snapshot does not parse: {e}")))?;
        if snapshot.v != SNAPSHOT_VERSION {
            return Err(LedgerError::corrupt(
                &path,
                format!("snapshot version {} is not {SNAPSHOT_VERSION}", snapshot.v),
            ));
        }
        Ok(Some(snapshot))
    }
}
