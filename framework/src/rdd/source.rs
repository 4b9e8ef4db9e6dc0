//! RDDs without parents: a parallelized collection, the blocks of one batch's input, empty.

use std::sync::Arc;

use crate::block::{BlockId, BlockInfo, ExecutorId};
use crate::data::Data;
use crate::error::{Error, OpInfo, Result};
use crate::rdd::{IdScope, PartitionIter, Rdd, RddBase, RddContext, RddImpl, RddMeta, SharedIter};
use crate::scheduler::TaskContext;

/// Records held by the RDD itself, cut into slices (Spark: `ParallelCollectionRDD`).
struct ParallelCollectionRdd<T> {
    meta: RddMeta,
    slices: Vec<Arc<Vec<T>>>,
}

impl<T: Data> RddBase for ParallelCollectionRdd<T> {
    fn meta(&self) -> &RddMeta {
        &self.meta
    }
}

impl<T: Data> RddImpl<T> for ParallelCollectionRdd<T> {
    fn compute(&self, partition: usize, _ctx: &TaskContext) -> Result<PartitionIter<T>> {
        Ok(Box::new(SharedIter::new(self.slices[partition].clone())))
    }
    fn shared(&self, partition: usize, _ctx: &TaskContext) -> Option<Result<Arc<Vec<T>>>> {
        Some(Ok(self.slices[partition].clone()))
    }
}

/// `data` cut into `partitions` contiguous slices: slice `i` is `data[i*n/p .. (i+1)*n/p]`.
pub(crate) fn parallelize<T: Data>(
    ctx: &Arc<RddContext>,
    scope: &Arc<IdScope>,
    op: OpInfo,
    mut data: Vec<T>,
    partitions: usize,
) -> Rdd<T> {
    let n = data.len();
    let mut slices = Vec::with_capacity(partitions);
    for i in (0..partitions).rev() {
        slices.push(Arc::new(data.split_off(i * n / partitions)));
    }
    slices.reverse();
    let meta = RddMeta::in_scope(ctx, scope, op, partitions, |_| Vec::new(), None);
    Rdd::new(ParallelCollectionRdd { meta, slices })
}

/// An RDD with no partitions (Spark: `EmptyRDD`).
pub(crate) fn empty_rdd<T: Data>(ctx: &Arc<RddContext>, op: OpInfo) -> Rdd<T> {
    parallelize(ctx, &ctx.static_scope, op, Vec::new(), 0)
}

/// One batch's input from one stream: partition `i` is block `i` (Spark: `BlockRDD`).
struct BlockRdd<T> {
    meta: RddMeta,
    blocks: Vec<BlockInfo>,
    _records: std::marker::PhantomData<fn() -> T>,
}

impl<T: Data> RddBase for BlockRdd<T> {
    fn meta(&self) -> &RddMeta {
        &self.meta
    }
    /// Where the block is now, as the runner's block stores say; none (any executor) when
    /// the runner does not track blocks.
    fn preferred_locations(&self, partition: usize) -> Vec<ExecutorId> {
        let Some(info) = self.blocks.get(partition) else {
            return Vec::new();
        };
        self.meta
            .ctx()
            .runner()
            .ok()
            .and_then(|r| r.block_locations(&info.id))
            .unwrap_or_default()
    }
}

impl<T: Data> RddImpl<T> for BlockRdd<T> {
    fn compute(&self, partition: usize, ctx: &TaskContext) -> Result<PartitionIter<T>> {
        Ok(Box::new(SharedIter::new(self.block(partition, ctx)?)))
    }
    fn shared(&self, partition: usize, ctx: &TaskContext) -> Option<Result<Arc<Vec<T>>>> {
        Some(self.block(partition, ctx))
    }
}

impl<T: Data> BlockRdd<T> {
    /// Block `partition`'s records, as the block store keeps them.
    fn block(&self, partition: usize, ctx: &TaskContext) -> Result<Arc<Vec<T>>> {
        let id: BlockId = self.blocks[partition].id;
        ctx.get_records(&id).ok_or(Error::BlockMissing(id))?
    }
}

/// The RDD over `blocks`, in the order given.
pub(crate) fn block_rdd<T: Data>(
    ctx: &Arc<RddContext>,
    op: OpInfo,
    blocks: Vec<BlockInfo>,
) -> Rdd<T> {
    let meta = RddMeta::in_scope(
        ctx,
        &ctx.static_scope,
        op,
        blocks.len(),
        |_| Vec::new(),
        None,
    )
    .reads_portable_input();
    Rdd::new(BlockRdd {
        meta,
        blocks,
        _records: std::marker::PhantomData,
    })
}
