//! Where each shuffle's map outputs live (Spark: `MapOutputTracker`), so the scheduler knows
//! which map stages can be skipped and what an executor's loss takes away.

use std::collections::HashMap;

use parking_lot::Mutex;

use crate::block::ExecutorId;
use crate::rdd::ShuffleId;

/// For each shuffle, the executor holding each map partition's buckets.
#[derive(Debug, Default)]
pub struct MapOutputTracker {
    outputs: Mutex<HashMap<ShuffleId, Vec<Option<ExecutorId>>>>,
}

impl MapOutputTracker {
    /// An empty tracker.
    pub fn new() -> MapOutputTracker {
        MapOutputTracker::default()
    }

    /// Records that map partition `map` of `shuffle` (of `num_maps`) is on `executor`.
    pub fn register(&self, shuffle: ShuffleId, num_maps: usize, map: usize, executor: ExecutorId) {
        let mut outputs = self.outputs.lock();
        let locs = outputs
            .entry(shuffle)
            .or_insert_with(|| vec![None; num_maps]);
        if let Some(slot) = locs.get_mut(map) {
            *slot = Some(executor);
        }
    }

    /// The map partitions of `shuffle` (of `num_maps`) without a live output.
    pub fn missing(&self, shuffle: ShuffleId, num_maps: usize) -> Vec<usize> {
        match self.outputs.lock().get(&shuffle) {
            Some(locs) => (0..num_maps)
                .filter(|&m| locs.get(m).copied().flatten().is_none())
                .collect(),
            None => (0..num_maps).collect(),
        }
    }

    /// Whether every map partition of `shuffle` has a live output.
    pub fn is_complete(&self, shuffle: ShuffleId, num_maps: usize) -> bool {
        self.missing(shuffle, num_maps).is_empty()
    }

    /// The executor holding map partition `map` of `shuffle`, if it is registered.
    pub fn location(&self, shuffle: ShuffleId, map: usize) -> Option<ExecutorId> {
        self.outputs
            .lock()
            .get(&shuffle)?
            .get(map)
            .copied()
            .flatten()
    }

    /// Forgets map partition `map` of `shuffle` (its output could not be fetched).
    pub fn unregister(&self, shuffle: ShuffleId, map: usize) {
        if let Some(slot) = self
            .outputs
            .lock()
            .get_mut(&shuffle)
            .and_then(|l| l.get_mut(map))
        {
            *slot = None;
        }
    }

    /// Forgets every output held by `executor` (it was lost).
    pub fn remove_executor(&self, executor: ExecutorId) {
        for locs in self.outputs.lock().values_mut() {
            for slot in locs.iter_mut().filter(|s| **s == Some(executor)) {
                *slot = None;
            }
        }
    }

    /// Forgets the shuffles of batches before `time_ms` (their blocks are being dropped).
    pub fn remove_before(&self, time_ms: i64) {
        self.outputs
            .lock()
            .retain(|s, _| s.0.batch_time().is_none_or(|t| t.as_ms() >= time_ms));
    }

    /// How many shuffles are tracked.
    pub fn len(&self) -> usize {
        self.outputs.lock().len()
    }

    /// Whether no shuffle is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
