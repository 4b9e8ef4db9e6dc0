//! Property tests of issue 3's windowed and stateful operators on the actor runtime, each
//! against a naive model written here (recomputing every window or prefix from the raw
//! input batches with a `BTreeMap`):
//!
//! 1. `reduce_by_key_and_window_inv(+, -)` with a `!= 0` filter equals
//!    `reduce_by_key_and_window(+)`, and both equal the naive per-window sums; without the
//!    filter, keys seen in an earlier window stay with 0.
//! 2. `update_state_by_key` (running sum): the state after each batch is the sum of the
//!    whole input prefix.
//! 3. `map_with_state` (running sum): the snapshots equal the same prefix sums, and each
//!    record is mapped to its key's running sum.
//! 4. Results (sorted per batch) do not depend on the number of executors (1, 2, 4) nor the
//!    default parallelism (1, 3, 5).
//! 5. `map_with_state` with a timeout: keys time out exactly when the model says (one more
//!    call with no value, then gone from the snapshots).
//!
//! Plus one deterministic long run (150 batches) of laws 1 to 3 and 5, far past every
//! remember horizon.
//!
//! Each case starts its own actix `System`, so cases are few and small: up to 8 batches of
//! up to 10 records over 4 keys, windows and slides of 1 to 4 and 1 to 3 batches (slides
//! larger than the window included).

mod support3;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;

use proptest::prelude::*;
use rivulet::prelude::*;
use support3::*;

type Input = Vec<Vec<(String, i64)>>;

/// Random input batches: keys `k0..k3`, positive values (so that a window sum is 0 only
/// when the key is absent from the window).
fn input() -> impl Strategy<Value = Input> {
    let record = (0u8..4, 1i64..=5).prop_map(|(k, v)| (format!("k{k}"), v));
    prop::collection::vec(prop::collection::vec(record, 0..=10), 1..=8)
}

/// Runs `f` in a fresh actix System, failing after [`TEST_TIMEOUT`].
fn block<F: Future>(f: F) -> F::Output {
    actix::System::new().block_on(within(f))
}

/// How many batches a case runs: past the input by a window and a slide, so that the
/// windows empty out.
fn batch_count(input: &Input, window: u32, slide: u32) -> u32 {
    input.len() as u32 + window + slide
}

/// The batch `k` (from 1) of the input; empty past its end.
fn batch(input: &Input, k: u32) -> &[(String, i64)] {
    input.get(k as usize - 1).map_or(&[], |b| b.as_slice())
}

/// The naive window sums: for each slide point `t = j * slide <= n`, the per-key sums of
/// batches `(t - window, t]`, sorted by key.
fn window_sums(input: &Input, window: u32, slide: u32, n: u32) -> Vec<(i64, Vec<(String, i64)>)> {
    (1..=n / slide)
        .map(|j| {
            let t = j * slide;
            let mut sums = BTreeMap::new();
            for k in t.saturating_sub(window) + 1..=t {
                for (key, v) in batch(input, k) {
                    *sums.entry(key.clone()).or_insert(0) += v;
                }
            }
            (i64::from(t) * 100, sums.into_iter().collect())
        })
        .collect()
}

/// The naive window sums of the inverse form without a filter: every key seen in a window
/// so far stays, with 0 when it is absent from the current window.
fn window_sums_keeping_zeros(
    input: &Input,
    window: u32,
    slide: u32,
    n: u32,
) -> Vec<(i64, Vec<(String, i64)>)> {
    let mut seen = BTreeSet::new();
    window_sums(input, window, slide, n)
        .into_iter()
        .map(|(t, sums)| {
            seen.extend(sums.iter().map(|(k, _)| k.clone()));
            let sums: BTreeMap<String, i64> = sums.into_iter().collect();
            let all = seen
                .iter()
                .map(|k| (k.clone(), sums.get(k).copied().unwrap_or(0)))
                .collect();
            (t, all)
        })
        .collect()
}

/// The naive running sums: after each batch `1..=n`, the per-key sums of the prefix.
fn prefix_sums(input: &Input, n: u32) -> Vec<(i64, Vec<(String, i64)>)> {
    let mut sums = BTreeMap::new();
    (1..=n)
        .map(|k| {
            for (key, v) in batch(input, k) {
                *sums.entry(key.clone()).or_insert(0) += v;
            }
            (i64::from(k) * 100, sums.clone().into_iter().collect())
        })
        .collect()
}

/// The naive per-record running sums: each record of batch `k` mapped to its key's sum
/// including it, as a sorted multiset per batch.
fn running_records(input: &Input, n: u32) -> Vec<(i64, Vec<(String, i64)>)> {
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    (1..=n)
        .map(|k| {
            let mut out: Vec<(String, i64)> = batch(input, k)
                .iter()
                .map(|(key, v)| {
                    let s = sums.entry(key.clone()).or_insert(0);
                    *s += v;
                    (key.clone(), *s)
                })
                .collect();
            out.sort();
            (i64::from(k) * 100, out)
        })
        .collect()
}

/// A collector's batches with times, each batch sorted.
fn timed_sorted<T: Clone + Ord>(c: &BatchCollector<T>) -> Vec<(i64, Vec<T>)> {
    c.timed_batches()
        .into_iter()
        .map(|(t, b)| (t.as_ms(), sorted(b)))
        .collect()
}

/// Each batch's records as sorted `Debug` strings, for comparing mixed outputs.
fn debug_sorted<T: Clone + Debug>(c: &BatchCollector<T>) -> Vec<(i64, Vec<String>)> {
    c.timed_batches()
        .into_iter()
        .map(|(t, b)| {
            (
                t.as_ms(),
                sorted(b.iter().map(|r| format!("{r:?}")).collect()),
            )
        })
        .collect()
}

type Timed = Vec<(i64, Vec<(String, i64)>)>;

/// Reads a collector's batches (as [`debug_sorted`]) once the batches ran.
type Outcome = Box<dyn Fn() -> Vec<(i64, Vec<String>)>>;

fn later<T: Clone + Debug + 'static>(c: BatchCollector<T>) -> Outcome {
    Box::new(move || debug_sorted(&c))
}

/// Law 1's three forms of the windowed sum, run on the actor runtime.
fn run_window_forms(input: &Input, window: u32, slide: u32, parts: usize) -> (Timed, Timed, Timed) {
    let n = batch_count(input, window, slide);
    let input = input.clone();
    block(async move {
        let ssc = ctx();
        let s = ssc.queue_stream(input);
        let (w, sl) = (batches(window), batches(slide));
        let plain = s
            .reduce_by_key_and_window(|a, b| a + b, w, sl)
            .unwrap()
            .collect_batches();
        let inv = s
            .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, w, sl)
            .unwrap()
            .collect_batches();
        let filtered = s
            .reduce_by_key_and_window_with(
                WindowReduce::new(|a, b| a + b)
                    .inverse(|a, b| a - b)
                    .filter(|(_, v): &(String, i64)| *v != 0)
                    .partitions(parts),
                w,
                sl,
            )
            .unwrap()
            .collect_batches();
        run(&ssc, n).await;
        (
            timed_sorted(&plain),
            timed_sorted(&inv),
            timed_sorted(&filtered),
        )
    })
}

/// Law 2 and 3's running sums, run on the actor runtime: `update_state_by_key`'s state,
/// `map_with_state`'s snapshots, and its mapped records.
fn run_running_sums(input: &Input, n: u32) -> (Timed, Timed, Timed) {
    let input = input.clone();
    block(async move {
        let ssc = ctx();
        let s = ssc.queue_stream(input);
        let updated = s
            .update_state_by_key(|vs: Vec<i64>, state: Option<i64>| {
                Some(state.unwrap_or(0) + vs.iter().sum::<i64>())
            })
            .collect_batches();
        let mws = s.map_with_state(StateSpec::function(
            |k: &String, v: Option<i64>, state: &mut State<i64>| {
                let sum = state.get().copied().unwrap_or(0) + v.unwrap_or(0);
                state.update(sum);
                (k.clone(), sum)
            },
        ));
        let mapped = mws.collect_batches();
        let snapshots = mws.state_snapshots().collect_batches();
        run(&ssc, n).await;
        (
            timed_sorted(&updated),
            timed_sorted(&snapshots),
            timed_sorted(&mapped),
        )
    })
}

/// Every issue-3 operator family on one input, each output as sorted `Debug` strings per
/// batch.
fn run_pipeline(
    input: &Input,
    window: u32,
    slide: u32,
    executors: usize,
    parallelism: usize,
) -> Vec<Vec<(i64, Vec<String>)>> {
    let n = batch_count(input, window, slide);
    let input = input.clone();
    block(async move {
        let ssc = context(executors, parallelism);
        let s = ssc.queue_stream(input);
        let (w, sl) = (batches(window), batches(slide));
        let add = |a: i64, b: i64| a + b;
        let sub = |a: i64, b: i64| a - b;
        let keys = s.map(|(k, _)| k);
        let values = s.map(|(_, v)| v);
        let outputs: Vec<Outcome> = vec![
            later(s.window(w, sl).unwrap().collect_batches()),
            later(
                values
                    .reduce_by_window(add, w, sl)
                    .unwrap()
                    .collect_batches(),
            ),
            later(
                values
                    .reduce_by_window_inv(add, sub, w, sl)
                    .unwrap()
                    .collect_batches(),
            ),
            later(s.count_by_window(w, sl).unwrap().collect_batches()),
            later(
                keys.count_by_value_and_window(w, sl)
                    .unwrap()
                    .collect_batches(),
            ),
            later(
                s.reduce_by_key_and_window_inv(add, sub, w, sl)
                    .unwrap()
                    .collect_batches(),
            ),
            later(s.group_by_key_and_window(w, sl).unwrap().collect_batches()),
            later(
                s.update_state_by_key(|vs: Vec<i64>, st: Option<Vec<i64>>| {
                    let mut st = st.unwrap_or_default();
                    st.extend(vs);
                    Some(st)
                })
                .collect_batches(),
            ),
            later(
                s.map_with_state(StateSpec::function(
                    |k: &String, v: Option<i64>, st: &mut State<i64>| {
                        // Order-sensitive: records of a key must be applied in input order.
                        let n = (st.get().copied().unwrap_or(0) * 31 + v.unwrap_or(0)) % 1_000_007;
                        st.update(n);
                        (k.clone(), n)
                    },
                ))
                .state_snapshots()
                .collect_batches(),
            ),
            later(s.cogroup(&s.map_values(|v| v * 10)).collect_batches()),
            later(
                s.full_outer_join(&s.filter(|(_, v)| *v > 2))
                    .collect_batches(),
            ),
        ];
        run(&ssc, n).await;
        outputs.iter().map(|read| read()).collect()
    })
}

/// What the timeout law's `map_with_state` emits: `(why, key, running sum)`.
type Event = (String, String, i64);

/// The naive model of a running sum with a timeout of `timeout` batches: each record is
/// mapped to `("data", key, sum)`; after a batch's records, every key whose last record
/// came before batch `k - timeout` is mapped to `("timeout", key, sum)` and dropped.
/// Returns the mapped records and the state after each batch, each sorted.
fn timeout_model(input: &Input, timeout: u32, n: u32) -> (Vec<(i64, Vec<Event>)>, Timed) {
    // key -> (sum, batch of its last record)
    let mut state: BTreeMap<String, (i64, u32)> = BTreeMap::new();
    let (mut mapped, mut snapshots) = (Vec::new(), Vec::new());
    for k in 1..=n {
        let mut out = Vec::new();
        for (key, v) in batch(input, k) {
            let entry = state.entry(key.clone()).or_insert((0, k));
            *entry = (entry.0 + v, k);
            out.push(("data".into(), key.clone(), entry.0));
        }
        state.retain(|key, (sum, last)| {
            let expired = i64::from(*last) < i64::from(k) - i64::from(timeout);
            if expired {
                out.push(("timeout".into(), key.clone(), *sum));
            }
            !expired
        });
        out.sort();
        let t = i64::from(k) * 100;
        mapped.push((t, out));
        snapshots.push((t, state.iter().map(|(k, (s, _))| (k.clone(), *s)).collect()));
    }
    (mapped, snapshots)
}

/// The timeout law's running sum on the actor runtime: mapped records and snapshots.
fn run_timeouts(input: &Input, timeout: u32, n: u32) -> (Vec<(i64, Vec<Event>)>, Timed) {
    let input = input.clone();
    block(async move {
        let ssc = ctx();
        let s = ssc.queue_stream(input);
        let spec = StateSpec::function(|k: &String, v: Option<i64>, st: &mut State<i64>| {
            let sum = st.get().copied().unwrap_or(0);
            if st.is_timing_out() {
                assert!(v.is_none(), "a timing-out call has no value");
                return ("timeout".to_string(), k.clone(), sum);
            }
            let sum = sum + v.expect("a data call has a value");
            st.update(sum);
            ("data".to_string(), k.clone(), sum)
        })
        .timeout(batches(timeout));
        let mws = s.map_with_state(spec);
        let mapped = mws.collect_batches();
        let snapshots = mws.state_snapshots().collect_batches();
        run(&ssc, n).await;
        (timed_sorted(&mapped), timed_sorted(&snapshots))
    })
}

/// A deterministic pseudo-random input of `len` batches (a linear congruential generator).
fn lcg_input(len: usize, seed: u64) -> Input {
    let mut x = seed;
    let mut next = move |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    (0..len)
        .map(|_| {
            (0..next(6))
                .map(|_| (format!("k{}", next(5)), next(5) as i64 + 1))
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn windowed_reduce_with_inverse_equals_without_and_the_naive_sums(
        input in input(),
        window in 1u32..=4,
        slide in 1u32..=3,
        parts in 1usize..=4,
    ) {
        let n = batch_count(&input, window, slide);
        let (plain, inv, filtered) = run_window_forms(&input, window, slide, parts);
        let naive = window_sums(&input, window, slide, n);
        prop_assert_eq!(&plain, &naive, "reduce_by_key_and_window vs naive");
        prop_assert_eq!(&filtered, &plain, "inverse + filter vs plain");
        prop_assert_eq!(
            &inv,
            &window_sums_keeping_zeros(&input, window, slide, n),
            "inverse without filter vs naive with zeros"
        );
    }

    #[test]
    fn running_state_equals_the_reduction_of_the_prefix(input in input()) {
        let n = input.len() as u32 + 2;
        let (updated, snapshots, mapped) = run_running_sums(&input, n);
        let naive = prefix_sums(&input, n);
        prop_assert_eq!(&updated, &naive, "update_state_by_key vs prefix sums");
        prop_assert_eq!(&snapshots, &naive, "map_with_state snapshots vs prefix sums");
        prop_assert_eq!(&mapped, &running_records(&input, n), "map_with_state records");
    }

    #[test]
    fn map_with_state_timeouts_follow_the_model(input in input(), timeout in 1u32..=3) {
        let n = input.len() as u32 + timeout + 2;
        let (mapped, snapshots) = run_timeouts(&input, timeout, n);
        let (naive_mapped, naive_snapshots) = timeout_model(&input, timeout, n);
        prop_assert_eq!(&mapped, &naive_mapped, "mapped records");
        prop_assert_eq!(&snapshots, &naive_snapshots, "snapshots");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    #[test]
    fn results_do_not_depend_on_executors_or_partitions(
        input in input(),
        window in 1u32..=4,
        slide in 1u32..=3,
        executors in prop::sample::select(vec![1usize, 2, 4]),
        parallelism in prop::sample::select(vec![1usize, 3, 5]),
    ) {
        let reference = run_pipeline(&input, window, slide, 1, 1);
        let other = run_pipeline(&input, window, slide, executors, parallelism);
        prop_assert_eq!(reference.len(), other.len());
        for (i, (a, b)) in reference.iter().zip(&other).enumerate() {
            prop_assert_eq!(a, b, "output {} with {} executors, parallelism {}", i, executors, parallelism);
        }
        // The reference itself is right where a model is at hand: the window sums.
        let n = batch_count(&input, window, slide);
        let naive: Vec<(i64, Vec<String>)> = window_sums_keeping_zeros(&input, window, slide, n)
            .into_iter()
            .map(|(t, b)| (t, sorted(b.iter().map(|r| format!("{r:?}")).collect())))
            .collect();
        prop_assert_eq!(&reference[5], &naive, "reduce_by_key_and_window_inv vs naive");
    }
}

/// Long runs: past many remember horizons, the incremental window, both state operators
/// and a timeout still match their models (state and windows must not be lost when old
/// RDDs are dropped).
#[test]
fn long_runs_stay_correct() {
    let input = lcg_input(150, 7);
    let (window, slide, timeout) = (5, 2, 3);
    let n = batch_count(&input, window, slide);
    let (plain, inv, filtered) = run_window_forms(&input, window, slide, 3);
    assert_eq!(plain, window_sums(&input, window, slide, n), "plain window");
    assert_eq!(
        inv,
        window_sums_keeping_zeros(&input, window, slide, n),
        "inverse window"
    );
    assert_eq!(filtered, plain, "inverse + filter window");
    let (updated, snapshots, mapped) = run_running_sums(&input, n);
    let naive = prefix_sums(&input, n);
    assert_eq!(updated, naive, "update_state_by_key");
    assert_eq!(snapshots, naive, "map_with_state snapshots");
    assert_eq!(mapped, running_records(&input, n), "map_with_state records");
    let (mapped, snapshots) = run_timeouts(&input, timeout, n);
    let (naive_mapped, naive_snapshots) = timeout_model(&input, timeout, n);
    assert_eq!(mapped, naive_mapped, "timeouts: mapped");
    assert_eq!(snapshots, naive_snapshots, "timeouts: snapshots");
}
