//! The hash shuffle: the one mechanism behind every stage boundary (Spark:
//! `ShuffleDependency`, `ShuffledRDD`, sort-less hash shuffle).
//!
//! A map task computes its parent partition and cuts it into one bucket per reduce
//! partition (combining values per key first when the operator has a combiner), then leaves
//! the buckets in its executor's block store. A reduce task gathers its bucket from every map
//! output, in map partition order (DESIGN invariant 1), and turns them into its partition.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::block::BlockId;
use crate::data::Data;
use crate::error::{Error, OpInfo, Result};
use crate::partitioner::HashPartitioner;
use crate::rdd::{
    Dependency, PartitionIter, PartitionRecords, Rdd, RddBase, RddImpl, RddMeta, ShuffleId,
};
use crate::scheduler::TaskContext;

/// What a map task reports: the records it wrote per reduce partition (Spark: `MapStatus`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MapStatus {
    /// Records in the bucket for each reduce partition.
    pub bucket_records: Vec<u64>,
}

/// A shuffle dependency seen without its record types: what a map-stage task runs.
pub trait ShuffleMap: Send + Sync + 'static {
    /// The shuffle's id.
    fn shuffle_id(&self) -> ShuffleId;
    /// The RDD whose partitions are cut into buckets.
    fn parent(&self) -> Arc<dyn RddBase>;
    /// How many reduce partitions (buckets per map task).
    fn num_reduce_partitions(&self) -> usize;
    /// Computes map partition `map_partition` and stores its buckets in the task's block store.
    ///
    /// # Errors
    /// Whatever computing the parent partition fails with.
    fn run_map_task(&self, map_partition: usize, ctx: &TaskContext) -> Result<MapStatus>;
}

type BucketWriter<T, U> = dyn Fn(usize, PartitionRecords<T>, usize) -> Vec<Vec<U>> + Send + Sync;
type BucketReader<U, R> = dyn Fn(Vec<Arc<Vec<U>>>) -> PartitionIter<R> + Send + Sync;

struct ShuffleDep<T, U> {
    id: ShuffleId,
    parent: Rdd<T>,
    reduce_partitions: usize,
    write: Box<BucketWriter<T, U>>,
}

impl<T: Data, U: Data> ShuffleMap for ShuffleDep<T, U> {
    fn shuffle_id(&self) -> ShuffleId {
        self.id
    }
    fn parent(&self) -> Arc<dyn RddBase> {
        self.parent.as_base()
    }
    fn num_reduce_partitions(&self) -> usize {
        self.reduce_partitions
    }
    fn run_map_task(&self, map_partition: usize, ctx: &TaskContext) -> Result<MapStatus> {
        let records = self.parent.partition_records(map_partition, ctx)?;
        let buckets = (self.write)(map_partition, records, self.reduce_partitions);
        debug_assert_eq!(buckets.len(), self.reduce_partitions);
        let mut status = MapStatus {
            bucket_records: Vec::with_capacity(buckets.len()),
        };
        for (reduce, bucket) in buckets.into_iter().enumerate() {
            status.bucket_records.push(bucket.len() as u64);
            // Empty buckets are stored too: "empty" must differ from "lost".
            let id = BlockId::Shuffle {
                shuffle: self.id,
                map: map_partition as u32,
                reduce: reduce as u32,
            };
            ctx.put_records(id, Arc::new(bucket));
        }
        Ok(status)
    }
}

impl<T, U> fmt::Debug for ShuffleDep<T, U> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShuffleDep({})", self.id)
    }
}

/// The reduce side of a shuffle (Spark: `ShuffledRDD`).
struct ShuffledRdd<U, R> {
    meta: RddMeta,
    shuffle: ShuffleId,
    num_maps: usize,
    read: Box<BucketReader<U, R>>,
}

impl<U: Data, R: Data> RddBase for ShuffledRdd<U, R> {
    fn meta(&self) -> &RddMeta {
        &self.meta
    }
}

impl<U: Data, R: Data> RddImpl<R> for ShuffledRdd<U, R> {
    fn compute(&self, partition: usize, ctx: &TaskContext) -> Result<PartitionIter<R>> {
        let ids: Vec<BlockId> = (0..self.num_maps)
            .map(|map| BlockId::Shuffle {
                shuffle: self.shuffle,
                map: map as u32,
                reduce: partition as u32,
            })
            .collect();
        let mut buckets = Vec::with_capacity(self.num_maps);
        for (map, (id, found)) in ids.iter().zip(ctx.get_many_records::<U>(&ids)).enumerate() {
            let missing = Error::FetchFailed {
                shuffle: self.shuffle,
                map_partition: map,
            };
            match found {
                Some(Ok(bucket)) => buckets.push(bucket),
                Some(Err(e @ Error::BlockType(_))) => return Err(e),
                Some(Err(e)) => {
                    // The process holding the bucket went away or broke the fetch: the
                    // bucket is as lost as its executor, and its map task runs again.
                    tracing::warn!(block = %id, error = %e, "Cannot fetch a shuffle bucket; its map output is recomputed.");
                    return Err(missing);
                }
                None => return Err(missing),
            }
        }
        Ok((self.read)(buckets))
    }
}

/// A shuffle of `parent` into `partitions` reduce partitions: map task `m` turns its records
/// into buckets with `write(m, records, partitions)` (shared records when the parent keeps
/// them as one `Vec`, so a writer may read them by reference); reduce partition `r` is
/// `read(bucket r of map 0, bucket r of map 1, ...)`. `partitioner` is what the result is
/// known to be partitioned by, if anything.
pub(crate) fn shuffle<T: Data, U: Data, R: Data>(
    parent: &Rdd<T>,
    op: OpInfo,
    partitions: usize,
    partitioner: Option<HashPartitioner>,
    write: impl Fn(usize, PartitionRecords<T>, usize) -> Vec<Vec<U>> + Send + Sync + 'static,
    read: impl Fn(Vec<Arc<Vec<U>>>) -> PartitionIter<R> + Send + Sync + 'static,
) -> Rdd<R> {
    let pm = parent.meta();
    let dep_parent = parent.clone();
    let meta = RddMeta::in_scope(
        pm.ctx(),
        pm.scope(),
        op,
        partitions,
        move |id| {
            vec![Dependency::Shuffle(Arc::new(ShuffleDep {
                id: ShuffleId(id),
                parent: dep_parent,
                reduce_partitions: partitions,
                write: Box::new(write),
            }))]
        },
        partitioner,
    );
    let shuffle = ShuffleId(meta.id());
    Rdd::new(ShuffledRdd {
        meta,
        shuffle,
        num_maps: pm.num_partitions(),
        read: Box::new(read),
    })
}
