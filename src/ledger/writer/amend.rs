//! Retention and erasure: amending durable segments without changing any
//! log's tree.
//!
//! An erasure rewrites each segment holding a selected row as its next
//! generation, with every selected row replaced by a tombstone that keeps
//! the row's seq, coordinates and leaf hash but none of its content; a
//! pruning deletes whole segments of the oldest flushes. Both then append
//! amendment lines to the manifest (one write, fsynced: the commit point)
//! and only then delete the files they replaced. Each amendment line is
//! complete on its own: a crash inside that write keeps the lines already
//! on disk, and running the operation again does the rest. A crash before the commit
//! leaves a new-generation file that reopening the chain deletes; a crash
//! after it leaves replaced files that reopening deletes too
//! (`sweep_segment_dir`). Tree strata, checkpoints and every other row stay
//! as they were, so every root, checkpoint and proof of the remaining rows
//! still holds.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, BooleanArray, RecordBatch, StringArray, new_null_array,
};
use arrow::compute::kernels::zip::zip;
use chrono::{DateTime, SecondsFormat, Utc};
use parquet::file::metadata::KeyValue;

use super::ChainWriter;
use crate::ledger::error::LedgerError;
use crate::ledger::manifest::{AmendKind, Amendment, ManifestLine, Table};
use crate::ledger::record::{is_tombstone, tombstone_record};
use crate::ledger::segment::{SegmentReader, encode_segment, schema_of, segment_rel_path};
use crate::ledger::store::tree_rel_dir;
use crate::ledger::tree::TreeReader;

/// Why and when rows are erased; recorded in every tombstone and in the
/// manifest's amendment lines.
#[derive(Debug, Clone)]
pub struct Erasure {
    /// The request's reference (e.g. a data-subject request id). Never
    /// the identifier whose data is erased.
    pub reason: String,
    pub time: DateTime<Utc>,
}

/// A stored row as an erasure's selector sees it.
#[derive(Debug, Clone, Copy)]
pub enum StoredRow<'a> {
    Event {
        record: &'a str,
    },
    /// The stored key and payload: sealed when the record says so.
    Reject {
        record: &'a str,
        key: Option<&'a [u8]>,
        payload: &'a [u8],
    },
}

/// What an erasure or a pruning changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmendStats {
    /// Segments rewritten (erasure) or deleted (pruning).
    pub segments: usize,
    /// Rows erased, or rows whose segment was deleted, per table.
    pub events: u64,
    pub rejects: u64,
    pub incidents: u64,
    pub queries: u64,
}

impl AmendStats {
    fn add(&mut self, table: Table, rows: u64) {
        match table {
            Table::Events => self.events += rows,
            Table::Rejects => self.rejects += rows,
            Table::Incidents => self.incidents += rows,
            Table::QueryLog => self.queries += rows,
        }
    }
}

impl ChainWriter {
    /// Erases every stored row that `select` picks: rewrites each segment
    /// holding one, with the row replaced by a tombstone. Rows erased
    /// before and pruned segments are not offered again. Nothing may be
    /// buffered.
    pub fn erase(
        &mut self,
        erasure: &Erasure,
        select: &mut dyn FnMut(Table, StoredRow<'_>) -> bool,
    ) -> Result<AmendStats, LedgerError> {
        self.ready_to_amend(false)?;
        let time = erasure.time.to_rfc3339_opts(SecondsFormat::Secs, true);
        let lines = self.store.manifest(&self.chain)?;
        self.poisoned = true;
        let mut stats = AmendStats::default();
        let mut amendments = Vec::new();
        let mut replaced = Vec::new();
        // Incident revisions and the query log name patients by pseudonym
        // only; they are the record of what was alerted and who asked
        // what, and stay.
        for line in lines
            .iter()
            .filter(|l| !l.is_pruned() && l.table.own_stream().is_none())
        {
            let Some((amendment, erased)) = self.rewrite(line, &erasure.reason, &time, select)?
            else {
                continue;
            };
            stats.segments += 1;
            stats.add(line.table, erased);
            amendments.push(amendment);
            replaced.push(line);
        }
        crate::failpoint::hit("erase.written");
        self.commit_amendments(&amendments, &replaced)?;
        self.poisoned = false;
        Ok(stats)
    }

    /// Deletes the segments of the chain's oldest flushes, as long as each
    /// flush's events are all older than `before_us` (µs since the epoch).
    /// A flush that wrote only rejects (which carry no event time) goes
    /// with the flushes around it, never past the last one pruned. Rows
    /// may be buffered; no flush may be sealed and not committed.
    pub fn prune(
        &mut self,
        before_us: i64,
        time: DateTime<Utc>,
    ) -> Result<AmendStats, LedgerError> {
        self.ready_to_amend(true)?;
        let time = time.to_rfc3339_opts(SecondsFormat::Secs, true);
        let lines = self.store.manifest(&self.chain)?;
        // The last flush of the prefix whose events are all old enough.
        let mut last = None;
        for line in &lines {
            if line.table != Table::Events {
                continue;
            }
            match line.max_time_us {
                Some(max) if max < before_us => last = Some(line.flush),
                _ => break,
            }
        }
        let Some(last) = last else {
            return Ok(AmendStats::default());
        };
        self.poisoned = true;
        let mut stats = AmendStats::default();
        let mut amendments = Vec::new();
        let mut replaced = Vec::new();
        for line in lines.iter().filter(|l| l.flush <= last && !l.is_pruned()) {
            stats.segments += 1;
            stats.add(line.table, line.rows);
            amendments.push(Amendment {
                amend: AmendKind::Prune,
                table: line.table,
                first_seq: line.first_seq,
                file: None,
                file_blake3: None,
                bytes: None,
                erased_rows: None,
                key_id: None,
                time: time.clone(),
                reason: "retention".into(),
            });
            replaced.push(line);
        }
        self.commit_amendments(&amendments, &replaced)?;
        self.poisoned = false;
        Ok(stats)
    }

    /// Amendments go between flushes: none sealed and not committed, and,
    /// for an erasure (which must reach every stored row), nothing
    /// buffered. Pruning only drops the oldest segments, so rows buffered
    /// since (newer than any segment) do not stand in its way.
    fn ready_to_amend(&self, buffered_ok: bool) -> Result<(), LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned {
                chain: self.chain.to_string(),
            });
        }
        if let Some(flush) = self.sealed {
            return Err(LedgerError::Internal(format!(
                "segments are amended only between flushes: flush {flush} is not committed"
            )));
        }
        if !buffered_ok && self.buffered() > 0 {
            return Err(LedgerError::Internal(
                "segments are amended only with nothing buffered: flush first".into(),
            ));
        }
        Ok(())
    }

    /// Appends the amendment lines in one write and fsyncs them (the
    /// commit), then deletes the files they replaced.
    fn commit_amendments(
        &mut self,
        amendments: &[Amendment],
        replaced: &[&ManifestLine],
    ) -> Result<(), LedgerError> {
        if amendments.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for amendment in amendments {
            let json = serde_json::to_string(amendment)
                .map_err(|e| LedgerError::Internal(format!("amendment line: {e}")))?;
            text.push_str(&json);
            text.push('\n');
        }
        self.lock.renew()?;
        self.append_manifest(text, true)?;
        crate::failpoint::hit("amend.written");
        for line in replaced {
            self.store.storage().delete(&line.file)?;
        }
        Ok(())
    }

    /// Writes the next generation of one segment with the rows `select`
    /// picks replaced by tombstones; `None` when it picks none.
    fn rewrite(
        &self,
        line: &ManifestLine,
        reason: &str,
        time: &str,
        select: &mut dyn FnMut(Table, StoredRow<'_>) -> bool,
    ) -> Result<Option<(Amendment, u64)>, LedgerError> {
        let file = self.store.segment(&line.file)?;
        let path = &file.path;
        let segment = SegmentReader::open(&file, self.store.key())?;
        let metadata: Vec<KeyValue> = segment
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("custos."))
            .map(|(k, v)| KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect();
        let batches = segment
            .reader
            .collect::<Result<Vec<RecordBatch>, _>>()
            .map_err(|e| LedgerError::corrupt(path, e.to_string()))?;
        let alg = self.store.alg();
        let mut tree = TreeReader::open_in(
            self.store.shared_storage(),
            &tree_rel_dir(line.table, &self.chain),
            alg,
        )?;
        let mut at = 0u64;
        let mut erased = 0u64;
        let mut rewritten = Vec::with_capacity(batches.len());
        for batch in &batches {
            let col = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| LedgerError::corrupt(path, format!("no column {name}")))
            };
            let records = col("record")?.as_string::<i32>();
            let rejects = match line.table {
                Table::Events | Table::Incidents | Table::QueryLog => None,
                Table::Rejects => Some((
                    col("key")?.as_binary::<i32>(),
                    col("payload")?.as_binary::<i32>(),
                )),
            };
            let mut mask = Vec::with_capacity(batch.num_rows());
            let mut tombstones = Vec::with_capacity(batch.num_rows());
            for i in 0..batch.num_rows() {
                let record = records.value(i);
                let row = match rejects {
                    None => StoredRow::Event { record },
                    Some((keys, payloads)) => StoredRow::Reject {
                        record,
                        key: keys.is_valid(i).then(|| keys.value(i)),
                        payload: payloads.value(i),
                    },
                };
                let pick = !is_tombstone(record) && select(line.table, row);
                mask.push(pick);
                tombstones.push(if pick {
                    // The tombstone keeps the leaf the tree holds; a row
                    // that no longer hashes to it was changed, and erasing
                    // it would destroy the evidence.
                    let leaf = alg.leaf(record.as_bytes());
                    let seq = line.first_seq + at;
                    if tree.leaf(seq)? != leaf {
                        return Err(LedgerError::corrupt(
                            path,
                            format!("row {at} (seq {seq}) does not hash to its leaf in the tree: not erasing a changed row (run `custos verify`)"),
                        ));
                    }
                    Some(
                        tombstone_record(&leaf, reason, time, record)
                            .map_err(|what| LedgerError::corrupt(path, what))?,
                    )
                } else {
                    None
                });
                at += 1;
            }
            erased += mask.iter().filter(|&&m| m).count() as u64;
            rewritten.push((mask, tombstones));
        }
        if erased == 0 {
            return Ok(None);
        }
        let generation = line.generation() + 1;
        let rel = segment_rel_path(line.table, &self.chain, line.first_seq, generation);
        let new_path = self.store.storage().describe(&rel);
        let out = batches
            .iter()
            .zip(rewritten)
            .map(|(batch, (mask, tombstones))| erase_rows(batch, line.table, &mask, tombstones));
        let opts = self.store.options();
        let (encoded, digest) =
            encode_segment(&new_path, schema_of(line.table), out, metadata, opts)?;
        let bytes = encoded.len() as u64;
        self.store.storage().create(&rel, encoded, true)?;
        let before = line.amended.erased_rows;
        let amendment = Amendment {
            amend: AmendKind::Erase,
            table: line.table,
            first_seq: line.first_seq,
            file: Some(rel),
            file_blake3: Some(hex::encode(digest)),
            bytes: Some(bytes),
            erased_rows: Some(before + erased),
            key_id: opts.encryption.as_ref().map(|k| k.id().to_owned()),
            time: time.to_owned(),
            reason: reason.to_owned(),
        };
        Ok(Some((amendment, erased)))
    }
}

/// A batch with the masked rows replaced by tombstones: every column
/// keeps seq, stream, partition, offset (and, for events, time); `record`
/// becomes the tombstone; for events `id` and `actor_id` become empty and
/// `kind` `erased`, for rejects `reason` `erased`, `detail` and `payload`
/// empty; every nullable column becomes null.
fn erase_rows(
    batch: &RecordBatch,
    table: Table,
    mask: &[bool],
    tombstones: Vec<Option<String>>,
) -> Result<RecordBatch, LedgerError> {
    let n = batch.num_rows();
    let mask = BooleanArray::from(mask.to_vec());
    let schema = schema_of(table);
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (field, column) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name().as_str();
        let text = |value: &str| -> ArrayRef { Arc::new(StringArray::from(vec![value; n])) };
        let replacement: Option<ArrayRef> = match name {
            "seq" | "stream" | "partition" | "offset" | "time" => None,
            "record" => Some(Arc::new(StringArray::from(
                tombstones
                    .iter()
                    .map(|t| t.as_deref().unwrap_or(""))
                    .collect::<Vec<_>>(),
            ))),
            "kind" | "reason" => Some(text("erased")),
            "id" | "actor_id" | "detail" => Some(text("")),
            "payload" => Some(Arc::new(BinaryArray::from(vec![&b""[..]; n]))),
            _ if field.is_nullable() => Some(new_null_array(field.data_type(), n)),
            _ => {
                return Err(LedgerError::Internal(format!(
                    "no erased value for column {name}"
                )));
            }
        };
        columns.push(match replacement {
            None => column.clone(),
            Some(replacement) => zip(&mask, &replacement, column)
                .map_err(|e| LedgerError::Internal(format!("erasing column {name}: {e}")))?,
        });
    }
    RecordBatch::try_new(schema, columns)
        .map_err(|e| LedgerError::Internal(format!("erased batch: {e}")))
}

#[cfg(test)]
mod tests;
