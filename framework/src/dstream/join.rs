//! Operators on two streams, batch by batch (Spark: `transformWith`, `join`, `cogroup`,
//! ...): all thin layers over [`DStream::transform_with`].

use std::time::Duration;

use crate::data::{Data, Key};
use crate::dstream::{check_same_slide, DStream};
use crate::error::OpInfo;
use crate::partitioner::HashPartitioner;
use crate::rdd::Rdd;
use crate::time::Time;

impl<T: Data> DStream<T> {
    /// Each batch's RDDs of this stream and `other` turned into one by `f(this, other,
    /// time)` (Spark: `transformWith`). Both streams must have the same slide duration (if
    /// not, `start` fails with
    /// [`GraphError::SlideMismatch`](crate::GraphError::SlideMismatch)).
    ///
    /// # Errors
    /// The batch fails with [`Error::Compute`](crate::Error::Compute) if either stream has
    /// no RDD at one of the result's batch times, or if `f` panics.
    ///
    /// # Examples
    /// Each batch's numbers, with the lengths of the same batch's words appended:
    /// ```
    /// use rivulet_framework::testing::run_graph;
    ///
    /// let out = run_graph(2, |graph| {
    ///     let numbers = graph.queue_stream(vec![vec![1], vec![2]]);
    ///     let words = graph.queue_stream(vec![vec!["abc".to_string()]]);
    ///     numbers.transform_with(&words, |n, w, _| n.union(&w.map(|w| w.len() as i32)))
    /// });
    /// assert_eq!(out, vec![vec![1, 3], vec![2]]);
    /// ```
    #[track_caller]
    pub fn transform_with<U: Data, R: Data>(
        &self,
        other: &DStream<U>,
        f: impl Fn(&Rdd<T>, &Rdd<U>, Time) -> Rdd<R> + Send + Sync + 'static,
    ) -> DStream<R> {
        self.transform_with_op(OpInfo::caller("transform_with"), other, f)
    }

    pub(crate) fn transform_with_op<U: Data, R: Data>(
        &self,
        op: OpInfo,
        other: &DStream<U>,
        f: impl Fn(&Rdd<T>, &Rdd<U>, Time) -> Rdd<R> + Send + Sync + 'static,
    ) -> DStream<R> {
        let slide = check_same_slide(
            op,
            [
                (self.graph(), self.slide_duration()),
                (other.graph(), other.slide_duration()),
            ]
            .into_iter(),
        );
        let (a, b) = (self.clone(), other.clone());
        let parents = vec![self.node(), other.node()];
        DStream::new_node(
            self.graph(),
            op,
            slide,
            parents,
            Duration::ZERO,
            move |_, t| Ok(Some(f(&a.require_rdd(t, op)?, &b.require_rdd(t, op)?, t))),
        )
    }
}

impl<K: Key, V: Data> DStream<(K, V)> {
    fn pair_partitioner(&self) -> HashPartitioner {
        HashPartitioner::new(self.graph().rdd_context().default_parallelism())
    }

    /// Each batch's [`Rdd::cogroup`] of the two streams (Spark: `DStream.cogroup`).
    ///
    /// # Examples
    /// Every key of either side, with its values on each (sorted: shuffle order is not defined):
    /// ```
    /// use rivulet_framework::testing::{pairs, run_graph, sorted};
    ///
    /// let out = run_graph(1, |graph| {
    ///     let left = graph.queue_stream(vec![pairs(&[("a", 1), ("b", 2), ("a", 3)])]);
    ///     left.cogroup(&graph.queue_stream(vec![pairs(&[("a", 'x'), ("c", 'y')])]))
    /// });
    /// let expected = pairs(&[
    ///     ("a", (vec![1, 3], vec!['x'])),
    ///     ("b", (vec![2], vec![])),
    ///     ("c", (vec![], vec!['y'])),
    /// ]);
    /// assert_eq!(sorted(out), vec![expected]);
    /// ```
    #[track_caller]
    pub fn cogroup<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, (Vec<V>, Vec<W>))> {
        let (op, p) = (OpInfo::caller("cogroup"), self.pair_partitioner());
        self.transform_with_op(op, other, move |a, b, _| a.cogroup_op(op, b, p))
    }

    /// Each batch's [`Rdd::join`] of the two streams (Spark: `DStream.join`).
    ///
    /// # Examples
    /// Batch by batch: a key in the left stream's batch 1 and the right's batch 2 does not
    /// match. Sorted: shuffle order is not defined.
    /// ```
    /// use rivulet_framework::testing::{pairs, run_graph, sorted};
    ///
    /// let out = run_graph(2, |graph| {
    ///     let left = graph.queue_stream(vec![pairs(&[("a", 1), ("b", 2), ("a", 3)]), vec![]]);
    ///     left.join(&graph.queue_stream(vec![pairs(&[("a", 'x')]), pairs(&[("b", 'y')])]))
    /// });
    /// assert_eq!(sorted(out), vec![pairs(&[("a", (1, 'x')), ("a", (3, 'x'))]), vec![]]);
    /// ```
    #[track_caller]
    pub fn join<W: Data>(&self, other: &DStream<(K, W)>) -> DStream<(K, (V, W))> {
        let (op, p) = (OpInfo::caller("join"), self.pair_partitioner());
        self.transform_with_op(op, other, move |a, b, _| a.join_op(op, b, p))
    }

    /// Each batch's [`Rdd::left_outer_join`] (Spark: `DStream.leftOuterJoin`).
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::{pairs, run_graph, sorted};
    ///
    /// let out = run_graph(1, |graph| {
    ///     let left = graph.queue_stream(vec![pairs(&[("a", 1), ("b", 2)])]);
    ///     left.left_outer_join(&graph.queue_stream(vec![pairs(&[("a", 'x'), ("c", 'y')])]))
    /// });
    /// assert_eq!(sorted(out), vec![pairs(&[("a", (1, Some('x'))), ("b", (2, None))])]);
    /// ```
    #[track_caller]
    pub fn left_outer_join<W: Data>(
        &self,
        other: &DStream<(K, W)>,
    ) -> DStream<(K, (V, Option<W>))> {
        let (op, p) = (OpInfo::caller("left_outer_join"), self.pair_partitioner());
        self.transform_with_op(op, other, move |a, b, _| a.left_outer_join_op(op, b, p))
    }

    /// Each batch's [`Rdd::right_outer_join`] (Spark: `DStream.rightOuterJoin`).
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::{pairs, run_graph, sorted};
    ///
    /// let out = run_graph(1, |graph| {
    ///     let left = graph.queue_stream(vec![pairs(&[("a", 1), ("b", 2)])]);
    ///     left.right_outer_join(&graph.queue_stream(vec![pairs(&[("a", 'x'), ("c", 'y')])]))
    /// });
    /// assert_eq!(sorted(out), vec![pairs(&[("a", (Some(1), 'x')), ("c", (None, 'y'))])]);
    /// ```
    #[track_caller]
    pub fn right_outer_join<W: Data>(
        &self,
        other: &DStream<(K, W)>,
    ) -> DStream<(K, (Option<V>, W))> {
        let (op, p) = (OpInfo::caller("right_outer_join"), self.pair_partitioner());
        self.transform_with_op(op, other, move |a, b, _| a.right_outer_join_op(op, b, p))
    }

    /// Each batch's [`Rdd::full_outer_join`] (Spark: `DStream.fullOuterJoin`).
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::{pairs, run_graph, sorted};
    ///
    /// let out = run_graph(1, |graph| {
    ///     let left = graph.queue_stream(vec![pairs(&[("a", 1), ("b", 2)])]);
    ///     left.full_outer_join(&graph.queue_stream(vec![pairs(&[("a", 'x'), ("c", 'y')])]))
    /// });
    /// let expected = pairs(&[
    ///     ("a", (Some(1), Some('x'))),
    ///     ("b", (Some(2), None)),
    ///     ("c", (None, Some('y'))),
    /// ]);
    /// assert_eq!(sorted(out), vec![expected]);
    /// ```
    #[track_caller]
    pub fn full_outer_join<W: Data>(
        &self,
        other: &DStream<(K, W)>,
    ) -> DStream<(K, (Option<V>, Option<W>))> {
        let (op, p) = (OpInfo::caller("full_outer_join"), self.pair_partitioner());
        self.transform_with_op(op, other, move |a, b, _| a.full_outer_join_op(op, b, p))
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{run_batches, sorted};

    /// Left and right sides in one stream of `(side, key, value)`, split into two streams.
    type Row = (bool, u8, u32);

    fn rows() -> Vec<Vec<Row>> {
        // Batch 1: a in both (two values left), b only left, c only right. Batch 2: empty.
        vec![
            vec![
                (true, b'a', 1),
                (true, b'a', 2),
                (true, b'b', 3),
                (false, b'a', 10),
                (false, b'c', 30),
            ],
            vec![],
        ]
    }

    #[test]
    fn joins_match_hand_computed_rows() {
        let split = |s: &crate::dstream::DStream<Row>, left: bool| {
            s.filter(move |r| r.0 == left).map(|(_, k, v)| (k, v))
        };
        let join = run_batches(rows(), |s| split(&s, true).join(&split(&s, false)));
        assert_eq!(
            sorted(join),
            vec![vec![(b'a', (1, 10)), (b'a', (2, 10))], vec![]]
        );
        let left = run_batches(rows(), |s| {
            split(&s, true).left_outer_join(&split(&s, false))
        });
        assert_eq!(
            sorted(left),
            vec![
                vec![
                    (b'a', (1, Some(10))),
                    (b'a', (2, Some(10))),
                    (b'b', (3, None))
                ],
                vec![]
            ]
        );
        let right = run_batches(rows(), |s| {
            split(&s, true).right_outer_join(&split(&s, false))
        });
        assert_eq!(
            sorted(right),
            vec![
                vec![
                    (b'a', (Some(1), 10)),
                    (b'a', (Some(2), 10)),
                    (b'c', (None, 30))
                ],
                vec![]
            ]
        );
        let full = run_batches(rows(), |s| {
            split(&s, true).full_outer_join(&split(&s, false))
        });
        assert_eq!(
            sorted(full),
            vec![
                vec![
                    (b'a', (Some(1), Some(10))),
                    (b'a', (Some(2), Some(10))),
                    (b'b', (Some(3), None)),
                    (b'c', (None, Some(30)))
                ],
                vec![]
            ]
        );
        let cogroup = run_batches(rows(), |s| split(&s, true).cogroup(&split(&s, false)));
        assert_eq!(
            sorted(cogroup),
            vec![
                vec![
                    (b'a', (vec![1, 2], vec![10])),
                    (b'b', (vec![3], vec![])),
                    (b'c', (vec![], vec![30]))
                ],
                vec![]
            ]
        );
    }
}
