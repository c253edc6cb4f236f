//! Reading a log's tree strata in order while `verify` recomputes them.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::{MAX_ROW_PROBLEMS_PER_FILE, Problem, VerifyReport};
use crate::ledger::hash::Hash;
use crate::ledger::tree::STRIDE;

/// Strata heights a verifier looks at: 0, 8, …, 56.
const HEIGHTS: u32 = 8;

enum State {
    Unopened,
    Open(BufReader<File>),
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
    root: PathBuf,
    rel_dir: String,
    strata: Vec<Stratum>,
}

impl Strata {
    pub fn new(root: &Path, rel_dir: String) -> Self {
        Strata {
            root: root.to_path_buf(),
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
            self.strata[at].state = match File::open(self.root.join(&file)) {
                Ok(f) => State::Open(BufReader::with_capacity(1 << 16, f)),
                Err(e) => {
                    let what = if e.kind() == std::io::ErrorKind::NotFound {
                        "tree file is missing".to_owned()
                    } else {
                        format!("cannot read: {e}")
                    };
                    report.problems.push(Problem::file(&file, what));
                    State::Gone
                }
            };
        }
        let s = &mut self.strata[at];
        let State::Open(reader) = &mut s.state else {
            return None;
        };
        let mut hash = [0u8; 32];
        match reader.read_exact(&mut hash) {
            Ok(()) => {
                s.read += 1;
                Some(hash)
            }
            Err(e) => {
                let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
                    format!(
                        "tree file ends after {index} hashes; the log needs more (it was truncated)"
                    )
                } else {
                    format!("cannot read: {e}")
                };
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
    /// `size` leaves ends. `cut` says a checkpoint covers more than `size`
    /// (so extra hashes are not a crash's leftovers).
    pub fn finish(&mut self, size: u64, cut: bool, report: &mut VerifyReport) {
        for height in (0..HEIGHTS).map(|i| i * STRIDE) {
            let file = self.file(height);
            let Ok(meta) = std::fs::metadata(self.root.join(&file)) else {
                continue; // missing where needed was reported when read
            };
            let want = (size >> height) * 32;
            if meta.len() > want {
                let why = if cut {
                    "a checkpoint covers more, so the manifest lost lines"
                } else {
                    "a crash before the manifest append; opening the chain for writing repairs it"
                };
                report.problems.push(Problem::file(
                    file,
                    format!(
                        "holds {} byte(s) beyond the log's {size} leaves ({why})",
                        meta.len() - want
                    ),
                ));
            }
        }
    }
}
