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
//!
//! The parts: `build` writes honest stores, `lab` holds an honest store's
//! snapshot and facts and runs the cases, `cases` lists the kinds of
//! tampering and what verify must report, `segments` and `history` do
//! the tamperings, `edit` edits files, `snapshot` restores working copies.

mod build;
mod cases;
mod edit;
mod history;
mod lab;
mod segments;
mod snapshot;

use std::time::Instant;

use custos::ledger::{HashAlg, Store, VerifyReport};

use build::{Shape, build, signer, store_options, verify};
use cases::Kind;
use lab::Lab;

const ORIGIN: &str = "custos.test/tamper";
const STREAM: &str = "audit";
const SIGNER: &str = "custos-test";
const SIGNER_SEED: [u8; 32] = [9; 32];

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
