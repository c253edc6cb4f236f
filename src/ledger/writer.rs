//! Appending to one chain: buffering rows, the crash-safe flush, and the
//! recovery that reopening a chain performs.
//!
//! Flush protocol (also in `docs/ledger-format.md`): for each table with buffered
//! rows, write `<first_seq>.parquet.tmp`, fsync it, rename it to
//! `<first_seq>.parquet`, fsync the folder; append the new hashes of each
//! table's Merkle tree strata and fsync them; then append one manifest line
//! per segment (one write) and fsync the manifest. The flush is committed
//! once its last line is complete on disk.
//!
//! Recovery on open: a torn last line is truncated away; an incomplete last
//! flush group is truncated too (so a flush is all or nothing, and
//! `last_offset` never covers a message whose row was lost); leftover
//! `*.parquet.tmp` files and segment files at exactly the next seq of their
//! table (written by the crashed flush) are deleted; tree strata are cut
//! back to the size the manifest gives, and their root must then be the
//! manifest's. Anything else that does
//! not add up is refused as corrupt: the writer never deletes data that a
//! completed flush could have written.

mod amend;
pub use amend::{AmendStats, Erasure, StoredRow};

use super::checkpoint::{Checkpoint, NoteSigner};
use super::checkpoints::{CheckpointLine, CheckpointLog};
use super::error::LedgerError;
use super::hash::{Hash, parse_hash};
use super::manifest::{ManifestLine, Table};
use super::merkle::HashAlg;
use super::record::{
    EventColumns, IncidentColumns, QueryColumns, RejectBytes, event_record, incident_record,
    query_record, reject_record,
};
use super::segment::{
    EventRow, IncidentRow, QueryRow, RejectRow, encode_segment, event_batch, incident_batch,
    parse_segment_file_name, query_batch, reject_batch, schema_of, segment_metadata,
    segment_rel_path,
};
use super::storage::{ChainLock, join};
use super::store::{checkpoint_rel_path, durable_lines, is_tmp, tree_rel_dir};
use super::tree::{StrataPending, TreeAppender};
use super::{ChainId, Origin, Store, log_origin};
use crate::event::{Event, Reject};

/// What one flush made durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushStats {
    pub events: usize,
    pub rejects: usize,
    pub incidents: usize,
    pub queries: usize,
    /// Bytes of segment files written.
    pub bytes: u64,
    pub segments: usize,
    /// Highest source offset now durable in the chain.
    pub last_offset: i64,
}

/// An accepted event encoded for its chain: its ledger record, the record's
/// leaf hash and its typed columns. Everything of an append but the Merkle
/// append itself, which needs the chain's tree; made on any thread, then
/// handed to the chain's writer ([`ChainWriter::push_prepared`]).
#[derive(Debug)]
pub struct PreparedEvent {
    alg: HashAlg,
    offset: i64,
    leaf: Hash,
    cols: EventColumns,
    record: String,
}

impl PreparedEvent {
    /// Encodes `event`, received at `origin` in `chain`, for a store
    /// hashing with `alg`. Only `chain`'s writer may take it: the record
    /// names the chain.
    pub fn new(alg: HashAlg, chain: &ChainId, origin: Origin, event: &Event) -> Self {
        let record = event_record(chain, &origin, event);
        PreparedEvent {
            alg,
            offset: origin.offset,
            leaf: alg.leaf(&record),
            cols: EventColumns::from_event(event),
            record: String::from_utf8(record).expect("canonical JSON is UTF-8"),
        }
    }
}

/// The appender of one chain. Holds the chain's lock until dropped.
/// Rows pushed but not flushed are lost when it is dropped (their offsets
/// were not committed, so the source delivers them again).
pub struct ChainWriter {
    store: Store,
    chain: ChainId,
    /// Held until dropped: no other writer appends to the chain.
    lock: Box<dyn ChainLock>,
    /// The manifest's path and its durable length.
    manifest: String,
    manifest_len: u64,
    events: Vec<EventRow>,
    rejects: Vec<RejectRow>,
    incidents: Vec<IncidentRow>,
    queries: Vec<QueryRow>,
    /// Per table (index = `Table as usize`): the Merkle tree (buffered
    /// leaves included) and the durable tree size and root.
    trees: [TreeAppender; Table::ALL.len()],
    durable: [(u64, Hash); Table::ALL.len()],
    checkpoints: CheckpointLog,
    last_offset: Option<i64>,
    last_pushed: Option<i64>,
    next_flush: u64,
    /// The flush sealed and not yet committed, if any.
    sealed: Option<u64>,
    poisoned: bool,
}

/// How much of the manifest's end [`ChainWriter::check_head`] reads.
const HEAD_TAIL_BYTES: u64 = 64 * 1024;

impl ChainWriter {
    pub(crate) fn open(store: Store, chain: ChainId) -> Result<ChainWriter, LedgerError> {
        chain.validate()?;
        let storage = store.storage();
        let manifest = super::manifest::manifest_rel_path(&chain);
        let path = storage.describe(&manifest);
        let is_new = storage.len(&manifest)?.is_none();
        if is_new {
            for table in Table::ALL {
                let seg_dir = store.segment_dir(table, &chain);
                // Files of seq 0 are a first flush that crashed before its
                // manifest append (in a bucket the manifest only exists
                // once a flush commits); the sweep below deletes them.
                if storage
                    .list(&seg_dir)?
                    .iter()
                    .filter_map(|n| parse_segment_file_name(n))
                    .any(|(first_seq, generation)| (first_seq, generation) != (0, 0))
                {
                    return Err(LedgerError::corrupt(
                        &path,
                        format!(
                            "the manifest is missing but {} holds segments",
                            storage.describe(&seg_dir).display()
                        ),
                    ));
                }
            }
        }
        let lock = storage.lock(&manifest, &chain.to_string())?;

        let bytes = storage.read(&manifest)?.unwrap_or_default();
        let (lines, len, repaired) = durable_lines(&path, &chain, &bytes)?;
        if repaired {
            tracing::warn!(
                chain = %chain,
                dropped_bytes = bytes.len() as u64 - len,
                "manifest ends in an unfinished flush (crash during append); truncating it"
            );
            storage.truncate(&manifest, len)?;
        }

        let alg = store.alg();
        let mut durable = [(0, alg.empty_root()); Table::ALL.len()];
        let mut last_offset = None;
        for (i, line) in lines.iter().enumerate() {
            let (size, root) = &mut durable[line.table as usize];
            let expected_file = segment_rel_path(line.table, &chain, *size, line.generation());
            let bad = |what: &str| {
                LedgerError::corrupt(&path, format!("manifest line {}: {what}", i + 1))
            };
            if line.first_seq != *size || line.file != expected_file {
                return Err(bad("segment does not continue its table's seq"));
            }
            *root = parse_hash(&line.root).ok_or_else(|| bad("root is not a hash"))?;
            *size = line.end_seq();
            last_offset = last_offset.max(Some(line.last_offset));
        }
        let next_flush = lines.last().map_or(0, |l| l.flush + 1);
        // Before anything is repaired: a checkpoint beyond the manifest means
        // signed rows are gone, which no crash explains.
        let checkpoints = CheckpointLog::open(store.shared_storage(), checkpoint_rel_path(&chain))?;
        for table in Table::ALL {
            if checkpoints.last_size(table) > durable[table as usize].0 {
                return Err(LedgerError::corrupt(
                    storage.describe(&checkpoint_rel_path(&chain)),
                    format!(
                        "a checkpoint covers {} {} rows but the log holds {} (rows were removed)",
                        checkpoints.last_size(table),
                        table.as_str(),
                        durable[table as usize].0
                    ),
                ));
            }
        }
        let open_tree = |table: Table| -> Result<TreeAppender, LedgerError> {
            let (size, root) = durable[table as usize];
            let dir = tree_rel_dir(table, &chain);
            let tree = TreeAppender::open_in(store.shared_storage(), &dir, alg, size)?;
            if tree.root() != root {
                return Err(LedgerError::corrupt(
                    storage.describe(&dir),
                    format!(
                        "the {} tree's root at size {size} is not the manifest's",
                        table.as_str()
                    ),
                ));
            }
            Ok(tree)
        };
        let trees = [
            open_tree(Table::Events)?,
            open_tree(Table::Rejects)?,
            open_tree(Table::Incidents)?,
            open_tree(Table::QueryLog)?,
        ];

        for table in Table::ALL {
            sweep_segment_dir(&store, &chain, table, &lines, durable[table as usize].0)?;
        }
        // Every segment must be readable: refuse at open, naming the key,
        // rather than fail later in a read.
        for line in lines.iter().filter(|l| !l.is_pruned()) {
            store.check_key(line)?;
        }

        Ok(ChainWriter {
            store,
            chain,
            lock,
            manifest,
            manifest_len: len,
            events: Vec::new(),
            rejects: Vec::new(),
            incidents: Vec::new(),
            queries: Vec::new(),
            trees,
            durable,
            checkpoints,
            last_offset,
            last_pushed: last_offset,
            next_flush,
            sealed: None,
            poisoned: false,
        })
    }

    pub fn chain(&self) -> &ChainId {
        &self.chain
    }

    /// Highest source offset durably stored in this chain (events or
    /// rejects), `None` if the chain is empty.
    pub fn last_offset(&self) -> Option<i64> {
        self.last_offset
    }

    /// The durable tree of a table: its size (the next seq) and root.
    pub fn tree_head(&self, table: Table) -> (u64, Hash) {
        self.durable[table as usize]
    }

    /// A light check of what the store holds against what this writer
    /// made durable: the manifest and the checkpoint file have exactly the
    /// lengths the writer wrote, and the manifest's last lines end each
    /// table on the seq and root the writer holds. Costs two length
    /// queries and one read of the manifest's last [`HEAD_TAIL_BYTES`];
    /// `custos verify` reads everything. Run between flushes.
    pub fn check_head(&self) -> Result<(), LedgerError> {
        let storage = self.store.storage();
        let path = storage.describe(&self.manifest);
        let len = storage.len(&self.manifest)?.unwrap_or(0);
        if len != self.manifest_len {
            return Err(LedgerError::corrupt(
                &path,
                format!(
                    "the manifest holds {len} bytes but {} were written",
                    self.manifest_len
                ),
            ));
        }
        let rel = checkpoint_rel_path(&self.chain);
        let checkpoints = storage.len(&rel)?.unwrap_or(0);
        if checkpoints != self.checkpoints.written_len() {
            return Err(LedgerError::corrupt(
                storage.describe(&rel),
                format!(
                    "the checkpoint file holds {checkpoints} bytes but {} were written",
                    self.checkpoints.written_len()
                ),
            ));
        }
        if len == 0 {
            return Ok(());
        }
        let Some(mut file) = storage.open(&self.manifest)? else {
            return Err(LedgerError::corrupt(&path, "the manifest is gone"));
        };
        let from = len.saturating_sub(HEAD_TAIL_BYTES);
        let bytes = file.read_at(from, (len - from) as usize)?;
        // Past the start, the first line read is partial: skip it.
        let start = if from == 0 {
            0
        } else {
            memchr::memchr(b'\n', &bytes).map_or(bytes.len(), |i| i + 1)
        };
        let parsed = super::manifest::parse(&bytes[start..]);
        if parsed.torn_tail {
            return Err(LedgerError::corrupt(
                &path,
                "the manifest ends in a torn line",
            ));
        }
        let mut last: Vec<Option<ManifestLine>> = Table::ALL.iter().map(|_| None).collect();
        for (_, _, entry) in parsed.lines {
            if let super::manifest::Entry::Segment(line) =
                entry.map_err(|what| LedgerError::corrupt(&path, what))?
            {
                let table = line.table as usize;
                last[table] = Some(line);
            }
        }
        for table in Table::ALL {
            let (size, root) = self.durable[table as usize];
            // A table the tail does not reach is checked by its length only.
            let Some(line) = &last[table as usize] else {
                continue;
            };
            if line.end_seq() != size || parse_hash(&line.root) != Some(root) {
                return Err(LedgerError::corrupt(
                    &path,
                    format!(
                        "the {} log ends at seq {} in the manifest but at {size} with another root in the writer",
                        table.as_str(),
                        line.end_seq()
                    ),
                ));
            }
        }
        Ok(())
    }

    fn note_offset(&mut self, offset: i64) {
        debug_assert!(
            self.last_pushed.is_none_or(|last| offset > last),
            "offset {offset} pushed after {:?} in chain {}",
            self.last_pushed,
            self.chain
        );
        self.last_pushed = Some(offset);
    }

    /// Buffers an accepted event. Offsets must be strictly increasing
    /// across `push_event`/`push_reject` and above [`Self::last_offset`].
    pub fn push_event(&mut self, origin: Origin, event: &Event) {
        let prepared = PreparedEvent::new(self.store.alg(), &self.chain, origin, event);
        self.push_prepared(prepared);
    }

    /// Buffers an accepted event encoded ahead by [`PreparedEvent::new`]
    /// for this chain and this store's hash (same rules as
    /// [`Self::push_event`]): only the Merkle append is left.
    pub fn push_prepared(&mut self, prepared: PreparedEvent) {
        debug_assert!(
            prepared.alg == self.store.alg(),
            "an event prepared for another hash"
        );
        self.note_offset(prepared.offset);
        debug_assert!(Table::Events.held_by(&self.chain.stream));
        let tree = &mut self.trees[Table::Events as usize];
        let seq = tree.size();
        tree.push(prepared.leaf);
        self.events.push(EventRow {
            seq,
            offset: prepared.offset,
            cols: prepared.cols,
            record: prepared.record,
        });
    }

    /// Buffers a rejected message: its stored bytes (as received or sealed
    /// by the caller, see [`RejectBytes`]), its Kafka key if any, and why it
    /// was refused.
    pub fn push_reject(&mut self, origin: Origin, bytes: RejectBytes<'_>, reject: &Reject) {
        self.note_offset(origin.offset);
        let record = reject_record(&self.chain, &origin, &bytes, reject);
        let seq = self.append_leaf(Table::Rejects, &record);
        self.rejects.push(RejectRow {
            seq,
            offset: origin.offset,
            reason: reject.reason.as_str(),
            detail: reject.detail.clone(),
            key: bytes.key.map(<[u8]>::to_vec),
            payload: bytes.payload.to_vec(),
            record: String::from_utf8(record).expect("canonical JSON is UTF-8"),
        });
    }

    /// Buffers an incident revision (`revision`: the document the sinks
    /// get) as the `incidents` row at `origin.offset`, its number in the
    /// outbox. Offsets must be strictly increasing, like events'. A
    /// revision without the columns' members is refused.
    pub fn push_incident(
        &mut self,
        origin: Origin,
        revision: &serde_json::Value,
    ) -> Result<(), LedgerError> {
        let cols = IncidentColumns::of(revision).map_err(LedgerError::Internal)?;
        self.note_offset(origin.offset);
        let record = incident_record(&self.chain, &origin, revision);
        let seq = self.append_leaf(Table::Incidents, &record);
        self.incidents.push(IncidentRow {
            seq,
            offset: origin.offset,
            cols,
            record: String::from_utf8(record).expect("canonical JSON is UTF-8"),
        });
        Ok(())
    }

    /// Buffers a statement of the query log (`entry`: its members, see
    /// [`QueryColumns::of`]) as the `query_log` row at `origin.offset`, its
    /// number in the chain. Offsets must be strictly increasing. An entry
    /// without the columns' members is refused.
    pub fn push_query(
        &mut self,
        origin: Origin,
        entry: &serde_json::Value,
    ) -> Result<(), LedgerError> {
        let cols = QueryColumns::of(entry).map_err(LedgerError::Internal)?;
        self.note_offset(origin.offset);
        let record = query_record(&self.chain, &origin, entry);
        let seq = self.append_leaf(Table::QueryLog, &record);
        self.queries.push(QueryRow {
            seq,
            offset: origin.offset,
            cols,
            record: String::from_utf8(record).expect("canonical JSON is UTF-8"),
        });
        Ok(())
    }

    /// Adds a record's leaf to its table's tree; returns its seq. A chain
    /// holds `events` and `rejects` or one table of its own, so a
    /// flush writes at most [`super::manifest::MAX_FLUSH_SEGMENTS`] segments.
    fn append_leaf(&mut self, table: Table, record: &[u8]) -> u64 {
        debug_assert!(
            table.held_by(&self.chain.stream),
            "a {} row pushed to chain {}",
            table.as_str(),
            self.chain
        );
        let tree = &mut self.trees[table as usize];
        let seq = tree.size();
        tree.push(self.store.alg().leaf(record));
        seq
    }

    /// Signs and stores a checkpoint of every table whose durable tree
    /// grew since its last checkpoint; returns what it wrote. Buffered rows
    /// are not covered: flush first.
    pub fn checkpoint(
        &mut self,
        signer: &NoteSigner,
        time: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<CheckpointLine>, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned {
                chain: self.chain.to_string(),
            });
        }
        let mut written = Vec::new();
        for table in Table::ALL {
            let (size, root) = self.durable[table as usize];
            if size == 0 || size <= self.checkpoints.last_size(table) {
                continue;
            }
            let checkpoint = Checkpoint {
                origin: log_origin(self.store.origin(), &self.chain, table),
                size,
                root,
            };
            written.push(self.checkpoints.append(table, &checkpoint, signer, time)?);
            crate::failpoint::hit("checkpoint.written");
        }
        Ok(written)
    }

    /// Rows buffered, every table.
    pub fn buffered(&self) -> usize {
        self.events.len() + self.rejects.len() + self.incidents.len() + self.queries.len()
    }

    /// Makes everything buffered durable (see the module doc for the
    /// protocol). `Ok(None)` if nothing was buffered. After an error the
    /// writer refuses further flushes: drop it and open the chain again.
    pub fn flush(&mut self) -> Result<Option<FlushStats>, LedgerError> {
        let Some(sealed) = self.seal()? else {
            return Ok(None);
        };
        self.poisoned = true;
        let written = sealed.write_segments()?;
        self.commit(written).map(Some)
    }

    /// Takes everything buffered out as one flush, to be made durable in
    /// two steps while this writer goes on buffering: its segment files
    /// ([`SealedFlush::write_segments`], on any thread, without the writer),
    /// then its commit ([`Self::commit`]: tree strata and manifest). One
    /// flush at a time: it must be committed before the next is sealed.
    /// `Ok(None)` if nothing was buffered.
    pub fn seal(&mut self) -> Result<Option<SealedFlush>, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::Poisoned {
                chain: self.chain.to_string(),
            });
        }
        if let Some(flush) = self.sealed {
            return Err(LedgerError::Internal(format!(
                "flush {flush} of chain {} was sealed but never committed",
                self.chain
            )));
        }
        if self.buffered() == 0 {
            return Ok(None);
        }
        let flush = self.next_flush;
        self.next_flush += 1;
        self.sealed = Some(flush);
        let mut heads = [(0, self.store.alg().empty_root()); Table::ALL.len()];
        let mut strata: [StrataPending; Table::ALL.len()] = Default::default();
        for table in Table::ALL {
            let tree = &mut self.trees[table as usize];
            heads[table as usize] = (tree.size(), tree.root());
            strata[table as usize] = tree.take_pending();
        }
        Ok(Some(SealedFlush {
            store: self.store.clone(),
            chain: self.chain.clone(),
            flush,
            first_seqs: self.durable.map(|(size, _)| size),
            heads,
            strata,
            events: std::mem::take(&mut self.events),
            rejects: std::mem::take(&mut self.rejects),
            incidents: std::mem::take(&mut self.incidents),
            queries: std::mem::take(&mut self.queries),
        }))
    }

    /// Commits a sealed flush whose segment files are written: appends its
    /// trees' hashes to the strata, then its lines to the manifest (the
    /// commit point). After an error the writer refuses further flushes.
    pub fn commit(&mut self, written: WrittenFlush) -> Result<FlushStats, LedgerError> {
        if written.chain != self.chain || Some(written.flush) != self.sealed {
            return Err(LedgerError::Internal(format!(
                "flush {} of chain {} is not the flush sealed in chain {}",
                written.flush, written.chain, self.chain
            )));
        }
        self.poisoned = true;
        self.lock.renew()?;
        let sync = self.store.options().fsync;
        let WrittenFlush {
            lines,
            strata,
            heads,
            mut stats,
            ..
        } = written;
        for (table, pending) in Table::ALL.into_iter().zip(strata) {
            self.trees[table as usize].write_pending(pending, sync)?;
        }
        crate::failpoint::hit("tree.written");

        let mut text = String::new();
        for line in &lines {
            let json = serde_json::to_string(line)
                .map_err(|e| LedgerError::Internal(format!("manifest line: {e}")))?;
            text.push_str(&json);
            text.push('\n');
        }
        self.append_manifest(text, sync)?;
        crate::failpoint::hit("manifest.written");

        let last_offset = lines.iter().map(|l| l.last_offset).max();
        self.last_offset = self.last_offset.max(last_offset);
        for line in &lines {
            self.durable[line.table as usize] = heads[line.table as usize];
        }
        stats.last_offset = self.last_offset.unwrap_or_default();
        self.sealed = None;
        self.poisoned = false;
        Ok(stats)
    }

    /// Appends lines to the manifest (one append: the commit point of a
    /// flush or an amendment).
    fn append_manifest(&mut self, text: String, sync: bool) -> Result<(), LedgerError> {
        let appended = text.len() as u64;
        self.store
            .storage()
            .append(&self.manifest, self.manifest_len, text.into(), sync)?;
        self.manifest_len += appended;
        Ok(())
    }
}

/// The rows of one flush taken out of their writer ([`ChainWriter::seal`]),
/// with the trees' hashes they added.
pub struct SealedFlush {
    store: Store,
    chain: ChainId,
    flush: u64,
    /// Per table: the seq of its first row here (the durable size).
    first_seqs: [u64; Table::ALL.len()],
    /// Per table: the tree's size and root after these rows.
    heads: [(u64, Hash); Table::ALL.len()],
    strata: [StrataPending; Table::ALL.len()],
    events: Vec<EventRow>,
    rejects: Vec<RejectRow>,
    incidents: Vec<IncidentRow>,
    queries: Vec<QueryRow>,
}

/// A sealed flush whose segment files are durable, waiting for its
/// writer's [`ChainWriter::commit`].
pub struct WrittenFlush {
    chain: ChainId,
    flush: u64,
    lines: Vec<ManifestLine>,
    heads: [(u64, Hash); Table::ALL.len()],
    strata: [StrataPending; Table::ALL.len()],
    stats: FlushStats,
}

impl SealedFlush {
    /// Encodes each table's rows as a segment file and makes it durable
    /// (the first step of the flush protocol). The files are not part of
    /// the log until the commit: a crash before it leaves files that the
    /// next open deletes.
    pub fn write_segments(self) -> Result<WrittenFlush, LedgerError> {
        let tables: Vec<Table> = Table::ALL
            .into_iter()
            .filter(|&t| self.rows(t) > 0)
            .collect();
        let mut lines = Vec::with_capacity(tables.len());
        for &table in &tables {
            lines.push(self.write_segment(table, tables.len() as u32)?);
        }
        let stats = FlushStats {
            events: self.events.len(),
            rejects: self.rejects.len(),
            incidents: self.incidents.len(),
            queries: self.queries.len(),
            bytes: lines.iter().map(|l| l.bytes).sum(),
            segments: lines.len(),
            last_offset: lines
                .iter()
                .map(|l| l.last_offset)
                .max()
                .unwrap_or_default(),
        };
        Ok(WrittenFlush {
            chain: self.chain,
            flush: self.flush,
            lines,
            heads: self.heads,
            strata: self.strata,
            stats,
        })
    }

    fn rows(&self, table: Table) -> usize {
        match table {
            Table::Events => self.events.len(),
            Table::Rejects => self.rejects.len(),
            Table::Incidents => self.incidents.len(),
            Table::QueryLog => self.queries.len(),
        }
    }

    /// Writes the rows of one table as a durable segment file and returns
    /// its manifest line (not yet appended).
    fn write_segment(
        &self,
        table: Table,
        flush_segments: u32,
    ) -> Result<ManifestLine, LedgerError> {
        let first_seq = self.first_seqs[table as usize];
        let rel = segment_rel_path(table, &self.chain, first_seq, 0);
        let path = self.store.storage().describe(&rel);
        let opts = self.store.options();
        let chunk = opts.row_group_rows.max(1);
        let metadata = segment_metadata(
            table,
            &self.chain,
            first_seq,
            opts.pseudonym_key_id.as_deref(),
        );
        let (rows, first_offset, last_offset, times, (file, file_hash)) = match table {
            Table::Events => {
                let rows = &self.events;
                let batches = rows.chunks(chunk).map(|c| event_batch(&self.chain, c));
                let written = encode_segment(&path, schema_of(table), batches, metadata, opts)?;
                let times = rows.iter().map(|r| r.cols.time_us);
                let span = (times.clone().min(), times.max());
                let ends = (
                    rows.first().map(|r| r.offset),
                    rows.last().map(|r| r.offset),
                );
                (rows.len(), ends.0, ends.1, span, written)
            }
            Table::Rejects => {
                let rows = &self.rejects;
                let batches = rows.chunks(chunk).map(|c| reject_batch(&self.chain, c));
                let written = encode_segment(&path, schema_of(table), batches, metadata, opts)?;
                let ends = (
                    rows.first().map(|r| r.offset),
                    rows.last().map(|r| r.offset),
                );
                (rows.len(), ends.0, ends.1, (None, None), written)
            }
            Table::Incidents => {
                let rows = &self.incidents;
                let batches = rows.chunks(chunk).map(|c| incident_batch(&self.chain, c));
                let written = encode_segment(&path, schema_of(table), batches, metadata, opts)?;
                let ends = (
                    rows.first().map(|r| r.offset),
                    rows.last().map(|r| r.offset),
                );
                (rows.len(), ends.0, ends.1, (None, None), written)
            }
            Table::QueryLog => {
                let rows = &self.queries;
                let batches = rows.chunks(chunk).map(|c| query_batch(&self.chain, c));
                let written = encode_segment(&path, schema_of(table), batches, metadata, opts)?;
                let ends = (
                    rows.first().map(|r| r.offset),
                    rows.last().map(|r| r.offset),
                );
                (rows.len(), ends.0, ends.1, (None, None), written)
            }
        };
        let bytes = file.len() as u64;
        self.store.storage().create(&rel, file, opts.fsync)?;
        crate::failpoint::hit("segment.renamed");

        let (size, root) = self.heads[table as usize];
        debug_assert_eq!(size, first_seq + rows as u64);
        let missing = || LedgerError::Internal("segment without rows".into());
        Ok(ManifestLine {
            table,
            file: rel,
            first_seq,
            rows: rows as u64,
            first_offset: first_offset.ok_or_else(missing)?,
            last_offset: last_offset.ok_or_else(missing)?,
            root: hex::encode(root),
            file_blake3: hex::encode(file_hash),
            bytes,
            min_time_us: times.0,
            max_time_us: times.1,
            flush: self.flush,
            flush_segments,
            key_id: opts.encryption.as_ref().map(|k| k.id().to_owned()),
            amended: super::manifest::Amended::default(),
        })
    }
}

// The pipeline moves writers to blocking threads.
const _: () = {
    const fn assert_send<T: Send>() {}
    assert_send::<ChainWriter>();
    assert_send::<SealedFlush>();
    assert_send::<WrittenFlush>();
    assert_send::<Store>();
};

/// Deletes what a crashed flush, erasure or pruning left in a segment
/// folder; refuses files that no crash can explain.
///
/// Explained: `*.parquet.tmp` files; a segment at exactly the table's next
/// seq (a flush that crashed before its manifest append); and, for a
/// segment the manifest lists, its files of earlier generations or of the
/// next one (an erasure that crashed before its amendment), or all of its
/// files once pruned (a pruning or erasure that crashed before deleting
/// them). Leaving those would keep erased or expired rows on disk.
pub(crate) fn sweep_segment_dir(
    store: &Store,
    chain: &ChainId,
    table: Table,
    lines: &[ManifestLine],
    next_seq: u64,
) -> Result<(), LedgerError> {
    let storage = store.storage();
    let dir = store.segment_dir(table, chain);
    storage.make_dir(&dir)?;
    let listed: std::collections::HashMap<u64, &ManifestLine> = lines
        .iter()
        .filter(|l| l.table == table)
        .map(|l| (l.first_seq, l))
        .collect();
    for name in storage.list(&dir)? {
        let rel = join(&dir, &name);
        let why = if is_tmp(&name) {
            "a temporary segment left by a crash"
        } else {
            let Some((first_seq, generation)) = parse_segment_file_name(&name) else {
                continue;
            };
            match listed.get(&first_seq) {
                Some(line) if line.is_pruned() => "a pruned segment (crash before its deletion)",
                Some(line) if generation == line.generation() => continue,
                Some(line) if generation < line.generation() => {
                    "a segment an erasure replaced (crash before its deletion)"
                }
                Some(line) if generation == line.generation() + 1 => {
                    "an erasure's rewrite that no amendment names (crash before the manifest append)"
                }
                None if first_seq == next_seq && generation == 0 => {
                    "a segment that no manifest line names (crash before the manifest append)"
                }
                _ => {
                    return Err(LedgerError::corrupt(
                        storage.describe(&rel),
                        "segment file is not in the manifest and no crash explains it",
                    ));
                }
            }
        };
        tracing::warn!(file = %storage.describe(&rel).display(), "deleting {why}");
        storage.delete(&rel)?;
    }
    Ok(())
}
