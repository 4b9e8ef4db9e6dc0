//! `update_state_by_key` (Spark: `StateDStream`): per-key state carried from batch to batch.
//!
//! Every batch, the update function is called for every key that has state or new values —
//! idle keys included, with no values — and its result replaces the state (`None` removes
//! the key). The whole state is emitted every batch. The state RDD is cached and
//! partitioned by key, so only the batch's new values are shuffled; the state itself is
//! read in place. For large state where few keys change per batch, prefer
//! [`map_with_state`](DStream::map_with_state), which touches only the batch's keys.

use std::sync::Arc;

use crate::data::{Data, Key};
use crate::dstream::{DStream, StatePartitioning};
use crate::error::OpInfo;
use crate::rdd::{map_partitions, Rdd};
use crate::time::Time;
use crate::trace;

type UpdateFn<K, V, S> = dyn Fn(Time, &K, Vec<V>, Option<S>) -> Option<S> + Send + Sync;

/// Applies `f` at `t` to each `(key, (new values, previous state))`, keeping the partitioner.
fn apply<K: Key, V: Data, S: Data>(
    op: OpInfo,
    grouped: &Rdd<(K, (Vec<V>, Vec<S>))>,
    f: &Arc<UpdateFn<K, V, S>>,
    t: Time,
) -> Rdd<(K, S)> {
    let f = f.clone();
    map_partitions(grouped, op, true, move |_, records| {
        let f = f.clone();
        Box::new(records.filter_map(move |(k, (values, state))| {
            trace::enter(op);
            f(t, &k, values, state.into_iter().next()).map(|s| (k, s))
        }))
    })
}

impl<K: Key, V: Data> DStream<(K, V)> {
    /// Running per-key state: `f(new values of the key in this batch, previous state)`
    /// returns the new state, or `None` to remove the key. **Records:** the whole state,
    /// `(K, S)` per key, every batch. **Partitions:** the default parallelism when the
    /// stream starts fresh; restored from a checkpoint, the checkpoint's count (so it
    /// restores with any number of executors). Spark: `updateStateByKey`.
    ///
    /// # Examples
    /// Running totals. `f` is called for every key every batch: at 2 s, with no new values, the
    /// state is emitted again.
    /// ```
    /// use rivulet_framework::testing::{run_batches, sorted};
    ///
    /// let input = vec![vec![('a', 1), ('a', 1), ('b', 5)], vec![], vec![('b', 1)]];
    /// let out = run_batches(input, |s| {
    ///     s.update_state_by_key(|new: Vec<i32>, total: Option<i32>| {
    ///         Some(total.unwrap_or(0) + new.iter().sum::<i32>())
    ///     })
    /// });
    /// let totals = vec![('a', 2), ('b', 5)];
    /// assert_eq!(sorted(out), vec![totals.clone(), totals, vec![('a', 2), ('b', 6)]]);
    /// ```
    #[track_caller]
    pub fn update_state_by_key<S: Data>(
        &self,
        f: impl Fn(Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
    ) -> DStream<(K, S)> {
        self.update_state_op(
            OpInfo::caller("update_state_by_key"),
            Arc::new(move |_, _, vs, s| f(vs, s)),
            None,
            None,
        )
    }

    /// Like [`update_state_by_key`](DStream::update_state_by_key), with the batch time and
    /// key passed to `f(time, key, new values, previous state)`.
    ///
    /// # Examples
    /// The state is the time a key was last seen; `None` removes keys idle for a batch:
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let input = vec![vec![('a', 1)], vec![('b', 1)], vec![]];
    /// let out = run_batches(input, |s| {
    ///     s.update_state_by_key_with_time(|t, _key, new: Vec<i32>, _seen: Option<i64>| {
    ///         (!new.is_empty()).then(|| t.as_ms())
    ///     })
    /// });
    /// assert_eq!(out, vec![vec![('a', 1000)], vec![('b', 2000)], vec![]]);
    /// ```
    #[track_caller]
    pub fn update_state_by_key_with_time<S: Data>(
        &self,
        f: impl Fn(Time, &K, Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
    ) -> DStream<(K, S)> {
        self.update_state_op(
            OpInfo::caller("update_state_by_key"),
            Arc::new(f),
            None,
            None,
        )
    }

    /// Like [`update_state_by_key_with_time`](DStream::update_state_by_key_with_time),
    /// starting from the state in `initial` (used at the first batch with data, as Spark
    /// does) and keeping the state in `partitions` partitions. A restore from a checkpoint
    /// whose state has another count fails with
    /// [`CheckpointError::PartitionsChanged`](crate::CheckpointError::PartitionsChanged).
    ///
    /// # Panics
    /// If `partitions` is zero.
    ///
    /// # Examples
    /// Running totals from an initial state; its keys are there from the first batch on:
    /// ```
    /// use rivulet_framework::testing::{local_context, run_batches, sorted};
    ///
    /// let initial = local_context(2).parallelize(vec![('a', 10), ('c', 7)], 1);
    /// let input = vec![vec![('a', 1)], vec![('b', 1)]];
    /// let out = run_batches(input, |s| {
    ///     s.update_state_by_key_with_initial(
    ///         |_, _, new: Vec<i32>, n: Option<i32>| Some(n.unwrap_or(0) + new.len() as i32),
    ///         initial,
    ///         2,
    ///     )
    /// });
    /// let expected = vec![vec![('a', 11), ('c', 7)], vec![('a', 11), ('b', 1), ('c', 7)]];
    /// assert_eq!(sorted(out), expected);
    /// ```
    #[track_caller]
    pub fn update_state_by_key_with_initial<S: Data>(
        &self,
        f: impl Fn(Time, &K, Vec<V>, Option<S>) -> Option<S> + Send + Sync + 'static,
        initial: Rdd<(K, S)>,
        partitions: usize,
    ) -> DStream<(K, S)> {
        assert!(
            partitions > 0,
            "update_state_by_key needs at least one partition"
        );
        self.update_state_op(
            OpInfo::caller("update_state_by_key"),
            Arc::new(f),
            Some(initial),
            Some(partitions),
        )
    }

    /// The state stream, in `partitions` partitions if given (see [`StatePartitioning`]).
    fn update_state_op<S: Data>(
        &self,
        op: OpInfo,
        f: Arc<UpdateFn<K, V, S>>,
        initial: Option<Rdd<(K, S)>>,
        partitions: Option<usize>,
    ) -> DStream<(K, S)> {
        let parent = self.clone();
        let slide = self.slide_duration();
        let partitioning = Arc::new(StatePartitioning::new(
            partitions,
            self.graph().rdd_context().state_parallelism(),
        ));
        let state_partitioning = partitioning.clone();
        let node = self.child(op, move |me, t| {
            let p = partitioning.partitioner();
            let previous = me.get_or_compute(t - slide)?;
            let state = match (previous, parent.get_or_compute(t)?) {
                (Some(state), Some(data)) => apply(op, &data.cogroup_op(op, &state, p), &f, t),
                // No new data: every key gets an empty batch.
                (Some(state), None) => {
                    let no_values = state
                        .partitioned_by(op, p)
                        .map_values_op(op, |s| (Vec::new(), vec![s]));
                    apply(op, &no_values, &f, t)
                }
                (None, Some(data)) => match &initial {
                    Some(initial) => apply(op, &data.cogroup_op(op, initial, p), &f, t),
                    None => apply(
                        op,
                        &data
                            .group_by_key_op(op, p)
                            .map_values_op(op, |vs| (vs, Vec::new())),
                        &f,
                        t,
                    ),
                },
                (None, None) => return Ok(None),
            };
            Ok(Some(state))
        });
        node.with_state_partitioning(state_partitioning)
            .cache()
            .stateful_with_keys(|records| records.len())
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{local_context, pairs, run_batches_for, sorted};

    fn words(batches: &[&[&str]]) -> Vec<Vec<(String, u32)>> {
        batches
            .iter()
            .map(|b| b.iter().map(|w| (w.to_string(), 1)).collect())
            .collect()
    }

    fn kv(kv: &[(&str, u32)]) -> Vec<(String, u32)> {
        pairs(kv)
    }

    #[test]
    fn running_counts_with_idle_keys_and_removal() {
        let input = words(&[&["a"], &["a", "b"], &[], &["b", "c"]]);
        // State is the running count; a key without values in a batch is removed.
        let out = run_batches_for(input, 5, |s| {
            s.update_state_by_key(|vs: Vec<u32>, state: Option<u32>| {
                (!vs.is_empty()).then(|| state.unwrap_or(0) + vs.iter().sum::<u32>())
            })
        });
        assert_eq!(
            sorted(out),
            vec![
                kv(&[("a", 1)]),
                kv(&[("a", 2), ("b", 1)]),
                vec![],
                kv(&[("b", 1), ("c", 1)]),
                vec![]
            ]
        );
    }

    #[test]
    fn idle_keys_get_empty_values_and_time() {
        let input = words(&[&["a"], &[]]);
        let out = run_batches_for(input, 3, |s| {
            s.update_state_by_key_with_time(|t, k: &String, vs: Vec<u32>, state: Option<u32>| {
                Some(
                    state.unwrap_or(0) * 100
                        + vs.len() as u32 * 10
                        + (t.as_ms() / 1000) as u32
                        + k.len() as u32
                        - 1,
                )
            })
        });
        assert_eq!(
            out,
            vec![kv(&[("a", 11)]), kv(&[("a", 1102)]), kv(&[("a", 110203)])]
        );
    }

    #[test]
    fn initial_state_is_the_starting_point() {
        let ctx = local_context(2);
        let initial = ctx.parallelize(kv(&[("a", 10), ("z", 5)]), 2);
        let input = words(&[&["a"], &["z"]]);
        let out = run_batches_for(input, 2, move |s| {
            s.update_state_by_key_with_initial(
                |_, _: &String, vs: Vec<u32>, state: Option<u32>| {
                    Some(state.unwrap_or(0) + vs.len() as u32)
                },
                initial,
                3,
            )
        });
        assert_eq!(
            sorted(out),
            vec![kv(&[("a", 11), ("z", 5)]), kv(&[("a", 11), ("z", 6)])]
        );
    }
}
