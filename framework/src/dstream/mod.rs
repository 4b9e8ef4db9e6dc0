//! Discretized streams (Spark: `DStream`): a sequence of RDDs, one per slide of the stream,
//! each generated from the parents' RDDs of the same batch time.
//!
//! A [`DStream<T>`] is a cheap handle to a node of a [`DStreamGraph`]. Operators add nodes;
//! output operations (`print`, `foreach_batch`, ...) mark what runs each batch. Every batch
//! time `t`, the runtime asks the graph for `t`'s jobs: each output's stream computes (or
//! finds) its RDD for `t`, recursively through its parents, and the job runs actions on it.
//!
//! Operators that transform each batch's RDD share one mechanism ([`DStream::transform`]);
//! the named ones (map, filter, reduce_by_key, ...) are thin layers over it.

mod batch_input;
mod block_tracker;
mod describe;
pub mod direct;
mod graph;
mod input;
mod job;
mod join;
mod map_with_state;
mod output;
mod pair;
mod polled;
mod state_map;
mod state_partitioning;
mod stateless;
mod update_state;
mod window;

pub use batch_input::{BatchInput, EarlierCached, InputReads};
pub use describe::{GraphDescription, OutputDescription, StreamDescription};
pub use direct::{DirectOptions, DirectSource, DirectStream, OffsetRange, SourcePartition};
pub use graph::{DStreamGraph, InputReports};
pub use job::OutputJob;
pub use map_with_state::{MapWithStateDStream, State, StateSpec};
pub use output::BatchCollector;
pub use polled::{NewSplits, PolledSource, ReadError, UnreadablePolicy};
pub use window::WindowReduce;

use std::collections::BTreeMap;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::checkpoint::DataCheckpoint;
use crate::data::Data;
use crate::error::{panic_message, Error, GraphError, OpInfo, Result};
use crate::rdd::{checkpoint_rdd, stand_in_rdd, with_scope, IdScope, KeyCounter, Rdd};
use crate::time::Time;

use graph::GraphShared;
pub(crate) use state_partitioning::StatePartitioning;

/// Identifies a DStream within its graph (creation order, from 0).
pub type DStreamId = u32;

/// Records a graph error unless all `streams` (graph, slide) share the first one's graph
/// and slide; returns the first one's slide. Operators over several streams call it.
pub(crate) fn check_same_slide<'a>(
    op: OpInfo,
    mut streams: impl Iterator<Item = (&'a Arc<GraphShared>, Duration)>,
) -> Duration {
    let Some((graph, slide)) = streams.next() else {
        return Duration::ZERO;
    };
    for (other_graph, other_slide) in streams {
        if !Arc::ptr_eq(graph, other_graph) {
            graph.add_error(GraphError::ForeignStream(op.to_string()));
        } else if other_slide != slide {
            graph.add_error(GraphError::SlideMismatch {
                stream: op.to_string(),
                left: slide,
                right: other_slide,
            });
        }
    }
    slide
}

/// What every DStream node knows, whatever its record type.
pub(crate) struct NodeInfo {
    id: DStreamId,
    op: OpInfo,
    slide: Duration,
    parents: Vec<Arc<dyn DStreamNode>>,
    /// How much longer than this node its parents must remember (a window's length).
    parent_extra_remember: Duration,
    remember: Mutex<Duration>,
    cache: AtomicBool,
    checkpoint: Mutex<CheckpointSetting>,
    graph: Arc<GraphShared>,
}

/// Whether and how often a node's RDDs are data-checkpointed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CheckpointSetting {
    /// Never (stateless streams).
    Off,
    /// A stateful stream: the graph's default interval, resolved at start.
    Default,
    /// Every this long (set by `DStream::checkpoint`, or resolved from `Default`).
    Every(Duration),
}

impl NodeInfo {
    pub(crate) fn id(&self) -> DStreamId {
        self.id
    }
    pub(crate) fn slide(&self) -> Duration {
        self.slide
    }
    pub(crate) fn remember(&self) -> Duration {
        *self.remember.lock()
    }
    pub(crate) fn op(&self) -> OpInfo {
        self.op
    }
    pub(crate) fn parent_ids(&self) -> Vec<DStreamId> {
        self.parents.iter().map(|p| p.info().id()).collect()
    }
    pub(crate) fn checkpoint_setting(&self) -> CheckpointSetting {
        *self.checkpoint.lock()
    }
    pub(crate) fn set_checkpoint(&self, setting: CheckpointSetting) {
        *self.checkpoint.lock() = setting;
    }
    /// The resolved checkpoint interval (after start), if the node is checkpointed.
    pub(crate) fn checkpoint_interval(&self) -> Option<Duration> {
        match self.checkpoint_setting() {
            CheckpointSetting::Every(d) => Some(d),
            _ => None,
        }
    }
    /// After batch `time`: the newest batch whose RDD this node may forget, and the newest
    /// whose RDD it may forget when that RDD is cached. On the coordinator, a cached RDD (a
    /// state, a window's parent, what a cache stage kept) is kept as long as the graph keeps
    /// its input (back to the oldest newest data checkpoint of a stateful stream:
    /// `input_horizon`): a partition of it that a lost executor process held is recovered
    /// there by regenerating its batch, which must name every cached RDD the batch reads
    /// (`DagScheduler`'s recovery; the state's lineage reaches them anyway). Their blocks
    /// are dropped as before, after the graph's longest remember duration.
    pub(crate) fn forget_horizons(&self, time: Time) -> (Time, Time) {
        let horizon = time - self.remember();
        match self.graph.executor_floor() {
            None => (horizon, horizon.min(self.graph.input_horizon(time))),
            Some(_) => (horizon, horizon),
        }
    }
    /// Whether batch `t` is one of this node's checkpoint times.
    pub(crate) fn checkpoint_due(&self, t: Time) -> bool {
        let (Some(interval), Some(zero)) = (self.checkpoint_interval(), self.graph.zero_time())
        else {
            return false;
        };
        t > zero
            && (t - zero)
                .as_millis()
                .is_multiple_of(interval.as_millis().max(1))
    }
    /// Raises this node's remember duration to at least `d`, and its parents' accordingly
    /// (Spark: `DStream.remember`).
    pub(crate) fn require_remember(&self, d: Duration) {
        let now = {
            let mut r = self.remember.lock();
            *r = (*r).max(d);
            *r
        };
        for p in &self.parents {
            p.info().require_remember(now + self.parent_extra_remember);
        }
    }
}

/// A DStream node seen without its record type: what the graph walks.
pub(crate) trait DStreamNode: Send + Sync {
    fn info(&self) -> &NodeInfo;
    /// Forgets the RDDs generated for batches at or before `time - remember`.
    fn clear_old(&self, time: Time);
    /// Writes the node's RDD at `t` as a data checkpoint and puts the checkpointed RDD (no
    /// lineage) in its place; `None` if the node generated no RDD at `t`.
    fn write_checkpoint(&self, t: Time) -> Result<Option<DataCheckpoint>>;
    /// Makes a data checkpoint read back from the store the node's RDD at its time; a
    /// stateful node adopts the checkpoint's partition count (see [`StatePartitioning`]).
    ///
    /// # Errors
    /// [`CheckpointError::PartitionsChanged`](crate::CheckpointError::PartitionsChanged)
    /// when the program asks for another partition count explicitly;
    /// [`CheckpointError::Corrupt`](crate::CheckpointError::Corrupt) for a checkpoint whose
    /// partition counts are impossible.
    fn restore_checkpoint(&self, checkpoint: &DataCheckpoint) -> Result<()>;
    /// The RDD the node generated for batch `t`, if any.
    fn generated_rdd(&self, t: Time) -> Option<Arc<dyn crate::rdd::RddBase>>;
    /// In an executor process: makes a stand-in for the coordinator's cached RDD
    /// `cached` (no lineage, its partitions read from block stores) the node's RDD at its
    /// batch time, unless the node generated one there itself.
    /// In an executor process: forgets the stand-in at `t`, if that is what this node has
    /// for `t`, before the process generates batch `t` itself.
    fn forget_stand_in(&self, t: Time);
    fn install_stand_in(&self, cached: &EarlierCached);
    /// For a stateful node: its state's partition count (resolved now if nothing did).
    fn state_partitions(&self) -> Option<usize>;
    /// In an executor process: adopts the coordinator's state partition count; `false`
    /// when the node is not stateful.
    ///
    /// # Errors
    /// As [`StatePartitioning::adopt`].
    fn adopt_state_partitions(&self, n: usize) -> Result<bool>;
}

/// Computes a node's RDD for a batch time; gets the node's own handle (stateful nodes read
/// their previous RDD through it).
type ComputeFn<T> = dyn Fn(&DStream<T>, Time) -> Result<Option<Rdd<T>>> + Send + Sync;

/// A DStream node with its record type: it can compute its RDD for a batch.
pub(crate) struct DStreamCore<T> {
    info: NodeInfo,
    compute: Box<ComputeFn<T>>,
    generated: Mutex<BTreeMap<Time, Rdd<T>>>,
    /// How to count the keys of a partition of this (stateful) stream, for checkpoints.
    key_counter: std::sync::OnceLock<Arc<KeyCounter<T>>>,
    /// The partitioning of this stateful stream's state, which a restore resolves.
    state_partitioning: std::sync::OnceLock<Arc<StatePartitioning>>,
}

impl<T: Data> DStreamNode for DStreamCore<T> {
    fn info(&self) -> &NodeInfo {
        &self.info
    }
    fn clear_old(&self, time: Time) {
        let (horizon, cached) = self.info.forget_horizons(time);
        self.generated
            .lock()
            .retain(|t, rdd| *t > horizon || *t > cached && rdd.meta().is_cached());
    }
    fn write_checkpoint(&self, t: Time) -> Result<Option<DataCheckpoint>> {
        let Some(rdd) = self.generated.lock().get(&t).cloned() else {
            return Ok(None);
        };
        let keys = self.key_counter.get().cloned();
        let (checkpointed, checkpoint) = rdd.write_checkpoint(self.info.id, keys)?;
        // Generated for `t` as the RDD it replaces: a lost partition is restored by id.
        checkpointed.mark_generated();
        self.generated.lock().insert(t, checkpointed);
        Ok(Some(checkpoint))
    }
    fn restore_checkpoint(&self, checkpoint: &DataCheckpoint) -> Result<()> {
        let ctx = self.info.graph.rdd_context();
        if let Some(partitioning) = self.state_partitioning.get() {
            let dir = ctx.checkpoint_store().location();
            partitioning.restore(checkpoint, self.info.op, self.info.id, &dir)?;
        }
        let rdd = checkpoint_rdd::<T>(ctx, self.info.op, checkpoint)?;
        rdd.mark_generated();
        self.generated
            .lock()
            .insert(Time::from_ms(checkpoint.time_ms), rdd);
        Ok(())
    }
    fn generated_rdd(&self, t: Time) -> Option<Arc<dyn crate::rdd::RddBase>> {
        self.generated.lock().get(&t).map(|rdd| rdd.as_base())
    }
    fn state_partitions(&self) -> Option<usize> {
        self.state_partitioning.get().map(|p| p.partitions())
    }
    fn adopt_state_partitions(&self, n: usize) -> Result<bool> {
        match self.state_partitioning.get() {
            Some(p) => p.adopt(n, self.info.op, self.info.id).map(|()| true),
            None => Ok(false),
        }
    }
    fn forget_stand_in(&self, t: Time) {
        let mut generated = self.generated.lock();
        // Every RDD a stream generated is marked so; a stand-in is not.
        if generated.get(&t).is_some_and(|r| !r.meta().is_generated()) {
            generated.remove(&t);
        }
    }
    fn install_stand_in(&self, cached: &EarlierCached) {
        let ctx = self.info.graph.rdd_context();
        self.generated
            .lock()
            .entry(Time::from_ms(cached.time_ms))
            .or_insert_with(|| {
                stand_in_rdd(
                    ctx,
                    self.info.op,
                    cached.rdd,
                    cached.partitions as usize,
                    cached.partitioner.map(|n| n as usize),
                )
            });
    }
}

/// A discretized stream of `T` records: one RDD per slide (Spark: `DStream[T]`).
///
/// Cheap to clone; clones name the same stream.
pub struct DStream<T> {
    core: Arc<DStreamCore<T>>,
}

impl<T> Clone for DStream<T> {
    fn clone(&self) -> Self {
        DStream {
            core: self.core.clone(),
        }
    }
}

impl<T> fmt::Debug for DStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DStream")
            .field("id", &self.core.info.id)
            .field("op", &self.core.info.op)
            .field("slide", &self.core.info.slide)
            .finish()
    }
}

impl<T: Data> DStream<T> {
    /// Adds a node to `graph` computing with `compute`.
    pub(crate) fn new_node(
        graph: &Arc<GraphShared>,
        op: OpInfo,
        slide: Duration,
        parents: Vec<Arc<dyn DStreamNode>>,
        parent_extra_remember: Duration,
        compute: impl Fn(&DStream<T>, Time) -> Result<Option<Rdd<T>>> + Send + Sync + 'static,
    ) -> DStream<T> {
        let id = graph.next_stream_id(op);
        let core = Arc::new(DStreamCore {
            info: NodeInfo {
                id,
                op,
                slide,
                parents,
                parent_extra_remember,
                remember: Mutex::new(Duration::ZERO),
                cache: AtomicBool::new(false),
                checkpoint: Mutex::new(CheckpointSetting::Off),
                graph: graph.clone(),
            },
            compute: Box::new(compute),
            generated: Mutex::new(BTreeMap::new()),
            key_counter: std::sync::OnceLock::new(),
            state_partitioning: std::sync::OnceLock::new(),
        });
        graph.add_node(core.clone());
        DStream { core }
    }

    /// A child of this stream with the same slide, computing with `compute(child, t)`.
    pub(crate) fn child<U: Data>(
        &self,
        op: OpInfo,
        compute: impl Fn(&DStream<U>, Time) -> Result<Option<Rdd<U>>> + Send + Sync + 'static,
    ) -> DStream<U> {
        let parents = vec![self.node()];
        DStream::new_node(
            self.graph(),
            op,
            self.slide_duration(),
            parents,
            Duration::ZERO,
            compute,
        )
    }

    /// A child of this stream with the same slide whose RDD at `t` is `f(this stream's RDD at
    /// t, t)`; no RDD when this stream has none. The mechanism behind every per-batch operator.
    pub(crate) fn derive<U: Data>(
        &self,
        op: OpInfo,
        f: impl Fn(&Rdd<T>, Time) -> Rdd<U> + Send + Sync + 'static,
    ) -> DStream<U> {
        let parent = self.clone();
        self.child(op, move |_, t| {
            Ok(parent.get_or_compute(t)?.map(|rdd| f(&rdd, t)))
        })
    }

    pub(crate) fn node(&self) -> Arc<dyn DStreamNode> {
        self.core.clone()
    }

    pub(crate) fn graph(&self) -> &Arc<GraphShared> {
        &self.core.info.graph
    }

    /// The stream's id in its graph.
    pub fn id(&self) -> DStreamId {
        self.core.info.id
    }

    /// The operator that created the stream and where.
    pub fn op(&self) -> OpInfo {
        self.core.info.op
    }

    /// How often the stream produces an RDD (Spark: `slideDuration`): the batch interval for
    /// input and per-batch streams, the slide for windowed ones.
    pub fn slide_duration(&self) -> Duration {
        self.core.info.slide
    }

    /// Keeps each batch's RDD in the executors' block stores once computed, so several
    /// outputs of one batch, or later windows, do not recompute it (Spark: `DStream.cache`).
    ///
    /// # Examples
    /// ```
    /// use std::sync::atomic::{AtomicUsize, Ordering};
    /// use rivulet_framework::testing::run_batches;
    ///
    /// static CALLS: AtomicUsize = AtomicUsize::new(0);
    /// let out = run_batches(vec![vec![1, 2]], |s| {
    ///     let tens = s.map(|x| { CALLS.fetch_add(1, Ordering::Relaxed); x * 10 }).cache();
    ///     tens.union(&tens) // reads each batch of `tens` twice
    /// });
    /// assert_eq!(out, vec![vec![10, 20, 10, 20]]);
    /// assert_eq!(CALLS.load(Ordering::Relaxed), 2); // computed once: 4 calls without `cache`
    /// ```
    pub fn cache(&self) -> DStream<T> {
        self.core.info.cache.store(true, Ordering::Relaxed);
        self.clone()
    }

    /// Data-checkpoints this stream's RDD every `interval` and cuts its lineage there
    /// (Spark: `DStream.checkpoint`). Stateful and windowed streams (`update_state_by_key`,
    /// `map_with_state`, inverse windows) are checkpointed by default every
    /// [`StreamingConfig::checkpoint_interval`](crate::config::StreamingConfig::checkpoint_interval),
    /// or the smallest multiple of their slide that is at least 10 s (as Spark); this
    /// overrides it. Partitions go to the checkpoint store (sled under
    /// `StreamingConfig::checkpoint_dir`, else memory) and are read back when lost.
    ///
    /// `interval` must be a positive multiple of the stream's slide duration, else `start`
    /// fails with [`GraphError::NotMultipleOfSlide`].
    ///
    /// # Examples
    /// The state at `t` is built on the state at `t - 1 s`, so its lineage reaches back to the
    /// first batch (1, 2, 3, 4 batches here with the default 10 s interval); checkpointed every
    /// batch, it reaches back over 2 batches at most.
    /// ```
    /// use rivulet_framework::testing::{run_batches, BATCH};
    ///
    /// let out = run_batches(vec![vec![('k', 1)]; 4], |s| {
    ///     let totals = s.update_state_by_key(|new: Vec<i32>, total: Option<i32>| {
    ///         Some(total.unwrap_or(0) + new.len() as i32)
    ///     });
    ///     totals.checkpoint(BATCH).transform(|state, _| {
    ///         let batches = state.lineage_batches();
    ///         state.map(move |_| batches)
    ///     })
    /// });
    /// assert_eq!(out, vec![vec![1], vec![2], vec![2], vec![2]]);
    /// ```
    #[track_caller]
    pub fn checkpoint(&self, interval: Duration) -> DStream<T> {
        let op = OpInfo::caller("checkpoint");
        if !crate::time::is_multiple(interval, self.slide_duration()) {
            self.graph().add_error(GraphError::NotMultipleOfSlide {
                stream: op.to_string(),
                what: "checkpoint interval",
                duration: interval,
                unit: self.slide_duration(),
            });
        }
        self.core
            .info
            .set_checkpoint(CheckpointSetting::Every(interval));
        self.clone()
    }

    /// Marks a stateful stream whose partitions hold `keys(records)` keys each: checkpointed
    /// at the default interval unless [`checkpoint`](DStream::checkpoint) set one, its key
    /// count reported with each data checkpoint.
    pub(crate) fn stateful_with_keys(
        self,
        keys: impl Fn(&[T]) -> usize + Send + Sync + 'static,
    ) -> DStream<T> {
        let _ = self.core.key_counter.set(Arc::new(keys));
        self.stateful()
    }

    /// Marks a stateful stream whose state is partitioned by `partitioning`, which a restore
    /// from a data checkpoint resolves to the checkpoint's partition count.
    pub(crate) fn with_state_partitioning(self, partitioning: Arc<StatePartitioning>) -> Self {
        let _ = self.core.state_partitioning.set(partitioning);
        self
    }

    /// Marks a stateful stream: checkpointed at the default interval unless
    /// [`checkpoint`](DStream::checkpoint) set one.
    pub(crate) fn stateful(self) -> DStream<T> {
        if self.core.info.checkpoint_setting() == CheckpointSetting::Off {
            self.core.info.set_checkpoint(CheckpointSetting::Default);
        }
        self
    }

    /// Whether `t` is one of this stream's batch times: after the graph's zero time, by a
    /// whole number of slides (Spark: `DStream.isTimeValid`).
    pub(crate) fn is_time_valid(&self, t: Time) -> bool {
        let Some(zero) = self.graph().zero_time() else {
            return false;
        };
        if self.graph().executor_floor().is_some_and(|floor| t < floor) {
            return false;
        }
        t > zero
            && (t - zero)
                .as_millis()
                .is_multiple_of(self.slide_duration().as_millis().max(1))
    }

    /// This stream's RDD for batch `t`: generated once, then remembered (Spark:
    /// `DStream.getOrCompute`). `None` when `t` is not one of this stream's batch times.
    ///
    /// # Errors
    /// [`Error::Compute`] naming the stream when its computation (a user `transform`
    /// function, say) failed or panicked; parents' errors as they are.
    pub(crate) fn get_or_compute(&self, t: Time) -> Result<Option<Rdd<T>>> {
        if let Some(rdd) = self.core.generated.lock().get(&t) {
            return Ok(Some(rdd.clone()));
        }
        if !self.is_time_valid(t) {
            return Ok(None);
        }
        let scope = IdScope::new(self.core.info.id, t);
        let computed = with_scope(scope, || {
            catch_unwind(AssertUnwindSafe(|| (self.core.compute)(self, t)))
        });
        let rdd = match computed {
            Ok(result) => result?,
            Err(payload) => {
                return Err(Error::Compute {
                    batch_time: t,
                    stream: self.op().to_string(),
                    message: format!("panicked: {}", panic_message(&*payload)),
                })
            }
        };
        if let Some(rdd) = &rdd {
            rdd.mark_generated();
            if self.core.info.cache.load(Ordering::Relaxed) {
                rdd.cache();
            }
            self.core.generated.lock().insert(t, rdd.clone());
        }
        Ok(rdd)
    }

    /// The RDDs of this stream's batch times from `from` (rounded down to one of them) to
    /// `to`, both ends included, in time order (Spark: `DStream.slice`). Times before the
    /// stream started, and times no longer remembered that cannot be recomputed, give no
    /// RDD; use [`StreamingConfig::remember`](crate::config::StreamingConfig::remember) to
    /// keep more. Call it from an output operation (it may compute RDDs).
    ///
    /// # Errors
    /// As the computation of any of the RDDs.
    ///
    /// # Examples
    /// Each batch with the one before, from an output operation: both ends are included.
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use rivulet_framework::rdd::Rdd;
    /// use rivulet_framework::testing::{run_batches, BATCH};
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let log = seen.clone();
    /// run_batches(vec![vec![1], vec![2, 3], vec![4]], |s| {
    ///     let source = s.clone();
    ///     s.foreach_rdd(move |_, t| {
    ///         let rdds = source.slice(t - BATCH, t)?; // batch times t - 1 s and t
    ///         log.lock().unwrap().push(Rdd::union_all(&rdds).collect()?);
    ///         Ok(())
    ///     });
    ///     s
    /// });
    /// assert_eq!(*seen.lock().unwrap(), vec![vec![1], vec![1, 2, 3], vec![2, 3, 4]]);
    /// ```
    pub fn slice(&self, from: Time, to: Time) -> Result<Vec<Rdd<T>>> {
        let Some(first) = self.floor_to_batch_time(from) else {
            return Ok(Vec::new());
        };
        self.rdds_in(first - Duration::from_millis(1), to)
    }

    /// The latest of this stream's batch times (`zero + k * slide`) not after `t`; `None`
    /// before start.
    fn floor_to_batch_time(&self, t: Time) -> Option<Time> {
        let zero = self.graph().zero_time()?;
        let slide = crate::time::duration_ms(self.slide_duration()).max(1);
        Some(Time::from_ms(
            t.as_ms() - (t.as_ms() - zero.as_ms()).rem_euclid(slide),
        ))
    }

    /// The RDD of every batch time of this stream in `(from, to]`, in time order (Spark:
    /// `DStream.slice`, with the left end open as its windows use it); times this stream
    /// has no RDD for are skipped.
    ///
    /// # Errors
    /// As the computation of any of the RDDs.
    pub(crate) fn rdds_in(&self, from: Time, to: Time) -> Result<Vec<Rdd<T>>> {
        let mut rdds = Vec::new();
        let Some(aligned) = self.floor_to_batch_time(from) else {
            return Ok(rdds);
        };
        for t in Time::steps_after(aligned, to, self.slide_duration()) {
            if let Some(rdd) = self.get_or_compute(t)? {
                rdds.push(rdd);
            }
        }
        Ok(rdds)
    }
}
