//! Input sketches: what the model-abuse detectors need from a model's
//! feature vector, kept in place of the vector.
//!
//! An inference's `input.features` never reach disk. The decoder turns them
//! into a [`Sketch`] of 27 bytes, stored as the event's `input.fingerprint`
//! (`qs1:` and 54 hex digits, see docs/format.md):
//!
//! - **normalization** learned per model (`id@version`): running per-feature
//!   mean and spread, frozen once a model has been seen [`FREEZE_AFTER`]
//!   times and refrozen only when a feature's spread moves by more than a
//!   factor of two or its mean by more than one spread, so the same query
//!   sketches the same way from one hour to the next. The spread is rounded
//!   to a power of two. A tumour area of 1000 and a smoothness of 0.1 thus
//!   weigh alike;
//! - **content hashes** in the spirit of Blacklight (Li et al., 2022): each
//!   normalized feature is quantized to bins of a quarter spread; every window
//!   of `w` consecutive quantized features (`w` = 1, 2 or 3 by the vector's
//!   length; windows wrap around the end, so every feature is in `w` of
//!   them), with its position, is hashed under a secret key; the 8
//!   smallest hashes are kept (their low 16 bits). Two queries that differ
//!   in one feature share most of them; unrelated queries share none. The
//!   key keeps an attacker from predicting which changes move the hashes;
//! - a **direction hash** (SimHash): the signs of the normalized vector's
//!   projections on 64 keyed random ±1 hyperplanes through the model's
//!   centre. The Hamming distance of two direction hashes estimates the
//!   angle between the queries, so distances between a caller's queries
//!   are measured without the queries;
//! - a **radius**: `round(16 · log2(1 + |z| / √d))` of the normalized
//!   vector `z` of `d` features (16 at one spread from the centre);
//! - an **exact hash**: 16 bits of a keyed hash of the vector at about
//!   three significant digits (single precision with its 12 lowest mantissa
//!   bits dropped), which tells repeats of the very same query (a
//!   health check) from near-duplicates.
//!
//! From 27 bytes (of which 8 sign bits per hyperplane direction) the
//! vector cannot be rebuilt, and without the key not even its bins.
//!
//! A vector whose length differs from the model's — the length declared in
//! the configuration, else the length of the first vector the chain saw for
//! that model — is refused, never truncated.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::{Reject, RejectReason};

/// Content hashes kept per sketch.
pub const MINHASHES: usize = 8;
/// Bytes of an encoded sketch.
pub const SKETCH_BYTES: usize = 8 + 1 + 2 + 2 * MINHASHES;
const PREFIX: &str = "qs1:";

/// Queries of a model seen before its normalization freezes.
pub const FREEZE_AFTER: u64 = 32;
/// The running statistics weigh the newest samples at least this much (an
/// average over about the last 4096 queries once more have been seen).
const MIN_WEIGHT: f64 = 1.0 / 4096.0;
/// How often (in queries of a model) a frozen normalization is checked
/// against the running statistics.
const DRIFT_CHECK_EVERY: u64 = 64;
/// Models whose normalization one chain holds at most; the least recently
/// used is forgotten past it.
const MAX_MODELS: usize = 256;

/// The sketch of one model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sketch {
    /// Signs of 64 keyed random projections.
    pub direction: u64,
    /// `round(16 · log2(1 + |z| / √d))` for `d` features, capped at 255:
    /// 16 for a query one spread from the centre in every feature.
    pub radius: u8,
    /// 16 bits of a keyed hash of the whole vector (about 3 significant
    /// digits).
    pub exact: u16,
    /// Low 16 bits of the smallest window hashes, sorted ascending.
    pub content: [u16; MINHASHES],
}

impl Sketch {
    /// `qs1:` and the 27 bytes in hex: direction (8, big-endian), radius
    /// (1), exact (2, big-endian), content (8 × 2, big-endian, ascending).
    pub fn encode(&self) -> String {
        let mut bytes = [0u8; SKETCH_BYTES];
        bytes[..8].copy_from_slice(&self.direction.to_be_bytes());
        bytes[8] = self.radius;
        bytes[9..11].copy_from_slice(&self.exact.to_be_bytes());
        for (i, h) in self.content.iter().enumerate() {
            bytes[11 + 2 * i..13 + 2 * i].copy_from_slice(&h.to_be_bytes());
        }
        let mut out = String::with_capacity(PREFIX.len() + 2 * SKETCH_BYTES);
        out.push_str(PREFIX);
        let mut digits = [0u8; 2 * SKETCH_BYTES];
        hex::encode_to_slice(bytes, &mut digits).expect("two digits a byte");
        out.push_str(std::str::from_utf8(&digits).expect("hex digits are ASCII"));
        out
    }

    /// Parses an encoded sketch; `None` for anything else (an opaque
    /// fingerprint a producer computed).
    pub fn parse(text: &str) -> Option<Sketch> {
        let hex_part = text.strip_prefix(PREFIX)?;
        let mut bytes = [0u8; SKETCH_BYTES];
        hex::decode_to_slice(hex_part, &mut bytes).ok()?;
        let mut content = [0u16; MINHASHES];
        for (i, h) in content.iter_mut().enumerate() {
            *h = u16::from_be_bytes([bytes[11 + 2 * i], bytes[12 + 2 * i]]);
        }
        Some(Sketch {
            direction: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            radius: bytes[8],
            exact: u16::from_be_bytes([bytes[9], bytes[10]]),
            content,
        })
    }

    /// Content hashes the two sketches share (both lists are sorted).
    pub fn shared(&self, other: &Sketch) -> usize {
        let (a, b) = (&self.content, &other.content);
        let (mut i, mut j, mut n) = (0, 0, 0);
        while i < MINHASHES && j < MINHASHES {
            match a[i].cmp(&b[j]) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    n += 1;
                    i += 1;
                    j += 1;
                }
            }
        }
        n
    }

    /// The distance of two queries: differing direction bits plus the
    /// difference of their radii (each radius step is about 4% of |z|).
    pub fn distance(&self, other: &Sketch) -> u32 {
        (self.direction ^ other.direction).count_ones()
            + u32::from(self.radius.abs_diff(other.radius))
    }

    /// The query's cell of the input space (10 bits): 8 direction bits and
    /// the radius band (|z| / √d below 0.7, 1.4, 2, or above).
    pub fn cell(&self) -> u16 {
        let band = match self.radius {
            0..12 => 0,
            12..20 => 1,
            20..26 => 2,
            _ => 3,
        };
        ((self.direction & 0xff) as u16) | (band << 8)
    }
}

/// The secret keys of the sketch hashes, derived from the deployment
/// secret (see `Pseudonymizer::sketch_keys`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SketchKeys {
    pub window: u64,
    pub plane: u64,
    pub exact: u64,
}

impl std::fmt::Debug for SketchKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SketchKeys(<redacted>)")
    }
}

/// A splitmix64 finalizer over `a` and `b`.
fn mix(a: u64, b: u64) -> u64 {
    let mut x = a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A model's normalization: per-feature centre and spread.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Scale {
    /// Queries seen (saturating).
    n: u64,
    #[serde(with = "exact_vec")]
    mean: Vec<f64>,
    #[serde(with = "exact_vec")]
    var: Vec<f64>,
    /// The normalization in force: centre and power-of-two spread.
    #[serde(with = "exact_vec")]
    center: Vec<f64>,
    #[serde(with = "exact_vec")]
    spread: Vec<f64>,
    frozen: bool,
    /// Times the normalization was (re)frozen.
    epoch: u32,
    /// Use counter of the last query (for forgetting the stalest model).
    used: u64,
}

/// A spread rounded to a power of two, with a floor for constant features.
fn pow2_spread(var: f64, mean: f64) -> f64 {
    let sd = var.max(0.0).sqrt();
    let floor = (mean.abs() * 1e-3).max(1e-6);
    let sd = if sd.is_finite() && sd > floor {
        sd
    } else {
        floor
    };
    2f64.powi(sd.log2().round() as i32)
}

impl Scale {
    fn new(dims: usize) -> Scale {
        Scale {
            n: 0,
            mean: vec![0.0; dims],
            var: vec![0.0; dims],
            center: vec![0.0; dims],
            spread: vec![1.0; dims],
            frozen: false,
            epoch: 0,
            used: 0,
        }
    }

    fn learn(&mut self, x: &[f64]) {
        self.n = self.n.saturating_add(1);
        let w = (1.0 / self.n as f64).max(MIN_WEIGHT);
        for ((m, v), &x) in self.mean.iter_mut().zip(&mut self.var).zip(x) {
            let d = x - *m;
            *m += w * d;
            *v = (1.0 - w) * (*v + w * d * d);
        }
        if !self.frozen {
            self.refreeze();
            if self.n >= FREEZE_AFTER {
                self.frozen = true;
            }
        } else if self.n.is_multiple_of(DRIFT_CHECK_EVERY) && self.drifted() {
            self.refreeze();
        }
    }

    fn refreeze(&mut self) {
        for i in 0..self.mean.len() {
            self.center[i] = self.mean[i];
            self.spread[i] = pow2_spread(self.var[i], self.mean[i]);
        }
        self.epoch = self.epoch.wrapping_add(u32::from(self.frozen));
    }

    /// A feature's spread moved by more than a factor of two, or its mean
    /// by more than one spread, since the normalization froze.
    fn drifted(&self) -> bool {
        (0..self.mean.len()).any(|i| {
            let s = pow2_spread(self.var[i], self.mean[i]);
            s >= 4.0 * self.spread[i]
                || s * 4.0 <= self.spread[i]
                || (self.mean[i] - self.center[i]).abs() > self.spread[i]
        })
    }
}

/// Floats as IEEE bits, so a restored normalization is bit-exact.
mod exact_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(x.iter().map(|v| v.to_bits()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(f64::from_bits)
            .collect())
    }
}

/// Sketches one chain's model inputs: holds each model's normalization and
/// input length. One per chain, saved with the chain's detector state.
#[derive(Debug, Clone)]
pub struct Sketcher {
    keys: SketchKeys,
    /// Input lengths declared in the configuration, by `id@version`.
    declared: std::sync::Arc<HashMap<String, usize>>,
    scales: HashMap<String, Scale>,
    uses: u64,
}

impl Sketcher {
    pub fn new(keys: SketchKeys, declared: std::sync::Arc<HashMap<String, usize>>) -> Self {
        Sketcher {
            keys,
            declared,
            scales: HashMap::new(),
            uses: 0,
        }
    }

    /// Models whose normalization is held.
    pub fn models(&self) -> usize {
        self.scales.len()
    }

    /// Learns from `features` (an input of model `id@version`) and sketches
    /// it. Refuses a vector of another length than the model's.
    pub fn sketch(&mut self, model: &str, features: &[f64]) -> Result<Sketch, Reject> {
        let dims = match self.declared.get(model) {
            Some(&n) => Some((n, "declared in the configuration")),
            None => self
                .scales
                .get(model)
                .map(|s| (s.mean.len(), "learned from its first input")),
        };
        if let Some((n, source)) = dims
            && n != features.len()
        {
            return Err(Reject::new(
                RejectReason::InvalidValue,
                format!(
                    "`input.features` has {} numbers; model `{model}` takes {n} ({source})",
                    features.len()
                ),
            ));
        }
        if !self.scales.contains_key(model)
            && self.scales.len() >= MAX_MODELS
            && let Some(stalest) = self
                .scales
                .iter()
                .min_by_key(|(k, s)| (s.used, (*k).clone()))
                .map(|(k, _)| k.clone())
        {
            self.scales.remove(&stalest);
        }
        self.uses += 1;
        let scale = self
            .scales
            .entry(model.to_owned())
            .or_insert_with(|| Scale::new(features.len()));
        scale.used = self.uses;
        scale.learn(features);
        Ok(sketch(&self.keys, features, &scale.center, &scale.spread))
    }

    /// The normalizations, for a snapshot.
    pub fn save(&self) -> Vec<u8> {
        let mut models: Vec<(&String, &Scale)> = self.scales.iter().collect();
        models.sort_by(|a, b| a.0.cmp(b.0));
        crate::ledger::StateWriter::new()
            .field("models", &models)
            .field("uses", &self.uses)
            .finish()
    }

    pub fn load(&mut self, state: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Saved {
            uses: u64,
            models: Vec<(String, Scale)>,
        }
        let s: Saved = serde_json::from_slice(state).map_err(|e| format!("sketcher: {e}"))?;
        self.uses = s.uses;
        self.scales = s.models.into_iter().collect();
        Ok(())
    }
}

/// Sketches `x` in raw units (centre 0, spread 1): for decoding without a
/// chain's learned normalization (tools and tests).
pub fn sketch_unscaled(keys: &SketchKeys, x: &[f64]) -> Sketch {
    let center = vec![0.0; x.len()];
    let spread = vec![1.0; x.len()];
    sketch(keys, x, &center, &spread)
}

fn sketch(keys: &SketchKeys, x: &[f64], center: &[f64], spread: &[f64]) -> Sketch {
    let d = x.len();
    let mut direction = [0f32; 64];
    let mut bins: Vec<i64> = Vec::with_capacity(d);
    let mut norm2 = 0.0f64;
    let mut exact = keys.exact ^ d as u64;
    for i in 0..d {
        let z = (x[i] - center[i]) / spread[i];
        norm2 += z * z;
        bins.push((4.0 * z).floor().clamp(-1e6, 1e6) as i64);
        // About 3.3 significant digits: float noise does not change it.
        exact = mix(exact, u64::from((x[i] as f32).to_bits() >> 12));
        let mask = mix(keys.plane, i as u64);
        let zf = z as f32;
        for (b, acc) in direction.iter_mut().enumerate() {
            let sign = ((!mask >> b) & 1) as u32;
            *acc += f32::from_bits(zf.to_bits() ^ (sign << 31));
        }
    }
    let direction = direction
        .iter()
        .enumerate()
        .fold(0u64, |bits, (b, &acc)| bits | (u64::from(acc > 0.0) << b));

    // Windows of consecutive bins, wrapping around so every feature is in
    // `w` of them; short vectors get smaller windows, and several hash
    // functions when there are fewer windows than hashes kept.
    let w = match d {
        0..=4 => 1,
        5..=12 => 2,
        _ => 3,
    };
    let windows = d;
    let mut hashes: Vec<u64> = Vec::with_capacity(windows.max(MINHASHES));
    let rounds = if windows == 0 {
        0
    } else {
        MINHASHES.div_ceil(windows)
    };
    for round in 0..rounds as u64 {
        for j in 0..windows {
            let mut h = mix(keys.window ^ round, ((j as u64) << 8) | w as u64);
            for k in 0..w {
                h = mix(h, bins[(j + k) % d] as u64);
            }
            hashes.push(h);
        }
    }
    let mut content = [0u16; MINHASHES];
    if !hashes.is_empty() {
        let k = MINHASHES.min(hashes.len());
        if hashes.len() > k {
            hashes.select_nth_unstable(k - 1);
        }
        for (slot, h) in content.iter_mut().zip(&hashes[..k]) {
            *slot = (*h & 0xffff) as u16;
        }
        content.sort_unstable();
    }
    let rho = (norm2 / d.max(1) as f64).sqrt();
    let radius = (16.0 * (1.0 + rho).log2()).round().clamp(0.0, 255.0) as u8;
    Sketch {
        direction,
        radius,
        exact: (mix(exact, 0) & 0xffff) as u16,
        content,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> SketchKeys {
        SketchKeys {
            window: 1,
            plane: 2,
            exact: 3,
        }
    }

    fn sketcher() -> Sketcher {
        Sketcher::new(keys(), Default::default())
    }

    /// A 30-feature population with clinical scales from 0.1 to 1000.
    fn population(n: usize) -> Vec<Vec<f64>> {
        let mut state = 7u64;
        let mut next = move || {
            state = mix(state, 1);
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        (0..n)
            .map(|_| {
                (0..30)
                    .map(|i| {
                        let scale = 10f64.powi(i % 5 - 1);
                        scale * (5.0 + 2.0 * (next() + next() + next() - 1.5))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn encoding_round_trips_and_other_fingerprints_are_opaque() {
        let mut s = sketcher();
        let x = &population(1)[0];
        let k = s.sketch("m@1", x).unwrap();
        let text = k.encode();
        assert!(text.starts_with("qs1:") && text.len() == 4 + 2 * SKETCH_BYTES);
        assert_eq!(Sketch::parse(&text), Some(k));
        assert_eq!(Sketch::parse("fk1:00ff"), None);
        assert_eq!(Sketch::parse("qs1:zz"), None);
    }

    #[test]
    fn one_changed_feature_keeps_most_content_hashes_unrelated_queries_none() {
        let mut s = sketcher();
        let pop = population(400);
        for x in &pop[..300] {
            s.sketch("m@1", x).unwrap();
        }
        let base = s.sketch("m@1", &pop[300]).unwrap();
        let mut moved = pop[300].clone();
        moved[12] += 10.0; // one spread of a feature of scale 10
        let near = s.sketch("m@1", &moved).unwrap();
        assert!(base.shared(&near) >= 5, "{}", base.shared(&near));
        assert_ne!(base.exact, near.exact);
        assert!(base.distance(&near) < 16, "{}", base.distance(&near));
        let mut unrelated = 0;
        let mut far = 0;
        for x in &pop[301..400] {
            let other = s.sketch("m@1", x).unwrap();
            assert!(base.shared(&other) < 5, "an unrelated query looks near");
            unrelated += base.shared(&other);
            far += base.distance(&other);
        }
        assert!(
            unrelated < 99,
            "{unrelated} hashes shared with 99 other patients"
        );
        assert!(far / 99 > 20, "mean distance {}", far / 99);
    }

    #[test]
    fn normalization_makes_small_unit_features_count() {
        // A change of one spread in a feature of scale 0.1 moves the sketch
        // as much as one in a feature of scale 1000.
        let mut s = sketcher();
        let pop = population(300);
        for x in &pop {
            s.sketch("m@1", x).unwrap();
        }
        let base = s.sketch("m@1", &pop[0]).unwrap();
        let mut small = pop[0].clone();
        small[10] += 4.0 * 0.1; // feature 10 has scale 0.1: 4 spreads
        let mut large = pop[0].clone();
        large[14] += 4.0 * 1000.0; // feature 14 has scale 1000: 4 spreads
        let a = s.sketch("m@1", &small).unwrap();
        let b = s.sketch("m@1", &large).unwrap();
        let (da, db) = (a.distance(&base), b.distance(&base));
        assert!(da > 2 && db > 2, "{da} {db}");
        assert!(da.abs_diff(db) < 12, "{da} {db}");
    }

    #[test]
    fn repeats_sketch_alike_once_frozen_and_the_state_restores_exactly() {
        let mut s = sketcher();
        let pop = population(200);
        for x in &pop[..100] {
            s.sketch("m@1", x).unwrap();
        }
        let first = s.sketch("m@1", &pop[150]).unwrap();
        for x in &pop[100..150] {
            s.sketch("m@1", x).unwrap();
        }
        let mut restored = sketcher();
        restored.load(&s.save()).unwrap();
        assert_eq!(s.sketch("m@1", &pop[150]).unwrap(), first);
        assert_eq!(restored.sketch("m@1", &pop[150]).unwrap(), first);
    }

    #[test]
    fn wrong_lengths_are_refused_against_the_declared_or_first_length() {
        let mut s = sketcher();
        s.sketch("m@1", &[1.0, 2.0, 3.0]).unwrap();
        let e = s.sketch("m@1", &[1.0, 2.0]).unwrap_err();
        assert_eq!(e.reason, RejectReason::InvalidValue);
        assert!(e.detail.contains("takes 3 (learned"), "{}", e.detail);
        let declared = std::sync::Arc::new(HashMap::from([("d@2".to_owned(), 4)]));
        let mut s = Sketcher::new(keys(), declared);
        let e = s.sketch("d@2", &[1.0, 2.0, 3.0]).unwrap_err();
        assert!(e.detail.contains("takes 4 (declared"), "{}", e.detail);
        assert!(s.sketch("d@2", &[1.0, 2.0, 3.0, 4.0]).is_ok());
    }

    #[test]
    fn the_keys_change_every_hash() {
        let x = &population(1)[0];
        let a = sketch_unscaled(&keys(), x);
        let b = sketch_unscaled(
            &SketchKeys {
                window: 9,
                plane: 8,
                exact: 7,
            },
            x,
        );
        assert_ne!(a.direction, b.direction);
        assert_ne!(a.content, b.content);
        assert_ne!(a.exact, b.exact);
    }
}
