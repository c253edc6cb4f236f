//! Reading a store as a log server does: its checkpoints, where an event
//! is, and inclusion and consistency proofs from the tree strata (never
//! rereading the segments, except the one row whose record a proof
//! carries). Read-only: safe beside a running writer.

use std::path::Path;

use arrow::array::AsArray;
use arrow::datatypes::UInt64Type;

use super::checkpoint::{Checkpoint, unverified_text};
use super::checkpoints::{self, CheckpointLine};
use super::error::LedgerError;
use super::hash::Hash;
use super::manifest::{ManifestLine, Table};
use super::proof::{ConsistencyProof, InclusionProof, LogId};
use super::record::is_tombstone;
use super::segment::read_columns;
use super::tree::TreeReader;
use super::{ChainId, Store};

/// Why a proof cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error("no event with id {0:?} is stored")]
    UnknownEvent(String),
    #[error("the log {log} holds {size} rows; seq {seq} is not one of them")]
    UnknownSeq { log: String, seq: u64, size: u64 },
    #[error(
        "seq {seq} of log {log} is stored, but no checkpoint covers it yet (the next one is written within the checkpoint interval)"
    )]
    NotCovered { log: String, seq: u64 },
    #[error("the log {log} has no checkpoint of size {size}")]
    NoCheckpoint { log: String, size: u64 },
    #[error("a consistency proof needs 0 < old <= new (old {old}, new {new})")]
    BadSizes { old: u64, new: u64 },
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A stored checkpoint with what it says.
#[derive(Debug, Clone)]
pub struct StoredCheckpoint {
    pub chain: ChainId,
    pub table: Table,
    pub checkpoint: Checkpoint,
    /// When it was signed (RFC 3339, UTC).
    pub time: String,
    /// The signed note.
    pub note: String,
}

/// Where an event is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    pub chain: ChainId,
    pub seq: u64,
}

impl Store {
    /// The checkpoints stored for a chain, oldest first.
    pub fn checkpoints(&self, chain: &ChainId) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        chain.validate()?;
        let rel = super::store::checkpoint_rel_path(chain);
        let path = self.storage().describe(&rel);
        checkpoints::read(self.storage(), &rel)?
            .into_iter()
            .map(|line| stored(chain, line, &path))
            .collect()
    }

    /// The latest checkpoint of every log that has one.
    pub fn latest_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        let mut out = Vec::new();
        for chain in self.chains()? {
            let all = self.checkpoints(&chain)?;
            for table in Table::ALL {
                if let Some(last) = all
                    .iter()
                    .filter(|c| c.table == table)
                    .max_by_key(|c| c.checkpoint.size)
                {
                    out.push(last.clone());
                }
            }
        }
        Ok(out)
    }

    /// Finds an event by its id, reading only the `id` and `seq` columns of
    /// the `events` segments. An id a producer reused is found more than
    /// once.
    pub fn locate_event(&self, id: &str) -> Result<Vec<Located>, LedgerError> {
        let mut found = Vec::new();
        if id.is_empty() {
            // Only erased rows have an empty id.
            return Ok(found);
        }
        for chain in self.chains()? {
            for line in self.manifest(&chain)? {
                if line.table != Table::Events || line.is_pruned() {
                    continue;
                }
                let file = self.segment(&line.file)?;
                let path = &file.path;
                for batch in read_columns(&file, &["id", "seq"], None, self.key())? {
                    let (Some(ids), Some(seqs)) =
                        (batch.column_by_name("id"), batch.column_by_name("seq"))
                    else {
                        return Err(LedgerError::corrupt(path, "no id or seq column"));
                    };
                    let (ids, seqs) = (ids.as_string::<i32>(), seqs.as_primitive::<UInt64Type>());
                    for i in 0..batch.num_rows() {
                        if ids.value(i) == id {
                            found.push(Located {
                                chain: chain.clone(),
                                seq: seqs.value(i),
                            });
                        }
                    }
                }
            }
        }
        Ok(found)
    }

    /// The log's durable tree size (from the manifest).
    pub fn tree_size(&self, chain: &ChainId, table: Table) -> Result<u64, LedgerError> {
        Ok(size_of(&self.manifest(chain)?, table))
    }

    /// Proves that row `seq` of a log is in the tree of the latest stored
    /// checkpoint (or of the checkpoint of size `at`), with the row's record
    /// and, for events, its id.
    pub fn prove_inclusion(
        &self,
        chain: &ChainId,
        table: Table,
        seq: u64,
        at: Option<u64>,
    ) -> Result<InclusionProof, ProveError> {
        let log = LogId::new(self.origin(), chain.clone(), table);
        let manifest = self.manifest(chain)?;
        let size = size_of(&manifest, table);
        if seq >= size {
            return Err(ProveError::UnknownSeq {
                log: log.origin,
                seq,
                size,
            });
        }
        let checkpoint = self
            .checkpoint_at(chain, table, at)?
            .filter(|c| c.checkpoint.size > seq && at.is_none_or(|a| a == c.checkpoint.size));
        let Some(checkpoint) = checkpoint else {
            return Err(match at {
                Some(size) => ProveError::NoCheckpoint {
                    log: log.origin,
                    size,
                },
                None => ProveError::NotCovered {
                    log: log.origin,
                    seq,
                },
            });
        };
        let tree_size = checkpoint.checkpoint.size;
        let mut tree = TreeReader::open_in(
            self.shared_storage(),
            &super::store::tree_rel_dir(table, chain),
            self.alg(),
        )?;
        let path = tree.inclusion_proof(seq, tree_size)?;
        let leaf = tree.leaf(seq)?;
        let mut proof = InclusionProof::new(self.alg(), log, seq, tree_size, leaf, path);
        // A pruned or erased row is still proved, by its leaf hash alone.
        if let Some((record, id)) = self.read_record(&manifest, table, seq)? {
            proof.record = Some(record);
            proof.event_id = id;
        }
        proof.checkpoint = Some(checkpoint.note);
        Ok(proof)
    }

    /// Proves that the log's tree of `old` rows is a prefix of its tree of
    /// `new` rows, with the stored checkpoints of those sizes if any.
    pub fn prove_consistency(
        &self,
        chain: &ChainId,
        table: Table,
        old: u64,
        new: u64,
    ) -> Result<ConsistencyProof, ProveError> {
        let log = LogId::new(self.origin(), chain.clone(), table);
        if old == 0 || old > new {
            return Err(ProveError::BadSizes { old, new });
        }
        let size = self.tree_size(chain, table)?;
        if new > size {
            return Err(ProveError::UnknownSeq {
                log: log.origin,
                seq: new - 1,
                size,
            });
        }
        let mut tree = TreeReader::open_in(
            self.shared_storage(),
            &super::store::tree_rel_dir(table, chain),
            self.alg(),
        )?;
        let path = tree.consistency_proof(old, new)?;
        let (old_root, new_root) = (tree.root(old)?, tree.root(new)?);
        let mut proof = ConsistencyProof::new(self.alg(), log, old, old_root, new, new_root, path);
        let all = self.checkpoints(chain)?;
        let note_of = |size: u64| {
            all.iter()
                .find(|c| c.table == table && c.checkpoint.size == size)
                .map(|c| c.note.clone())
        };
        proof.old_checkpoint = note_of(old);
        proof.new_checkpoint = note_of(new);
        Ok(proof)
    }

    /// The root of a log's tree of `size` rows, from the strata.
    pub fn tree_root(&self, chain: &ChainId, table: Table, size: u64) -> Result<Hash, ProveError> {
        let durable = self.tree_size(chain, table)?;
        if size > durable {
            return Err(ProveError::UnknownSeq {
                log: LogId::new(self.origin(), chain.clone(), table).origin,
                seq: size.saturating_sub(1),
                size: durable,
            });
        }
        let mut tree = TreeReader::open_in(
            self.shared_storage(),
            &super::store::tree_rel_dir(table, chain),
            self.alg(),
        )?;
        Ok(tree.root(size)?)
    }

    /// The latest checkpoint of a log, or the one of size `at`.
    fn checkpoint_at(
        &self,
        chain: &ChainId,
        table: Table,
        at: Option<u64>,
    ) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let all = self
            .checkpoints(chain)?
            .into_iter()
            .filter(|c| c.table == table);
        Ok(match at {
            Some(size) => all
                .filter(|c| c.checkpoint.size == size)
                .max_by_key(|c| c.checkpoint.size),
            None => all.max_by_key(|c| c.checkpoint.size),
        })
    }

    /// The record (and, for events, the id) of one row, read from its
    /// segment with a row selection; `None` when the row was pruned or
    /// erased.
    fn read_record(
        &self,
        manifest: &[ManifestLine],
        table: Table,
        seq: u64,
    ) -> Result<Option<(String, Option<String>)>, LedgerError> {
        let line = manifest
            .iter()
            .find(|l| l.table == table && l.first_seq <= seq && seq < l.end_seq())
            .ok_or_else(|| LedgerError::Internal(format!("seq {seq} has no segment")))?;
        if line.is_pruned() {
            return Ok(None);
        }
        let file = self.segment(&line.file)?;
        let path = &file.path;
        let columns: &[&str] = match table {
            Table::Events => &["record", "id"],
            Table::Rejects | Table::Incidents | Table::QueryLog => &["record"],
        };
        let row = (seq - line.first_seq) as usize;
        let batches = read_columns(&file, columns, Some(row), self.key())?;
        let batch = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| LedgerError::corrupt(path, format!("row {row} is missing")))?;
        let text = |name: &str| {
            batch
                .column_by_name(name)
                .map(|c| c.as_string::<i32>().value(0).to_owned())
                .ok_or_else(|| LedgerError::corrupt(path, format!("no column {name}")))
        };
        let record = text("record")?;
        if is_tombstone(&record) {
            return Ok(None);
        }
        let id = match table {
            Table::Events => Some(text("id")?),
            Table::Rejects | Table::Incidents | Table::QueryLog => None,
        };
        Ok(Some((record, id)))
    }
}

fn stored(
    chain: &ChainId,
    line: CheckpointLine,
    path: &Path,
) -> Result<StoredCheckpoint, LedgerError> {
    let checkpoint = unverified_text(&line.note)
        .and_then(Checkpoint::parse)
        .map_err(|e| LedgerError::corrupt(path, e.to_string()))?;
    Ok(StoredCheckpoint {
        chain: chain.clone(),
        table: line.table,
        checkpoint,
        time: line.time,
        note: line.note,
    })
}

/// The size of a table's log from its manifest lines.
fn size_of(manifest: &[ManifestLine], table: Table) -> u64 {
    manifest
        .iter()
        .filter(|l| l.table == table)
        .map(ManifestLine::end_seq)
        .max()
        .unwrap_or(0)
}
