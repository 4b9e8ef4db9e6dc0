//! `map_with_state` (Spark: `mapWithState`, `MapWithStateDStream`, `MapWithStateRDD`):
//! per-key state where each batch touches only its own keys (plus keys timing out).
//!
//! Each partition of the internal state stream holds one record: the partition's
//! [`StateMap`] (persistent, shared with the previous batch's), an index of which keys were
//! touched at which batch (for timeouts), and the batch's mapped records. The batch's
//! records are partitioned by key and zipped with the previous state partition by
//! partition, so the state never moves. Recommended over `update_state_by_key` for large
//! state: a batch costs in proportion to its own keys, not to the state's size.

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::data::{Data, Key};
use crate::dstream::state_map::{Level, Slot, StateMap};
use crate::dstream::{DStream, StatePartitioning};
use crate::error::OpInfo;
use crate::partitioner::HashPartitioner;
use crate::rdd::{map_partitions, zip_partitions, PartitionIter, Rdd, RddContext, SharedIter};
use crate::time::Time;
use crate::trace;

/// The state of one key, as the `map_with_state` function sees it (Spark: `State`).
#[derive(Debug)]
pub struct State<S> {
    value: Option<S>,
    timing_out: bool,
    change: Change,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    None,
    Updated,
    Removed,
}

impl<S> State<S> {
    fn new(value: Option<S>, timing_out: bool) -> State<S> {
        State {
            value,
            timing_out,
            change: Change::None,
        }
    }

    /// Whether the key has state.
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// The key's state, if it has one (Spark: `getOption`).
    pub fn get(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// Sets the key's state.
    ///
    /// # Panics
    /// If the state is timing out (Spark refuses that too).
    pub fn update(&mut self, state: S) {
        assert!(!self.timing_out, "cannot update a state that is timing out");
        self.value = Some(state);
        self.change = Change::Updated;
    }

    /// Removes the key's state.
    ///
    /// # Panics
    /// If the state is timing out (it is removed anyway).
    pub fn remove(&mut self) {
        assert!(
            !self.timing_out,
            "cannot remove a state that is timing out (it is removed anyway)"
        );
        self.value = None;
        self.change = Change::Removed;
    }

    /// Whether this call is the last one for a key that received no data for the timeout;
    /// the key is removed after it.
    pub fn is_timing_out(&self) -> bool {
        self.timing_out
    }
}

type MappingFn<K, V, S, E> = dyn Fn(Time, &K, Option<V>, &mut State<S>) -> Option<E> + Send + Sync;

/// What [`DStream::map_with_state`] does: the mapping function and, optionally, an initial
/// state, a partition count and a timeout (Spark: `StateSpec`).
pub struct StateSpec<K, V, S, E> {
    func: Arc<MappingFn<K, V, S, E>>,
    initial: Option<Rdd<(K, S)>>,
    partitions: Option<usize>,
    timeout: Option<Duration>,
}

impl<K, V, S, E> fmt::Debug for StateSpec<K, V, S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSpec")
            .field("initial", &self.initial.is_some())
            .field("partitions", &self.partitions)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl<K: Key, V: Data, S: Data, E: Data> StateSpec<K, V, S, E> {
    /// Calls `f(key, Some(value), state)` once per record of each batch, and emits what it
    /// returns (Spark: `StateSpec.function((key, value, state) => mapped)`).
    pub fn function(f: impl Fn(&K, Option<V>, &mut State<S>) -> E + Send + Sync + 'static) -> Self {
        Self::function_with_time(move |_, k, v, s| Some(f(k, v, s)))
    }

    /// Calls `f(batch time, key, Some(value), state)` once per record; emits the `Some`s
    /// (Spark: `StateSpec.function((time, key, value, state) => Option[mapped])`).
    pub fn function_with_time(
        f: impl Fn(Time, &K, Option<V>, &mut State<S>) -> Option<E> + Send + Sync + 'static,
    ) -> Self {
        StateSpec {
            func: Arc::new(f),
            initial: None,
            partitions: None,
            timeout: None,
        }
    }

    /// Starts from the state in `rdd` (its keys count as updated at the first batch).
    pub fn initial_state(mut self, rdd: Rdd<(K, S)>) -> Self {
        self.initial = Some(rdd);
        self
    }

    /// Keeps the state in `partitions` partitions. Without it, the state has the default
    /// parallelism's count when the stream starts fresh, and the count of the checkpoint it
    /// is restored from otherwise (so a checkpoint restores with any number of executors).
    /// Given, it must equal the checkpoint's: a restore refuses another count with
    /// [`CheckpointError::PartitionsChanged`](crate::CheckpointError::PartitionsChanged).
    ///
    /// # Panics
    /// If `partitions` is zero.
    pub fn num_partitions(mut self, partitions: usize) -> Self {
        assert!(
            partitions > 0,
            "map_with_state needs at least one partition"
        );
        self.partitions = Some(partitions);
        self
    }

    /// Times out keys that received no record for `timeout`: at the first batch past it,
    /// the function is called once more for the key with no value and
    /// [`State::is_timing_out`], then the key is dropped.
    ///
    /// # Examples
    /// `a`'s last record is at 1 s: it times out at 4 s, the first batch more than 2 s later;
    /// `b`, refreshed at 4 s, at 7 s.
    /// ```
    /// use std::time::Duration;
    /// use rivulet_framework::dstream::{State, StateSpec};
    /// use rivulet_framework::testing::run_batches_for;
    ///
    /// // Emits `(key, time)` when a key times out.
    /// let spec = StateSpec::function_with_time(
    ///     |t, key: &char, _: Option<i32>, seen: &mut State<()>| {
    ///         if seen.is_timing_out() {
    ///             return Some((*key, t.as_ms()));
    ///         }
    ///         seen.update(());
    ///         None
    ///     },
    /// );
    /// let input = vec![vec![('a', 1)], vec![('b', 1)], vec![], vec![('b', 1)]];
    /// let out = run_batches_for(input, 7, |s| {
    ///     s.map_with_state(spec.timeout(Duration::from_secs(2))).mapped()
    /// });
    /// assert_eq!(out.concat(), vec![('a', 4000), ('b', 7000)]);
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// Keys touched at each batch time (ms) still within the timeout, oldest first.
type Touched<K> = Arc<Vec<(i64, Arc<Vec<K>>)>>;

/// One partition of the internal state stream: its state, timeout index and mapped records.
pub(crate) struct StateRecord<K, S, E> {
    map: StateMap<K, S>,
    touched: Touched<K>,
    mapped: Arc<Vec<E>>,
}

impl<K, S, E> Clone for StateRecord<K, S, E> {
    fn clone(&self) -> Self {
        StateRecord {
            map: self.map.clone(),
            touched: self.touched.clone(),
            mapped: self.mapped.clone(),
        }
    }
}

/// The serialized form of a [`StateRecord`] (for checkpoints and process borders).
#[derive(Serialize, Deserialize)]
struct StateRecordSnapshot<K, S, E> {
    entries: Vec<(K, S, i64)>,
    touched: Vec<(i64, Vec<K>)>,
    mapped: Vec<E>,
}

impl<K: Key, S: Data, E: Data> Serialize for StateRecord<K, S, E> {
    fn serialize<Z: Serializer>(&self, serializer: Z) -> Result<Z::Ok, Z::Error> {
        StateRecordSnapshot {
            entries: self.map.entries(),
            touched: self
                .touched
                .iter()
                .map(|(t, keys)| (*t, keys.to_vec()))
                .collect(),
            mapped: self.mapped.to_vec(),
        }
        .serialize(serializer)
    }
}

impl<'de, K: Key, S: Data, E: Data> Deserialize<'de> for StateRecord<K, S, E> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let snapshot = StateRecordSnapshot::<K, S, E>::deserialize(deserializer)?;
        let level = snapshot
            .entries
            .into_iter()
            .map(|(k, s, t)| (k, Slot::Live(s, t)))
            .collect();
        Ok(StateRecord {
            map: StateMap::new().with_delta(level),
            touched: Arc::new(
                snapshot
                    .touched
                    .into_iter()
                    .map(|(t, keys)| (t, Arc::new(keys)))
                    .collect(),
            ),
            mapped: Arc::new(snapshot.mapped),
        })
    }
}

impl<K: Key, S: Data, E: Data> StateRecord<K, S, E> {
    fn empty() -> Self {
        StateRecord {
            map: StateMap::new(),
            touched: Arc::new(Vec::new()),
            mapped: Arc::new(Vec::new()),
        }
    }
}

/// The batch's state update for one partition (Spark: `MapWithStateRDDRecord.updateRecordWithData`).
struct Update<'a, K, V, S, E> {
    func: &'a MappingFn<K, V, S, E>,
    time: Time,
    timeout: Option<Duration>,
    op: OpInfo,
}

impl<K: Key, V: Data, S: Data, E: Data> Update<'_, K, V, S, E> {
    fn apply(
        &self,
        previous: &StateRecord<K, S, E>,
        records: PartitionIter<(K, V)>,
    ) -> StateRecord<K, S, E> {
        let now = self.time.as_ms();
        let mut delta: Level<K, S> = Level::default();
        let mut touched_now = Vec::new();
        let mut mapped = Vec::new();
        for (key, value) in records {
            let existing = lookup(previous, &delta, &key).map(|(s, _)| s.clone());
            let mut state = State::new(existing, false);
            trace::enter(self.op);
            mapped.extend((self.func)(self.time, &key, Some(value), &mut state));
            let slot = match (state.change, state.value) {
                (Change::Removed, _) => Slot::Removed,
                (Change::Updated, Some(s)) => Slot::Live(s, now),
                // With a timeout, data refreshes the key's time even if the state is unchanged.
                (Change::None, Some(s)) if self.timeout.is_some() => Slot::Live(s, now),
                _ => continue,
            };
            if self.timeout.is_some() && matches!(slot, Slot::Live(..)) {
                touched_now.push(key.clone());
            }
            delta.insert(key, slot);
        }
        let mut touched = previous.touched.clone();
        if let Some(timeout) = self.timeout {
            let threshold = (self.time - timeout).as_ms();
            let index: &Vec<(i64, Arc<Vec<K>>)> = &previous.touched;
            let expired = index.iter().take_while(|(t, _)| *t < threshold).count();
            for (when, keys) in &index[..expired] {
                for key in keys.iter() {
                    // Only if this was the key's last update: a later one keeps it alive.
                    let Some((s, updated)) = lookup(previous, &delta, key) else {
                        continue;
                    };
                    if *updated != *when {
                        continue;
                    }
                    let mut state = State::new(Some(s.clone()), true);
                    trace::enter(self.op);
                    mapped.extend((self.func)(self.time, key, None, &mut state));
                    delta.insert(key.clone(), Slot::Removed);
                }
            }
            let mut next: Vec<(i64, Arc<Vec<K>>)> = index[expired..].to_vec();
            next.push((now, Arc::new(touched_now)));
            touched = Arc::new(next);
        }
        StateRecord {
            map: previous.map.with_delta(delta),
            touched,
            mapped: Arc::new(mapped),
        }
    }
}

/// The key's live `(state, updated_ms)`: from this batch's updates, else the previous state.
fn lookup<'a, K: Key, S: Data, E>(
    previous: &'a StateRecord<K, S, E>,
    delta: &'a Level<K, S>,
    key: &K,
) -> Option<(&'a S, &'a i64)> {
    match delta.get(key).or_else(|| previous.map.get(key)) {
        Some(Slot::Live(s, t)) => Some((s, t)),
        _ => None,
    }
}

/// A stream of what `map_with_state`'s function returned, with access to the state
/// (Spark: `MapWithStateDStream`). Derefs to the `DStream<E>` of mapped records.
pub struct MapWithStateDStream<K, S, E> {
    mapped: DStream<E>,
    internal: DStream<StateRecord<K, S, E>>,
}

impl<K, S, E> fmt::Debug for MapWithStateDStream<K, S, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapWithStateDStream")
            .field("mapped", &self.mapped)
            .finish()
    }
}

impl<K, S, E> Deref for MapWithStateDStream<K, S, E> {
    type Target = DStream<E>;
    fn deref(&self) -> &DStream<E> {
        &self.mapped
    }
}

impl<K: Key, S: Data, E: Data> MapWithStateDStream<K, S, E> {
    /// The mapped records, as a plain `DStream<E>`.
    ///
    /// # Examples
    /// Emits a key when it is seen for the second time (the function returns an `Option`):
    /// ```
    /// use rivulet_framework::dstream::{State, StateSpec};
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let spec = StateSpec::function_with_time(
    ///     |_, key: &char, _: Option<i32>, seen: &mut State<u32>| {
    ///         let n = seen.get().copied().unwrap_or(0) + 1;
    ///         seen.update(n);
    ///         (n == 2).then_some(*key)
    ///     },
    /// );
    /// let input = vec![vec![('a', 1)], vec![('a', 1), ('b', 1)], vec![('b', 1), ('a', 1)]];
    /// let out = run_batches(input, |s| s.map_with_state(spec).mapped());
    /// assert_eq!(out, vec![vec![], vec!['a'], vec!['b']]);
    /// ```
    pub fn mapped(&self) -> DStream<E> {
        self.mapped.clone()
    }

    /// Data-checkpoints the state every `interval` (default: the smallest multiple of the
    /// slide that is at least 10 s) and cuts its lineage there (Spark:
    /// `MapWithStateDStream.checkpoint`, which applies to the internal state stream, not to
    /// the mapped records). See [`DStream::checkpoint`].
    ///
    /// # Examples
    /// Checkpointed every batch, the state's lineage reaches back over 2 batches at most (see
    /// [`DStream::checkpoint`]); the mapped stream reads the state:
    /// ```
    /// use rivulet_framework::dstream::{State, StateSpec};
    /// use rivulet_framework::testing::{run_batches, BATCH};
    ///
    /// let spec = StateSpec::function(|_: &char, v: Option<i32>, last: &mut State<i32>| {
    ///     last.update(v.unwrap()) // `v` is `None` only for a key timing out
    /// });
    /// let out = run_batches(vec![vec![('k', 1)]; 4], |s| {
    ///     let state = s.map_with_state(spec);
    ///     state.checkpoint(BATCH).transform(|rdd, _| {
    ///         let batches = rdd.lineage_batches();
    ///         rdd.map(move |_| batches)
    ///     })
    /// });
    /// assert_eq!(out, vec![vec![1], vec![2], vec![2], vec![2]]);
    /// ```
    #[track_caller]
    pub fn checkpoint(&self, interval: Duration) -> &Self {
        self.internal.checkpoint(interval);
        self
    }

    /// Every batch, the whole state: `(key, state)` for every key (Spark:
    /// `stateSnapshots`). A full scan of the state: use it sparingly.
    ///
    /// # Examples
    /// The whole state every batch, also when the batch has no records:
    /// ```
    /// use rivulet_framework::dstream::{State, StateSpec};
    /// use rivulet_framework::testing::{run_batches, sorted};
    ///
    /// // The state: each key's last value (`v` is `None` only for a key timing out).
    /// let spec = StateSpec::function(|_: &char, v: Option<i32>, last: &mut State<i32>| {
    ///     last.update(v.unwrap())
    /// });
    /// let input = vec![vec![('a', 1)], vec![('b', 2)], vec![]];
    /// let out = run_batches(input, |s| s.map_with_state(spec).state_snapshots());
    /// let both = vec![('a', 1), ('b', 2)];
    /// assert_eq!(sorted(out), vec![vec![('a', 1)], both.clone(), both]);
    /// ```
    #[track_caller]
    pub fn state_snapshots(&self) -> DStream<(K, S)> {
        let op = OpInfo::caller("state_snapshots");
        self.internal.derive(op, move |rdd, _| {
            rdd.flat_map_op(op, |record: StateRecord<K, S, E>| {
                record
                    .map
                    .entries()
                    .into_iter()
                    .map(|(k, s, _)| (k, s))
                    .collect::<Vec<_>>()
            })
        })
    }
}

/// The first state: `initial` partitioned by `p`, updated at `t`; or empty partitions.
fn first_state<K: Key, S: Data, E: Data>(
    ctx: &Arc<RddContext>,
    op: OpInfo,
    initial: Option<&Rdd<(K, S)>>,
    p: HashPartitioner,
    t: Time,
    timed: bool,
) -> Rdd<StateRecord<K, S, E>> {
    let Some(initial) = initial else {
        let n = p.num_partitions();
        return ctx.parallelize_op(op, vec![StateRecord::empty(); n], n);
    };
    let now = t.as_ms();
    map_partitions(
        &initial.partitioned_by(op, p),
        op,
        false,
        move |_, records| {
            let level: Level<K, S> = records.map(|(k, s)| (k, Slot::Live(s, now))).collect();
            let keys: Vec<K> = if timed {
                level.keys().cloned().collect()
            } else {
                Vec::new()
            };
            let touched = if timed {
                vec![(now, Arc::new(keys))]
            } else {
                Vec::new()
            };
            Box::new(std::iter::once(StateRecord {
                map: StateMap::new().with_delta(level),
                touched: Arc::new(touched),
                mapped: Arc::new(Vec::new()),
            }))
        },
    )
}

impl<K: Key, V: Data> DStream<(K, V)> {
    /// Per-key state updated record by record: `spec`'s function is called once per record
    /// of each batch with the key's state, and what it returns is emitted (Spark:
    /// `mapWithState`). Only the batch's keys (and keys timing out) are touched, so the cost
    /// of a batch follows its size, not the state's: prefer it to `update_state_by_key` for
    /// large state. **Records:** `(K, V)` → what the function returns, per record.
    /// **Partitions:** the state's: [`StateSpec::num_partitions`], else the checkpoint's
    /// when restored, else the default parallelism.
    ///
    /// # Examples
    /// A running count per key, emitted with each record; a batch without records emits nothing
    /// (compare [`update_state_by_key`](DStream::update_state_by_key)).
    /// ```
    /// use rivulet_framework::dstream::{State, StateSpec};
    /// use rivulet_framework::testing::{run_batches, sorted};
    ///
    /// let spec = StateSpec::function(|key: &char, _: Option<i32>, count: &mut State<u32>| {
    ///     let n = count.get().copied().unwrap_or(0) + 1;
    ///     count.update(n);
    ///     (*key, n)
    /// });
    /// let input = vec![vec![('a', 1)], vec![('a', 1), ('b', 1)], vec![]];
    /// let out = run_batches(input, |s| s.map_with_state(spec).mapped());
    /// assert_eq!(sorted(out), vec![vec![('a', 1)], vec![('a', 2), ('b', 1)], vec![]]);
    /// ```
    #[track_caller]
    pub fn map_with_state<S: Data, E: Data>(
        &self,
        spec: StateSpec<K, V, S, E>,
    ) -> MapWithStateDStream<K, S, E> {
        let op = OpInfo::caller("map_with_state");
        let ctx = self.graph().rdd_context().clone();
        let partitioning = Arc::new(StatePartitioning::new(
            spec.partitions,
            ctx.state_parallelism(),
        ));
        let state_partitioning = partitioning.clone();
        let (parent, slide) = (self.clone(), self.slide_duration());
        let internal = self
            .child(op, move |me, t| {
                let p = partitioning.partitioner();
                let data = match parent.get_or_compute(t)? {
                    Some(data) => data.partitioned_by(op, p),
                    None => ctx.parallelize_op(op, Vec::new(), p.num_partitions()),
                };
                let previous = match me.get_or_compute(t - slide)? {
                    Some(previous) => previous,
                    None => first_state(
                        &ctx,
                        op,
                        spec.initial.as_ref(),
                        p,
                        t,
                        spec.timeout.is_some(),
                    ),
                };
                let (func, timeout) = (spec.func.clone(), spec.timeout);
                Ok(Some(zip_partitions(
                    &previous,
                    &data,
                    op,
                    false,
                    move |mut previous, records| {
                        let previous = previous.next().unwrap_or_else(StateRecord::empty);
                        let update = Update {
                            func: &*func,
                            time: t,
                            timeout,
                            op,
                        };
                        Box::new(std::iter::once(update.apply(&previous, records)))
                    },
                )?))
            })
            .with_state_partitioning(state_partitioning)
            .cache()
            .stateful_with_keys(|records: &[StateRecord<K, S, E>]| {
                records.iter().map(|r| r.map.len()).sum()
            });
        let mapped = internal.derive(op, move |rdd, _| {
            rdd.flat_map_op(op, |record: StateRecord<K, S, E>| {
                SharedIter::new(record.mapped)
            })
        });
        MapWithStateDStream { mapped, internal }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{State, StateSpec};
    use crate::testing::{local_context, pairs, run_batches_for, sorted};

    fn kv(kv: &[(&str, i64)]) -> Vec<(String, i64)> {
        pairs(kv)
    }

    fn input() -> Vec<Vec<(String, i64)>> {
        vec![
            kv(&[("a", 1)]),
            kv(&[("a", 1), ("b", 1)]),
            vec![],
            kv(&[("b", 1)]),
        ]
    }

    /// Running count per key; emits `(key, count so far)` for every record.
    #[allow(clippy::ptr_arg)] // the mapping function gets `&K`, here `&String`
    fn running_count(key: &String, value: Option<i64>, state: &mut State<i64>) -> (String, i64) {
        let sum = value.unwrap_or(0) + state.get().copied().unwrap_or(0);
        state.update(sum);
        (key.clone(), sum)
    }

    #[test]
    fn emits_one_record_per_input_record_and_keeps_state() {
        let mapped = run_batches_for(input(), 5, |s| {
            s.map_with_state(StateSpec::function(running_count))
                .mapped()
        });
        assert_eq!(
            sorted(mapped),
            vec![
                kv(&[("a", 1)]),
                kv(&[("a", 2), ("b", 1)]),
                vec![],
                kv(&[("b", 2)]),
                vec![]
            ]
        );
        let snapshots = run_batches_for(input(), 5, |s| {
            s.map_with_state(StateSpec::function(running_count))
                .state_snapshots()
        });
        let all = kv(&[("a", 2), ("b", 2)]);
        assert_eq!(
            sorted(snapshots),
            vec![
                kv(&[("a", 1)]),
                kv(&[("a", 2), ("b", 1)]),
                kv(&[("a", 2), ("b", 1)]),
                all.clone(),
                all
            ]
        );
    }

    #[test]
    fn removed_state_is_gone_and_only_some_results_are_emitted() {
        // Removes a key's state at its second record; emits only when the state was removed.
        let spec = StateSpec::function_with_time(
            |t, key: &String, _v: Option<i64>, state: &mut State<i64>| {
                if state.exists() {
                    state.remove();
                    Some((key.clone(), t.as_ms()))
                } else {
                    state.update(1);
                    None
                }
            },
        );
        let mapped = run_batches_for(input(), 4, move |s| s.map_with_state(spec).mapped());
        assert_eq!(
            sorted(mapped),
            vec![vec![], kv(&[("a", 2000)]), vec![], kv(&[("b", 4000)])]
        );
    }

    #[test]
    fn keys_without_data_for_the_timeout_are_called_once_more_then_dropped() {
        // a's last data at 1 s, b's at 2 s and 4 s; timeout 2 s: a times out at 4 s
        // (1 s < 4 s - 2 s), b at 7 s.
        let input = vec![kv(&[("a", 1)]), kv(&[("b", 1)]), vec![], kv(&[("b", 1)])];
        let spec = || {
            StateSpec::function_with_time(
                |t, key: &String, value: Option<i64>, state: &mut State<i64>| {
                    if state.is_timing_out() {
                        return Some((format!("{key} timed out"), t.as_ms()));
                    }
                    let n = state.get().copied().unwrap_or(0) + value.unwrap_or(0);
                    state.update(n);
                    None
                },
            )
            .timeout(Duration::from_secs(2))
        };
        let mapped = run_batches_for(input.clone(), 8, move |s| s.map_with_state(spec()).mapped());
        let timed_out = |k: &str, t: i64| vec![(format!("{k} timed out"), t)];
        assert_eq!(
            mapped,
            vec![
                vec![],
                vec![],
                vec![],
                timed_out("a", 4000),
                vec![],
                vec![],
                timed_out("b", 7000),
                vec![]
            ]
        );
        let snapshots = sorted(run_batches_for(input, 8, move |s| {
            s.map_with_state(spec()).state_snapshots()
        }));
        let (a, ab, b) = (kv(&[("a", 1)]), kv(&[("a", 1), ("b", 1)]), kv(&[("b", 2)]));
        assert_eq!(
            snapshots,
            vec![a, ab.clone(), ab, b.clone(), b.clone(), b, vec![], vec![]]
        );
    }

    #[test]
    fn initial_state_and_partition_count() {
        let initial = local_context(1).parallelize(kv(&[("a", 10), ("c", 7)]), 1);
        let spec = StateSpec::function(running_count)
            .initial_state(initial)
            .num_partitions(3);
        let out = run_batches_for(input(), 2, move |s| {
            s.map_with_state(spec).state_snapshots()
        });
        assert_eq!(
            sorted(out),
            vec![
                kv(&[("a", 11), ("c", 7)]),
                kv(&[("a", 12), ("b", 1), ("c", 7)])
            ]
        );
    }
}
