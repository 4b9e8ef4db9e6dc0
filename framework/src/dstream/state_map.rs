//! [`StateMap`]: the per-partition state of `map_with_state`, persistent so that the state
//! of every remembered batch stays intact for recomputation while the next batch's state
//! shares almost all of it (Spark: `OpenHashMapBasedStateMap`'s delta chain).
//!
//! The map is a stack of levels, oldest (largest) at the bottom. A batch adds its updates
//! as a new top level; while the top level is at least half the size of the one below,
//! the two are merged (a size-tiered merge, as in log-structured stores). So a batch copies
//! an amortized O(updates · log n) entries, not the whole state, and a lookup probes
//! O(log n) levels.

use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::data::{Data, Key};

/// One key's entry in a level: its state and the batch time (ms) it was last updated, or a
/// tombstone hiding the key's entries in lower levels.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Slot<S> {
    Live(S, i64),
    Removed,
}

pub(crate) type Level<K, S> = FxHashMap<K, Slot<S>>;

/// A persistent map from key to `(state, last update time)`.
#[derive(Debug)]
pub(crate) struct StateMap<K, S> {
    levels: Vec<Arc<Level<K, S>>>,
}

impl<K, S> Clone for StateMap<K, S> {
    fn clone(&self) -> Self {
        StateMap {
            levels: self.levels.clone(),
        }
    }
}

impl<K: Key, S: Data> StateMap<K, S> {
    pub(crate) fn new() -> Self {
        StateMap { levels: Vec::new() }
    }

    /// The key's slot in the newest level that has one.
    pub(crate) fn get(&self, key: &K) -> Option<&Slot<S>> {
        self.levels.iter().rev().find_map(|level| level.get(key))
    }

    /// This map with `delta` applied on top; `self` is unchanged.
    pub(crate) fn with_delta(&self, delta: Level<K, S>) -> StateMap<K, S> {
        let mut levels = self.levels.clone();
        let mut top = delta;
        while let Some(below) = levels.last() {
            if top.len() * 2 < below.len() {
                break;
            }
            let below = levels.pop().expect("checked above");
            let bottom = levels.is_empty();
            let mut merged: Level<K, S> = (*below).clone();
            for (k, slot) in top {
                // At the bottom nothing is left to hide: tombstones can go.
                if bottom && matches!(slot, Slot::Removed) {
                    merged.remove(&k);
                } else {
                    merged.insert(k, slot);
                }
            }
            top = merged;
        }
        if !top.is_empty() || levels.is_empty() {
            levels.push(Arc::new(top));
        }
        StateMap { levels }
    }

    /// Each key's newest slot (a scan of every level).
    fn newest(&self) -> FxHashMap<&K, &Slot<S>> {
        let mut all: FxHashMap<&K, &Slot<S>> = FxHashMap::default();
        for level in &self.levels {
            all.extend(level.iter());
        }
        all
    }

    /// Every live entry `(key, state, updated_ms)`, in no particular order (a full scan).
    pub(crate) fn entries(&self) -> Vec<(K, S, i64)> {
        self.newest()
            .into_iter()
            .filter_map(|(k, slot)| match slot {
                Slot::Live(s, t) => Some((k.clone(), s.clone(), *t)),
                Slot::Removed => None,
            })
            .collect()
    }

    /// How many live keys (a scan of every level).
    pub(crate) fn len(&self) -> usize {
        self.newest()
            .values()
            .filter(|s| matches!(s, Slot::Live(..)))
            .count()
    }

    /// How many levels (for tests).
    #[cfg(test)]
    pub(crate) fn depth(&self) -> usize {
        self.levels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(entries: &[(u32, Option<u32>)], t: i64) -> Level<u32, u32> {
        entries
            .iter()
            .map(|&(k, v)| (k, v.map_or(Slot::Removed, |v| Slot::Live(v, t))))
            .collect()
    }

    #[test]
    fn newer_levels_win_and_old_versions_stay_intact() {
        let base = StateMap::new().with_delta(delta(&[(1, Some(10)), (2, Some(20))], 1));
        let next = base.with_delta(delta(&[(1, Some(11)), (2, None), (3, Some(30))], 2));
        assert_eq!(next.get(&1), Some(&Slot::Live(11, 2)));
        assert!(
            !matches!(next.get(&2), Some(Slot::Live(..))),
            "2 was removed"
        );
        assert_eq!(
            base.get(&1),
            Some(&Slot::Live(10, 1)),
            "the previous batch's state is unchanged"
        );
        let mut entries = next.entries();
        entries.sort();
        assert_eq!(entries, vec![(1, 11, 2), (3, 30, 2)]);
    }

    #[test]
    fn small_updates_leave_a_large_base_alone() {
        let big: Vec<(u32, Option<u32>)> = (0..10_000).map(|k| (k, Some(k))).collect();
        let mut map = StateMap::new().with_delta(delta(&big, 0));
        let base = map.levels[0].clone();
        for t in 1..100 {
            map = map.with_delta(delta(&[(7, Some(t as u32)), (8, Some(1))], t));
            assert!(
                Arc::ptr_eq(&map.levels[0], &base),
                "batch {t} copied the base"
            );
        }
        assert!(map.depth() <= 3, "depth {}", map.depth());
        assert_eq!(map.get(&7), Some(&Slot::Live(99, 99)));
        assert_eq!(map.get(&9_999), Some(&Slot::Live(9_999, 0)));
    }
}
