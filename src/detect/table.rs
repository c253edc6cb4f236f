//! Per-actor records of one detector, held densely.
//!
//! A hash map keeps its entries in its own slots, and runs between 44 %
//! and 87 % full: with records of 80–100 bytes, a million actors paid for
//! about half as many again in empty slots. Here the map holds only an
//! actor's key and a 4-byte slot number, and the records sit in chunks of
//! [`CHUNK`] that fill completely (a record left by an evicted actor is
//! reused by the next new one), so the slack is a map of 16-byte entries.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

use super::memory::Map;

/// Records per chunk: chunks are allocated whole, so a table has at most
/// one partly filled chunk.
const CHUNK: usize = 4096;

/// Records a table can hold (slot numbers are 32-bit): the largest
/// `max_actors` a detector that keeps its records here accepts.
pub const MAX_RECORDS: usize = u32::MAX as usize;

/// Records keyed by actor key.
#[derive(Debug, Clone)]
pub struct ActorTable<V> {
    index: Map<u64, u32>,
    chunks: Vec<Vec<V>>,
    /// Slots of removed records (reset to the default), reused first.
    free: Vec<u32>,
}

impl<V> Default for ActorTable<V> {
    fn default() -> Self {
        ActorTable {
            index: Map::default(),
            chunks: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<V: Default> ActorTable<V> {
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn contains_key(&self, key: &u64) -> bool {
        self.index.contains_key(key)
    }

    #[cfg(test)]
    pub fn get(&self, key: &u64) -> Option<&V> {
        self.index.get(key).map(|&slot| self.slot(slot))
    }

    pub fn get_mut(&mut self, key: &u64) -> Option<&mut V> {
        let slot = *self.index.get(key)?;
        Some(self.slot_mut(slot))
    }

    /// Sets the record of `key` (replacing any) and returns it.
    pub fn insert(&mut self, key: u64, value: V) -> &mut V {
        if let Some(&slot) = self.index.get(&key) {
            let record = self.slot_mut(slot);
            *record = value;
            return record;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                *self.slot_mut(slot) = value;
                slot
            }
            None => {
                if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
                    self.chunks.push(Vec::with_capacity(CHUNK));
                }
                let n = self.chunks.len() - 1;
                let chunk = &mut self.chunks[n];
                chunk.push(value);
                // An invariant, not input: detectors evict at their
                // `max_actors`, which validation bounds by `MAX_RECORDS`.
                u32::try_from(n * CHUNK + chunk.len() - 1)
                    .expect("a table holds at most MAX_RECORDS records")
            }
        };
        self.index.insert(key, slot);
        self.slot_mut(slot)
    }

    /// Removes the record of `key`, returning it.
    pub fn remove(&mut self, key: &u64) -> Option<V> {
        let slot = self.index.remove(key)?;
        self.free.push(slot);
        Some(std::mem::take(self.slot_mut(slot)))
    }

    /// Every (key, record), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &V)> {
        self.index.iter().map(|(k, &slot)| (k, self.slot(slot)))
    }

    /// Drops the least recently active tenth of the records (at least
    /// one), ties broken by key so actors active in the same window are
    /// not all dropped at once; returns how many were dropped.
    pub fn evict_stalest(&mut self, last_active: impl Fn(&V) -> i64) -> u64 {
        let mut order: Vec<(i64, u64)> = self.iter().map(|(&k, v)| (last_active(v), k)).collect();
        if order.is_empty() {
            return 0;
        }
        let k = (order.len() / 10).max(1);
        order.select_nth_unstable(k - 1);
        for &(_, key) in &order[..k] {
            self.remove(&key);
        }
        k as u64
    }

    fn slot(&self, slot: u32) -> &V {
        let slot = slot as usize;
        &self.chunks[slot / CHUNK][slot % CHUNK]
    }

    fn slot_mut(&mut self, slot: u32) -> &mut V {
        let slot = slot as usize;
        &mut self.chunks[slot / CHUNK][slot % CHUNK]
    }
}

impl<V: Default> FromIterator<(u64, V)> for ActorTable<V> {
    fn from_iter<I: IntoIterator<Item = (u64, V)>>(iter: I) -> Self {
        let mut table = ActorTable::default();
        for (k, v) in iter {
            table.insert(k, v);
        }
        table
    }
}

/// Read from a JSON object keyed by the actor keys (as a map of them
/// would be), record by record into the table.
impl<'de, V: Deserialize<'de> + Default> Deserialize<'de> for ActorTable<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Records<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de> + Default> Visitor<'de> for Records<V> {
            type Value = ActorTable<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("records keyed by actor key")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut table = ActorTable::default();
                while let Some((k, v)) = map.next_entry::<u64, V>()? {
                    table.insert(k, v);
                }
                Ok(table)
            }
        }
        d.deserialize_map(Records(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_found_replaced_removed_and_their_slots_reused() {
        let mut t: ActorTable<u64> = ActorTable::default();
        for k in 0..10_000u64 {
            t.insert(k * 7, k);
        }
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.chunks.len(), 3, "4,096 records a chunk");
        assert_eq!(t.get(&(42 * 7)), Some(&42));
        *t.get_mut(&(42 * 7)).unwrap() += 1;
        assert_eq!(t.get(&(42 * 7)), Some(&43));
        assert_eq!(*t.insert(42 * 7, 5), 5);
        assert_eq!(t.len(), 10_000);
        assert_eq!(t.remove(&(3 * 7)), Some(3));
        assert_eq!(t.remove(&(3 * 7)), None);
        assert!(!t.contains_key(&(3 * 7)));
        // The freed slot takes the next new record: no chunk is added.
        t.insert(1, 99);
        assert_eq!(t.chunks.iter().map(Vec::len).sum::<usize>(), 10_000);
        assert_eq!(t.get(&1), Some(&99));
        let mut all: Vec<(u64, u64)> = t.iter().map(|(&k, &v)| (k, v)).collect();
        all.sort_unstable();
        assert_eq!(all.len(), 10_000);
        assert_eq!(all[0], (0, 0));
        assert_eq!(all[1], (1, 99));
    }

    #[test]
    fn eviction_drops_the_stalest_tenth_ties_by_key() {
        let mut t: ActorTable<i64> = (0..100u64).map(|k| (k, (k / 20) as i64)).collect();
        // Actors 0..20 were last active at 0: the ten lowest keys go.
        assert_eq!(t.evict_stalest(|&v| v), 10);
        assert_eq!(t.len(), 90);
        assert!((0..10).all(|k| !t.contains_key(&k)));
        assert!((10..100).all(|k| t.contains_key(&k)));
        let mut one: ActorTable<i64> = [(5, 1)].into_iter().collect();
        assert_eq!(one.evict_stalest(|&v| v), 1);
        assert_eq!(one.len(), 0);
        assert_eq!(ActorTable::<i64>::default().evict_stalest(|&v| v), 0);
    }

    #[test]
    fn reads_the_object_a_map_of_actor_keys_saves_to() {
        let saved: std::collections::BTreeMap<u64, Vec<u8>> =
            [(3, vec![1]), (u64::MAX, vec![2, 3])].into_iter().collect();
        let text = serde_json::to_string(&saved).unwrap();
        assert_eq!(text, r#"{"3":[1],"18446744073709551615":[2,3]}"#);
        let t: ActorTable<Vec<u8>> = serde_json::from_str(&text).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get(&u64::MAX), Some(&vec![2, 3]));
        assert!(serde_json::from_str::<ActorTable<Vec<u8>>>(r#"{"x":[1]}"#).is_err());
    }
}
