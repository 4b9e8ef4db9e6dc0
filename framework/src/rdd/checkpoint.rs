//! Checkpointed RDDs (Spark: `RDD.checkpoint`, `ReliableCheckpointRDD`) and lineage
//! inspection (Spark: `RDD.toDebugString`).
//!
//! Writing a checkpoint runs a job that serializes every partition (in parallel, on the
//! executors) into the context's [`CheckpointStore`]; the RDD that takes the checkpointed
//! RDD's place has the same id (so its cached partitions are still found) and no parents:
//! a lost partition is read back from the store instead of recomputed from lineage.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::checkpoint::{decode, encode, DataCheckpoint, Key, Tree};
use crate::data::Data;
use crate::error::{CheckpointError, OpInfo, Result};
use crate::partitioner::HashPartitioner;
use crate::rdd::{Dependency, PartitionIter, Rdd, RddBase, RddContext, RddId, RddImpl, RddMeta};
use crate::scheduler::TaskContext;

/// Counts the keys of one partition of a stateful stream's RDD.
pub(crate) type KeyCounter<T> = dyn Fn(&[T]) -> usize + Send + Sync;

/// An RDD whose partitions are in the checkpoint store under `(stream, time)`.
struct CheckpointRdd<T> {
    meta: RddMeta,
    stream: u32,
    time_ms: i64,
    _records: PhantomData<fn() -> T>,
}

impl<T: Data> RddBase for CheckpointRdd<T> {
    fn meta(&self) -> &RddMeta {
        &self.meta
    }
}

impl<T: Data> RddImpl<T> for CheckpointRdd<T> {
    fn compute(&self, partition: usize, _ctx: &TaskContext) -> Result<PartitionIter<T>> {
        let store = self.meta.ctx().checkpoint_store();
        let key = Key::Data {
            stream: self.stream,
            time_ms: self.time_ms,
            partition: partition as u32,
        };
        let bytes =
            store
                .get(Tree::State, &key.encode())?
                .ok_or_else(|| CheckpointError::Corrupt {
                    dir: store.location(),
                    key: key.to_string(),
                    reason: "the checkpointed partition is missing".into(),
                })?;
        let records: Vec<T> = decode(&bytes, &store.location(), &key.to_string())?;
        Ok(Box::new(records.into_iter()))
    }
}

/// The RDD of a complete data checkpoint, read back from the context's store (restart).
///
/// # Errors
/// [`CheckpointError::Corrupt`] when the checkpoint's partitioner has no partitions or
/// another count than the checkpoint (a checksum-valid but impossible record).
pub(crate) fn checkpoint_rdd<T: Data>(
    ctx: &Arc<RddContext>,
    op: OpInfo,
    checkpoint: &DataCheckpoint,
) -> Result<Rdd<T>> {
    let partitions = checkpoint.partitions as usize;
    if let Some(p) = checkpoint
        .partitioner
        .filter(|&p| p != partitions || p == 0)
    {
        let store = ctx.checkpoint_store();
        return Err(CheckpointError::Corrupt {
            dir: store.location(),
            key: crate::checkpoint::key_text(
                Tree::State,
                &Key::data_prefix(checkpoint.stream, checkpoint.time_ms),
            ),
            reason: format!("{partitions} partitions written, but partitioned by key into {p}"),
        }
        .into());
    }
    Ok(Rdd::new(CheckpointRdd {
        meta: RddMeta::with_id(
            ctx,
            checkpoint.rdd,
            op,
            partitions,
            checkpoint.partitioner.map(HashPartitioner::new),
        ),
        stream: checkpoint.stream,
        time_ms: checkpoint.time_ms,
        _records: PhantomData,
    }))
}

impl<T: Data> Rdd<T> {
    /// Writes every partition to the context's checkpoint store as the data checkpoint of
    /// DStream `stream` at this RDD's batch time, then returns the RDD that takes this one's
    /// place (same id and partitioning, cached, no lineage) and the checkpoint's description.
    /// This RDD is marked checkpointed too: it reads its partitions back from the checkpoint
    /// and its lineage is cut, for the RDDs of later batches that were generated reading it.
    /// The partitions are serialized in a job, in parallel on the executors; the calling
    /// thread stores them.
    ///
    /// # Errors
    /// As [`run_job`](Rdd::run_job) when a partition cannot be computed;
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the store cannot be written.
    pub(crate) fn write_checkpoint(
        &self,
        stream: u32,
        keys: Option<Arc<KeyCounter<T>>>,
    ) -> Result<(Rdd<T>, DataCheckpoint)> {
        let time_ms = self.id().time_ms;
        let op = OpInfo {
            name: "checkpoint",
            ..self.op()
        };
        let counting = keys.is_some();
        let parts = self.run_job(op, move |_, records| {
            let records: Vec<T> = records.collect();
            let n = keys.as_ref().map_or(0, |count| count(&records) as u64);
            Ok((encode(&records)?, n))
        })?;
        let store = self.context().checkpoint_store();
        for (p, (bytes, _)) in parts.iter().enumerate() {
            let key = Key::Data {
                stream,
                time_ms,
                partition: p as u32,
            };
            store.put(Tree::State, &key.encode(), bytes)?;
        }
        let checkpoint = DataCheckpoint {
            stream,
            time_ms,
            rdd: self.id(),
            partitions: self.num_partitions() as u32,
            partitioner: self.partitioner().map(|p| p.num_partitions()),
            keys: counting.then(|| parts.iter().map(|(_, n)| n).sum()),
        };
        let read_back = checkpoint_rdd(self.context(), op, &checkpoint)?;
        // RDDs of later batches generated before now still read this one.
        self.mark_checkpointed(&read_back);
        Ok((read_back, checkpoint))
    }

    /// The length of the longest chain of dependencies below this RDD, in RDDs: 0 for an RDD
    /// without parents (input, parallelized, or read back from a checkpoint). It stays
    /// bounded on a stateful stream because checkpoints cut the lineage.
    pub fn lineage_depth(&self) -> usize {
        fn depth(r: &dyn RddBase, memo: &mut std::collections::HashMap<RddId, usize>) -> usize {
            if let Some(&d) = memo.get(&r.meta().id()) {
                return d;
            }
            let d = r
                .meta()
                .dependencies()
                .iter()
                .map(|dep| 1 + depth(&*dep.parent(), memo))
                .max()
                .unwrap_or(0);
            memo.insert(r.meta().id(), d);
            d
        }
        depth(&*self.as_base(), &mut Default::default())
    }

    /// How many distinct batches the lineage below this RDD reaches back over (the batch
    /// times of the RDDs it depends on, this one's included; static RDDs do not count).
    /// On a checkpointed stateful stream it is at most about the checkpoint interval in
    /// batches, however long the stream has run.
    pub fn lineage_batches(&self) -> usize {
        let mut times = HashSet::new();
        walk(&self.as_base(), &mut HashSet::new(), &mut |r| {
            if let Some(t) = r.meta().id().batch_time() {
                times.insert(t);
            }
        });
        times.len()
    }

    /// The lineage as indented text, one RDD per line with its id, operator, call site and
    /// partition count; a shuffle dependency is marked `+-` (Spark: `RDD.toDebugString`).
    pub fn to_debug_string(&self) -> String {
        fn line(out: &mut String, r: &dyn RddBase, indent: usize, shuffle: bool) {
            let m = r.meta();
            let _ = writeln!(
                out,
                "{:indent$}{}({}) {} [{} partitions]{}",
                "",
                if shuffle { "+-" } else { "" },
                m.id(),
                m.op(),
                m.num_partitions(),
                if m.is_cached() { " cached" } else { "" },
            );
            for dep in m.dependencies() {
                let shuffle = matches!(dep, Dependency::Shuffle(_));
                line(out, &*dep.parent(), indent + 2, shuffle);
            }
        }
        let mut out = String::new();
        line(&mut out, &*self.as_base(), 0, false);
        out
    }
}

/// Visits every RDD of a lineage once.
fn walk(r: &Arc<dyn RddBase>, seen: &mut HashSet<RddId>, f: &mut impl FnMut(&dyn RddBase)) {
    if !seen.insert(r.meta().id()) {
        return;
    }
    f(&**r);
    for dep in r.meta().dependencies() {
        walk(&dep.parent(), seen, f);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_checkpointed_rdd_reads_its_partitions_back_and_its_lineage_is_cut() {
        let ctx = crate::testing::local_context(2);
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let rdd = ctx.parallelize((0..10u64).collect(), 2).map(move |x| {
            counted.fetch_add(1, Ordering::Relaxed);
            x * 2
        });
        // An RDD of a later batch, made before the checkpoint: it reads the original.
        let later = rdd.map(|x| x + 1);
        let (read_back, _) = rdd.write_checkpoint(7, None).expect("written");
        assert_eq!(calls.load(Ordering::Relaxed), 10, "computed once, to write");
        assert_eq!(read_back.id(), rdd.id());
        assert!(
            rdd.dependencies().is_empty(),
            "the original's lineage is cut"
        );
        assert_eq!(later.lineage_depth(), 1);
        let mut got = later.collect().expect("computed");
        got.sort_unstable();
        assert_eq!(got, (0..10u64).map(|x| x * 2 + 1).collect::<Vec<_>>());
        assert_eq!(
            calls.load(Ordering::Relaxed),
            10,
            "read back from the checkpoint, not recomputed from lineage"
        );
    }
}
