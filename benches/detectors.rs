//! Detector cost on the evaluation stream: every access detector (with
//! their shared context: reference tables, learned relationships) fed the
//! 7-day, 240-staff workload of `custos gen`, already decoded, in one
//! thread. Reported as events per second; the target is ≥ 1 million per
//! core for all detectors together.
//!
//! `cargo bench --bench detectors` (add `-- all` for the total only).

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use custos::detect::reference::{self, ReferenceConfig};
use custos::detect::{DetectorConfig, DetectorSetup};
use custos::event::{Decoder, Event, PseudonymKey, Pseudonymizer};
use custos::source::hospital::{GenConfig, generate, write_dir};

fn workload() -> (Vec<Event>, Arc<reference::Reference>) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let w = generate(&GenConfig::default());
    write_dir(&w, dir.path()).expect("the workload is written");
    let pseudo = Pseudonymizer::new(&PseudonymKey::demo());
    let cfg = ReferenceConfig {
        vip: Some(dir.path().join("vip.csv")),
        roster: Some(dir.path().join("roster.csv")),
        care_team: Some(dir.path().join("care_team.csv")),
        consent: Some(dir.path().join("consent.csv")),
        export_allow: Some(dir.path().join("export_allow.csv")),
        links: Some(dir.path().join("links.csv")),
        ..ReferenceConfig::default()
    };
    let (reference, problems) = reference::load(&cfg, &pseudo).expect("the tables load");
    assert!(problems.is_empty(), "{problems:?}");
    let decoder = Decoder::new(pseudo);
    let events = w
        .events
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| decoder.decode(l).expect("generated events are valid"))
        .collect();
    (events, Arc::new(reference))
}

fn bench(c: &mut Criterion) {
    let (events, reference) = workload();
    let mut group = c.benchmark_group("detectors");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events.len() as u64));
    let mut sets: Vec<(String, Vec<DetectorConfig>)> =
        vec![("all".into(), DetectorConfig::access_defaults())];
    for d in DetectorConfig::access_defaults() {
        let name = serde_json::to_value(&d).unwrap()["type"]
            .as_str()
            .unwrap()
            .to_owned();
        sets.push((name, vec![d]));
    }
    for (name, configs) in sets {
        let setup = DetectorSetup {
            configs,
            reference: reference.clone(),
        };
        group.bench_function(&name, |b| {
            b.iter(|| {
                let mut d = setup.build();
                let mut findings = 0usize;
                for e in &events {
                    findings += d.observe(e).count();
                }
                findings
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
