//! The lab: a snapshot of an honest store and the facts the tamperings
//! need (manifest and checkpoint lines, the auditor's external
//! checkpoints), and the runner that tampers with working copies in
//! parallel and collects every case verify misses or misplaces.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use custos::ledger::checkpoint::NoteVerifier;
use custos::ledger::{CheckpointLine, HashAlg, ManifestLine, Table, VerifyReport};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::build::{Built, StoredNote, signer, verify};
use crate::cases::Kind;
use crate::snapshot::Snapshot;
use crate::{STREAM, assert_verifies};

/// A chain of the honest store.
pub struct ChainFacts {
    pub partition: i32,
    pub manifest: String,
    pub checkpoints: String,
    pub lines: Vec<ManifestLine>,
    pub checkpoint_lines: Vec<CheckpointLine>,
}

pub struct Lab {
    pub alg: HashAlg,
    pub verifier: NoteVerifier,
    /// The auditor's copies: the first and last checkpoint of every log.
    pub external: Vec<StoredNote>,
    pub notes: Vec<StoredNote>,
    pub chains: Vec<ChainFacts>,
    pub honest: Snapshot,
}

impl Lab {
    pub fn new(root: &Path, alg: HashAlg, built: &Built) -> Lab {
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
    pub fn verify(&self, root: &Path, keyless: bool) -> VerifyReport {
        let external = self.external.iter().map(|n| n.note.clone()).collect();
        let verifier = (!keyless).then(|| self.verifier.clone());
        verify(root, verifier, external)
    }

    /// The store has what the tamperings need: several chains, many
    /// segments, segments above 256 rows, stratum 8, several checkpoints
    /// of different sizes per log.
    pub fn assert_shape(&self) {
        assert!(self.chains.len() >= 3);
        let segments: usize = self.chains.iter().map(|c| c.lines.len()).sum();
        assert!(segments >= 100, "{segments} segments");
        let big = self.lines().filter(|(_, l)| l.rows > 256).count();
        assert!(big >= 20, "{big} segments above 256 rows");
        for c in &self.chains {
            for table in [Table::Events, Table::Rejects] {
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
    pub fn pick_line(
        &self,
        rng: &mut StdRng,
        want: impl Fn(&ManifestLine) -> bool,
    ) -> (usize, usize) {
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

    pub fn line(&self, (ci, li): (usize, usize)) -> &ManifestLine {
        &self.chains[ci].lines[li]
    }

    /// Runs one case per kind in `kinds` (targets drawn from `seed`) on one
    /// working copy per core under `scratch`; panics listing every case
    /// that was not caught where it should be. Returns the number of cases.
    pub fn run(&self, kinds: &[Kind], seed: u64, scratch: &Path) -> usize {
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
pub fn logs(notes: &[StoredNote]) -> BTreeSet<(i32, Table)> {
    notes.iter().map(|n| (n.partition, n.table)).collect()
}
