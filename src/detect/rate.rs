//! `access_rate`: an actor's access rate against their own baseline.
//!
//! Model: each actor's count of access events per fixed event-time window
//! (default 60 s) is a noisy quantity with a slowly moving level. The
//! baseline is an exponentially weighted mean and variance of past window
//! counts, quiet windows included (an actor silent for an hour contributes
//! an hour of zero windows). The score of the current window is
//!
//! ```text
//! score = (count - mean) / sqrt(max(variance, mean, 1))
//! ```
//!
//! i.e. a z-score whose spread never falls below the Poisson spread of the
//! mean (and never below one event), so a steady, low-variance actor is not
//! flagged for a small wobble. It fires once per actor and window, as soon
//! as the running count crosses `threshold` *and* the absolute floor
//! `min_count` (so a quiet actor does not alert on one extra event), and
//! only after `warmup_windows` windows of history for that actor.
//!
//! Robustness: the baseline starts from the median and median absolute
//! deviation of the actor's first `warmup_windows` windows (so it starts at
//! their real level, and a burst inside the warm-up does not become the
//! norm); after that a window's count enters the baseline clipped at
//! `mean + threshold * spread`, so a burst cannot inflate the baseline
//! enough to hide the next one.
//!
//! State: one small record per actor; at `max_actors` the least recently
//! active tenth is evicted (counted in `custos_detector_evictions_total`).

use crate::ledger::StateWriter;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Detector, Finding, Severity};
use crate::event::{Event, Kind};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateConfig {
    /// Window length in seconds.
    pub window_secs: u64,
    /// EWMA weight of the newest window (0 < alpha < 1).
    pub alpha: f64,
    /// Score at which a window is anomalous.
    pub threshold: f64,
    /// Fewest accesses in a window that can ever fire.
    pub min_count: u64,
    /// Windows of an actor's history needed before it can fire.
    pub warmup_windows: u64,
    /// Actors held at most.
    pub max_actors: usize,
    /// Evidence event ids kept per finding.
    pub max_evidence: usize,
}

impl Default for RateConfig {
    fn default() -> Self {
        RateConfig {
            window_secs: 60,
            alpha: 0.05,
            threshold: 6.0,
            min_count: 30,
            warmup_windows: 10,
            max_actors: 200_000,
            max_evidence: 20,
        }
    }
}

impl RateConfig {
    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        if self.window_secs == 0 || self.window_secs > 86_400 {
            problems.push(format!("{at}.window_secs must be between 1 and 86400"));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            problems.push(format!("{at}.alpha must be between 0 and 1 (exclusive)"));
        }
        if !(self.threshold > 0.0 && self.threshold.is_finite()) {
            problems.push(format!("{at}.threshold must be a positive number"));
        }
        if self.min_count == 0 {
            problems.push(format!("{at}.min_count must be at least 1"));
        }
        if self.max_actors == 0 {
            problems.push(format!("{at}.max_actors must be at least 1"));
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ActorState {
    window: i64,
    count: u64,
    fired: bool,
    evidence: Vec<String>,
    /// Windows folded into the baseline so far.
    learned: u64,
    /// Counts of the warm-up windows; emptied once the baseline is set.
    warmup: Vec<u32>,
    #[serde(with = "super::exact_f64")]
    mean: f64,
    #[serde(with = "super::exact_f64")]
    var: f64,
}

#[derive(Clone)]
pub struct AccessRate {
    cfg: RateConfig,
    actors: HashMap<String, ActorState>,
    evictions: u64,
}

impl AccessRate {
    pub fn new(cfg: RateConfig) -> Self {
        AccessRate {
            cfg,
            actors: HashMap::new(),
            evictions: 0,
        }
    }

    fn window_of(&self, t: DateTime<Utc>) -> i64 {
        t.timestamp().div_euclid(self.cfg.window_secs as i64)
    }

    fn window_start(&self, w: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(w * self.cfg.window_secs as i64, 0).unwrap_or_default()
    }

    /// Drops exactly the least recently active tenth of the actors (ties
    /// broken by id, so actors active in the same window are not all
    /// dropped at once).
    fn evict(&mut self) {
        self.evictions += super::memory::evict_stalest(&mut self.actors, |s| s.window);
    }
}

/// Median and median absolute deviation of `xs` (reordered in place).
fn median_and_mad(xs: &mut [u32]) -> (f64, f64) {
    fn median(v: &mut [f64]) -> f64 {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    }
    let mut v: Vec<f64> = xs.iter().map(|&x| x as f64).collect();
    let m = median(&mut v);
    let mut dev: Vec<f64> = v.iter().map(|x| (x - m).abs()).collect();
    (m, median(&mut dev))
}

fn spread(mean: f64, var: f64) -> f64 {
    var.max(mean).max(1.0).sqrt()
}

impl ActorState {
    fn new(window: i64) -> Self {
        ActorState {
            window,
            count: 0,
            fired: false,
            evidence: Vec::new(),
            learned: 0,
            warmup: Vec::new(),
            mean: 0.0,
            var: 0.0,
        }
    }

    /// Folds one finished window's count into the baseline.
    ///
    /// The first `warmup_windows` counts are kept and the baseline is set
    /// from their median and median absolute deviation, so a burst inside
    /// the warm-up (a few windows out of many) does not become the norm.
    /// After that: EWMA with the count clipped at `mean + threshold *
    /// spread`.
    fn learn(&mut self, count: f64, cfg: &RateConfig) {
        self.learned += 1;
        if self.learned <= cfg.warmup_windows {
            self.warmup.push(count.min(u32::MAX as f64) as u32);
            if self.learned == cfg.warmup_windows {
                let (median, mad) = median_and_mad(&mut self.warmup);
                self.mean = median;
                self.var = (1.4826 * mad).powi(2);
                self.warmup = Vec::new();
            }
            return;
        }
        let x = count.min(self.mean + cfg.threshold * spread(self.mean, self.var));
        let diff = x - self.mean;
        let incr = cfg.alpha * diff;
        self.mean += incr;
        self.var = (1.0 - cfg.alpha) * (self.var + diff * incr);
    }

    /// Moves to window `w`, closing the current one and the empty ones in
    /// between (bounded: after ~50/alpha empty windows the baseline is zero
    /// to within float precision, so more need not be folded in).
    fn advance(&mut self, w: i64, cfg: &RateConfig) {
        if w <= self.window {
            return;
        }
        self.learn(self.count as f64, cfg);
        let empty = (w - self.window - 1).min((50.0 / cfg.alpha) as i64);
        for _ in 0..empty {
            self.learn(0.0, cfg);
        }
        self.window = w;
        self.count = 0;
        self.fired = false;
        self.evidence.clear();
    }
}

impl Detector for AccessRate {
    fn name(&self) -> &'static str {
        "access_rate"
    }

    fn observe(&mut self, event: &Event, _: &super::Context, findings: &mut Vec<Finding>) {
        if event.kind() != Kind::Access {
            return;
        }
        let t = event.time.with_timezone(&Utc);
        let w = self.window_of(t);
        // A known actor's id is not copied.
        if !self.actors.contains_key(&event.actor.id) {
            if self.actors.len() >= self.cfg.max_actors {
                self.evict();
            }
            self.actors
                .insert(event.actor.id.clone(), ActorState::new(w));
        }
        let cfg = &self.cfg;
        let Some(state) = self.actors.get_mut(&event.actor.id) else {
            return;
        };
        // A late event (earlier window) counts in the current window.
        state.advance(w, cfg);
        state.count += 1;
        if state.evidence.len() < cfg.max_evidence {
            state.evidence.push(event.id.clone());
        }
        if state.fired || state.count < cfg.min_count || state.learned < cfg.warmup_windows {
            return;
        }
        let sd = spread(state.mean, state.var);
        let score = (state.count as f64 - state.mean) / sd;
        if score < cfg.threshold {
            return;
        }
        state.fired = true;
        let (window, count, mean) = (state.window, state.count, state.mean);
        let evidence = state.evidence.clone();
        let start = self.window_start(window);
        findings.push(Finding {
            detector: self.name().to_owned(),
            severity: if score >= 2.0 * self.cfg.threshold {
                Severity::High
            } else {
                Severity::Medium
            },
            actor: event.actor.id.clone(),
            patient: None,
            model: None,
            window_start: start,
            window_end: start + chrono::Duration::seconds(self.cfg.window_secs as i64),
            score,
            observed: count as f64,
            expected: mean,
            summary: format!(
                "{count} accesses in {}s against a usual {mean:.1} (score {score:.1})",
                self.cfg.window_secs
            ),
            evidence,
            evidence_total: count,
        });
    }

    fn keys(&self) -> usize {
        self.actors.len()
    }

    fn evictions(&self) -> u64 {
        self.evictions
    }

    fn save(&self) -> Vec<u8> {
        // Sorted by actor, so equal states save to equal bytes.
        let actors: std::collections::BTreeMap<&String, &ActorState> = self.actors.iter().collect();
        StateWriter::new()
            .field("actors", &actors)
            .field("evictions", &self.evictions)
            .finish()
    }

    fn load(&mut self, state: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Saved {
            actors: HashMap<String, ActorState>,
            evictions: u64,
        }
        let saved: Saved = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        self.actors = saved.actors;
        self.evictions = saved.evictions;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
