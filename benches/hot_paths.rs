//! Each hot path of ingest on its own, over 20,000 messages of the
//! synthetic hospital workload (`custos synth`'s generator: access,
//! inference with 30 features, lineage, 0.2 % malformed), in one thread:
//! decode (JSON parse, validation, pseudonyms, feature sketches),
//! canonical encoding, pseudonymization, leaf hashing and Merkle append,
//! the default detector set, Arrow batch building and Parquet encoding of
//! a segment. Throughput is in events (or hashes) per second.
//!
//! `cargo bench --bench hot_paths` (add a filter, e.g. `-- decode`).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use custos::config::Config;
use custos::detect::DetectorSetup;
use custos::event::{Decoder, Event, PseudonymKey, Pseudonymizer};
use custos::ledger::hot::{encode_events, event_batches, event_rows};
use custos::ledger::tree::Frontier;
use custos::ledger::{ChainId, HashAlg, Origin, StoreOptions, event_record};
use custos::source::synth::{Workload, WorkloadConfig};

const MESSAGES: usize = 20_000;

/// The messages (key, payload) of the standard mix.
fn messages() -> Vec<(String, Vec<u8>)> {
    let mut w = Workload::new(WorkloadConfig {
        seed: 11,
        ..WorkloadConfig::default()
    });
    let start = chrono::DateTime::parse_from_rfc3339("2026-03-02T06:00:00Z")
        .unwrap()
        .to_utc();
    (0..MESSAGES)
        .map(|i| {
            let m = w.next_message(start + chrono::Duration::microseconds(i as i64 * 500));
            (m.key, m.payload)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let messages = messages();
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
    let events: Vec<Event> = messages
        .iter()
        .filter_map(|(_, p)| decoder.decode(p).ok())
        .collect();
    let chain = ChainId {
        stream: "custos.events".into(),
        partition: 3,
    };
    let opts = StoreOptions::default();
    let records: Vec<Vec<u8>> = events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let origin = Origin {
                offset: i as i64,
                file: None,
                line: None,
            };
            event_record(&chain, &origin, e)
        })
        .collect();

    let mut g = c.benchmark_group("hot_paths");
    g.sample_size(10);

    g.throughput(Throughput::Elements(messages.len() as u64));
    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut sketcher = decoder.sketcher();
            messages
                .iter()
                .filter(|(_, p)| decoder.decode_with(p, Some(&mut sketcher)).is_ok())
                .count()
        })
    });

    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("canonical_encode", |b| {
        b.iter(|| events.iter().map(|e| e.canonical().len()).sum::<usize>())
    });
    g.bench_function("event_record", |b| {
        b.iter(|| {
            events
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let origin = Origin {
                        offset: i as i64,
                        file: None,
                        line: None,
                    };
                    event_record(&chain, &origin, e).len()
                })
                .sum::<usize>()
        })
    });

    let patients: Vec<String> = messages
        .iter()
        .enumerate()
        .map(|(i, _)| format!("MRN-{}", 200_000 + i % 5000))
        .collect();
    let pseudonymizer = decoder.pseudonymizer().clone();
    g.throughput(Throughput::Elements(patients.len() as u64));
    g.bench_function("pseudonymize", |b| {
        b.iter(|| {
            patients
                .iter()
                .map(|p| pseudonymizer.patient(p).len())
                .sum::<usize>()
        })
    });

    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("hash_and_merkle_append", |b| {
        b.iter(|| {
            let mut frontier = Frontier::new(HashAlg::Blake3);
            let mut strata = 0usize;
            for r in &records {
                frontier.push(HashAlg::Blake3.leaf(r), |_, _, _| strata += 1);
            }
            (frontier.root(), strata)
        })
    });

    let setup = DetectorSetup::new(Config::default().detectors);
    g.throughput(Throughput::Elements(events.len() as u64));
    g.bench_function("detectors_default_set", |b| {
        b.iter_batched(
            || setup.build(),
            |mut d| events.iter().map(|e| d.observe(e).count()).sum::<usize>(),
            BatchSize::LargeInput,
        )
    });

    g.bench_function("event_rows", |b| {
        b.iter(|| event_rows(&chain, &events).len())
    });
    let rows = event_rows(&chain, &events);
    g.bench_function("arrow_batch", |b| {
        b.iter(|| event_batches(&chain, &rows, &opts).unwrap().len())
    });
    let batches = event_batches(&chain, &rows, &opts).unwrap();
    let bytes = encode_events(&chain, batches.clone(), &opts)
        .unwrap()
        .0
        .len();
    println!(
        "parquet segment of {} events: {bytes} bytes, {:.1} bytes/event",
        events.len(),
        bytes as f64 / events.len() as f64
    );
    g.bench_function("parquet_encode", |b| {
        b.iter_batched(
            || batches.clone(),
            |batches| encode_events(&chain, batches, &opts).unwrap().0.len(),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
