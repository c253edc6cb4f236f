//! The kinds of tampering, what verify must say about each (a problem
//! naming the tampered file, and for row edits the first bad row), and
//! the dispatch from a kind to the tampering itself. The tamperings that
//! take more than a few lines are in `segments` (rows, strata, manifests)
//! and `history` (rewritten history, checkpoints, rollbacks).

use std::fmt;
use std::fs;
use std::path::Path;

use custos::ledger::{Problem, VerifyReport};
use rand::Rng;
use rand::rngs::StdRng;

use crate::edit::{edit_lines, edit_manifest, flip_byte, pick_row, set_len};
use crate::lab::Lab;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    SegmentByteFlipped,
    StrataByteFlipped,
    ManifestDigitFlipped,
    ColumnChanged,
    RecordChanged,
    RowRemoved,
    RowDuplicated,
    RowsSwapped,
    RowsSwappedAcrossSegments,
    HistoryRewritten,
    SegmentRemoved,
    SegmentsSwapped,
    SegmentRenamed,
    SegmentTruncated,
    StrataLengthChanged,
    ManifestLineRemoved,
    ManifestRootReplaced,
    CheckpointBodyChanged,
    CheckpointSignedByOtherKey,
    CheckpointReplayed,
    RolledBack,
    RolledBackWithCheckpoints,
    Forked,
}

impl Kind {
    pub const ALL: [Kind; 23] = [
        Kind::SegmentByteFlipped,
        Kind::StrataByteFlipped,
        Kind::ManifestDigitFlipped,
        Kind::ColumnChanged,
        Kind::RecordChanged,
        Kind::RowRemoved,
        Kind::RowDuplicated,
        Kind::RowsSwapped,
        Kind::RowsSwappedAcrossSegments,
        Kind::HistoryRewritten,
        Kind::SegmentRemoved,
        Kind::SegmentsSwapped,
        Kind::SegmentRenamed,
        Kind::SegmentTruncated,
        Kind::StrataLengthChanged,
        Kind::ManifestLineRemoved,
        Kind::ManifestRootReplaced,
        Kind::CheckpointBodyChanged,
        Kind::CheckpointSignedByOtherKey,
        Kind::CheckpointReplayed,
        Kind::RolledBack,
        Kind::RolledBackWithCheckpoints,
        Kind::Forked,
    ];
}

/// A place a problem may name: a file, and text its message must hold.
#[derive(Debug)]
pub struct Place {
    pub file: String,
    pub what: Option<String>,
}

impl Place {
    pub fn file(file: impl Into<String>) -> Place {
        Place {
            file: file.into(),
            what: None,
        }
    }

    fn matches(&self, p: &Problem) -> bool {
        p.file == self.file && self.what.as_ref().is_none_or(|w| p.what.contains(w))
    }
}

/// Some problem must name one of `any`; with `row`, the first problem
/// with a row in the first of them must be at that row.
#[derive(Debug)]
pub struct Expect {
    pub any: Vec<Place>,
    pub row: Option<u64>,
}

impl Expect {
    pub fn file(file: impl Into<String>) -> Expect {
        Expect {
            any: vec![Place::file(file)],
            row: None,
        }
    }

    pub fn row(file: impl Into<String>, row: u64) -> Expect {
        Expect {
            any: vec![Place::file(file)],
            row: Some(row),
        }
    }
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let places: Vec<String> = self
            .any
            .iter()
            .map(|p| match &p.what {
                Some(w) => format!("{} ({w:?})", p.file),
                None => p.file.clone(),
            })
            .collect();
        write!(f, "a problem naming {}", places.join(" or "))?;
        if let Some(row) = self.row {
            write!(f, ", first row problem at row {row}")?;
        }
        Ok(())
    }
}

/// One tampering: what was done where, and what verify must report.
pub struct Case {
    pub kind: Kind,
    pub target: String,
    pub expect: Vec<Expect>,
    /// Texts no problem may hold: what a tampering must not cascade into.
    pub absent: &'static [&'static str],
    /// Verify without the verifier key.
    pub keyless: bool,
}

impl Case {
    pub fn check(&self, report: &VerifyReport) -> Result<(), String> {
        let why = if report.ok() {
            Some("not caught: verify reports no problem".to_owned())
        } else {
            self.expect
                .iter()
                .find_map(|e| self.miss(e, &report.problems))
                .or_else(|| {
                    let text = self
                        .absent
                        .iter()
                        .find(|&&t| report.problems.iter().any(|p| p.what.contains(t)))?;
                    Some(format!(
                        "a problem says {text:?}, which this tampering must not cause"
                    ))
                })
        };
        let Some(why) = why else { return Ok(()) };
        let expected: Vec<String> = self.expect.iter().map(|e| e.to_string()).collect();
        let problems: Vec<String> = report.problems.iter().map(|p| format!("    {p}")).collect();
        Err(format!(
            "{:?} on {}\n  {why}\n  expected: {}\n  problems ({}):\n{}",
            self.kind,
            self.target,
            expected.join("; "),
            problems.len(),
            problems.join("\n")
        ))
    }

    pub fn show(&self, i: usize, report: &VerifyReport) -> String {
        let mut text = format!("case {i}: {:?} on {}", self.kind, self.target);
        for p in report.problems.iter().take(6) {
            text.push_str(&format!("\n    {p}"));
        }
        if report.problems.len() > 6 {
            text.push_str(&format!("\n    … {} problems", report.problems.len()));
        }
        text
    }

    fn miss(&self, e: &Expect, problems: &[Problem]) -> Option<String> {
        if !problems
            .iter()
            .any(|p| e.any.iter().any(|pl| pl.matches(p)))
        {
            return Some(format!("misplaced: no problem names {}", e.any[0].file));
        }
        let row = e.row?;
        let file = &e.any[0].file;
        match problems.iter().find(|p| p.file == *file && p.row.is_some()) {
            Some(p) if p.row == Some(row) => None,
            Some(p) => Some(format!(
                "misplaced: the first row problem of {file} is at row {:?}, the tampered row is {row}",
                p.row
            )),
            None => Some(format!(
                "misplaced: no problem of {file} names a row; the tampered row is {row}"
            )),
        }
    }
}

impl Lab {
    pub fn tamper(&self, root: &Path, kind: Kind, rng: &mut StdRng) -> Case {
        let mut keyless = false;
        let (target, expect) = match kind {
            Kind::SegmentByteFlipped => {
                let line = self.line(self.pick_line(rng, |_| true));
                let at = flip_byte(&root.join(&line.file), rng);
                (
                    format!("{} byte {at}", line.file),
                    vec![Expect::file(&line.file)],
                )
            }
            Kind::StrataByteFlipped => {
                let file = self.pick_stratum(rng);
                let at = flip_byte(&root.join(&file), rng);
                (format!("{file} byte {at}"), vec![Expect::file(file)])
            }
            Kind::ManifestDigitFlipped => self.flip_manifest_digit(root, rng),
            Kind::ColumnChanged => self.change_column(root, rng),
            Kind::RecordChanged => self.change_record(root, rng),
            Kind::RowRemoved => self.edit_rows(root, rng, "removed", |rng, n| {
                let r = pick_row(rng, n);
                (0..n).filter(|&i| i != r).collect()
            }),
            Kind::RowDuplicated => self.edit_rows(root, rng, "duplicated", |rng, n| {
                let (copy, at) = (rng.random_range(0..n), pick_row(rng, n + 1));
                let mut rows: Vec<u32> = (0..n).collect();
                rows.insert(at as usize, copy);
                rows
            }),
            Kind::RowsSwapped => self.edit_rows(root, rng, "swapped", |rng, n| {
                let a = pick_row(rng, n - 1);
                let b = if rng.random_bool(0.5) {
                    a + 1
                } else {
                    rng.random_range(a + 1..n)
                };
                let mut rows: Vec<u32> = (0..n).collect();
                rows.swap(a as usize, b as usize);
                rows
            }),
            Kind::RowsSwappedAcrossSegments => self.swap_across_segments(root, rng),
            Kind::HistoryRewritten => self.rewrite_history(root, rng),
            Kind::SegmentRemoved => {
                let line = self.line(self.pick_line(rng, |_| true));
                fs::remove_file(root.join(&line.file)).unwrap();
                (line.file.clone(), vec![Expect::file(&line.file)])
            }
            Kind::SegmentsSwapped => {
                let a = self.pick_line(rng, |_| true);
                let b = loop {
                    let b = self.pick_line(rng, |_| true);
                    if b != a {
                        break b;
                    }
                };
                let (a, b) = (&self.line(a).file, &self.line(b).file);
                let tmp = root.join("swap.tmp");
                fs::rename(root.join(a), &tmp).unwrap();
                fs::rename(root.join(b), root.join(a)).unwrap();
                fs::rename(&tmp, root.join(b)).unwrap();
                (
                    format!("{a} <-> {b}"),
                    vec![Expect::file(a), Expect::file(b)],
                )
            }
            Kind::SegmentRenamed => {
                let line = self.line(self.pick_line(rng, |_| true));
                let (folder, _) = line.file.rsplit_once('/').unwrap();
                let new = format!(
                    "{folder}/{:020}.parquet",
                    1_000_000_000 + rng.random_range(0..1_000_000u64)
                );
                fs::rename(root.join(&line.file), root.join(&new)).unwrap();
                (
                    format!("{} -> {new}", line.file),
                    vec![Expect::file(&line.file), Expect::file(new)],
                )
            }
            Kind::SegmentTruncated => {
                let line = self.line(self.pick_line(rng, |_| true));
                let len = rng.random_range(0..line.bytes);
                set_len(&root.join(&line.file), len);
                (
                    format!("{} cut to {len} of {} bytes", line.file, line.bytes),
                    vec![Expect::file(&line.file)],
                )
            }
            Kind::StrataLengthChanged => {
                let file = self.pick_stratum(rng);
                let path = root.join(&file);
                let len = fs::metadata(&path).unwrap().len();
                let new = if rng.random_bool(0.5) {
                    rng.random_range(0..len)
                } else {
                    len + rng.random_range(1..=64)
                };
                set_len(&path, new);
                (
                    format!("{file} from {len} to {new} bytes"),
                    vec![Expect::file(file)],
                )
            }
            Kind::ManifestLineRemoved => {
                let (ci, li) = self.pick_line(rng, |_| true);
                let c = &self.chains[ci];
                edit_lines(root, &c.manifest, |i, _| (i == li).then_some(None));
                let file = &c.lines[li].file;
                (
                    format!("{} line {} ({file})", c.manifest, li + 1),
                    vec![Expect::file(&c.manifest)],
                )
            }
            Kind::ManifestRootReplaced => {
                let (ci, li) = self.pick_line(rng, |_| true);
                let c = &self.chains[ci];
                let root_hex = hex::encode(rng.random::<[u8; 32]>());
                edit_manifest(root, &c.manifest, |i, v| {
                    if i == li {
                        v["root"] = root_hex.clone().into();
                    }
                });
                (
                    format!("{} line {} root", c.manifest, li + 1),
                    vec![Expect::file(&c.manifest)],
                )
            }
            Kind::CheckpointBodyChanged => {
                // A changed body is caught by its signature, and without the
                // key by what it claims.
                keyless = rng.random_bool(0.5);
                let (target, expect) = self.change_checkpoint_body(root, rng);
                let how = if keyless { "without" } else { "with" };
                (format!("{target}, verified {how} the key"), expect)
            }
            Kind::CheckpointSignedByOtherKey => self.sign_with_other_key(root, rng),
            Kind::CheckpointReplayed => self.replay_checkpoint(root, rng),
            Kind::RolledBack | Kind::RolledBackWithCheckpoints | Kind::Forked => {
                self.roll_back(root, kind, rng)
            }
        };
        // A line left out breaks its table's seq once: the later rows are
        // still judged against the leaves of their own seqs, so neither
        // they nor the checkpoints over them are reported.
        let absent: &[&str] = match kind {
            Kind::ManifestLineRemoved => &[
                "does not hash to leaf",
                "differ from the stored tree",
                "is not the Merkle root",
                "history before it was changed",
            ],
            _ => &[],
        };
        Case {
            kind,
            target,
            expect,
            absent,
            keyless,
        }
    }
}
