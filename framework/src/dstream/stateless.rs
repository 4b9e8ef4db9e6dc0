//! Per-batch operators of `DStream<T>`: each batch's RDD is transformed on its own (Spark:
//! `MappedDStream`, `FilteredDStream`, `TransformedDStream`, `UnionDStream`, ...), all thin
//! layers over [`DStream::transform`]'s mechanism.

use std::sync::Arc;
use std::time::Duration;

use crate::data::{Data, Key};
use crate::dstream::DStream;
use crate::error::{Error, GraphError, OpInfo, Result};
use crate::partitioner::HashPartitioner;
use crate::rdd::{PartitionIter, Rdd};
use crate::time::Time;

impl<T: Data> DStream<T> {
    /// Applies `f` to every record. **Records:** `T` → `U` per record. Spark: `DStream.map`.
    #[track_caller]
    pub fn map<U: Data>(&self, f: impl Fn(T) -> U + Send + Sync + 'static) -> DStream<U> {
        self.map_op(OpInfo::caller("map"), f)
    }

    pub(crate) fn map_op<U: Data>(
        &self,
        op: OpInfo,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> DStream<U> {
        let f = Arc::new(f);
        self.derive(op, move |rdd, _| {
            let f = f.clone();
            rdd.map_op(op, move |x| f(x))
        })
    }

    /// Applies `f` to every record and flattens. **Records:** `T` → zero or more `U`.
    /// Spark: `DStream.flatMap`.
    #[track_caller]
    pub fn flat_map<U, I>(&self, f: impl Fn(T) -> I + Send + Sync + 'static) -> DStream<U>
    where
        U: Data,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
    {
        let op = OpInfo::caller("flat_map");
        let f = Arc::new(f);
        self.derive(op, move |rdd, _| {
            let f = f.clone();
            rdd.flat_map_op(op, move |x| f(x))
        })
    }

    /// Keeps the records for which `f` is true. Spark: `DStream.filter`.
    #[track_caller]
    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> DStream<T> {
        let op = OpInfo::caller("filter");
        let f = Arc::new(f);
        self.derive(op, move |rdd, _| {
            let f = f.clone();
            rdd.filter_op(op, move |x| f(x))
        })
    }

    /// Turns each partition of each batch with `f`. Spark: `DStream.mapPartitions`.
    #[track_caller]
    pub fn map_partitions<U, I>(
        &self,
        f: impl Fn(PartitionIter<T>) -> I + Send + Sync + 'static,
    ) -> DStream<U>
    where
        U: Data,
        I: IntoIterator<Item = U>,
        I::IntoIter: 'static,
    {
        let op = OpInfo::caller("map_partitions");
        let f = Arc::new(f);
        self.derive(op, move |rdd, _| {
            let f = f.clone();
            rdd.map_partitions_with_index_op(op, move |_, it| f(it))
        })
    }

    /// Each partition of each batch as one `Vec`. Spark: `DStream.glom`.
    #[track_caller]
    pub fn glom(&self) -> DStream<Vec<T>> {
        let op = OpInfo::caller("glom");
        self.derive(op, move |rdd, _| rdd.glom_op(op))
    }

    /// Each batch spread evenly over `partitions` partitions by a shuffle. Spark:
    /// `DStream.repartition`.
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn repartition(&self, partitions: usize) -> DStream<T> {
        assert!(partitions > 0, "repartition needs at least one partition");
        let op = OpInfo::caller("repartition");
        self.derive(op, move |rdd, _| rdd.repartition_op(op, partitions))
    }

    /// Each batch's RDD turned into another by `f`, which gets the RDD and the batch time:
    /// any RDD operation (joins with static data, sampling, ...) per batch (Spark:
    /// `DStream.transform`). `f` runs while the batch is generated: it must build RDDs, not
    /// run actions.
    ///
    /// # Errors
    /// The batch fails with [`Error::Compute`] if this stream has no RDD at a batch time of
    /// the result, or if `f` panics.
    #[track_caller]
    pub fn transform<U: Data>(
        &self,
        f: impl Fn(&Rdd<T>, Time) -> Rdd<U> + Send + Sync + 'static,
    ) -> DStream<U> {
        let op = OpInfo::caller("transform");
        let parent = self.clone();
        DStream::new_node(
            self.graph(),
            op,
            self.slide_duration(),
            vec![self.node()],
            Duration::ZERO,
            move |_, t| Ok(Some(f(&parent.require_rdd(t, op)?, t))),
        )
    }

    /// This stream's RDD at `t`, or an error naming `op` if it has none.
    pub(crate) fn require_rdd(&self, t: Time, op: OpInfo) -> Result<Rdd<T>> {
        self.get_or_compute(t)?.ok_or_else(|| Error::Compute {
            batch_time: t,
            stream: op.to_string(),
            message: format!(
                "parent stream `{}` produced no RDD for this batch",
                self.op()
            ),
        })
    }

    /// The records of both streams in each batch, this stream's first. Spark:
    /// `DStream.union`. Both must have the same slide duration; if not, `start` fails with
    /// [`GraphError::SlideMismatch`].
    #[track_caller]
    pub fn union(&self, other: &DStream<T>) -> DStream<T> {
        union_op(&[self.clone(), other.clone()], OpInfo::caller("union"))
    }

    /// The number of records in each batch, as a one-record RDD (0 for an empty batch).
    /// Spark: `DStream.count`.
    #[track_caller]
    pub fn count(&self) -> DStream<u64> {
        let op = OpInfo::caller("count");
        self.derive(op, move |rdd, _| {
            rdd.map_partitions_with_index_op(op, |_, records| {
                std::iter::once(records.count() as u64)
            })
            .repartition_op(op, 1)
            .map_partitions_with_index_op(op, |_, counts| std::iter::once(counts.sum::<u64>()))
        })
    }

    /// Each batch folded with an associative, commutative `f` into one record (no record for
    /// an empty batch). Spark: `DStream.reduce`.
    #[track_caller]
    pub fn reduce(&self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> DStream<T> {
        self.reduce_op(OpInfo::caller("reduce"), f)
    }

    pub(crate) fn reduce_op(
        &self,
        op: OpInfo,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
    ) -> DStream<T> {
        let f = Arc::new(f);
        self.derive(op, move |rdd, _| {
            let (f, g) = (f.clone(), f.clone());
            rdd.map_partitions_with_index_op(op, move |_, records| records.reduce(|a, b| f(a, b)))
                .repartition_op(op, 1)
                .map_partitions_with_index_op(op, move |_, partials| {
                    partials.reduce(|a, b| g(a, b))
                })
        })
    }
}

impl<T: Key> DStream<T> {
    /// How often each distinct record occurs in each batch. **Records:** `T` → `(T, u64)`
    /// per distinct record; default-parallelism partitions. Spark: `DStream.countByValue`.
    #[track_caller]
    pub fn count_by_value(&self) -> DStream<(T, u64)> {
        let op = OpInfo::caller("count_by_value");
        self.derive(op, move |rdd, _| {
            let p = HashPartitioner::new(rdd.context().default_parallelism());
            rdd.map_op(op, |x| (x, 1u64))
                .reduce_by_key_op(op, |a, b| a + b, p)
        })
    }
}

/// The union of `streams`, in order; records a graph error if they are empty or their
/// slides differ.
pub(crate) fn union_op<T: Data>(streams: &[DStream<T>], op: OpInfo) -> DStream<T> {
    let first = &streams[0];
    let slide = first.slide_duration();
    for s in &streams[1..] {
        if !Arc::ptr_eq(s.graph(), first.graph()) {
            first
                .graph()
                .add_error(GraphError::ForeignStream(op.to_string()));
        } else if s.slide_duration() != slide {
            first.graph().add_error(GraphError::SlideMismatch {
                stream: op.to_string(),
                left: slide,
                right: s.slide_duration(),
            });
        }
    }
    let parents: Vec<DStream<T>> = streams.to_vec();
    let nodes = parents.iter().map(|p| p.node()).collect();
    DStream::new_node(
        first.graph(),
        op,
        slide,
        nodes,
        Duration::ZERO,
        move |_, t| {
            let rdds = parents
                .iter()
                .map(|p| p.require_rdd(t, op))
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(Rdd::union_all_op(&rdds, op)))
        },
    )
}
