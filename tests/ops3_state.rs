//! Stateful operators (issue 3) through the public API on the actor runtime, against
//! hand-computed batches: `update_state_by_key` (plain, with the time, with an initial
//! state and a partition count) and `map_with_state` (`State::{exists, get, update, remove,
//! is_timing_out}`, `StateSpec::{function, function_with_time, initial_state,
//! num_partitions, timeout}`, `state_snapshots`).
//!
//! Spark's semantics: `update_state_by_key` emits the whole state every batch and calls the
//! function for every key with state or new values (empty values for idle keys); `None`
//! removes the key. `map_with_state` calls its function once per record, emits what those
//! calls return, and on timeout calls it once more with no value and
//! `is_timing_out() == true`, then drops the key.
//! Contexts: 2 executors, 3 default partitions, manual clock, 100 ms batches.

mod support3;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivulet::prelude::*;
use support3::*;

/// Records each RDD's partition count of `stream`.
fn partition_counts<T: Data>(stream: &DStream<T>) -> Arc<Mutex<Vec<usize>>> {
    let counts = Arc::new(Mutex::new(Vec::new()));
    let sink = counts.clone();
    stream.foreach_rdd(move |rdd, _| {
        sink.lock().unwrap().push(rdd.num_partitions());
        Ok(())
    });
    counts
}

#[actix::test]
async fn update_state_by_key_calls_idle_keys_emits_all_state_and_removes_on_none() {
    within(async {
        let ssc = ctx();
        // b1 a1 b2 | b2 a3 | b3 empty | b4 b0 c5 | then exhausted.
        // State: (running sum, number of calls); a value 0 removes the key.
        let s = ssc.queue_stream(vec![
            kvs(&[("a", 1u32), ("b", 2)]),
            kvs(&[("a", 3)]),
            vec![],
            kvs(&[("b", 0), ("c", 5)]),
        ]);
        let state = s
            .update_state_by_key(|vs: Vec<u32>, state: Option<(u32, u32)>| {
                if vs.contains(&0) {
                    return None;
                }
                let (sum, calls) = state.unwrap_or((0, 0));
                Some((sum + vs.iter().sum::<u32>(), calls + 1))
            })
            .collect_batches();
        run(&ssc, 6).await;
        // t1 a(1,1) b(2,1) | t2 a(4,2) b(2,2) (b idle, called with no values)
        // | t3 a(4,3) b(2,3) | t4 a(4,4) c(5,1) (b removed) | t5 a(4,5) c(5,2) | t6 a(4,6) c(5,3)
        assert_sorted_batches(
            "update_state_by_key",
            &state,
            &every_batch(6),
            vec![
                kvs(&[("a", (1, 1)), ("b", (2, 1))]),
                kvs(&[("a", (4, 2)), ("b", (2, 2))]),
                kvs(&[("a", (4, 3)), ("b", (2, 3))]),
                kvs(&[("a", (4, 4)), ("c", (5, 1))]),
                kvs(&[("a", (4, 5)), ("c", (5, 2))]),
                kvs(&[("a", (4, 6)), ("c", (5, 3))]),
            ],
        );
    })
    .await;
}

#[actix::test]
async fn update_state_by_key_before_any_data_and_after_removing_everything() {
    within(async {
        let ssc = ctx();
        // b1 empty | b2 a1 | b3 empty | then exhausted. A key is removed once idle.
        let s = ssc.queue_stream(vec![vec![], kvs(&[("a", 1u32)]), vec![]]);
        let state = s
            .update_state_by_key(|vs: Vec<u32>, state: Option<u32>| {
                (!vs.is_empty()).then(|| state.unwrap_or(0) + vs.iter().sum::<u32>())
            })
            .collect_batches();
        run(&ssc, 4).await;
        assert_sorted_batches(
            "update_state_by_key",
            &state,
            &every_batch(4),
            vec![vec![], kvs(&[("a", 1)]), vec![], vec![]],
        );
    })
    .await;
}

#[actix::test]
async fn update_state_by_key_with_time_gets_the_batch_time_and_key() {
    within(async {
        let ssc = ctx();
        // b1 a | b2 b | b3 a | then exhausted. State: (the key as seen, times with values);
        // b is removed from 400 ms on.
        let s = ssc.queue_stream(vec![
            kvs(&[("a", ())]),
            kvs(&[("b", ())]),
            kvs(&[("a", ())]),
        ]);
        let state = s
            .update_state_by_key_with_time(
                |t: Time, k: &String, vs: Vec<()>, state: Option<(String, Vec<i64>)>| {
                    if k == "b" && t.as_ms() >= 400 {
                        return None;
                    }
                    let (_, mut seen) = state.unwrap_or_default();
                    if !vs.is_empty() {
                        seen.push(t.as_ms());
                    }
                    Some((k.clone(), seen))
                },
            )
            .collect_batches();
        run(&ssc, 5).await;
        let st = |k: &str, ts: &[i64]| (k.to_string(), (k.to_string(), ts.to_vec()));
        assert_sorted_batches(
            "update_state_by_key_with_time",
            &state,
            &every_batch(5),
            vec![
                vec![st("a", &[100])],
                vec![st("a", &[100]), st("b", &[200])],
                vec![st("a", &[100, 300]), st("b", &[200])],
                vec![st("a", &[100, 300])],
                vec![st("a", &[100, 300])],
            ],
        );
    })
    .await;
}

#[actix::test]
async fn update_state_by_key_with_initial_state_and_partitions() {
    within(async {
        let ssc = ctx();
        let initial = ssc.parallelize(kvs(&[("a", 10u32), ("z", 5)]), 2);
        // b1 empty | b2 a1 | b3 z2 q1 | then exhausted. The initial state is the starting
        // point at the first batch, even an empty one.
        let s = ssc.queue_stream(vec![
            vec![],
            kvs(&[("a", 1u32)]),
            kvs(&[("z", 2), ("q", 1)]),
        ]);
        let state_stream = s.update_state_by_key_with_initial(
            |_, _: &String, vs: Vec<u32>, state: Option<u32>| {
                Some(state.unwrap_or(0) + vs.iter().sum::<u32>())
            },
            initial,
            4,
        );
        let state = state_stream.collect_batches();
        let parts = partition_counts(&state_stream);
        run(&ssc, 4).await;
        assert_sorted_batches(
            "update_state_by_key_with_initial",
            &state,
            &every_batch(4),
            vec![
                kvs(&[("a", 10), ("z", 5)]),
                kvs(&[("a", 11), ("z", 5)]),
                kvs(&[("a", 11), ("q", 1), ("z", 7)]),
                kvs(&[("a", 11), ("q", 1), ("z", 7)]),
            ],
        );
        assert_eq!(*parts.lock().unwrap(), vec![4; 4], "state partitions");
    })
    .await;
}

/// Running sum per key, emitting `(key, sum so far)` for every record.
fn running_sum() -> impl Fn(&String, Option<i64>, &mut State<i64>) -> (String, i64) {
    |key, value, state| {
        let sum = state.get().copied().unwrap_or(0) + value.unwrap_or(0);
        state.update(sum);
        (key.clone(), sum)
    }
}

#[actix::test]
async fn map_with_state_emits_per_record_and_snapshots_the_whole_state() {
    within(async {
        let ssc = ctx();
        // b1 a1 b2 a3 | b2 empty | b3 b4 | then exhausted
        let s = ssc.queue_stream(vec![
            kvs(&[("a", 1i64), ("b", 2), ("a", 3)]),
            vec![],
            kvs(&[("b", 4)]),
        ]);
        let mws = s.map_with_state(StateSpec::function(running_sum()));
        let mapped = mws.collect_batches();
        let mapped_plain = mws
            .mapped()
            .map(|(k, v)| format!("{k}={v}"))
            .collect_batches();
        let snapshots = mws.state_snapshots().collect_batches();
        run(&ssc, 4).await;
        // One output per record: a's records in order give 1 then 4.
        assert_sorted_batches(
            "mapped",
            &mapped,
            &every_batch(4),
            vec![
                kvs(&[("a", 1), ("a", 4), ("b", 2)]),
                vec![],
                kvs(&[("b", 6)]),
                vec![],
            ],
        );
        assert_sorted_batches(
            "mapped().map",
            &mapped_plain,
            &every_batch(4),
            vec![
                vec!["a=1".to_string(), "a=4".into(), "b=2".into()],
                vec![],
                vec!["b=6".into()],
                vec![],
            ],
        );
        assert_sorted_batches(
            "state_snapshots",
            &snapshots,
            &every_batch(4),
            vec![
                kvs(&[("a", 4), ("b", 2)]),
                kvs(&[("a", 4), ("b", 2)]),
                kvs(&[("a", 4), ("b", 6)]),
                kvs(&[("a", 4), ("b", 6)]),
            ],
        );
    })
    .await;
}

#[actix::test]
async fn map_with_state_exists_get_remove() {
    within(async {
        let ssc = ctx();
        // b1 a1 b1 | b2 a0 (0 removes the key) | b3 a5 | b4 b0 | then exhausted.
        // Emits (key, state before, state after) per record.
        let s = ssc.queue_stream(vec![
            kvs(&[("a", 1i64), ("b", 1)]),
            kvs(&[("a", 0)]),
            kvs(&[("a", 5)]),
            kvs(&[("b", 0)]),
        ]);
        let mws = s.map_with_state(StateSpec::function(
            |k: &String, v: Option<i64>, state: &mut State<i64>| {
                assert_eq!(state.exists(), state.get().is_some());
                assert!(!state.is_timing_out());
                let before = state.get().copied();
                match v {
                    Some(0) => state.remove(),
                    Some(n) => state.update(before.unwrap_or(0) + n),
                    None => unreachable!("no timeout configured"),
                }
                assert_eq!(state.exists(), state.get().is_some());
                (k.clone(), before, state.get().copied())
            },
        ));
        let mapped = mws.collect_batches();
        let snapshots = mws.state_snapshots().collect_batches();
        run(&ssc, 5).await;
        let row = |k: &str, b: Option<i64>, a: Option<i64>| (k.to_string(), b, a);
        assert_sorted_batches(
            "mapped",
            &mapped,
            &every_batch(5),
            vec![
                vec![row("a", None, Some(1)), row("b", None, Some(1))],
                vec![row("a", Some(1), None)],
                // a starts over after its removal
                vec![row("a", None, Some(5))],
                vec![row("b", Some(1), None)],
                vec![],
            ],
        );
        assert_sorted_batches(
            "state_snapshots",
            &snapshots,
            &every_batch(5),
            vec![
                kvs(&[("a", 1), ("b", 1)]),
                kvs(&[("b", 1)]),
                kvs(&[("a", 5), ("b", 1)]),
                kvs(&[("a", 5)]),
                kvs(&[("a", 5)]),
            ],
        );
    })
    .await;
}

#[actix::test]
async fn map_with_state_function_with_time_emits_only_somes() {
    within(async {
        let ssc = ctx();
        // b1 a1 a1 | b2 a1 b2 | then exhausted. Emits (key, time) when the sum becomes even.
        let s = ssc.queue_stream(vec![
            kvs(&[("a", 1i64), ("a", 1)]),
            kvs(&[("a", 1), ("b", 2)]),
        ]);
        let mws = s.map_with_state(StateSpec::function_with_time(
            |t: Time, k: &String, v: Option<i64>, state: &mut State<i64>| {
                let sum = state.get().copied().unwrap_or(0) + v.unwrap_or(0);
                state.update(sum);
                (sum % 2 == 0).then(|| (k.clone(), t.as_ms()))
            },
        ));
        let mapped = mws.collect_batches();
        let snapshots = mws.state_snapshots().collect_batches();
        run(&ssc, 3).await;
        // a: 1 (odd), 2 (even @100), 3 (odd); b: 2 (even @200)
        assert_sorted_batches(
            "mapped",
            &mapped,
            &every_batch(3),
            vec![kvs(&[("a", 100)]), kvs(&[("b", 200)]), vec![]],
        );
        assert_sorted_batches(
            "state_snapshots",
            &snapshots,
            &every_batch(3),
            vec![
                kvs(&[("a", 2)]),
                kvs(&[("a", 3), ("b", 2)]),
                kvs(&[("a", 3), ("b", 2)]),
            ],
        );
    })
    .await;
}

#[actix::test]
async fn map_with_state_initial_state_and_partitions() {
    within(async {
        let ssc = ctx();
        let initial = ssc.parallelize(kvs(&[("a", 10i64), ("c", 7)]), 1);
        // b1 a1 b1 | b2 c1 | then exhausted
        let s = ssc.queue_stream(vec![kvs(&[("a", 1i64), ("b", 1)]), kvs(&[("c", 1)])]);
        let mws = s.map_with_state(
            StateSpec::function(running_sum())
                .initial_state(initial)
                .num_partitions(5),
        );
        let mapped = mws.collect_batches();
        let snapshot_stream = mws.state_snapshots();
        let snapshots = snapshot_stream.collect_batches();
        let mapped_parts = partition_counts(&mws.mapped());
        let snapshot_parts = partition_counts(&snapshot_stream);
        run(&ssc, 3).await;
        assert_sorted_batches(
            "mapped",
            &mapped,
            &every_batch(3),
            vec![kvs(&[("a", 11), ("b", 1)]), kvs(&[("c", 8)]), vec![]],
        );
        assert_sorted_batches(
            "state_snapshots",
            &snapshots,
            &every_batch(3),
            vec![
                kvs(&[("a", 11), ("b", 1), ("c", 7)]),
                kvs(&[("a", 11), ("b", 1), ("c", 8)]),
                kvs(&[("a", 11), ("b", 1), ("c", 8)]),
            ],
        );
        assert_eq!(
            *mapped_parts.lock().unwrap(),
            vec![5; 3],
            "mapped partitions"
        );
        assert_eq!(
            *snapshot_parts.lock().unwrap(),
            vec![5; 3],
            "snapshot partitions"
        );
    })
    .await;
}

#[actix::test]
async fn map_with_state_initial_state_before_any_data() {
    within(async {
        let ssc = ctx();
        let initial = ssc.parallelize(kvs(&[("a", 10i64)]), 2);
        // b1, b2 empty | b3 a1 | then exhausted
        let s = ssc.queue_stream(vec![vec![], vec![], kvs(&[("a", 1i64)])]);
        let mws = s.map_with_state(StateSpec::function(running_sum()).initial_state(initial));
        let mapped = mws.collect_batches();
        let snapshots = mws.state_snapshots().collect_batches();
        run(&ssc, 3).await;
        assert_sorted_batches(
            "mapped",
            &mapped,
            &every_batch(3),
            vec![vec![], vec![], kvs(&[("a", 11)])],
        );
        assert_sorted_batches(
            "state_snapshots",
            &snapshots,
            &every_batch(3),
            vec![kvs(&[("a", 10)]), kvs(&[("a", 10)]), kvs(&[("a", 11)])],
        );
    })
    .await;
}

#[actix::test]
async fn map_with_state_timeouts_call_once_more_then_drop_the_key() {
    within(async {
        let ssc = ctx();
        // Timeout 200 ms: a key times out at the first batch t with last-data < t - 200.
        //   batch  1(100)  2(200)  3(300)  4(400)  5(500)  6(600)  7(700)  8  9
        //          a1 c1   b1      c0      b1      -       -       -
        // a: data at 100 -> times out at 400.
        // c: data at 100 and 300 (0 leaves its state unchanged, but data refreshes the key)
        //    -> times out at 600 with state 1.
        // b: data at 200 and 400 -> times out at 700 with state 2.
        let s = ssc.queue_stream(vec![
            kvs(&[("a", 1i64), ("c", 1)]),
            kvs(&[("b", 1)]),
            kvs(&[("c", 0)]),
            kvs(&[("b", 1)]),
        ]);
        let mws = s.map_with_state(
            StateSpec::function_with_time(
                |t: Time, k: &String, v: Option<i64>, state: &mut State<i64>| {
                    if state.is_timing_out() {
                        // The last call: no value, the state still readable.
                        return Some((k.clone(), t.as_ms(), v.is_none(), state.get().copied()));
                    }
                    match v {
                        Some(0) => {}
                        Some(n) => state.update(state.get().copied().unwrap_or(0) + n),
                        None => panic!("called without a value while not timing out"),
                    }
                    None
                },
            )
            .timeout(Duration::from_millis(200)),
        );
        let mapped = mws.collect_batches();
        let snapshots = mws.state_snapshots().collect_batches();
        run(&ssc, 9).await;
        let out = |k: &str, t: i64, s: i64| vec![(k.to_string(), t, true, Some(s))];
        assert_sorted_batches(
            "mapped",
            &mapped,
            &every_batch(9),
            vec![
                vec![],
                vec![],
                vec![],
                out("a", 400, 1),
                vec![],
                out("c", 600, 1),
                out("b", 700, 2),
                vec![],
                vec![],
            ],
        );
        assert_sorted_batches(
            "state_snapshots",
            &snapshots,
            &every_batch(9),
            vec![
                kvs(&[("a", 1), ("c", 1)]),
                kvs(&[("a", 1), ("b", 1), ("c", 1)]),
                kvs(&[("a", 1), ("b", 1), ("c", 1)]),
                kvs(&[("b", 2), ("c", 1)]),
                kvs(&[("b", 2), ("c", 1)]),
                kvs(&[("b", 2)]),
                vec![],
                vec![],
                vec![],
            ],
        );
    })
    .await;
}

#[actix::test]
async fn map_with_state_timeout_of_initial_state_and_data_after_a_timeout() {
    within(async {
        let ssc = ctx();
        let initial = ssc.parallelize(kvs(&[("i", 7i64)]), 1);
        // Timeout 100 ms. Initial keys count as updated at the first batch (100).
        //   batch  1(100)  2(200)  3(300)  4(400)  5(500)
        //          a1      -       -       a2      -
        // i: updated 100 -> times out at 300 (100 < 300 - 100).
        // a: data at 100 -> times out at 300; data again at 400 starts a new state (2),
        //    which times out at 600.
        let s = ssc.queue_stream(vec![kvs(&[("a", 1i64)]), vec![], vec![], kvs(&[("a", 2)])]);
        let mws = s.map_with_state(
            StateSpec::function_with_time(
                |t: Time, k: &String, v: Option<i64>, state: &mut State<i64>| {
                    if state.is_timing_out() {
                        return Some(format!(
                            "{k} timed out at {} with {:?}",
                            t.as_ms(),
                            state.get()
                        ));
                    }
                    let existed = state.exists();
                    state.update(state.get().copied().unwrap_or(0) + v.unwrap_or(0));
                    Some(format!("{k} existed={existed}"))
                },
            )
            .initial_state(initial)
            .num_partitions(2)
            .timeout(Duration::from_millis(100)),
        );
        let mapped = mws.collect_batches();
        let snapshots = mws.state_snapshots().collect_batches();
        run(&ssc, 6).await;
        let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_sorted_batches(
            "mapped",
            &mapped,
            &every_batch(6),
            vec![
                strs(&["a existed=false"]),
                vec![],
                strs(&[
                    "a timed out at 300 with Some(1)",
                    "i timed out at 300 with Some(7)",
                ]),
                strs(&["a existed=false"]),
                vec![],
                strs(&["a timed out at 600 with Some(2)"]),
            ],
        );
        assert_sorted_batches(
            "state_snapshots",
            &snapshots,
            &every_batch(6),
            vec![
                kvs(&[("a", 1), ("i", 7)]),
                kvs(&[("a", 1), ("i", 7)]),
                vec![],
                kvs(&[("a", 2)]),
                kvs(&[("a", 2)]),
                vec![],
            ],
        );
    })
    .await;
}
