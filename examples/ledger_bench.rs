//! Ledger benchmarks for `docs/performance.md`:
//!
//! - `verify`: `custos verify` speed on a store of N synthetic events beside
//!   the bare hashing limit measured in the same run (the same record bytes
//!   hashed as leaves on every core, no I/O, no parsing);
//! - `proofs`: inclusion and consistency proof times from tree strata of M
//!   leaves (the leaves are generated; proofs read only the strata), and
//!   end-to-end `prove` on the store (manifest, strata, one record).
//!
//! ```text
//! cargo build --release --example ledger_bench
//! target/release/examples/ledger_bench verify --events 10000000 --store /tmp/bench-store
//! target/release/examples/ledger_bench proofs --leaves 100000000 --dir /tmp/bench-tree --store /tmp/bench-store
//! ```
//!
//! The store is built once (directly with the ledger writer, 50,000 rows
//! per flush, 6 partitions) and reused when it already holds N events.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use custos::event::{Decoder, PseudonymKey, Pseudonymizer};
use custos::ledger::checkpoint::NoteSigner;
use custos::ledger::tree::{TreeAppender, TreeReader};
use custos::ledger::{
    ChainId, HashAlg, Origin, Store, StoreOptions, Table, VerifyOptions, verify_with,
};
use custos::source::synth::{Workload, WorkloadConfig};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const PARTITIONS: i32 = 6;
const FLUSH_ROWS: usize = 50_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let num = |name: &str, default: u64| -> u64 {
        arg(name).map_or(default, |v| v.parse().expect("a number"))
    };
    match args.get(1).map(String::as_str) {
        Some("verify") => {
            let store = PathBuf::from(arg("--store").unwrap_or("/tmp/bench-store".into()));
            bench_verify(&store, num("--events", 10_000_000));
        }
        Some("proofs") => {
            let dir = PathBuf::from(arg("--dir").unwrap_or("/tmp/bench-tree".into()));
            bench_tree_proofs(&dir, num("--leaves", 100_000_000));
            if let Some(store) = arg("--store") {
                bench_store_proofs(Path::new(&store));
            }
        }
        _ => {
            eprintln!(
                "usage: ledger_bench verify|proofs [--events N] [--store DIR] [--leaves M] [--dir DIR]"
            );
            std::process::exit(2);
        }
    }
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("bench.example/custos", [9; 32]).expect("valid name")
}

/// Builds (or reuses) a store of `events` synthetic events.
fn build_store(root: &Path, events: u64) -> Store {
    let opts = StoreOptions {
        origin: Some("bench.example/custos".into()),
        ..StoreOptions::default()
    };
    if root.exists() {
        let store = Store::open(root, opts.clone()).expect("store");
        let held: u64 = (0..PARTITIONS)
            .map(|p| {
                store
                    .tree_size(&ChainId::new("bench", p), Table::Events)
                    .expect("manifest")
            })
            .sum();
        if held == events {
            eprintln!("reusing {} ({held} events)", root.display());
            return store;
        }
        std::fs::remove_dir_all(root).expect("remove the old bench store");
    }
    let store = Store::open(root, opts).expect("store");
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
    let mut workload = Workload::new(WorkloadConfig {
        seed: 7,
        ..WorkloadConfig::default()
    });
    let mut writers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            store
                .chain_writer(&ChainId::new("bench", p))
                .expect("writer")
        })
        .collect();
    let mut offsets = vec![0i64; PARTITIONS as usize];
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T06:00:00Z")
        .expect("time")
        .to_utc();
    let started = Instant::now();
    let mut stored = 0u64;
    let mut i = 0u64;
    while stored < events {
        let t = start + chrono::Duration::microseconds((i * 500) as i64);
        i += 1;
        let m = workload.next_message(t);
        let Ok(event) = decoder.decode(&m.payload) else {
            continue;
        };
        let p = (blake3::hash(m.key.as_bytes()).as_bytes()[0] as i32 % PARTITIONS) as usize;
        writers[p].push_event(Origin::kafka(offsets[p]), &event);
        offsets[p] += 1;
        stored += 1;
        if writers[p].buffered() >= FLUSH_ROWS {
            writers[p].flush().expect("flush");
        }
    }
    for w in &mut writers {
        w.flush().expect("flush");
        w.checkpoint(&signer(), chrono::Utc::now())
            .expect("checkpoint");
    }
    eprintln!(
        "built {} with {stored} events in {:.1}s",
        root.display(),
        started.elapsed().as_secs_f64()
    );
    store
}

fn bench_verify(root: &Path, events: u64) {
    let store = build_store(root, events);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());

    // Bare hashing: the same record bytes, read into memory untimed,
    // hashed as leaves on every core.
    let mut hashing = Duration::ZERO;
    let mut bytes = 0u64;
    let mut leaves = 0u64;
    for p in 0..PARTITIONS {
        for line in store.manifest(&ChainId::new("bench", p)).expect("manifest") {
            let records = read_records(&store.root().join(&line.file));
            bytes += records.iter().map(|r| r.len() as u64).sum::<u64>();
            leaves += records.len() as u64;
            let started = Instant::now();
            let chunk = records.len().div_ceil(cores).max(1);
            std::thread::scope(|s| {
                for part in records.chunks(chunk) {
                    s.spawn(move || {
                        let mut acc = 0u8;
                        for r in part {
                            acc ^= HashAlg::Blake3.leaf(r.as_bytes())[0];
                        }
                        std::hint::black_box(acc);
                    });
                }
            });
            hashing += started.elapsed();
        }
    }
    let hash_rate = leaves as f64 / hashing.as_secs_f64();
    println!(
        "bare leaf hashing: {leaves} records, {:.0} MB, {:.2}s on {cores} cores = {:.2} M records/s ({:.0} MB/s)",
        bytes as f64 / 1e6,
        hashing.as_secs_f64(),
        hash_rate / 1e6,
        bytes as f64 / 1e6 / hashing.as_secs_f64()
    );

    let opts = VerifyOptions {
        verifier: Some(signer().verifier()),
        ..VerifyOptions::default()
    };
    for run in 1..=3 {
        let started = Instant::now();
        let report = verify_with(root, &opts).expect("verify");
        let secs = started.elapsed().as_secs_f64();
        assert!(
            report.ok(),
            "{:?}",
            &report.problems[..report.problems.len().min(5)]
        );
        let rows = report.events + report.rejects;
        println!(
            "verify run {run}: {rows} rows, {} segments, {} checkpoints in {secs:.2}s = {:.2} M rows/s ({:.0}% of the bare hashing rate)",
            report.segments,
            report.checkpoints,
            rows as f64 / secs / 1e6,
            100.0 * (rows as f64 / secs) / hash_rate
        );
    }
}

fn read_records(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).expect("segment");
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("parquet");
    let index = builder
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.name() == "record")
        .expect("record column");
    let mask = ProjectionMask::leaves(builder.parquet_schema(), [index]);
    let reader = builder.with_projection(mask).build().expect("reader");
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.expect("batch");
        out.extend(
            batch
                .column(0)
                .as_string::<i32>()
                .iter()
                .flatten()
                .map(str::to_owned),
        );
    }
    out
}

/// Times `n` calls of `f` and prints mean, p50, p99 and max.
fn time_calls(label: &str, n: usize, mut f: impl FnMut(usize) -> usize) {
    let mut times = Vec::with_capacity(n);
    let mut hashes = 0;
    for i in 0..n {
        let started = Instant::now();
        hashes += f(i);
        times.push(started.elapsed());
    }
    times.sort();
    let mean = times.iter().sum::<Duration>() / n as u32;
    let at = |q: f64| times[((n as f64 * q) as usize).min(n - 1)];
    println!(
        "{label}: {n} proofs, {:.1} hashes each; mean {:?}, p50 {:?}, p99 {:?}, max {:?}",
        hashes as f64 / n as f64,
        mean,
        at(0.5),
        at(0.99),
        times[n - 1]
    );
}

fn bench_tree_proofs(dir: &Path, leaves: u64) {
    let alg = HashAlg::Blake3;
    let ready = TreeReader::open(dir, alg).map(|r| r.leaves()).unwrap_or(0);
    if ready != leaves {
        if dir.exists() {
            std::fs::remove_dir_all(dir).expect("remove the old bench tree");
        }
        let started = Instant::now();
        let mut tree = TreeAppender::open(dir, alg, 0).expect("tree");
        for i in 0..leaves {
            tree.push(alg.leaf(&i.to_le_bytes()));
            if i % 1_000_000 == 999_999 {
                tree.write(true).expect("write");
            }
        }
        tree.write(true).expect("write");
        println!(
            "built a tree of {leaves} leaves in {:.1}s",
            started.elapsed().as_secs_f64()
        );
    }
    // Pseudo-random targets, spread over the whole tree.
    let pick = |i: usize, below: u64| {
        u64::from_le_bytes(
            blake3::hash(&(i as u64).to_le_bytes()).as_bytes()[..8]
                .try_into()
                .expect("8 bytes"),
        ) % below
    };
    let mut reader = TreeReader::open(dir, alg).expect("reader");
    time_calls(
        &format!("inclusion proofs at {leaves} leaves (fresh reader each)"),
        1000,
        |i| {
            let mut r = TreeReader::open(dir, alg).expect("reader");
            r.inclusion_proof(pick(i, leaves), leaves)
                .expect("proof")
                .len()
        },
    );
    time_calls(&format!("inclusion proofs at {leaves} leaves"), 1000, |i| {
        reader
            .inclusion_proof(pick(i, leaves), leaves)
            .expect("proof")
            .len()
    });
    time_calls(
        &format!("consistency proofs to {leaves} leaves"),
        1000,
        |i| {
            let old = pick(i, leaves - 1) + 1;
            reader.consistency_proof(old, leaves).expect("proof").len()
        },
    );
    time_calls(
        &format!("root at a random size up to {leaves}"),
        1000,
        |i| {
            reader.root(pick(i, leaves) + 1).expect("root");
            0
        },
    );
}

fn bench_store_proofs(root: &Path) {
    let store = Store::open_existing(root).expect("store");
    let chain = ChainId::new("bench", 0);
    let size = store.tree_size(&chain, Table::Events).expect("size");
    time_calls(
        &format!("store prove_inclusion by seq (log of {size}, record read from its segment)"),
        200,
        |i| {
            let seq = u64::from_le_bytes(
                blake3::hash(&(i as u64).to_le_bytes()).as_bytes()[..8]
                    .try_into()
                    .expect("8 bytes"),
            ) % size;
            store
                .prove_inclusion(&chain, Table::Events, seq, None)
                .expect("proof")
                .path
                .len()
        },
    );
}
