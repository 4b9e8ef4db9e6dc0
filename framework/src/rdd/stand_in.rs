//! An earlier batch's cached RDD as an executor process sees it: the same id, partitioning
//! and cache, no lineage. The process computes a stateful stream's next state from it
//! (reading the previous state's partitions from the block stores); the lineage that could
//! recompute a lost partition stays with the coordinator, so computing one here is an
//! error, and the coordinator recomputes the partition instead.

use std::marker::PhantomData;
use std::sync::Arc;

use crate::data::Data;
use crate::error::{Error, OpInfo, Result};
use crate::partitioner::HashPartitioner;
use crate::rdd::{PartitionIter, Rdd, RddBase, RddContext, RddId, RddImpl, RddMeta};
use crate::scheduler::TaskContext;

/// A cached RDD whose partitions only the block stores have.
struct StandInRdd<T> {
    meta: RddMeta,
    _records: PhantomData<fn() -> T>,
}

impl<T: Data> RddBase for StandInRdd<T> {
    fn meta(&self) -> &RddMeta {
        &self.meta
    }
}

impl<T: Data> RddImpl<T> for StandInRdd<T> {
    /// Reached only when no block store holds the partition (the cache is read first).
    fn compute(&self, partition: usize, _ctx: &TaskContext) -> Result<PartitionIter<T>> {
        Err(Error::BlockMissing(self.meta.block_id(partition)))
    }
}

/// The stand-in for cached RDD `id` of `partitions` partitions, partitioned by key into
/// `partitioner` partitions if `Some` (a count of 0, which no partitioner has, is left out).
pub(crate) fn stand_in_rdd<T: Data>(
    ctx: &Arc<RddContext>,
    op: OpInfo,
    id: RddId,
    partitions: usize,
    partitioner: Option<usize>,
) -> Rdd<T> {
    Rdd::new(StandInRdd {
        meta: RddMeta::with_id(
            ctx,
            id,
            op,
            partitions,
            partitioner.filter(|&n| n > 0).map(HashPartitioner::new),
        ),
        _records: PhantomData,
    })
}
