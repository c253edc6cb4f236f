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
    /// No member written yet.
    first: bool,
}

impl Default for StateWriter {
    fn default() -> Self {
        StateWriter {
            out: vec![b'{'],
            first: true,
        }
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
        StateWriter { out, first: true }
    }

    /// Bytes written so far (with the opening brace).
    pub(crate) fn len(&self) -> usize {
        self.out.len()
    }

    fn key(&mut self, key: &str) {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
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

    /// A member whose value is an object that `members` writes, into the
    /// same buffer (no text of its own to copy).
    pub fn object(mut self, key: &str, members: impl FnOnce(StateWriter) -> StateWriter) -> Self {
        self.key(key);
        let mut out = std::mem::take(&mut self.out);
        out.push(b'{');
        self.out = members(StateWriter { out, first: true }).finish();
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

/// What a chain's snapshot says about its state: the state is as of
/// `next_offset`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub v: u64,
    /// The state has seen every message of the chain before this offset.
    pub next_offset: i64,
    /// Events in the chain's events table when it was written.
    pub events: u64,
    #[serde(with = "crate::event::rfc3339")]
    pub written: chrono::DateTime<chrono::Utc>,
}

/// A snapshot read back: what it says, and its state as the JSON text it
/// was written as (never parsed into a JSON tree here: its owner reads it
/// straight into its own types).
#[derive(Debug, Clone)]
pub struct StoredSnapshot {
    pub snapshot: Snapshot,
    text: bytes::Bytes,
    state: std::ops::Range<usize>,
}

impl StoredSnapshot {
    /// The state's JSON text.
    pub fn state(&self) -> &[u8] {
        &self.text[self.state.clone()]
    }
}

impl Store {
    fn snapshot_rel(&self, chain: &ChainId) -> String {
        format!("snapshots/{}/{}.json", chain.stream, chain.partition)
    }

    /// Replaces the chain's snapshot, its state given as JSON text (from a
    /// [`StateWriter`]).
    pub fn write_snapshot_text(
        &self,
        chain: &ChainId,
        snapshot: &Snapshot,
        state: &[u8],
    ) -> Result<(), LedgerError> {
        self.write_snapshot_with(chain, snapshot, state.len(), |w| w.raw("state", state))
    }

    /// Replaces the chain's snapshot, its state written by `state` (a
    /// `state` member) into the file's text, a buffer of about `hint`
    /// bytes: the whole state is never held as a text of its own.
    pub fn write_snapshot_with(
        &self,
        chain: &ChainId,
        snapshot: &Snapshot,
        hint: usize,
        state: impl FnOnce(StateWriter) -> StateWriter,
    ) -> Result<(), LedgerError> {
        let w = StateWriter::with_capacity(hint + 256)
            .field("v", &snapshot.v)
            .field("next_offset", &snapshot.next_offset)
            .field("events", &snapshot.events)
            .field(
                "written",
                &snapshot
                    .written
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            );
        let bytes = state(w).finish();
        self.storage()
            .replace(&self.snapshot_rel(chain), bytes.into())
    }

    /// The chain's snapshot, if there is a readable one. A damaged file is
    /// reported (`Err`) so the caller can log it and rebuild instead.
    pub fn read_snapshot(&self, chain: &ChainId) -> Result<Option<StoredSnapshot>, LedgerError> {
        let rel = self.snapshot_rel(chain);
        let path = self.storage().describe(&rel);
        let Some(bytes) = self.storage().read(&rel)? else {
            return Ok(None);
        };
        // (Not `flatten`: it would buffer the state as a tree.)
        #[derive(Deserialize)]
        struct Parsed<'a> {
            v: u64,
            next_offset: i64,
            events: u64,
            #[serde(with = "crate::event::rfc3339")]
            written: chrono::DateTime<chrono::Utc>,
            #[serde(borrow)]
            state: &'a serde_json::value::RawValue,
        }
        let parsed: Parsed<'_> = serde_json::from_slice(&bytes)
            .map_err(|e| LedgerError::corrupt(&path, format!("snapshot does not parse: {e}")))?;
        if parsed.v != SNAPSHOT_VERSION {
            return Err(LedgerError::corrupt(
                &path,
                format!("snapshot version {} is not {SNAPSHOT_VERSION}", parsed.v),
            ));
        }
        // The state's place in the text (the raw value borrows from it).
        let start = parsed.state.get().as_ptr() as usize - bytes.as_ptr() as usize;
        let state = start..start + parsed.state.get().len();
        Ok(Some(StoredSnapshot {
            snapshot: Snapshot {
                v: parsed.v,
                next_offset: parsed.next_offset,
                events: parsed.events,
                written: parsed.written,
            },
            text: bytes,
            state,
        }))
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
            .object("obj", |w| w.field("x", &1u8).raw("y", b"[]"))
            .object("empty", |w| w)
            .field("after", &true)
            .finish();
        let parsed: serde_json::Value = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "map": {"a": [1, 2], "b\"q": []},
                "inner": {"n": 3},
                "list": [{"n": 3}, []],
                "none": [],
                "obj": {"x": 1, "y": []},
                "empty": {},
                "after": true,
            })
        );
        assert_eq!(StateWriter::new().finish(), b"{}");
    }
}
