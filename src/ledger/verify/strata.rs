//! Reading a log's tree strata in order while `verify` recomputes them.

use std::sync::Arc;

use bytes::Bytes;

use super::{MAX_ROW_PROBLEMS_PER_FILE, Problem, VerifyReport};
use crate::ledger::hash::Hash;
use crate::ledger::storage::{ReadAt, Storage};
use crate::ledger::tree::STRIDE;

/// Bytes read from a stratum at a time.
const CHUNK: u64 = 1 << 16;

/// Strata heights a verifier looks at: 0, 8, …, 56.
const HEIGHTS: u32 = 8;

enum State {
    Unopened,
    /// The file, the chunk read last and the file offset after it.
    Open(Box<dyn ReadAt>, Bytes, u64),
    /// Missing, unreadable or too short: reported once, then skipped.
    Gone,
}

struct Stratum {
    state: State,
    /// Hashes read so far.
    read: u64,
    mismatches: usize,
}

/// The strata of one log, read front to back.
pub(super) struct Strata {
    storage: Arc<dyn Storage>,
    rel_dir: String,
    strata: Vec<Stratum>,
}

impl Strata {
    pub fn new(storage: Arc<dyn Storage>, rel_dir: String) -> Self {
        Strata {
            storage,
            rel_dir,
            strata: (0..HEIGHTS)
                .map(|_| Stratum {
                    state: State::Unopened,
                    read: 0,
                    mismatches: 0,
                })
                .collect(),
        }
    }

    /// The store-relative path of the stratum at `height`.
    pub fn file(&self, height: u32) -> String {
        format!("{}/{height}.hashes", self.rel_dir)
    }

    /// The next hash of the stratum at `height`, which must be number
    /// `index`; `None` (reported once) if the file cannot give it.
    fn next(&mut self, height: u32, index: u64, report: &mut VerifyReport) -> Option<Hash> {
        let at = (height / STRIDE) as usize;
        debug_assert_eq!(self.strata[at].read, index, "strata are read in order");
        if let State::Unopened = self.strata[at].state {
            // (Paths are made only here and on errors: this runs per leaf.)
            let file = self.file(height);
            self.strata[at].state = match self.storage.open(&file) {
                Ok(Some(f)) => State::Open(f, Bytes::new(), 0),
                Ok(None) => {
                    report
                        .problems
                        .push(Problem::file(&file, "tree file is missing"));
                    State::Gone
                }
                Err(e) => {
                    report
                        .problems
                        .push(Problem::file(&file, format!("cannot read: {e}")));
                    State::Gone
                }
            };
        }
        let s = &mut self.strata[at];
        let State::Open(file, chunk, end) = &mut s.state else {
            return None;
        };
        if chunk.len() < 32 {
            let want = CHUNK.min(file.len().saturating_sub(*end)) & !31;
            let read = if want == 0 {
                Ok(Bytes::new())
            } else {
                file.read_at(*end, want as usize)
            };
            match read {
                Ok(bytes) => {
                    *end += bytes.len() as u64;
                    *chunk = bytes;
                }
                Err(e) => {
                    s.state = State::Gone;
                    let what = format!("cannot read: {e}");
                    report.problems.push(Problem::file(self.file(height), what));
                    return None;
                }
            }
        }
        match chunk.get(..32).and_then(|h| <[u8; 32]>::try_from(h).ok()) {
            Some(hash) => {
                *chunk = chunk.slice(32..);
                s.read += 1;
                Some(hash)
            }
            None => {
                let what = format!(
                    "tree file ends after {index} hashes; the log needs more (it was truncated)"
                );
                s.state = State::Gone;
                report.problems.push(Problem::file(self.file(height), what));
                None
            }
        }
    }

    /// The stored leaf hash at `index` (the next one).
    pub fn leaf(&mut self, index: u64, report: &mut VerifyReport) -> Option<Hash> {
        self.next(0, index, report)
    }

    /// Compares the stored hash of the complete subtree at (`height`,
    /// `index`) with the one computed from the stored leaves.
    pub fn check(&mut self, height: u32, index: u64, computed: &Hash, report: &mut VerifyReport) {
        let Some(stored) = self.next(height, index, report) else {
            return;
        };
        if stored == *computed {
            return;
        }
        let file = self.file(height);
        let s = &mut self.strata[(height / STRIDE) as usize];
        s.mismatches += 1;
        if s.mismatches <= MAX_ROW_PROBLEMS_PER_FILE {
            report.problems.push(Problem::file(
                file,
                format!(
                    "hash {index} is not the root of the stored hashes below it (this tree file or a lower one was changed)"
                ),
            ));
        }
    }

    /// After the last segment: every stratum must end where a tree of
    /// `size` leaves ends; `why` says what extra hashes mean.
    pub fn finish(&mut self, size: u64, why: &str, report: &mut VerifyReport) {
        for height in (0..HEIGHTS).map(|i| i * STRIDE) {
            let file = self.file(height);
            let Ok(Some(len)) = self.storage.len(&file) else {
                continue; // missing where needed was reported when read
            };
            let want = (size >> height) * 32;
            if len > want {
                report.problems.push(Problem::file(
                    file,
                    format!(
                        "holds {} byte(s) beyond the log's {size} leaves ({why})",
                        len - want
                    ),
                ));
            }
        }
    }
}
