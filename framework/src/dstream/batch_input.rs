//! What the coordinator decided one batch reads ([`BatchInput`]), sent with each map task
//! to an executor process, and what the task read of it ([`InputReads`]), sent back.
//!
//! An executor process generates the batch itself with its own graph, so it must see the
//! batch's input exactly as the coordinator cut it: the received blocks allocated to it and
//! each polled input's splits (a direct stream's offset ranges, a file stream's files).
//! Nothing is polled in an executor process. What its tasks read and skipped is counted
//! there (records per partition read to the end, splits skipped with why) and merged into
//! the coordinator's report of the batch before the task's outcome is delivered, so that
//! the batch's `PolledInputInfo` and the unreadable-input policy do not depend on where a
//! split was read.
//!
//! A batch whose lineage reads cached RDDs of earlier batches (a stateful stream's previous
//! state, a window's earlier batches) names them too ([`EarlierCached`]): the process puts
//! a stand-in with the same id in each one's place, so that it reads their partitions from
//! the block stores and never recomputes them from lineage it does not have.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::block::BlockInfo;
use crate::dstream::{DStreamGraph, DStreamId, DStreamNode};
use crate::error::Result;
use crate::listener::SkippedSplit;
use crate::rdd::{Dependency, RddBase, RddId};
use crate::time::Time;

/// One batch's input as the coordinator cut it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInput {
    /// The blocks allocated to the batch, all receiver streams.
    pub blocks: Vec<BlockInfo>,
    /// Each polled input's splits of the batch, encoded by the input (MessagePack of its
    /// split type), by input stream.
    pub splits: Vec<(DStreamId, Vec<u8>)>,
    /// The cached RDDs of earlier batches that the batch's lineage reads.
    #[serde(default)]
    pub cached: Vec<EarlierCached>,
}

/// A cached RDD of an earlier batch that a batch reads: which stream generated it for
/// which batch, its id and its partitioning.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarlierCached {
    /// The stream that generated it.
    pub stream: DStreamId,
    /// The batch it was generated for (ms).
    pub time_ms: i64,
    /// Its id.
    pub rdd: RddId,
    /// How many partitions it has.
    pub partitions: u32,
    /// Into how many partitions it is partitioned by key, when it is.
    pub partitioner: Option<u32>,
}

/// What the tasks of one process read of one polled input in one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputReads {
    /// The polled input stream.
    pub stream: DStreamId,
    /// Records read, per partition whose read ran to its end: `(partition, records)`.
    pub records: Vec<(usize, usize)>,
    /// Splits not read, with why.
    pub skipped: Vec<SkippedSplit>,
    /// What the source noted reading a partition's split beyond its records
    /// ([`PolledSource::read_note`](crate::dstream::PolledSource::read_note)), per
    /// partition.
    #[serde(default)]
    pub notes: Vec<(usize, Vec<u8>)>,
}

impl DStreamGraph {
    /// Batch `t`'s input as this (the coordinator's) graph cut it: its allocated blocks and
    /// its polled inputs' splits (inputs that do not know `t` are left out).
    ///
    /// For a cache task (`keeps`: the RDD it computes and keeps, which a stream generated
    /// for `t`), the batch must still be remembered here in full: the RDD itself, and each
    /// cached RDD of an earlier batch its lineage reads, which the process must read rather
    /// than compute (a process generating a batch whose earlier state it was not told of
    /// would start that state afresh).
    ///
    /// # Errors
    /// [`Error::Internal`](crate::Error::Internal) when a polled input's splits cannot be
    /// serialized; for a cache task, [`Error::Compute`](crate::Error::Compute) naming the
    /// batch and the RDD when no stream remembers it or an earlier cached RDD it reads: the
    /// task must not run without them (the coordinator computes the partition instead).
    pub fn batch_input(&self, t: Time, keeps: Option<RddId>) -> Result<BatchInput> {
        let mut splits = Vec::new();
        for input in self.shared().inputs() {
            if let Some(encoded) = input.batch_splits(t)? {
                splits.push((input.stream(), encoded));
            }
        }
        let nodes = self.nodes();
        let generated: Vec<Arc<dyn RddBase>> =
            nodes.iter().filter_map(|n| n.generated_rdd(t)).collect();
        let earlier = earlier_reads(generated.clone(), t);
        let cached = earlier_cached(&nodes, &earlier);
        if let Some(id) = keeps {
            let kept = generated.into_iter().find(|r| r.meta().id() == id);
            let unnamed = match &kept {
                // Everything the batch reads is named: so is what the kept RDD reads.
                Some(_) if cached.len() == earlier.len() => None,
                Some(rdd) => earlier_reads(vec![rdd.clone()], t)
                    .into_iter()
                    .map(|e| e.meta().id())
                    .filter(|e| !cached.iter().any(|c| c.rdd == *e))
                    .min(),
                None => Some(id),
            };
            if let Some(missing) = unnamed {
                return Err(crate::Error::Compute {
                    batch_time: t,
                    stream: format!("RDD {id}"),
                    message: format!(
                        "no stream remembers RDD {missing} any more, so an executor process \
                         cannot compute it; it is computed on the coordinator"
                    ),
                });
            }
        }
        Ok(BatchInput {
            blocks: self.allocated(t),
            splits,
            cached,
        })
    }

    /// For an executor process: puts batch `t`'s input as the coordinator cut it in place,
    /// before the batch is generated here.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the input when its splits do
    /// not decode (the coordinator runs another program).
    pub(crate) fn install_batch_input(&self, t: Time, input: BatchInput) -> Result<()> {
        self.restore_allocations([(t, input.blocks)]);
        let nodes = self.nodes();
        for cached in &input.cached {
            if let Some(node) = nodes.iter().find(|n| n.info().id == cached.stream) {
                node.install_stand_in(cached);
            }
        }
        let inputs = self.shared().inputs();
        for i in &inputs {
            let encoded = input.splits.iter().find(|(s, _)| *s == i.stream());
            i.install_batch_splits(t, encoded.map(|(_, e)| e.as_slice()))?;
        }
        Ok(())
    }

    /// For an executor process: what its tasks read of batch `t`'s polled inputs since the
    /// last call (inputs that read nothing are left out).
    pub fn take_input_reads(&self, t: Time) -> Vec<InputReads> {
        self.shared()
            .inputs()
            .iter()
            .filter_map(|i| i.take_reads(t))
            .filter(|r| !r.records.is_empty() || !r.skipped.is_empty())
            .collect()
    }

    /// On the coordinator: adds what an executor process's task read of batch `t` to the
    /// batch's input reports, as if it had been read here (a partition read twice counts
    /// once; a skipped split is handled by its input's unreadable-input policy).
    pub fn merge_input_reads(&self, t: Time, reads: Vec<InputReads>) {
        let inputs = self.shared().inputs();
        for r in reads {
            if let Some(i) = inputs.iter().find(|i| i.stream() == r.stream) {
                i.merge_reads(t, r);
            }
        }
    }
}

/// The cached RDDs of batches before `t` that the lineage of `roots` (RDDs of batch `t`)
/// reads: through narrow dependencies, and across shuffles too (map stages of the batch
/// read them as well).
fn earlier_reads(roots: Vec<Arc<dyn RddBase>>, t: Time) -> Vec<Arc<dyn RddBase>> {
    let mut earlier = Vec::new();
    let mut seen: HashSet<RddId> = HashSet::new();
    let mut stack = roots;
    while let Some(rdd) = stack.pop() {
        let meta = rdd.meta();
        if !seen.insert(meta.id()) {
            continue;
        }
        if meta.id().batch_time().is_some_and(|b| b < t) {
            if meta.is_cached() {
                earlier.push(rdd.clone());
            }
            continue;
        }
        stack.extend(meta.dependencies().iter().map(Dependency::parent));
    }
    earlier
}

/// `earlier` described for an executor process, each under the stream that generated it:
/// the one that still remembers it, else the stream whose batch computation created it
/// (its id's scope), when a stream generated it at all. The others (cached inside a
/// user's function) are left out.
fn earlier_cached(
    nodes: &[Arc<dyn DStreamNode>],
    earlier: &[Arc<dyn RddBase>],
) -> Vec<EarlierCached> {
    earlier
        .iter()
        .filter_map(|rdd| {
            let meta = rdd.meta();
            let id = meta.id();
            let time = Time::from_ms(id.time_ms);
            let remembered = nodes
                .iter()
                .find(|n| n.generated_rdd(time).is_some_and(|r| r.meta().id() == id));
            let stream = match remembered {
                Some(node) => node.info().id,
                None if meta.is_generated() && nodes.iter().any(|n| n.info().id == id.scope) => {
                    id.scope
                }
                None => return None,
            };
            Some(EarlierCached {
                stream,
                time_ms: id.time_ms,
                rdd: id,
                partitions: meta.num_partitions() as u32,
                partitioner: meta.partitioner().map(|p| p.num_partitions() as u32),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{local_context, BATCH};

    /// A running count per word over three batches of words (`update_state_by_key`), in a
    /// fresh graph; returns it with its state stream.
    fn program() -> (DStreamGraph, crate::dstream::DStream<(String, u64)>) {
        let graph = DStreamGraph::new(BATCH, local_context(2), 1000, None);
        let words = |w: &str| w.split(' ').map(str::to_string).collect::<Vec<_>>();
        let state = graph
            .queue_stream(vec![words("a b"), words("b c"), words("c a")])
            .map(|w: String| (w, 1u64))
            .update_state_by_key(|new: Vec<u64>, old: Option<u64>| {
                Some(old.unwrap_or(0) + new.iter().sum::<u64>())
            });
        state.foreach_batch(|_, _: Vec<(String, u64)>| {});
        (graph, state)
    }

    fn at(batch: u32) -> Time {
        Time::ZERO + BATCH * batch
    }

    /// The coordinator's state RDD of `batch` and the input a cache task computing it gets.
    fn cache_task_input(
        graph: &DStreamGraph,
        state: &crate::dstream::DStream<(String, u64)>,
        batch: u32,
    ) -> (RddId, BatchInput) {
        let rdd = state
            .get_or_compute(at(batch))
            .expect("generated")
            .expect("a batch time");
        let input = graph
            .batch_input(at(batch), Some(rdd.id()))
            .expect("remembered");
        (rdd.id(), input)
    }

    #[test]
    fn a_cache_task_names_the_previous_state_and_an_older_batch_replaces_its_stand_in() {
        let (coordinator, state) = program();
        coordinator.start(Time::ZERO).expect("valid graph");
        for b in 1..=3 {
            for job in coordinator.generate_jobs(at(b)) {
                job.run().expect("batch runs");
            }
            coordinator.clear_old(at(b));
        }
        let (third, input) = cache_task_input(&coordinator, &state, 3);
        let (second, older) = cache_task_input(&coordinator, &state, 2);
        assert!(
            input.cached.iter().any(|c| c.rdd == second),
            "batch 3's input names batch 2's state: {:?}",
            input.cached
        );

        let refused = coordinator
            .batch_input(at(2), Some(third))
            .expect_err("batch 2 generated no such RDD");
        assert!(
            refused.to_string().contains("no stream remembers RDD"),
            "{refused}"
        );

        let (process, _) = program();
        process.start_as_executor(Time::ZERO).expect("valid graph");
        let found = process.executor_rdd(at(3), input, third).expect("found");
        assert!(found.meta().is_generated());
        // Batch 2's state was a stand-in there; recovering a partition of it regenerates
        // batch 2 in the process, from its own input.
        let found = process.executor_rdd(at(2), older, second).expect("found");
        assert!(
            found.meta().is_generated(),
            "the process generated batch 2's state rather than read its stand-in"
        );
        assert_eq!(
            process.shared().executor_floor(),
            Some(at(3)),
            "the newest batch stays the floor"
        );
        coordinator.shutdown();
        process.shutdown();
    }
}
