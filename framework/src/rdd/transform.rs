//! The narrow transformations of `Rdd<T>` and `repartition` (Spark: `RDD.map`, ...).
//!
//! Each public operator records its call site and delegates to an `_op` form that takes the
//! operator's [`OpInfo`]; DStream operators call the `_op` forms with their own call site.

use std::sync::Arc;

use crate::data::Data;
use crate::error::OpInfo;
use crate::partitioner::stable_hash;
use crate::rdd::{narrow, shuffle, PartitionIter, Rdd, SharedFilter, SharedIter};
use crate::trace;

impl<T: Data> Rdd<T> {
    /// Applies `f` to every record. **Records:** `T` → `U`, one for one. **Partitions:** the
    /// parent's (narrow). Spark: `RDD.map`.
    #[track_caller]
    pub fn map<U: Data>(&self, f: impl Fn(T) -> U + Send + Sync + 'static) -> Rdd<U> {
        self.map_op(OpInfo::caller("map"), f)
    }

    pub(crate) fn map_op<U: Data>(
        &self,
        op: OpInfo,
        f: impl Fn(T) -> U + Send + Sync + 'static,
    ) -> Rdd<U> {
        let f = Arc::new(f);
        narrow::map_partitions(self, op, false, move |_, records| {
            let f = f.clone();
            Box::new(records.map(move |x| {
                trace::enter(op);
                f(x)
            }))
        })
    }

    /// Applies `f` to every record and flattens the results. **Records:** `T` → zero or more
    /// `U`. **Partitions:** the parent's (narrow). Spark: `RDD.flatMap`.
    #[track_caller]
    pub fn flat_map<U, I>(&self, f: impl Fn(T) -> I + Send + Sync + 'static) -> Rdd<U>
    where
        U: Data,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
    {
        self.flat_map_op(OpInfo::caller("flat_map"), f)
    }

    pub(crate) fn flat_map_op<U, I>(
        &self,
        op: OpInfo,
        f: impl Fn(T) -> I + Send + Sync + 'static,
    ) -> Rdd<U>
    where
        U: Data,
        I: IntoIterator<Item = U> + 'static,
        I::IntoIter: 'static,
    {
        let f = Arc::new(f);
        narrow::map_partitions(self, op, false, move |_, records| {
            let f = f.clone();
            Box::new(records.flat_map(move |x| {
                trace::enter(op);
                f(x)
            }))
        })
    }

    /// Keeps the records for which `f` is true. **Partitions:** the parent's, partitioner
    /// kept (narrow). Spark: `RDD.filter`.
    #[track_caller]
    pub fn filter(&self, f: impl Fn(&T) -> bool + Send + Sync + 'static) -> Rdd<T> {
        self.filter_op(OpInfo::caller("filter"), f)
    }

    pub(crate) fn filter_op(
        &self,
        op: OpInfo,
        f: impl Fn(&T) -> bool + Send + Sync + 'static,
    ) -> Rdd<T> {
        let f = Arc::new(f);
        let g = f.clone();
        // Over a block or a cached partition, records are read by reference and only the
        // kept ones cloned.
        let by_ref = move |_, shared: Arc<Vec<T>>| -> PartitionIter<T> {
            let g = g.clone();
            Box::new(SharedFilter::new(shared, move |x: &T| {
                trace::enter(op);
                g(x)
            }))
        };
        narrow::map_partitions_with_ref(
            self,
            op,
            true,
            move |_, records| {
                let f = f.clone();
                Box::new(records.filter(move |x| {
                    trace::enter(op);
                    f(x)
                }))
            },
            Some(Box::new(by_ref)),
        )
    }

    /// Turns each partition's records into new records with `f`, once per partition (for
    /// per-partition setup such as a connection). **Partitions:** the parent's (narrow).
    /// Spark: `RDD.mapPartitions`.
    #[track_caller]
    pub fn map_partitions<U, I>(
        &self,
        f: impl Fn(PartitionIter<T>) -> I + Send + Sync + 'static,
    ) -> Rdd<U>
    where
        U: Data,
        I: IntoIterator<Item = U>,
        I::IntoIter: 'static,
    {
        self.map_partitions_with_index_op(OpInfo::caller("map_partitions"), move |_, it| f(it))
    }

    /// Like [`map_partitions`](Rdd::map_partitions), with the partition index as first
    /// argument. Spark: `RDD.mapPartitionsWithIndex`.
    #[track_caller]
    pub fn map_partitions_with_index<U, I>(
        &self,
        f: impl Fn(usize, PartitionIter<T>) -> I + Send + Sync + 'static,
    ) -> Rdd<U>
    where
        U: Data,
        I: IntoIterator<Item = U>,
        I::IntoIter: 'static,
    {
        self.map_partitions_with_index_op(OpInfo::caller("map_partitions_with_index"), f)
    }

    pub(crate) fn map_partitions_with_index_op<U, I>(
        &self,
        op: OpInfo,
        f: impl Fn(usize, PartitionIter<T>) -> I + Send + Sync + 'static,
    ) -> Rdd<U>
    where
        U: Data,
        I: IntoIterator<Item = U>,
        I::IntoIter: 'static,
    {
        narrow::map_partitions(self, op, false, move |p, records| {
            trace::enter(op);
            Box::new(f(p, records).into_iter())
        })
    }

    /// Each partition as one `Vec` record. **Records:** a partition of `T` → one `Vec<T>`.
    /// Spark: `RDD.glom`.
    #[track_caller]
    pub fn glom(&self) -> Rdd<Vec<T>> {
        self.glom_op(OpInfo::caller("glom"))
    }

    pub(crate) fn glom_op(&self, op: OpInfo) -> Rdd<Vec<T>> {
        narrow::map_partitions(self, op, false, |_, records| {
            Box::new(std::iter::once(records.collect()))
        })
    }

    /// The records of `self`, then those of `other`. **Partitions:** both parents' (narrow);
    /// when both share a partitioner, partition `p` is both parents' `p` and the partitioner
    /// is kept. Spark: `RDD.union`.
    #[track_caller]
    pub fn union(&self, other: &Rdd<T>) -> Rdd<T> {
        narrow::union(&[self.clone(), other.clone()], OpInfo::caller("union"))
    }

    /// The union of many RDDs, in order (see [`union`](Rdd::union)).
    ///
    /// # Panics
    /// If `rdds` is empty.
    #[track_caller]
    pub fn union_all(rdds: &[Rdd<T>]) -> Rdd<T> {
        narrow::union(rdds, OpInfo::caller("union"))
    }

    pub(crate) fn union_all_op(rdds: &[Rdd<T>], op: OpInfo) -> Rdd<T> {
        narrow::union(rdds, op)
    }

    /// The same records spread evenly over `partitions` partitions by a shuffle: map
    /// partition `m` deals its records round-robin, starting at a position fixed by `m`
    /// (Spark: `RDD.repartition`, with a fixed instead of random start).
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn repartition(&self, partitions: usize) -> Rdd<T> {
        self.repartition_op(OpInfo::caller("repartition"), partitions)
    }

    pub(crate) fn repartition_op(&self, op: OpInfo, partitions: usize) -> Rdd<T> {
        assert!(partitions > 0, "repartition needs at least one partition");
        shuffle::shuffle(
            self,
            op,
            partitions,
            None,
            |map, records, n| {
                let mut buckets: Vec<Vec<T>> = (0..n).map(|_| Vec::new()).collect();
                let mut position = (stable_hash(&map) % n as u64) as usize;
                for record in records.into_records() {
                    buckets[position].push(record);
                    position = (position + 1) % n;
                }
                buckets
            },
            |buckets| Box::new(buckets.into_iter().flat_map(SharedIter::new)),
        )
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use crate::testing::local_context;

    proptest! {
        /// A filter over shared records (a parallelized slice, a cached partition) reads
        /// them by reference and clones only what it keeps: it must give what the filter
        /// over cloned records gives (a parent that is computed, `map(identity)`), and what
        /// `Vec::retain` gives.
        #[test]
        fn a_filter_by_reference_equals_the_filter_over_cloned_records(
            data in prop::collection::vec(any::<i32>(), 0..200),
            partitions in 1usize..5,
            modulus in 1i32..7,
        ) {
            let ctx = local_context(partitions);
            let keep = move |x: &i32| x.rem_euclid(modulus) == 0;
            let shared = ctx.parallelize(data.clone(), partitions);
            let by_ref = shared.filter(keep).collect().unwrap();
            let cloned = shared.map(|x| x).filter(keep).collect().unwrap();
            let cached = shared.map(|x| x).cache();
            let first = cached.filter(keep).collect().unwrap();
            let from_cache = cached.filter(keep).collect().unwrap();
            let mut expected = data;
            expected.retain(keep);
            prop_assert_eq!(&by_ref, &expected);
            prop_assert_eq!(&cloned, &expected);
            prop_assert_eq!(&first, &expected);
            prop_assert_eq!(&from_cache, &expected);
        }
    }
}
