//! Per-batch operators of `DStream<T>`: each batch's RDD is transformed on its own (Spark:
//! `MappedDStream`, `FilteredDStream`, `TransformedDStream`, `UnionDStream`, ...), all thin
//! layers over [`DStream::transform`]'s mechanism.

use std::sync::Arc;
use std::time::Duration;

use crate::data::{Data, Key};
use crate::dstream::{check_same_slide, DStream, DStreamGraph};
use crate::error::{Error, GraphError, OpInfo, Result};
use crate::partitioner::HashPartitioner;
use crate::rdd::{PartitionIter, Rdd};
use crate::time::Time;

impl<T: Data> DStream<T> {
    /// Applies `f` to every record. **Records:** `T` → `U` per record. Spark: `DStream.map`.
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1, 2], vec![], vec![3]], |s| s.map(|x| x * 10));
    /// assert_eq!(out, vec![vec![10, 20], vec![], vec![30]]);
    /// ```
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
    ///
    /// # Examples
    /// Each `n` becomes `n` copies of itself (none for 0):
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1, 2], vec![0]], |s| s.flat_map(|n: usize| vec![n; n]));
    /// assert_eq!(out, vec![vec![1, 2, 2], vec![]]);
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1, 2, 3, 4], vec![5]], |s| s.filter(|x| x % 2 == 0));
    /// assert_eq!(out, vec![vec![2, 4], vec![]]);
    /// ```
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
    ///
    /// # Examples
    /// [`run_batches`](crate::testing::run_batches) cuts each batch into 2 partitions, here
    /// `[1, 2]` and `[3, 4]`; one sum per partition:
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1, 2, 3, 4]], |s| {
    ///     s.map_partitions(|records| std::iter::once(records.sum::<i32>()))
    /// });
    /// assert_eq!(out, vec![vec![3, 7]]);
    /// ```
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
    ///
    /// # Examples
    /// [`run_batches`](crate::testing::run_batches) cuts each batch into 2 contiguous partitions:
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1, 2, 3], vec![]], |s| s.glom());
    /// assert_eq!(out, vec![vec![vec![1], vec![2, 3]], vec![vec![], vec![]]]);
    /// ```
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
    ///
    /// # Examples
    /// Two partitions of 3 records each, dealt round-robin over 3 partitions: 2 records in each
    /// (which ones is not defined).
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1, 2, 3, 4, 5, 6]], |s| {
    ///     s.repartition(3).glom().map(|partition| partition.len())
    /// });
    /// assert_eq!(out, vec![vec![2, 2, 2]]);
    /// ```
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
    ///
    /// # Examples
    /// Each record tagged with its batch time (batch `k` of
    /// [`run_batches`](crate::testing::run_batches) is at `k` seconds):
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![7], vec![8, 9]], |s| {
    ///     s.transform(|rdd, t| rdd.map(move |x| (t.as_ms(), x)))
    /// });
    /// assert_eq!(out, vec![vec![(1000, 7)], vec![(2000, 8), (2000, 9)]]);
    /// ```
    #[track_caller]
    pub fn transform<U: Data>(
        &self,
        f: impl Fn(&Rdd<T>, Time) -> Rdd<U> + Send + Sync + 'static,
    ) -> DStream<U> {
        let op = OpInfo::caller("transform");
        let parent = self.clone();
        self.child(op, move |_, t| Ok(Some(f(&parent.require_rdd(t, op)?, t))))
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
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1, 2], vec![3]], |s| s.union(&s.map(|x| x * 10)));
    /// assert_eq!(out, vec![vec![1, 2, 10, 20], vec![3, 30]]);
    /// ```
    #[track_caller]
    pub fn union(&self, other: &DStream<T>) -> DStream<T> {
        union_op(&[self.clone(), other.clone()], OpInfo::caller("union"))
    }

    /// The number of records in each batch, as a one-record RDD (0 for an empty batch).
    /// Spark: `DStream.count`.
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec!['a', 'b', 'c'], vec![], vec!['d']], |s| s.count());
    /// assert_eq!(out, vec![vec![3], vec![0], vec![1]]);
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let out = run_batches(vec![vec![1, 2, 3], vec![], vec![4]], |s| s.reduce(|a, b| a + b));
    /// assert_eq!(out, vec![vec![6], vec![], vec![4]]);
    /// ```
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
    ///
    /// # Examples
    /// The order of a batch's records is not defined (they come from a shuffle): sort to compare.
    /// ```
    /// use rivulet_framework::testing::{run_batches, sorted};
    ///
    /// let out = run_batches(vec![vec!['x', 'y', 'x'], vec![]], |s| s.count_by_value());
    /// assert_eq!(sorted(out), vec![vec![('x', 2), ('y', 1)], vec![]]);
    /// ```
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

/// `f` over the RDDs of every stream in `streams` (at least one), batch by batch; records a
/// graph error if their slides differ.
pub(crate) fn transform_all_op<T: Data, R: Data>(
    streams: &[DStream<T>],
    op: OpInfo,
    f: impl Fn(&[Rdd<T>], Time) -> Rdd<R> + Send + Sync + 'static,
) -> DStream<R> {
    let slide = check_same_slide(op, streams.iter().map(|s| (s.graph(), s.slide_duration())));
    let parents: Vec<DStream<T>> = streams.to_vec();
    let nodes = parents.iter().map(|p| p.node()).collect();
    DStream::new_node(
        streams[0].graph(),
        op,
        slide,
        nodes,
        Duration::ZERO,
        move |_, t| {
            let rdds = parents
                .iter()
                .map(|p| p.require_rdd(t, op))
                .collect::<Result<Vec<_>>>()?;
            Ok(Some(f(&rdds, t)))
        },
    )
}

/// The union of `streams` (at least one), in order.
pub(crate) fn union_op<T: Data>(streams: &[DStream<T>], op: OpInfo) -> DStream<T> {
    transform_all_op(streams, op, move |rdds, _| Rdd::union_all_op(rdds, op))
}

impl DStreamGraph {
    /// The union of `streams`, batch by batch, in order (Spark: `StreamingContext.union`).
    ///
    /// # Errors
    /// [`GraphError::NoStreams`] if `streams` is empty. Streams with different slides make
    /// `start` fail with [`GraphError::SlideMismatch`].
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::run_graph;
    ///
    /// let out = run_graph(2, |graph| {
    ///     let a = graph.queue_stream(vec![vec![1], vec![2]]);
    ///     let b = graph.queue_stream(vec![vec![10, 20]]);
    ///     let c = graph.queue_stream(vec![vec![100], vec![200]]);
    ///     graph.union(&[a, b, c]).unwrap()
    /// });
    /// assert_eq!(out, vec![vec![1, 10, 20, 100], vec![2, 200]]);
    /// ```
    #[track_caller]
    pub fn union<T: Data>(&self, streams: &[DStream<T>]) -> Result<DStream<T>> {
        self.union_streams_op(OpInfo::caller("union"), streams)
    }

    /// [`union`](DStreamGraph::union) named after a caller's operator.
    pub fn union_streams_op<T: Data>(
        &self,
        op: OpInfo,
        streams: &[DStream<T>],
    ) -> Result<DStream<T>> {
        if streams.is_empty() {
            return Err(GraphError::NoStreams(op.to_string()).into());
        }
        Ok(union_op(streams, op))
    }

    /// `f` over the RDDs of all `streams` at each batch time (Spark:
    /// `StreamingContext.transform`).
    ///
    /// # Errors
    /// As [`union`](DStreamGraph::union).
    ///
    /// # Examples
    /// `f` gets the streams' RDDs in the order of `streams`:
    /// ```
    /// use rivulet_framework::testing::run_graph;
    ///
    /// let out = run_graph(1, |graph| {
    ///     let a = graph.queue_stream(vec![vec![1, 2]]);
    ///     let b = graph.queue_stream(vec![vec![10]]);
    ///     graph.transform(&[a, b], |rdds, _| rdds[1].union(&rdds[0])).unwrap()
    /// });
    /// assert_eq!(out, vec![vec![10, 1, 2]]);
    /// ```
    #[track_caller]
    pub fn transform<T: Data, R: Data>(
        &self,
        streams: &[DStream<T>],
        f: impl Fn(&[Rdd<T>], Time) -> Rdd<R> + Send + Sync + 'static,
    ) -> Result<DStream<R>> {
        self.transform_streams_op(OpInfo::caller("transform"), streams, f)
    }

    /// [`transform`](DStreamGraph::transform) named after a caller's operator.
    pub fn transform_streams_op<T: Data, R: Data>(
        &self,
        op: OpInfo,
        streams: &[DStream<T>],
        f: impl Fn(&[Rdd<T>], Time) -> Rdd<R> + Send + Sync + 'static,
    ) -> Result<DStream<R>> {
        if streams.is_empty() {
            return Err(GraphError::NoStreams(op.to_string()).into());
        }
        Ok(transform_all_op(streams, op, f))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::dstream::{DStream, DStreamGraph};
    use crate::error::{Error, OpInfo};
    use crate::testing::{local_context, BATCH};
    use crate::time::Time;

    /// A stream that has an RDD only at even batches, as a custom input might.
    fn gappy(graph: &DStreamGraph) -> DStream<u32> {
        let ctx = graph.rdd_context().clone();
        let op = OpInfo::caller("gappy");
        DStream::new_node(
            graph.shared(),
            op,
            BATCH,
            Vec::new(),
            Duration::ZERO,
            move |_, t| Ok((t.as_ms() % 2000 == 0).then(|| ctx.parallelize_op(op, vec![1], 1))),
        )
    }

    #[test]
    fn union_transform_and_transform_with_fail_when_a_parent_has_no_rdd() {
        let graph = DStreamGraph::new(BATCH, local_context(1), 10, None);
        let full = graph.queue_stream(vec![vec![7u32], vec![8]]);
        let gaps = gappy(&graph);
        full.union(&gaps).collect_batches();
        gaps.transform(|rdd, _| rdd.clone()).collect_batches();
        full.transform_with(&gaps, |a, _, _| a.clone())
            .collect_batches();
        graph.start(Time::ZERO).expect("valid graph");
        let jobs = graph.generate_jobs(Time::from_ms(1000));
        assert_eq!(jobs.len(), 3);
        for job in jobs {
            match job.run() {
                Err(Error::Compute {
                    stream, message, ..
                }) => {
                    assert!(
                        message.contains("gappy") && message.contains("no RDD"),
                        "{message}"
                    );
                    assert!(
                        ["union", "transform", "transform_with"]
                            .iter()
                            .any(|op| stream.starts_with(op)),
                        "{stream}"
                    );
                }
                other => panic!("expected a compute error, got {other:?}"),
            }
        }
        let at_two: Vec<_> = graph
            .generate_jobs(Time::from_ms(2000))
            .into_iter()
            .map(|j| j.run())
            .collect();
        assert!(at_two.iter().all(|r| r.is_ok()), "{at_two:?}");
        graph.shutdown();
    }
}
