//! Model-abuse cost per inference event with 30-feature inputs, in one
//! thread: sketching the feature vector (what ingest does in place of
//! keeping it), the `model_abuse` detector on sketched events, and both.
//! The stream: 100,000 queries over a simulated day by 300 clinicians
//! about their patients (re-scoring some), 2 batch scorers, and 6 callers
//! probing or extracting; the target is ≥ 200,000 events per second per
//! core for the detector.
//!
//! `cargo bench --bench model_abuse`.

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use custos::detect::{DetectorConfig, Detectors};
use custos::event::sketch::Sketcher;
use custos::event::{Decoder, Event, PseudonymKey, Pseudonymizer};

const EVENTS: usize = 100_000;
const FEATURES: usize = 30;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        (0..6).map(|_| self.next()).sum::<f64>() - 3.0
    }
}

/// A patient: 30 features in clinical units driven by 3 latent factors.
fn patient(rng: &mut Rng) -> Vec<f64> {
    let f = [rng.normal(), rng.normal(), rng.normal()];
    (0..FEATURES)
        .map(|i| {
            let scale = 10f64.powi(i as i32 % 5 - 1);
            scale * (10.0 + 2.0 * f[i % 3] + 0.4 * rng.normal())
        })
        .collect()
}

/// The stream as (JSON line, feature vector) pairs.
fn stream() -> Vec<(Vec<u8>, Vec<f64>)> {
    let mut rng = Rng(7);
    let patients: Vec<Vec<f64>> = (0..5000).map(|_| patient(&mut rng)).collect();
    let mut out = Vec::with_capacity(EVENTS);
    for i in 0..EVENTS {
        let secs = (i as u64 * 86_400) / EVENTS as u64;
        let r = rng.next();
        let (caller, pid, x): (String, Option<usize>, Vec<f64>) = if r < 0.80 {
            let p = (rng.next() * 5000.0) as usize;
            (format!("dr-{:03}", p % 300), Some(p), patients[p].clone())
        } else if r < 0.90 {
            let p = (rng.next() * 5000.0) as usize;
            (format!("svc-batch-{}", p % 2), Some(p), patients[p].clone())
        } else {
            // Probing: one feature swept around a patient, or random inputs.
            let mut x = patients[i % 50].clone();
            if i % 2 == 0 {
                x[7] *= 0.5 + rng.next();
            } else {
                for v in &mut x {
                    *v *= 0.2 + 1.6 * rng.next();
                }
            }
            (format!("api-{}", i % 6), None, x)
        };
        let features: Vec<String> = x.iter().map(|v| format!("{v:.4}")).collect();
        let patient = pid.map_or(String::new(), |p| format!(r#""patient":"MRN-{p}","#));
        let json = format!(
            r#"{{"id":"q-{i}","time":"2026-03-02T{:02}:{:02}:{:02}Z","kind":"inference","actor":{{"id":"{caller}","role":"physician","dept":"oncology"}},"model":{{"id":"risk","version":"1"}},{patient}"input":{{"features":[{}]}},"output":{{"label":"{}","score":0.8,"scores_returned":{}}}}}"#,
            secs / 3600,
            secs / 60 % 60,
            secs % 60,
            features.join(","),
            if x[0] > 1.0 { "high" } else { "low" },
            i % 3 == 0
        );
        out.push((json.into_bytes(), x));
    }
    out
}

fn bench(c: &mut Criterion) {
    let lines = stream();
    let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
    let events: Vec<Event> = {
        let mut sketcher = decoder.sketcher();
        lines
            .iter()
            .map(|(l, _)| decoder.decode_with(l, Some(&mut sketcher)).expect("valid"))
            .collect()
    };
    let configs = [DetectorConfig::ModelAbuse(Default::default())];
    let mut group = c.benchmark_group("model_abuse");
    group.sample_size(10);
    group.throughput(Throughput::Elements(EVENTS as u64));
    group.bench_function("sketch", |b| {
        b.iter(|| {
            let mut sketcher: Sketcher = decoder.sketcher();
            let mut acc = 0u64;
            for (_, x) in &lines {
                acc ^= sketcher.sketch("risk@1", x).expect("30 features").direction;
            }
            acc
        })
    });
    group.bench_function("detect", |b| {
        b.iter(|| {
            let mut d = Detectors::new(&configs, Arc::default());
            let mut findings = 0usize;
            for e in &events {
                findings += d.observe(e).count();
            }
            findings
        })
    });
    group.bench_function("sketch_and_detect", |b| {
        b.iter(|| {
            let mut sketcher = decoder.sketcher();
            let mut d = Detectors::new(&configs, Arc::default());
            let mut findings = 0usize;
            for ((_, x), e) in lines.iter().zip(&events) {
                std::hint::black_box(sketcher.sketch("risk@1", x).expect("30 features"));
                findings += d.observe(e).count();
            }
            findings
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
