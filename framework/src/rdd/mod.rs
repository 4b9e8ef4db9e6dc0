//! Resilient distributed datasets: immutable, partitioned, with lineage (Spark: `RDD`).
//!
//! An [`Rdd<T>`] is a cheap handle over an `Arc`. It knows its id, its partition count, its
//! [`Dependency`]s (narrow, or shuffle), and how to compute one partition as an iterator.
//! Narrow operators wrap their parent's iterator, so a chain of them runs as one pass per
//! partition inside one task (DESIGN invariant 3). Data is materialized only in blocks, shuffle
//! buckets and cached partitions.
//!
//! Transformations are lazy; actions ([`Rdd::collect`], [`Rdd::count`], ...) run a job on the
//! context's executors and block until it finishes.
//!
//! # Examples
//! ```
//! use rivulet_framework::testing::local_context;
//!
//! let ctx = local_context(2);
//! let words = ctx.parallelize(vec!["a b", "b c", "c"].into_iter().map(String::from).collect(), 2);
//! let mut counts = words
//!     .flat_map(|l: String| l.split(' ').map(String::from).collect::<Vec<_>>())
//!     .map(|w| (w, 1u64))
//!     .reduce_by_key(|a, b| a + b)
//!     .collect()
//!     .unwrap();
//! counts.sort();
//! assert_eq!(counts, vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 2)]);
//! ```

mod actions;
mod checkpoint;
mod combine;
mod id;
mod join;
mod narrow;
mod pair;

pub(crate) use actions::Existing;
pub(crate) use narrow::{map_partitions, zip_partitions};
pub(crate) use pair::Aggregator;
mod shuffle;
mod source;
mod stand_in;
mod transform;

pub use combine::KeyedCombiner;
pub use id::{RddId, ShuffleId, STATIC_SCOPE};
pub use shuffle::{MapStatus, ShuffleMap};

pub(crate) use checkpoint::{checkpoint_rdd, KeyCounter};
pub(crate) use id::{with_scope, IdScope};
pub(crate) use source::{block_rdd, empty_rdd};
pub(crate) use stand_in::stand_in_rdd;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::block::{BlockId, ExecutorId};
use crate::checkpoint::{CheckpointStore, MemoryCheckpointStore};
use crate::data::Data;
use crate::error::{Error, OpInfo, Result};
use crate::partitioner::HashPartitioner;
use crate::scheduler::{JobRunner, TaskContext};

/// The records of one partition, as an iterator that owns what it needs.
pub type PartitionIter<T> = Box<dyn Iterator<Item = T>>;

/// How an RDD depends on a parent (Spark: `Dependency`).
#[derive(Clone)]
pub enum Dependency {
    /// Each partition needs a bounded set of parent partitions, computed in the same task
    /// (Spark: `NarrowDependency`).
    Narrow(Arc<dyn RddBase>),
    /// Each partition needs a bucket of every parent partition: a stage boundary
    /// (Spark: `ShuffleDependency`).
    Shuffle(Arc<dyn ShuffleMap>),
}

impl Dependency {
    /// The parent RDD: the narrow parent, or the map side of the shuffle.
    pub fn parent(&self) -> Arc<dyn RddBase> {
        match self {
            Dependency::Narrow(parent) => parent.clone(),
            Dependency::Shuffle(map) => map.parent(),
        }
    }
}

impl fmt::Debug for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dependency::Narrow(r) => write!(f, "Narrow({})", r.meta().id),
            Dependency::Shuffle(s) => write!(f, "Shuffle({})", s.shuffle_id()),
        }
    }
}

/// What every RDD shares, whatever its record type: the context RDDs run in.
pub struct RddContext {
    runner: OnceLock<Arc<dyn JobRunner>>,
    checkpoints: OnceLock<Arc<dyn CheckpointStore>>,
    default_parallelism: usize,
    state_parallelism: OnceLock<usize>,
    task_threads: OnceLock<usize>,
    static_scope: Arc<IdScope>,
}

impl RddContext {
    /// A context whose shuffles default to `default_parallelism` partitions; its job runner
    /// is set later with [`set_runner`](RddContext::set_runner).
    pub fn new(default_parallelism: usize) -> Arc<RddContext> {
        Arc::new(RddContext {
            runner: OnceLock::new(),
            checkpoints: OnceLock::new(),
            default_parallelism: default_parallelism.max(1),
            state_parallelism: OnceLock::new(),
            task_threads: OnceLock::new(),
            static_scope: IdScope::new_static(),
        })
    }

    /// Sets the runner that actions use; only the first call has an effect.
    pub fn set_runner(&self, runner: Arc<dyn JobRunner>) {
        let _ = self.runner.set(runner);
    }

    /// Sets the store that data checkpoints are written to and read back from; only the
    /// first call has an effect, and only before the first checkpoint (default: a
    /// [`MemoryCheckpointStore`]).
    pub fn set_checkpoint_store(&self, store: Arc<dyn CheckpointStore>) {
        let _ = self.checkpoints.set(store);
    }

    /// The checkpoint store (a [`MemoryCheckpointStore`] unless one was set).
    pub fn checkpoint_store(&self) -> &Arc<dyn CheckpointStore> {
        self.checkpoints
            .get_or_init(|| Arc::new(MemoryCheckpointStore::new()))
    }

    /// The runner, if set.
    pub(crate) fn runner(&self) -> Result<&Arc<dyn JobRunner>> {
        self.runner.get().ok_or_else(|| {
            Error::NotRunning("no job runner yet (start the streaming context first)".into())
        })
    }

    /// The scope of RDDs created outside a DStream's batch computation.
    pub(crate) fn static_scope(&self) -> &Arc<IdScope> {
        &self.static_scope
    }

    /// Partitions of shuffles without an explicit count.
    pub fn default_parallelism(&self) -> usize {
        self.default_parallelism
    }

    /// Sets the partition count of stateful streams' state without an explicit count (at
    /// least 1); only the first call has an effect, and only before a state is partitioned.
    pub fn set_state_parallelism(&self, n: usize) {
        let _ = self.state_parallelism.set(n.max(1));
    }

    /// Partitions of stateful streams' state without an explicit count: as set, else the
    /// [default parallelism](RddContext::default_parallelism).
    pub fn state_parallelism(&self) -> usize {
        self.state_parallelism
            .get()
            .copied()
            .unwrap_or(self.default_parallelism)
    }

    /// Sets how many tasks the run's executors can run at once, the executor processes'
    /// task threads included (at least 1; Spark: the total cores of all executors); only
    /// the first call has an effect. Map stages spread over all of them, so this, not the
    /// shuffles' partition count, sizes what a map stage is cut into (see
    /// [`task_threads`](RddContext::task_threads)).
    pub fn set_task_threads(&self, n: usize) {
        let _ = self.task_threads.set(n.max(1));
    }

    /// How many tasks the run's executors can run at once: as set, else the
    /// [default parallelism](RddContext::default_parallelism). A receiver's blocks are capped
    /// at its buffer over twice this, so that a source that fills its buffer within one
    /// block interval still gives a batch a map task for every task thread, twice over.
    pub fn task_threads(&self) -> usize {
        self.task_threads
            .get()
            .copied()
            .unwrap_or(self.default_parallelism)
    }

    /// An RDD of `data` cut into `partitions` contiguous slices (Spark:
    /// `SparkContext.parallelize`); partition `i` holds `data[i*n/p .. (i+1)*n/p]`.
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn parallelize<T: Data>(self: &Arc<Self>, data: Vec<T>, partitions: usize) -> Rdd<T> {
        self.parallelize_op(OpInfo::caller("parallelize"), data, partitions)
    }

    pub(crate) fn parallelize_op<T: Data>(
        self: &Arc<Self>,
        op: OpInfo,
        data: Vec<T>,
        partitions: usize,
    ) -> Rdd<T> {
        assert!(partitions > 0, "parallelize needs at least one partition");
        source::parallelize(self, &self.static_scope, op, data, partitions)
    }
}

impl fmt::Debug for RddContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RddContext")
            .field("default_parallelism", &self.default_parallelism)
            .field("has_runner", &self.runner.get().is_some())
            .finish()
    }
}

/// What every RDD knows of itself, whatever its record type.
pub struct RddMeta {
    id: RddId,
    op: OpInfo,
    num_partitions: usize,
    dependencies: Vec<Dependency>,
    partitioner: Option<HashPartitioner>,
    cached: AtomicBool,
    /// Whether it reads input that any process can read, and nothing else: received blocks
    /// or a polled source's splits (see [`computable_remotely`]).
    portable_input: bool,
    /// Set when a DStream generated it for a batch ([`Rdd::mark_generated`]): computes and
    /// caches a partition without knowing the record type, for a stage that materializes it.
    materializer: OnceLock<Materializer>,
    /// Set once its partitions are in a data checkpoint: the RDD that reads them back (an
    /// `Rdd<T>` of this one's record type), which computes a partition in place of this
    /// one's lineage, and from then on [`dependencies`](RddMeta::dependencies) is empty: an
    /// RDD of a later batch generated before the checkpoint was written still reads this
    /// one, and its lineage must be cut as well (Spark: `RDD.markCheckpointed`).
    checkpointed: OnceLock<Arc<dyn std::any::Any + Send + Sync>>,
    scope: Arc<IdScope>,
    ctx: Arc<RddContext>,
}

/// Computes partition `p` of an RDD into its executor's block store; returns its records.
type Materializer = Box<dyn Fn(usize, &TaskContext) -> Result<usize> + Send + Sync>;

/// Whether an executor in another process can compute `rdd`'s partitions for batch `t`
/// from the batch's input as the coordinator decided it
/// ([`BatchInput`](crate::dstream::BatchInput): its block allocation and its polled inputs'
/// splits) alone: every RDD of its narrow lineage (up to shuffle boundaries, whose buckets
/// are fetched by id) was created by a DStream's computation of batch `t` itself, and every
/// leaf reads received blocks or the splits of a polled source that executor processes may
/// read ([`PolledSource::read_anywhere`](crate::dstream::PolledSource::read_anywhere): Kafka,
/// Redis Streams, NATS, a directory). Such an executor generates batch `t` with the same
/// program and finds the same RDDs under the same ids.
///
/// `false` for lineage that reaches RDDs of earlier batches (windows, state), queue data,
/// polled sources that only the coordinator may read, data checkpoints and RDDs built
/// outside a batch: those stages run on the coordinator's in-process executors.
pub fn computable_remotely(rdd: &dyn RddBase, t: crate::time::Time) -> bool {
    computable_remotely_with(rdd, t, &|_| false)
}

/// As [`computable_remotely`], where an RDD of an earlier batch for which `cached` holds
/// (every partition in some executor's block store) is also a leaf: an executor process
/// reads its partitions from the block stores (fetched through the coordinator) and never
/// computes them (the batch's [`BatchInput`](crate::dstream::BatchInput) names them, and
/// the process puts a stand-in without lineage in each one's place, which fails rather
/// than compute). RDDs of batch `t` itself follow the rules above even when cached: a
/// process that misses one computes it from its own lineage, which must be portable.
pub fn computable_remotely_with(
    rdd: &dyn RddBase,
    t: crate::time::Time,
    cached: &dyn Fn(&RddMeta) -> bool,
) -> bool {
    let meta = rdd.meta();
    if meta.id.scope == id::STATIC_SCOPE {
        return false;
    }
    if meta.id.time_ms != t.as_ms() {
        return meta.id.time_ms < t.as_ms() && cached(meta);
    }
    if meta.portable_input {
        return true;
    }
    !meta.dependencies().is_empty()
        && meta.dependencies().iter().all(|d| match d {
            Dependency::Narrow(parent) => computable_remotely_with(&**parent, t, cached),
            Dependency::Shuffle(_) => true,
        })
}

/// Whether computing `rdd`'s partitions for batch `t` reads a cached RDD of an earlier batch
/// (for which `cached` holds) through narrow dependencies: a stateful stream's previous
/// state, a window's earlier batches.
pub fn reads_earlier_cache(
    rdd: &dyn RddBase,
    t: crate::time::Time,
    cached: &dyn Fn(&RddMeta) -> bool,
) -> bool {
    let meta = rdd.meta();
    if cached(meta) {
        return meta.id.time_ms < t.as_ms();
    }
    meta.dependencies().iter().any(|d| match d {
        Dependency::Narrow(parent) => reads_earlier_cache(&**parent, t, cached),
        Dependency::Shuffle(_) => false,
    })
}

impl RddMeta {
    /// Metadata for an RDD created from parent metadata `like` (inherits context and scope).
    pub(crate) fn derived(
        like: &RddMeta,
        op: OpInfo,
        num_partitions: usize,
        dependencies: Vec<Dependency>,
        partitioner: Option<HashPartitioner>,
    ) -> RddMeta {
        RddMeta::in_scope(
            &like.ctx,
            &like.scope,
            op,
            num_partitions,
            |_| dependencies,
            partitioner,
        )
    }

    /// Metadata for a new RDD in `scope` (or the DStream scope active on this thread); its
    /// dependencies are built from its new id (a shuffle is named after the RDD reading it).
    pub(crate) fn in_scope(
        ctx: &Arc<RddContext>,
        scope: &Arc<IdScope>,
        op: OpInfo,
        num_partitions: usize,
        dependencies: impl FnOnce(RddId) -> Vec<Dependency>,
        partitioner: Option<HashPartitioner>,
    ) -> RddMeta {
        let (id, scope) = id::next_id(scope);
        let dependencies = dependencies(id);
        RddMeta {
            id,
            op,
            num_partitions,
            dependencies,
            partitioner,
            cached: AtomicBool::new(false),
            portable_input: false,
            materializer: OnceLock::new(),
            checkpointed: OnceLock::new(),
            scope,
            ctx: ctx.clone(),
        }
    }

    /// Marks this RDD as reading only input any process can read (a block RDD, a polled
    /// source's splits that executor processes may read): the leaves an executor in another
    /// process can rebuild from a batch's [`BatchInput`](crate::dstream::BatchInput).
    pub(crate) fn reads_portable_input(mut self) -> RddMeta {
        self.portable_input = true;
        self
    }

    /// Metadata for an RDD that takes the place of RDD `id` (a checkpointed RDD read back).
    pub(crate) fn with_id(
        ctx: &Arc<RddContext>,
        id: RddId,
        op: OpInfo,
        num_partitions: usize,
        partitioner: Option<HashPartitioner>,
    ) -> RddMeta {
        RddMeta {
            id,
            op,
            num_partitions,
            dependencies: Vec::new(),
            partitioner,
            cached: AtomicBool::new(true),
            portable_input: false,
            materializer: OnceLock::new(),
            checkpointed: OnceLock::new(),
            scope: ctx.static_scope.clone(),
            ctx: ctx.clone(),
        }
    }

    /// The RDD's id.
    pub fn id(&self) -> RddId {
        self.id
    }
    /// The operator that created it and where.
    pub fn op(&self) -> OpInfo {
        self.op
    }
    /// How many partitions it has.
    pub fn num_partitions(&self) -> usize {
        self.num_partitions
    }
    /// Its parents; none once it is checkpointed (its partitions are read back from the
    /// data checkpoint).
    pub fn dependencies(&self) -> &[Dependency] {
        match self.checkpointed.get() {
            Some(_) => &[],
            None => &self.dependencies,
        }
    }
    /// How its records are placed in partitions, when known (after a shuffle by key).
    pub fn partitioner(&self) -> Option<HashPartitioner> {
        self.partitioner
    }
    /// Whether its partitions are kept in block stores once computed.
    pub fn is_cached(&self) -> bool {
        self.cached.load(Ordering::Relaxed)
    }
    /// Whether a DStream generated it for a batch: any process running the program
    /// generates the same RDD under the same id, so a stage that
    /// [materializes](RddMeta::materialize) it may run in an executor process.
    pub fn is_generated(&self) -> bool {
        self.materializer.get().is_some()
    }
    /// Marks the RDD cached and computes partition `p` into the executor's block store
    /// (read from the store when it is already there); returns its records. `None` when
    /// the RDD was not [generated](RddMeta::is_generated) by a DStream.
    ///
    /// # Errors
    /// As computing the partition: a missing block or shuffle output, a failed user
    /// function.
    pub fn materialize(&self, partition: usize, ctx: &TaskContext) -> Option<Result<usize>> {
        let materialize = self.materializer.get()?;
        self.mark_cached();
        Some(materialize(partition, ctx))
    }
    /// Marks the RDD cached: a partition computed from now on is kept in its executor's
    /// block store, and read from there.
    pub(crate) fn mark_cached(&self) {
        self.cached.store(true, Ordering::Relaxed);
    }
    /// The block id of its cached partition `p`.
    pub fn block_id(&self, partition: usize) -> BlockId {
        BlockId::Rdd {
            rdd: self.id,
            partition: partition as u32,
        }
    }
    pub(crate) fn ctx(&self) -> &Arc<RddContext> {
        &self.ctx
    }
    pub(crate) fn scope(&self) -> &Arc<IdScope> {
        &self.scope
    }
}

impl fmt::Debug for RddMeta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rdd")
            .field("id", &self.id)
            .field("op", &self.op)
            .field("partitions", &self.num_partitions)
            .field("dependencies", &self.dependencies)
            .finish()
    }
}

/// An RDD seen without its record type: what scheduling needs (Spark's `RDD[_]`).
pub trait RddBase: Send + Sync + 'static {
    /// Id, partitions, dependencies, partitioner.
    fn meta(&self) -> &RddMeta;
    /// Executors where partition `p`'s input already lives (Spark: `preferredLocations`).
    fn preferred_locations(&self, _partition: usize) -> Vec<ExecutorId> {
        Vec::new()
    }
}

/// An RDD with its record type: it can compute a partition.
pub(crate) trait RddImpl<T>: RddBase {
    /// Computes partition `p`. Errors arise only here, before iteration starts (a missing
    /// block or shuffle bucket); user functions that fail panic, and the task catches it.
    fn compute(&self, partition: usize, ctx: &TaskContext) -> Result<PartitionIter<T>>;

    /// Partition `p`'s records as the shared `Vec` this RDD keeps them in (a block, a
    /// slice), for operators that read records by reference and clone only what they keep;
    /// `None` when the records must be computed.
    fn shared(&self, _partition: usize, _ctx: &TaskContext) -> Option<Result<Arc<Vec<T>>>> {
        None
    }
}

/// A resilient distributed dataset of `T` records: a cheap, cloneable handle.
pub struct Rdd<T> {
    inner: Arc<dyn RddImpl<T>>,
}

impl<T> Clone for Rdd<T> {
    fn clone(&self) -> Self {
        Rdd {
            inner: self.inner.clone(),
        }
    }
}

impl<T: 'static> fmt::Debug for Rdd<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.meta().fmt(f)
    }
}

impl<T: Data> Rdd<T> {
    pub(crate) fn new(inner: impl RddImpl<T> + 'static) -> Rdd<T> {
        Rdd {
            inner: Arc::new(inner),
        }
    }

    /// The RDD's derived id.
    pub fn id(&self) -> RddId {
        self.inner.meta().id
    }
    /// How many partitions it has.
    pub fn num_partitions(&self) -> usize {
        self.inner.meta().num_partitions
    }
    /// Its parents (its lineage, one level up).
    pub fn dependencies(&self) -> &[Dependency] {
        self.inner.meta().dependencies()
    }
    /// How its records are placed in partitions, when known.
    pub fn partitioner(&self) -> Option<HashPartitioner> {
        self.inner.meta().partitioner
    }
    /// The operator that created it and its call site.
    pub fn op(&self) -> OpInfo {
        self.inner.meta().op
    }
    /// The RDD without its record type.
    pub fn as_base(&self) -> Arc<dyn RddBase> {
        self.inner.clone()
    }
    pub(crate) fn meta(&self) -> &RddMeta {
        self.inner.meta()
    }
    pub(crate) fn context(&self) -> &Arc<RddContext> {
        &self.inner.meta().ctx
    }

    /// Keeps each partition in its executor's block store once computed, so later jobs (and
    /// the next batch of a stateful stream) read it instead of recomputing its lineage
    /// (Spark: `RDD.cache`). Marks this RDD and returns it.
    pub fn cache(&self) -> Rdd<T> {
        self.inner.meta().cached.store(true, Ordering::Relaxed);
        self.clone()
    }

    /// Whether [`cache`](Rdd::cache) was called.
    pub fn is_cached(&self) -> bool {
        self.inner.meta().is_cached()
    }

    /// Marks this RDD as generated by a DStream for a batch (see
    /// [`RddMeta::is_generated`]), so that a stage can materialize it without its type.
    pub(crate) fn mark_generated(&self) {
        let weak = Arc::downgrade(&self.inner);
        let _ = self.inner.meta().materializer.set(Box::new(move |p, ctx| {
            let inner = weak.upgrade().ok_or_else(|| {
                Error::Internal("a materialized RDD was dropped while its task ran".into())
            })?;
            Rdd { inner }.materialize(p, ctx)
        }));
    }

    /// Partition `p` in the executor's block store, computed if it is not there yet;
    /// returns its records.
    fn materialize(&self, partition: usize, ctx: &TaskContext) -> Result<usize> {
        let id = self.inner.meta().block_id(partition);
        if let Some(records) = ctx.get_records::<T>(&id) {
            return Ok(records?.len());
        }
        let records: Vec<T> = self.compute(partition, ctx)?.collect();
        let n = records.len();
        ctx.put_records(id, Arc::new(records));
        Ok(n)
    }

    /// Where partition `p` is: the executors holding it when it is cached there, else
    /// where its input is (Spark: `getPreferredLocs` looks at the cache first).
    pub(crate) fn locations(&self, partition: usize) -> Vec<ExecutorId> {
        let meta = self.inner.meta();
        if meta.is_cached() {
            let cached = meta
                .ctx()
                .runner()
                .ok()
                .and_then(|r| r.block_locations(&meta.block_id(partition)))
                .unwrap_or_default();
            if !cached.is_empty() {
                return cached;
            }
        }
        self.inner.preferred_locations(partition)
    }

    /// Partition `p` computed: from its lineage, or read back from its data checkpoint once
    /// it has one (Spark: `RDD.computeOrReadCheckpoint`).
    fn compute(&self, partition: usize, ctx: &TaskContext) -> Result<PartitionIter<T>> {
        let checkpoint = self.inner.meta().checkpointed.get();
        match checkpoint.and_then(|c| c.downcast_ref::<Rdd<T>>()) {
            Some(read_back) => read_back.inner.compute(partition, ctx),
            None => self.inner.compute(partition, ctx),
        }
    }

    /// Marks this RDD checkpointed: `read_back` (the RDD reading its data checkpoint)
    /// computes its partitions from now on, and its lineage is cut.
    pub(crate) fn mark_checkpointed(&self, read_back: &Rdd<T>) {
        let _ = self
            .inner
            .meta()
            .checkpointed
            .set(Arc::new(read_back.clone()));
    }

    /// Partition `p`'s records as a shared `Vec`, without cloning them, when they are kept
    /// as one: the cached partition, an input block, a parallelized slice. `None` when they
    /// must be computed (then [`iterator`](Rdd::iterator) computes and caches them).
    pub(crate) fn shared_partition(
        &self,
        partition: usize,
        ctx: &TaskContext,
    ) -> Option<Result<Arc<Vec<T>>>> {
        let meta = self.inner.meta();
        if !meta.is_cached() {
            return self.inner.shared(partition, ctx);
        }
        let id = meta.block_id(partition);
        ctx.get_records(&id)
    }

    /// Partition `p`'s records, shared when they are kept as one `Vec` (see
    /// [`shared_partition`](Rdd::shared_partition); not once the RDD is checkpointed, whose
    /// records are then read back), else as [`iterator`](Rdd::iterator) gives them.
    pub(crate) fn partition_records(
        &self,
        partition: usize,
        ctx: &TaskContext,
    ) -> Result<PartitionRecords<T>> {
        if self.inner.meta().checkpointed.get().is_none() {
            if let Some(shared) = self.shared_partition(partition, ctx) {
                return Ok(PartitionRecords::Shared(shared?));
            }
        }
        Ok(PartitionRecords::Computed(self.iterator(partition, ctx)?))
    }

    /// Partition `p`'s records: from the cache when the RDD is cached and the partition is
    /// there, else computed (and cached if asked) (Spark: `RDD.iterator`).
    pub(crate) fn iterator(&self, partition: usize, ctx: &TaskContext) -> Result<PartitionIter<T>> {
        let meta = self.inner.meta();
        if !meta.is_cached() {
            return self.compute(partition, ctx);
        }
        if let Some(records) = self.shared_partition(partition, ctx) {
            return Ok(Box::new(SharedIter::new(records?)));
        }
        let id = meta.block_id(partition);
        let records: Vec<T> = self.compute(partition, ctx)?.collect();
        let records = Arc::new(records);
        ctx.put_records(id, records.clone());
        Ok(Box::new(SharedIter::new(records)))
    }
}

/// A partition's records as a task receives them: computed, or kept as one shared `Vec`
/// (a block, a cached partition, a parallelized slice) that can be read by reference.
pub(crate) enum PartitionRecords<T> {
    /// Computed from lineage: each record is owned.
    Computed(PartitionIter<T>),
    /// Kept as one shared `Vec`: the records stay intact for recomputation.
    Shared(Arc<Vec<T>>),
}

impl<T: Clone + 'static> PartitionRecords<T> {
    /// Every record by value: shared records are cloned one by one.
    pub(crate) fn into_records(self) -> PartitionIter<T> {
        match self {
            PartitionRecords::Computed(records) => records,
            PartitionRecords::Shared(records) => Box::new(SharedIter::new(records)),
        }
    }

    /// Calls `f` on every record by reference, in order: shared records are not cloned.
    pub(crate) fn for_each_ref(self, mut f: impl FnMut(&T)) {
        match self {
            PartitionRecords::Computed(records) => records.for_each(|r| f(&r)),
            PartitionRecords::Shared(records) => records.iter().for_each(f),
        }
    }
}

/// Iterates a shared `Vec` by cloning each record (blocks stay intact for recomputation).
pub(crate) struct SharedIter<T> {
    records: Arc<Vec<T>>,
    next: usize,
}

impl<T> SharedIter<T> {
    pub(crate) fn new(records: Arc<Vec<T>>) -> SharedIter<T> {
        SharedIter { records, next: 0 }
    }
}

impl<T: Clone> Iterator for SharedIter<T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        let item = self.records.get(self.next)?.clone();
        self.next += 1;
        Some(item)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.records.len().saturating_sub(self.next);
        (n, Some(n))
    }
}

/// Iterates a shared `Vec` by reference and clones only the records `keep` accepts: a
/// filter over a block or a cached partition copies what it keeps, not every record.
pub(crate) struct SharedFilter<T, F> {
    records: Arc<Vec<T>>,
    next: usize,
    keep: F,
}

impl<T, F> SharedFilter<T, F> {
    pub(crate) fn new(records: Arc<Vec<T>>, keep: F) -> SharedFilter<T, F> {
        SharedFilter {
            records,
            next: 0,
            keep,
        }
    }
}

impl<T: Clone, F: FnMut(&T) -> bool> Iterator for SharedFilter<T, F> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        while let Some(record) = self.records.get(self.next) {
            self.next += 1;
            if (self.keep)(record) {
                return Some(record.clone());
            }
        }
        None
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.records.len().saturating_sub(self.next)))
    }
}
