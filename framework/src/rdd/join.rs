//! Cogroup and joins of pair RDDs (Spark: `PairRDDFunctions.cogroup`, `join`, ...).
//!
//! One mechanism: each side is partitioned by the target partitioner (a shuffle, unless it
//! already is), the two are unioned partition by partition with their values tagged by
//! side, and grouped per key without a further shuffle. A side that is already partitioned
//! (a state RDD, say) is never moved.

use serde::{Deserialize, Serialize};

use crate::data::{Data, Key};
use crate::error::OpInfo;
use crate::partitioner::HashPartitioner;
use crate::rdd::{narrow, Aggregator, Rdd};

/// A value tagged with the side of a cogroup it came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Side<V, W> {
    Left(V),
    Right(W),
}

type Groups<V, W> = (Vec<V>, Vec<W>);

fn add_side<V, W>(mut groups: Groups<V, W>, side: Side<V, W>) -> Groups<V, W> {
    match side {
        Side::Left(v) => groups.0.push(v),
        Side::Right(w) => groups.1.push(w),
    }
    groups
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    /// This RDD by `partitioner`: itself if already so partitioned, else shuffled.
    pub(crate) fn partitioned_by(&self, op: OpInfo, partitioner: HashPartitioner) -> Rdd<(K, V)> {
        if self.partitioner() == Some(partitioner) {
            self.clone()
        } else {
            self.partition_by_op(op, partitioner)
        }
    }

    pub(crate) fn cogroup_op<W: Data>(
        &self,
        op: OpInfo,
        other: &Rdd<(K, W)>,
        partitioner: HashPartitioner,
    ) -> Rdd<(K, Groups<V, W>)> {
        let left = self
            .partitioned_by(op, partitioner)
            .map_values_op(op, Side::<V, W>::Left);
        let right = other
            .partitioned_by(op, partitioner)
            .map_values_op(op, Side::<V, W>::Right);
        // Both sides now share the partitioner: the union keeps it and the combine is narrow.
        let tagged = narrow::union(&[left, right], op);
        let agg = Aggregator::new(
            |side| add_side((Vec::new(), Vec::new()), side),
            add_side,
            |mut a: Groups<V, W>, b: Groups<V, W>| {
                a.0.extend(b.0);
                a.1.extend(b.1);
                a
            },
        );
        tagged.combine_by_key_op(op, agg, partitioner)
    }

    fn join_partitioner(&self) -> HashPartitioner {
        HashPartitioner::new(self.context().default_parallelism())
    }

    /// For each key in either RDD, its values in this RDD and in `other` (Spark: `cogroup`).
    /// **Records:** one `(K, (Vec<V>, Vec<W>))` per key; values in partition, then record
    /// order. **Partitions:** the default parallelism, by [`HashPartitioner`].
    #[track_caller]
    pub fn cogroup<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (Vec<V>, Vec<W>))> {
        self.cogroup_op(OpInfo::caller("cogroup"), other, self.join_partitioner())
    }

    /// The one join mechanism: cogroup, then pair every entry of `left(values in self)` with
    /// every entry of `right(values in other)` per key.
    fn join_with<W: Data, A: Data, B: Data>(
        &self,
        op: OpInfo,
        other: &Rdd<(K, W)>,
        p: HashPartitioner,
        left: fn(Vec<V>) -> Vec<A>,
        right: fn(Vec<W>) -> Vec<B>,
    ) -> Rdd<(K, (A, B))> {
        self.cogroup_op(op, other, p)
            .flat_map_values_op(op, move |(vs, ws): Groups<V, W>| {
                let (left, right) = (left(vs), right(ws));
                let mut pairs = Vec::with_capacity(left.len() * right.len());
                for a in &left {
                    pairs.extend(right.iter().map(|b| (a.clone(), b.clone())));
                }
                pairs
            })
    }

    pub(crate) fn join_op<W: Data>(
        &self,
        op: OpInfo,
        other: &Rdd<(K, W)>,
        p: HashPartitioner,
    ) -> Rdd<(K, (V, W))> {
        self.join_with(op, other, p, |vs| vs, |ws| ws)
    }

    pub(crate) fn left_outer_join_op<W: Data>(
        &self,
        op: OpInfo,
        other: &Rdd<(K, W)>,
        p: HashPartitioner,
    ) -> Rdd<(K, (V, Option<W>))> {
        self.join_with(op, other, p, |vs| vs, optional)
    }

    pub(crate) fn right_outer_join_op<W: Data>(
        &self,
        op: OpInfo,
        other: &Rdd<(K, W)>,
        p: HashPartitioner,
    ) -> Rdd<(K, (Option<V>, W))> {
        self.join_with(op, other, p, optional, |ws| ws)
    }

    pub(crate) fn full_outer_join_op<W: Data>(
        &self,
        op: OpInfo,
        other: &Rdd<(K, W)>,
        p: HashPartitioner,
    ) -> Rdd<(K, (Option<V>, Option<W>))> {
        self.join_with(op, other, p, optional, optional)
    }

    /// Pairs every value of a key in this RDD with every value of the key in `other`; keys in
    /// only one side are dropped (Spark: `join`). **Records:** `(K, (V, W))`; default
    /// parallelism partitions.
    #[track_caller]
    pub fn join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, W))> {
        self.join_op(OpInfo::caller("join"), other, self.join_partitioner())
    }

    /// Like [`join`](Rdd::join), keeping keys only in this RDD, paired with `None` (Spark:
    /// `leftOuterJoin`). **Records:** `(K, (V, Option<W>))`.
    #[track_caller]
    pub fn left_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (V, Option<W>))> {
        self.left_outer_join_op(
            OpInfo::caller("left_outer_join"),
            other,
            self.join_partitioner(),
        )
    }

    /// Like [`join`](Rdd::join), keeping keys only in `other`, paired with `None` (Spark:
    /// `rightOuterJoin`). **Records:** `(K, (Option<V>, W))`.
    #[track_caller]
    pub fn right_outer_join<W: Data>(&self, other: &Rdd<(K, W)>) -> Rdd<(K, (Option<V>, W))> {
        self.right_outer_join_op(
            OpInfo::caller("right_outer_join"),
            other,
            self.join_partitioner(),
        )
    }

    /// Like [`join`](Rdd::join), keeping keys of either side, with `None` on the missing side
    /// (Spark: `fullOuterJoin`). **Records:** `(K, (Option<V>, Option<W>))`.
    #[track_caller]
    pub fn full_outer_join<W: Data>(
        &self,
        other: &Rdd<(K, W)>,
    ) -> Rdd<(K, (Option<V>, Option<W>))> {
        self.full_outer_join_op(
            OpInfo::caller("full_outer_join"),
            other,
            self.join_partitioner(),
        )
    }
}

/// The values as `Some`s, or one `None` when there are none (the outer side of a join).
fn optional<T>(values: Vec<T>) -> Vec<Option<T>> {
    if values.is_empty() {
        vec![None]
    } else {
        values.into_iter().map(Some).collect()
    }
}
