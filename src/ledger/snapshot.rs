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

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::error::LedgerError;
use super::fsutil::{ensure_dir, write_atomic};
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
    fn snapshot_path(&self, chain: &ChainId) -> PathBuf {
        self.root()
            .join("snapshots")
            .join(&chain.stream)
            .join(format!("{}.json", chain.partition))
    }

    /// Replaces the chain's snapshot.
    pub fn write_snapshot(&self, chain: &ChainId, snapshot: &Snapshot) -> Result<(), LedgerError> {
        let path = self.snapshot_path(chain);
        if let Some(dir) = path.parent() {
            ensure_dir(dir)?;
        }
        let bytes = serde_json::to_vec(snapshot)
            .map_err(|e| LedgerError::Internal(format!("snapshot: {e}")))?;
        write_atomic(&path, &bytes)
    }

    /// The chain's snapshot, if there is a readable one. A damaged file is
    /// reported (`Err`) so the caller can log it and rebuild instead.
    pub fn read_snapshot(&self, chain: &ChainId) -> Result<Option<Snapshot>, LedgerError> {
        let path = self.snapshot_path(chain);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LedgerError::io(&path, e)),
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
