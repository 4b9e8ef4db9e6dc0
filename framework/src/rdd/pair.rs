//! Operators on RDDs of pairs (Spark: `PairRDDFunctions`): combining by key through a hash
//! shuffle with map-side combine, and per-value maps that keep the partitioner.

use std::sync::Arc;

use crate::data::{Data, Key};
use crate::error::OpInfo;
use crate::partitioner::HashPartitioner;
use crate::rdd::combine::{combine_shuffled, drain, fold_into, fold_records, Combiners};
use crate::rdd::{narrow, shuffle, Rdd, SharedIter};
use crate::trace;

/// The three functions of a combine by key (Spark: `Aggregator`).
pub(crate) struct Aggregator<V, C> {
    create: Arc<dyn Fn(V) -> C + Send + Sync>,
    merge_value: Arc<dyn Fn(C, V) -> C + Send + Sync>,
    merge_combiners: Arc<dyn Fn(C, C) -> C + Send + Sync>,
}

impl<V, C> Clone for Aggregator<V, C> {
    fn clone(&self) -> Self {
        Aggregator {
            create: self.create.clone(),
            merge_value: self.merge_value.clone(),
            merge_combiners: self.merge_combiners.clone(),
        }
    }
}

impl<V, C> Aggregator<V, C> {
    pub(crate) fn new(
        create: impl Fn(V) -> C + Send + Sync + 'static,
        merge_value: impl Fn(C, V) -> C + Send + Sync + 'static,
        merge_combiners: impl Fn(C, C) -> C + Send + Sync + 'static,
    ) -> Self {
        Aggregator {
            create: Arc::new(create),
            merge_value: Arc::new(merge_value),
            merge_combiners: Arc::new(merge_combiners),
        }
    }
}

impl<K: Key, V: Data> Rdd<(K, V)> {
    pub(crate) fn combine_by_key_op<C: Data>(
        &self,
        op: OpInfo,
        agg: Aggregator<V, C>,
        partitioner: HashPartitioner,
    ) -> Rdd<(K, C)> {
        if self.partitioner() == Some(partitioner) {
            // Already partitioned by key: combine within each partition, no shuffle.
            return narrow::map_partitions(self, op, true, move |_, records| {
                let mut map = Combiners::default();
                for (k, v) in records {
                    fold_into(&mut map, k, v, &*agg.create, &*agg.merge_value, op);
                }
                Box::new(drain(map))
            });
        }
        let create = agg.create.clone();
        let merge_value = agg.merge_value.clone();
        combine_shuffled(
            self,
            op,
            partitioner,
            move |records| {
                let mut map = Combiners::default();
                fold_records(&mut map, records, &*create, &*merge_value, op);
                map
            },
            agg.merge_combiners,
        )
    }

    fn default_partitioner(&self) -> HashPartitioner {
        HashPartitioner::new(self.context().default_parallelism())
    }

    /// Combines the values of each key with `create` (first value), `merge_value` (a further
    /// value) and `merge_combiners` (two partial results, across map partitions).
    /// **Records:** `(K, V)` → one `(K, C)` per key. **Partitions:** `partitions`, by
    /// [`HashPartitioner`] (a shuffle with map-side combine, unless already so partitioned).
    /// Spark: `combineByKey`.
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn combine_by_key<C: Data>(
        &self,
        create: impl Fn(V) -> C + Send + Sync + 'static,
        merge_value: impl Fn(C, V) -> C + Send + Sync + 'static,
        merge_combiners: impl Fn(C, C) -> C + Send + Sync + 'static,
        partitions: usize,
    ) -> Rdd<(K, C)> {
        let agg = Aggregator::new(create, merge_value, merge_combiners);
        self.combine_by_key_op(
            OpInfo::caller("combine_by_key"),
            agg,
            HashPartitioner::new(partitions),
        )
    }

    /// Merges the values of each key with an associative, commutative `f`. **Records:**
    /// `(K, V)` → one `(K, V)` per key. **Partitions:** the context's default parallelism.
    /// Spark: `reduceByKey`.
    #[track_caller]
    pub fn reduce_by_key(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> Rdd<(K, V)> {
        let p = self.default_partitioner();
        self.reduce_by_key_op(OpInfo::caller("reduce_by_key"), f, p)
    }

    /// [`reduce_by_key`](Rdd::reduce_by_key) into `partitions` partitions.
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn reduce_by_key_with_partitions(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        partitions: usize,
    ) -> Rdd<(K, V)> {
        self.reduce_by_key_op(
            OpInfo::caller("reduce_by_key"),
            f,
            HashPartitioner::new(partitions),
        )
    }

    pub(crate) fn reduce_by_key_op(
        &self,
        op: OpInfo,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        partitioner: HashPartitioner,
    ) -> Rdd<(K, V)> {
        let f: Arc<dyn Fn(V, V) -> V + Send + Sync> = Arc::new(f);
        let agg = Aggregator {
            create: Arc::new(|v| v),
            merge_value: f.clone(),
            merge_combiners: f,
        };
        self.combine_by_key_op(op, agg, partitioner)
    }

    /// All values of each key, in the order they arrive (map partition order, then record
    /// order). **Records:** `(K, V)` → one `(K, Vec<V>)` per key. **Partitions:** the
    /// context's default parallelism. Spark: `groupByKey`.
    #[track_caller]
    pub fn group_by_key(&self) -> Rdd<(K, Vec<V>)> {
        let p = self.default_partitioner();
        self.group_by_key_op(OpInfo::caller("group_by_key"), p)
    }

    /// [`group_by_key`](Rdd::group_by_key) into `partitions` partitions.
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn group_by_key_with_partitions(&self, partitions: usize) -> Rdd<(K, Vec<V>)> {
        self.group_by_key_op(
            OpInfo::caller("group_by_key"),
            HashPartitioner::new(partitions),
        )
    }

    pub(crate) fn group_by_key_op(
        &self,
        op: OpInfo,
        partitioner: HashPartitioner,
    ) -> Rdd<(K, Vec<V>)> {
        let agg = Aggregator::new(
            |v| vec![v],
            |mut c: Vec<V>, v| {
                c.push(v);
                c
            },
            |mut a: Vec<V>, b: Vec<V>| {
                a.extend(b);
                a
            },
        );
        self.combine_by_key_op(op, agg, partitioner)
    }

    /// Places each record in the partition of its key (Spark: `partitionBy`). **Records:**
    /// unchanged. **Partitions:** `partitioner`'s (a shuffle, unless already so partitioned).
    #[track_caller]
    pub fn partition_by(&self, partitioner: HashPartitioner) -> Rdd<(K, V)> {
        if self.partitioner() == Some(partitioner) {
            return self.clone();
        }
        self.partition_by_op(OpInfo::caller("partition_by"), partitioner)
    }

    pub(crate) fn partition_by_op(&self, op: OpInfo, partitioner: HashPartitioner) -> Rdd<(K, V)> {
        shuffle::shuffle(
            self,
            op,
            partitioner.num_partitions(),
            Some(partitioner),
            move |_, records, _| partitioner.buckets(records.into_records()),
            |buckets| Box::new(buckets.into_iter().flat_map(SharedIter::new)),
        )
    }

    /// Applies `f` to every value, keeping keys and the partitioner. Spark: `mapValues`.
    #[track_caller]
    pub fn map_values<W: Data>(&self, f: impl Fn(V) -> W + Send + Sync + 'static) -> Rdd<(K, W)> {
        self.map_values_op(OpInfo::caller("map_values"), f)
    }

    pub(crate) fn map_values_op<W: Data>(
        &self,
        op: OpInfo,
        f: impl Fn(V) -> W + Send + Sync + 'static,
    ) -> Rdd<(K, W)> {
        let f = Arc::new(f);
        narrow::map_partitions(self, op, true, move |_, records| {
            let f = f.clone();
            Box::new(records.map(move |(k, v)| {
                trace::enter(op);
                (k, f(v))
            }))
        })
    }

    /// Applies `f` to every value and pairs each result with the key, keeping the
    /// partitioner. **Records:** `(K, V)` → zero or more `(K, W)`. Spark: `flatMapValues`.
    #[track_caller]
    pub fn flat_map_values<W, I>(&self, f: impl Fn(V) -> I + Send + Sync + 'static) -> Rdd<(K, W)>
    where
        W: Data,
        I: IntoIterator<Item = W> + 'static,
        I::IntoIter: 'static,
    {
        self.flat_map_values_op(OpInfo::caller("flat_map_values"), f)
    }

    pub(crate) fn flat_map_values_op<W, I>(
        &self,
        op: OpInfo,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> Rdd<(K, W)>
    where
        W: Data,
        I: IntoIterator<Item = W> + 'static,
        I::IntoIter: 'static,
    {
        let f = Arc::new(f);
        narrow::map_partitions(self, op, true, move |_, records| {
            let f = f.clone();
            Box::new(records.flat_map(move |(k, v)| {
                trace::enter(op);
                f(v).into_iter().map(move |w| (k.clone(), w))
            }))
        })
    }
}
