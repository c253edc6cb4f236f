//! `model_abuse` on hand-made inference streams: each signal fires on the
//! behaviour it models and stays quiet on the clinical use that resembles
//! it.

use std::sync::Arc;

use super::*;
use crate::detect::{DetectorConfig, Detectors};
use crate::event::sketch::Sketcher;
use crate::event::{Decoder, PseudonymKey, Pseudonymizer};

const T0: i64 = 1_772_438_400; // 2026-03-02T08:00:00Z

struct Stream {
    decoder: Decoder,
    sketcher: Sketcher,
    detectors: Detectors,
    n: u64,
    rng: u64,
    findings: Vec<Finding>,
}

impl Stream {
    fn new() -> Stream {
        let decoder = Decoder::new(Pseudonymizer::new(&PseudonymKey::demo()));
        Stream {
            sketcher: decoder.sketcher(),
            decoder,
            detectors: Detectors::new(
                &[DetectorConfig::ModelAbuse(ModelAbuseConfig::default())],
                Arc::default(),
            ),
            n: 0,
            rng: 99,
            findings: Vec::new(),
        }
    }

    fn uniform(&mut self) -> f64 {
        self.rng = mix(self.rng, 0x5eed);
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }

    /// A patient of a clustered population: 10 features in clinical units
    /// (scales 0.1 to 1000) driven by two latent factors.
    fn patient(&mut self) -> Vec<f64> {
        let (a, b) = (self.normal(), self.normal());
        (0..10)
            .map(|i| {
                let scale = 10f64.powi(i % 5 - 1);
                let f = if i % 2 == 0 { a } else { b };
                scale * (10.0 + 2.0 * f + 0.3 * self.normal())
            })
            .collect()
    }

    /// A point anywhere in the box the population spans.
    fn random_point(&mut self) -> Vec<f64> {
        (0..10)
            .map(|i| 10f64.powi(i % 5 - 1) * (2.0 + 16.0 * self.uniform()))
            .collect()
    }

    fn query(&mut self, caller: &str, secs: i64, patient: Option<&str>, x: &[f64], scores: bool) {
        self.n += 1;
        let time = chrono::DateTime::from_timestamp(T0 + secs, 0).unwrap();
        let features: Vec<String> = x.iter().map(|v| format!("{v:.5}")).collect();
        let patient = patient.map_or(String::new(), |p| format!(r#""patient":"{p}","#));
        let json = format!(
            r#"{{"id":"q-{}","time":"{}","kind":"inference","actor":{{"id":"{caller}","role":"physician","dept":"oncology"}},"model":{{"id":"risk","version":"1"}},{patient}"input":{{"features":[{}]}},"output":{{"label":"{}","score":0.9,"scores_returned":{scores}}}}}"#,
            self.n,
            time.to_rfc3339(),
            features.join(","),
            if x[0] > 1.0 { "high" } else { "low" },
        );
        let event = self
            .decoder
            .decode_with(json.as_bytes(), Some(&mut self.sketcher))
            .unwrap();
        self.findings.extend(self.detectors.observe(&event));
    }

    /// `n` queries by 40 clinicians about their patients, over a day.
    fn clinical_traffic(&mut self, n: usize, from: i64) {
        for i in 0..n {
            let x = self.patient();
            let caller = format!("dr-{:02}", i % 40);
            let patient = format!("MRN-{}", 1000 + i);
            self.query(
                &caller,
                from + (i as i64 * 86_400) / n as i64,
                Some(&patient),
                &x,
                false,
            );
        }
    }

    /// `per_caller` queries by each of 5 scoring services about distinct
    /// patients, an hour apart: enough steps for the model's reference.
    fn scoring_services(&mut self, per_caller: usize, from: i64) {
        for i in 0..per_caller {
            for c in 0..5 {
                let x = self.patient();
                let patient = format!("MRN-s{c}-{i}");
                self.query(
                    &format!("svc-{c}"),
                    from + i as i64 * 3600 + c,
                    Some(&patient),
                    &x,
                    false,
                );
            }
        }
    }

    fn findings_for(&self, caller: &str) -> Vec<&Finding> {
        self.findings.iter().filter(|f| f.actor == caller).collect()
    }
}

#[test]
fn a_feature_sweep_is_near_duplicate_probing() {
    let mut s = Stream::new();
    s.clinical_traffic(300, 0);
    let base = s.patient();
    for k in 0..40 {
        let mut x = base.clone();
        x[3] = 0.5 + 0.05 * f64::from(k); // sweep one feature
        s.query("api-7", 90_000 + i64::from(k) * 2, None, &x, true);
    }
    let found = s.findings_for("api-7");
    let first = found.first().expect("the sweep is flagged");
    assert!(first.summary.contains("similarity:"), "{}", first.summary);
    assert_eq!(first.model.as_deref(), Some("risk@1"));
    // Flagged within the first 20 of its 40 queries.
    let position: u64 = first.evidence[0][2..].parse().unwrap();
    assert!(position <= 300 + 20, "first flagged at query {position}");
    assert!(s.findings_for("dr-01").is_empty());
}

#[test]
fn re_scoring_patients_and_repeating_a_health_check_are_not_probing() {
    let mut s = Stream::new();
    s.clinical_traffic(300, 0);
    // A clinician re-scores each of 8 patients 4 times as labs come in.
    let patients: Vec<Vec<f64>> = (0..8).map(|_| s.patient()).collect();
    for round in 0..4 {
        for (p, x) in patients.iter().enumerate() {
            let mut x = x.clone();
            x[5] *= 1.0 + 0.03 * f64::from(round);
            let id = format!("MRN-{p}");
            s.query(
                "dr-ward",
                90_000 + i64::from(round) * 3600 + p as i64 * 60,
                Some(&id),
                &x,
                true,
            );
        }
    }
    // A monitor sends the very same canary input every minute.
    let canary = s.patient();
    for k in 0..60 {
        s.query("svc-canary", 90_000 + k * 60, None, &canary, true);
    }
    assert!(
        s.findings_for("dr-ward").is_empty(),
        "{:?}",
        s.findings_for("dr-ward")
    );
    assert!(
        s.findings_for("svc-canary").is_empty(),
        "{:?}",
        s.findings_for("svc-canary")
    );
}

#[test]
fn random_inputs_cover_what_the_model_never_sees() {
    let mut s = Stream::new();
    s.clinical_traffic(3000, 0);
    for k in 0..32 {
        let x = s.random_point();
        s.query("api-x", 90_000 + k, None, &x, true);
    }
    for k in 0..32 {
        let x = s.patient();
        s.query(
            "svc-batch",
            90_100 + k,
            Some(&format!("MRN-b{k}")),
            &x,
            true,
        );
    }
    let found = s.findings_for("api-x");
    assert!(
        found.iter().any(|f| f.summary.contains("coverage:")),
        "{found:?}"
    );
    assert!(
        s.findings_for("svc-batch").is_empty(),
        "{:?}",
        s.findings_for("svc-batch")
    );
}

#[test]
fn synthetic_steps_differ_from_the_models_natural_ones_do_not() {
    let mut s = Stream::new();
    s.scoring_services(150, -150 * 3600);
    // Jacobian-style augmentation: each seed, then the seed nudged.
    for k in 0..40 {
        let seed = s.patient();
        let mut nudged = seed.clone();
        for (i, v) in nudged.iter_mut().enumerate() {
            *v += 10f64.powi(i as i32 % 5 - 1) * 0.05;
        }
        s.query("api-j", 90_000 + k * 4, None, &seed, false);
        s.query("api-j", 90_002 + k * 4, None, &nudged, false);
    }
    for k in 0..80 {
        let x = s.patient();
        s.query(
            "dr-nat",
            90_000 + k * 60,
            Some(&format!("MRN-n{k}")),
            &x,
            false,
        );
    }
    assert!(
        s.findings_for("api-j")
            .iter()
            .any(|f| f.summary.contains("steps:")),
        "{:?}",
        s.findings_for("api-j")
    );
    assert!(
        s.findings_for("dr-nat").is_empty(),
        "{:?}",
        s.findings_for("dr-nat")
    );
}

#[test]
fn many_distinct_inputs_about_one_patient_are_a_focus() {
    let mut s = Stream::new();
    s.clinical_traffic(300, 0);
    let base = s.patient();
    for k in 0..20 {
        let mut x = base.clone();
        x[7] = 10f64.powi(1) * (2.0 + 0.8 * f64::from(k));
        s.query(
            "dr-stolen",
            90_000 + i64::from(k) * 300,
            Some("MRN-42"),
            &x,
            false,
        );
    }
    let found = s.findings_for("dr-stolen");
    let f = found.first().expect("a focus on one patient");
    assert!(f.summary.contains("focus:"), "{}", f.summary);
    assert!(f.patient.is_some(), "the finding names the patient");
}

#[test]
fn restored_state_decides_like_the_live_one() {
    let mut s = Stream::new();
    s.clinical_traffic(1200, 0);
    let base = s.patient();
    for k in 0..6 {
        let mut x = base.clone();
        x[3] = 0.5 + 0.05 * f64::from(k);
        s.query("api-7", 90_000 + i64::from(k), None, &x, true);
    }
    let saved = s.detectors.save();
    let mut restored = Detectors::new(
        &[DetectorConfig::ModelAbuse(ModelAbuseConfig::default())],
        Arc::default(),
    );
    restored.load(&saved).unwrap();
    assert_eq!(restored.save(), saved);
    let mut live_findings = Vec::new();
    let mut restored_findings = Vec::new();
    for k in 6..30 {
        let mut x = base.clone();
        x[3] = 0.5 + 0.05 * f64::from(k);
        let features: Vec<String> = x.iter().map(|v| format!("{v:.5}")).collect();
        let json = format!(
            r#"{{"id":"r-{k}","time":"2026-03-03T09:00:{k:02}Z","kind":"inference","actor":{{"id":"api-7"}},"model":{{"id":"risk","version":"1"}},"input":{{"features":[{}]}}}}"#,
            features.join(",")
        );
        let e = s
            .decoder
            .decode_with(json.as_bytes(), Some(&mut s.sketcher))
            .unwrap();
        live_findings.extend(s.detectors.observe(&e));
        restored_findings.extend(restored.observe(&e));
    }
    assert!(!live_findings.is_empty());
    assert_eq!(live_findings, restored_findings);
}

#[test]
fn the_configuration_is_validated() {
    let mut problems = Vec::new();
    ModelAbuseConfig::default().validate("d", &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    let bad = ModelAbuseConfig {
        near_shared: 9,
        similarity_min: 0,
        steps_p: 1.5,
        ..Default::default()
    };
    bad.validate("d", &mut problems);
    assert_eq!(problems.len(), 3, "{problems:?}");
}
