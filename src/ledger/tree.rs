//! The Merkle tree of one log (one table of one chain) on disk, so that
//! roots and proofs for any size never reread the segments.
//!
//! The tree has the structure of RFC 6962 ([`super::merkle`]); leaf `i` is
//! the record of seq `i`. It is kept as **strata**: for each height
//! `h = 0, 8, 16, …`, the file `tree/<table>/<stream>/<partition>/<h>.hashes`
//! holds the hashes of the complete, aligned subtrees of `2^h` leaves, in
//! order, 32 bytes each, nothing else (height 0: the leaf hashes). A tree of
//! `n` leaves has exactly `floor(n / 2^h) * 32` bytes in stratum `h`. Any
//! complete aligned subtree is then one read of at most 128 hashes, and any
//! root or proof O(log n) such reads.
//!
//! Strata are appended and fsynced before the manifest line that covers
//! them, so after a crash they can only be longer than the manifest says;
//! reopening truncates them (see [`TreeAppender::open`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::LedgerError;
use super::hash::Hash;
use super::merkle::HashAlg;
use super::storage::{Local, ReadAt, Storage, join};

/// Heights between strata.
pub const STRIDE: u32 = 8;
/// Strata kept: heights 0, 8, …, 56 (room for 2^64 leaves).
const STRATA: usize = 8;

/// The file of the stratum at `height` in a log's tree folder.
pub fn stratum_path(dir: &Path, height: u32) -> PathBuf {
    dir.join(format!("{height}.hashes"))
}

/// [`stratum_path`] relative to the store root.
fn stratum_rel(dir: &str, height: u32) -> String {
    join(dir, &format!("{height}.hashes"))
}

/// Complete subtrees at the right edge of a tree, largest first: the
/// "frontier" from which the root of the leaves pushed so far follows.
#[derive(Debug, Clone)]
pub struct Frontier {
    alg: HashAlg,
    size: u64,
    /// One hash per set bit of `size`, highest bit first.
    nodes: Vec<Hash>,
}

impl Frontier {
    pub fn new(alg: HashAlg) -> Self {
        Frontier {
            alg,
            size: 0,
            nodes: Vec::new(),
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn alg(&self) -> HashAlg {
        self.alg
    }

    /// Appends a leaf. `complete(height, index, hash)` is called for every
    /// complete aligned subtree it closes whose height is a multiple of
    /// [`STRIDE`] (the leaf itself at height 0 first).
    pub fn push(&mut self, leaf: Hash, mut complete: impl FnMut(u32, u64, &Hash)) {
        complete(0, self.size, &leaf);
        let mut node = leaf;
        let mut height = 0;
        let mut index = self.size;
        while index & 1 == 1 {
            let left = self.nodes.pop().expect("a set bit has a node");
            node = self.alg.node(&left, &node);
            height += 1;
            index >>= 1;
            if height % STRIDE == 0 {
                complete(height, index, &node);
            }
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// The root of the leaves pushed so far (RFC 6962 MTH).
    pub fn root(&self) -> Hash {
        let mut it = self.nodes.iter().rev();
        let Some(last) = it.next() else {
            return self.alg.empty_root();
        };
        it.fold(*last, |right, left| self.alg.node(left, &right))
    }
}

/// Random access to the strata of one log.
pub struct TreeReader {
    alg: HashAlg,
    storage: Arc<dyn Storage>,
    dir: String,
    files: Vec<Option<Box<dyn ReadAt>>>,
    /// Leaves the strata hold (length of stratum 0), read at open.
    leaves: u64,
}

impl TreeReader {
    /// Opens the strata in a local folder.
    pub fn open(dir: &Path, alg: HashAlg) -> Result<TreeReader, LedgerError> {
        TreeReader::open_in(Arc::new(Local::new(dir)), "", alg)
    }

    /// Opens the strata in folder `dir` of a store's files.
    pub(crate) fn open_in(
        storage: Arc<dyn Storage>,
        dir: &str,
        alg: HashAlg,
    ) -> Result<TreeReader, LedgerError> {
        let leaves = storage.len(&stratum_rel(dir, 0))?.unwrap_or(0) / 32;
        Ok(TreeReader {
            alg,
            storage,
            dir: dir.to_owned(),
            files: (0..STRATA).map(|_| None).collect(),
            leaves,
        })
    }

    /// Leaves stored in the strata (may be ahead of the manifest after a
    /// crash; callers take sizes from the manifest or a checkpoint).
    pub fn leaves(&self) -> u64 {
        self.leaves
    }

    fn check_size(&self, size: u64) -> Result<(), LedgerError> {
        if size > self.leaves {
            return Err(LedgerError::corrupt(
                self.storage.describe(&stratum_rel(&self.dir, 0)),
                format!("the tree holds {} leaves, not {size}", self.leaves),
            ));
        }
        Ok(())
    }

    /// Reads `n` consecutive hashes of a stratum from `index` on.
    fn read(&mut self, stratum: usize, index: u64, n: usize) -> Result<Vec<Hash>, LedgerError> {
        let rel = stratum_rel(&self.dir, stratum as u32 * STRIDE);
        let short = || {
            LedgerError::corrupt(
                self.storage.describe(&rel),
                "the stratum is shorter than the tree needs",
            )
        };
        let file = match &mut self.files[stratum] {
            Some(file) => file,
            slot => slot.insert(self.storage.open(&rel)?.ok_or_else(short)?),
        };
        if index * 32 + n as u64 * 32 > file.len() {
            return Err(short());
        }
        let bytes = file.read_at(index * 32, n * 32)?;
        Ok(bytes
            .chunks_exact(32)
            .map(|c| c.try_into().expect("32-byte chunks"))
            .collect())
    }

    /// The hash of the complete aligned subtree of `2^height` leaves
    /// starting at leaf `index << height`.
    pub fn subtree(&mut self, height: u32, index: u64) -> Result<Hash, LedgerError> {
        let stratum = (height / STRIDE) as usize;
        let below = height % STRIDE;
        let mut level = self.read(stratum, index << below, 1 << below)?;
        while level.len() > 1 {
            level = level
                .chunks_exact(2)
                .map(|p| self.alg.node(&p[0], &p[1]))
                .collect();
        }
        Ok(level[0])
    }

    /// The leaf hash at `index`.
    pub fn leaf(&mut self, index: u64) -> Result<Hash, LedgerError> {
        self.subtree(0, index)
    }

    /// MTH of the tree of the first `size` leaves.
    pub fn root(&mut self, size: u64) -> Result<Hash, LedgerError> {
        self.check_size(size)?;
        let mut memo = HashMap::new();
        self.range(0, size, &mut memo)
    }

    /// MTH of leaves `[start, end)`, where the range is a node of the
    /// RFC 6962 recursion (its left part is always complete and aligned).
    fn range(
        &mut self,
        start: u64,
        end: u64,
        memo: &mut HashMap<(u64, u64), Hash>,
    ) -> Result<Hash, LedgerError> {
        let n = end - start;
        if n == 0 {
            return Ok(self.alg.empty_root());
        }
        if n.is_power_of_two() && start.is_multiple_of(n) {
            return self.subtree(n.trailing_zeros(), start / n);
        }
        if let Some(hash) = memo.get(&(start, end)) {
            return Ok(*hash);
        }
        let k = split(n);
        let left = self.range(start, start + k, memo)?;
        let right = self.range(start + k, end, memo)?;
        let hash = self.alg.node(&left, &right);
        memo.insert((start, end), hash);
        Ok(hash)
    }

    /// The audit path of leaf `index` in the tree of `size` leaves
    /// (RFC 6962, 2.1.1).
    pub fn inclusion_proof(&mut self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(size)?;
        if index >= size {
            return Err(LedgerError::Internal(format!(
                "leaf {index} is not in a tree of {size}"
            )));
        }
        let mut memo = HashMap::new();
        let mut path = Vec::new();
        let (mut start, mut end) = (0, size);
        // Walk down, collecting siblings from the root to the leaf.
        while end - start > 1 {
            let k = split(end - start);
            if index < start + k {
                path.push(self.range(start + k, end, &mut memo)?);
                end = start + k;
            } else {
                path.push(self.range(start, start + k, &mut memo)?);
                start += k;
            }
        }
        path.reverse();
        Ok(path)
    }

    /// The consistency proof from the tree of `old` leaves to the tree of
    /// `new` leaves (RFC 6962, 2.1.2); `0 < old <= new`.
    pub fn consistency_proof(&mut self, old: u64, new: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check_size(new)?;
        if old == 0 || old > new {
            return Err(LedgerError::Internal(format!(
                "no consistency proof from {old} to {new}"
            )));
        }
        let mut memo = HashMap::new();
        let mut proof = Vec::new();
        let (mut start, mut end, mut m, mut whole) = (0, new, old, true);
        while m != end - start {
            let k = split(end - start);
            if m <= k {
                proof.push(self.range(start + k, end, &mut memo)?);
                end = start + k;
            } else {
                proof.push(self.range(start, start + k, &mut memo)?);
                start += k;
                m -= k;
                whole = false;
            }
        }
        if !whole {
            proof.push(self.range(start, end, &mut memo)?);
        }
        proof.reverse();
        Ok(proof)
    }
}

/// Largest power of two strictly smaller than `n` (n >= 2).
fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The appender of one log's strata.
pub struct TreeAppender {
    storage: Arc<dyn Storage>,
    dir: String,
    frontier: Frontier,
    /// Durable length of each stratum file.
    lens: Vec<u64>,
    /// Hashes waiting to be appended, per stratum.
    pending: Vec<Vec<u8>>,
}

impl TreeAppender {
    /// Opens the strata of a tree whose durable size is `size` (from the
    /// manifest): strata longer than that are truncated (a crash between
    /// their append and the manifest's); shorter is corruption.
    pub fn open(dir: &Path, alg: HashAlg, size: u64) -> Result<TreeAppender, LedgerError> {
        TreeAppender::open_in(Arc::new(Local::new(dir)), "", alg, size)
    }

    /// [`TreeAppender::open`] for the strata in folder `dir` of a store's
    /// files.
    pub(crate) fn open_in(
        storage: Arc<dyn Storage>,
        dir: &str,
        alg: HashAlg,
        size: u64,
    ) -> Result<TreeAppender, LedgerError> {
        storage.make_dir(dir)?;
        let mut lens = Vec::with_capacity(STRATA);
        for stratum in 0..STRATA {
            let height = stratum as u32 * STRIDE;
            let rel = stratum_rel(dir, height);
            let want = if height < 64 {
                (size >> height) * 32
            } else {
                0
            };
            let len = storage.len(&rel)?.unwrap_or(0);
            if len < want {
                return Err(LedgerError::corrupt(
                    storage.describe(&rel),
                    format!("the stratum has {len} bytes; the manifest's tree needs {want}"),
                ));
            }
            if len > want {
                tracing::warn!(
                    file = %storage.describe(&rel).display(),
                    dropped_bytes = len - want,
                    "tree stratum is ahead of the manifest (crash before the manifest append); truncating it"
                );
                storage.truncate(&rel, want)?;
            }
            lens.push(want);
        }
        let mut reader = TreeReader::open_in(storage.clone(), dir, alg)?;
        let frontier = rebuild_frontier(&mut reader, alg, size)?;
        Ok(TreeAppender {
            storage,
            dir: dir.to_owned(),
            frontier,
            lens,
            pending: vec![Vec::new(); STRATA],
        })
    }

    /// Appends a leaf hash (buffered until [`Self::write`]).
    pub fn push(&mut self, leaf: Hash) {
        let pending = &mut self.pending;
        self.frontier.push(leaf, |height, _, hash| {
            pending[(height / STRIDE) as usize].extend_from_slice(hash);
        });
    }

    /// Leaves pushed, durable or not.
    pub fn size(&self) -> u64 {
        self.frontier.size()
    }

    /// The root over every leaf pushed.
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// Appends the buffered hashes to the strata and, with `sync`, fsyncs
    /// them.
    pub fn write(&mut self, sync: bool) -> Result<(), LedgerError> {
        let pending = self.take_pending();
        self.write_pending(pending, sync)
    }

    /// Takes the hashes buffered since the last take: those of the leaves
    /// pushed so far, to be written later by [`Self::write_pending`] while
    /// more leaves are pushed.
    pub fn take_pending(&mut self) -> StrataPending {
        StrataPending(
            self.pending
                .iter_mut()
                .map(|bytes| bytes::Bytes::from(std::mem::take(bytes)))
                .collect(),
        )
    }

    /// Appends hashes taken by [`Self::take_pending`] to the strata (in
    /// the order they were taken) and, with `sync`, fsyncs them.
    pub fn write_pending(&mut self, pending: StrataPending, sync: bool) -> Result<(), LedgerError> {
        for (stratum, chunk) in pending.0.into_iter().enumerate() {
            if chunk.is_empty() {
                continue;
            }
            let rel = stratum_rel(&self.dir, stratum as u32 * STRIDE);
            let n = chunk.len() as u64;
            self.storage.append(&rel, self.lens[stratum], chunk, sync)?;
            self.lens[stratum] += n;
        }
        Ok(())
    }
}

/// Hashes of a tree's strata not yet written ([`TreeAppender::take_pending`]).
#[derive(Debug, Default)]
pub struct StrataPending(Vec<bytes::Bytes>);

/// The frontier of the tree of `size` leaves, from the strata.
fn rebuild_frontier(
    reader: &mut TreeReader,
    alg: HashAlg,
    size: u64,
) -> Result<Frontier, LedgerError> {
    let mut nodes = Vec::new();
    let mut start = 0u64;
    for height in (0..64).rev() {
        if size & (1 << height) != 0 {
            nodes.push(reader.subtree(height, start >> height)?);
            start += 1 << height;
        }
    }
    Ok(Frontier { alg, size, nodes })
}

#[cfg(test)]
mod tests;
