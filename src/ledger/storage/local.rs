//! A store in a local (or shared, POSIX) folder.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::{ChainLock, ReadAt, Storage};
use crate::ledger::error::{IoContext, LedgerError};

/// A store folder.
#[derive(Debug, Clone)]
pub struct Local {
    root: PathBuf,
}

impl Local {
    pub fn new(root: &Path) -> Local {
        Local {
            root: root.to_path_buf(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Creates the folder of `path` (durably) if it is missing.
    fn ensure_parent(path: &Path) -> Result<(), LedgerError> {
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => ensure_dir(dir),
            _ => Ok(()),
        }
    }

    fn sync_parent(path: &Path) -> Result<(), LedgerError> {
        match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => sync_dir(dir),
            _ => Ok(()),
        }
    }

    /// Opens an append-only file, creating it (and its folder) if missing;
    /// with `sync` a new file's folder entry is made durable.
    fn open_append(path: &Path, sync: bool) -> Result<File, LedgerError> {
        let exists = path.exists();
        if !exists {
            Local::ensure_parent(path)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .at(path)?;
        if !exists && sync {
            Local::sync_parent(path)?;
        }
        Ok(file)
    }

    /// Writes `bytes` to `path` through a fsynced temporary file and a
    /// rename (then fsyncs the folder when `sync`).
    fn write_via_tmp(path: &Path, bytes: &[u8], sync: bool) -> Result<(), LedgerError> {
        Local::ensure_parent(path)?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = Path::new(&tmp);
        let mut file = File::create(tmp).at(tmp)?;
        file.write_all(bytes).at(tmp)?;
        if sync {
            file.sync_all().at(tmp)?;
        }
        if path.extension().is_some_and(|e| e == "parquet") {
            crate::failpoint::hit("segment.written");
        }
        fs::rename(tmp, path).at(path)?;
        if sync {
            Local::sync_parent(path)?;
        }
        Ok(())
    }
}

struct LocalReader {
    file: File,
    path: PathBuf,
    len: u64,
}

impl ReadAt for LocalReader {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, len: usize) -> Result<Bytes, LedgerError> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset).at(&self.path)?;
        Ok(Bytes::from(buf))
    }
}

/// An `flock` held on the open manifest.
struct FileLock {
    _file: File,
}

impl ChainLock for FileLock {
    fn renew(&mut self) -> Result<(), LedgerError> {
        Ok(())
    }
}

impl Storage for Local {
    fn describe(&self, rel: &str) -> PathBuf {
        self.path(rel)
    }

    fn read(&self, rel: &str) -> Result<Option<Bytes>, LedgerError> {
        let path = self.path(rel);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(Bytes::from(bytes))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LedgerError::io(&path, e)),
        }
    }

    fn open(&self, rel: &str) -> Result<Option<Box<dyn ReadAt>>, LedgerError> {
        let path = self.path(rel);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(LedgerError::io(&path, e)),
        };
        let len = file.metadata().at(&path)?.len();
        Ok(Some(Box::new(LocalReader { file, path, len })))
    }

    fn len(&self, rel: &str) -> Result<Option<u64>, LedgerError> {
        let path = self.path(rel);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(LedgerError::io(&path, e)),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, LedgerError> {
        list_dir(&self.path(dir))
    }

    fn make_dir(&self, dir: &str) -> Result<(), LedgerError> {
        ensure_dir(&self.path(dir))
    }

    fn create(&self, rel: &str, bytes: Bytes, sync: bool) -> Result<(), LedgerError> {
        Local::write_via_tmp(&self.path(rel), &bytes, sync)
    }

    fn replace(&self, rel: &str, bytes: Bytes) -> Result<(), LedgerError> {
        Local::write_via_tmp(&self.path(rel), &bytes, true)
    }

    fn append(&self, rel: &str, at: u64, bytes: Bytes, sync: bool) -> Result<(), LedgerError> {
        let path = self.path(rel);
        let mut file = Local::open_append(&path, sync)?;
        let len = file.metadata().at(&path)?.len();
        if len != at {
            return Err(LedgerError::Conflict {
                path,
                what: format!("it is {len} bytes long, the writer expected {at}"),
            });
        }
        // Only manifest appends count towards the armed hit (checkpoint
        // appends interleave with flushes in no fixed order).
        if rel.starts_with("manifests/") && crate::failpoint::due("manifest.torn") {
            // Half a flush group on disk, as a crash mid-write leaves it.
            let _ = file.write_all(&bytes[..bytes.len() / 2]);
            crate::failpoint::crash("manifest.torn");
        }
        file.write_all(&bytes).at(&path)?;
        if sync {
            file.sync_data().at(&path)?;
        }
        Ok(())
    }

    fn truncate(&self, rel: &str, len: u64) -> Result<(), LedgerError> {
        let path = self.path(rel);
        let file = OpenOptions::new().write(true).open(&path).at(&path)?;
        file.set_len(len).at(&path)?;
        file.sync_all().at(&path)
    }

    fn delete(&self, rel: &str) -> Result<(), LedgerError> {
        let path = self.path(rel);
        match fs::remove_file(&path) {
            Ok(()) => Local::sync_parent(&path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LedgerError::io(&path, e)),
        }
    }

    fn lock(&self, rel: &str, chain: &str) -> Result<Box<dyn ChainLock>, LedgerError> {
        let path = self.path(rel);
        let file = Local::open_append(&path, true)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(FileLock { _file: file })),
            Err(TryLockError::WouldBlock) => Err(LedgerError::Locked {
                chain: chain.to_owned(),
            }),
            Err(TryLockError::Error(e)) => Err(LedgerError::io(&path, e)),
        }
    }
}

/// Fsyncs a directory, so that entries created, renamed or removed in it
/// survive a crash.
fn sync_dir(dir: &Path) -> Result<(), LedgerError> {
    File::open(dir).at(dir)?.sync_all().at(dir)
}

/// Creates `dir` and any missing parents, fsyncing the parent of each
/// folder it creates.
fn ensure_dir(dir: &Path) -> Result<(), LedgerError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Another writer may have created it meanwhile.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(LedgerError::io(dir, e)),
    }
    match dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => Ok(()),
    }
}

/// The names of the entries of a folder (empty if it does not exist).
fn list_dir(dir: &Path) -> Result<Vec<String>, LedgerError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(LedgerError::io(dir, e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.at(dir)?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}
