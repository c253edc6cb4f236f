//! Proof documents: the JSON custos hands to an auditor to show that a
//! record is in a log (inclusion) or that a later tree extends an earlier
//! one (consistency), and [`check`], which verifies such a document offline
//! with nothing but the document and the log's verifier key.
//!
//! ```json
//! {"kind":"inclusion","version":1,"hash":"blake3","log":"<origin>",
//!  "table":"events","stream":"t","partition":0,"event_id":"evt-1",
//!  "leaf_index":17,"tree_size":100,"leaf_hash":"<hex>","record":"<text>",
//!  "path":["<hex>",...],"checkpoint":"<signed note>"}
//! {"kind":"consistency","version":1,"hash":"blake3","log":"<origin>",
//!  "table":"events","stream":"t","partition":0,
//!  "old_size":5,"old_root":"<hex>","new_size":9,"new_root":"<hex>",
//!  "path":[...],"old_checkpoint":"<signed note>","new_checkpoint":null}
//! ```
//!
//! Hashes are 64 lowercase hex digits; `log` is the checkpoint origin
//! ([`log_origin`]) and must end in the table, stream and partition the
//! document names. `event_id` and `record` are optional, as are the
//! checkpoints (`null` or absent while no checkpoint covers the tree yet).
//!
//! Guarantees of [`check`]: it never panics and reads at most 16 MiB; every
//! hash it accepts is tied to a root, and an inclusion proof's root comes
//! only from its checkpoint, never from the document's own fields. Given a
//! verifier key, every checkpoint present must carry that key's signature;
//! without one, the checkpoints are read but their signatures are not
//! checked, and [`ProofSummary::signatures_checked`] says so.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::checkpoint::{self, Checkpoint, CheckpointError, NoteVerifier};
use super::hash::Hash;
use super::merkle::{self, HashAlg, ProofError};
use super::{ChainId, Table, log_origin};

/// The `version` of every proof document this build writes and reads.
pub const VERSION: u64 = 1;
/// Documents larger than this are refused unread.
pub const MAX_DOCUMENT_BYTES: usize = 16 << 20;

/// Why a proof document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofCheckError {
    #[error("the document is {0} bytes; a proof document is at most 16 MiB")]
    TooLarge(usize),
    #[error("malformed proof document: {0}")]
    Malformed(String),
    #[error("the document has no `kind` string")]
    NoKind,
    #[error("unknown proof kind `{0}` (expected `inclusion` or `consistency`)")]
    UnknownKind(String),
    #[error("unsupported proof version {0} (this custos reads version 1)")]
    UnsupportedVersion(String),
    #[error("unknown hash function `{0}` (expected `blake3` or `sha256`)")]
    UnknownHash(String),
    #[error("bad hex in field `{0}`: expected 64 lowercase hex digits")]
    BadHex(String),
    #[error("bad stream or partition: {0}")]
    InvalidChain(String),
    #[error("the log `{log}` does not end in `{suffix}` as its table, stream and partition say")]
    LogMismatch { log: String, suffix: String },
    #[error("`event_id` is only for the events table")]
    EventIdOutsideEvents,
    #[error("the record does not hash to leaf_hash")]
    RecordMismatch,
    #[error("the record disagrees with the document: {0}")]
    RecordDisagrees(String),
    #[error("no checkpoint: nothing to check the proof against")]
    NoCheckpoint,
    #[error(
        "`{0}` is missing: checked against a key, both trees must come with signed checkpoints"
    )]
    Unsigned(&'static str),
    #[error("unusable `{field}`: {source}")]
    BadCheckpoint {
        field: &'static str,
        source: CheckpointError,
    },
    #[error("signature invalid: `{field}` carries no valid signature by key `{key}`")]
    SignatureInvalid { field: &'static str, key: String },
    #[error("`{field}` is a checkpoint for another log: `{found}`, not `{expected}`")]
    CheckpointOrigin {
        field: &'static str,
        found: String,
        expected: String,
    },
    #[error("`{field}` size differs: the checkpoint says {found}, the proof {expected}")]
    CheckpointSize {
        field: &'static str,
        found: u64,
        expected: u64,
    },
    #[error("`{field}` root differs from the document's root")]
    CheckpointRoot { field: &'static str },
    #[error("the Merkle proof fails: {0}")]
    Proof(#[from] ProofError),
}

use ProofCheckError as E;

/// The log a proof is about: one table of one chain of a store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogId {
    /// The checkpoint origin, `<store origin>/<table>/<stream>/<partition>`.
    pub origin: String,
    pub table: Table,
    pub chain: ChainId,
}

impl LogId {
    pub fn new(store_origin: &str, chain: ChainId, table: Table) -> LogId {
        LogId {
            origin: log_origin(store_origin, &chain, table),
            table,
            chain,
        }
    }

    /// The origin must be [`log_origin`] of some non-empty store origin
    /// and of this table and chain.
    fn validate(&self) -> Result<(), ProofCheckError> {
        self.chain
            .validate()
            .map_err(|e| E::InvalidChain(e.to_string()))?;
        let suffix = log_origin("", &self.chain, self.table);
        match self.origin.strip_suffix(&suffix) {
            Some(store) if !store.is_empty() => Ok(()),
            _ => Err(E::LogMismatch {
                log: self.origin.clone(),
                suffix,
            }),
        }
    }
}

/// Proof that `leaf_hash` is leaf `leaf_index` of the log's tree of
/// `tree_size` leaves, whose root the checkpoint states.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    pub hash: HashAlg,
    pub log: LogId,
    pub event_id: Option<String>,
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    /// The canonical record text; `H(0x00 ‖ record)` is `leaf_hash`.
    pub record: Option<String>,
    pub path: Vec<Hash>,
    /// A signed note of the checkpoint at `tree_size`.
    pub checkpoint: Option<String>,
}

/// Proof that the log's tree of `old_size` leaves is a prefix of its tree
/// of `new_size` leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub hash: HashAlg,
    pub log: LogId,
    pub old_size: u64,
    pub old_root: Hash,
    pub new_size: u64,
    pub new_root: Hash,
    pub path: Vec<Hash>,
    pub old_checkpoint: Option<String>,
    pub new_checkpoint: Option<String>,
}

/// Either document, as parsed from text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofDocument {
    Inclusion(InclusionProof),
    Consistency(ConsistencyProof),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofKind {
    Inclusion,
    Consistency,
}

impl ProofKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProofKind::Inclusion => "inclusion",
            ProofKind::Consistency => "consistency",
        }
    }
}

/// What a successful [`check`] established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProofSummary {
    pub kind: ProofKind,
    pub log: String,
    pub hash: HashAlg,
    /// Inclusion only.
    pub leaf_index: Option<u64>,
    pub event_id: Option<String>,
    /// Inclusion: the record was present and hashes to the leaf.
    pub record_checked: bool,
    /// Consistency only.
    pub old_size: Option<u64>,
    /// Inclusion: `tree_size`; consistency: `new_size`.
    pub tree_size: u64,
    /// The sizes of the checkpoints that matched the proof.
    pub checkpoints: Vec<u64>,
    /// True when a verifier key was given and every checkpoint present
    /// carries its signature (false if there was no checkpoint at all).
    pub signatures_checked: bool,
    /// The verifier key's name, when signatures were checked.
    pub key: Option<String>,
}

impl fmt::Display for ProofSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} proof OK ({}): ",
            self.kind.as_str(),
            self.hash.name()
        )?;
        match (self.leaf_index, self.old_size) {
            (Some(i), _) => write!(f, "leaf {i} of {}", self.tree_size)?,
            (_, Some(old)) => write!(f, "size {old} -> {}", self.tree_size)?,
            _ => write!(f, "size {}", self.tree_size)?,
        }
        write!(f, " in log {}", self.log)?;
        if let Some(id) = &self.event_id {
            write!(f, ", event {id}")?;
        }
        if self.kind == ProofKind::Inclusion {
            f.write_str(if self.record_checked {
                ", record checked"
            } else {
                ", record not included"
            })?;
        }
        let sizes = self
            .checkpoints
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" and ");
        let checkpoints = match self.checkpoints.len() {
            0 => return f.write_str("; no checkpoint: the roots are unsigned"),
            1 => format!("checkpoint at size {sizes}"),
            _ => format!("checkpoints at sizes {sizes}"),
        };
        match &self.key {
            Some(key) if self.signatures_checked => {
                write!(f, "; {checkpoints} signed by key {key}")
            }
            _ => write!(
                f,
                "; {checkpoints}: signatures NOT checked (no verifier key)"
            ),
        }
    }
}

/// Parses and checks a proof document (see the module documentation).
pub fn check(text: &str, verifier: Option<&NoteVerifier>) -> Result<ProofSummary, ProofCheckError> {
    ProofDocument::parse(text)?.check(verifier)
}

impl ProofDocument {
    /// Parses a document: size, JSON, `kind`, `version`, then the fields.
    /// Duplicate and unknown fields are refused.
    pub fn parse(text: &str) -> Result<ProofDocument, ProofCheckError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(E::TooLarge(text.len()));
        }
        // Kind and version first, so that a newer document is named as
        // such rather than as one with unknown fields. A map, not a struct:
        // serde would also read a struct from a JSON array.
        let probe: serde_json::Map<String, Value> =
            serde_json::from_str(text).map_err(|e| E::Malformed(e.to_string()))?;
        match probe.get("kind") {
            Some(Value::String(k)) if k == "inclusion" || k == "consistency" => {}
            Some(Value::String(k)) => return Err(E::UnknownKind(k.clone())),
            _ => return Err(E::NoKind),
        }
        if let Some(v) = probe.get("version")
            && v.as_u64() != Some(VERSION)
        {
            return Err(E::UnsupportedVersion(v.to_string()));
        }
        drop(probe);
        let wire: Wire = serde_json::from_str(text).map_err(|e| E::Malformed(e.to_string()))?;
        wire.into_document()
    }

    pub fn check(&self, verifier: Option<&NoteVerifier>) -> Result<ProofSummary, ProofCheckError> {
        match self {
            ProofDocument::Inclusion(p) => p.check(verifier),
            ProofDocument::Consistency(p) => p.check(verifier),
        }
    }

    pub fn to_json_pretty(&self) -> String {
        let wire = match self {
            ProofDocument::Inclusion(p) => Wire::Inclusion(p.to_wire()),
            ProofDocument::Consistency(p) => Wire::Consistency(p.to_wire()),
        };
        serde_json::to_string_pretty(&wire).expect("strings and numbers always serialize")
    }
}

impl InclusionProof {
    /// A proof with no event id, record or checkpoint (set them after).
    pub fn new(
        hash: HashAlg,
        log: LogId,
        leaf_index: u64,
        tree_size: u64,
        leaf_hash: Hash,
        path: Vec<Hash>,
    ) -> Self {
        InclusionProof {
            hash,
            log,
            event_id: None,
            leaf_index,
            tree_size,
            leaf_hash,
            record: None,
            path,
            checkpoint: None,
        }
    }

    pub fn to_json_pretty(&self) -> String {
        ProofDocument::Inclusion(self.clone()).to_json_pretty()
    }

    pub fn check(&self, verifier: Option<&NoteVerifier>) -> Result<ProofSummary, ProofCheckError> {
        self.log.validate()?;
        if self.event_id.is_some() && self.log.table != Table::Events {
            return Err(E::EventIdOutsideEvents);
        }
        if let Some(record) = &self.record {
            if self.hash.leaf(record.as_bytes()) != self.leaf_hash {
                return Err(E::RecordMismatch);
            }
            record_agrees(record, &self.log.chain, self.event_id.as_deref())?;
        }
        let note = self.checkpoint.as_deref().ok_or(E::NoCheckpoint)?;
        let field = "checkpoint";
        let checkpoint = open_checkpoint(field, note, verifier, &self.log.origin, self.tree_size)?;
        merkle::verify_inclusion(
            self.hash,
            self.leaf_index,
            self.tree_size,
            &self.leaf_hash,
            &self.path,
            &checkpoint.root,
        )?;
        Ok(ProofSummary {
            kind: ProofKind::Inclusion,
            log: self.log.origin.clone(),
            hash: self.hash,
            leaf_index: Some(self.leaf_index),
            event_id: self.event_id.clone(),
            record_checked: self.record.is_some(),
            old_size: None,
            tree_size: self.tree_size,
            checkpoints: vec![self.tree_size],
            signatures_checked: verifier.is_some(),
            key: verifier.map(key_name),
        })
    }
}

impl ConsistencyProof {
    pub fn new(
        hash: HashAlg,
        log: LogId,
        old_size: u64,
        old_root: Hash,
        new_size: u64,
        new_root: Hash,
        path: Vec<Hash>,
    ) -> Self {
        ConsistencyProof {
            hash,
            log,
            old_size,
            old_root,
            new_size,
            new_root,
            path,
            old_checkpoint: None,
            new_checkpoint: None,
        }
    }

    pub fn to_json_pretty(&self) -> String {
        ProofDocument::Consistency(self.clone()).to_json_pretty()
    }

    pub fn check(&self, verifier: Option<&NoteVerifier>) -> Result<ProofSummary, ProofCheckError> {
        self.log.validate()?;
        let mut checkpoints = Vec::new();
        for (field, note, size, root) in [
            (
                "old_checkpoint",
                &self.old_checkpoint,
                self.old_size,
                self.old_root,
            ),
            (
                "new_checkpoint",
                &self.new_checkpoint,
                self.new_size,
                self.new_root,
            ),
        ] {
            let Some(note) = note else { continue };
            let checkpoint = open_checkpoint(field, note, verifier, &self.log.origin, size)?;
            if checkpoint.root != root {
                return Err(E::CheckpointRoot { field });
            }
            checkpoints.push(size);
        }
        merkle::verify_consistency(
            self.hash,
            self.old_size,
            self.new_size,
            &self.old_root,
            &self.new_root,
            &self.path,
        )?;
        if verifier.is_some() {
            if self.old_checkpoint.is_none() {
                return Err(E::Unsigned("old_checkpoint"));
            }
            if self.new_checkpoint.is_none() {
                return Err(E::Unsigned("new_checkpoint"));
            }
        }
        let signed = verifier.is_some() && !checkpoints.is_empty();
        Ok(ProofSummary {
            kind: ProofKind::Consistency,
            log: self.log.origin.clone(),
            hash: self.hash,
            leaf_index: None,
            event_id: None,
            record_checked: false,
            old_size: Some(self.old_size),
            tree_size: self.new_size,
            checkpoints,
            signatures_checked: signed,
            key: verifier.filter(|_| signed).map(key_name),
        })
    }
}

/// The name part of `<name>+<id>+<key>`.
fn key_name(verifier: &NoteVerifier) -> String {
    let text = verifier.to_text();
    text.split('+').next().unwrap_or_default().to_owned()
}

/// The checkpoint in `note`, signed by `verifier` if one is given, for the
/// log `origin` at `size`.
fn open_checkpoint(
    field: &'static str,
    note: &str,
    verifier: Option<&NoteVerifier>,
    origin: &str,
    size: u64,
) -> Result<Checkpoint, ProofCheckError> {
    let bad = |source| E::BadCheckpoint { field, source };
    let body = match verifier {
        Some(v) => v.open(note).map_err(|e| match e {
            CheckpointError::NotSigned(key) => E::SignatureInvalid { field, key },
            other => bad(other),
        })?,
        None => checkpoint::unverified_text(note).map_err(bad)?,
    };
    let checkpoint = Checkpoint::parse(body).map_err(bad)?;
    if checkpoint.origin != origin {
        return Err(E::CheckpointOrigin {
            field,
            found: checkpoint.origin,
            expected: origin.to_owned(),
        });
    }
    if checkpoint.size != size {
        return Err(E::CheckpointSize {
            field,
            found: checkpoint.size,
            expected: size,
        });
    }
    Ok(checkpoint)
}

/// A record (already known to hash to the leaf) must come from the chain
/// the document names and, if the document names an event, be that event.
fn record_agrees(
    record: &str,
    chain: &ChainId,
    event_id: Option<&str>,
) -> Result<(), ProofCheckError> {
    let disagree = |what: String| Err(E::RecordDisagrees(what));
    let Ok(value) = serde_json::from_str::<Value>(record) else {
        return disagree("the record is not JSON".into());
    };
    let src = &value["src"];
    if src["stream"].as_str() != Some(&chain.stream)
        || src["partition"].as_i64() != Some(i64::from(chain.partition))
    {
        return disagree(format!(
            "its src is {}, not stream {:?} partition {}",
            src, chain.stream, chain.partition
        ));
    }
    if let Some(id) = event_id {
        let found = &value["event"]["id"];
        if found.as_str() != Some(id) {
            return disagree(format!("its event id is {found}, not {id:?}"));
        }
    }
    Ok(())
}

// The wire format: one serde definition of the JSON, hashes as text so
// that a bad one is reported with its field name.

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Wire {
    Inclusion(WireInclusion),
    Consistency(WireConsistency),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireInclusion {
    version: u64,
    hash: String,
    log: String,
    table: Table,
    stream: String,
    partition: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    event_id: Option<String>,
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    record: Option<String>,
    path: Vec<String>,
    #[serde(default)]
    checkpoint: Option<String>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireConsistency {
    version: u64,
    hash: String,
    log: String,
    table: Table,
    stream: String,
    partition: i32,
    old_size: u64,
    old_root: String,
    new_size: u64,
    new_root: String,
    path: Vec<String>,
    #[serde(default)]
    old_checkpoint: Option<String>,
    #[serde(default)]
    new_checkpoint: Option<String>,
}

fn to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// 64 lowercase hex digits, or an error naming `field`.
fn from_hex(field: &str, text: &str) -> Result<Hash, ProofCheckError> {
    let mut out = [0u8; 32];
    let lowercase = text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if lowercase && hex::decode_to_slice(text, &mut out).is_ok() {
        Ok(out)
    } else {
        Err(E::BadHex(field.to_owned()))
    }
}

fn path_from_hex(path: &[String]) -> Result<Vec<Hash>, ProofCheckError> {
    path.iter()
        .enumerate()
        .map(|(i, h)| from_hex(&format!("path[{i}]"), h))
        .collect()
}

fn alg(name: &str) -> Result<HashAlg, ProofCheckError> {
    HashAlg::from_name(name).ok_or_else(|| E::UnknownHash(name.to_owned()))
}

fn version(v: u64) -> Result<(), ProofCheckError> {
    match v {
        VERSION => Ok(()),
        other => Err(E::UnsupportedVersion(other.to_string())),
    }
}

impl Wire {
    fn into_document(self) -> Result<ProofDocument, ProofCheckError> {
        Ok(match self {
            Wire::Inclusion(w) => {
                version(w.version)?;
                ProofDocument::Inclusion(InclusionProof {
                    hash: alg(&w.hash)?,
                    log: LogId {
                        origin: w.log,
                        table: w.table,
                        chain: ChainId::new(w.stream, w.partition),
                    },
                    event_id: w.event_id,
                    leaf_index: w.leaf_index,
                    tree_size: w.tree_size,
                    leaf_hash: from_hex("leaf_hash", &w.leaf_hash)?,
                    record: w.record,
                    path: path_from_hex(&w.path)?,
                    checkpoint: w.checkpoint,
                })
            }
            Wire::Consistency(w) => {
                version(w.version)?;
                ProofDocument::Consistency(ConsistencyProof {
                    hash: alg(&w.hash)?,
                    log: LogId {
                        origin: w.log,
                        table: w.table,
                        chain: ChainId::new(w.stream, w.partition),
                    },
                    old_size: w.old_size,
                    old_root: from_hex("old_root", &w.old_root)?,
                    new_size: w.new_size,
                    new_root: from_hex("new_root", &w.new_root)?,
                    path: path_from_hex(&w.path)?,
                    old_checkpoint: w.old_checkpoint,
                    new_checkpoint: w.new_checkpoint,
                })
            }
        })
    }
}

impl InclusionProof {
    fn to_wire(&self) -> WireInclusion {
        WireInclusion {
            version: VERSION,
            hash: self.hash.name().to_owned(),
            log: self.log.origin.clone(),
            table: self.log.table,
            stream: self.log.chain.stream.clone(),
            partition: self.log.chain.partition,
            event_id: self.event_id.clone(),
            leaf_index: self.leaf_index,
            tree_size: self.tree_size,
            leaf_hash: to_hex(&self.leaf_hash),
            record: self.record.clone(),
            path: self.path.iter().map(to_hex).collect(),
            checkpoint: self.checkpoint.clone(),
        }
    }
}

impl ConsistencyProof {
    fn to_wire(&self) -> WireConsistency {
        WireConsistency {
            version: VERSION,
            hash: self.hash.name().to_owned(),
            log: self.log.origin.clone(),
            table: self.log.table,
            stream: self.log.chain.stream.clone(),
            partition: self.log.chain.partition,
            old_size: self.old_size,
            old_root: to_hex(&self.old_root),
            new_size: self.new_size,
            new_root: to_hex(&self.new_root),
            path: self.path.iter().map(to_hex).collect(),
            old_checkpoint: self.old_checkpoint.clone(),
            new_checkpoint: self.new_checkpoint.clone(),
        }
    }
}

#[cfg(test)]
mod tests;
