//! Per-batch operators of `DStream<(K, V)>` (Spark: `PairDStreamFunctions`): each batch's
//! pair RDD combined by key through a shuffle, or its values mapped.

use std::sync::Arc;

use crate::data::{Data, Key};
use crate::dstream::DStream;
use crate::error::OpInfo;
use crate::partitioner::HashPartitioner;
use crate::rdd::Rdd;

impl<K: Key, V: Data> DStream<(K, V)> {
    fn default_partitioner(&self) -> HashPartitioner {
        HashPartitioner::new(self.graph().rdd_context().default_parallelism())
    }

    /// Each batch's values merged per key with an associative, commutative `f`.
    /// **Records:** `(K, V)` → one `(K, V)` per key in the batch; default-parallelism
    /// partitions (hash shuffle with map-side combine). Spark: `reduceByKey`.
    #[track_caller]
    pub fn reduce_by_key(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> DStream<(K, V)> {
        let p = self.default_partitioner();
        self.reduce_by_key_into(OpInfo::caller("reduce_by_key"), f, move || p)
    }

    /// [`reduce_by_key`](DStream::reduce_by_key) into `partitions` partitions.
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn reduce_by_key_with_partitions(
        &self,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        partitions: usize,
    ) -> DStream<(K, V)> {
        let p = HashPartitioner::new(partitions);
        self.reduce_by_key_into(OpInfo::caller("reduce_by_key"), f, move || p)
    }

    /// Each batch reduced by key with `f` into the partitioner `p()` gives at that batch
    /// (a stateful stream's is resolved late, see `StatePartitioning`).
    pub(crate) fn reduce_by_key_into(
        &self,
        op: OpInfo,
        f: impl Fn(V, V) -> V + Send + Sync + 'static,
        p: impl Fn() -> HashPartitioner + Send + Sync + 'static,
    ) -> DStream<(K, V)> {
        let f = Arc::new(f);
        self.derive(op, move |rdd, _| {
            let f = f.clone();
            rdd.reduce_by_key_op(op, move |a, b| f(a, b), p())
        })
    }

    /// Each batch's values gathered per key. **Records:** `(K, V)` → one `(K, Vec<V>)` per
    /// key; default-parallelism partitions. Spark: `groupByKey`.
    #[track_caller]
    pub fn group_by_key(&self) -> DStream<(K, Vec<V>)> {
        let p = self.default_partitioner();
        let op = OpInfo::caller("group_by_key");
        self.derive(op, move |rdd, _| rdd.group_by_key_op(op, p))
    }

    /// [`group_by_key`](DStream::group_by_key) into `partitions` partitions.
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn group_by_key_with_partitions(&self, partitions: usize) -> DStream<(K, Vec<V>)> {
        let p = HashPartitioner::new(partitions);
        let op = OpInfo::caller("group_by_key");
        self.derive(op, move |rdd, _| rdd.group_by_key_op(op, p))
    }

    /// Each batch's values combined per key (see [`Rdd::combine_by_key`]) into `partitions`
    /// partitions. Spark: `combineByKey`.
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
    ) -> DStream<(K, C)> {
        let p = HashPartitioner::new(partitions);
        let op = OpInfo::caller("combine_by_key");
        let agg = crate::rdd::Aggregator::new(create, merge_value, merge_combiners);
        self.derive(op, move |rdd: &Rdd<(K, V)>, _| {
            rdd.combine_by_key_op(op, agg.clone(), p)
        })
    }

    /// Applies `f` to every value, keeping keys and partitioning. Spark: `mapValues`.
    #[track_caller]
    pub fn map_values<W: Data>(
        &self,
        f: impl Fn(V) -> W + Send + Sync + 'static,
    ) -> DStream<(K, W)> {
        let op = OpInfo::caller("map_values");
        let f = Arc::new(f);
        self.derive(op, move |rdd, _| {
            let f = f.clone();
            rdd.map_values_op(op, move |v| f(v))
        })
    }

    /// Applies `f` to every value and pairs each result with the key. Spark: `flatMapValues`.
    #[track_caller]
    pub fn flat_map_values<W, I>(
        &self,
        f: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> DStream<(K, W)>
    where
        W: Data,
        I: IntoIterator<Item = W> + 'static,
        I::IntoIter: 'static,
    {
        let op = OpInfo::caller("flat_map_values");
        let f = Arc::new(f);
        self.derive(op, move |rdd, _| {
            let f = f.clone();
            rdd.flat_map_values_op(op, move |v| f(v))
        })
    }
}
