//! Where a store's files live: a local folder ([`Local`]) or an
//! S3-compatible bucket ([`Bucket`]). The rest of the ledger names files by
//! their path relative to the store root (`/`-separated) and uses only the
//! operations below, so the write protocol is the same on both:
//!
//! | operation | folder | bucket |
//! |---|---|---|
//! | [`Storage::create`] a whole file | temporary file, fsync, rename, fsync of the folder | `PUT` with `If-None-Match: *` |
//! | [`Storage::append`] to an append-only file | `O_APPEND` write, fsync | a new part object, `PUT` with `If-None-Match: *` |
//! | [`Storage::truncate`] back to a flush boundary | `ftruncate`, fsync | delete the parts past it |
//! | [`Storage::lock`] a chain for writing | `flock` on its manifest | a lease object, `PUT` with `If-None-Match`/`If-Match` |
//!
//! In a bucket an append-only file `F` (manifests, tree strata, checkpoint
//! files) is the concatenation of its parts `F.parts/<first byte offset, 20
//! digits>`, each written whole by one append. Two writers appending at
//! the same offset cannot both succeed: the second one's `PUT` fails its
//! precondition, which fences it off as `flock` does in a folder.

use std::fmt::Debug;
use std::path::PathBuf;

use bytes::Bytes;

use super::error::LedgerError;

mod bucket;
mod local;

pub use bucket::Bucket;
pub use local::Local;

/// A store location as configured: a folder, or `s3://bucket/prefix`.
pub fn is_bucket_url(location: &str) -> bool {
    location.starts_with("s3://")
}

/// Random access to one file, as of when it was opened.
pub trait ReadAt: Send {
    /// Its length in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads `len` bytes from `offset`; fewer than asked is an error.
    fn read_at(&mut self, offset: u64, len: usize) -> Result<Bytes, LedgerError>;
}

/// The lock of a chain's writer; released when dropped.
pub trait ChainLock: Send {
    /// Renews the lock if it expires (a bucket lease); an error means the
    /// lock was lost to another writer.
    fn renew(&mut self) -> Result<(), LedgerError>;
}

/// The file operations of a store (see the module doc).
pub trait Storage: Send + Sync + Debug {
    /// The bucket, if the store is in one.
    fn as_bucket(&self) -> Option<&Bucket> {
        None
    }

    /// How a file is named in messages: its path, or its `s3://` URL.
    fn describe(&self, rel: &str) -> PathBuf;

    /// The whole file, `None` if it does not exist.
    fn read(&self, rel: &str) -> Result<Option<Bytes>, LedgerError>;

    /// Opens a file for random reads; `None` if it does not exist.
    fn open(&self, rel: &str) -> Result<Option<Box<dyn ReadAt>>, LedgerError>;

    /// Length of a file, `None` if there is no file (a folder is none).
    fn len(&self, rel: &str) -> Result<Option<u64>, LedgerError>;

    /// Names directly under a folder (files and folders), sorted; empty if
    /// it does not exist.
    fn list(&self, dir: &str) -> Result<Vec<String>, LedgerError>;

    /// Makes a folder (durably); a bucket has none, so there it does
    /// nothing.
    fn make_dir(&self, dir: &str) -> Result<(), LedgerError>;

    /// Writes a whole file atomically: it appears complete or not at all.
    /// In a bucket, a file that already exists is
    /// [`LedgerError::Conflict`]; in a folder the chain's lock guards it.
    /// With `sync` the file and its folder entry are durable on return.
    fn create(&self, rel: &str, bytes: Bytes, sync: bool) -> Result<(), LedgerError>;

    /// Replaces a whole file atomically (a state snapshot, the marker).
    fn replace(&self, rel: &str, bytes: Bytes) -> Result<(), LedgerError>;

    /// Appends to an append-only file whose length is `at` (creating it at
    /// 0). A file of another length is [`LedgerError::Conflict`] (another
    /// writer appended). With `sync` the bytes are durable on return.
    fn append(&self, rel: &str, at: u64, bytes: Bytes, sync: bool) -> Result<(), LedgerError>;

    /// Cuts an append-only file back to `len` bytes (recovery after a
    /// crash), durably. In a bucket `len` must be a boundary between parts.
    fn truncate(&self, rel: &str, len: u64) -> Result<(), LedgerError>;

    /// Deletes a file; one that does not exist is not an error.
    fn delete(&self, rel: &str) -> Result<(), LedgerError>;

    /// Takes the writer's lock of the append-only file `rel` (a chain's
    /// manifest), or [`LedgerError::Locked`] naming `chain` if another
    /// writer holds it.
    fn lock(&self, rel: &str, chain: &str) -> Result<Box<dyn ChainLock>, LedgerError>;
}

/// Joins a folder and a name with `/`.
pub(crate) fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_owned()
    } else {
        format!("{dir}/{name}")
    }
}
