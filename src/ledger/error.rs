//! Errors of the ledger. Every variant that concerns a file names it; an
//! [`LedgerError::Internal`] means a bug in custos, not bad input or disk.

use std::path::{Path, PathBuf};

/// What went wrong while opening, appending to or reading a store.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The folder is not a custos store of a format this build understands.
    #[error("{} is not a custos store this version can open: {what}", path.display())]
    NotAStore { path: PathBuf, what: String },

    /// Stored data is damaged in a way that writing must not paper over
    /// (a bad manifest line that is not a torn tail, a segment that the
    /// manifest does not name and a crash cannot explain, …).
    #[error("{} is corrupt: {what}", path.display())]
    Corrupt { path: PathBuf, what: String },

    #[error("parquet error on {}: {source}", path.display())]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },

    #[error("invalid store options: {0}")]
    InvalidOptions(String),

    /// A stream name or partition that cannot name a chain (and a folder).
    #[error("invalid chain {stream:?}/{partition}: {what}")]
    InvalidChain {
        stream: String,
        partition: i32,
        what: String,
    },

    /// Another writer (in this process or another one) holds the chain.
    #[error("chain {chain} is already open for writing elsewhere")]
    Locked { chain: String },

    /// Another writer changed a file this writer was about to write (in a
    /// bucket: a conditional write failed): the chain is being written
    /// elsewhere. Nothing was overwritten.
    #[error("{} was written by another writer: {what}", path.display())]
    Conflict { path: PathBuf, what: String },

    /// A previous flush of this writer failed part-way; its in-memory chain
    /// state may be ahead of the disk. Drop the writer and open the chain
    /// again: reopening recovers the durable state.
    #[error("writer of chain {chain} failed earlier and must be reopened")]
    Poisoned { chain: String },

    /// A segment is encrypted and the key it needs is not the configured
    /// one (or none is configured).
    #[error("{} is encrypted with key {needed}, {}: set store.encryption_key (CUSTOS_STORE_ENCRYPTION_KEY) to that key", path.display(), match have { Some(id) => format!("the configured key is {id}"), None => "no key is configured".to_owned() })]
    KeyNeeded {
        path: PathBuf,
        needed: String,
        have: Option<String>,
    },

    /// A bug: an invariant of this module did not hold.
    #[error("internal error (a bug in custos): {0}")]
    Internal(String),
}

impl LedgerError {
    pub(crate) fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        LedgerError::Io {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }

    pub(crate) fn corrupt(path: impl AsRef<Path>, what: impl Into<String>) -> Self {
        LedgerError::Corrupt {
            path: path.as_ref().to_path_buf(),
            what: what.into(),
        }
    }

    pub(crate) fn parquet(path: impl AsRef<Path>, source: parquet::errors::ParquetError) -> Self {
        LedgerError::Parquet {
            path: path.as_ref().to_path_buf(),
            source,
        }
    }
}

/// Adds the path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, LedgerError>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl AsRef<Path>) -> Result<T, LedgerError> {
        self.map_err(|e| LedgerError::io(path, e))
    }
}
