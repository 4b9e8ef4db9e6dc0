//! Executors' block stores (Spark: `BlockManager`'s memory store): received blocks, cached
//! partitions and shuffle buckets, shared as `Arc`s without copying. Losing an executor
//! loses exactly its store.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use rivulet_framework::block::{BlockData, BlockEncoder, BlockId, ExecutorId};
use rivulet_framework::scheduler::BlockAccess;
use rivulet_framework::Result;

use crate::cluster::Cluster;

/// A stored block: its records and how to serialize them for another process.
type Stored = (BlockData, BlockEncoder);

/// Every in-process executor's block store, by executor id; blocks of executor processes
/// are fetched through the cluster of executor processes, when there is one.
pub struct BlockManager {
    stores: Vec<DashMap<BlockId, Stored>>,
    cluster: OnceLock<Arc<Cluster>>,
}

impl BlockManager {
    /// Stores for `executors` executors.
    pub fn new(executors: usize) -> Arc<BlockManager> {
        Arc::new(BlockManager {
            stores: (0..executors).map(|_| DashMap::new()).collect(),
            cluster: OnceLock::new(),
        })
    }

    /// Fetches blocks this process does not hold from `cluster`'s executor processes, and
    /// forgets batches there as here.
    pub(crate) fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    /// Block `id` serialized for another process, from any in-process store: `None` if
    /// none holds it.
    ///
    /// # Errors
    /// The block's encoder's error (a record that does not serialize).
    pub fn encoded(&self, id: &BlockId) -> Result<Option<Vec<u8>>> {
        let found = self
            .stores
            .iter()
            .find_map(|s| s.get(id).map(|b| b.value().clone()));
        found.map(|(data, encode)| encode(id, &data)).transpose()
    }

    /// Stores received block `id` where it belongs: on executor `seq % executors` and a
    /// replica on the next one (when there are two or more), so that it survives one
    /// executor's loss. The one placement rule for blocks, fresh and replayed from the
    /// write-ahead log alike.
    pub fn put_replicated(&self, id: BlockId, data: BlockData, encode: BlockEncoder) {
        let executors = self.stores.len();
        if executors == 0 {
            return;
        }
        let seq = match id {
            BlockId::Input { seq, .. } => seq as usize,
            _ => 0,
        };
        let primary = seq % executors;
        self.put(primary, id, data.clone(), encode);
        if executors > 1 {
            self.put((primary + 1) % executors, id, data, encode);
        }
    }

    /// Stores `data` as `id` on `executor`, served to other processes by `encode`.
    pub fn put(&self, executor: ExecutorId, id: BlockId, data: BlockData, encode: BlockEncoder) {
        if let Some(store) = self.stores.get(executor) {
            store.insert(id, (data, encode));
        }
    }

    /// The block `id`, from `executor`'s store first, then any other's.
    pub fn get(&self, executor: ExecutorId, id: &BlockId) -> Option<BlockData> {
        // Each lookup's guard is dropped before the next map is touched.
        let local = self
            .stores
            .get(executor)
            .and_then(|s| s.get(id).map(|b| b.value().0.clone()));
        local.or_else(|| {
            self.stores
                .iter()
                .find_map(|s| s.get(id).map(|b| b.value().0.clone()))
        })
    }

    /// The executors whose stores hold `id` now, in executor order, and the executor
    /// process whose receiver stored it, if any: the one source of where a block is.
    pub fn locations(&self, id: &BlockId) -> Vec<ExecutorId> {
        let mut locations: Vec<ExecutorId> = (0..self.stores.len())
            .filter(|&e| self.stores[e].contains_key(id))
            .collect();
        if let Some(process) = self.cluster.get().and_then(|c| c.location(id)) {
            locations.push(process);
        }
        locations
    }

    /// Whether any store holds `id`, in this process or an executor process's cache (a
    /// received block an executor process holds has its replica here).
    pub fn contains(&self, id: &BlockId) -> bool {
        self.stores.iter().any(|s| s.contains_key(id))
            || matches!(id, BlockId::Rdd { .. })
                && self.cluster.get().and_then(|c| c.location(id)).is_some()
    }

    /// Takes `id` out of every store (and out of the executor process whose receiver
    /// stored it); returns the data (one entry per replica) so that the caller chooses the
    /// thread that frees it.
    pub fn remove(&self, id: &BlockId) -> Vec<BlockData> {
        if let (Some(cluster), BlockId::Input { .. }) = (self.cluster.get(), id) {
            cluster.forget_received(id);
        }
        self.stores
            .iter()
            .filter_map(|s| s.remove(id).map(|(_, (data, _))| data))
            .collect()
    }

    /// Takes out the cached-partition and shuffle blocks of batches at or before `time_ms`;
    /// returns their data, as [`remove`](BlockManager::remove) does.
    pub fn remove_batches_up_to(&self, time_ms: i64) -> Vec<BlockData> {
        if let Some(cluster) = self.cluster.get() {
            cluster.remove_batches_up_to(time_ms);
        }
        let mut removed = Vec::new();
        for s in &self.stores {
            // Collect the ids first: never hold a dashmap guard while touching the map again.
            let old: Vec<BlockId> = s
                .iter()
                .filter(|b| b.key().rdd_time_ms().is_some_and(|t| t <= time_ms))
                .map(|b| *b.key())
                .collect();
            removed.extend(
                old.iter()
                    .filter_map(|id| s.remove(id).map(|(_, (data, _))| data)),
            );
        }
        removed
    }

    /// Drops everything `executor` held (it was lost).
    pub fn clear_executor(&self, executor: ExecutorId) {
        if let Some(s) = self.stores.get(executor) {
            s.clear();
        }
    }

    /// Blocks held by `executor`.
    pub fn len(&self, executor: ExecutorId) -> usize {
        self.stores.get(executor).map_or(0, |s| s.len())
    }

    /// The view of the stores that a task on `executor` uses.
    pub fn for_executor(self: &Arc<Self>, executor: ExecutorId) -> Arc<dyn BlockAccess> {
        self.for_executor_while(executor, Arc::new(AtomicBool::new(true)))
    }

    /// As [`for_executor`](BlockManager::for_executor), for an executor that is running
    /// while `alive` holds: once it is cleared (the executor was killed), what its
    /// leftover task writes is dropped, as a dead executor's writes would be.
    pub(crate) fn for_executor_while(
        self: &Arc<Self>,
        executor: ExecutorId,
        alive: Arc<AtomicBool>,
    ) -> Arc<dyn BlockAccess> {
        Arc::new(ExecutorBlocks {
            executor,
            manager: self.clone(),
            alive,
        })
    }
}

impl fmt::Debug for BlockManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<usize> = self.stores.iter().map(|s| s.len()).collect();
        f.debug_struct("BlockManager")
            .field("blocks_per_executor", &sizes)
            .finish()
    }
}

struct ExecutorBlocks {
    executor: ExecutorId,
    manager: Arc<BlockManager>,
    alive: Arc<AtomicBool>,
}

impl BlockAccess for ExecutorBlocks {
    fn get(&self, id: &BlockId) -> Option<BlockData> {
        self.manager.get(self.executor, id)
    }
    fn put(&self, id: BlockId, data: BlockData, encode: BlockEncoder) {
        if self.alive.load(Ordering::Acquire) {
            self.manager.put(self.executor, id, data, encode)
        }
    }
    fn fetch(&self, id: &BlockId) -> Result<Option<Vec<u8>>> {
        match self.manager.cluster.get() {
            Some(cluster) => cluster.fetch(id),
            None => Ok(None),
        }
    }
    fn fetch_many<'a>(
        &'a self,
        ids: &'a [BlockId],
    ) -> Box<dyn Iterator<Item = Result<Option<Vec<u8>>>> + 'a> {
        match self.manager.cluster.get() {
            Some(cluster) => Box::new(cluster.fetch_many(ids)),
            None => Box::new(ids.iter().map(|_| Ok(None))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivulet_framework::block::encoder_of;
    use rivulet_framework::rdd::{RddId, ShuffleId};

    #[test]
    fn lookups_fall_back_to_other_executors_and_cleanup_by_batch() {
        let m = BlockManager::new(2);
        let input = BlockId::Input { stream: 0, seq: 0 };
        let rdd = |t| RddId {
            scope: 1,
            time_ms: t,
            seq: 0,
        };
        m.put(1, input, Arc::new(vec![1u8]), encoder_of::<u8>());
        m.put(
            0,
            BlockId::Rdd {
                rdd: rdd(1000),
                partition: 0,
            },
            Arc::new(Vec::<u8>::new()),
            encoder_of::<u8>(),
        );
        m.put(
            0,
            BlockId::Shuffle {
                shuffle: ShuffleId(rdd(2000)),
                map: 0,
                reduce: 0,
            },
            Arc::new(Vec::<u8>::new()),
            encoder_of::<u8>(),
        );
        assert!(m.get(0, &input).is_some());
        assert_eq!(m.locations(&input), vec![1]);
        m.remove_batches_up_to(1000);
        assert_eq!(m.len(0), 1, "only the batch-2000 shuffle block remains");
        assert_eq!(m.len(1), 1, "input blocks are dropped by id, not by time");
        m.clear_executor(1);
        assert!(!m.contains(&input));
    }

    #[test]
    fn a_received_block_goes_to_its_sequence_executor_and_a_replica_on_the_next() {
        let block = |seq| BlockId::Input { stream: 2, seq };
        let m = BlockManager::new(3);
        for seq in [0, 4, 8] {
            m.put_replicated(block(seq), Arc::new(vec![seq]), encoder_of::<u64>());
        }
        assert_eq!(m.locations(&block(0)), vec![0, 1]);
        assert_eq!(m.locations(&block(4)), vec![1, 2]);
        assert_eq!(m.locations(&block(8)), vec![0, 2]);
        let one = BlockManager::new(1);
        one.put_replicated(block(5), Arc::new(Vec::<u8>::new()), encoder_of::<u8>());
        assert_eq!(one.locations(&block(5)), vec![0]);
    }
}
