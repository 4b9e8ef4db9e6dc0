//! Map-side combine, the one mechanism behind every by-key aggregation (Spark: `Aggregator`
//! with `mapSideCombine`): a map task folds its records into one combiner per key, cuts the
//! combiners into buckets by key, and each reduce partition merges its buckets' combiners.
//!
//! Keys are looked up by reference and owned only when a map has not seen them: a map task
//! reading shared pairs (a block, a cached partition) and the reduce side reading buckets
//! clone a key only when it is new to their map, and
//! [`Rdd::flat_map_reduce_by_key`] lets the user's function hand out borrowed keys (`&str`
//! views of a line) that are allocated once per distinct key and map task.

use std::borrow::Borrow;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use crate::data::{Data, Key};
use crate::error::OpInfo;
use crate::partitioner::HashPartitioner;
use crate::rdd::{shuffle, PartitionRecords, Rdd};
use crate::trace;

/// Per-key partial results. Values are `Option`s so a combiner can be moved out, merged by
/// value and moved back with one hash lookup and no clone; a `None` is left only if a user
/// function panicked mid-merge, and then the task fails and the map is dropped.
pub(crate) type Combiners<K, C> = FxHashMap<K, Option<C>>;

/// Puts `first(x)` in an empty slot, `merge(c, x)` in one holding `c`. Generic over the
/// functions, so a combiner whose functions are known types (see [`KeyedCombiner`]) calls them
/// inline; the operators with boxed functions pass `&dyn Fn`.
#[inline]
fn fold_slot<X, C, F, M>(slot: &mut Option<C>, x: X, first: &F, merge: &M)
where
    F: Fn(X) -> C + ?Sized,
    M: Fn(C, X) -> C + ?Sized,
{
    *slot = Some(match slot.take() {
        Some(c) => merge(c, x),
        None => first(x),
    });
}

/// Folds `(k, x)` into `map`: `first(x)` for a new key, `merge(c, x)` for a known one.
#[inline]
pub(crate) fn fold_into<K: Key, X, C>(
    map: &mut Combiners<K, C>,
    k: K,
    x: X,
    first: &dyn Fn(X) -> C,
    merge: &dyn Fn(C, X) -> C,
    op: OpInfo,
) {
    trace::enter(op);
    fold_slot(map.entry(k).or_insert(None), x, first, merge);
}

/// [`fold_into`] with the key borrowed: it is owned (`to_owned`) only if `map` lacks it.
#[inline]
fn fold_ref<K, Q, X, C, F, M>(
    map: &mut Combiners<K, C>,
    key: &Q,
    x: X,
    first: &F,
    merge: &M,
    op: OpInfo,
) where
    K: Key + Borrow<Q>,
    Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    F: Fn(X) -> C + ?Sized,
    M: Fn(C, X) -> C + ?Sized,
{
    trace::enter(op);
    match map.get_mut(key) {
        Some(slot) => fold_slot(slot, x, first, merge),
        None => {
            map.insert(key.to_owned(), Some(first(x)));
        }
    }
}

/// Folds every `(k, x)` record into `map` ([`fold_into`]); records kept as one shared `Vec`
/// are read by reference, so only the value is cloned and the key only when `map` lacks it.
pub(crate) fn fold_records<K: Key, X: Clone + 'static, C>(
    map: &mut Combiners<K, C>,
    records: PartitionRecords<(K, X)>,
    first: &dyn Fn(X) -> C,
    merge: &dyn Fn(C, X) -> C,
    op: OpInfo,
) {
    match records {
        PartitionRecords::Shared(records) => {
            for (k, x) in records.iter() {
                fold_ref(map, k, x.clone(), first, merge, op);
            }
        }
        PartitionRecords::Computed(records) => {
            for (k, x) in records {
                fold_into(map, k, x, first, merge, op);
            }
        }
    }
}

/// The combined pairs of `map`.
pub(crate) fn drain<K, C>(map: Combiners<K, C>) -> impl Iterator<Item = (K, C)> {
    map.into_iter().filter_map(|(k, c)| c.map(|c| (k, c)))
}

/// A shuffle of `parent` into `partitioner`'s partitions with map-side combine: each map
/// task folds its records into combiners with `combine` (one map for the whole partition:
/// each record is hashed once, and only each distinct key again to find its bucket), and
/// each reduce partition merges its buckets' combiners per key with `merge_combiners`, in
/// map partition order.
pub(crate) fn combine_shuffled<T: Data, K: Key, C: Data>(
    parent: &Rdd<T>,
    op: OpInfo,
    partitioner: HashPartitioner,
    combine: impl Fn(PartitionRecords<T>) -> Combiners<K, C> + Send + Sync + 'static,
    merge_combiners: Arc<dyn Fn(C, C) -> C + Send + Sync>,
) -> Rdd<(K, C)> {
    shuffle::shuffle(
        parent,
        op,
        partitioner.num_partitions(),
        Some(partitioner),
        move |_, records, _| partitioner.buckets(drain(combine(records))),
        move |buckets| {
            let mut map = Combiners::default();
            for bucket in buckets {
                for (k, c) in bucket.iter() {
                    fold_ref(&mut map, k, c.clone(), &|c| c, &*merge_combiners, op);
                }
            }
            Box::new(drain(map))
        },
    )
}

/// The map-side combiner [`Rdd::flat_map_reduce_by_key`] hands its function with each
/// record: [`add`](KeyedCombiner::add) folds one `(key, value)` pair into the map task's
/// combiners, looking the key up by reference.
///
/// `R` is the type of the operator's reduce function, so the map task's fold calls it inline.
pub struct KeyedCombiner<'a, K, V, R> {
    map: &'a mut Combiners<K, V>,
    reduce: &'a R,
    op: OpInfo,
}

impl<K, V, R> fmt::Debug for KeyedCombiner<'_, K, V, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyedCombiner")
            .field("op", &self.op)
            .field("keys", &self.map.len())
            .finish()
    }
}

impl<K: Key, V, R: Fn(V, V) -> V> KeyedCombiner<'_, K, V, R> {
    /// Adds `value` under the key `key` borrows (`&str` for `String` keys, `&K` for any
    /// key): reduced with the value the map task already holds for it, else kept as the
    /// key's first value, and only then is the key owned (`to_owned`: one allocation per
    /// distinct key and map task, none per record).
    ///
    /// # Panics
    /// Whatever the operator's reduce function panics with (the task then fails).
    #[inline]
    pub fn add<Q>(&mut self, key: &Q, value: V)
    where
        K: Borrow<Q>,
        Q: ?Sized + Hash + Eq + ToOwned<Owned = K>,
    {
        fold_ref(self.map, key, value, &|v| v, self.reduce, self.op);
    }
}

impl<T: Data> Rdd<T> {
    /// A `flat_map` into `(key, value)` pairs and a `reduce_by_key` in one pass per
    /// partition, with keys by reference: `f(record, combiner)` calls
    /// [`combiner.add(key, value)`](KeyedCombiner::add) for each pair the record yields, and
    /// the values of each key are merged with the associative, commutative `reduce`.
    /// **Records:** `T` → one `(K, V)` per key. **Partitions:** the context's default
    /// parallelism, by [`HashPartitioner`] (a shuffle with map-side combine).
    ///
    /// It gives what `flat_map(pairs of f).reduce_by_key(reduce)` gives (Spark:
    /// `flatMap(...).reduceByKey(...)`), faster: records kept as one `Vec` (input blocks,
    /// cached partitions) are read by reference instead of cloned, and a key is allocated
    /// only when its map task first sees it, so a word count over `&str` views of its lines
    /// allocates per distinct word, not per word.
    ///
    /// # Panics
    /// Inside the task (which then fails, and is retried as any failed task) if `f` or
    /// `reduce` panics.
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::local_context;
    ///
    /// let ctx = local_context(2);
    /// let lines = ctx.parallelize(vec!["a b".to_string(), "b c".into(), "c b".into()], 2);
    /// let mut counts = lines
    ///     .flat_map_reduce_by_key(
    ///         |line: &String, words| line.split(' ').for_each(|w| words.add(w, 1u64)),
    ///         |a, b| a + b,
    ///     )
    ///     .collect()
    ///     .unwrap();
    /// counts.sort();
    /// assert_eq!(counts, vec![("a".into(), 1), ("b".into(), 3), ("c".into(), 2)]);
    /// ```
    #[track_caller]
    pub fn flat_map_reduce_by_key<K, V, R>(
        &self,
        f: impl Fn(&T, &mut KeyedCombiner<'_, K, V, R>) + Send + Sync + 'static,
        reduce: R,
    ) -> Rdd<(K, V)>
    where
        K: Key,
        V: Data,
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let partitions = self.context().default_parallelism();
        self.flat_map_reduce_by_key_with_partitions(f, reduce, partitions)
    }

    /// [`flat_map_reduce_by_key`](Rdd::flat_map_reduce_by_key) into `partitions` partitions
    /// (Spark: `reduceByKey(func, numPartitions)`).
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn flat_map_reduce_by_key_with_partitions<K, V, R>(
        &self,
        f: impl Fn(&T, &mut KeyedCombiner<'_, K, V, R>) + Send + Sync + 'static,
        reduce: R,
        partitions: usize,
    ) -> Rdd<(K, V)>
    where
        K: Key,
        V: Data,
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        self.flat_map_reduce_by_key_op(
            OpInfo::caller("flat_map_reduce_by_key"),
            Arc::new(f),
            Arc::new(reduce),
            HashPartitioner::new(partitions),
        )
    }

    pub(crate) fn flat_map_reduce_by_key_op<K, V, R>(
        &self,
        op: OpInfo,
        f: Arc<dyn Fn(&T, &mut KeyedCombiner<'_, K, V, R>) + Send + Sync>,
        reduce: Arc<R>,
        partitioner: HashPartitioner,
    ) -> Rdd<(K, V)>
    where
        K: Key,
        V: Data,
        R: Fn(V, V) -> V + Send + Sync + 'static,
    {
        let merge = reduce.clone();
        combine_shuffled(
            self,
            op,
            partitioner,
            move |records| {
                let mut map = Combiners::default();
                let mut combiner = KeyedCombiner {
                    map: &mut map,
                    reduce: &*reduce,
                    op,
                };
                records.for_each_ref(|record| f(record, &mut combiner));
                map
            },
            merge,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use crate::testing::local_context;

    /// The words of a line: its space-separated, non-empty parts.
    fn words(line: &str) -> impl Iterator<Item = &str> {
        line.split(' ').filter(|w| !w.is_empty())
    }

    /// Lines of up to 6 words over a small vocabulary (so keys repeat within and across
    /// partitions), with empty lines and doubled spaces.
    fn lines() -> impl Strategy<Value = Vec<String>> {
        let word = prop::sample::select(vec!["a", "bb", "a", "ccc", "", "d"]);
        let line = prop::collection::vec(word, 0..6).prop_map(|ws| ws.join(" "));
        prop::collection::vec(line, 0..60)
    }

    proptest! {
        /// The fast path (records by reference, keys owned only when new) gives what the
        /// plain path gives (`flat_map` of owned words, `map` to pairs, `reduce_by_key`)
        /// and what a count by hand gives, over shared records (parallelized slices), computed
        /// ones (`map(identity)`) and a cached partition, for any partition counts.
        #[test]
        fn by_reference_equals_the_plain_path_and_a_count_by_hand(
            data in lines(),
            partitions in 1usize..5,
            parallelism in 1usize..4,
        ) {
            let ctx = local_context(parallelism);
            let shared = ctx.parallelize(data.clone(), partitions);
            let computed = shared.map(|l| l);
            let cached = shared.map(|l| l).cache();
            let fast = |rdd: &crate::rdd::Rdd<String>| {
                let mut out = rdd
                    .flat_map_reduce_by_key(
                        |line: &String, counts| words(line).for_each(|w| counts.add(w, 1u64)),
                        |a, b| a + b,
                    )
                    .collect()
                    .unwrap();
                out.sort();
                out
            };
            let mut plain = shared
                .flat_map(|l: String| words(&l).map(String::from).collect::<Vec<_>>())
                .map(|w| (w, 1u64))
                .reduce_by_key(|a, b| a + b)
                .collect()
                .unwrap();
            plain.sort();
            let mut by_hand = BTreeMap::new();
            for w in data.iter().flat_map(|l| words(l)) {
                *by_hand.entry(w.to_string()).or_insert(0u64) += 1;
            }
            let by_hand: Vec<(String, u64)> = by_hand.into_iter().collect();
            prop_assert_eq!(&fast(&shared), &by_hand);
            prop_assert_eq!(&fast(&computed), &by_hand);
            // The first job over `cached` computes and caches it; the second reads the
            // cached partitions by reference.
            prop_assert_eq!(&fast(&cached), &by_hand);
            prop_assert_eq!(&fast(&cached), &by_hand);
            prop_assert_eq!(&plain, &by_hand);
        }
    }

    proptest! {
        /// `reduce_by_key` and `group_by_key` over shared pairs (keys borrowed, cloned only
        /// when new to the map task) give what they give over computed pairs and what a fold
        /// by hand gives; group order is map partition, then record order either way.
        #[test]
        fn a_combine_over_shared_pairs_equals_the_combine_over_computed_ones(
            data in prop::collection::vec((0u8..6, -5i64..5), 0..80),
            partitions in 1usize..5,
            parallelism in 1usize..4,
        ) {
            let ctx = local_context(parallelism);
            let pairs: Vec<(String, i64)> =
                data.iter().map(|(k, v)| (format!("k{k}"), *v)).collect();
            let shared = ctx.parallelize(pairs.clone(), partitions);
            let computed = shared.map(|p| p);
            let sums = |rdd: &crate::rdd::Rdd<(String, i64)>| {
                let mut out = rdd.reduce_by_key(|a, b| a + b).collect().unwrap();
                out.sort();
                out
            };
            let groups = |rdd: &crate::rdd::Rdd<(String, i64)>| {
                let mut out = rdd.group_by_key().collect().unwrap();
                out.sort();
                out
            };
            let mut by_hand: BTreeMap<String, (i64, Vec<i64>)> = BTreeMap::new();
            for (k, v) in &pairs {
                let e = by_hand.entry(k.clone()).or_default();
                e.0 += v;
                e.1.push(*v);
            }
            let hand_sums: Vec<(String, i64)> =
                by_hand.iter().map(|(k, (s, _))| (k.clone(), *s)).collect();
            let hand_groups: Vec<(String, Vec<i64>)> =
                by_hand.into_iter().map(|(k, (_, g))| (k, g)).collect();
            prop_assert_eq!(&sums(&shared), &hand_sums);
            prop_assert_eq!(&sums(&computed), &hand_sums);
            prop_assert_eq!(&groups(&shared), &hand_groups);
            prop_assert_eq!(&groups(&computed), &hand_groups);
        }
    }

    #[test]
    fn a_combiner_shows_its_operator_and_how_many_keys_it_holds() {
        let mut map = super::Combiners::<String, u64>::default();
        let reduce = |a: u64, b: u64| a + b;
        let mut combiner = super::KeyedCombiner {
            map: &mut map,
            reduce: &reduce,
            op: crate::error::OpInfo::caller("flat_map_reduce_by_key"),
        };
        combiner.add("a", 1);
        combiner.add("b", 1);
        combiner.add("a", 1);
        let shown = format!("{combiner:?}");
        assert!(shown.contains("flat_map_reduce_by_key"), "{shown}");
        assert!(shown.contains("keys: 2"), "{shown}");
        assert_eq!(map.get("a"), Some(&Some(2)));
    }

    #[test]
    fn with_partitions_cuts_the_result_into_that_many_partitions() {
        let ctx = local_context(2);
        let lines = ctx.parallelize(vec!["d c b a".to_string(), "a".into()], 2);
        let counts = lines.flat_map_reduce_by_key_with_partitions(
            |line: &String, out| words(line).for_each(|w| out.add(w, 1u64)),
            |a, b| a + b,
            3,
        );
        assert_eq!(counts.num_partitions(), 3);
        let mut all = counts.collect().unwrap();
        all.sort();
        let expected: Vec<(String, u64)> = [("a", 2), ("b", 1), ("c", 1), ("d", 1)]
            .iter()
            .map(|&(w, n)| (w.to_string(), n))
            .collect();
        assert_eq!(all, expected);
    }

    /// Values are reduced in record order within a map task and combiners in map partition
    /// order, as `reduce_by_key` does: string concatenation (associative, not commutative)
    /// shows the order.
    #[test]
    fn values_are_reduced_in_record_then_map_partition_order() {
        let ctx = local_context(1);
        let lines = ctx.parallelize(vec!["k:a k:b".to_string(), "k:c".into(), "k:d".into()], 2);
        let out = lines
            .flat_map_reduce_by_key(
                |line: &String, out| {
                    for pair in words(line) {
                        let (k, v) = pair.split_once(':').unwrap();
                        out.add(k, v.to_string());
                    }
                },
                |a, b| a + &b,
            )
            .collect()
            .unwrap();
        assert_eq!(out, vec![("k".to_string(), "abcd".to_string())]);
    }
}
