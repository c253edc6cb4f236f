//! Event ids seen recently in one chain, to drop the copies producers send
//! when they retry (same event `id`, new offset).
//!
//! Kafka coordinates already rule out storing one message twice; this
//! catches one *event* sent twice. An event is a copy when its id is among
//! the ids of the chain's last `max` stored events (by offset) whose event
//! time is within `window` of the newest event time the chain has stored.
//! The definition depends only on what the chain holds, so a window rebuilt
//! from the ledger after a restart decides exactly as the live one did;
//! memory is bounded by `max` whatever the traffic. Ids are held as the
//! first 128 bits of their BLAKE3 hash.
//! Producers key messages by actor, so a retry lands in the same partition
//! as the original: the window is per chain and moves with it (rebuilt
//! from the ledger when a process opens the chain).

use std::collections::{HashMap, VecDeque};

pub(crate) struct IdWindow {
    window_us: i64,
    max: usize,
    /// id hash → (offset, event time) of the stored copy.
    seen: HashMap<u128, (i64, i64)>,
    /// (id hash, offset) of the held events in offset order.
    order: VecDeque<(u128, i64)>,
    newest: i64,
}

fn key(id: &str) -> u128 {
    let h = blake3::hash(id.as_bytes());
    u128::from_le_bytes(h.as_bytes()[..16].try_into().unwrap_or_default())
}

impl IdWindow {
    /// `window_us` 0 or `max` 0 turns deduplication off.
    pub fn new(window_us: i64, max: usize) -> Self {
        IdWindow {
            window_us,
            max,
            seen: HashMap::new(),
            order: VecDeque::new(),
            newest: i64::MIN,
        }
    }

    fn enabled(&self) -> bool {
        self.window_us > 0 && self.max > 0
    }

    /// Raises the newest event time the chain holds (a rebuilt window
    /// starts from the chain's newest time, which may be older than the
    /// events it reads back).
    pub fn saw_time(&mut self, time_us: i64) {
        self.newest = self.newest.max(time_us);
    }

    /// Records the event `id` stored at `offset`; returns the offset of the
    /// stored copy instead when the window holds the id (and records
    /// nothing).
    pub fn insert(&mut self, id: &str, time_us: i64, offset: i64) -> Option<i64> {
        if !self.enabled() {
            return None;
        }
        let k = key(id);
        let horizon = self.newest.max(time_us).saturating_sub(self.window_us);
        if let Some(&(first, first_time)) = self.seen.get(&k)
            && first_time >= horizon
        {
            return Some(first);
        }
        self.seen.insert(k, (offset, time_us));
        self.order.push_back((k, offset));
        self.newest = self.newest.max(time_us);
        while self.order.len() > self.max {
            self.forget_oldest();
        }
        // Entries behind the horizon decide nothing; drop them from the
        // front while there are some (later ones wait until they get there).
        while let Some(&(k, _)) = self.order.front() {
            match self.seen.get(&k) {
                Some(&(_, t)) if t >= horizon => break,
                _ => self.forget_oldest(),
            }
        }
        None
    }

    fn forget_oldest(&mut self) {
        if let Some((k, offset)) = self.order.pop_front()
            && self.seen.get(&k).is_some_and(|&(o, _)| o == offset)
        {
            self.seen.remove(&k);
        }
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    #[test]
    fn a_retry_within_the_window_is_caught_with_the_first_offset() {
        let mut w = IdWindow::new(60 * S, 100);
        assert_eq!(w.insert("a", 0, 10), None);
        assert_eq!(w.insert("b", 5 * S, 11), None);
        assert_eq!(w.insert("a", 6 * S, 12), Some(10));
        assert_eq!(w.len(), 2);
    }

    #[test]
    fn ids_older_than_the_window_are_forgotten() {
        let mut w = IdWindow::new(60 * S, 100);
        w.insert("a", 0, 1);
        w.insert("b", 61 * S, 2);
        // "a" fell out of the window when "b" arrived.
        assert_eq!(w.insert("a", 62 * S, 3), None);
        assert_eq!(w.insert("b", 62 * S, 4), Some(2));
    }

    #[test]
    fn the_cap_drops_the_oldest_arrivals() {
        let mut w = IdWindow::new(3600 * S, 3);
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            assert_eq!(w.insert(id, i as i64, i as i64), None);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.insert("a", 5, 9), None, "a was evicted by the cap");
        assert_eq!(w.insert("d", 5, 9), Some(3));
    }

    #[test]
    fn a_late_event_behind_a_newer_one_decides_like_a_rebuilt_window() {
        // Live: "x" at t=1000 s, then a late batch at t=100 s, then t=1001 s.
        let mut live = IdWindow::new(600 * S, 100);
        live.insert("x", 1000 * S, 1);
        live.insert("late", 100 * S, 2);
        live.insert("y", 1001 * S, 3);
        // Rebuilt from the same stored events after a restart.
        let mut rebuilt = IdWindow::new(600 * S, 100);
        rebuilt.saw_time(1001 * S);
        for (id, t, o) in [("x", 1000, 1), ("late", 100, 2), ("y", 1001, 3)] {
            rebuilt.insert(id, t * S, o);
        }
        for w in [&mut live, &mut rebuilt] {
            assert_eq!(w.insert("x", 1002 * S, 4), Some(1), "x is a retry");
            assert_eq!(w.insert("late", 1002 * S, 5), None, "older than the window");
        }
    }

    #[test]
    fn an_id_stored_again_after_it_expired_is_held_once() {
        let mut w = IdWindow::new(10 * S, 100);
        w.insert("a", 0, 1);
        assert_eq!(w.insert("a", 20 * S, 2), None, "expired: stored again");
        assert_eq!(w.insert("a", 21 * S, 3), Some(2));
    }

    #[test]
    fn a_zero_window_turns_it_off() {
        let mut w = IdWindow::new(0, 100);
        w.insert("a", 0, 1);
        assert_eq!(w.insert("a", 0, 2), None);
        assert_eq!(w.len(), 0);
    }
}
