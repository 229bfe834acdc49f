//! A map with a fixed number of entries: past it, the oldest inserted entry goes.
//!
//! The caches of process identity (Python package versions, app ids) are keyed by
//! things a busy host renews all day (pids, files, directories); this bound is what
//! keeps them from growing with the host's history. First in, first out: an entry
//! that is still used is simply read again after its eviction, at the cost of one
//! lookup.

use std::collections::VecDeque;
use std::hash::Hash;

use rustc_hash::FxHashMap;

pub struct BoundedMap<K, V> {
    map: FxHashMap<K, V>,
    order: VecDeque<K>,
    max: usize,
    evictions: u64,
}

impl<K: Hash + Eq + Clone, V> BoundedMap<K, V> {
    /// At most `max` entries (at least one).
    pub fn new(max: usize) -> Self {
        BoundedMap {
            map: FxHashMap::default(),
            order: VecDeque::new(),
            max: max.max(1),
            evictions: 0,
        }
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    /// Inserts (or replaces) `k`; evicts the oldest entry when full.
    pub fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_some() {
            return;
        }
        self.order.push_back(k);
        while self.map.len() > self.max {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if self.map.remove(&old).is_some() {
                self.evictions += 1;
            }
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Entries evicted since the map was made.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.map.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_entry_goes_at_the_bound() {
        let mut m = BoundedMap::new(2);
        m.insert(1, "a");
        m.insert(2, "b");
        m.insert(1, "a2");
        assert_eq!((m.len(), m.evictions()), (2, 0));
        m.insert(3, "c");
        assert_eq!((m.len(), m.evictions()), (2, 1));
        assert!(m.get(&1).is_none());
        assert_eq!(m.get(&2), Some(&"b"));
        assert_eq!(m.get(&3), Some(&"c"));
    }
}
