//! The acceptance suite of tamper evidence: every honest store verifies,
//! and every tampering of a store of more than 100 000 events is caught
//! by `verify` with a problem that names the tampered place.
//!
//! One honest store is built; then each case tampers with a working copy
//! in one way (chosen by a seeded RNG: which chain, segment, row, byte),
//! verifies it, checks the report, and puts the copy back byte for byte
//! from a snapshot of the honest store (equivalent to a fresh copy, and
//! much cheaper: every file that differs, is missing or was added is
//! restored). Cases run on one working copy per core, each `verify` on
//! one thread. Failures are collected and listed together, so one run
//! shows every tampering that verify misses or misplaces.
//!
//! The tamperings are those an attacker with write access and the format
//! document can do: flipped bytes; rows changed, removed, added or moved
//! with the manifest resealed (so only the row and tree checks can catch
//! them); history rewritten with the tree and manifest roots recomputed (so
//! only signed checkpoints can); segments and manifest lines removed,
//! swapped or edited; checkpoints forged, replayed or rolled back.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray, UInt32Array, UInt64Array,
};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{
    DataType, Int32Type, Int64Type, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use custos::event::{Decoder, Event, PseudonymKey, Pseudonymizer, Reject};
use custos::ledger::checkpoint::{Checkpoint, NoteSigner, NoteVerifier, unverified_text};
use custos::ledger::tree::{Frontier, STRIDE};
use custos::ledger::{
    ChainId, CheckpointLine, HashAlg, ManifestLine, Origin, Problem, Store, StoreOptions, Table,
    VerifyOptions, VerifyReport, verify_with,
};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const VALID: &str = include_str!("data/events-v1.jsonl");
const INVALID: &str = include_str!("data/events-invalid.jsonl");

const ORIGIN: &str = "custos.test/tamper";
const STREAM: &str = "audit";
const SIGNER: &str = "custos-test";
const SIGNER_SEED: [u8; 32] = [9; 32];

// ---------------------------------------------------------------------------
// Honest stores

/// How an honest store is shaped.
#[derive(Clone, Copy, Debug)]
struct Shape {
    alg: HashAlg,
    chains: i32,
    /// Events per chain.
    events: usize,
    /// Most events in one flush (a few flushes are 255–257 regardless).
    max_flush: usize,
    /// Chance that a flush also holds rejects, and the most it holds.
    reject_chance: f64,
    max_rejects: usize,
    /// Chance that a flush holds only rejects.
    rejects_only_chance: f64,
    /// Flushes between checkpoints (0: none); a last one after the last flush.
    checkpoint_every: u32,
}

/// A checkpoint the store holds.
#[derive(Clone, Debug)]
struct StoredNote {
    partition: i32,
    table: Table,
    size: u64,
    note: String,
}

/// What building a store wrote and signed.
struct Built {
    events: u64,
    rejects: u64,
    notes: Vec<StoredNote>,
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed(SIGNER, SIGNER_SEED).unwrap()
}

fn store_options(alg: HashAlg) -> StoreOptions {
    StoreOptions {
        hash: alg,
        origin: Some(ORIGIN.into()),
        ..StoreOptions::default()
    }
}

/// The example events, and the rejects of the invalid examples.
fn inputs() -> (Vec<Event>, Vec<(String, Reject)>) {
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::from_bytes([1; 32])));
    let lines = |text: &'static str| text.lines().filter(|l| !l.trim().is_empty());
    let events = lines(VALID)
        .map(|l| decoder.decode(l.as_bytes()).unwrap())
        .collect();
    let rejects = lines(INVALID)
        .map(|l| (l.to_owned(), decoder.decode(l.as_bytes()).unwrap_err()))
        .collect();
    (events, rejects)
}

/// Events in one flush: mostly uniform, sometimes tiny, sometimes around
/// 256 (where the tree's stratum 8 starts).
fn flush_size(rng: &mut StdRng, max: usize) -> usize {
    match rng.random_range(0..8) {
        0 => rng.random_range(1..=4),
        1 => [255, 256, 257][rng.random_range(0..3)],
        _ => rng.random_range(1..=max),
    }
}

fn note_size(note: &str) -> u64 {
    Checkpoint::parse(unverified_text(note).unwrap())
        .unwrap()
        .size
}

/// Writes an honest store: `shape.chains` chains of events (examples with
/// unique ids) and rejects, flushed in random sizes, checkpointed now and
/// then, the writer sometimes closed and reopened between flushes.
fn build(root: &Path, shape: Shape, seed: u64) -> Built {
    let store = Store::open(root, store_options(shape.alg)).unwrap();
    let (examples, invalid) = inputs();
    let signer = signer();
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut total_events, mut total_rejects, mut notes) = (0, 0, Vec::new());
    for p in 0..shape.chains {
        let chain = ChainId::new(STREAM, p);
        let mut w = store.chain_writer(&chain).unwrap();
        let (mut offset, mut n, mut flushes) = (0i64, 0usize, 0i64);
        let mut checkpoint = |w: &mut custos::ledger::ChainWriter, flushes: i64| {
            let time = chrono::DateTime::from_timestamp(1_780_000_000 + flushes, 0).unwrap();
            for line in w.checkpoint(&signer, time).unwrap() {
                notes.push(StoredNote {
                    partition: p,
                    table: line.table,
                    size: note_size(&line.note),
                    note: line.note,
                });
            }
        };
        while n < shape.events {
            let only_rejects = rng.random_bool(shape.rejects_only_chance);
            let mut events = if only_rejects {
                0
            } else {
                flush_size(&mut rng, shape.max_flush).min(shape.events - n)
            };
            let mut rejects = if only_rejects || rng.random_bool(shape.reject_chance) {
                rng.random_range(1..=shape.max_rejects)
            } else {
                0
            };
            total_events += events as u64;
            total_rejects += rejects as u64;
            // Rejects at random places among the events.
            while events + rejects > 0 {
                if rng.random_range(0..events + rejects) < rejects {
                    let (line, reject) = &invalid[rng.random_range(0..invalid.len())];
                    let key = rng.random_bool(0.5).then_some(&b"emp-1"[..]);
                    w.push_reject(Origin::kafka(offset), key, line.as_bytes(), reject);
                    rejects -= 1;
                } else {
                    let mut event = examples[(n * 7 + p as usize) % examples.len()].clone();
                    event.id = format!("{}-{p}-{n}", event.id);
                    w.push_event(Origin::kafka(offset), &event);
                    events -= 1;
                    n += 1;
                }
                offset += rng.random_range(1..3);
            }
            w.flush().unwrap();
            flushes += 1;
            if shape.checkpoint_every > 0 && flushes % i64::from(shape.checkpoint_every) == 0 {
                checkpoint(&mut w, flushes);
            }
            if rng.random_bool(0.1) {
                drop(w);
                w = store.chain_writer(&chain).unwrap();
            }
        }
        if shape.checkpoint_every > 0 {
            checkpoint(&mut w, flushes + 1);
        }
    }
    Built {
        events: total_events,
        rejects: total_rejects,
        notes,
    }
}

fn verify(root: &Path, verifier: Option<NoteVerifier>, external: Vec<String>) -> VerifyReport {
    let opts = VerifyOptions {
        verifier,
        external,
        threads: 1,
        ..VerifyOptions::default()
    };
    verify_with(root, &opts).unwrap()
}

fn assert_verifies(report: &VerifyReport, what: &str) {
    let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
    assert!(
        report.ok(),
        "{what} does not verify:\n{}",
        problems.join("\n")
    );
}

/// A temporary folder, in memory where the system has one.
fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("custos-tamper")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

#[test]
fn honest_stores_verify() {
    let shapes = [
        (1, 1, 1, 1.0, 0.0, 1),
        (1, 300, 1, 0.0, 0.0, 0),
        (2, 1_000, 300, 0.3, 0.0, 3),
        (3, 2_000, 600, 0.5, 0.2, 2),
        (2, 700, 40, 1.0, 0.3, 1),
        (3, 3_000, 1_500, 0.1, 0.0, 4),
    ];
    for (i, (chains, events, max_flush, reject_chance, rejects_only_chance, every)) in
        shapes.into_iter().enumerate()
    {
        for alg in [HashAlg::Blake3, HashAlg::Sha256] {
            let shape = Shape {
                alg,
                chains,
                events,
                max_flush,
                reject_chance,
                max_rejects: 30,
                rejects_only_chance,
                checkpoint_every: every,
            };
            let dir = tempdir();
            let root = dir.path().join("store");
            let built = build(&root, shape, 100 + i as u64);
            let notes: Vec<String> = built.notes.iter().map(|n| n.note.clone()).collect();
            let what = format!("honest store {shape:?}");
            let report = verify(&root, Some(signer().verifier()), notes.clone());
            assert_verifies(&report, &what);
            assert!(report.signatures_checked);
            assert_eq!(
                (report.events, report.rejects),
                (built.events, built.rejects)
            );
            assert_eq!(report.checkpoints, 2 * notes.len(), "{what}");
            assert_verifies(&verify(&root, None, notes), &what);
        }
    }
    // A store without chains.
    let dir = tempdir();
    let root = dir.path().join("store");
    Store::open(&root, store_options(HashAlg::Blake3)).unwrap();
    assert_verifies(
        &verify(&root, Some(signer().verifier()), vec![]),
        "empty store",
    );
}

#[test]
fn tamperings_of_a_large_store_are_caught_where_they_are() {
    let started = Instant::now();
    let dir = tempdir();
    let root = dir.path().join("store");
    let shape = Shape {
        alg: HashAlg::Blake3,
        chains: 3,
        events: 33_400,
        max_flush: 1_600,
        reject_chance: 0.5,
        max_rejects: 60,
        rejects_only_chance: 0.0,
        checkpoint_every: 5,
    };
    let built = build(&root, shape, 2026);
    let lab = Lab::new(&root, shape.alg, &built);
    let honest = lab.verify(&root, false);
    assert_verifies(&honest, "the honest store");
    assert!(honest.events >= 100_000, "{} events", honest.events);
    assert!(honest.signatures_checked);
    assert_eq!(honest.checkpoints, built.notes.len() + lab.external.len());
    let keyless = lab.verify(&root, true);
    assert_verifies(&keyless, "the honest store, without the key");
    assert!(!keyless.signatures_checked);
    lab.assert_shape();
    eprintln!(
        "honest store: {} events, {} rejects, {} segments, {} checkpoints checked, built and verified in {:?}",
        honest.events,
        honest.rejects,
        honest.segments,
        honest.checkpoints,
        started.elapsed()
    );

    let rounds = 9;
    let cases = lab.run(&Kind::ALL.repeat(rounds), 20_260_101, dir.path());
    assert!(cases >= 200, "{cases} tamperings");
    eprintln!("{cases} tamperings in {:?}", started.elapsed());
}

#[test]
fn tamperings_of_a_sha256_store_are_caught_where_they_are() {
    let dir = tempdir();
    let root = dir.path().join("store");
    let shape = Shape {
        alg: HashAlg::Sha256,
        chains: 2,
        events: 1_500,
        max_flush: 400,
        reject_chance: 0.5,
        max_rejects: 20,
        rejects_only_chance: 0.05,
        checkpoint_every: 3,
    };
    let built = build(&root, shape, 256);
    let lab = Lab::new(&root, shape.alg, &built);
    assert_verifies(&lab.verify(&root, false), "the honest SHA-256 store");
    lab.run(&Kind::ALL, 256, dir.path());
}

// ---------------------------------------------------------------------------
// The lab: an honest store's snapshot and facts, and the tamperings

/// A chain of the honest store.
struct ChainFacts {
    partition: i32,
    manifest: String,
    checkpoints: String,
    lines: Vec<ManifestLine>,
    checkpoint_lines: Vec<CheckpointLine>,
}

struct Lab {
    alg: HashAlg,
    verifier: NoteVerifier,
    /// The auditor's copies: the first and last checkpoint of every log.
    external: Vec<StoredNote>,
    notes: Vec<StoredNote>,
    chains: Vec<ChainFacts>,
    honest: Snapshot,
}

impl Lab {
    fn new(root: &Path, alg: HashAlg, built: &Built) -> Lab {
        let honest = Snapshot::take(root);
        let text = |rel: &str| String::from_utf8(honest.files[rel].clone()).unwrap();
        let mut partitions: Vec<i32> = built.notes.iter().map(|n| n.partition).collect();
        partitions.sort_unstable();
        partitions.dedup();
        let chains = partitions
            .into_iter()
            .map(|p| {
                let manifest = format!("manifests/{STREAM}/{p}.jsonl");
                let checkpoints = format!("checkpoints/{STREAM}/{p}.jsonl");
                ChainFacts {
                    partition: p,
                    lines: text(&manifest)
                        .lines()
                        .map(|l| serde_json::from_str(l).unwrap())
                        .collect(),
                    checkpoint_lines: text(&checkpoints)
                        .lines()
                        .map(|l| serde_json::from_str(l).unwrap())
                        .collect(),
                    manifest,
                    checkpoints,
                }
            })
            .collect();
        let mut external = Vec::new();
        for log in logs(&built.notes) {
            let of_log = built.notes.iter().filter(|n| (n.partition, n.table) == log);
            let first = of_log.clone().min_by_key(|n| n.size).unwrap();
            let last = of_log.max_by_key(|n| n.size).unwrap();
            external.push(first.clone());
            if last.size != first.size {
                external.push(last.clone());
            }
        }
        Lab {
            alg,
            verifier: signer().verifier(),
            external,
            notes: built.notes.clone(),
            chains,
            honest,
        }
    }

    /// Verifies with the auditor's external checkpoints, and with the
    /// verifier key unless `keyless`.
    fn verify(&self, root: &Path, keyless: bool) -> VerifyReport {
        let external = self.external.iter().map(|n| n.note.clone()).collect();
        let verifier = (!keyless).then(|| self.verifier.clone());
        verify(root, verifier, external)
    }

    /// The store has what the tamperings need: several chains, many
    /// segments, segments above 256 rows, stratum 8, several checkpoints
    /// of different sizes per log.
    fn assert_shape(&self) {
        assert!(self.chains.len() >= 3);
        let segments: usize = self.chains.iter().map(|c| c.lines.len()).sum();
        assert!(segments >= 100, "{segments} segments");
        let big = self.lines().filter(|(_, l)| l.rows > 256).count();
        assert!(big >= 20, "{big} segments above 256 rows");
        for c in &self.chains {
            for table in Table::ALL {
                let stratum = format!("tree/{}/{STREAM}/{}/8.hashes", table.as_str(), c.partition);
                assert!(self.honest.files.contains_key(&stratum), "{stratum}");
                let sizes: BTreeSet<u64> = self
                    .notes
                    .iter()
                    .filter(|n| (n.partition, n.table) == (c.partition, table))
                    .map(|n| n.size)
                    .collect();
                assert!(sizes.len() >= 3, "checkpoint sizes {sizes:?}");
            }
        }
    }

    /// Every manifest line: (chain index, line).
    fn lines(&self) -> impl Iterator<Item = ((usize, usize), &ManifestLine)> {
        self.chains
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| c.lines.iter().enumerate().map(move |(li, l)| ((ci, li), l)))
    }

    /// A random manifest line among those `want` accepts; a quarter of the
    /// time one at an edge (the first or last line of its manifest).
    fn pick_line(&self, rng: &mut StdRng, want: impl Fn(&ManifestLine) -> bool) -> (usize, usize) {
        let edge = rng.random_bool(0.25);
        let all: Vec<(usize, usize)> = self
            .lines()
            .filter(|((ci, li), l)| {
                want(l) && (!edge || *li == 0 || *li + 1 == self.chains[*ci].lines.len())
            })
            .map(|(at, _)| at)
            .collect();
        if all.is_empty() {
            return self.pick_line(rng, want);
        }
        all[rng.random_range(0..all.len())]
    }

    fn line(&self, (ci, li): (usize, usize)) -> &ManifestLine {
        &self.chains[ci].lines[li]
    }

    /// Runs one case per kind in `kinds` (targets drawn from `seed`) on one
    /// working copy per core under `scratch`; panics listing every case
    /// that was not caught where it should be. Returns the number of cases.
    fn run(&self, kinds: &[Kind], seed: u64, scratch: &Path) -> usize {
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(seed);
        let plans: Vec<(Kind, u64)> = kinds.iter().map(|&k| (k, rng.random())).collect();
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
        let copies: Vec<PathBuf> = (0..workers)
            .map(|i| {
                let copy = scratch.join(format!("work-{i}"));
                self.honest.restore(&copy);
                copy
            })
            .collect();
        // CUSTOS_TAMPER_SHOW=1 prints every case and what verify said.
        let show = std::env::var_os("CUSTOS_TAMPER_SHOW").is_some();
        let next = AtomicUsize::new(0);
        let failures = Mutex::new(Vec::new());
        let (next_ref, failures_ref, plans_ref) = (&next, &failures, &plans);
        std::thread::scope(|s| {
            for copy in &copies {
                s.spawn(move || {
                    loop {
                        let i = next_ref.fetch_add(1, Ordering::Relaxed);
                        let Some(&(kind, seed)) = plans_ref.get(i) else {
                            break;
                        };
                        let case = self.tamper(copy, kind, &mut StdRng::seed_from_u64(seed));
                        let report = self.verify(copy, case.keyless);
                        if show {
                            eprintln!("{}", case.show(i, &report));
                        }
                        if let Err(why) = case.check(&report) {
                            failures_ref.lock().unwrap().push((i, why));
                        }
                        self.honest.restore(copy);
                    }
                });
            }
        });
        for copy in &copies {
            assert_verifies(&self.verify(copy, false), "a restored working copy");
        }
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for (kind, _) in &plans {
            *counts.entry(format!("{kind:?}")).or_default() += 1;
        }
        eprintln!(
            "{} tamperings on {workers} working copies in {:?}; by kind: {counts:?}",
            plans.len(),
            started.elapsed()
        );
        let mut failures = failures.into_inner().unwrap();
        failures.sort();
        let text: Vec<String> = failures
            .iter()
            .map(|(i, why)| format!("case {i}: {why}"))
            .collect();
        assert!(
            failures.is_empty(),
            "{} of {} tamperings were not caught where they are:\n\n{}",
            failures.len(),
            plans.len(),
            text.join("\n\n")
        );
        plans.len()
    }
}

/// The logs that hold checkpoints: (partition, table).
fn logs(notes: &[StoredNote]) -> BTreeSet<(i32, Table)> {
    notes.iter().map(|n| (n.partition, n.table)).collect()
}

// ---------------------------------------------------------------------------
// Cases and what verify must say about them

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
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
    const ALL: [Kind; 23] = [
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
struct Place {
    file: String,
    what: Option<String>,
}

impl Place {
    fn file(file: impl Into<String>) -> Place {
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
struct Expect {
    any: Vec<Place>,
    row: Option<u64>,
}

impl Expect {
    fn file(file: impl Into<String>) -> Expect {
        Expect {
            any: vec![Place::file(file)],
            row: None,
        }
    }

    fn row(file: impl Into<String>, row: u64) -> Expect {
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
struct Case {
    kind: Kind,
    target: String,
    expect: Vec<Expect>,
    /// Verify without the verifier key.
    keyless: bool,
}

impl Case {
    fn check(&self, report: &VerifyReport) -> Result<(), String> {
        let why = if report.ok() {
            Some("not caught: verify reports no problem".to_owned())
        } else {
            self.expect
                .iter()
                .find_map(|e| self.miss(e, &report.problems))
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

    fn show(&self, i: usize, report: &VerifyReport) -> String {
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
    fn tamper(&self, root: &Path, kind: Kind, rng: &mut StdRng) -> Case {
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
        Case {
            kind,
            target,
            expect,
            keyless,
        }
    }

    /// A stratum file of some log (0.hashes or a higher one).
    fn pick_stratum(&self, rng: &mut StdRng) -> String {
        let strata: Vec<&String> = self
            .honest
            .files
            .iter()
            .filter(|(f, b)| f.starts_with("tree/") && f.ends_with(".hashes") && !b.is_empty())
            .map(|(f, _)| f)
            .collect();
        strata[rng.random_range(0..strata.len())].clone()
    }

    /// Changes one digit of a field value of a manifest line, keeping the
    /// line valid JSON.
    fn flip_manifest_digit(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        const FIELDS: [&str; 11] = [
            "root",
            "file_blake3",
            "rows",
            "bytes",
            "first_seq",
            "first_offset",
            "last_offset",
            "min_time_us",
            "max_time_us",
            "flush",
            "flush_segments",
        ];
        let (ci, li) = self.pick_line(rng, |_| true);
        let c = &self.chains[ci];
        let text = String::from_utf8(self.honest.files[&c.manifest].clone()).unwrap();
        let line = text.lines().nth(li).unwrap();
        let spans: Vec<(&str, (usize, usize))> = FIELDS
            .iter()
            .filter_map(|&f| value_span(line, f).map(|s| (f, s)))
            .collect();
        let (field, (start, end)) = spans[rng.random_range(0..spans.len())];
        let hex = line.as_bytes()[start] == b'"';
        let digits: Vec<usize> = (start..end)
            .filter(|&i| line.as_bytes()[i].is_ascii_hexdigit())
            .collect();
        let at = digits[rng.random_range(0..digits.len())];
        let old = line.as_bytes()[at];
        let choices: &[u8] = if hex {
            b"0123456789abcdef"
        } else if at == digits[0] && digits.len() > 1 {
            b"123456789"
        } else {
            b"0123456789"
        };
        let new = loop {
            let c = choices[rng.random_range(0..choices.len())];
            if c != old {
                break c;
            }
        };
        let mut edited = line.as_bytes().to_vec();
        edited[at] = new;
        let edited = String::from_utf8(edited).unwrap();
        edit_lines(root, &c.manifest, |i, _| {
            (i == li).then(|| Some(edited.clone()))
        });
        let file = &c.lines[li].file;
        (
            format!(
                "{} line {} ({file}) {field} {:?} -> {:?}",
                c.manifest,
                li + 1,
                &line[start..end],
                &edited[start..end]
            ),
            vec![Expect::file(&c.manifest)],
        )
    }

    /// Rewrites segment `at` with `edit` and reseals its manifest line;
    /// returns the first row that differs.
    fn rewrite(
        &self,
        root: &Path,
        at: (usize, usize),
        edit: impl FnOnce(&RecordBatch) -> RecordBatch,
    ) -> u64 {
        let line = self.line(at);
        let path = root.join(&line.file);
        let (old, meta) = read_segment(&path);
        let new = edit(&old);
        write_segment(&path, &new, meta);
        reseal(root, &self.chains[at.0].manifest, &line.file);
        first_difference(&old, &new)
    }

    fn change_column(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_line(rng, |_| true);
        let line = self.line(at);
        let columns: &[&str] = match line.table {
            Table::Events => &[
                "seq",
                "stream",
                "partition",
                "offset",
                "id",
                "time",
                "kind",
                "actor_id",
                "actor_role",
                "patient",
                "action",
                "records",
            ],
            Table::Rejects => &[
                "seq", "stream", "offset", "reason", "detail", "key", "payload",
            ],
        };
        let column = columns[rng.random_range(0..columns.len())];
        let r = pick_row(rng, line.rows as u32) as usize;
        let row = self.rewrite(root, at, |b| with_cell_changed(b, column, r));
        (
            format!("{} row {r} column {column}", line.file),
            vec![Expect::row(&line.file, row)],
        )
    }

    /// Changes the record of one row: with its column (so only the tree
    /// can tell), alone, or only in its bytes (same JSON, other leaf).
    fn change_record(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_line(rng, |_| true);
        let line = self.line(at);
        let r = pick_row(rng, line.rows as u32) as usize;
        let how = ["with its column", "alone", "in its bytes only"][rng.random_range(0..3)];
        let table = line.table;
        let row = self.rewrite(root, at, |b| match how {
            "in its bytes only" => {
                let record = format!("{} ", string_at(b, "record", r));
                with_string(b, "record", r, &record)
            }
            _ => changed_record(b, table, r, how == "with its column").0,
        });
        (
            format!("{} row {r} record changed {how}", line.file),
            vec![Expect::row(&line.file, row)],
        )
    }

    fn edit_rows(
        &self,
        root: &Path,
        rng: &mut StdRng,
        what: &str,
        rows: impl FnOnce(&mut StdRng, u32) -> Vec<u32>,
    ) -> (String, Vec<Expect>) {
        let min = if what == "swapped" { 2 } else { 1 };
        let at = self.pick_line(rng, |l| l.rows >= min);
        let line = self.line(at);
        let order = rows(rng, line.rows as u32);
        let row = self.rewrite(root, at, |b| pick(b, &order));
        let shown = if order.len() > 12 {
            let (a, b) = (
                row.saturating_sub(2) as usize,
                (row as usize + 3).min(order.len()),
            );
            format!("…{:?}…", &order[a..b])
        } else {
            format!("{order:?}")
        };
        (
            format!("{} rows {what}: now {shown} of {}", line.file, line.rows),
            vec![Expect::row(&line.file, row)],
        )
    }

    /// Swaps the last row of a segment with the first row of the next
    /// segment of its table.
    fn swap_across_segments(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let next_of = |(ci, li): (usize, usize)| {
            let lines = &self.chains[ci].lines;
            let table = lines[li].table;
            (li + 1..lines.len())
                .find(|&j| lines[j].table == table)
                .map(|j| (ci, j))
        };
        let a = loop {
            let a = self.pick_line(rng, |_| true);
            if next_of(a).is_some() {
                break a;
            }
        };
        let b = next_of(a).unwrap();
        let (la, lb) = (self.line(a), self.line(b));
        let (old_a, meta_a) = read_segment(&root.join(&la.file));
        let (old_b, meta_b) = read_segment(&root.join(&lb.file));
        let n = old_a.num_rows();
        let schema = old_a.schema();
        let new_a = concat_batches(&schema, &[old_a.slice(0, n - 1), old_b.slice(0, 1)]).unwrap();
        let new_b = concat_batches(
            &schema,
            &[old_a.slice(n - 1, 1), old_b.slice(1, old_b.num_rows() - 1)],
        )
        .unwrap();
        write_segment(&root.join(&la.file), &new_a, meta_a);
        write_segment(&root.join(&lb.file), &new_b, meta_b);
        let manifest = &self.chains[a.0].manifest;
        reseal(root, manifest, &la.file);
        reseal(root, manifest, &lb.file);
        (
            format!("{} row {} <-> {} row 0", la.file, n - 1, lb.file),
            vec![
                Expect::row(&la.file, n as u64 - 1),
                Expect::row(&lb.file, 0),
            ],
        )
    }

    /// Changes one record and its column, then recomputes the log's tree
    /// strata and every manifest root after it: rows, tree and manifest
    /// agree, and only the signed checkpoints can tell.
    fn rewrite_history(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_line(rng, |_| true);
        let line = self.line(at);
        let c = &self.chains[at.0];
        let r = pick_row(rng, line.rows as u32) as usize;
        let mut record = String::new();
        self.rewrite(root, at, |b| {
            let (batch, new) = changed_record(b, line.table, r, true);
            record = new;
            batch
        });

        let dir = format!("tree/{}/{STREAM}/{}", line.table.as_str(), c.partition);
        let mut leaves: Vec<[u8; 32]> = self.honest.files[&format!("{dir}/0.hashes")]
            .chunks_exact(32)
            .map(|h| h.try_into().unwrap())
            .collect();
        leaves[(line.first_seq + r as u64) as usize] = self.alg.leaf(record.as_bytes());
        let ends: HashMap<u64, usize> = c
            .lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.table == line.table)
            .map(|(i, l)| (l.end_seq(), i))
            .collect();
        let mut strata = vec![Vec::new(); 8];
        let mut roots = HashMap::new();
        let mut tree = Frontier::new(self.alg);
        for leaf in leaves {
            tree.push(leaf, |height, _, hash| {
                strata[(height / STRIDE) as usize].extend_from_slice(hash);
            });
            if let Some(&i) = ends.get(&tree.size()) {
                roots.insert(i, hex::encode(tree.root()));
            }
        }
        for (i, hashes) in strata.iter().enumerate() {
            let file = format!("{dir}/{}.hashes", i as u32 * STRIDE);
            if self.honest.files.contains_key(&file) {
                fs::write(root.join(file), hashes).unwrap();
            }
        }
        edit_manifest(root, &c.manifest, |i, v| {
            if let Some(hex) = roots.get(&i) {
                v["root"] = hex.clone().into();
            }
        });
        (
            format!("{} row {r}, with its tree and manifest roots", line.file),
            vec![Expect::file(&c.checkpoints)],
        )
    }

    /// A random stored checkpoint line: (chain index, line index).
    fn pick_checkpoint(&self, rng: &mut StdRng) -> (usize, usize) {
        let all: Vec<(usize, usize)> = self
            .chains
            .iter()
            .enumerate()
            .flat_map(|(ci, c)| (0..c.checkpoint_lines.len()).map(move |li| (ci, li)))
            .collect();
        all[rng.random_range(0..all.len())]
    }

    /// Replaces the note of a stored checkpoint line.
    fn replace_note(&self, root: &Path, (ci, li): (usize, usize), note: String) -> Vec<Expect> {
        let c = &self.chains[ci];
        let mut line = c.checkpoint_lines[li].clone();
        line.note = note;
        let text = serde_json::to_string(&line).unwrap();
        edit_lines(root, &c.checkpoints, |i, _| {
            (i == li).then(|| Some(text.clone()))
        });
        vec![Expect::file(&c.checkpoints)]
    }

    fn change_checkpoint_body(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_checkpoint(rng);
        let note = &self.chains[at.0].checkpoint_lines[at.1].note;
        let split = note.rfind("\n\n").unwrap();
        let mut cp = Checkpoint::parse(&note[..split + 1]).unwrap();
        let how = match rng.random_range(0..3) {
            0 => {
                cp.size = if cp.size > 1 && rng.random_bool(0.5) {
                    cp.size - 1
                } else {
                    cp.size + 1
                };
                "size"
            }
            1 => {
                cp.root[rng.random_range(0..32)] ^= 1 << rng.random_range(0..8);
                "root"
            }
            _ => {
                cp.origin.push('0');
                "origin"
            }
        };
        let forged = format!("{}{}", cp.body(), &note[split + 1..]);
        let target = format!(
            "{} line {}: {how} changed",
            self.chains[at.0].checkpoints,
            at.1 + 1
        );
        (target, self.replace_note(root, at, forged))
    }

    fn sign_with_other_key(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_checkpoint(rng);
        let note = &self.chains[at.0].checkpoint_lines[at.1].note;
        let mut cp = Checkpoint::parse(unverified_text(note).unwrap()).unwrap();
        let name = if rng.random_bool(0.5) {
            SIGNER
        } else {
            "mallory"
        };
        let lie = rng.random_bool(0.5);
        if lie {
            cp.root = rng.random();
        }
        let other = NoteSigner::from_seed(name, rng.random()).unwrap();
        let forged = other.sign(&cp.body()).unwrap();
        let target = format!(
            "{} line {}: signed by another key named {name}{}",
            self.chains[at.0].checkpoints,
            at.1 + 1,
            if lie { ", other root" } else { "" }
        );
        (target, self.replace_note(root, at, forged))
    }

    /// Puts a genuine checkpoint of another log in place of one.
    fn replay_checkpoint(&self, root: &Path, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let at = self.pick_checkpoint(rng);
        let c = &self.chains[at.0];
        let table = c.checkpoint_lines[at.1].table;
        let others: Vec<&StoredNote> = self
            .notes
            .iter()
            .filter(|n| (n.partition, n.table) != (c.partition, table))
            .collect();
        let donor = others[rng.random_range(0..others.len())];
        let target = format!(
            "{} line {}: note of {}/{} size {} instead",
            c.checkpoints,
            at.1 + 1,
            donor.table.as_str(),
            donor.partition,
            donor.size
        );
        (target, self.replace_note(root, at, donor.note.clone()))
    }

    /// Rolls a chain back by its last flushes, consistently: manifest lines,
    /// segments and strata. `RolledBackWithCheckpoints` also drops the
    /// stored checkpoints the rollback would contradict, and `Forked` then
    /// appends other events: only the auditor's external copies catch those.
    fn roll_back(&self, root: &Path, kind: Kind, rng: &mut StdRng) -> (String, Vec<Expect>) {
        let ci = rng.random_range(0..self.chains.len());
        let c = &self.chains[ci];
        let flushes = c.lines.last().unwrap().flush + 1;
        let cut = if rng.random_bool(0.1) {
            flushes
        } else {
            rng.random_range(1..=8.min(flushes))
        };
        let keep = c.lines.iter().filter(|l| l.flush < flushes - cut).count();
        for line in &c.lines[keep..] {
            fs::remove_file(root.join(&line.file)).unwrap();
        }
        edit_lines(root, &c.manifest, |i, _| (i >= keep).then_some(None));
        let mut sizes = HashMap::new();
        for table in Table::ALL {
            let size = c.lines[..keep]
                .iter()
                .filter(|l| l.table == table)
                .map(ManifestLine::end_seq)
                .max()
                .unwrap_or(0);
            sizes.insert(table, size);
            for height in (0..64).step_by(STRIDE as usize) {
                let file = format!(
                    "tree/{}/{STREAM}/{}/{height}.hashes",
                    table.as_str(),
                    c.partition
                );
                if self.honest.files.contains_key(&file) {
                    set_len(&root.join(file), (size >> height) * 32);
                }
            }
        }
        let mut target = format!(
            "chain {STREAM}/{} rolled back by {cut} of {flushes} flushes (to {} events, {} rejects)",
            c.partition,
            sizes[&Table::Events],
            sizes[&Table::Rejects]
        );
        if kind == Kind::RolledBack {
            return (target, vec![Expect::file(&c.checkpoints)]);
        }

        edit_lines(root, &c.checkpoints, |i, _| {
            let line = &c.checkpoint_lines[i];
            (note_size(&line.note) > sizes[&line.table]).then_some(None)
        });
        target.push_str(", stored checkpoints beyond cut");
        if kind == Kind::Forked {
            let store = Store::open_existing(root).unwrap();
            let mut w = store
                .chain_writer(&ChainId::new(STREAM, c.partition))
                .unwrap();
            let next_offset = c.lines[..keep]
                .iter()
                .map(|l| l.last_offset + 1)
                .max()
                .unwrap_or(0);
            let (examples, _) = inputs();
            let n = rng.random_range(1..=600);
            for i in 0..n {
                let mut event = examples[i % examples.len()].clone();
                event.id = format!("forged-{i}");
                w.push_event(Origin::kafka(next_offset + i as i64), &event);
            }
            w.flush().unwrap();
            target.push_str(&format!(", then {n} other events appended"));
        }
        // Each log the rollback shrank has an external checkpoint beyond the cut.
        let any: Vec<Place> = self
            .external
            .iter()
            .enumerate()
            .filter(|(_, n)| n.partition == c.partition && n.size > sizes[&n.table])
            .map(|(i, _)| Place {
                file: "checkpoints".into(),
                what: Some(format!("external checkpoint {}:", i + 1)),
            })
            .collect();
        assert!(!any.is_empty(), "no external checkpoint covers the cut");
        (target, vec![Expect { any, row: None }])
    }
}

// ---------------------------------------------------------------------------
// Editing files

/// A row, biased to the edges: the first, the last, or any.
fn pick_row(rng: &mut StdRng, rows: u32) -> u32 {
    match rng.random_range(0..4) {
        0 => 0,
        1 => rows - 1,
        _ => rng.random_range(0..rows),
    }
}

fn flip_byte(path: &Path, rng: &mut StdRng) -> usize {
    let mut bytes = fs::read(path).unwrap();
    let at = rng.random_range(0..bytes.len());
    bytes[at] ^= rng.random_range(1..=255u8);
    fs::write(path, bytes).unwrap();
    at
}

fn set_len(path: &Path, len: u64) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// The span of a field's value in a JSON line (inside the quotes for a
/// string).
fn value_span(line: &str, field: &str) -> Option<(usize, usize)> {
    let key = format!("\"{field}\":");
    let start = line.find(&key)? + key.len();
    let rest = &line[start..];
    if let Some(text) = rest.strip_prefix('"') {
        let len = text.find('"')?;
        Some((start + 1, start + 1 + len))
    } else {
        let len = rest.find([',', '}'])?;
        Some((start, start + len))
    }
}

/// Rewrites the lines of a JSON-lines file: `edit(index, line)` returns
/// `None` to keep a line, `Some(None)` to drop it, `Some(Some(text))` to
/// replace it.
fn edit_lines(root: &Path, rel: &str, mut edit: impl FnMut(usize, &str) -> Option<Option<String>>) {
    let path = root.join(rel);
    let text = fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        match edit(i, line) {
            None => out.push_str(line),
            Some(None) => continue,
            Some(Some(new)) => out.push_str(&new),
        }
        out.push('\n');
    }
    fs::write(path, out).unwrap();
}

/// Edits manifest lines as JSON; lines `edit` leaves alone keep their text.
fn edit_manifest(root: &Path, rel: &str, mut edit: impl FnMut(usize, &mut serde_json::Value)) {
    edit_lines(root, rel, |i, line| {
        let old: serde_json::Value = serde_json::from_str(line).unwrap();
        let mut new = old.clone();
        edit(i, &mut new);
        (new != old).then(|| Some(serde_json::to_string(&new).unwrap()))
    });
}

/// Makes the manifest agree with a segment's new digest and size, so only
/// the deeper checks can catch an edit of its rows.
fn reseal(root: &Path, manifest: &str, file: &str) {
    let bytes = fs::read(root.join(file)).unwrap();
    edit_manifest(root, manifest, |_, v| {
        if v["file"] == file {
            v["file_blake3"] = blake3::hash(&bytes).to_hex().to_string().into();
            v["bytes"] = (bytes.len() as u64).into();
        }
    });
}

/// A segment's rows and its `custos.*` metadata.
fn read_segment(path: &Path) -> (RecordBatch, Vec<KeyValue>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap()).unwrap();
    let meta: Vec<KeyValue> = builder
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .iter()
        .filter(|kv| kv.key.starts_with("custos."))
        .cloned()
        .collect();
    let schema = builder.schema().clone();
    let batches: Vec<RecordBatch> = builder.build().unwrap().map(Result::unwrap).collect();
    (concat_batches(&schema, &batches).unwrap(), meta)
}

/// Writes rows as a segment with the given metadata, as an attacker with
/// the format document would.
fn write_segment(path: &Path, batch: &RecordBatch, meta: Vec<KeyValue>) {
    let props = WriterProperties::builder()
        .set_key_value_metadata(Some(meta))
        .build();
    let file = fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

fn first_difference(old: &RecordBatch, new: &RecordBatch) -> u64 {
    assert_ne!(old, new, "the tampering changed nothing");
    let n = old.num_rows().min(new.num_rows());
    (0..n)
        .find(|&i| old.slice(i, 1) != new.slice(i, 1))
        .unwrap_or(n) as u64
}

fn pick(batch: &RecordBatch, rows: &[u32]) -> RecordBatch {
    take_record_batch(batch, &UInt32Array::from(rows.to_vec())).unwrap()
}

fn string_at(batch: &RecordBatch, column: &str, row: usize) -> String {
    batch
        .column_by_name(column)
        .unwrap()
        .as_string::<i32>()
        .value(row)
        .to_owned()
}

fn with_column(batch: &RecordBatch, column: &str, array: ArrayRef) -> RecordBatch {
    let mut columns = batch.columns().to_vec();
    columns[batch.schema().index_of(column).unwrap()] = array;
    RecordBatch::try_new(batch.schema(), columns).unwrap()
}

fn with_string(batch: &RecordBatch, column: &str, row: usize, value: &str) -> RecordBatch {
    let old = batch.column_by_name(column).unwrap().as_string::<i32>();
    let new: StringArray = old
        .iter()
        .enumerate()
        .map(|(i, v)| if i == row { Some(value) } else { v })
        .collect();
    with_column(batch, column, Arc::new(new))
}

/// The batch with one cell of `column` changed to another valid value.
fn with_cell_changed(batch: &RecordBatch, column: &str, row: usize) -> RecordBatch {
    let old = batch.column_by_name(column).unwrap();
    let at = |i: usize| i == row;
    let new: ArrayRef = match old.data_type() {
        DataType::Utf8 => {
            let a = old.as_string::<i32>();
            let value = format!("{}~", if a.is_valid(row) { a.value(row) } else { "" });
            return with_string(batch, column, row, &value);
        }
        DataType::Binary => Arc::new(
            old.as_binary::<i32>()
                .iter()
                .enumerate()
                .map(|(i, v)| match (at(i), v) {
                    (true, v) => Some([v.unwrap_or_default(), b"~"].concat()),
                    (false, v) => v.map(<[u8]>::to_vec),
                })
                .collect::<BinaryArray>(),
        ),
        DataType::UInt64 => Arc::new(
            old.as_primitive::<UInt64Type>()
                .iter()
                .enumerate()
                .map(|(i, v)| if at(i) { Some(v.unwrap_or(0) + 7) } else { v })
                .collect::<UInt64Array>(),
        ),
        DataType::Int64 => Arc::new(
            old.as_primitive::<Int64Type>()
                .iter()
                .enumerate()
                .map(|(i, v)| if at(i) { Some(v.unwrap_or(0) + 1) } else { v })
                .collect::<Int64Array>(),
        ),
        DataType::Int32 => Arc::new(
            old.as_primitive::<Int32Type>()
                .iter()
                .enumerate()
                .map(|(i, v)| if at(i) { Some(v.unwrap_or(0) + 1) } else { v })
                .collect::<Int32Array>(),
        ),
        DataType::Timestamp(TimeUnit::Microsecond, tz) => Arc::new(
            old.as_primitive::<TimestampMicrosecondType>()
                .iter()
                .enumerate()
                .map(|(i, v)| if at(i) { Some(v.unwrap_or(0) + 1) } else { v })
                .collect::<TimestampMicrosecondArray>()
                .with_timezone_opt(tz.clone()),
        ),
        other => panic!("no edit for a {other} column"),
    };
    with_column(batch, column, new)
}

/// The batch with the record of `row` holding another event id (events)
/// or detail (rejects), and with the matching column changed too if
/// `with_column`; also returns the new record.
fn changed_record(
    batch: &RecordBatch,
    table: Table,
    row: usize,
    with_column: bool,
) -> (RecordBatch, String) {
    let mut record: serde_json::Value =
        serde_json::from_str(&string_at(batch, "record", row)).unwrap();
    let (field, column) = match table {
        Table::Events => (&mut record["event"]["id"], "id"),
        Table::Rejects => (&mut record["detail"], "detail"),
    };
    let value = format!("{}~", field.as_str().unwrap());
    *field = value.clone().into();
    let record = serde_json::to_string(&record).unwrap();
    let mut batch = with_string(batch, "record", row, &record);
    if with_column {
        batch = with_string(&batch, column, row, &value);
    }
    (batch, record)
}

// ---------------------------------------------------------------------------
// Snapshots

/// Every folder and file of a store, with content.
#[derive(Default)]
struct Snapshot {
    dirs: BTreeSet<String>,
    files: BTreeMap<String, Vec<u8>>,
}

/// Calls `f(rel, is_dir)` for everything under `root`, parents first.
fn walk(root: &Path, rel: &str, f: &mut impl FnMut(String, bool)) {
    for entry in fs::read_dir(root.join(rel)).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().into_string().unwrap();
        let child = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        if entry.file_type().unwrap().is_dir() {
            f(child.clone(), true);
            walk(root, &child, f);
        } else {
            f(child, false);
        }
    }
}

impl Snapshot {
    fn take(root: &Path) -> Snapshot {
        let mut snap = Snapshot::default();
        walk(root, "", &mut |rel, is_dir| {
            if is_dir {
                snap.dirs.insert(rel);
            } else {
                let bytes = fs::read(root.join(&rel)).unwrap();
                snap.files.insert(rel, bytes);
            }
        });
        snap
    }

    /// Makes `root` hold exactly the snapshot (creating it if need be).
    fn restore(&self, root: &Path) {
        fs::create_dir_all(root).unwrap();
        let (mut seen, mut extra_dirs) = (BTreeSet::new(), Vec::new());
        walk(root, "", &mut |rel, is_dir| {
            let path = root.join(&rel);
            if is_dir {
                if !self.dirs.contains(&rel) {
                    extra_dirs.push(rel);
                }
                return;
            }
            match self.files.get(&rel) {
                None => fs::remove_file(&path).unwrap(),
                Some(bytes) => {
                    let same = fs::metadata(&path).unwrap().len() == bytes.len() as u64
                        && fs::read(&path).unwrap() == *bytes;
                    if !same {
                        fs::write(&path, bytes).unwrap();
                    }
                    seen.insert(rel);
                }
            }
        });
        for dir in extra_dirs.iter().rev() {
            fs::remove_dir_all(root.join(dir)).unwrap();
        }
        for dir in &self.dirs {
            fs::create_dir_all(root.join(dir)).unwrap();
        }
        for (rel, bytes) in &self.files {
            if !seen.contains(rel) {
                fs::write(root.join(rel), bytes).unwrap();
            }
        }
    }
}
