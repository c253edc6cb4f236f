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
//!   the very same input (a repeat teaches nothing) nor about the same
//!   named patient (a clinician re-scoring a patient after new labs). Fires
//!   when `similarity_min` of the caller's last `history` queries are
//!   near-duplicates.
//! - **steps** (after PRADA, Juuti et al. 2019): a query's step is its
//!   distance (direction bits plus radius, see `Sketch::distance`) to the
//!   nearest of the caller's previous `steps_reach` queries (same
//!   exclusions). Natural queries step like the model's other callers do;
//!   synthetic ones do not: tiny steps beside jumps (Jacobian-style
//!   augmentation), steps all alike (a grid or a climb), or all long
//!   (random inputs). PRADA tests the steps against a normal distribution;
//!   clinical inputs sit on a low-dimensional manifold whose distances are
//!   not normal, so the caller's last `steps_window` steps are tested
//!   against the model's step histogram instead (Kolmogorov–Smirnov, fires
//!   below `steps_p`).
//! - **coverage**: extraction spreads queries over the input space, into
//!   regions the model's real traffic never visits. The model's traffic
//!   fills a histogram of 4096 cells (direction and radius of the
//!   normalized input); a cell holding less than `rare_share` of a uniform
//!   share is rare. Fires when at least `coverage_min` of the caller's last
//!   `history` queries are rare and that many is improbable (binomial tail
//!   below `coverage_p`) at the model's own rate of rare queries.
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
//! until 500 steps are known. State per (caller,
//! model): `history` entries of 64 bytes plus the evidence ids, and
//! `steps_window` distances — about 3 KiB with the defaults; at most
//! `max_callers` of them (the least recently active tenth is evicted), at
//! most 256 models (17 KiB each) and 10,000 peer groups.

mod stats;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::memory::{Baseline, Map, evict_stalest, key_hash, mix, numeric_keys};
use super::{Context, Detector, Finding, Severity};
use crate::event::sketch::Sketch;
use crate::event::{Body, Event};

pub use stats::binomial_tail;

/// Cells of the model-level input histogram (see [`Sketch::cell`]).
const CELLS: usize = 4096;
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
    /// Content hashes (of 8) two queries must share to be near-duplicates.
    pub near_shared: usize,
    /// Near-duplicates among the last `history` queries that fire.
    pub similarity_min: usize,
    /// Distances the step test needs (and looks back over).
    pub steps_window: usize,
    /// A query's step is its distance to the nearest of the caller's
    /// previous `steps_reach` queries (counted once that many exist).
    pub steps_reach: usize,
    /// Kolmogorov–Smirnov tail probability below which the caller's steps
    /// differ from the model's.
    pub steps_p: f64,
    /// A cell is rare below this fraction of a uniform share of the
    /// model's traffic.
    pub rare_share: f64,
    /// Rare queries among the last `history` that can fire.
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
            near_shared: 5,
            similarity_min: 12,
            steps_window: 48,
            steps_reach: 16,
            steps_p: 1e-6,
            rare_share: 0.25,
            coverage_min: 8,
            coverage_p: 1e-6,
            focus_min: 16,
            focus_secs: 6 * 3600,
            model_warmup: 1000,
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
        if !(8..=1024).contains(&self.steps_window) {
            bad("steps_window must be 8 to 1024 distances".into());
        }
        if self.steps_reach == 0 || self.steps_reach > self.history {
            bad("steps_reach must be 1 to history".into());
        }
        if !(self.steps_p > 0.0 && self.steps_p < 0.5) {
            bad("steps_p must be in (0, 0.5)".into());
        }
        if self.teach_per_hour == 0 {
            bad("teach_per_hour must be positive".into());
        }
        if !(self.rare_share > 0.0 && self.rare_share <= 1.0) {
            bad("rare_share must be in (0, 1]".into());
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
        if self.focus_secs == 0 || self.burst_window_secs == 0 {
            bad("focus_secs and burst_window_secs must be positive".into());
        }
        if !(self.burst_threshold > 0.0) || !(self.burst_min_ratio >= 1.0) {
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
    rare: bool,
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

/// One caller's state for one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Caller {
    history: VecDeque<Query>,
    /// Distances to the nearest earlier query, newest last.
    steps: VecDeque<u8>,
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
    /// Share of the model's queries that were rare when they came.
    #[serde(with = "super::exact_f64")]
    rare_rate: f64,
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

/// Step distances counted apart (larger ones fall in the last bin).
const STEP_BINS: usize = 80;
/// Steps the model's reference needs before callers are compared with it.
const STEP_REFERENCE: u64 = 500;

impl ModelState {
    fn new() -> Self {
        ModelState {
            total: 0,
            cells: vec![0; CELLS],
            rare_rate: 0.0,
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

    fn learn(
        &mut self,
        cell: Option<u16>,
        rare: bool,
        scores: bool,
        label: u64,
        step: Option<u8>,
        time: i64,
    ) {
        self.total += 1;
        if let Some(d) = step {
            self.steps[usize::from(d).min(STEP_BINS - 1)] += 1;
            self.steps_total += 1;
        }
        self.last = time;
        let w = (1.0 / self.total as f64).max(1e-3);
        if let Some(cell) = cell {
            let c = &mut self.cells[usize::from(cell) % CELLS];
            *c = c.saturating_add(1);
            self.rare_rate += w * (f64::from(u8::from(rare)) - self.rare_rate);
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
        let z = refs.iter().map(|b| b.score(c)).fold(f64::INFINITY, f64::min);
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

/// A model's key and name (`id@version`).
fn model_of(event: &Event) -> Option<(u64, String, &crate::event::Inference)> {
    let Body::Inference(inf) = &event.body else {
        return None;
    };
    Some((
        key_hash(&["m", &inf.model_id, &inf.model_version]),
        format!("{}@{}", inf.model_id, inf.model_version),
        inf,
    ))
}

impl Caller {
    fn new(cfg: &ModelAbuseConfig, time: i64) -> Caller {
        Caller {
            history: VecDeque::with_capacity(cfg.history),
            steps: VecDeque::with_capacity(cfg.steps_window),
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
    /// step: the distance to the nearest of the last `steps_reach` queries
    /// (once that many exist). Repeats of the very same input and queries
    /// about the same named patient are not compared.
    fn compare(&self, s: &Sketch, patient: u64, cfg: &ModelAbuseConfig) -> (bool, Option<u8>) {
        let mut near = false;
        let mut nearest: Option<u32> = None;
        let reach_from = self.history.len().saturating_sub(cfg.steps_reach);
        for (i, q) in self.history.iter().enumerate() {
            let Some(other) = q.sketch else { continue };
            let other = Sketch::from(other);
            if other.exact == s.exact || (patient != 0 && q.patient == patient) {
                continue;
            }
            near |= s.shared(&other) >= cfg.near_shared;
            if i >= reach_from {
                let d = s.distance(&other);
                nearest = Some(nearest.map_or(d, |n| n.min(d)));
            }
        }
        let step = (self.history.len() >= cfg.steps_reach)
            .then_some(nearest)
            .flatten()
            .map(|d| d.min(255) as u8);
        (near, step)
    }
}

/// The caller's steps against the model's (one-sample Kolmogorov–Smirnov
/// against the model's step histogram).
fn steps_signal(
    steps: &VecDeque<u8>,
    model: &ModelState,
    cfg: &ModelAbuseConfig,
) -> Option<String> {
    if model.steps_total < STEP_REFERENCE {
        return None;
    }
    let mut mine = [0u32; STEP_BINS];
    for &d in steps {
        mine[usize::from(d).min(STEP_BINS - 1)] += 1;
    }
    let n = steps.len() as f64;
    let total = model.steps_total as f64;
    let (mut fc, mut fm, mut ks, mut at) = (0.0, 0.0, 0.0f64, 0);
    for b in 0..STEP_BINS {
        fc += f64::from(mine[b]) / n;
        fm += f64::from(model.steps[b]) / total;
        if (fc - fm).abs() > ks {
            ks = (fc - fm).abs();
            at = b;
        }
    }
    // P(D > d) ≈ 2·exp(-2·n·d²) for the one-sample test.
    let p = (2.0 * (-2.0 * n * ks * ks).exp()).min(1.0);
    if p >= cfg.steps_p {
        return None;
    }
    let mut sorted: Vec<u8> = steps.iter().copied().collect();
    sorted.sort_unstable();
    let model_median = {
        let (mut acc, mut b) = (0u64, 0);
        while b < STEP_BINS && (acc + u64::from(model.steps[b])) * 2 < model.steps_total {
            acc += u64::from(model.steps[b]);
            b += 1;
        }
        b
    };
    Some(format!(
        "steps: distances to the nearest earlier query differ from the model's callers' \
         (median {} against {model_median}; KS distance {ks:.2} at {at}, p {p:.1e}, over {})",
        sorted[sorted.len() / 2],
        sorted.len()
    ))
}

/// Rare queries in the caller's history against the model's rate.
fn coverage_signal(caller: &Caller, model: &ModelState, cfg: &ModelAbuseConfig) -> Option<String> {
    let n = caller.history.len();
    let rare = caller.history.iter().filter(|q| q.rare).count();
    if rare < cfg.coverage_min {
        return None;
    }
    let p = binomial_tail(n, rare, model.rare_rate.max(1e-3));
    if p >= cfg.coverage_p {
        return None;
    }
    let cells: super::memory::Set<u16> = caller
        .history
        .iter()
        .filter_map(|q| q.sketch.map(|s| Sketch::from(s).cell()))
        .collect();
    Some(format!(
        "coverage: {rare} of the last {n} queries fall where the model's traffic rarely goes \
         ({:.1}% of its queries do; p {p:.1e}); {} distinct cells",
        100.0 * model.rare_rate,
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
fn focus_signal(caller: &Caller, patient: u64, time: i64, cfg: &ModelAbuseConfig) -> Option<String> {
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
        let Some((model_key, model_name, inf)) = model_of(event) else {
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
        let rare = sketch.is_some_and(|s| {
            warm && (model.cells[usize::from(s.cell())] as f64)
                < cfg.rare_share * model.total as f64 / CELLS as f64
        });

        // The query against the caller's history, then added to it.
        let caller = self.callers.entry(key).or_insert_with(|| Caller::new(cfg, time));
        caller.last = time;
        caller.group = ctx.group.or(caller.group);
        let (near, nearest) = match sketch {
            Some(s) => caller.compare(&s, patient, cfg),
            None => (false, None),
        };
        if let Some(d) = nearest {
            if caller.steps.len() == cfg.steps_window {
                caller.steps.pop_front();
            }
            caller.steps.push_back(d);
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
            rare,
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
        let n = caller.history.len();
        let near_count = caller.history.iter().filter(|q| q.near).count();
        if near_count >= cfg.similarity_min {
            signals.similarity = Some(format!(
                "similarity: {near_count} of the last {n} queries are near-duplicates of earlier ones \
                 (at least {} of 8 content hashes shared, not repeats, not the same patient)",
                cfg.near_shared
            ));
        }
        if nearest.is_some() && caller.steps.len() == cfg.steps_window {
            signals.steps = steps_signal(&caller.steps, model, cfg);
        }
        if warm {
            signals.coverage = coverage_signal(caller, model, cfg);
            signals.probing = probing_signal(caller, model, label, cfg);
        }
        if patient != 0 {
            signals.focus = focus_signal(caller, patient, time, cfg);
        }
        if teach {
            model.learn(sketch.map(|s| s.cell()), rare, scores, label, nearest, time);
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

    fn save(&self) -> serde_json::Value {
        fn sorted<V>(map: &Map<u64, V>) -> Vec<(String, &V)> {
            let mut v: Vec<(u64, &V)> = map.iter().map(|(k, x)| (*k, x)).collect();
            v.sort_by_key(|(k, _)| *k);
            v.into_iter().map(|(k, x)| (k.to_string(), x)).collect()
        }
        serde_json::json!({
            "callers": sorted(&self.callers),
            "models": sorted(&self.models),
            "peers": sorted(&self.peers),
            "evictions": self.evictions,
        })
    }

    fn load(&mut self, state: serde_json::Value) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Saved {
            callers: Vec<(String, Caller)>,
            models: Vec<(String, ModelState)>,
            peers: Vec<(String, Baseline)>,
            evictions: u64,
        }
        let s: Saved = serde_json::from_value(state).map_err(|e| e.to_string())?;
        self.callers = numeric_keys(s.callers)?;
        self.models = numeric_keys(s.models)?;
        self.peers = numeric_keys(s.peers)?;
        self.evictions = s.evictions;
        Ok(())
    }
}
