//! Bounded building blocks of detector state: a robust running baseline,
//! a set of recent keys that forgets its oldest half, and a stable hash.
//!
//! Both structures have a fixed worst-case size and save to JSON exactly
//! (floats as IEEE bits, sets as sorted numbers), so a restored detector
//! decides bit for bit as the saved one would have.

/// Hash maps and sets of detector state (foldhash: fast, seeded per
/// process; iteration order is never relied on — saved state is sorted).
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

use crate::ledger::StateWriter;
use serde::{Deserialize, Serialize};

/// 64-bit FNV-1a over the parts, each followed by a 0xff separator (which
/// never occurs in UTF-8), so `("ab","c")` and `("a","bc")` differ. Stable
/// across builds and platforms, unlike `std`'s hasher, because its values
/// are saved in snapshots.
pub fn key_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in part.as_bytes().iter().chain(&[0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The key of an actor's state in the detectors: a stable 64-bit hash of
/// the id, worked out once per event, so each detector's lookup hashes and
/// compares eight bytes rather than the id. Two ids of a million collide
/// with a chance of about 3 in 100 million; actor ids come from the
/// hospital's identity system, not from those being watched.
pub fn actor_key(id: &str) -> u64 {
    key_hash(&["a", id])
}

/// For saved state that leaves out members at their defaults: a number
/// at zero, and a time that has not come (`i64::MIN`).
pub fn is_zero<T: Default + PartialEq>(x: &T) -> bool {
    *x == T::default()
}

pub fn never() -> i64 {
    i64::MIN
}

pub fn is_never(t: &i64) -> bool {
    *t == i64::MIN
}

/// Saved per-actor state under its keys (`actor_keys`), or from a snapshot
/// of an earlier version keyed by actor id (`actors`), rekeyed.
pub fn actor_state<V, M: FromIterator<(u64, V)>>(
    keyed: Option<M>,
    by_id: Option<std::collections::HashMap<String, V>>,
) -> Result<M, String> {
    match (keyed, by_id) {
        (Some(keyed), _) => Ok(keyed),
        (None, Some(by_id)) => Ok(by_id
            .into_iter()
            .map(|(id, v)| (actor_key(&id), v))
            .collect()),
        (None, None) => Err("no actor state".into()),
    }
}

/// Drops the least recently active tenth of `map` (at least one entry),
/// ties broken by key so actors active in the same window are not all
/// dropped at once; returns how many were dropped.
pub fn evict_stalest<K, V, S>(
    map: &mut std::collections::HashMap<K, V, S>,
    last_active: impl Fn(&V) -> i64,
) -> u64
where
    K: std::hash::Hash + Eq + Ord + Clone,
    S: std::hash::BuildHasher,
{
    let mut order: Vec<(i64, &K)> = map.iter().map(|(k, v)| (last_active(v), k)).collect();
    if order.is_empty() {
        return 0;
    }
    let k = (order.len() / 10).max(1);
    order.select_nth_unstable(k - 1);
    let victims: Vec<K> = order[..k].iter().map(|(_, id)| (*id).clone()).collect();
    for id in &victims {
        map.remove(id);
    }
    victims.len() as u64
}

/// Parses the keys of a saved map of numeric keys (JSON object keys are
/// strings).
pub fn numeric_keys<V, M: FromIterator<(u64, V)>>(
    saved: impl IntoIterator<Item = (String, V)>,
) -> Result<M, String> {
    saved
        .into_iter()
        .map(|(k, v)| {
            k.parse()
                .map(|k| (k, v))
                .map_err(|_| format!("bad key {k:?}"))
        })
        .collect()
}

/// Combines two key hashes into one (a splitmix64 finalizer over `a` and
/// `b` rotated): cheaper than hashing the joined strings again, and stable
/// like [`key_hash`].
pub fn mix(a: u64, b: u64) -> u64 {
    let mut x = a ^ b.rotate_left(32).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The hashes of an event's keys, worked out once per event.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keys {
    pub actor: u64,
    pub patient: Option<u64>,
    pub dept: Option<u64>,
    /// Role and department together: the peer group.
    pub group: Option<u64>,
}

/// A robust running mean and variance of a per-window count.
///
/// The first samples are averaged with weight `1/n` (so the level is right
/// after a few windows), later ones with the EWMA weight `alpha`. Every
/// sample after the first is clipped at `mean + clip * spread` before it
/// enters, so one burst cannot inflate the baseline enough to hide the
/// next. The spread never falls below the Poisson spread of the mean (and
/// never below one), so a steady, low-count actor is not flagged for a
/// small wobble.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Samples learned (saturating).
    pub n: u32,
    #[serde(with = "super::exact_f64")]
    pub mean: f64,
    #[serde(with = "super::exact_f64")]
    pub var: f64,
}

impl Baseline {
    pub fn spread(&self) -> f64 {
        self.var.max(self.mean).max(1.0).sqrt()
    }

    /// How many spreads `x` lies above the mean.
    pub fn score(&self, x: f64) -> f64 {
        (x - self.mean) / self.spread()
    }

    pub fn learn(&mut self, x: f64, alpha: f64, clip: f64) {
        if self.n == 0 {
            self.n = 1;
            self.mean = x;
            self.var = 0.0;
            return;
        }
        let x = x.min(self.mean + clip * self.spread());
        let w = alpha.max(1.0 / f64::from(self.n.saturating_add(1)));
        let diff = x - self.mean;
        let incr = w * diff;
        self.mean += incr;
        self.var = (1.0 - w) * (self.var + diff * incr);
        self.n = self.n.saturating_add(1);
    }
}

/// Recently used keys with a value each, at most `cap` of them: new keys
/// go into the young half; when it is full it becomes the old half and the
/// previous old half is forgotten. A key found in the old half moves back
/// to the young one, so keys in use stay and the least recently used are
/// forgotten first. [`RecentSet`] and [`RecentStamps`] are its two uses.
#[derive(Debug, Clone, Default, PartialEq)]
struct Halves<V> {
    young: Map<u64, V>,
    old: Map<u64, V>,
    cap: usize,
    forgotten: u64,
}

impl<V: Copy> Halves<V> {
    fn new(cap: usize) -> Self {
        Halves {
            young: Map::default(),
            old: Map::default(),
            cap: cap.max(2),
            forgotten: 0,
        }
    }

    fn get(&self, key: u64) -> Option<V> {
        self.young.get(&key).or_else(|| self.old.get(&key)).copied()
    }

    /// Sets `key` to `value(what it held)`, into the young half; returns
    /// what it held.
    fn upsert(&mut self, key: u64, value: impl FnOnce(Option<V>) -> V) -> Option<V> {
        if let Some(v) = self.young.get_mut(&key) {
            let before = *v;
            *v = value(Some(before));
            return Some(before);
        }
        let held = self.old.remove(&key);
        if self.young.len() >= self.cap / 2 {
            self.forgotten += self.old.len() as u64;
            self.old = std::mem::take(&mut self.young);
        }
        self.young.insert(key, value(held));
        held
    }

    fn len(&self) -> usize {
        self.young.len() + self.old.len()
    }

    /// Each half's entries, sorted by key (saved state is sorted).
    fn sorted(&self) -> [Vec<(u64, V)>; 2] {
        [&self.old, &self.young].map(|m| {
            let mut v: Vec<(u64, V)> = m.iter().map(|(k, x)| (*k, *x)).collect();
            v.sort_unstable_by_key(|&(k, _)| k);
            v
        })
    }
}

/// Recently seen keys, at most `cap` of them, the least recently used
/// forgotten first (see [`Halves`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentSet(Halves<()>);

impl RecentSet {
    pub fn new(cap: usize) -> Self {
        RecentSet(Halves::new(cap))
    }

    pub fn contains(&self, key: u64) -> bool {
        self.0.get(key).is_some()
    }

    /// Adds `key` (or refreshes it); true if it was not held.
    pub fn insert(&mut self, key: u64) -> bool {
        self.0.upsert(key, |_| ()).is_none()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Keys dropped so far to stay within the cap.
    pub fn forgotten(&self) -> u64 {
        self.0.forgotten
    }

    pub fn save(&self) -> Vec<u8> {
        let [old, young] = self
            .0
            .sorted()
            .map(|v| v.into_iter().map(|(k, ())| k).collect::<Vec<u64>>());
        StateWriter::new()
            .field("forgotten", &self.0.forgotten)
            .field("old", &old)
            .field("young", &young)
            .finish()
    }

    pub fn load(&mut self, state: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Saved {
            young: Vec<u64>,
            old: Vec<u64>,
            forgotten: u64,
        }
        let s: Saved = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        self.0.young = s.young.into_iter().map(|k| (k, ())).collect();
        self.0.old = s.old.into_iter().map(|k| (k, ())).collect();
        self.0.forgotten = s.forgotten;
        Ok(())
    }
}

/// Recently seen keys with the time each was last seen (event-time
/// seconds), bounded like [`RecentSet`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentStamps(Halves<i64>);

/// The time of a key saved without one (by an earlier version): as if seen
/// at every moment, so nothing learned before an upgrade lapses because of it.
pub const ALWAYS: i64 = i64::MAX;

impl RecentStamps {
    pub fn new(cap: usize) -> Self {
        RecentStamps(Halves::new(cap))
    }

    /// When `key` was last seen, if it is held.
    pub fn get(&self, key: u64) -> Option<i64> {
        self.0.get(key)
    }

    /// Whether `key` was seen at `now - within` or later.
    pub fn seen_since(&self, key: u64, now: i64, within: i64) -> bool {
        self.get(key)
            .is_some_and(|t| t >= now.saturating_sub(within))
    }

    /// Records `key` as seen at `secs` (a later time of an earlier visit is
    /// kept; [`ALWAYS`] gives way to the first real time); returns when it
    /// was seen before, if it was held.
    pub fn insert(&mut self, key: u64, secs: i64) -> Option<i64> {
        self.0.upsert(key, |held| match held {
            Some(t) if t != ALWAYS => t.max(secs),
            _ => secs,
        })
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Keys dropped so far to stay within the cap.
    pub fn forgotten(&self) -> u64 {
        self.0.forgotten
    }

    /// `{"forgotten":N,"old":[[key,secs],…],"young":[…]}`, sorted by key.
    pub fn save(&self) -> Vec<u8> {
        let [old, young] = self.0.sorted();
        StateWriter::new()
            .field("forgotten", &self.0.forgotten)
            .field("old", &old)
            .field("young", &young)
            .finish()
    }

    /// Reads what [`RecentStamps::save`] wrote, or a [`RecentSet`]'s keys
    /// (an earlier version's), which get the time [`ALWAYS`].
    pub fn load(&mut self, state: &[u8]) -> Result<(), String> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Entry {
            Stamped(u64, i64),
            Key(u64),
        }
        #[derive(Deserialize)]
        struct Saved {
            young: Vec<Entry>,
            old: Vec<Entry>,
            forgotten: u64,
        }
        let s: Saved = serde_json::from_slice(state).map_err(|e| e.to_string())?;
        let map = |v: Vec<Entry>| {
            v.into_iter()
                .map(|e| match e {
                    Entry::Stamped(k, t) => (k, t),
                    Entry::Key(k) => (k, ALWAYS),
                })
                .collect()
        };
        self.0.young = map(s.young);
        self.0.old = map(s.old);
        self.0.forgotten = s.forgotten;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_stamps_keep_the_latest_time_and_read_old_saves() {
        let mut s = RecentStamps::new(10);
        assert_eq!(s.insert(1, 100), None);
        assert_eq!(s.insert(1, 50), Some(100));
        assert_eq!(s.get(1), Some(100), "an earlier time does not move it back");
        assert_eq!(s.insert(1, 200), Some(100));
        assert!(s.seen_since(1, 250, 50));
        assert!(!s.seen_since(1, 251, 50));
        for k in 10..30 {
            s.insert(k, 300);
        }
        assert!(s.len() <= 10);
        assert!(s.get(1).is_none(), "the least recently used is forgotten");
        let mut r = RecentStamps::new(10);
        r.load(&s.save()).unwrap();
        assert_eq!(r, s);
        // A set saved by an earlier version: its keys never lapse.
        let mut old = RecentSet::new(10);
        old.insert(7);
        let mut r = RecentStamps::new(10);
        r.load(&old.save()).unwrap();
        assert_eq!(r.get(7), Some(ALWAYS));
        assert!(r.seen_since(7, 1 << 40, 1));
        // Learned again, it gets a time, and lapses from then on.
        assert_eq!(r.insert(7, 1_000), Some(ALWAYS));
        assert!(!r.seen_since(7, 2_000, 500));
        // A key that waits in the old half keeps its time when it moves back.
        let mut s = RecentStamps::new(4);
        s.insert(1, 10);
        s.insert(2, 20);
        s.insert(3, 30); // 1 and 2 are the old half now
        assert_eq!(s.insert(1, 5), Some(10));
        assert_eq!(s.get(1), Some(10));
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn key_hash_separates_parts() {
        assert_ne!(key_hash(&["ab", "c"]), key_hash(&["a", "bc"]));
        assert_eq!(key_hash(&["a", "b"]), key_hash(&["a", "b"]));
        // Pinned: the value is saved in snapshots and must never change.
        assert_eq!(key_hash(&[""]), 0xaf64_724c_8602_eb6e);
    }

    #[test]
    fn baseline_learns_the_level_and_resists_bursts() {
        let mut b = Baseline::default();
        for i in 0..50 {
            b.learn(f64::from(10 + i % 3), 0.05, 6.0);
        }
        assert!((b.mean - 11.0).abs() < 1.0, "{b:?}");
        let before = b.mean;
        b.learn(10_000.0, 0.05, 6.0);
        assert!(b.mean < before + 2.0, "a burst is clipped: {b:?}");
        assert!(b.score(60.0) > 6.0);
        assert!(b.score(14.0) < 3.0);
    }

    #[test]
    fn recent_set_is_bounded_and_keeps_keys_in_use() {
        let mut s = RecentSet::new(10);
        s.insert(1);
        for k in 100..104 {
            s.insert(k);
        }
        // 1 is in the old half now; touching it brings it back.
        for k in 200..204 {
            s.insert(k);
            s.insert(1);
        }
        for k in 300..320 {
            s.insert(k);
            s.insert(1);
        }
        assert!(s.contains(1));
        assert!(!s.contains(100));
        assert!(s.len() <= 10);
        assert!(s.forgotten() > 0);
        let mut r = RecentSet::new(10);
        r.load(&s.save()).unwrap();
        assert_eq!(r, s);
    }
}
