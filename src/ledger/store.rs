//! A store folder: its marker file, its chains, and read-only access to
//! their manifests. Appending is [`ChainWriter`](super::ChainWriter)'s job.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::error::LedgerError;
use super::manifest::{self, Entry, Groups, ManifestLine, Table};
use super::merkle::HashAlg;
use super::segment::SegmentFile;
use super::storage::{Bucket, Local, Storage, is_bucket_url};
use super::{ChainId, ChainWriter};

/// The marker file at the root of every store.
pub const MARKER_FILE: &str = "custos-store.json";
pub const STORE_FORMAT: &str = "custos-store";
pub const STORE_VERSION: u64 = 2;

/// How segments are written.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// zstd level of segment pages (1–22).
    pub zstd_level: i32,
    /// Maximum rows per Parquet row group.
    pub row_group_rows: usize,
    /// Hash function of a new store's trees. An existing store keeps its
    /// own; opening it with another one is refused.
    pub hash: HashAlg,
    /// Origin of a new store (the prefix of its logs' checkpoint origins);
    /// `None` makes `custos/<16 random hex digits>`. An existing store keeps
    /// its own; opening it with another one is refused.
    pub origin: Option<String>,
    /// Whether a flush fsyncs what it wrote (segments, their folders, tree
    /// strata, the manifest). Only benchmarks turn it off, to measure what
    /// durability costs: without it a power loss can lose acknowledged
    /// rows.
    pub fsync: bool,
    /// The id of the pseudonym key the rows are made under (never the key
    /// itself; `Pseudonymizer::key_id`), written into every new segment's
    /// metadata as `custos.pseudonym_key_id` so that, after a key rotation,
    /// an operator knows which key a segment's pseudonyms and sealed
    /// rejects need. `None` writes no such entry.
    pub pseudonym_key_id: Option<String>,
    /// The key new segments are encrypted with (Parquet modular
    /// encryption), and existing ones decrypted with; `None` writes them
    /// in plaintext and cannot read encrypted ones.
    pub encryption: Option<super::SegmentKey>,
    /// How long a writer's lease on a chain in a bucket lasts without
    /// renewal (see [`super::storage`]); unused in a folder.
    pub lease: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            zstd_level: 3,
            row_group_rows: 65_536,
            hash: HashAlg::Blake3,
            origin: None,
            fsync: true,
            pseudonym_key_id: None,
            encryption: None,
            lease: std::time::Duration::from_secs(10),
        }
    }
}

/// An open store folder. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The folder or `s3://` URL the store was opened at.
    root: PathBuf,
    storage: Arc<dyn Storage>,
    opts: StoreOptions,
    marker: Marker,
}

/// The content of `custos-store.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Marker {
    pub format: String,
    pub version: u64,
    pub hash: String,
    pub origin: String,
}

impl Store {
    /// Opens the store at `root` (a folder, or an `s3://bucket/prefix` URL:
    /// see [`super::storage`]), creating its layout if it does not exist or
    /// is empty. Refuses a store whose marker names another format, version
    /// or hash, a non-empty folder or prefix without one, and a bucket that
    /// cannot be reached.
    pub fn open(root: &Path, opts: StoreOptions) -> Result<Store, LedgerError> {
        if !(1..=22).contains(&opts.zstd_level) || opts.row_group_rows == 0 {
            return Err(LedgerError::InvalidOptions(format!(
                "zstd_level must be 1 to 22 (is {}) and row_group_rows > 0 (is {})",
                opts.zstd_level, opts.row_group_rows
            )));
        }
        if let Some(origin) = &opts.origin
            && !valid_origin(origin)
        {
            return Err(LedgerError::InvalidOptions(format!(
                "origin {origin:?} must be 1 to 200 bytes, without spaces, `+` or control characters"
            )));
        }
        let storage = storage_at(root, opts.lease)?;
        storage.make_dir("")?;
        let marker_path = storage.describe(MARKER_FILE);
        let marker = match storage.read(MARKER_FILE)? {
            Some(bytes) => {
                let (marker, alg) = parse_marker(&marker_path, &bytes)?;
                let refuse = |what: String| LedgerError::NotAStore {
                    path: marker_path.clone(),
                    what,
                };
                if alg != opts.hash {
                    return Err(refuse(format!(
                        "the store hashes with {}, the configuration asks for {}",
                        marker.hash,
                        opts.hash.name()
                    )));
                }
                if let Some(origin) = &opts.origin
                    && *origin != marker.origin
                {
                    return Err(refuse(format!(
                        "the store's origin is {:?}, the configuration asks for {origin:?}",
                        marker.origin
                    )));
                }
                marker
            }
            None => {
                if !storage.list("")?.is_empty() {
                    return Err(LedgerError::NotAStore {
                        path: root.to_path_buf(),
                        what: format!("the folder is not empty and has no {MARKER_FILE}"),
                    });
                }
                for dir in LAYOUT_DIRS {
                    storage.make_dir(dir)?;
                }
                let marker = Marker {
                    format: STORE_FORMAT.into(),
                    version: STORE_VERSION,
                    hash: opts.hash.name().into(),
                    origin: opts.origin.clone().unwrap_or_else(random_origin),
                };
                let mut text = serde_json::to_string(&marker)
                    .map_err(|e| LedgerError::Internal(format!("marker: {e}")))?;
                text.push('\n');
                // The marker goes last: a folder with a marker has a layout.
                // In a bucket, of two processes creating one store at once
                // only one succeeds.
                storage.create(MARKER_FILE, text.into(), true)?;
                marker
            }
        };
        Ok(Store {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                storage,
                opts,
                marker,
            }),
        })
    }

    /// Opens an existing store with whatever hash and origin it has.
    pub fn open_existing(root: &Path) -> Result<Store, LedgerError> {
        Store::open_existing_with(root, None)
    }

    /// Opens an existing store, with the key its encrypted segments need.
    pub fn open_existing_with(
        root: &Path,
        key: Option<super::SegmentKey>,
    ) -> Result<Store, LedgerError> {
        let storage = storage_at(root, StoreOptions::default().lease)?;
        let marker_path = storage.describe(MARKER_FILE);
        let bytes = storage
            .read(MARKER_FILE)?
            .ok_or_else(|| LedgerError::NotAStore {
                path: root.to_path_buf(),
                what: format!("it has no {MARKER_FILE}"),
            })?;
        let (marker, hash) = parse_marker(&marker_path, &bytes)?;
        let opts = StoreOptions {
            hash,
            origin: Some(marker.origin.clone()),
            encryption: key,
            ..StoreOptions::default()
        };
        Store::open(root, opts)
    }

    /// The hash function of the store's trees.
    pub fn alg(&self) -> HashAlg {
        self.inner.opts.hash
    }

    /// The store's origin: the prefix of its logs' checkpoint origins.
    pub fn origin(&self) -> &str {
        &self.inner.marker.origin
    }

    /// The folder or `s3://` URL the store was opened at.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The store's files.
    pub(crate) fn storage(&self) -> &dyn Storage {
        self.inner.storage.as_ref()
    }

    pub(crate) fn shared_storage(&self) -> Arc<dyn Storage> {
        self.inner.storage.clone()
    }

    /// The bucket the store is in, if it is in one.
    pub fn bucket(&self) -> Option<&Bucket> {
        self.inner.storage.as_bucket()
    }

    /// A segment file, read whole.
    pub(crate) fn segment(&self, rel: &str) -> Result<SegmentFile, LedgerError> {
        let path = self.storage().describe(rel);
        match self.storage().read(rel)? {
            Some(bytes) => Ok(SegmentFile { path, bytes }),
            None => Err(LedgerError::io(
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "segment file is missing"),
            )),
        }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    /// Every chain that has a manifest, in order.
    pub fn chains(&self) -> Result<Vec<ChainId>, LedgerError> {
        list_chains(self.storage())
    }

    /// The chains that may hold `table`: the alert stage's
    /// (`+incidents/<n>`) for `incidents`, the query surfaces'
    /// (`+queries/<n>`) for `query_log`, the source chains for the rest.
    pub fn chains_with(&self, table: Table) -> Result<Vec<ChainId>, LedgerError> {
        Ok(self
            .chains()?
            .into_iter()
            .filter(|c| table.held_by(&c.stream))
            .collect())
    }

    /// The durable segments of a chain, in order: its manifest lines,
    /// without a torn tail or an incomplete last flush (which are a crash
    /// that the next writer repairs). Errors on any other bad line.
    pub fn manifest(&self, chain: &ChainId) -> Result<Vec<ManifestLine>, LedgerError> {
        chain.validate()?;
        let rel = manifest::manifest_rel_path(chain);
        let Some(bytes) = self.storage().read(&rel)? else {
            return Ok(Vec::new());
        };
        Ok(durable_lines(&self.storage().describe(&rel), chain, &bytes)?.0)
    }

    /// The key segments are encrypted and decrypted with, if any.
    pub fn key(&self) -> Option<&super::SegmentKey> {
        self.inner.opts.encryption.as_ref()
    }

    /// Whether this store's key can read a segment: `KeyNeeded` naming the
    /// segment's key when it is encrypted under another one, or when no
    /// key is configured.
    pub fn check_key(&self, line: &ManifestLine) -> Result<(), LedgerError> {
        let have = self.key().map(|k| k.id());
        match &line.key_id {
            Some(needed) if Some(needed.as_str()) != have => Err(LedgerError::KeyNeeded {
                path: self.storage().describe(&line.file),
                needed: needed.clone(),
                have: have.map(str::to_owned),
            }),
            _ => Ok(()),
        }
    }

    /// Opens a chain for appending; see [`ChainWriter`].
    pub fn chain_writer(&self, chain: &ChainId) -> Result<ChainWriter, LedgerError> {
        ChainWriter::open(self.clone(), chain.clone())
    }

    /// How long a new writer waits for the previous writer's lock on a
    /// chain: long enough for a dead writer's lease in a bucket to run
    /// out, and for a live owner that is slow to hand the chain over (a
    /// member finishing its revoke, a lock a shared file system has not
    /// yet released).
    pub fn takeover_wait(&self) -> std::time::Duration {
        (self.inner.opts.lease * 2).max(std::time::Duration::from_secs(30))
    }

    /// [`Store::chain_writer`], waiting up to `wait` (retrying with a
    /// growing pause) while another writer holds the chain.
    pub fn chain_writer_waiting(
        &self,
        chain: &ChainId,
        wait: std::time::Duration,
    ) -> Result<ChainWriter, LedgerError> {
        use std::time::{Duration, Instant};
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(50);
        loop {
            match self.chain_writer(chain) {
                Err(LedgerError::Locked { .. }) if Instant::now() < deadline => {
                    tracing::warn!(chain = %chain, "the chain is locked by another writer; waiting");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// The folder of a table's segments of a chain, relative to the root.
    pub(crate) fn segment_dir(&self, table: Table, chain: &ChainId) -> String {
        format!("{}/{}/{}", table.as_str(), chain.stream, chain.partition)
    }
}

/// Folders every store has.
pub(crate) const LAYOUT_DIRS: [&str; 5] = ["manifests", "events", "rejects", "tree", "checkpoints"];

fn random_origin() -> String {
    use rand::{RngCore, SeedableRng};
    let mut id = [0u8; 8];
    rand::rngs::StdRng::from_os_rng().fill_bytes(&mut id);
    format!("custos/{}", hex::encode(id))
}

/// Whether a text can be a store origin: a schema-less URL-like name, as
/// C2SP recommends for checkpoint origins.
pub fn valid_origin(origin: &str) -> bool {
    !origin.is_empty()
        && origin.len() <= 200
        && !origin
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '+')
}

/// Parses and checks a marker; returns it and its hash function.
pub(crate) fn parse_marker(path: &Path, bytes: &[u8]) -> Result<(Marker, HashAlg), LedgerError> {
    let not = |what: String| LedgerError::NotAStore {
        path: path.to_path_buf(),
        what,
    };
    let marker: Marker = serde_json::from_slice(bytes)
        .map_err(|e| not(format!("{MARKER_FILE} does not parse: {e}")))?;
    if marker.format != STORE_FORMAT {
        return Err(not(format!(
            "format is {:?}, not {STORE_FORMAT:?}",
            marker.format
        )));
    }
    if marker.version != STORE_VERSION {
        return Err(not(format!(
            "version is {}, this build reads version {STORE_VERSION}",
            marker.version
        )));
    }
    let Some(alg) = HashAlg::from_name(&marker.hash) else {
        return Err(not(format!(
            "hash is {:?}, not \"blake3\" or \"sha256\"",
            marker.hash
        )));
    };
    if !valid_origin(&marker.origin) {
        return Err(not(format!("origin {:?} is not valid", marker.origin)));
    }
    Ok((marker, alg))
}

/// The storage of a store location: a folder, or a bucket for `s3://`.
pub(crate) fn storage_at(
    root: &Path,
    lease: std::time::Duration,
) -> Result<Arc<dyn Storage>, LedgerError> {
    match root.to_str().filter(|r| is_bucket_url(r)) {
        Some(url) => Ok(Arc::new(Bucket::connect(url, lease)?)),
        None => Ok(Arc::new(Local::new(root))),
    }
}

/// Chains found under `manifests/`, sorted.
pub(crate) fn list_chains(storage: &dyn Storage) -> Result<Vec<ChainId>, LedgerError> {
    let mut chains = Vec::new();
    for stream in storage.list("manifests")? {
        if stream.ends_with(".jsonl") {
            continue;
        }
        for name in storage.list(&format!("manifests/{stream}"))? {
            let Some(partition) = name.strip_suffix(".jsonl").and_then(|p| p.parse().ok()) else {
                continue;
            };
            let chain = ChainId::new(stream.clone(), partition);
            if chain.validate().is_ok() && chain.partition.to_string() + ".jsonl" == name {
                chains.push(chain);
            }
        }
    }
    chains.sort();
    Ok(chains)
}

/// Splits manifest bytes into the committed segment lines, with the
/// amendment lines applied to them, and the byte length they span. A torn
/// tail and an incomplete last flush are left out; any other defect is an
/// error.
pub(crate) fn durable_lines(
    path: &Path,
    chain: &ChainId,
    bytes: &[u8],
) -> Result<(Vec<ManifestLine>, u64, bool), LedgerError> {
    let parsed = manifest::parse(bytes);
    let mut entries = Vec::with_capacity(parsed.lines.len());
    let mut ends = Vec::with_capacity(parsed.lines.len());
    for (_, end, entry) in parsed.lines {
        entries.push(entry.map_err(|what| LedgerError::corrupt(path, what))?);
        ends.push(end);
    }
    let at = |i: usize, what: String| {
        LedgerError::corrupt(path, format!("manifest line {}: {what}", i + 1))
    };
    // Flush groups are made of segment lines; amendments sit between them.
    let (segments, index): (Vec<&ManifestLine>, Vec<usize>) = entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match e {
            Entry::Segment(line) => Some((line, i)),
            Entry::Amend(_) => None,
        })
        .unzip();
    let keep = match manifest::check_groups(&segments) {
        Ok(Groups::Complete { .. }) => entries.len(),
        Ok(Groups::IncompleteTail { lines: n, .. }) => {
            let first = index[segments.len() - n];
            if first + n != entries.len() {
                return Err(at(first, "an amendment follows an incomplete flush".into()));
            }
            first
        }
        Err((i, what)) => return Err(at(index[i], what)),
    };
    let mut before = 0;
    for (i, entry) in entries.iter().enumerate().take(keep) {
        match entry {
            Entry::Segment(_) => before += 1,
            Entry::Amend(_) if manifest::inside_group(&segments, before) => {
                let flush = segments[before - 1].flush;
                return Err(at(i, format!("an amendment line inside flush {flush}")));
            }
            Entry::Amend(_) => {}
        }
    }
    let repaired = parsed.torn_tail || keep < entries.len();
    let len = if keep == 0 { 0 } else { ends[keep - 1] };
    let mut lines = Vec::with_capacity(segments.len());
    for (i, entry) in entries.into_iter().take(keep).enumerate() {
        match entry {
            Entry::Segment(line) => lines.push(line),
            Entry::Amend(amendment) => {
                manifest::apply_amendment(&mut lines, &amendment, chain).map_err(|w| at(i, w))?;
            }
        }
    }
    Ok((lines, len, repaired))
}

/// Whether a file name in a segment folder is a leftover temporary file.
pub(crate) fn is_tmp(name: &str) -> bool {
    name.ends_with(".parquet.tmp")
}

/// The tree folder of a log, relative to the store root.
pub(crate) fn tree_rel_dir(table: Table, chain: &ChainId) -> String {
    format!(
        "tree/{}/{}/{}",
        table.as_str(),
        chain.stream,
        chain.partition
    )
}

/// The checkpoint file of a chain, relative to the store root.
pub(crate) fn checkpoint_rel_path(chain: &ChainId) -> String {
    format!("checkpoints/{}/{}.jsonl", chain.stream, chain.partition)
}
