//! A store folder: its marker file, its chains, and read-only access to
//! their manifests. Appending is [`ChainWriter`](super::ChainWriter)'s job.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::error::{IoContext, LedgerError};
use super::fsutil::{ensure_dir, list_dir, sync_dir, write_atomic};
use super::manifest::{self, Groups, ManifestLine, Table};
use super::{ChainId, ChainWriter};

/// The marker file at the root of every store.
pub const MARKER_FILE: &str = "custos-store.json";
pub const STORE_FORMAT: &str = "custos-store";
pub const STORE_VERSION: u64 = 1;
const MARKER_TEXT: &str = "{\"format\":\"custos-store\",\"version\":1,\"hash\":\"blake3\"}\n";

/// How segments are written.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// zstd level of segment pages (1–22).
    pub zstd_level: i32,
    /// Maximum rows per Parquet row group.
    pub row_group_rows: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            zstd_level: 3,
            row_group_rows: 65_536,
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
    root: PathBuf,
    opts: StoreOptions,
}

#[derive(Deserialize)]
struct Marker {
    format: String,
    version: u64,
    hash: String,
}

impl Store {
    /// Opens the store at `root`, creating the folder and its layout if it
    /// does not exist or is empty. Refuses a folder whose marker names
    /// another format, version or hash, and a non-empty folder without one.
    pub fn open(root: &Path, opts: StoreOptions) -> Result<Store, LedgerError> {
        if !(1..=22).contains(&opts.zstd_level) || opts.row_group_rows == 0 {
            return Err(LedgerError::InvalidOptions(format!(
                "zstd_level must be 1 to 22 (is {}) and row_group_rows > 0 (is {})",
                opts.zstd_level, opts.row_group_rows
            )));
        }
        ensure_dir(root)?;
        let marker_path = root.join(MARKER_FILE);
        match fs::read(&marker_path) {
            Ok(bytes) => check_marker(&marker_path, &bytes)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !list_dir(root)?.is_empty() {
                    return Err(LedgerError::NotAStore {
                        path: root.to_path_buf(),
                        what: format!("the folder is not empty and has no {MARKER_FILE}"),
                    });
                }
                for dir in ["manifests", "events", "rejects"] {
                    ensure_dir(&root.join(dir))?;
                }
                // The marker goes last: a folder with a marker has a layout.
                write_atomic(&marker_path, MARKER_TEXT.as_bytes())?;
                sync_dir(root)?;
            }
            Err(e) => return Err(LedgerError::io(&marker_path, e)),
        }
        Ok(Store {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                opts,
            }),
        })
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub fn options(&self) -> &StoreOptions {
        &self.inner.opts
    }

    /// Every chain that has a manifest, in order.
    pub fn chains(&self) -> Result<Vec<ChainId>, LedgerError> {
        list_chains(self.root())
    }

    /// The durable segments of a chain, in order: its manifest lines,
    /// without a torn tail or an incomplete last flush (which are a crash
    /// that the next writer repairs). Errors on any other bad line.
    pub fn manifest(&self, chain: &ChainId) -> Result<Vec<ManifestLine>, LedgerError> {
        chain.validate()?;
        let path = self.manifest_path(chain);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(LedgerError::io(&path, e)),
        };
        Ok(durable_lines(&path, &bytes)?.0)
    }

    /// Opens a chain for appending; see [`ChainWriter`].
    pub fn chain_writer(&self, chain: &ChainId) -> Result<ChainWriter, LedgerError> {
        ChainWriter::open(self.clone(), chain.clone())
    }

    pub(crate) fn manifest_path(&self, chain: &ChainId) -> PathBuf {
        self.root().join(manifest::manifest_rel_path(chain))
    }

    /// The folder of a table's segments of a chain.
    pub(crate) fn segment_dir(&self, table: Table, chain: &ChainId) -> PathBuf {
        self.root()
            .join(table.as_str())
            .join(&chain.stream)
            .join(chain.partition.to_string())
    }
}

fn check_marker(path: &Path, bytes: &[u8]) -> Result<(), LedgerError> {
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
    if marker.hash != "blake3" {
        return Err(not(format!("hash is {:?}, not \"blake3\"", marker.hash)));
    }
    Ok(())
}

/// Chains found under `root/manifests`, sorted.
pub(crate) fn list_chains(root: &Path) -> Result<Vec<ChainId>, LedgerError> {
    let dir = root.join("manifests");
    let mut chains = Vec::new();
    for stream in list_dir(&dir)? {
        let stream_dir = dir.join(&stream);
        if !stream_dir.is_dir() {
            continue;
        }
        for name in list_dir(&stream_dir)? {
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

/// Splits manifest bytes into the committed lines and the byte length they
/// span. A torn tail and an incomplete last flush are left out; any other
/// defect is an error.
pub(crate) fn durable_lines(
    path: &Path,
    bytes: &[u8],
) -> Result<(Vec<ManifestLine>, u64, bool), LedgerError> {
    let parsed = manifest::parse(bytes);
    let mut lines = Vec::with_capacity(parsed.lines.len());
    let mut ends = Vec::with_capacity(parsed.lines.len());
    for (_, end, line) in parsed.lines {
        lines.push(line.map_err(|what| LedgerError::corrupt(path, what))?);
        ends.push(end);
    }
    let refs: Vec<&ManifestLine> = lines.iter().collect();
    let keep = match manifest::check_groups(&refs) {
        Ok(Groups::Complete { .. }) => lines.len(),
        Ok(Groups::IncompleteTail { lines: n, .. }) => lines.len() - n,
        Err((i, what)) => {
            return Err(LedgerError::corrupt(
                path,
                format!("manifest line {}: {what}", i + 1),
            ));
        }
    };
    let repaired = parsed.torn_tail || keep < lines.len();
    lines.truncate(keep);
    let len = if keep == 0 { 0 } else { ends[keep - 1] };
    Ok((lines, len, repaired))
}

/// Whether a file name in a segment folder is a leftover temporary file.
pub(crate) fn is_tmp(name: &str) -> bool {
    name.ends_with(".parquet.tmp")
}

pub(crate) fn remove(path: &Path) -> Result<(), LedgerError> {
    fs::remove_file(path).at(path)
}
