//! Windowed counts per actor against the actor's own baseline and their
//! peer group's: the engine behind `volume`, `breadth`, `no_relationship`,
//! `denied_burst` and `break_glass`.
//!
//! Model: in each event-time window (tumbling, aligned to the epoch) an
//! actor does some amount of a thing — accesses, distinct patients opened,
//! patients opened without a treatment relationship, denied accesses,
//! break-the-glass accesses. How much is normal depends on who they are
//! (an emergency physician opens many more charts than a cardiology
//! nurse) and, for volume, on the time of the week. So each actor has
//!
//! - an **own baseline**: a robust running mean and variance
//!   ([`Baseline`]) of their count in the windows in which they were active
//!   at all (a window with no access of any kind teaches nothing: absence
//!   is the off-hours detector's business), optionally one per part of the
//!   week (`seasonal`: 6-hour day parts × weekday/weekend);
//! - a **peer baseline**: the same over every active window of every actor
//!   with the same role and department (from the event, else the roster).
//!
//! The baselines learn from tumbling windows (aligned to the epoch). The
//! firing rule looks at the current tumbling window, or (`sliding`, for
//! the long windows of `no_relationship` and `break_glass`) at a sliding
//! window of the same length ending at the current event, so misuse that
//! straddles a boundary is counted whole. An actor fires as soon as the
//! count `c` reaches `min_count` and `score = min(own z, peer z) >=
//! threshold`, and then not again in that window (sliding: for one window
//! length, unless the count doubles what it reported: an escalation);
//! where
//! `z = (c - mean) / spread` and spread is at least the Poisson spread of
//! the mean. Taking the smaller z means the count must be unusual against
//! both references that are warm (own: `warmup_windows` windows; peers:
//! `peer_warmup` actor-windows), so an actor whose own habit is wide is
//! not flagged because their peers are narrower, and a new hire without
//! history is judged against their peers. With neither warm it cannot fire.
//!
//! Bounds: at most `max_actors` actors (the least recently active tenth is
//! evicted when full), at most 10,000 peer groups, the newest
//! `max_evidence` evidence ids per actor, 512 entries in a sliding window
//! and 4096 distinct keys per tumbling window (enough to fire).

use crate::ledger::StateWriter;
use std::collections::VecDeque;
use std::marker::PhantomData;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::memory::{Baseline, Map, is_never, is_zero, never};
use super::table::ActorTable;
use super::{Context, Finding, Severity};
use crate::event::Event;

/// Peer groups held at most; actors of further groups have no peers.
const MAX_GROUPS: usize = 10_000;
/// Counted events held in an actor's sliding window at most (beyond, the
/// oldest are dropped: the count saturates, it does not wrap).
const MAX_RECENT: usize = 512;
/// Distinct keys counted per actor and window at most.
const MAX_DISTINCT: usize = 4096;
/// Within the silence after a finding of a sliding window (one window
/// length: a shift), the actor fires again only when the count reaches
/// this multiple of the count last reported (a tumbling window's silence
/// ends with the window, minutes later, and has no escalation): the misuse has
/// grown as large again as what the privacy officer was shown, which a
/// finding already on their desk does not say (the snooping that follows a
/// break-the-glass habit in the same shift). At most a handful of
/// findings per window: 2, 4, 8, … times the first count.
const ESCALATION: u64 = 2;

/// What one event adds to its actor's window.
pub enum Measure {
    /// Not an event this detector looks at (the window is not touched).
    Skip,
    /// The actor was active; nothing to count.
    Touch,
    /// Count this much.
    Add(u32),
    /// Count this key once per window (distinct counting).
    Distinct(u64),
}

/// The per-detector part: what is counted and how it is described.
pub trait CountKind: Clone + Send + 'static {
    const NAME: &'static str;
    /// Whether [`CountKind::measure`] returns distinct keys (else amounts).
    const DISTINCT: bool;
    /// The defaults of the detector's parameters.
    fn defaults() -> CountParams;
    fn measure(event: &Event, ctx: &Context) -> Measure;
    /// "41 distinct patients" for a count of 41.
    fn describe(count: u32) -> String;
}

/// Parameters shared by every count detector (defaults differ per type).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountParams {
    /// Window length in seconds.
    pub window_secs: u64,
    /// Score (in spreads above the mean) at which a window fires.
    pub threshold: f64,
    /// Smallest count that can ever fire.
    pub min_count: u32,
    /// EWMA weight of a new window in the actor's own baseline.
    pub alpha: f64,
    /// Active windows of an actor's history before their own baseline counts.
    pub warmup_windows: u32,
    /// EWMA weight of a new actor-window in the peer baseline.
    pub peer_alpha: f64,
    /// Actor-windows of a peer group before the peer baseline counts.
    pub peer_warmup: u32,
    /// Keep one own baseline per part of the week (4 day parts ×
    /// weekday/weekend) besides the overall one.
    pub seasonal: bool,
    /// Fire on a sliding window ending at each event instead of the
    /// tumbling window the baselines learn from. For long windows (a
    /// shift), so misuse straddling a boundary is counted whole; short
    /// windows keep the tumbling one, whose counts are exactly what the
    /// baselines learned (a sliding window's running maximum is larger).
    pub sliding: bool,
    /// The count must also be at least this multiple of the larger warm
    /// mean (own or peers'). Human work is heavy-tailed: a busy hour can
    /// sit many spreads above the mean yet be only two or three times it,
    /// while scripted access and account misuse are multiples.
    pub min_ratio: f64,
    /// How a count is judged against the baselines (see [`Model`]).
    pub model: Model,
    /// Seconds an actor stays silent after a finding, unless the count
    /// escalates (0: the window length). A burst of several minutes seen
    /// through a one-minute window is one finding, not one a minute.
    pub renotify_secs: u64,
    /// Actors held at most.
    pub max_actors: usize,
    /// Evidence event ids kept per finding.
    pub max_evidence: usize,
}

/// How a window's count is scored against the baselines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Model {
    /// `score = (c − mean) / spread`, in spreads; the spread never below
    /// the Poisson spread of the mean.
    Normal,
    /// The same on `ln(1 + c)`: for amounts of human work, which vary by
    /// multiples (a person's pace, the day's load, a busy hour) rather
    /// than by a fixed number of events. The spread never falls below
    /// the Poisson spread of the usual count on the log scale.
    LogNormal,
    /// For rare events (counts mostly 0 or 1): `score = −log10 P(X ≥ c)`
    /// under a Poisson rate with a gamma posterior (negative binomial
    /// predictive) built from the actor's own windows and, as a prior
    /// worth [`PEER_PRIOR_WINDOWS`] windows, their peers' rate. A count of
    /// 2 or 3 is then improbable for someone who almost never does the
    /// thing, while a few windows of history or a peer group that does it
    /// often keep the tail wide.
    PoissonGamma,
}

/// Weight, in windows, of the peer rate as the prior of an actor's rate
/// (`poisson_gamma`).
pub const PEER_PRIOR_WINDOWS: f64 = 4.0;

/// A count detector's configuration: [`CountParams`] with the defaults of
/// detector type `K`.
#[derive(Serialize, Deserialize)]
#[serde(transparent, bound = "")]
pub struct CountConfig<K: CountKind> {
    pub params: CountParamsSer,
    #[serde(skip)]
    kind: PhantomData<K>,
}

/// [`CountParams`] with every key optional in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CountParamsSer {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alpha: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup_windows: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_alpha: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_warmup: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seasonal: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sliding: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<Model>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub renotify_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_actors: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_evidence: Option<usize>,
}

impl<K: CountKind> Clone for CountConfig<K> {
    fn clone(&self) -> Self {
        CountConfig {
            params: self.params,
            kind: PhantomData,
        }
    }
}

impl<K: CountKind> Default for CountConfig<K> {
    fn default() -> Self {
        CountConfig {
            params: CountParamsSer::default(),
            kind: PhantomData,
        }
    }
}

impl<K: CountKind> std::fmt::Debug for CountConfig<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.resolved().fmt(f)
    }
}

impl<K: CountKind> CountConfig<K> {
    /// The parameters, with the type's defaults where the file is silent.
    pub fn resolved(&self) -> CountParams {
        let d = K::defaults();
        let p = &self.params;
        CountParams {
            window_secs: p.window_secs.unwrap_or(d.window_secs),
            threshold: p.threshold.unwrap_or(d.threshold),
            min_count: p.min_count.unwrap_or(d.min_count),
            alpha: p.alpha.unwrap_or(d.alpha),
            warmup_windows: p.warmup_windows.unwrap_or(d.warmup_windows),
            peer_alpha: p.peer_alpha.unwrap_or(d.peer_alpha),
            peer_warmup: p.peer_warmup.unwrap_or(d.peer_warmup),
            seasonal: p.seasonal.unwrap_or(d.seasonal),
            sliding: p.sliding.unwrap_or(d.sliding),
            min_ratio: p.min_ratio.unwrap_or(d.min_ratio),
            model: p.model.unwrap_or(d.model),
            renotify_secs: p.renotify_secs.unwrap_or(d.renotify_secs),
            max_actors: p.max_actors.unwrap_or(d.max_actors),
            max_evidence: p.max_evidence.unwrap_or(d.max_evidence),
        }
    }

    pub fn validate(&self, at: &str, problems: &mut Vec<String>) {
        let p = self.resolved();
        if p.window_secs == 0 || p.window_secs > 7 * 86_400 {
            problems.push(format!("{at}.window_secs must be between 1 and 604800"));
        }
        if !(p.threshold > 0.0 && p.threshold.is_finite()) {
            problems.push(format!("{at}.threshold must be a positive number"));
        }
        if p.min_count == 0 {
            problems.push(format!("{at}.min_count must be at least 1"));
        }
        for (name, a) in [("alpha", p.alpha), ("peer_alpha", p.peer_alpha)] {
            if !(a > 0.0 && a < 1.0) {
                problems.push(format!("{at}.{name} must be between 0 and 1 (exclusive)"));
            }
        }
        if p.max_actors == 0 || p.max_actors > super::table::MAX_RECORDS {
            problems.push(format!(
                "{at}.max_actors must be between 1 and {}",
                super::table::MAX_RECORDS
            ));
        }
    }
}

/// An actor's state in one count detector: small and inline for every
/// actor seen, with what only a window in progress needs ([`Live`]) held
/// apart, emptied when that window is over and dropped after a window with
/// nothing counted, so an actor who is not at work costs the baselines,
/// not the buffers.
///
/// The parts held apart are shared, not copied, by a snapshot's copy of
/// the state (`Arc`; written through `Arc::make_mut`): the loop's copy
/// costs the inline part, and an actor's part is copied only when the
/// actor is next seen while the snapshot still holds it.
#[derive(Debug, Clone)]
struct ActorCount {
    window: i64,
    /// When this actor last fired (it fires again only a window later,
    /// or on escalation), and the count it reported then.
    fired_at: i64,
    /// Peer group of the current window (0: none).
    group: u64,
    own: Baseline,
    /// The tumbling window's count (what the baselines learn).
    count: u32,
    fired_count: u32,
    /// Sliding windows only: the previous tumbling window, learned when
    /// the current one ends (see [`CountDetector::close`]), as how many
    /// windows before `window` it was (0: none) and its count: 8 bytes
    /// instead of an `Option<Pending>`'s 24, in every actor's record.
    pending_back: u32,
    pending_count: u32,
    /// Seasonal baselines, once a window has been learned.
    slots: Option<Arc<[Baseline; 8]>>,
    live: Option<Arc<Live>>,
}

/// What a window in progress holds.
#[derive(Debug, Clone, Default)]
struct Live {
    /// Sliding windows only: (second, key or amount) of each counted
    /// event within `window_secs` of the newest, oldest first.
    recent: VecDeque<(i64, u64)>,
    /// Sum of the amounts in `recent` (its length for distinct counts).
    sliding: u64,
    /// Keys counted in the current tumbling window, sorted (so equal
    /// states save to equal bytes).
    distinct: Vec<u64>,
    /// The newest counted events (second, id), at most `max_evidence`:
    /// evidence older than the window is dropped, so a finding cites only
    /// events it counted.
    evidence: VecDeque<(i64, Arc<str>)>,
}

impl Default for ActorCount {
    /// Nothing counted, never fired, no history (the window is set by the
    /// caller).
    fn default() -> Self {
        ActorCount {
            window: 0,
            fired_at: i64::MIN,
            group: 0,
            own: Baseline::default(),
            count: 0,
            fired_count: 0,
            pending_back: 0,
            pending_count: 0,
            slots: None,
            live: None,
        }
    }
}

impl ActorCount {
    /// The finished window not yet learned.
    fn pending(&self) -> Option<Pending> {
        (self.pending_back > 0).then(|| Pending {
            window: self.window - i64::from(self.pending_back),
            count: self.pending_count,
        })
    }

    /// Sets the finished window not yet learned, which is before `window`.
    /// One 2^32 or more windows back (an event time centuries before the
    /// next, at the shortest windows) is dropped, never learned: it is
    /// kept as a 32-bit distance.
    fn set_pending(&mut self, pending: Option<Pending>) {
        let back = pending.and_then(|p| {
            let back = u32::try_from(self.window.checked_sub(p.window)?).ok()?;
            (back > 0).then_some((back, p.count))
        });
        (self.pending_back, self.pending_count) = back.unwrap_or((0, 0));
    }
}

/// A buffer's first allocation holds two items, not the four a first
/// push allocates: most actors of a large population count one or two
/// events in a window, and these buffers are per actor and detector. It
/// grows by doubling from there.
fn room_for_one<T>(q: &mut VecDeque<T>) {
    if q.capacity() == 0 {
        q.reserve_exact(2);
    }
}

/// A finished window not yet learned.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Pending {
    window: i64,
    count: u32,
}

/// [`ActorCount`] as snapshots hold it (the layout of earlier versions:
/// evidence ids and their seconds as two arrays). Members at their
/// defaults (nothing counted, never fired, no history) are left out: most
/// actors in a large state are between windows.
#[derive(Serialize, Deserialize)]
struct SavedCount<'a> {
    window: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    count: u32,
    #[serde(default, skip_serializing_if = "no_recent")]
    recent: std::borrow::Cow<'a, VecDeque<(i64, u64)>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    sliding: u64,
    #[serde(default = "never", skip_serializing_if = "is_never")]
    fired_at: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    fired_count: u32,
    #[serde(default, skip_serializing_if = "is_zero")]
    group: u64,
    #[serde(default, skip_serializing_if = "no_items")]
    distinct: std::borrow::Cow<'a, [u64]>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    evidence: Vec<std::borrow::Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    evidence_at: Vec<i64>,
    #[serde(default, skip_serializing_if = "no_history")]
    own: Baseline,
    #[serde(default, skip_serializing_if = "no_items")]
    slots: std::borrow::Cow<'a, [Baseline]>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<Pending>,
}

fn no_history(b: &Baseline) -> bool {
    b.n == 0 && b.mean.to_bits() == 0 && b.var.to_bits() == 0
}

#[allow(clippy::ptr_arg)]
fn no_recent(recent: &std::borrow::Cow<'_, VecDeque<(i64, u64)>>) -> bool {
    recent.is_empty()
}

// `skip_serializing_if` hands over the field as it is.
#[allow(clippy::ptr_arg)]
fn no_items<T: Clone>(items: &std::borrow::Cow<'_, [T]>) -> bool {
    items.is_empty()
}

impl Serialize for ActorCount {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let empty = Live::default();
        let live = self.live.as_deref().unwrap_or(&empty);
        SavedCount {
            window: self.window,
            count: self.count,
            recent: std::borrow::Cow::Borrowed(&live.recent),
            sliding: live.sliding,
            fired_at: self.fired_at,
            fired_count: self.fired_count,
            group: self.group,
            distinct: std::borrow::Cow::Borrowed(&live.distinct),
            evidence: live.evidence.iter().map(|(_, id)| (&**id).into()).collect(),
            evidence_at: live.evidence.iter().map(|(t, _)| *t).collect(),
            own: self.own,
            slots: std::borrow::Cow::Borrowed(self.slots.as_deref().map_or(&[], |s| &s[..])),
            pending: self.pending(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for ActorCount {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let saved = SavedCount::deserialize(d)?;
        let mut distinct = saved.distinct.into_owned();
        distinct.sort_unstable();
        distinct.dedup();
        // A state saved without the evidence's seconds starts its
        // evidence afresh.
        let evidence = if saved.evidence.len() == saved.evidence_at.len() {
            saved
                .evidence_at
                .into_iter()
                .zip(saved.evidence)
                .map(|(t, id)| (t, Arc::from(&*id)))
                .collect()
        } else {
            VecDeque::new()
        };
        let live = Live {
            recent: saved.recent.into_owned(),
            sliding: saved.sliding,
            distinct,
            evidence,
        };
        let busy =
            !(live.recent.is_empty() && live.distinct.is_empty() && live.evidence.is_empty());
        let mut record = ActorCount {
            window: saved.window,
            fired_at: saved.fired_at,
            group: saved.group,
            own: saved.own,
            count: saved.count,
            fired_count: saved.fired_count,
            pending_back: 0,
            pending_count: 0,
            slots: <[Baseline; 8]>::try_from(&*saved.slots).ok().map(Arc::new),
            live: busy.then(|| Arc::new(live)),
        };
        record.set_pending(saved.pending);
        Ok(record)
    }
}

/// A count detector of type `K`.
#[derive(Clone)]
pub struct CountDetector<K: CountKind> {
    p: CountParams,
    actors: ActorTable<ActorCount>,
    peers: Map<u64, Baseline>,
    evictions: u64,
    /// The window of the first event this detector saw. It saw only the
    /// end of that window, whose counts are too small for a baseline: a
    /// stream started late in a minute taught `pace`'s peer groups a
    /// fraction of their usual minute, and the next full minute fired for
    /// every actor. No baseline learns it.
    began: Option<i64>,
    kind: PhantomData<K>,
}

/// The part of the week of a window start: 4 day parts × weekday/weekend.
fn slot_of(secs: i64) -> usize {
    let day = secs.div_euclid(86_400);
    // 1970-01-01 was a Thursday: day 2 (Sat) and 3 (Sun) of each week.
    let weekend = matches!(day.rem_euclid(7), 2 | 3);
    let part = (secs.rem_euclid(86_400) / 21_600) as usize;
    part + if weekend { 4 } else { 0 }
}

impl<K: CountKind> CountDetector<K> {
    pub fn new(cfg: &CountConfig<K>) -> Self {
        CountDetector {
            p: cfg.resolved(),
            actors: ActorTable::default(),
            peers: Map::default(),
            evictions: 0,
            began: None,
            kind: PhantomData,
        }
    }

    /// Drops the least recently active tenth of the actors.
    fn evict(&mut self) {
        self.evictions += self.actors.evict_stalest(|s| s.window);
    }

    /// [`Detector::observe`] for an actor's state `s`, once found.
    #[allow(clippy::too_many_arguments)]
    fn step(
        p: &CountParams,
        began: i64,
        peers: &mut Map<u64, Baseline>,
        s: &mut ActorCount,
        m: Measure,
        event: &Event,
        ctx: &Context,
        findings: &mut Vec<Finding>,
    ) {
        let secs = ctx.time.timestamp();
        let w = secs.div_euclid(p.window_secs as i64);
        // Whether a window just ended with nothing counted in it.
        let idle_window = w > s.window && s.count == 0;
        // A late event (an earlier window) counts in the current one.
        if w > s.window {
            Self::close(p, began, peers, s, w);
        }
        if let Some(g) = ctx.group {
            s.group = g;
        }
        // Slide: forget what left the window, and the evidence of what
        // it no longer counts.
        let horizon = secs.saturating_sub(p.window_secs as i64);
        let from = if p.sliding {
            horizon
        } else {
            s.window * p.window_secs as i64 - 1
        };
        // Written only when something leaves: a snapshot may share it.
        let stale = s.live.as_deref().is_some_and(|live| {
            live.recent.front().is_some_and(|&(t, _)| t <= horizon)
                || live.evidence.front().is_some_and(|&(t, _)| t <= from)
        });
        if stale && let Some(live) = s.live.as_mut().map(Arc::make_mut) {
            while live.recent.front().is_some_and(|&(t, _)| t <= horizon) {
                let (_, x) = live.recent.pop_front().unwrap_or_default();
                live.sliding -= if K::DISTINCT { 1 } else { x };
            }
            while live.evidence.front().is_some_and(|&(t, _)| t <= from) {
                live.evidence.pop_front();
            }
        }
        // The buffers of an actor who counted nothing in the window that
        // ended, once nothing is left in them, are dropped; a busy actor's
        // are reused.
        if idle_window && s.live.as_deref().is_some_and(|live| live.recent.is_empty()) {
            s.live = None;
        }
        if matches!(m, Measure::Skip | Measure::Touch | Measure::Add(0)) {
            return;
        }
        let live = Arc::make_mut(s.live.get_or_insert_with(Default::default));
        let added = match m {
            Measure::Skip | Measure::Touch => false,
            Measure::Add(n) => {
                s.count = s.count.saturating_add(n);
                if p.sliding {
                    room_for_one(&mut live.recent);
                    live.recent.push_back((secs, u64::from(n)));
                    live.sliding += u64::from(n);
                }
                true
            }
            Measure::Distinct(key) => {
                let new_here = match live.distinct.binary_search(&key) {
                    Ok(_) => false,
                    Err(at) if live.distinct.len() < MAX_DISTINCT => {
                        if live.distinct.capacity() == 0 {
                            live.distinct.reserve_exact(2);
                        }
                        live.distinct.insert(at, key);
                        s.count += 1;
                        true
                    }
                    Err(_) => false,
                };
                // Sliding: fresh within the sliding window; tumbling: new
                // in this window's count.
                if p.sliding {
                    let fresh = !live.recent.iter().any(|&(_, k)| k == key);
                    if fresh {
                        room_for_one(&mut live.recent);
                        live.recent.push_back((secs, key));
                        live.sliding += 1;
                    }
                    fresh
                } else {
                    new_here
                }
            }
        };
        if live.recent.len() > MAX_RECENT {
            let (_, x) = live.recent.pop_front().unwrap_or_default();
            live.sliding -= if K::DISTINCT { 1 } else { x };
        }
        if !added {
            return;
        }
        while live.evidence.len() >= p.max_evidence && live.evidence.pop_front().is_some() {}
        room_for_one(&mut live.evidence);
        live.evidence.push_back((secs, ctx.event_id(event)));
        let sliding = live.sliding;
        let silence = p.window_secs.max(p.renotify_secs) as i64;
        let (count, fired_recently) = if p.sliding {
            let count = u32::try_from(sliding).unwrap_or(u32::MAX);
            (count, secs.saturating_sub(s.fired_at) < silence)
        } else {
            (
                s.count,
                s.fired_at >= s.window * p.window_secs as i64
                    || secs.saturating_sub(s.fired_at) < p.renotify_secs as i64,
            )
        };
        // Within the silence after a finding, only an escalation speaks:
        // the count has grown to `ESCALATION` times the one reported.
        let escalation = p.sliding
            && fired_recently
            && s.fired_count > 0
            && u64::from(count) >= ESCALATION * u64::from(s.fired_count);
        if fired_recently && !escalation || count < p.min_count {
            return;
        }
        let c = f64::from(count);
        let own = match s.slots.as_deref().map(|slots| slots[slot_of(secs)]) {
            Some(slot) if slot.n >= p.warmup_windows => Some(slot),
            _ => (s.own.n >= p.warmup_windows).then_some(s.own),
        };
        let peer = peers
            .get(&s.group)
            .filter(|b| s.group != 0 && b.n >= p.peer_warmup)
            .copied();
        if own.is_none() && peer.is_none() {
            return;
        }
        let judged = judge(p.model, c, own, peer, &s.own);
        if judged.score < p.threshold || c < p.min_ratio * judged.level {
            return;
        }
        let score = judged.score;
        let mut reason = format!("{} in {}", K::describe(count), span(p.window_secs));
        if escalation {
            let at = chrono::DateTime::from_timestamp(s.fired_at, 0).unwrap_or_default();
            reason += &format!(
                " (escalation: {} reported at {} UTC)",
                s.fired_count,
                at.format("%H:%M")
            );
        }
        s.fired_at = secs;
        s.fired_count = count;
        if let Some(o) = own {
            reason += &format!("; own usual {}", usual(p.model, &o));
        }
        match (peer, ctx.role, ctx.dept) {
            (Some(q), Some(r), Some(d)) => {
                reason += &format!("; peers ({r}, {d}) {}", usual(p.model, &q));
            }
            _ => reason += "; no peer baseline",
        }
        match p.model {
            Model::PoissonGamma => {
                reason += &format!(" (chance {:.1e}, score {score:.1})", 10f64.powf(-score));
            }
            _ => reason += &format!(" (score {score:.1})"),
        }
        let expected = judged.expected;
        let from = if p.sliding {
            horizon
        } else {
            s.window * p.window_secs as i64
        };
        let start = chrono::DateTime::from_timestamp(from, 0).unwrap_or_default();
        findings.push(Finding {
            detector: K::NAME.to_owned(),
            severity: if score >= 2.0 * p.threshold {
                Severity::High
            } else {
                Severity::Medium
            },
            actor: event.actor.id.clone(),
            patient: None,
            model: None,
            window_start: start,
            window_end: start + chrono::Duration::seconds(p.window_secs as i64),
            score,
            observed: c,
            expected,
            summary: reason,
            evidence: s
                .live
                .iter()
                .flat_map(|live| &live.evidence)
                .map(|(_, id)| id.to_string())
                .collect(),
            evidence_total: u64::from(count),
        });
    }

    /// Ends the actor's current window and starts window `w`. The ended
    /// window's count is folded into the peers' baseline at once, and into
    /// the actor's own once no judged count of theirs can include it: at
    /// once for tumbling windows; for sliding ones, whose count at the
    /// start of a window still holds the end of the previous one, when the
    /// next window ends (a misuse straddling a boundary must not become,
    /// half way through, the habit its second half is judged against; in
    /// the peers' baseline it is one window of many).
    ///
    /// A window in which the actor fired (own baseline, sliding: since
    /// whose start they fired) teaches neither baseline: a finding is not
    /// evidence of what is normal, and misuse learned as habit — a young
    /// baseline's first windows enter unclipped — would hide the same
    /// person's next misuse.
    fn close(
        p: &CountParams,
        began: i64,
        peers: &mut Map<u64, Baseline>,
        s: &mut ActorCount,
        w: i64,
    ) {
        let ended = Pending {
            window: s.window,
            count: s.count,
        };
        let start = |window: i64| window.saturating_mul(p.window_secs as i64);
        // A window seen from its start, and not one that fired, teaches.
        let teaches = |window: i64| window > began && s.fired_at < start(window);
        if teaches(s.window)
            && s.group != 0
            && (peers.len() < MAX_GROUPS || peers.contains_key(&s.group))
        {
            peers.entry(s.group).or_default().learn(
                value(p.model, s.count),
                p.peer_alpha,
                p.threshold,
            );
        }
        let learnable = if p.sliding { s.pending() } else { Some(ended) };
        if let Some(done) = learnable
            && teaches(done.window)
        {
            let x = value(p.model, done.count);
            s.own.learn(x, p.alpha, p.threshold);
            if p.seasonal {
                Arc::make_mut(s.slots.get_or_insert_with(Default::default))
                    [slot_of(start(done.window))]
                .learn(x, p.alpha, p.threshold);
            }
        }
        s.window = w;
        s.count = 0;
        if p.sliding {
            s.set_pending(Some(ended));
        }
        // The distinct keys were the ended window's; its evidence leaves
        // with the next event's slide.
        if let Some(live) = s
            .live
            .as_mut()
            .filter(|live| !live.distinct.is_empty())
            .map(Arc::make_mut)
        {
            live.distinct.clear();
        }
    }
}

/// A window's count as its baselines learn it.
fn value(model: Model, count: u32) -> f64 {
    match model {
        Model::LogNormal => f64::from(count).ln_1p(),
        Model::Normal | Model::PoissonGamma => f64::from(count),
    }
}

impl<K: CountKind> super::Detector for CountDetector<K> {
    fn name(&self) -> &'static str {
        K::NAME
    }

    fn observe(&mut self, event: &Event, ctx: &Context, findings: &mut Vec<Finding>) {
        let m = K::measure(event, ctx);
        if matches!(m, Measure::Skip) {
            return;
        }
        let secs = ctx.time.timestamp();
        let w = secs.div_euclid(self.p.window_secs as i64);
        let began = *self.began.get_or_insert(w);
        // One lookup for a known actor; a new one costs the allocation of
        // its key once.
        if let Some(s) = self.actors.get_mut(&ctx.actor_key) {
            return Self::step(&self.p, began, &mut self.peers, s, m, event, ctx, findings);
        }
        if self.actors.len() >= self.p.max_actors {
            self.evict();
        }
        let s = self.actors.insert(
            ctx.actor_key,
            ActorCount {
                window: w,
                ..ActorCount::default()
            },
        );
        Self::step(&self.p, began, &mut self.peers, s, m, event, ctx, findings);
    }

    fn keys(&self) -> usize {
        self.actors.len()
    }

    fn evictions(&self) -> u64 {
        self.evictions
    }

    fn save(&self) -> Vec<u8> {
        let actors: std::collections::BTreeMap<String, &ActorCount> = self
            .actors
            .iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        let peers: std::collections::BTreeMap<String, &Baseline> =
            self.peers.iter().map(|(k, v)| (k.to_string(), v)).collect();
        StateWriter::new()
            .field("actor_keys", &actors)
            .field("began", &self.began)
            .field("evictions", &self.evictions)
            .field("peers", &peers)
            .finish()
    }

    fn load(&mut self, state: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Saved {
            actor_keys: Option<ActorTable<ActorCount>>,
            actors: Option<std::collections::HashMap<String, ActorCount>>,
            peers: Map<String, Baseline>,
            evictions: u64,
            /// Absent from states saved before it was kept.
            #[serde(default)]
            began: Option<i64>,
        }
        let saved: Saved = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        self.actors = super::memory::actor_state(saved.actor_keys, saved.actors)?;
        self.peers = super::memory::numeric_keys(saved.peers)?;
        self.evictions = saved.evictions;
        self.began = saved.began;
        Ok(())
    }
}

/// A count scored against the warm baselines.
struct Judged {
    /// In the model's unit; the smaller of the two where both are warm.
    score: f64,
    /// The larger usual count (for `min_ratio`).
    level: f64,
    /// The count expected (for the finding).
    expected: f64,
}

/// Scores count `c` against the warm baselines `own` and `peer` (at least
/// one is warm); `history` is the actor's own baseline, warm or not.
fn judge(
    model: Model,
    c: f64,
    own: Option<Baseline>,
    peer: Option<Baseline>,
    history: &Baseline,
) -> Judged {
    let warm = || own.iter().chain(peer.iter());
    match model {
        Model::Normal => Judged {
            score: warm().map(|b| b.score(c)).fold(f64::INFINITY, f64::min),
            level: warm().map(|b| b.mean).fold(0.0, f64::max),
            expected: warm().map(|b| b.mean).fold(0.0, f64::max),
        },
        Model::LogNormal => {
            let x = c.ln_1p();
            let level = warm()
                .map(|b| (b.mean + b.var / 2.0).exp() - 1.0)
                .fold(0.0, f64::max);
            Judged {
                score: warm()
                    .map(|b| (x - b.mean) / log_spread(b))
                    .fold(f64::INFINITY, f64::min),
                level,
                expected: level,
            }
        }
        Model::PoissonGamma => {
            // Gamma(shape, rate) posterior of the actor's rate per window:
            // a Jeffreys start (shape 1/2), the peers' rate worth a few
            // windows, and the actor's own windows (as many as the
            // baseline remembers, its mean times their number).
            let mine = own.unwrap_or(*history);
            let windows = f64::from(mine.n).min(1.0 / 0.05);
            let (mut shape, mut rate) = (0.5, 0.0);
            if let Some(q) = peer {
                shape += PEER_PRIOR_WINDOWS * q.mean;
                rate += PEER_PRIOR_WINDOWS;
            }
            shape += windows * mine.mean;
            rate += windows;
            let tail = negbin_tail(c, shape, rate.max(1e-9));
            Judged {
                score: -tail.max(1e-300).log10(),
                level: warm().map(|b| b.mean).fold(0.0, f64::max),
                expected: shape / rate.max(1e-9),
            }
        }
    }
}

/// The spread of a log-scale baseline, never below the Poisson spread of
/// its usual count on that scale (about `1 / sqrt(count)`).
fn log_spread(b: &Baseline) -> f64 {
    b.var.sqrt().max(1.0 / b.mean.exp().sqrt())
}

/// "6.2 ± 2.1", or on the log scale "6.2 (×/÷ 1.8)".
fn usual(model: Model, b: &Baseline) -> String {
    match model {
        Model::LogNormal => format!("{:.1} (×/÷ {:.1})", b.mean.exp() - 1.0, log_spread(b).exp()),
        _ => format!("{:.1} ± {:.1}", b.mean, b.var.sqrt()),
    }
}

/// `P(X >= c)` for the negative binomial with `shape` and `p = rate /
/// (rate + 1)`: the predictive count of a Poisson whose rate has a
/// Gamma(shape, rate) distribution.
pub fn negbin_tail(c: f64, shape: f64, rate: f64) -> f64 {
    if c <= 0.0 {
        return 1.0;
    }
    let c = c.min(1e6) as u64;
    let ln_p = (rate / (rate + 1.0)).ln();
    let ln_q = (1.0 / (rate + 1.0)).ln();
    let mean = shape / rate;
    // ln pmf(k), by the ratio of successive terms.
    let mut ln_pmf = shape * ln_p;
    if (c as f64) <= mean + 1.0 {
        // The tail is large: one minus the head, which is short.
        let mut head = 0.0;
        for k in 0..c {
            head += ln_pmf.exp();
            ln_pmf += ((shape + k as f64) / (k as f64 + 1.0)).ln() + ln_q;
        }
        return (1.0 - head).clamp(0.0, 1.0);
    }
    for k in 0..c {
        ln_pmf += ((shape + k as f64) / (k as f64 + 1.0)).ln() + ln_q;
    }
    // Past the mean the terms fall; sum them until they no longer count.
    let mut tail = 0.0;
    for k in c..c + 100_000 {
        let term = ln_pmf.exp();
        tail += term;
        if term <= tail * 1e-15 {
            break;
        }
        ln_pmf += ((shape + k as f64) / (k as f64 + 1.0)).ln() + ln_q;
    }
    tail.clamp(0.0, 1.0)
}

/// "10 min", "1 h", "90 s".
pub fn span(secs: u64) -> String {
    if secs.is_multiple_of(3600) {
        format!("{} h", secs / 3600)
    } else if secs.is_multiple_of(60) {
        format!("{} min", secs / 60)
    } else {
        format!("{secs} s")
    }
}

#[cfg(test)]
mod record_tests {
    use super::*;

    #[test]
    fn an_actors_record_is_80_bytes() {
        assert_eq!(std::mem::size_of::<ActorCount>(), 80);
    }

    #[test]
    fn the_pending_window_is_kept_relative_to_the_current_one() {
        let mut s = ActorCount {
            window: 1_000,
            ..ActorCount::default()
        };
        assert!(s.pending().is_none());
        s.set_pending(Some(Pending {
            window: 999,
            count: 7,
        }));
        let p = s.pending().unwrap();
        assert_eq!((p.window, p.count), (999, 7));
        // Far back still counts as long as it fits.
        s.set_pending(Some(Pending {
            window: 1_000 - i64::from(u32::MAX),
            count: 1,
        }));
        assert_eq!(s.pending().unwrap().window, 1_000 - i64::from(u32::MAX));
        // Not before the current window, or further back: none.
        for window in [1_000, 1_001, 999 - i64::from(u32::MAX), i64::MIN] {
            s.set_pending(Some(Pending { window, count: 3 }));
            assert!(s.pending().is_none(), "{window}");
        }
        // A snapshot's absolute window comes back as it was saved.
        s.set_pending(Some(Pending {
            window: 990,
            count: 4,
        }));
        let text = serde_json::to_string(&s).unwrap();
        assert!(
            text.contains(r#""pending":{"window":990,"count":4}"#),
            "{text}"
        );
        let back: ActorCount = serde_json::from_str(&text).unwrap();
        let p = back.pending().unwrap();
        assert_eq!((p.window, p.count, back.window), (990, 4, 1_000));
    }
}
