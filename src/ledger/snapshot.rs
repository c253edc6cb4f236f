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

/// A state's JSON text, written member by member straight from the state's
/// own types: no JSON tree in between (with a million actors in detector
/// state, the tree of one snapshot took gigabytes). Equal states write
/// equal bytes as long as their maps are written in key order.
#[derive(Debug)]
pub struct StateWriter {
    out: Vec<u8>,
}

impl Default for StateWriter {
    fn default() -> Self {
        StateWriter { out: vec![b'{'] }
    }
}

impl StateWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A writer whose buffer holds `bytes` before it grows: a text of a
    /// known size is then written without the slack of a growing buffer
    /// (up to as much again, which for a large state is hundreds of MB).
    pub fn with_capacity(bytes: usize) -> Self {
        let mut out = Vec::with_capacity(bytes.max(1));
        out.push(b'{');
        StateWriter { out }
    }

    fn key(&mut self, key: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A member; `key` is a plain identifier (nothing to escape).
    pub fn field(mut self, key: &str, value: &impl Serialize) -> Self {
        self.key(key);
        // Plain data (structs, sequences, maps keyed by strings) always
        // serializes.
        serde_json::to_writer(&mut self.out, value).expect("state is plain data");
        self
    }

    /// A member whose value is already JSON text (another state's).
    pub fn raw(mut self, key: &str, json: &[u8]) -> Self {
        self.key(key);
        self.out.extend_from_slice(json);
        self
    }

    /// A member whose value is an array of JSON texts.
    pub fn raw_array(mut self, key: &str, items: impl IntoIterator<Item = Vec<u8>>) -> Self {
        self.key(key);
        self.out.push(b'[');
        for (i, item) in items.into_iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(&item);
        }
        self.out.push(b']');
        self
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

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
        let state = serde_json::to_vec(&snapshot.state)
            .map_err(|e| LedgerError::Internal(format!("snapshot: {e}")))?;
        self.write_snapshot_text(chain, snapshot, &state)
    }

    /// Replaces the chain's snapshot, its state given as JSON text (from a
    /// [`StateWriter`]); `snapshot.state` is not used.
    pub fn write_snapshot_text(
        &self,
        chain: &ChainId,
        snapshot: &Snapshot,
        state: &[u8],
    ) -> Result<(), LedgerError> {
        let bytes = StateWriter::with_capacity(state.len() + 256)
            .field("v", &snapshot.v)
            .field("next_offset", &snapshot.next_offset)
            .field("events", &snapshot.events)
            .field(
                "written",
                &snapshot
                    .written
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            )
            .raw("state", state)
            .finish();
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

#[cfg(test)]
mod state_writer_tests {
    use super::StateWriter;

    #[test]
    fn writes_the_object_its_members_make() {
        let inner = StateWriter::new().field("n", &3u64).finish();
        let map: std::collections::BTreeMap<&str, Vec<u32>> =
            [("a", vec![1, 2]), ("b\"q", vec![])].into_iter().collect();
        let text = StateWriter::new()
            .field("map", &map)
            .raw("inner", &inner)
            .raw_array("list", [inner.clone(), b"[]".to_vec()])
            .raw_array("none", Vec::<Vec<u8>>::new())
            .finish();
        let parsed: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "map": {"a": [1, 2], "b\"q": []},
                "inner": {"n": 3},
                "list": [{"n": 3}, []],
                "none": [],
            })
        );
        assert_eq!(StateWriter::new().finish(), b"{}");
    }
}
