//! The durable outbox: every incident revision, on disk before any sink
//! sees it, with each sink's delivery cursor.
//!
//! Layout of the outbox folder (`outbox.dir`, by default `outbox/` in a
//! local store):
//!
//! ```text
//! LOCK                          held (advisory lock) by the one process using it
//! entries/<first_n:020>.jsonl   revisions, one `{"n":N,"incident":{…}}` line each, n = 0, 1, 2, …
//! cursors/<sink>.json           `{"next":N}`: the sink delivered every entry below N
//! incidents.json                `{"through":N,"open":[…]}`: the open incidents as of entry N
//! refused/<sink>.jsonl          entries a sink refused for good (4xx after every attempt)
//! ```
//!
//! Guarantees:
//! - **Durable first.** [`Outbox::append`] writes and fsyncs the lines
//!   before it returns; only then are the entries handed to the sinks.
//! - **At least once, per sink, in order.** A sink's cursor moves past an
//!   entry only after the sink acknowledged it, and is persisted (written,
//!   fsynced, renamed) before the next batch; after a crash a sink may see
//!   its last unacknowledged batch again, never a gap.
//! - **Crash-safe.** A torn last line (a crash in an append) is cut off at
//!   open; the entries before it are intact.
//! - **Bounded.** A segment whose entries every sink has delivered, and
//!   that the incidents snapshot covers, is deleted. A sink more than
//!   `max_entries` behind loses its oldest entries (counted in
//!   `custos_alerts_dropped_total{sink}`, logged), so a sink that is
//!   never repaired cannot fill the disk.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::incident::Incident;

/// One stored revision, as the sinks get it.
#[derive(Debug)]
pub struct Entry {
    pub n: u64,
    pub incident: Incident,
}

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("outbox {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "outbox {path} is used by another process (its LOCK is held); processes that share a store need an `outbox.dir` each"
    )]
    Locked { path: PathBuf },
    #[error("outbox {path}: {what}")]
    Corrupt { path: PathBuf, what: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_owned(),
        source,
    }
}

#[derive(Serialize, Deserialize)]
struct Line {
    n: u64,
    incident: Incident,
}

#[derive(Serialize, Deserialize)]
struct CursorFile {
    next: u64,
}

#[derive(Serialize, Deserialize, Default)]
struct Snapshot {
    through: u64,
    open: Vec<Incident>,
}

/// A segment file: its first entry and its path.
#[derive(Debug)]
struct Segment {
    first: u64,
    path: PathBuf,
}

/// The outbox on disk plus the entries not yet delivered by every sink.
pub struct Outbox {
    dir: PathBuf,
    _lock: File,
    segments: Vec<Segment>,
    current: Option<File>,
    current_entries: u64,
    segment_entries: u64,
    /// Entries from `base` on, in memory.
    pending: VecDeque<Arc<Entry>>,
    base: u64,
    next: u64,
    cursors: Vec<(String, u64)>,
    snapshot_through: u64,
    max_entries: u64,
    bytes: u64,
}

/// What [`Outbox::open`] found.
pub struct Recovered {
    pub outbox: Outbox,
    /// The last revision of each incident open at the end of the outbox
    /// (from the snapshot and the entries after it), in order.
    pub revisions: Vec<Incident>,
}

impl Outbox {
    /// Opens (or creates) the outbox for `sinks` (their names).
    pub fn open(
        dir: &Path,
        sinks: &[String],
        segment_entries: u64,
        max_entries: u64,
    ) -> Result<Recovered, OutboxError> {
        for sub in ["entries", "cursors", "refused"] {
            fs::create_dir_all(dir.join(sub)).map_err(io(dir))?;
        }
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(OutboxError::Locked {
                path: dir.to_owned(),
            });
        }
        let mut segments = Vec::new();
        let entries_dir = dir.join("entries");
        for item in fs::read_dir(&entries_dir).map_err(io(&entries_dir))? {
            let item = item.map_err(io(&entries_dir))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if let Some(first) = name.strip_suffix(".jsonl").and_then(|s| s.parse().ok()) {
                segments.push(Segment {
                    first,
                    path: item.path(),
                });
            } else if name.ends_with(".tmp") {
                let _ = fs::remove_file(item.path());
            }
        }
        segments.sort_by_key(|s| s.first);

        let snap_path = dir.join("incidents.json");
        let snapshot: Snapshot = match fs::read(&snap_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| OutboxError::Corrupt {
                path: snap_path.clone(),
                what: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Snapshot::default(),
            Err(e) => return Err(io(&snap_path)(e)),
        };
        let mut cursors = Vec::new();
        for sink in sinks {
            let path = cursor_path(dir, sink);
            let next = match fs::read(&path) {
                Ok(bytes) => {
                    serde_json::from_slice::<CursorFile>(&bytes)
                        .map_err(|e| OutboxError::Corrupt {
                            path: path.clone(),
                            what: e.to_string(),
                        })?
                        .next
                }
                // A new sink starts at the oldest entry still held, so it
                // gets what the outbox has (at least the open incidents).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    segments.first().map_or(0, |s| s.first)
                }
                Err(e) => return Err(io(&path)(e)),
            };
            cursors.push((sink.clone(), next));
        }
        let keep_from = cursors
            .iter()
            .map(|c| c.1)
            .min()
            .unwrap_or(u64::MAX)
            .min(snapshot.through);

        // Read every segment: entries at or after `keep_from` are kept in
        // memory; the last segment's torn tail is cut.
        let mut pending = VecDeque::new();
        let mut revisions = snapshot.open;
        let mut next = segments.first().map_or(0, |s| s.first);
        let mut bytes_total = 0;
        let mut current_entries = 0;
        let last = segments.len().saturating_sub(1);
        for (i, seg) in segments.iter().enumerate() {
            if i > 0 && seg.first != next {
                return Err(OutboxError::Corrupt {
                    path: seg.path.clone(),
                    what: format!("starts at entry {} but {} was expected", seg.first, next),
                });
            }
            next = seg.first;
            let file = File::open(&seg.path).map_err(io(&seg.path))?;
            let mut reader = BufReader::new(file);
            let mut good = 0u64;
            let mut line = Vec::new();
            let mut count = 0;
            loop {
                line.clear();
                let read = reader.read_until(b'\n', &mut line).map_err(io(&seg.path))?;
                if read == 0 {
                    break;
                }
                let parsed = (line.last() == Some(&b'\n'))
                    .then(|| serde_json::from_slice::<Line>(&line).ok())
                    .flatten();
                let Some(parsed) = parsed.filter(|p| p.n == next) else {
                    if i == last {
                        tracing::warn!(file = %seg.path.display(), "cutting a torn outbox tail (crash during an append)");
                        let f = OpenOptions::new()
                            .write(true)
                            .open(&seg.path)
                            .map_err(io(&seg.path))?;
                        f.set_len(good).map_err(io(&seg.path))?;
                        f.sync_all().map_err(io(&seg.path))?;
                        break;
                    }
                    return Err(OutboxError::Corrupt {
                        path: seg.path.clone(),
                        what: format!("entry {next} is unreadable"),
                    });
                };
                good += read as u64;
                count += 1;
                next += 1;
                if parsed.n >= snapshot.through {
                    revisions.push(parsed.incident.clone());
                }
                if parsed.n >= keep_from {
                    pending.push_back(Arc::new(Entry {
                        n: parsed.n,
                        incident: parsed.incident,
                    }));
                }
            }
            bytes_total += good;
            if i == last {
                current_entries = count;
            }
        }
        let base = pending.front().map_or(next, |e| e.n);
        // Cursors beyond the end (entries lost with a disk) come back.
        for c in &mut cursors {
            c.1 = c.1.clamp(base, next);
        }
        let current = match segments.last() {
            Some(seg) => Some(
                OpenOptions::new()
                    .append(true)
                    .open(&seg.path)
                    .map_err(io(&seg.path))?,
            ),
            None => None,
        };
        let outbox = Outbox {
            dir: dir.to_owned(),
            _lock: lock,
            segments,
            current,
            current_entries,
            segment_entries: segment_entries.max(1),
            pending,
            base,
            next,
            cursors,
            snapshot_through: snapshot.through,
            max_entries: max_entries.max(1),
            bytes: bytes_total,
        };
        Ok(Recovered { outbox, revisions })
    }

    /// The index the next appended entry gets.
    pub fn next(&self) -> u64 {
        self.next
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Where sink `i` stands.
    pub fn cursor(&self, i: usize) -> u64 {
        self.cursors[i].1
    }

    /// Appends revisions durably (write + fsync) and returns the entries.
    pub fn append(&mut self, incidents: Vec<Incident>) -> Result<Vec<Arc<Entry>>, OutboxError> {
        let mut out = Vec::with_capacity(incidents.len());
        let mut text = Vec::new();
        for incident in incidents {
            if self.current.is_none() || self.current_entries >= self.segment_entries {
                self.roll(&mut text)?;
            }
            let line = Line {
                n: self.next,
                incident,
            };
            serde_json::to_writer(&mut text, &line).expect("incidents serialize");
            text.push(b'\n');
            self.current_entries += 1;
            self.next += 1;
            out.push(Arc::new(Entry {
                n: line.n,
                incident: line.incident,
            }));
        }
        self.write_current(&mut text)?;
        self.pending.extend(out.iter().cloned());
        Ok(out)
    }

    fn write_current(&mut self, text: &mut Vec<u8>) -> Result<(), OutboxError> {
        if text.is_empty() {
            return Ok(());
        }
        let path = self
            .segments
            .last()
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let file = self.current.as_mut().expect("a segment is open");
        file.write_all(text).map_err(io(&path))?;
        file.sync_data().map_err(io(&path))?;
        self.bytes += text.len() as u64;
        text.clear();
        Ok(())
    }

    /// Starts a new segment at `next` (after writing what is pending for
    /// the current one).
    fn roll(&mut self, text: &mut Vec<u8>) -> Result<(), OutboxError> {
        self.write_current(text)?;
        let path = self
            .dir
            .join("entries")
            .join(format!("{:020}.jsonl", self.next));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        sync_dir(&self.dir.join("entries"))?;
        self.segments.push(Segment {
            first: self.next,
            path,
        });
        self.current = Some(file);
        self.current_entries = 0;
        Ok(())
    }

    /// Up to `max` entries from sink `i`'s cursor on. Entries beyond the
    /// cap are dropped for it first (counted by the caller via the
    /// returned number).
    pub fn batch(&mut self, i: usize, max: usize) -> (Vec<Arc<Entry>>, u64) {
        let mut dropped = 0;
        let behind = self.next - self.cursors[i].1;
        if behind > self.max_entries {
            dropped = behind - self.max_entries;
            self.cursors[i].1 += dropped;
        }
        if dropped > 0 {
            // Frees the dropped entries if this sink was the one behind.
            if let Err(e) = self.compact() {
                tracing::error!(error = %e, "cannot compact the outbox");
            }
        }
        let from = (self.cursors[i].1 - self.base) as usize;
        let batch = self.pending.iter().skip(from).take(max).cloned().collect();
        (batch, dropped)
    }

    /// Records that sink `i` delivered every entry below `next`: persists
    /// its cursor, then frees what every sink has delivered.
    pub fn delivered(&mut self, i: usize, next: u64) -> Result<(), OutboxError> {
        debug_assert!(next >= self.cursors[i].1 && next <= self.next);
        self.cursors[i].1 = next;
        let path = cursor_path(&self.dir, &self.cursors[i].0);
        write_atomic(
            &path,
            &serde_json::to_vec(&CursorFile { next }).expect("serializes"),
        )?;
        self.compact()
    }

    /// Writes the open incidents as of the end of the outbox, so segments
    /// before it can be deleted once delivered.
    pub fn snapshot<'a>(
        &mut self,
        open: impl Iterator<Item = &'a Incident>,
    ) -> Result<(), OutboxError> {
        let snap = Snapshot {
            through: self.next,
            open: open.cloned().collect(),
        };
        write_atomic(
            &self.dir.join("incidents.json"),
            &serde_json::to_vec(&snap).expect("serializes"),
        )?;
        self.snapshot_through = snap.through;
        self.compact()
    }

    fn compact(&mut self) -> Result<(), OutboxError> {
        let min = self.cursors.iter().map(|c| c.1).min().unwrap_or(self.next);
        while self.base < min {
            self.pending.pop_front();
            self.base += 1;
        }
        let keep = min.min(self.snapshot_through);
        // A segment can go when the next one starts at or below `keep`
        // (the current segment always stays).
        while self.segments.len() > 1 && self.segments[1].first <= keep {
            let seg = self.segments.remove(0);
            let size = fs::metadata(&seg.path).map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&seg.path).map_err(io(&seg.path))?;
            self.bytes = self.bytes.saturating_sub(size);
        }
        Ok(())
    }

    /// Keeps an entry that sink `name` refused for good.
    pub fn set_aside(&self, name: &str, entry: &Entry, why: &str) -> Result<(), OutboxError> {
        let path = self.dir.join("refused").join(format!("{name}.jsonl"));
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let line = serde_json::json!({"n": entry.n, "reason": why, "incident": entry.incident});
        let mut text = serde_json::to_vec(&line).expect("serializes");
        text.push(b'\n');
        f.write_all(&text).map_err(io(&path))?;
        f.sync_data().map_err(io(&path))
    }
}

fn cursor_path(dir: &Path, sink: &str) -> PathBuf {
    dir.join("cursors").join(format!("{sink}.json"))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), OutboxError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
