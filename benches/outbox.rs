//! Outbox append cost: incident revisions written and fsynced (one append
//! = one group commit, as the outbox writer does per batch the pipeline
//! hands over), for batches of 1 and of 64 revisions, with two sinks'
//! cursors. Reported as revisions per second. The folder is a temporary
//! one on `TMPDIR`'s disk: the figure is mostly that disk's fsync time.
//!
//! `cargo bench --bench outbox`

use chrono::Utc;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use custos::alert::outbox::Outbox;
use custos::alert::{Correlator, Incident, IncidentConfig};
use custos::detect::{Finding, Severity};

/// `n` fresh incidents (one revision each) about distinct actors.
fn revisions(n: usize, round: usize) -> Vec<Incident> {
    let mut c = Correlator::new(IncidentConfig::default());
    let now = Utc::now();
    (0..n)
        .flat_map(|i| {
            c.observe(
                Finding {
                    detector: "volume".into(),
                    severity: Severity::High,
                    actor: format!("emp-{round}-{i}"),
                    patient: Some(format!("pt_{i:016x}")),
                    model: None,
                    window_start: now,
                    window_end: now,
                    score: 9.5,
                    observed: 41.0,
                    expected: 6.0,
                    summary: "41 records read in 10 minutes, usually 6".into(),
                    evidence: (0..5).map(|e| format!("ev-{round}-{i}-{e}")).collect(),
                    evidence_total: 41,
                },
                now,
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sinks = vec!["am".to_owned(), "log".to_owned()];
    let mut outbox = Outbox::open(dir.path(), &sinks, 10_000, 1_000_000)
        .expect("the outbox opens")
        .outbox;
    let mut group = c.benchmark_group("outbox_append");
    group.sample_size(20);
    let mut round = 0;
    for batch in [1usize, 64] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("batch_{batch}"), |b| {
            b.iter_batched(
                || {
                    round += 1;
                    revisions(batch, round)
                },
                |revs| outbox.append(revs).expect("appended"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
