//! Honest stores: built through the ledger's own writer from the example
//! events (made unique) and rejects, flushed in random sizes, checkpointed
//! now and then; and `verify` as the tests call it (one thread).

use std::path::Path;

use custos::event::{
    Decoder, Event, PseudonymKey, Pseudonymizer, Reject, RejectSealer, SealedPart,
};
use custos::ledger::checkpoint::{Checkpoint, NoteSigner, NoteVerifier, unverified_text};
use custos::ledger::{
    ChainId, HashAlg, Origin, RejectBytes, Store, StoreOptions, Table, VerifyOptions, VerifyReport,
    verify_with,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{ORIGIN, SIGNER, SIGNER_SEED, STREAM};

const VALID: &str = include_str!("../data/events-v1.jsonl");
const INVALID: &str = include_str!("../data/events-invalid.jsonl");

/// How an honest store is shaped.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub alg: HashAlg,
    pub chains: i32,
    /// Events per chain.
    pub events: usize,
    /// Most events in one flush (a few flushes are 255–257 regardless).
    pub max_flush: usize,
    /// Chance that a flush also holds rejects, and the most it holds.
    pub reject_chance: f64,
    pub max_rejects: usize,
    /// Chance that a flush holds only rejects.
    pub rejects_only_chance: f64,
    /// Flushes between checkpoints (0: none); a last one after the last flush.
    pub checkpoint_every: u32,
}

/// A checkpoint the store holds.
#[derive(Clone, Debug)]
pub struct StoredNote {
    pub partition: i32,
    pub table: Table,
    pub size: u64,
    pub note: String,
}

/// What building a store wrote and signed.
pub struct Built {
    pub events: u64,
    pub rejects: u64,
    pub notes: Vec<StoredNote>,
}

pub fn signer() -> NoteSigner {
    NoteSigner::from_seed(SIGNER, SIGNER_SEED).unwrap()
}

pub fn store_options(alg: HashAlg) -> StoreOptions {
    StoreOptions {
        hash: alg,
        origin: Some(ORIGIN.into()),
        ..StoreOptions::default()
    }
}

/// The example events, and the rejects of the invalid examples.
pub fn inputs() -> (Vec<Event>, Vec<(String, Reject)>) {
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

pub fn note_size(note: &str) -> u64 {
    Checkpoint::parse(unverified_text(note).unwrap())
        .unwrap()
        .size
}

/// Writes an honest store: `shape.chains` chains of events (examples with
/// unique ids) and rejects, flushed in random sizes, checkpointed now and
/// then, the writer sometimes closed and reopened between flushes.
pub fn build(root: &Path, shape: Shape, seed: u64) -> Built {
    let store = Store::open(root, store_options(shape.alg)).unwrap();
    let (examples, invalid) = inputs();
    let signer = signer();
    let sealer = RejectSealer::new(&PseudonymKey::from_bytes([1; 32]));
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
                    // Half sealed, as the pipeline stores them; half as
                    // received (stores written before sealing, other tools).
                    // Chosen by offset, not by `rng`, so the stores' shapes
                    // (and the cases drawn on them) stay as they were.
                    if offset % 2 == 0 {
                        let key = key.map(|k| sealer.seal(SealedPart::Key, k).unwrap());
                        let payload = sealer.seal(SealedPart::Payload, line.as_bytes()).unwrap();
                        let bytes = RejectBytes::sealed(sealer.label(), key.as_deref(), &payload);
                        w.push_reject(Origin::kafka(offset), bytes, reject);
                    } else {
                        let bytes = RejectBytes::received(key, line.as_bytes());
                        w.push_reject(Origin::kafka(offset), bytes, reject);
                    }
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

pub fn verify(root: &Path, verifier: Option<NoteVerifier>, external: Vec<String>) -> VerifyReport {
    let opts = VerifyOptions {
        verifier,
        external,
        threads: 1,
        ..VerifyOptions::default()
    };
    verify_with(root, &opts).unwrap()
}
