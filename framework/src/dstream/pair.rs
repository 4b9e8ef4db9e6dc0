//! Per-batch operators of `DStream<(K, V)>` (Spark: `PairDStreamFunctions`): each batch's
//! pair RDD combined by key through a shuffle, or its values mapped.

use std::sync::Arc;

use crate::data::{Data, Key};
use crate::dstream::DStream;
use crate::error::OpInfo;
use crate::partitioner::HashPartitioner;
use crate::rdd::{KeyedCombiner, Rdd};

impl<T: Data> DStream<T> {
    /// Each batch's records turned into `(key, value)` pairs by `f` and reduced by key with
    /// the associative, commutative `reduce`, in one pass per partition with keys by
    /// reference: `f(record, combiner)` calls [`combiner.add(key, value)`](KeyedCombiner::add)
    /// per pair (e.g. `add(word, 1)` with `word: &str` for `String` keys). **Records:** `T` →
    /// one `(K, V)` per key in the batch; default-parallelism partitions (hash shuffle with
    /// map-side combine).
    ///
    /// Gives what `flat_map(pairs of f).reduce_by_key(reduce)` gives (Spark:
    /// `flatMap(...).reduceByKey(...)`), without cloning each record out of its input block
    /// and allocating each key only when a map task first sees it; see
    /// [`Rdd::flat_map_reduce_by_key`].
    ///
    /// # Panics
    /// Inside the batch's tasks (which fail and are retried) if `f` or `reduce` panics.
    ///
    /// # Examples
    /// A word count that allocates per distinct word, not per word:
    /// ```
    /// use rivulet_framework::testing::{pairs, run_batches, sorted};
    ///
    /// let input = vec![vec!["to be or".to_string(), "not to be".into()], vec![]];
    /// let out = run_batches(input, |lines| {
    ///     lines.flat_map_reduce_by_key(
    ///         |line: &String, words| line.split(' ').for_each(|w| words.add(w, 1u64)),
    ///         |a, b| a + b,
    ///     )
    /// });
    /// let expected = pairs(&[("be", 2), ("not", 1), ("or", 1), ("to", 2)]);
    /// assert_eq!(sorted(out), vec![expected, vec![]]);
    /// ```
    #[track_caller]
    pub fn flat_map_reduce_by_key<K, V, R>(
        &self,
        f: impl Fn(&T, &mut KeyedCombiner<'_, K, V, R>) + Send + Sync + 'static,
        reduce: R,
    ) -> DStream<(K, V)>
    where
        K: Key,
        V: Data,
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let partitions = self.graph().rdd_context().default_parallelism();
        self.flat_map_reduce_by_key_with_partitions(f, reduce, partitions)
    }

    /// [`flat_map_reduce_by_key`](DStream::flat_map_reduce_by_key) into `partitions`
    /// partitions (Spark: `reduceByKey(func, numPartitions)`).
    ///
    /// # Panics
    /// If `partitions` is zero.
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let input = vec![vec!["a b".to_string(), "b c".into()]];
    /// let out = run_batches(input, |lines| {
    ///     lines
    ///         .flat_map_reduce_by_key_with_partitions(
    ///             |line: &String, words| line.split(' ').for_each(|w| words.add(w, 1u64)),
    ///             |a, b| a + b,
    ///             3,
    ///         )
    ///         .glom()
    /// });
    /// assert_eq!(out[0].len(), 3); // the batch's partitions
    /// let mut counts = out[0].concat();
    /// counts.sort();
    /// assert_eq!(counts, vec![("a".into(), 1), ("b".into(), 2), ("c".into(), 1)]);
    /// ```
    #[track_caller]
    pub fn flat_map_reduce_by_key_with_partitions<K, V, R>(
        &self,
        f: impl Fn(&T, &mut KeyedCombiner<'_, K, V, R>) + Send + Sync + 'static,
        reduce: R,
        partitions: usize,
    ) -> DStream<(K, V)>
    where
        K: Key,
        V: Data,
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let (op, p) = (
            OpInfo::caller("flat_map_reduce_by_key"),
            HashPartitioner::new(partitions),
        );
        let f: Arc<dyn Fn(&T, &mut KeyedCombiner<'_, K, V, R>) + Send + Sync> = Arc::new(f);
        let reduce = Arc::new(reduce);
        self.derive(op, move |rdd: &Rdd<T>, _| {
            rdd.flat_map_reduce_by_key_op(op, f.clone(), reduce.clone(), p)
        })
    }
}

impl<K: Key, V: Data> DStream<(K, V)> {
    fn default_partitioner(&self) -> HashPartitioner {
        HashPartitioner::new(self.graph().rdd_context().default_parallelism())
    }

    /// Each batch's values merged per key with an associative, commutative `f`.
    /// **Records:** `(K, V)` → one `(K, V)` per key in the batch; default-parallelism
    /// partitions (hash shuffle with map-side combine). Spark: `reduceByKey`.
    ///
    /// # Examples
    /// Word counts per batch; the order of a batch's records is not defined (shuffle): sort to
    /// compare.
    /// ```
    /// use rivulet_framework::testing::{pairs, run_batches, sorted};
    ///
    /// let input = vec![pairs(&[("a", 1), ("b", 1), ("a", 1)]), vec![]];
    /// let out = run_batches(input, |s| s.reduce_by_key(|a, b| a + b));
    /// assert_eq!(sorted(out), vec![pairs(&[("a", 2), ("b", 1)]), vec![]]);
    /// ```
    #[track_caller]
    pub fn reduce_by_key(&self, f: impl Fn(V, V) -> V + Send + Sync + 'static) -> DStream<(K, V)> {
        let p = self.default_partitioner();
        self.reduce_by_key_into(OpInfo::caller("reduce_by_key"), f, move || p)
    }

    /// [`reduce_by_key`](DStream::reduce_by_key) into `partitions` partitions.
    ///
    /// # Panics
    /// If `partitions` is zero.
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::{pairs, run_batches};
    ///
    /// let input = vec![pairs(&[("a", 1), ("b", 1), ("a", 1)])];
    /// let out = run_batches(input, |s| s.reduce_by_key_with_partitions(|a, b| a + b, 3).glom());
    /// assert_eq!(out[0].len(), 3); // the batch's partitions
    /// let mut records = out[0].concat();
    /// records.sort();
    /// assert_eq!(records, pairs(&[("a", 2), ("b", 1)]));
    /// ```
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
    ///
    /// # Examples
    /// A key's values come in map partition order, then record order; here the batch's
    /// partitions are `[a:1]` and `[b:2, a:3]`:
    /// ```
    /// use rivulet_framework::testing::{pairs, run_batches, sorted};
    ///
    /// let out = run_batches(vec![pairs(&[("a", 1), ("b", 2), ("a", 3)])], |s| s.group_by_key());
    /// assert_eq!(sorted(out), vec![pairs(&[("a", vec![1, 3]), ("b", vec![2])])]);
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::{pairs, run_batches};
    ///
    /// let out = run_batches(vec![pairs(&[("a", 1), ("b", 2), ("a", 3)])], |s| {
    ///     s.group_by_key_with_partitions(1).glom()
    /// });
    /// assert_eq!(out[0].len(), 1); // one partition holds every key
    /// let mut records = out[0].concat();
    /// records.sort();
    /// assert_eq!(records, pairs(&[("a", vec![1, 3]), ("b", vec![2])]));
    /// ```
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
    ///
    /// # Examples
    /// The sum and count of each key's values (for a mean):
    /// ```
    /// use rivulet_framework::testing::{pairs, run_batches, sorted};
    ///
    /// let out = run_batches(vec![pairs(&[("a", 4), ("b", 1), ("a", 2)])], |s| {
    ///     s.combine_by_key(
    ///         |v| (v, 1),
    ///         |(sum, n), v| (sum + v, n + 1),
    ///         |(s1, n1), (s2, n2)| (s1 + s2, n1 + n2),
    ///         2,
    ///     )
    /// });
    /// assert_eq!(sorted(out), vec![pairs(&[("a", (6, 2)), ("b", (1, 1))])]);
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::{pairs, run_batches};
    ///
    /// let out = run_batches(vec![pairs(&[("a", 1), ("b", 2)])], |s| s.map_values(|v| v * 10));
    /// assert_eq!(out, vec![pairs(&[("a", 10), ("b", 20)])]);
    /// ```
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
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::{pairs, run_batches};
    ///
    /// let out = run_batches(vec![pairs(&[("a", 2), ("b", 0)])], |s| s.flat_map_values(|n| 0..n));
    /// assert_eq!(out, vec![pairs(&[("a", 0), ("a", 1)])]);
    /// ```
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
