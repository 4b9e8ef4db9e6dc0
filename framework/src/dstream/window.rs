//! Window operators (Spark: `WindowedDStream`, `ReducedWindowedDStream` and the operators
//! built on them).
//!
//! A window at batch time `t` covers `(t - window_duration, t]` of the parent and is
//! produced every `slide_duration`, starting at the first slide even when the window is
//! still partial. Both durations must be positive multiples of the parent's slide.
//!
//! The inverse forms are incremental: the window at `t` is the window at `t - slide`,
//! inverse-reduced by the per-batch reductions that left and reduced with those that
//! entered. Per-batch reductions and windows are cached and co-partitioned, so a batch
//! costs the same whatever the window's length.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::data::{Data, Key};
use crate::dstream::{DStream, StatePartitioning};
use crate::error::{GraphError, OpInfo, Result};
use crate::partitioner::HashPartitioner;
use crate::rdd::{empty_rdd, map_partitions, Aggregator, Rdd};
use crate::time::is_multiple;
use crate::trace;

type ReduceFn<V> = Arc<dyn Fn(V, V) -> V + Send + Sync>;
type FilterFn<K, V> = Arc<dyn Fn(&(K, V)) -> bool + Send + Sync>;

/// How [`DStream::reduce_by_key_and_window_with`] reduces: the reduce function, and
/// optionally its inverse, a filter of the results and a partition count (Spark:
/// `reduceByKeyAndWindow(reduceFunc, invReduceFunc, windowDuration, slideDuration,
/// numPartitions, filterFunc)`).
pub struct WindowReduce<K, V> {
    reduce: ReduceFn<V>,
    inverse: Option<ReduceFn<V>>,
    filter: Option<FilterFn<K, V>>,
    partitions: Option<usize>,
}

impl<K, V> Clone for WindowReduce<K, V> {
    fn clone(&self) -> Self {
        WindowReduce {
            reduce: self.reduce.clone(),
            inverse: self.inverse.clone(),
            filter: self.filter.clone(),
            partitions: self.partitions,
        }
    }
}

impl<K, V> std::fmt::Debug for WindowReduce<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WindowReduce")
            .field("inverse", &self.inverse.is_some())
            .field("filter", &self.filter.is_some())
            .field("partitions", &self.partitions)
            .finish()
    }
}

impl<K, V> WindowReduce<K, V> {
    /// Reduce with `reduce`, an associative and commutative function.
    pub fn new(reduce: impl Fn(V, V) -> V + Send + Sync + 'static) -> Self {
        WindowReduce {
            reduce: Arc::new(reduce),
            inverse: None,
            filter: None,
            partitions: None,
        }
    }

    /// Compute each window incrementally with `inverse`, which undoes `reduce`:
    /// `inverse(reduce(a, b), b) == a`. Keys whose value falls back to the zero stay, with
    /// that value, in the results and in the window's state (so the state grows with every
    /// key ever seen) unless a [`filter`](WindowReduce::filter) drops them.
    pub fn inverse(mut self, inverse: impl Fn(V, V) -> V + Send + Sync + 'static) -> Self {
        self.inverse = Some(Arc::new(inverse));
        self
    }

    /// Keep only the `(key, value)` results for which `filter` is true.
    ///
    /// With an [`inverse`](WindowReduce::inverse), the filter is applied inside the
    /// incremental window, so dropped keys leave the window's state too: the next window is
    /// computed from the filtered one (Spark: `ReducedWindowedDStream`'s `filterFunc`). Use it
    /// to drop keys whose value fell back to the zero (`|(_, n)| *n != 0`), or the state keeps
    /// every key ever seen. A dropped key restarts from what enters later, so with an inverse
    /// the filter should only drop keys at the zero. Without an inverse it filters the output
    /// only.
    pub fn filter(mut self, filter: impl Fn(&(K, V)) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Arc::new(filter));
        self
    }

    /// Partition the results into `partitions` partitions. Without it: the default
    /// parallelism, except that an incremental window (with an
    /// [`inverse`](WindowReduce::inverse)) restored from a checkpoint keeps the checkpoint's
    /// count. Given, an incremental window's restore refuses a checkpoint with another count
    /// ([`CheckpointError::PartitionsChanged`](crate::CheckpointError::PartitionsChanged)).
    ///
    /// # Panics
    /// If `partitions` is zero.
    pub fn partitions(mut self, partitions: usize) -> Self {
        assert!(
            partitions > 0,
            "a window reduce needs at least one partition"
        );
        self.partitions = Some(partitions);
        self
    }
}

/// A value of the incremental window's cogroup, tagged by where it came from.
#[derive(Clone, Serialize, Deserialize)]
enum Part<V> {
    Previous(V),
    Leaving(V),
    Entering(V),
}

/// Per key: the previous window's value and the reductions of what left and what entered.
#[derive(Clone, Serialize, Deserialize)]
struct Parts<V> {
    previous: Option<V>,
    leaving: Option<V>,
    entering: Option<V>,
}

fn fold<V>(acc: Option<V>, v: V, reduce: &ReduceFn<V>) -> Option<V> {
    Some(match acc {
        Some(a) => reduce(a, v),
        None => v,
    })
}

impl<V> Parts<V> {
    fn add(mut self, part: Part<V>, reduce: &ReduceFn<V>) -> Parts<V> {
        match part {
            Part::Previous(v) => self.previous = Some(v),
            Part::Leaving(v) => self.leaving = fold(self.leaving.take(), v, reduce),
            Part::Entering(v) => self.entering = fold(self.entering.take(), v, reduce),
        }
        self
    }

    fn merge(mut self, other: Parts<V>, reduce: &ReduceFn<V>) -> Parts<V> {
        self.previous = self.previous.or(other.previous);
        if let Some(v) = other.leaving {
            self.leaving = fold(self.leaving.take(), v, reduce);
        }
        if let Some(v) = other.entering {
            self.entering = fold(self.entering.take(), v, reduce);
        }
        self
    }

    /// The key's value in the new window (Spark: `ReducedWindowedDStream`'s `mergeValues`).
    /// A key with no previous value and nothing entering only had values that are leaving:
    /// it has no value in the new window.
    fn window_value(self, reduce: &ReduceFn<V>, inverse: &ReduceFn<V>) -> Option<V> {
        let Some(mut value) = self.previous else {
            return self.entering;
        };
        if let Some(leaving) = self.leaving {
            value = inverse(value, leaving);
        }
        if let Some(entering) = self.entering {
            value = reduce(value, entering);
        }
        Some(value)
    }
}

impl<T: Data> DStream<T> {
    /// Fails unless `window` and `slide` are positive multiples of this stream's slide.
    fn check_window(&self, op: OpInfo, window: Duration, slide: Duration) -> Result<()> {
        let unit = self.slide_duration();
        for (what, duration) in [("window duration", window), ("slide duration", slide)] {
            if !is_multiple(duration, unit) {
                return Err(GraphError::NotMultipleOfSlide {
                    stream: op.to_string(),
                    what,
                    duration,
                    unit,
                }
                .into());
            }
        }
        Ok(())
    }

    /// Every `slide`, the records of the last `window` (Spark: `DStream.window`).
    /// **Records:** those of the parent's batches in `(t - window, t]`, oldest first.
    /// **Partitions:** the union of theirs (narrow); a shared partitioner is kept. A derived
    /// (non-input) stream is cached when the window is longer than the slide (each of its
    /// RDDs is then read by several windows), as Spark's `WindowedDStream` persists its parent.
    ///
    /// # Errors
    /// [`GraphError::NotMultipleOfSlide`] if `window` or `slide` is not a positive multiple
    /// of this stream's slide duration.
    ///
    /// # Examples
    /// The window at `t` covers `(t - window, t]`, so the first windows are partial; with a
    /// slide of 2 batches, windows come at 2 s and 4 s only.
    /// ```
    /// use rivulet_framework::testing::{run_batches_for, BATCH};
    ///
    /// let input = vec![vec![1], vec![2], vec![3]];
    /// let out = run_batches_for(input.clone(), 4, |s| s.window(BATCH * 2, BATCH).unwrap());
    /// assert_eq!(out, vec![vec![1], vec![1, 2], vec![2, 3], vec![3]]);
    /// let out = run_batches_for(input, 4, |s| s.window(BATCH * 2, BATCH * 2).unwrap());
    /// assert_eq!(out, vec![vec![1, 2], vec![3]]);
    /// ```
    #[track_caller]
    pub fn window(&self, window: Duration, slide: Duration) -> Result<DStream<T>> {
        self.window_op(OpInfo::caller("window"), window, slide)
    }

    pub(crate) fn window_op(
        &self,
        op: OpInfo,
        window: Duration,
        slide: Duration,
    ) -> Result<DStream<T>> {
        self.check_window(op, window, slide)?;
        if window > slide && !self.core.info.parents.is_empty() {
            // Each parent RDD is read by window / slide windows: compute it once (an input
            // stream's RDDs are its blocks, already kept).
            self.cache();
        }
        let parent = self.clone();
        let ctx = self.graph().rdd_context().clone();
        Ok(DStream::new_node(
            self.graph(),
            op,
            slide,
            vec![self.node()],
            window,
            move |_, t| {
                let rdds = parent.rdds_in(t - window, t)?;
                Ok(Some(if rdds.is_empty() {
                    empty_rdd(&ctx, op)
                } else {
                    Rdd::union_all_op(&rdds, op)
                }))
            },
        ))
    }

    /// Every `slide`, the last `window` folded into one record with `f` (none for an empty
    /// window) (Spark: `reduceByWindow`).
    ///
    /// # Errors
    /// As [`window`](DStream::window).
    ///
    /// # Examples
    /// Sums over the last 2 batches; an empty window has no record:
    /// ```
    /// use rivulet_framework::testing::{run_batches, BATCH};
    ///
    /// let input = vec![vec![1, 2], vec![3], vec![], vec![]];
    /// let out = run_batches(input, |s| {
    ///     s.reduce_by_window(|a, b| a + b, BATCH * 2, BATCH).unwrap()
    /// });
    /// assert_eq!(out, vec![vec![3], vec![6], vec![3], vec![]]);
    /// ```
    #[track_caller]
    pub fn reduce_by_window(
        &self,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
    ) -> Result<DStream<T>> {
        let op = OpInfo::caller("reduce_by_window");
        let f: ReduceFn<T> = Arc::new(f);
        let g = f.clone();
        self.reduce_op(op, move |a, b| f(a, b))
            .window_op(op, window, slide)
            .map(|w| w.reduce_op(op, move |a, b| g(a, b)))
    }

    /// Like [`reduce_by_window`](DStream::reduce_by_window), computed incrementally with
    /// `inverse` (see [`WindowReduce::inverse`]); once the stream had a record, every window
    /// has one, the zero included (Spark: `reduceByWindow` with `invReduceFunc`).
    ///
    /// # Errors
    /// As [`window`](DStream::window).
    ///
    /// # Examples
    /// As for [`reduce_by_window`](DStream::reduce_by_window), but the emptied window holds the
    /// zero:
    /// ```
    /// use rivulet_framework::testing::{run_batches, BATCH};
    ///
    /// let input = vec![vec![1, 2], vec![3], vec![], vec![]];
    /// let out = run_batches(input, |s| {
    ///     s.reduce_by_window_inv(|a, b| a + b, |a, b| a - b, BATCH * 2, BATCH).unwrap()
    /// });
    /// assert_eq!(out, vec![vec![3], vec![6], vec![3], vec![0]]);
    /// ```
    #[track_caller]
    pub fn reduce_by_window_inv(
        &self,
        f: impl Fn(T, T) -> T + Send + Sync + 'static,
        inverse: impl Fn(T, T) -> T + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
    ) -> Result<DStream<T>> {
        let op = OpInfo::caller("reduce_by_window");
        let spec = WindowReduce::new(f).inverse(inverse).partitions(1);
        let windowed = self
            .map_op(op, |x| ((), x))
            .reduce_window_op(op, spec, window, slide)?;
        Ok(windowed.map_op(op, |((), v)| v))
    }

    /// Every `slide`, how many records the last `window` holds: 0 for an emptied window
    /// (Spark: `countByWindow`, incremental).
    ///
    /// # Errors
    /// As [`window`](DStream::window).
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::{run_batches, BATCH};
    ///
    /// let input = vec![vec!['a', 'b'], vec!['c'], vec![], vec![]];
    /// let out = run_batches(input, |s| s.count_by_window(BATCH * 2, BATCH).unwrap());
    /// assert_eq!(out, vec![vec![2], vec![3], vec![1], vec![0]]);
    /// ```
    #[track_caller]
    pub fn count_by_window(&self, window: Duration, slide: Duration) -> Result<DStream<u64>> {
        let op = OpInfo::caller("count_by_window");
        let spec = WindowReduce::new(|a: u64, b| a + b)
            .inverse(|a, b| a - b)
            .partitions(1);
        let windowed = self
            .map_op(op, |_| ((), 1u64))
            .reduce_window_op(op, spec, window, slide)?;
        Ok(windowed.map_op(op, |((), n)| n))
    }
}

impl<T: Key> DStream<T> {
    /// Every `slide`, how often each distinct record occurs in the last `window`; records
    /// whose count fell to 0 are dropped (Spark: `countByValueAndWindow`, incremental).
    ///
    /// # Errors
    /// As [`window`](DStream::window).
    ///
    /// # Examples
    /// Sorted: the order of a batch's records is not defined (shuffle).
    /// ```
    /// use rivulet_framework::testing::{run_batches, sorted, BATCH};
    ///
    /// let input = vec![vec!['x', 'x'], vec!['y'], vec![], vec![]];
    /// let out = run_batches(input, |s| s.count_by_value_and_window(BATCH * 2, BATCH).unwrap());
    /// let expected = vec![vec![('x', 2)], vec![('x', 2), ('y', 1)], vec![('y', 1)], vec![]];
    /// assert_eq!(sorted(out), expected);
    /// ```
    #[track_caller]
    pub fn count_by_value_and_window(
        &self,
        window: Duration,
        slide: Duration,
    ) -> Result<DStream<(T, u64)>> {
        let op = OpInfo::caller("count_by_value_and_window");
        let spec = WindowReduce::new(|a: u64, b| a + b)
            .inverse(|a, b| a - b)
            .filter(|(_, n)| *n != 0);
        self.map_op(op, |x| (x, 1u64))
            .reduce_window_op(op, spec, window, slide)
    }
}

impl<K: Key, V: Data> DStream<(K, V)> {
    /// Every `slide`, the values of each key in the last `window` merged with `f` (Spark:
    /// `reduceByKeyAndWindow`): per-batch reductions (cached) unioned and reduced again,
    /// so a batch's cost grows with the window. Default-parallelism partitions.
    ///
    /// # Errors
    /// As [`window`](DStream::window).
    ///
    /// # Examples
    /// Per-key sums over the last 2 batches (sorted: shuffle order is not defined):
    /// ```
    /// use rivulet_framework::testing::{run_batches_for, sorted, BATCH};
    ///
    /// let input = vec![vec![('a', 1)], vec![('a', 2), ('b', 1)], vec![('b', 3)]];
    /// let out = run_batches_for(input, 4, |s| {
    ///     s.reduce_by_key_and_window(|a, b| a + b, BATCH * 2, BATCH).unwrap()
    /// });
    /// let expected = vec![
    ///     vec![('a', 1)],
    ///     vec![('a', 3), ('b', 1)], // (0 s, 2 s]
    ///     vec![('a', 2), ('b', 4)], // (1 s, 3 s]
    ///     vec![('b', 3)],
    /// ];
    /// assert_eq!(sorted(out), expected);
    /// ```
    #[track_caller]
    pub fn reduce_by_key_and_window(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
    ) -> Result<DStream<(K, V)>> {
        self.reduce_window_op(
            OpInfo::caller("reduce_by_key_and_window"),
            WindowReduce::new(f),
            window,
            slide,
        )
    }

    /// Like [`reduce_by_key_and_window`](DStream::reduce_by_key_and_window), computed
    /// incrementally with `inverse`: a batch's cost does not grow with the window. Keys whose
    /// value fell back to the zero are kept with it, in the output and in the window's state,
    /// so the state holds every key ever seen; to drop them, use
    /// [`reduce_by_key_and_window_with`](DStream::reduce_by_key_and_window_with) with a
    /// [`WindowReduce::filter`], which also removes them from the state (Spark:
    /// `reduceByKeyAndWindow` with `invReduceFunc` and `filterFunc`).
    ///
    /// # Errors
    /// As [`window`](DStream::window).
    ///
    /// # Examples
    /// `a` left the window at 3 s: it stays, with 0.
    /// ```
    /// use rivulet_framework::testing::{run_batches, sorted, BATCH};
    ///
    /// let input = vec![vec![('a', 1)], vec![('b', 2)], vec![]];
    /// let out = run_batches(input, |s| {
    ///     s.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, BATCH * 2, BATCH).unwrap()
    /// });
    /// let expected = vec![vec![('a', 1)], vec![('a', 1), ('b', 2)], vec![('a', 0), ('b', 2)]];
    /// assert_eq!(sorted(out), expected);
    /// ```
    #[track_caller]
    pub fn reduce_by_key_and_window_inv(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        inverse: impl Fn(V, V) -> V + Send + Sync + 'static,
        window: Duration,
        slide: Duration,
    ) -> Result<DStream<(K, V)>> {
        let spec = WindowReduce::new(f).inverse(inverse);
        self.reduce_window_op(
            OpInfo::caller("reduce_by_key_and_window"),
            spec,
            window,
            slide,
        )
    }

    /// The general form: reduce, optional inverse, filter and partition count as `spec`
    /// says (see [`WindowReduce`]).
    ///
    /// # Errors
    /// As [`window`](DStream::window).
    ///
    /// # Examples
    /// As for [`reduce_by_key_and_window_inv`](DStream::reduce_by_key_and_window_inv), with the
    /// keys at 0 filtered out (of the output and of the window's state):
    /// ```
    /// use rivulet_framework::dstream::WindowReduce;
    /// use rivulet_framework::testing::{run_batches, sorted, BATCH};
    ///
    /// let input = vec![vec![('a', 1)], vec![('b', 2)], vec![]];
    /// let spec = WindowReduce::new(|a, b| a + b).inverse(|a, b| a - b).filter(|(_, n)| *n != 0);
    /// let out = run_batches(input, |s| {
    ///     s.reduce_by_key_and_window_with(spec, BATCH * 2, BATCH).unwrap()
    /// });
    /// assert_eq!(sorted(out), vec![vec![('a', 1)], vec![('a', 1), ('b', 2)], vec![('b', 2)]]);
    /// ```
    #[track_caller]
    pub fn reduce_by_key_and_window_with(
        &self,
        spec: WindowReduce<K, V>,
        window: Duration,
        slide: Duration,
    ) -> Result<DStream<(K, V)>> {
        self.reduce_window_op(
            OpInfo::caller("reduce_by_key_and_window"),
            spec,
            window,
            slide,
        )
    }

    /// Every `slide`, all values of each key in the last `window`, oldest first (Spark:
    /// `groupByKeyAndWindow`). Default-parallelism partitions.
    ///
    /// # Errors
    /// As [`window`](DStream::window).
    ///
    /// # Examples
    /// Sorted by key (shuffle order is not defined); a key's values come oldest first.
    /// ```
    /// use rivulet_framework::testing::{run_batches, sorted, BATCH};
    ///
    /// let input = vec![vec![('a', 1)], vec![('a', 2), ('b', 3)], vec![]];
    /// let out = run_batches(input, |s| s.group_by_key_and_window(BATCH * 2, BATCH).unwrap());
    /// let expected = vec![
    ///     vec![('a', vec![1])],
    ///     vec![('a', vec![1, 2]), ('b', vec![3])],
    ///     vec![('a', vec![2]), ('b', vec![3])],
    /// ];
    /// assert_eq!(sorted(out), expected);
    /// ```
    #[track_caller]
    pub fn group_by_key_and_window(
        &self,
        window: Duration,
        slide: Duration,
    ) -> Result<DStream<(K, Vec<V>)>> {
        let op = OpInfo::caller("group_by_key_and_window");
        let p = HashPartitioner::new(self.graph().rdd_context().default_parallelism());
        let grouped = self
            .derive(op, move |rdd, _| rdd.group_by_key_op(op, p))
            .cache();
        let windowed = grouped.window_op(op, window, slide)?;
        let agg = Aggregator::new(
            |vs: Vec<V>| vs,
            |mut a: Vec<V>, b: Vec<V>| {
                a.extend(b);
                a
            },
            |mut a: Vec<V>, b: Vec<V>| {
                a.extend(b);
                a
            },
        );
        Ok(windowed.derive(op, move |rdd, _| rdd.combine_by_key_op(op, agg.clone(), p)))
    }

    /// The one mechanism behind every by-key window reduce.
    pub(crate) fn reduce_window_op(
        &self,
        op: OpInfo,
        spec: WindowReduce<K, V>,
        window: Duration,
        slide: Duration,
    ) -> Result<DStream<(K, V)>> {
        self.check_window(op, window, slide)?;
        // One partitioning for the per-batch reductions and the window: an incremental
        // window's restore resolves it to its checkpoint's count, for both.
        let partitioning = Arc::new(StatePartitioning::new(
            spec.partitions,
            self.graph().rdd_context().state_parallelism(),
        ));
        let p = {
            let partitioning = partitioning.clone();
            move || partitioning.partitioner()
        };
        let reduce = spec.reduce.clone();
        // Each batch reduced once, cached, and reused by every window it falls in.
        let reduced = self
            .reduce_by_key_into(op, move |a, b| reduce(a, b), p.clone())
            .cache();
        let Some(inverse) = spec.inverse.clone() else {
            let reduce = spec.reduce.clone();
            let windowed = reduced.window_op(op, window, slide)?.reduce_by_key_into(
                op,
                move |a, b| reduce(a, b),
                p,
            );
            return Ok(match spec.filter {
                None => windowed,
                Some(filter) => windowed.derive(op, move |rdd, _| {
                    let filter = filter.clone();
                    rdd.filter_op(op, move |kv| filter(kv))
                }),
            });
        };
        // The filter is part of the incremental window's state (as in Spark's
        // `ReducedWindowedDStream.compute`): the next window starts from the filtered one, so
        // dropped keys do not pile up in the state.
        Ok(reduced.incremental_window(
            op,
            spec.reduce.clone(),
            inverse,
            spec.filter,
            partitioning,
            window,
            slide,
        ))
    }

    /// On a stream of per-batch reductions partitioned by `partitioning`: the window at `t`
    /// from the window at `t - slide`, keeping only the keys `filter` accepts (Spark:
    /// `ReducedWindowedDStream.compute`). The result is cached: it is the next window's state.
    #[allow(clippy::too_many_arguments)]
    fn incremental_window(
        &self,
        op: OpInfo,
        reduce: ReduceFn<V>,
        inverse: ReduceFn<V>,
        filter: Option<FilterFn<K, V>>,
        partitioning: Arc<StatePartitioning>,
        window: Duration,
        slide: Duration,
    ) -> DStream<(K, V)> {
        let reduced = self.clone();
        let state_partitioning = partitioning.clone();
        let node = DStream::new_node(
            self.graph(),
            op,
            slide,
            vec![self.node()],
            window,
            move |me, t| {
                // Window at t: (t - window, t]; previous: (t - slide - window, t - slide].
                let (previous_end, current_begin) = (t - slide, t - window);
                let leaving =
                    reduced.rdds_in(previous_end - window, previous_end.min(current_begin))?;
                let entering = reduced.rdds_in(previous_end.max(current_begin), t)?;
                let mut tagged: Vec<Rdd<(K, Part<V>)>> = Vec::new();
                if let Some(previous) = me.get_or_compute(previous_end)? {
                    tagged.push(previous.map_values_op(op, Part::Previous));
                }
                tagged.extend(leaving.iter().map(|r| r.map_values_op(op, Part::Leaving)));
                tagged.extend(entering.iter().map(|r| r.map_values_op(op, Part::Entering)));
                Ok(Some(merge_window(
                    op,
                    &tagged,
                    &reduce,
                    &inverse,
                    filter.clone(),
                    partitioning.partitioner(),
                )))
            },
        );
        node.with_state_partitioning(state_partitioning)
            .cache()
            .stateful_with_keys(|records| records.len())
    }
}

/// Merges tagged, co-partitioned parts into the window's values (no shuffle), keeping only
/// those `filter` accepts.
fn merge_window<K: Key, V: Data>(
    op: OpInfo,
    tagged: &[Rdd<(K, Part<V>)>],
    reduce: &ReduceFn<V>,
    inverse: &ReduceFn<V>,
    filter: Option<FilterFn<K, V>>,
    p: HashPartitioner,
) -> Rdd<(K, V)> {
    let empty = Parts {
        previous: None,
        leaving: None,
        entering: None,
    };
    let (r1, r2, r3) = (reduce.clone(), reduce.clone(), reduce.clone());
    let agg = Aggregator::new(
        move |part| empty.clone().add(part, &r1),
        move |parts: Parts<V>, part| parts.add(part, &r2),
        move |a: Parts<V>, b| a.merge(b, &r3),
    );
    let combined = Rdd::union_all_op(tagged, op).combine_by_key_op(op, agg, p);
    let (reduce, inverse) = (reduce.clone(), inverse.clone());
    map_partitions(&combined, op, true, move |_, records| {
        let (reduce, inverse, filter) = (reduce.clone(), inverse.clone(), filter.clone());
        Box::new(records.filter_map(move |(k, parts)| {
            trace::enter(op);
            let kv = (k, parts.window_value(&reduce, &inverse)?);
            match &filter {
                Some(keep) if !keep(&kv) => None,
                _ => Some(kv),
            }
        }))
    })
}

#[cfg(test)]
mod tests {
    use crate::testing::{pairs, run_batches_for, sorted, BATCH};

    fn kv(kv: &[(&str, i64)]) -> Vec<(String, i64)> {
        pairs(kv)
    }

    /// Batches 1..=6 hold a:1, a:2 b:1, (empty), b:3, a:1, (empty), then nothing.
    fn input() -> Vec<Vec<(String, i64)>> {
        vec![
            kv(&[("a", 1)]),
            kv(&[("a", 2), ("b", 1)]),
            vec![],
            kv(&[("b", 3)]),
            kv(&[("a", 1)]),
            vec![],
        ]
    }

    #[test]
    fn window_covers_the_last_batches_with_partial_first_windows() {
        let out = run_batches_for(vec![vec![1], vec![2], vec![], vec![4]], 5, |s| {
            s.window(BATCH * 2, BATCH).unwrap()
        });
        assert_eq!(out, vec![vec![1], vec![1, 2], vec![2], vec![4], vec![4]]);
    }

    #[test]
    fn slide_larger_than_window_skips_batches() {
        // window 1 batch, slide 2: outputs at t=2,4,6 hold only batches 2, 4, 6.
        let out = run_batches_for(
            vec![vec![1], vec![2], vec![3], vec![4], vec![5], vec![6]],
            6,
            |s| s.window(BATCH, BATCH * 2).unwrap(),
        );
        assert_eq!(out, vec![vec![2], vec![4], vec![6]]);
    }

    #[test]
    fn reduce_by_key_and_window_with_and_without_inverse() {
        // Window 3 batches, slide 1. Hand-computed sums over (t-3, t]:
        // t1 a1 | t2 a3 b1 | t3 a3 b1 | t4 a2 b4 | t5 a1 b3 | t6 a1 b3 | t7 a1 b0 | t8 a0 b0
        let plain = run_batches_for(input(), 8, |s| {
            s.reduce_by_key_and_window(|a, b| a + b, BATCH * 3, BATCH)
                .unwrap()
        });
        let expected_plain = vec![
            kv(&[("a", 1)]),
            kv(&[("a", 3), ("b", 1)]),
            kv(&[("a", 3), ("b", 1)]),
            kv(&[("a", 2), ("b", 4)]),
            kv(&[("a", 1), ("b", 3)]),
            kv(&[("a", 1), ("b", 3)]),
            kv(&[("a", 1)]),
            vec![],
        ];
        assert_eq!(sorted(plain), expected_plain);
        // With an inverse, keys that fell to zero stay with 0.
        let inv = run_batches_for(input(), 8, |s| {
            s.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, BATCH * 3, BATCH)
                .unwrap()
        });
        let mut expected_inv = expected_plain.clone();
        expected_inv[6] = kv(&[("a", 1), ("b", 0)]);
        expected_inv[7] = kv(&[("a", 0), ("b", 0)]);
        assert_eq!(sorted(inv), expected_inv);
        // With a filter, they leave.
        let filtered = run_batches_for(input(), 8, |s| {
            let spec = super::WindowReduce::new(|a, b| a + b)
                .inverse(|a, b| a - b)
                .filter(|(_, v)| *v != 0);
            s.reduce_by_key_and_window_with(spec, BATCH * 3, BATCH)
                .unwrap()
        });
        assert_eq!(sorted(filtered), expected_plain);
    }

    #[test]
    fn filtered_inverse_window_drops_keys_from_its_state() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        // Batch i (1..=N) holds one key, k<i>, once. Window 2 batches, slide 1.
        const N: usize = 30;
        let input: Vec<Vec<(String, i64)>> = (1..=N).map(|i| vec![(format!("k{i}"), 1)]).collect();
        let seen = Arc::new(AtomicUsize::new(0));
        let calls = seen.clone();
        let out = run_batches_for(input.clone(), N, |s| {
            let spec = super::WindowReduce::new(|a, b| a + b)
                .inverse(|a, b| a - b)
                .filter(move |(_, v)| {
                    calls.fetch_add(1, Ordering::SeqCst);
                    *v != 0
                });
            s.reduce_by_key_and_window_with(spec, BATCH * 2, BATCH)
                .unwrap()
        });
        // The filter sees each key the merge step produces, i.e. the window's state before
        // filtering. At t=1: k1. At t=2: k1 (previous), k2. From t=3 on: the previous
        // (filtered) window's k<t-2> and k<t-1>, plus k<t> entering: 3 keys, k<t-2> at 0
        // and dropped. If dropped keys stayed in the state, batch t would see all t keys
        // (N * (N + 1) / 2 = 465 in all).
        assert_eq!(seen.load(Ordering::SeqCst), 1 + 2 + 3 * (N - 2));
        let key = |i: usize| (format!("k{i}"), 1i64);
        let mut expected = vec![vec![key(1)]];
        expected.extend((2..=N).map(|t| vec![key(t - 1), key(t)]));
        assert_eq!(sorted(out.clone()), sorted(expected));
        // Unchanged versus the non-incremental form.
        let plain = run_batches_for(input, N, |s| {
            s.reduce_by_key_and_window(|a, b| a + b, BATCH * 2, BATCH)
                .unwrap()
        });
        assert_eq!(sorted(out), sorted(plain));
    }

    #[test]
    fn inverse_with_slide_larger_than_window() {
        // Window 1 batch, slide 2: values of batches 2, 4, 6 only; a key of batch 2 missing
        // from batch 4 stays with 0.
        let out = run_batches_for(input(), 6, |s| {
            s.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, BATCH, BATCH * 2)
                .unwrap()
        });
        assert_eq!(
            sorted(out),
            vec![
                kv(&[("a", 2), ("b", 1)]),
                kv(&[("a", 0), ("b", 3)]),
                kv(&[("a", 0), ("b", 0)])
            ]
        );
    }

    #[test]
    fn counts_by_window_and_value() {
        let input = vec![vec![1], vec![1], vec![1, 2], vec![0], vec![], vec![]];
        let counts = run_batches_for(input.clone(), 6, |s| {
            s.count_by_window(BATCH * 2, BATCH).unwrap()
        });
        assert_eq!(
            counts,
            vec![vec![1], vec![2], vec![3], vec![3], vec![1], vec![0]]
        );
        let by_value = run_batches_for(input, 6, |s| {
            s.count_by_value_and_window(BATCH * 2, BATCH).unwrap()
        });
        assert_eq!(
            sorted(by_value),
            vec![
                vec![(1, 1)],
                vec![(1, 2)],
                vec![(1, 2), (2, 1)],
                vec![(0, 1), (1, 1), (2, 1)],
                vec![(0, 1)],
                vec![]
            ]
        );
    }

    #[test]
    fn reduce_by_window_and_group_by_key_and_window() {
        let numbers = vec![vec![1, 2], vec![3], vec![], vec![4]];
        let plain = run_batches_for(numbers.clone(), 5, |s| {
            s.reduce_by_window(|a, b| a + b, BATCH * 2, BATCH).unwrap()
        });
        assert_eq!(plain, vec![vec![3], vec![6], vec![3], vec![4], vec![4]]);
        let inv = run_batches_for(numbers, 6, |s| {
            s.reduce_by_window_inv(|a, b| a + b, |a, b| a - b, BATCH * 2, BATCH)
                .unwrap()
        });
        assert_eq!(
            inv,
            vec![vec![3], vec![6], vec![3], vec![4], vec![4], vec![0]]
        );
        let grouped = run_batches_for(input(), 3, |s| {
            s.group_by_key_and_window(BATCH * 2, BATCH).unwrap()
        });
        let g = |k: &str, vs: &[i64]| (k.to_string(), vs.to_vec());
        assert_eq!(
            sorted(grouped),
            vec![
                vec![g("a", &[1])],
                vec![g("a", &[1, 2]), g("b", &[1])],
                vec![g("a", &[2]), g("b", &[1])]
            ]
        );
    }

    #[test]
    fn windows_must_be_multiples_of_the_slide() {
        let graph =
            crate::dstream::DStreamGraph::new(BATCH, crate::testing::local_context(1), 10, None);
        let s = graph.queue_stream(vec![vec![1]]);
        let err = s.window(BATCH * 3 / 2, BATCH).unwrap_err().to_string();
        assert!(
            err.contains("window duration") && err.contains("1.5s"),
            "{err}"
        );
        let err = s
            .count_by_window(BATCH * 2, BATCH / 2)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("slide duration") && err.contains("count_by_window"),
            "{err}"
        );
    }
}
