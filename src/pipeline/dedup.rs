//! Event ids seen recently in one chain, to drop the copies producers send
//! when they retry (same event `id`, new offset).
//!
//! Kafka coordinates already rule out storing one message twice; this
//! catches one *event* sent twice. An id is remembered while its event time
//! is within `window` of the newest event time seen in the chain, and at
//! most `max` ids are held (the oldest arrivals go first), so memory is
//! bounded whatever the traffic. Ids are held as the first 128 bits of their BLAKE3 hash.
//! Producers key messages by actor, so a retry lands in the same partition
//! as the original: the window is per chain and moves with it (rebuilt
//! from the ledger when a process opens the chain).

use std::collections::{HashMap, VecDeque};

pub(crate) struct IdWindow {
    window_us: i64,
    max: usize,
    /// id hash → offset of the first copy.
    seen: HashMap<u128, i64>,
    /// (event time, id hash) in arrival order.
    order: VecDeque<(i64, u128)>,
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

    /// Records `id`; returns the offset of its first copy when the window
    /// already holds it.
    pub fn insert(&mut self, id: &str, time_us: i64, offset: i64) -> Option<i64> {
        if !self.enabled() {
            return None;
        }
        let k = key(id);
        if let Some(&first) = self.seen.get(&k) {
            return Some(first);
        }
        self.seen.insert(k, offset);
        self.order.push_back((time_us, k));
        self.newest = self.newest.max(time_us);
        let horizon = self.newest.saturating_sub(self.window_us);
        while let Some(&(t, old)) = self.order.front() {
            if self.order.len() <= self.max && t >= horizon {
                break;
            }
            self.order.pop_front();
            self.seen.remove(&old);
        }
        None
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
    fn a_zero_window_turns_it_off() {
        let mut w = IdWindow::new(0, 100);
        w.insert("a", 0, 1);
        assert_eq!(w.insert("a", 0, 2), None);
        assert_eq!(w.len(), 0);
    }
}
