//! `model_abuse`: model inversion and model extraction in inference
//! traffic, judged per (caller, model) on the input sketches the decoder
//! keeps in place of feature vectors (see `event::sketch`).
//!
//! An attacker learns about a model's training patients, or copies the
//! model, only by querying it in ways clinical use does not:
//!
//! - **similarity** (near-duplicate probing; Chen, Carlini and Wagner 2020,
//!   Blacklight 2022): confidence climbing and attribute sweeps send long
//!   runs of queries that differ in a feature or two. A query is a
//!   *near-duplicate* when it shares at least `near_shared` of its 8 content
//!   hashes with one of the caller's last `history` queries that is neither
//!   the very same input (a repeat teaches nothing) nor possibly about the
//!   same patient: both must name no patient, or name different ones (a
//!   clinician re-scores a patient after new labs, or tries what-ifs on an
//!   unnamed copy of the chart). Fires
//!   when `similarity_min` of the caller's last `history` queries are
//!   near-duplicates.
//! - **steps** (after PRADA, Juuti et al. 2019, which keeps each
//!   caller's growing set of queries): a query's step is its distance
//!   (direction bits plus radius, see `Sketch::distance`) to the nearest
//!   of the caller's remembered queries (the last `memory` within
//!   `recent_secs`; same exclusions). Synthetic inputs grow from earlier
//!   ones by small steps — Jacobian-based augmentation moves every feature
//!   of a known point a little, a confidence climb moves a point a little
//!   at a time — while natural queries about distinct patients rarely sit
//!   that close. A step of at most `close_distance` is close; fires when
//!   at least `steps_min` of the caller's last `history` steps are close
//!   and that many is improbable (binomial tail below `steps_p`) at the
//!   model's own rate of close steps.
//! - **coverage**: extraction spreads queries over the input space, into
//!   regions the model's real traffic rarely visits. The model's traffic
//!   fills a histogram of 1024 cells (direction and radius of the
//!   normalized input, see `Sketch::cell`); each query's *popularity* is
//!   how full its cell was when it came, against a uniform share (binned
//!   by powers of two). Natural queries land where earlier natural ones
//!   did, at whatever popularity the model's traffic has; random or
//!   synthetic inputs land in empty cells, and random inputs drawn inside
//!   each feature's range sit farther from the centre than patients do
//!   (real features are correlated; independent draws are not). Fires
//!   when the caller's last `history` queries (one per distinct input and
//!   named patient, none for inputs the caller sent before; at least
//!   `coverage_min` with a known cell) are less popular than the model's
//!   queries, or
//!   farther out by a Kolmogorov–Smirnov distance of at least 0.5 (so a
//!   caller whose patients are merely sicker is not flagged): one-sided
//!   KS tail probability below `coverage_p`.
//! - **focus**: at least `focus_min` distinct inputs about one named
//!   patient within `focus_secs` (an attribute sweep over a known patient).
//! - **probing** (supporting): the caller asks for the full score vector
//!   far more often than the model's callers do (binomial tail below
//!   `coverage_p`), or most of its queries land on one label the model
//!   rarely gives.
//! - **burst** (supporting): queries in a `burst_window_secs` window against
//!   the caller's own active windows and its peers' (role and department)
//!   for that model, as the access count detectors do.
//!
//! One finding, `model_abuse`, names the caller, the model, every signal
//! that fired with its numbers, and the caller's recent queries as
//! evidence. It is raised when similarity, steps, coverage or focus fires
//! (probing and burst alone are ordinary for a batch scorer; they only add
//! to a finding's explanation and severity): medium with one signal, high
//! with two, critical with three or more. Then not again for that caller
//! and model for `cooldown_secs`, unless more signals fire than before.
//!
//! What the model's traffic looks like (its cells, rare rate, score-vector
//! share, labels and steps) is learned from at most `teach_per_hour`
//! queries per caller and hour, so a caller sending thousands of queries
//! cannot make its own pattern the norm. Coverage and probing wait until
//! the model has been queried `model_warmup` times in the chain, steps
//! until 300 steps are known. State per (caller,
//! model): `history` entries of 64 bytes plus the evidence ids, and
//! `memory` remembered sketches of 24 bytes and `history` steps — at most
//! about 9 KiB per (caller, model) with the defaults; at most
//! `max_callers` of them (the least recently active tenth is evicted), at
//! most 256 models (17 KiB each) and 10,000 peer groups.

mod stats;
#[cfg(test)]
mod tests;

use crate::ledger::StateWriter;
use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::memory::{Baseline, Map, evict_stalest, key_hash, mix, numeric_keys};
use super::{Context, Detector, Finding, Severity};
use crate::event::sketch::Sketch;
use crate::event::{Body, Event};

pub use stats::binomial_tail;

/// Cells of the model-level input histogram (see [`Sketch::cell`]).
const CELLS: usize = 1024;
const MAX_MODELS: usize = 256;
const MAX_GROUPS: usize = 10_000;
/// Labels counted per model at most (further labels are not counted).
const MAX_LABELS: usize = 64;

/// The `model_abuse` detector's parameters (every key optional in the file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelAbuseConfig {
    /// Queries per caller and model the signals look back over.
    pub history: usize,
    /// ... and no further back than this (seconds of event time), so a
    /// caller's past is not judged again and again.
    pub recent_secs: u64,
    /// Content hashes (of 8) two queries must share to be near-duplicates.
    pub near_shared: usize,
    /// Near-duplicates among the last `history` queries that fire.
    pub similarity_min: usize,
    /// Sketches remembered per caller and model for the steps.
    pub memory: usize,
    /// Steps of at most this distance are close.
    pub close_distance: u32,
    /// Close steps among the last `history` that can fire.
    pub steps_min: usize,
    /// Binomial tail probability below which close steps fire.
    pub steps_p: f64,
    /// Queries with a known cell among the last `history` that the
    /// coverage test needs.
    pub coverage_min: usize,
    /// Binomial tail probability below which coverage (and the score-vector
    /// share) fires.
    pub coverage_p: f64,
    /// Distinct inputs about one patient within `focus_secs` that fire.
    pub focus_min: usize,
    pub focus_secs: u64,
    /// Queries of a model in the chain before model-level judgements.
    pub model_warmup: u64,
    /// Queries per caller and hour the model-level statistics learn from
    /// at most.
    pub teach_per_hour: u32,
    pub burst_window_secs: u64,
    pub burst_threshold: f64,
    pub burst_min_count: u32,
    pub burst_min_ratio: f64,
    /// Silence per caller and model after a finding.
    pub cooldown_secs: u64,
    pub max_callers: usize,
    /// Evidence event ids per finding (at most `history`).
    pub max_evidence: usize,
}

impl Default for ModelAbuseConfig {
    fn default() -> Self {
        ModelAbuseConfig {
            history: 32,
            recent_secs: 86_400,
            near_shared: 5,
            similarity_min: 12,
            memory: 256,
            close_distance: 3,
            steps_min: 12,
            steps_p: 1e-6,
            coverage_min: 16,
            coverage_p: 1e-6,
            focus_min: 16,
            focus_secs: 6 * 3600,
            model_warmup: 200,
            teach_per_hour: 20,
            burst_window_secs: 600,
            burst_threshold: 6.0,
            burst_min_count: 30,
            burst_min_ratio: 4.0,
            cooldown_secs: 3600,
            max_callers: 20_000,
            max_evidence: 32,
        }
    }
}

impl ModelAbuseConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        let mut bad = |what: String| problems.push(format!("{at}: {what}"));
        if !(8..=256).contains(&self.history) {
            bad("history must be 8 to 256 queries".into());
        }
        if !(1..=8).contains(&self.near_shared) {
            bad("near_shared must be 1 to 8 (of 8 content hashes)".into());
        }
        if self.similarity_min == 0 || self.similarity_min > self.history {
            bad("similarity_min must be 1 to history".into());
        }
        if !(self.history..=4096).contains(&self.memory) {
            bad("memory must be history to 4096 sketches".into());
        }
        if self.steps_min == 0 || self.steps_min > self.history {
            bad("steps_min must be 1 to history".into());
        }
        if !(self.steps_p > 0.0 && self.steps_p < 0.5) {
            bad("steps_p must be in (0, 0.5)".into());
        }
        if self.teach_per_hour == 0 {
            bad("teach_per_hour must be positive".into());
        }
        if self.coverage_min == 0 || self.coverage_min > self.history {
            bad("coverage_min must be 1 to history".into());
        }
        if !(self.coverage_p > 0.0 && self.coverage_p < 0.5) {
            bad("coverage_p must be in (0, 0.5)".into());
        }
        if self.focus_min < 2 || self.focus_min > self.history {
            bad("focus_min must be 2 to history".into());
        }
        if self.focus_secs == 0 || self.burst_window_secs == 0 || self.recent_secs == 0 {
            bad("focus_secs, burst_window_secs and recent_secs must be positive".into());
        }
        let burst_ok = self.burst_threshold > 0.0 && self.burst_min_ratio >= 1.0;
        if !burst_ok {
            bad("burst_threshold must be positive and burst_min_ratio at least 1".into());
        }
        if self.max_callers == 0 || self.max_evidence == 0 {
            bad("max_callers and max_evidence must be positive".into());
        }
    }
}

/// One query in a caller's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Query {
    id: String,
    /// Event time, seconds.
    time: i64,
    /// The sketch (`None`: an opaque fingerprint, or no input at all).
    sketch: Option<SketchState>,
    /// Hash of the named patient (0: none).
    patient: u64,
    /// Hash of the output label (0: none).
    label: u64,
    scores: bool,
    near: bool,
    /// The very same input as one the caller sent before (of those
    /// remembered): a repeat explores nothing.
    #[serde(default)]
    repeat: bool,
    /// Popularity bin of the query's cell when it came (`None`: the model
    /// was not warm yet, or no sketch).
    pop: Option<u8>,
}

/// [`Sketch`] as saved state.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct SketchState {
    direction: u64,
    radius: u8,
    exact: u16,
    content: [u16; 8],
}

impl From<Sketch> for SketchState {
    fn from(s: Sketch) -> Self {
        SketchState {
            direction: s.direction,
            radius: s.radius,
            exact: s.exact,
            content: s.content,
        }
    }
}

impl From<SketchState> for Sketch {
    fn from(s: SketchState) -> Self {
        Sketch {
            direction: s.direction,
            radius: s.radius,
            exact: s.exact,
            content: s.content,
        }
    }
}

/// A remembered sketch: what a step is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Remembered {
    time: i64,
    direction: u64,
    radius: u8,
    exact: u16,
    /// Low 32 bits of the patient hash (0: none).
    patient: u32,
}

/// One caller's state for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Caller {
    history: VecDeque<Query>,
    /// Sketches remembered for the steps, newest last.
    memory: VecDeque<Remembered>,
    /// Steps (time, distance to the nearest remembered query), newest last.
    steps: VecDeque<(i64, u8)>,
    /// The hour (since the epoch) and how many of its queries the model's
    /// statistics learned from.
    taught_hour: i64,
    taught: u32,
    /// The current burst window (start, seconds) and its count.
    window: i64,
    count: u32,
    own: Baseline,
    group: Option<u64>,
    /// Last event time, seconds.
    last: i64,
    /// The last finding: when, and how many signals fired.
    fired_at: i64,
    fired_signals: u32,
}

/// What the detector learns about one model from all its callers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ModelState {
    total: u64,
    cells: Vec<u32>,
    /// The model's queries by the popularity bin of their cell, and by
    /// radius (halved).
    pops: Vec<u32>,
    pops_total: u64,
    radii: Vec<u32>,
    /// Share that asked for the full score vector.
    #[serde(with = "super::exact_f64")]
    scores_rate: f64,
    /// Queries per output label hash.
    labels: Vec<(u64, u64)>,
    /// Callers' steps (distance to their nearest previous query), by
    /// distance up to [`STEP_BINS`] - 1.
    steps: Vec<u32>,
    steps_total: u64,
    last: i64,
}

/// Popularity bins: `floor(log2(1 + 4·p))` for a cell holding `p` times a
/// uniform share of the model's traffic.
const POP_BINS: usize = 12;

impl ModelState {
    fn popularity(&self, cell: u16) -> u8 {
        let p = f64::from(self.cells[usize::from(cell) % CELLS]) * CELLS as f64
            / self.total.max(1) as f64;
        ((1.0 + 4.0 * p).log2().floor() as usize).min(POP_BINS - 1) as u8
    }
}

/// Queries with a known cell the model's reference needs before callers
/// are compared with it.
const COVERAGE_REFERENCE: u64 = 100;

/// Radius bins (a radius step is about 4% of the distance from the centre).
const RADIUS_BINS: usize = 64;

fn radius_bin(r: u8) -> usize {
    usize::from(r / 2).min(RADIUS_BINS - 1)
}

/// The smallest KS distance (share of queries) the radius test fires on,
/// so a caller whose patients are merely sicker than average is not
/// flagged.
const RADIUS_EFFECT: f64 = 0.5;

/// Step distances counted apart (larger ones fall in the last bin).
const STEP_BINS: usize = 80;
/// Steps the model's reference needs before callers are compared with it.
const STEP_REFERENCE: u64 = 300;

impl ModelState {
    fn new() -> Self {
        ModelState {
            total: 0,
            cells: vec![0; CELLS],
            pops: vec![0; POP_BINS],
            pops_total: 0,
            radii: vec![0; RADIUS_BINS],
            scores_rate: 0.0,
            labels: Vec::new(),
            steps: vec![0; STEP_BINS],
            steps_total: 0,
            last: 0,
        }
    }

    fn label_share(&self, label: u64) -> f64 {
        let n = self
            .labels
            .iter()
            .find(|(l, _)| *l == label)
            .map_or(0, |(_, n)| *n);
        (n as f64 + 1.0) / (self.total as f64 + 2.0)
    }

    fn learn(&mut self, q: &Taught) {
        let Taught {
            cell,
            pop,
            radius,
            scores,
            label,
            step,
            time,
        } = *q;
        self.total += 1;
        if let (Some(_), Some(r)) = (pop, radius) {
            self.radii[radius_bin(r)] += 1;
        }
        if let Some(b) = pop {
            self.pops[usize::from(b)] += 1;
            self.pops_total += 1;
        }
        if let Some(d) = step {
            self.steps[usize::from(d).min(STEP_BINS - 1)] += 1;
            self.steps_total += 1;
        }
        self.last = time;
        let w = (1.0 / self.total as f64).max(1e-3);
        if let Some(cell) = cell {
            let c = &mut self.cells[usize::from(cell) % CELLS];
            *c = c.saturating_add(1);
        }
        self.scores_rate += w * (f64::from(u8::from(scores)) - self.scores_rate);
        if label != 0 {
            if let Some((_, n)) = self.labels.iter_mut().find(|(l, _)| *l == label) {
                *n += 1;
            } else if self.labels.len() < MAX_LABELS {
                self.labels.push((label, 1));
            }
        }
    }
}

/// What the model's statistics learn from one query.
#[derive(Debug, Clone, Copy)]
struct Taught {
    cell: Option<u16>,
    /// Popularity bin of the cell when the query came.
    pop: Option<u8>,
    radius: Option<u8>,
    scores: bool,
    label: u64,
    step: Option<u8>,
    time: i64,
}

/// The signals of one query, with the numbers that explain them.
#[derive(Debug, Default)]
struct Signals {
    similarity: Option<String>,
    steps: Option<String>,
    coverage: Option<String>,
    focus: Option<String>,
    probing: Option<String>,
    burst: Option<String>,
}

impl Signals {
    fn primary(&self) -> bool {
        self.similarity.is_some()
            || self.steps.is_some()
            || self.coverage.is_some()
            || self.focus.is_some()
    }

    fn fired(&self) -> Vec<&str> {
        [
            &self.similarity,
            &self.steps,
            &self.coverage,
            &self.focus,
            &self.probing,
            &self.burst,
        ]
        .into_iter()
        .filter_map(|s| s.as_deref())
        .collect()
    }
}

#[derive(Clone)]
pub struct ModelAbuse {
    cfg: ModelAbuseConfig,
    callers: Map<u64, Caller>,
    models: Map<u64, ModelState>,
    peers: Map<u64, Baseline>,
    evictions: u64,
}

impl ModelAbuse {
    pub fn new(cfg: &ModelAbuseConfig) -> Self {
        ModelAbuse {
            cfg: cfg.clone(),
            callers: Map::default(),
            models: Map::default(),
            peers: Map::default(),
            evictions: 0,
        }
    }

    /// Closes the caller's burst window if `time` is past it, teaching the
    /// caller's and the peers' baselines; returns the burst signal.
    fn burst(&mut self, key: u64, model_key: u64, time: i64) -> Option<String> {
        let cfg = &self.cfg;
        let len = cfg.burst_window_secs as i64;
        let start = time.div_euclid(len) * len;
        let caller = self.callers.get_mut(&key)?;
        if caller.window != start {
            if caller.count > 0 {
                let count = f64::from(caller.count);
                caller.own.learn(count, 0.05, 6.0);
                if let Some(g) = caller.group {
                    let gk = mix(g, model_key);
                    if self.peers.len() < MAX_GROUPS || self.peers.contains_key(&gk) {
                        self.peers.entry(gk).or_default().learn(count, 0.01, 6.0);
                    }
                }
            }
            caller.window = start;
            caller.count = 0;
        }
        caller.count += 1;
        let c = f64::from(caller.count);
        if caller.count < cfg.burst_min_count {
            return None;
        }
        let own = (caller.own.n >= 6).then_some(caller.own);
        let peers = caller
            .group
            .and_then(|g| self.peers.get(&mix(g, model_key)))
            .filter(|b| b.n >= 20)
            .copied();
        let refs: Vec<Baseline> = own.into_iter().chain(peers).collect();
        if refs.is_empty() {
            return None;
        }
        let z = refs
            .iter()
            .map(|b| b.score(c))
            .fold(f64::INFINITY, f64::min);
        let level = refs.iter().map(|b| b.mean).fold(0.0, f64::max);
        (z >= cfg.burst_threshold && c >= cfg.burst_min_ratio * level.max(1.0)).then(|| {
            format!(
                "burst: {} queries in {} min (own usual {}; peers {}; score {z:.1})",
                caller.count,
                cfg.burst_window_secs / 60,
                own.map_or("unknown".into(), |b| format!("{:.1}", b.mean)),
                peers.map_or("unknown".into(), |b| format!("{:.1}", b.mean)),
            )
        })
    }
}

/// The inference and its model's key.
fn model_of(event: &Event) -> Option<(u64, &crate::event::Inference)> {
    let Body::Inference(inf) = &event.body else {
        return None;
    };
    Some((key_hash(&["m", &inf.model_id, &inf.model_version]), inf))
}

/// Whether two queries are known to be about different patients, or both
/// name none. A query that names a patient and one that names none may be
/// about the same patient (a clinician's what-if on an unnamed copy of the
/// chart), so they are not compared.
fn other_patient(a: u64, b: u64) -> bool {
    (a == 0) == (b == 0) && (a == 0 || a != b)
}

impl Caller {
    fn new(cfg: &ModelAbuseConfig, time: i64) -> Caller {
        Caller {
            history: VecDeque::with_capacity(cfg.history),
            memory: VecDeque::new(),
            steps: VecDeque::new(),
            taught_hour: i64::MIN,
            taught: 0,
            window: i64::MIN,
            count: 0,
            own: Baseline::default(),
            group: None,
            last: time,
            fired_at: i64::MIN,
            fired_signals: 0,
        }
    }

    /// Whether `s` is a near-duplicate of a query in the history, and its
    /// step: the distance to the nearest remembered query. Queries before
    /// `since`, repeats of the very same input and queries about the same
    /// named patient are not compared.
    fn compare(
        &self,
        s: &Sketch,
        patient: u64,
        since: i64,
        cfg: &ModelAbuseConfig,
    ) -> (bool, Option<u8>) {
        let near = self.history.iter().any(|q| {
            q.sketch.is_some_and(|other| {
                q.time >= since
                    && other.exact != s.exact
                    && other_patient(patient, q.patient)
                    && s.shared(&Sketch::from(other)) >= cfg.near_shared
            })
        });
        let patient = u64::from(patient as u32);
        let nearest = self
            .memory
            .iter()
            .filter(|m| {
                m.time >= since
                    && m.exact != s.exact
                    && other_patient(patient, u64::from(m.patient))
            })
            .map(|m| {
                (m.direction ^ s.direction).count_ones() + u32::from(m.radius.abs_diff(s.radius))
            })
            .min();
        (near, nearest.map(|d| d.min(255) as u8))
    }

    fn remember(&mut self, s: &Sketch, patient: u64, time: i64, cfg: &ModelAbuseConfig) {
        if self.memory.len() >= cfg.memory {
            self.memory.pop_front();
        }
        self.memory.push_back(Remembered {
            time,
            direction: s.direction,
            radius: s.radius,
            exact: s.exact,
            patient: patient as u32,
        });
    }
}

/// The one-sided Kolmogorov–Smirnov distance of two histograms over the
/// same bins: how far the cumulative share of `a` (of `a_total`) runs
/// ahead of `b`'s at most.
fn cdf_excess(a: &[u32], a_total: f64, b: &[u32], b_total: f64) -> f64 {
    let (mut fa, mut fb, mut d) = (0.0, 0.0, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        fa += f64::from(x) / a_total;
        fb += f64::from(y) / b_total;
        d = d.max(fa - fb);
    }
    d
}

/// Close steps of the caller against the model's rate of them.
fn steps_signal(
    caller: &Caller,
    model: &ModelState,
    since: i64,
    cfg: &ModelAbuseConfig,
) -> Option<String> {
    if model.steps_total < STEP_REFERENCE {
        return None;
    }
    let close_bins = (cfg.close_distance as usize + 1).min(STEP_BINS);
    let recent = caller.steps.iter().filter(|(t, _)| *t >= since);
    let n = recent.clone().count();
    let close = recent
        .filter(|(_, d)| u32::from(*d) <= cfg.close_distance)
        .count();
    if close < cfg.steps_min {
        return None;
    }
    let model_close: u64 = model.steps[..close_bins]
        .iter()
        .map(|&c| u64::from(c))
        .sum();
    let rate = (model_close as f64 / model.steps_total as f64).max(1e-3);
    let p = binomial_tail(n, close, rate);
    (p < cfg.steps_p).then(|| {
        format!(
            "steps: {close} of the last {n} queries lie within {} of an earlier one \
             (the model's callers: {:.1}% of steps; p {p:.1e})",
            cfg.close_distance,
            100.0 * rate
        )
    })
}

/// Where the caller's queries land against where the model's do
/// (one-sided Kolmogorov–Smirnov on the popularity of their cells).
fn coverage_signal(
    caller: &Caller,
    model: &ModelState,
    since: i64,
    cfg: &ModelAbuseConfig,
) -> Option<String> {
    if caller.history.len() < cfg.coverage_min || model.pops_total < COVERAGE_REFERENCE {
        return None;
    }
    // One sample per distinct input, and per named patient (the newest);
    // none for inputs the caller sent before: re-scoring one patient, or
    // a fixed validation set every day, is not spreading out.
    let mut seen: Vec<u64> = Vec::with_capacity(caller.history.len());
    let mut sample: Vec<&Query> = Vec::with_capacity(caller.history.len());
    for q in caller
        .history
        .iter()
        .rev()
        .filter(|q| q.time >= since && !q.repeat)
    {
        let (Some(_), Some(s)) = (q.pop, q.sketch) else {
            continue;
        };
        let key = if q.patient != 0 {
            q.patient
        } else {
            u64::from(s.exact) | 1 << 63
        };
        if !seen.contains(&key) {
            seen.push(key);
            sample.push(q);
        }
    }
    let mut mine = [0u32; POP_BINS];
    for q in &sample {
        mine[usize::from(q.pop.unwrap_or(0))] += 1;
    }
    let n = sample.len() as u32;
    if (n as usize) < cfg.coverage_min || model.pops_total < COVERAGE_REFERENCE {
        return None;
    }
    let total = model.pops_total as f64;
    // Two-sample KS: the model's histogram is a sample too.
    let effective = f64::from(n) * total / (f64::from(n) + total);
    let d = cdf_excess(&mine, f64::from(n), &model.pops, total);
    let p = (-2.0 * effective * d * d).exp();
    // The radius: how far from the model's centre, against the model's.
    let mut radii = [0u32; RADIUS_BINS];
    for s in sample.iter().filter_map(|q| q.sketch) {
        radii[radius_bin(s.radius)] += 1;
    }
    let dr = cdf_excess(&model.radii, total, &radii, f64::from(n));
    let pr = (-2.0 * effective * dr * dr).exp();
    let far = pr < cfg.coverage_p && dr >= RADIUS_EFFECT;
    if p >= cfg.coverage_p && !far {
        return None;
    }
    let empty = f64::from(mine[0]) / f64::from(n);
    let cells: super::memory::Set<u16> = caller
        .history
        .iter()
        .filter(|q| q.time >= since)
        .filter_map(|q| q.sketch.map(|s| Sketch::from(s).cell()))
        .collect();
    Some(format!(
        "coverage: {:.0}% of the last {n} queries fell in cells the model's traffic had not \
         reached (its callers' queries: {:.0}%; KS distance {d:.2}, p {p:.1e}); farther from \
         the model's centre than its callers' queries (KS distance {dr:.2}, p {pr:.1e}); \
         {} distinct cells",
        100.0 * empty,
        100.0 * f64::from(model.pops[0]) / total,
        cells.len()
    ))
}

/// Full score vectors, or one label, far more often than the model's
/// callers get them.
fn probing_signal(
    caller: &Caller,
    model: &ModelState,
    label: u64,
    cfg: &ModelAbuseConfig,
) -> Option<String> {
    let n = caller.history.len();
    if n < cfg.coverage_min {
        return None;
    }
    let with_scores = caller.history.iter().filter(|q| q.scores).count();
    if binomial_tail(n, with_scores, model.scores_rate.max(1e-3)) < cfg.coverage_p {
        return Some(format!(
            "probing: full score vectors on {with_scores} of the last {n} queries \
             (the model's callers: {:.0}%)",
            100.0 * model.scores_rate
        ));
    }
    if label == 0 {
        return None;
    }
    let same = caller.history.iter().filter(|q| q.label == label).count();
    let share = model.label_share(label);
    (same * 4 >= n * 3 && binomial_tail(n, same, share) < cfg.coverage_p).then(|| {
        format!(
            "probing: {same} of the last {n} queries got the same label \
             (the model gives it to {:.0}% of queries)",
            100.0 * share
        )
    })
}

/// Distinct inputs about one named patient within `focus_secs`.
fn focus_signal(
    caller: &Caller,
    patient: u64,
    time: i64,
    cfg: &ModelAbuseConfig,
) -> Option<String> {
    let since = time - cfg.focus_secs as i64;
    let mut inputs: Vec<u16> = caller
        .history
        .iter()
        .filter(|q| q.patient == patient && q.time >= since)
        .filter_map(|q| q.sketch.map(|s| s.exact))
        .collect();
    inputs.sort_unstable();
    inputs.dedup();
    (inputs.len() >= cfg.focus_min).then(|| {
        format!(
            "focus: {} distinct inputs about one patient within {} h",
            inputs.len(),
            cfg.focus_secs / 3600
        )
    })
}

impl Detector for ModelAbuse {
    fn name(&self) -> &'static str {
        "model_abuse"
    }

    fn observe(&mut self, event: &Event, ctx: &Context, findings: &mut Vec<Finding>) {
        let Some((model_key, inf)) = model_of(event) else {
            return;
        };
        let time = ctx.time.timestamp();
        let key = mix(key_hash(&["a", &event.actor.id]), model_key);
        if !self.callers.contains_key(&key) && self.callers.len() >= self.cfg.max_callers {
            self.evictions += evict_stalest(&mut self.callers, |c| c.last);
        }
        if !self.models.contains_key(&model_key) && self.models.len() >= MAX_MODELS {
            self.evictions += evict_stalest(&mut self.models, |m| m.last);
        }
        let sketch = inf.fingerprint.as_deref().and_then(Sketch::parse);
        let patient = ctx.patient_key.unwrap_or(0);
        let label = inf
            .output_label
            .as_deref()
            .map_or(0, |l| key_hash(&["l", l]));
        let scores = inf.scores_returned == Some(true);
        let cfg = &self.cfg;

        // The query against the model's traffic, before it is learned.
        let model = self.models.entry(model_key).or_insert_with(ModelState::new);
        let warm = model.total >= cfg.model_warmup;
        let pop = sketch.filter(|_| warm).map(|s| model.popularity(s.cell()));

        // The query against the caller's history, then added to it.
        let caller = self
            .callers
            .entry(key)
            .or_insert_with(|| Caller::new(cfg, time));
        caller.last = time;
        caller.group = ctx.group.or(caller.group);
        let since = time.saturating_sub(cfg.recent_secs as i64);
        let (near, nearest) = match sketch {
            Some(s) => caller.compare(&s, patient, since, cfg),
            None => (false, None),
        };
        if let Some(d) = nearest {
            if caller.steps.len() >= cfg.history {
                caller.steps.pop_front();
            }
            caller.steps.push_back((time, d));
        }
        let repeat = sketch.is_some_and(|s| caller.memory.iter().any(|m| m.exact == s.exact));
        if let Some(s) = &sketch {
            caller.remember(s, patient, time, cfg);
        }
        while caller.steps.front().is_some_and(|&(t, _)| t < since) {
            caller.steps.pop_front();
        }
        if caller.history.len() == cfg.history {
            caller.history.pop_front();
        }
        caller.history.push_back(Query {
            id: event.id.clone(),
            time,
            sketch: sketch.map(SketchState::from),
            patient,
            label,
            scores,
            near,
            repeat,
            pop,
        });
        // Each caller has a bounded say in what the model's traffic looks
        // like, so a fast attacker cannot make its own queries normal.
        let hour = time.div_euclid(3600);
        if caller.taught_hour != hour {
            caller.taught_hour = hour;
            caller.taught = 0;
        }
        let teach = caller.taught < cfg.teach_per_hour;
        caller.taught += u32::from(teach);

        let mut signals = Signals::default();
        let recent = caller.history.iter().filter(|q| q.time >= since);
        let n = recent.clone().count();
        let near_count = recent.filter(|q| q.near).count();
        if near_count >= cfg.similarity_min {
            signals.similarity = Some(format!(
                "similarity: {near_count} of the last {n} queries are near-duplicates of earlier ones \
                 (at least {} of 8 content hashes shared, not repeats, not the same patient)",
                cfg.near_shared
            ));
        }
        if nearest.is_some() {
            signals.steps = steps_signal(caller, model, since, cfg);
        }
        if warm {
            signals.coverage = coverage_signal(caller, model, since, cfg);
            signals.probing = probing_signal(caller, model, label, cfg);
        }
        if patient != 0 {
            signals.focus = focus_signal(caller, patient, time, cfg);
        }
        if teach {
            model.learn(&Taught {
                cell: sketch.map(|s| s.cell()),
                pop,
                radius: sketch.map(|s| s.radius),
                scores,
                label,
                step: nearest,
                time,
            });
        }
        signals.burst = self.burst(key, model_key, time);

        if !signals.primary() {
            return;
        }
        let fired = signals.fired();
        let count = fired.len() as u32;
        let cfg = &self.cfg;
        let Some(caller) = self.callers.get_mut(&key) else {
            return;
        };
        if time < caller.fired_at.saturating_add(cfg.cooldown_secs as i64)
            && count <= caller.fired_signals
        {
            return;
        }
        caller.fired_at = time;
        caller.fired_signals = count;
        let severity = match count {
            0 | 1 => Severity::Medium,
            2 => Severity::High,
            _ => Severity::Critical,
        };
        let evidence: Vec<String> = caller
            .history
            .iter()
            .rev()
            .take(cfg.max_evidence)
            .map(|q| q.id.clone())
            .collect();
        let start = caller.history.front().map_or(time, |q| q.time);
        let model_name = format!("{}@{}", inf.model_id, inf.model_version);
        let summary = format!(
            "{count} signal{} on model {model_name}: {}",
            if count == 1 { "" } else { "s" },
            fired.join("; ")
        );
        findings.push(Finding {
            detector: "model_abuse".into(),
            severity,
            actor: event.actor.id.clone(),
            patient: signals
                .focus
                .is_some()
                .then(|| event.patient().map(str::to_owned))
                .flatten(),
            model: Some(model_name),
            window_start: chrono::DateTime::from_timestamp(start, 0).unwrap_or(ctx.time),
            window_end: ctx.time,
            score: f64::from(count),
            observed: near_count as f64,
            expected: 0.0,
            summary,
            evidence_total: evidence.len() as u64,
            evidence,
        });
    }

    fn keys(&self) -> usize {
        self.callers.len()
    }

    fn evictions(&self) -> u64 {
        self.evictions
    }

    fn save(&self) -> Vec<u8> {
        fn sorted<V>(map: &Map<u64, V>) -> Vec<(String, &V)> {
            let mut v: Vec<(u64, &V)> = map.iter().map(|(k, x)| (*k, x)).collect();
            v.sort_by_key(|(k, _)| *k);
            v.into_iter().map(|(k, x)| (k.to_string(), x)).collect()
        }
        StateWriter::new()
            .field("callers", &sorted(&self.callers))
            .field("evictions", &self.evictions)
            .field("models", &sorted(&self.models))
            .field("peers", &sorted(&self.peers))
            .finish()
    }

    fn load(&mut self, state: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Saved {
            callers: Vec<(String, Caller)>,
            models: Vec<(String, ModelState)>,
            peers: Vec<(String, Baseline)>,
            evictions: u64,
        }
        let s: Saved = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        self.callers = numeric_keys(s.callers)?;
        self.models = numeric_keys(s.models)?;
        self.peers = numeric_keys(s.peers)?;
        self.evictions = s.evictions;
        Ok(())
    }
}
