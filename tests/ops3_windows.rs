//! Window operators (issue 3) through the public API on the actor runtime, against
//! hand-computed batches: `window`, `reduce_by_window` (+ inverse), `count_by_window`,
//! `count_by_value_and_window`, `reduce_by_key_and_window` (plain, inverse, inverse with a
//! filter and a partition count), `group_by_key_and_window`, and the errors for durations
//! that are not multiples of the parent's slide.
//!
//! Spark's semantics: the window at `t` covers `(t - window, t]`; outputs come at every
//! slide (`t = slide, 2 * slide, ...`), starting with the first, partial window.
//! Contexts: 2 executors, 3 default partitions, manual clock, 100 ms batches.

mod support3;

use rivulet::prelude::*;
use support3::*;

/// The integer input, batch by batch (queue exhausted from batch 7 on):
/// ```text
/// batch   1(100)   2(200)  3(300)  4(400)      5(500)  6(600)  7..
///         11 12    21      -       41 42 43    51      61      -
/// ```
fn ints() -> Vec<Vec<i64>> {
    vec![
        vec![11, 12],
        vec![21],
        vec![],
        vec![41, 42, 43],
        vec![51],
        vec![61],
    ]
}

#[actix::test]
async fn window_keeps_batch_order_with_partial_first_windows() {
    within(async {
        let ssc = ctx();
        let s = ssc.queue_stream(ints());
        // window 3 batches, slide 1: (t-300, t]
        let w = s.window(batches(3), B).unwrap();
        let out = w.collect_batches();
        // A narrow chain after the window keeps its order.
        let mapped = w.map(|x| x * 10).filter(|x| x % 20 != 0).collect_batches();
        run(&ssc, 9).await;
        // t1: b1 | t2: b1 b2 | t3: b1 b2 b3 | t4: b2 b3 b4 | t5: b3 b4 b5 | t6: b4 b5 b6
        // t7: b5 b6 b7 | t8: b6 b7 b8 | t9: b7 b8 b9
        let expected = vec![
            vec![11, 12],
            vec![11, 12, 21],
            vec![11, 12, 21],
            vec![21, 41, 42, 43],
            vec![41, 42, 43, 51],
            vec![41, 42, 43, 51, 61],
            vec![51, 61],
            vec![61],
            vec![],
        ];
        assert_batches("window(3, 1)", &out, &every_batch(9), expected.clone());
        let expected_mapped: Vec<Vec<i64>> = expected
            .iter()
            .map(|b| b.iter().map(|x| x * 10).filter(|x| x % 20 != 0).collect())
            .collect();
        assert_batches(
            "window.map.filter",
            &mapped,
            &every_batch(9),
            expected_mapped,
        );
    })
    .await;
}

#[actix::test]
async fn window_with_slide_larger_than_the_batch() {
    within(async {
        let ssc = ctx();
        let s = ssc.queue_stream(ints());
        let out = s.window(batches(3), batches(2)).unwrap().collect_batches();
        run(&ssc, 9).await;
        // Outputs at 200, 400, 600, 800 (not at 900: it is not a slide point).
        // t200: (-100, 200] = b1 b2 | t400: (100, 400] = b2 b3 b4
        // t600: (300, 600] = b4 b5 b6 | t800: (500, 800] = b6 b7 b8
        assert_batches(
            "window(3, 2)",
            &out,
            &[200, 400, 600, 800],
            vec![
                vec![11, 12, 21],
                vec![21, 41, 42, 43],
                vec![41, 42, 43, 51, 61],
                vec![61],
            ],
        );
    })
    .await;
}

#[actix::test]
async fn window_with_slide_larger_than_the_window_skips_batches() {
    within(async {
        let ssc = ctx();
        let s = ssc.queue_stream(ints());
        let one_of_two = s.window(B, batches(2)).unwrap().collect_batches();
        let two_of_three = s.window(batches(2), batches(3)).unwrap().collect_batches();
        run(&ssc, 9).await;
        // window 1, slide 2: t200 = b2, t400 = b4, t600 = b6, t800 = b8 (b1, b3, ... unseen)
        assert_batches(
            "window(1, 2)",
            &one_of_two,
            &[200, 400, 600, 800],
            vec![vec![21], vec![41, 42, 43], vec![61], vec![]],
        );
        // window 2, slide 3: t300 = b2 b3, t600 = b5 b6, t900 = b8 b9
        assert_batches(
            "window(2, 3)",
            &two_of_three,
            &[300, 600, 900],
            vec![vec![21], vec![51, 61], vec![]],
        );
    })
    .await;
}

#[actix::test]
async fn window_of_a_windowed_stream() {
    within(async {
        let ssc = ctx();
        let s = ssc.queue_stream(ints());
        let w1 = s.window(batches(2), batches(2)).unwrap();
        let w2 = w1.window(batches(4), batches(4)).unwrap();
        assert_eq!(w2.slide_duration(), batches(4));
        let out = w2.collect_batches();
        // Incremental windows over w1 (slide 2): units are w1's outputs.
        let counts = w1
            .count_by_window(batches(4), batches(2))
            .unwrap()
            .collect_batches();
        let sums = w1
            .reduce_by_window_inv(|a, b| a + b, |a, b| a - b, batches(4), batches(2))
            .unwrap()
            .collect_batches();
        run(&ssc, 8).await;
        // w1: t200 = b1 b2, t400 = b3 b4, t600 = b5 b6, t800 = b7 b8.
        // w2 at t covers w1's outputs in (t - 400, t]: t400 = w1@200 + w1@400, t800 = w1@600 + w1@800.
        assert_batches(
            "window(window(2, 2), 4, 4)",
            &out,
            &[400, 800],
            vec![vec![11, 12, 21, 41, 42, 43], vec![51, 61]],
        );
        // w1's counts: 3, 3, 2, 0 and sums: 44, 126, 112, 0 at 200, 400, 600, 800.
        // Window 4 (two of w1's outputs), slide 2: counts 3, 6, 5, 2; sums 44, 170, 238, 112.
        let at = [200, 400, 600, 800];
        assert_batches(
            "count_by_window over w1",
            &counts,
            &at,
            vec![vec![3], vec![6], vec![5], vec![2]],
        );
        assert_batches(
            "reduce_by_window_inv over w1",
            &sums,
            &at,
            vec![vec![44], vec![170], vec![238], vec![112]],
        );
    })
    .await;
}

#[actix::test]
async fn reduce_by_window_with_and_without_inverse() {
    within(async {
        let ssc = ctx();
        let s = ssc.queue_stream(ints());
        let plain = s
            .reduce_by_window(|a, b| a + b, batches(3), B)
            .unwrap()
            .collect_batches();
        let inv = s
            .reduce_by_window_inv(|a, b| a + b, |a, b| a - b, batches(3), B)
            .unwrap()
            .collect_batches();
        let inv_slide2 = s
            .reduce_by_window_inv(|a, b| a + b, |a, b| a - b, batches(3), batches(2))
            .unwrap()
            .collect_batches();
        run(&ssc, 10).await;
        // Batch sums: b1 23, b2 21, b3 0 (empty), b4 126, b5 51, b6 61, then 0.
        // Window 3, slide 1: t1 23 | t2 44 | t3 44 | t4 147 | t5 177 | t6 238 | t7 112 | t8 61
        // t9, t10: empty window: no record without inverse, 0 with it.
        let sums = [23, 44, 44, 147, 177, 238, 112, 61];
        let mut expected_plain: Vec<Vec<i64>> = sums.iter().map(|s| vec![*s]).collect();
        let mut expected_inv = expected_plain.clone();
        expected_plain.extend([vec![], vec![]]);
        expected_inv.extend([vec![0], vec![0]]);
        assert_batches("reduce_by_window", &plain, &every_batch(10), expected_plain);
        assert_batches("reduce_by_window_inv", &inv, &every_batch(10), expected_inv);
        // Window 3, slide 2: t200 = b1 b2 = 44 | t400 = b2..b4 = 147 | t600 = b4..b6 = 238
        // | t800 = b6..b8 = 61 | t1000 = b8..b10 = 0
        assert_batches(
            "reduce_by_window_inv slide 2",
            &inv_slide2,
            &[200, 400, 600, 800, 1000],
            vec![vec![44], vec![147], vec![238], vec![61], vec![0]],
        );
    })
    .await;
}

#[actix::test]
async fn count_by_window_emits_zero_once_the_stream_had_data() {
    within(async {
        let ssc = ctx();
        // b1 empty | b2 x | b3 x y | b4 empty | b5 empty | b6 z | then exhausted
        let s = ssc.queue_stream(words(&[&[], &["x"], &["x", "y"], &[], &[], &["z"]]));
        let counts = s.count_by_window(batches(2), B).unwrap().collect_batches();
        let counts_slide2 = s
            .count_by_window(batches(3), batches(2))
            .unwrap()
            .collect_batches();
        let counts_gap = s.count_by_window(B, batches(2)).unwrap().collect_batches();
        run(&ssc, 8).await;
        // Window 2, slide 1: t1 nothing yet (no record) | t2 1 | t3 3 | t4 2 | t5 0 | t6 1
        // | t7 1 | t8 0
        assert_batches(
            "count_by_window(2, 1)",
            &counts,
            &every_batch(8),
            vec![
                vec![],
                vec![1],
                vec![3],
                vec![2],
                vec![0],
                vec![1],
                vec![1],
                vec![0],
            ],
        );
        // Window 3, slide 2: t200 (b1 b2) 1 | t400 (b2..b4) 3 | t600 (b4..b6) 1 | t800 (b6..b8) 1
        assert_batches(
            "count_by_window(3, 2)",
            &counts_slide2,
            &[200, 400, 600, 800],
            vec![vec![1], vec![3], vec![1], vec![1]],
        );
        // Window 1, slide 2 (larger than the window): t200 b2 1 | t400 b4 0 | t600 b6 1 | t800 b8 0
        assert_batches(
            "count_by_window(1, 2)",
            &counts_gap,
            &[200, 400, 600, 800],
            vec![vec![1], vec![0], vec![1], vec![0]],
        );
    })
    .await;
}

#[actix::test]
async fn count_by_value_and_window_drops_zero_counts() {
    within(async {
        let ssc = ctx();
        // b1 a b a | b2 b | b3 empty | b4 c | then exhausted
        let s = ssc.queue_stream(words(&[&["a", "b", "a"], &["b"], &[], &["c"]]));
        let out = s
            .count_by_value_and_window(batches(2), B)
            .unwrap()
            .collect_batches();
        let gap = s
            .count_by_value_and_window(B, batches(2))
            .unwrap()
            .collect_batches();
        run(&ssc, 6).await;
        // Window 1, slide 2: t200 b2 = b1 | t400 b4 = c1 (b fell to 0: dropped) | t600 nothing
        assert_sorted_batches(
            "count_by_value_and_window(1, 2)",
            &gap,
            &[200, 400, 600],
            vec![kvs(&[("b", 1u64)]), kvs(&[("c", 1)]), vec![]],
        );
        // Window 2, slide 1: t1 a2 b1 | t2 a2 b2 | t3 b1 | t4 c1 | t5 c1 | t6 (all zero: none)
        assert_sorted_batches(
            "count_by_value_and_window",
            &out,
            &every_batch(6),
            vec![
                kvs(&[("a", 2u64), ("b", 1)]),
                kvs(&[("a", 2), ("b", 2)]),
                kvs(&[("b", 1)]),
                kvs(&[("c", 1)]),
                kvs(&[("c", 1)]),
                vec![],
            ],
        );
    })
    .await;
}

/// The pair input, batch by batch:
/// ```text
/// batch  1(100)   2(200)  3(300)  4(400)    5(500)  6..
///        a1 b2    a3      -       b5 c1     a2      -
/// ```
fn pairs() -> Vec<Vec<(String, i64)>> {
    vec![
        kvs(&[("a", 1), ("b", 2)]),
        kvs(&[("a", 3)]),
        vec![],
        kvs(&[("b", 5), ("c", 1)]),
        kvs(&[("a", 2)]),
    ]
}

#[actix::test]
async fn reduce_by_key_and_window_plain_inverse_and_filtered() {
    within(async {
        let ssc = ctx();
        let s = ssc.queue_stream(pairs());
        let add = |a: i64, b: i64| a + b;
        let sub = |a: i64, b: i64| a - b;
        let plain = s
            .reduce_by_key_and_window(add, batches(3), B)
            .unwrap()
            .collect_batches();
        let inv = s
            .reduce_by_key_and_window_inv(add, sub, batches(3), B)
            .unwrap()
            .collect_batches();
        let spec = WindowReduce::new(add)
            .inverse(sub)
            .filter(|(_, v): &(String, i64)| *v != 0)
            .partitions(4);
        let filtered_stream = s
            .reduce_by_key_and_window_with(spec, batches(3), B)
            .unwrap();
        let filtered = filtered_stream.collect_batches();
        let plain_2 = s
            .reduce_by_key_and_window_with(WindowReduce::new(add).partitions(2), batches(3), B)
            .unwrap();
        let plain_2_out = plain_2.collect_batches();
        // The partition counts asked for.
        let parts = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (p1, p2) = (parts.clone(), parts.clone());
        filtered_stream.foreach_rdd(move |rdd, _| {
            p1.lock().unwrap().push(("filtered", rdd.num_partitions()));
            Ok(())
        });
        plain_2.foreach_rdd(move |rdd, _| {
            p2.lock().unwrap().push(("plain", rdd.num_partitions()));
            Ok(())
        });
        run(&ssc, 9).await;
        // Window 3, slide 1, sums over (t-300, t]:
        // t1 a1 b2 | t2 a4 b2 | t3 a4 b2 | t4 (b2..b4) a3 b5 c1 | t5 (b3..b5) a2 b5 c1
        // | t6 (b4..b6) a2 b5 c1 | t7 (b5..b7) a2 | t8, t9: nothing
        let expected_plain = vec![
            kvs(&[("a", 1), ("b", 2)]),
            kvs(&[("a", 4), ("b", 2)]),
            kvs(&[("a", 4), ("b", 2)]),
            kvs(&[("a", 3), ("b", 5), ("c", 1)]),
            kvs(&[("a", 2), ("b", 5), ("c", 1)]),
            kvs(&[("a", 2), ("b", 5), ("c", 1)]),
            kvs(&[("a", 2)]),
            vec![],
            vec![],
        ];
        // With an inverse and no filter, keys whose value fell back to 0 stay:
        // t7 a2 b0 c0 | t8 a0 b0 c0 | t9 a0 b0 c0.
        let mut expected_inv = expected_plain.clone();
        expected_inv[6] = kvs(&[("a", 2), ("b", 0), ("c", 0)]);
        expected_inv[7] = kvs(&[("a", 0), ("b", 0), ("c", 0)]);
        expected_inv[8] = kvs(&[("a", 0), ("b", 0), ("c", 0)]);
        let at = every_batch(9);
        assert_sorted_batches("plain", &plain, &at, expected_plain.clone());
        assert_sorted_batches("inverse", &inv, &at, expected_inv);
        assert_sorted_batches("inverse + filter", &filtered, &at, expected_plain.clone());
        assert_sorted_batches("plain, 2 partitions", &plain_2_out, &at, expected_plain);
        let parts = parts.lock().unwrap().clone();
        assert_eq!(parts.len(), 18, "{parts:?}");
        for (what, n) in parts {
            let want = if what == "filtered" { 4 } else { 2 };
            assert_eq!(n, want, "{what}: partitions");
        }
    })
    .await;
}

#[actix::test]
async fn reduce_by_key_and_window_with_larger_slides() {
    within(async {
        let ssc = ctx();
        let s = ssc.queue_stream(pairs());
        let add = |a: i64, b: i64| a + b;
        let sub = |a: i64, b: i64| a - b;
        // slide (2) larger than the batch, window 3
        let plain = s
            .reduce_by_key_and_window(add, batches(3), batches(2))
            .unwrap()
            .collect_batches();
        let inv = s
            .reduce_by_key_and_window_inv(add, sub, batches(3), batches(2))
            .unwrap()
            .collect_batches();
        // slide (2) larger than the window (1)
        let gap_plain = s
            .reduce_by_key_and_window(add, B, batches(2))
            .unwrap()
            .collect_batches();
        let gap_inv = s
            .reduce_by_key_and_window_inv(add, sub, B, batches(2))
            .unwrap()
            .collect_batches();
        let gap_filtered = s
            .reduce_by_key_and_window_with(
                WindowReduce::new(add)
                    .inverse(sub)
                    .filter(|(_, v): &(String, i64)| *v != 0),
                B,
                batches(2),
            )
            .unwrap()
            .collect_batches();
        run(&ssc, 8).await;
        let at = [200, 400, 600, 800];
        // Window 3, slide 2: t200 (b1 b2) a4 b2 | t400 (b2..b4) a3 b5 c1
        // | t600 (b4..b6) a2 b5 c1 | t800 (b6..b8) nothing; with inverse a0 b0 c0.
        let expected = vec![
            kvs(&[("a", 4), ("b", 2)]),
            kvs(&[("a", 3), ("b", 5), ("c", 1)]),
            kvs(&[("a", 2), ("b", 5), ("c", 1)]),
            vec![],
        ];
        let mut expected_inv = expected.clone();
        expected_inv[3] = kvs(&[("a", 0), ("b", 0), ("c", 0)]);
        assert_sorted_batches("window 3 slide 2", &plain, &at, expected);
        assert_sorted_batches("window 3 slide 2, inverse", &inv, &at, expected_inv);
        // Window 1, slide 2: t200 b2 = a3 | t400 b4 = b5 c1 | t600 b6 = nothing | t800 nothing.
        // With inverse the keys seen stay with 0: t400 a0 b5 c1 | t600, t800 a0 b0 c0
        // (b5's a2 is never in a window).
        let gap = vec![kvs(&[("a", 3)]), kvs(&[("b", 5), ("c", 1)]), vec![], vec![]];
        let zeros = kvs(&[("a", 0), ("b", 0), ("c", 0)]);
        let gap_with_zeros = vec![
            kvs(&[("a", 3)]),
            kvs(&[("a", 0), ("b", 5), ("c", 1)]),
            zeros.clone(),
            zeros,
        ];
        assert_sorted_batches("window 1 slide 2", &gap_plain, &at, gap.clone());
        assert_sorted_batches("window 1 slide 2, inverse", &gap_inv, &at, gap_with_zeros);
        assert_sorted_batches(
            "window 1 slide 2, inverse + filter",
            &gap_filtered,
            &at,
            gap,
        );
    })
    .await;
}

#[actix::test]
async fn group_by_key_and_window_keeps_values_oldest_first() {
    within(async {
        let ssc = ctx();
        // b1 a1 b2 a5 | b2 a3 | b3 empty | b4 b5 c1 b6 | b5 a2 | then exhausted
        let s = ssc.queue_stream(vec![
            kvs(&[("a", 1), ("b", 2), ("a", 5)]),
            kvs(&[("a", 3)]),
            vec![],
            kvs(&[("b", 5), ("c", 1), ("b", 6)]),
            kvs(&[("a", 2)]),
        ]);
        let out = s
            .group_by_key_and_window(batches(2), B)
            .unwrap()
            .collect_batches();
        let slid = s
            .group_by_key_and_window(batches(4), batches(2))
            .unwrap()
            .collect_batches();
        run(&ssc, 8).await;
        let g = |k: &str, vs: &[i64]| (k.to_string(), vs.to_vec());
        // Window 2, slide 1: t1 a[1 5] b[2] | t2 a[1 5 3] b[2] | t3 a[3] | t4 b[5 6] c[1]
        // | t5 a[2] b[5 6] c[1] | t6 a[2] | t7, t8 nothing
        assert_sorted_batches(
            "group_by_key_and_window(2, 1)",
            &out,
            &every_batch(8),
            vec![
                vec![g("a", &[1, 5]), g("b", &[2])],
                vec![g("a", &[1, 5, 3]), g("b", &[2])],
                vec![g("a", &[3])],
                vec![g("b", &[5, 6]), g("c", &[1])],
                vec![g("a", &[2]), g("b", &[5, 6]), g("c", &[1])],
                vec![g("a", &[2])],
                vec![],
                vec![],
            ],
        );
        // Window 4, slide 2: t200 (b1 b2) a[1 5 3] b[2] | t400 (b1..b4) a[1 5 3] b[2 5 6] c[1]
        // | t600 (b3..b6) a[2] b[5 6] c[1] | t800 (b5..b8) a[2]
        assert_sorted_batches(
            "group_by_key_and_window(4, 2)",
            &slid,
            &[200, 400, 600, 800],
            vec![
                vec![g("a", &[1, 5, 3]), g("b", &[2])],
                vec![g("a", &[1, 5, 3]), g("b", &[2, 5, 6]), g("c", &[1])],
                vec![g("a", &[2]), g("b", &[5, 6]), g("c", &[1])],
                vec![g("a", &[2])],
            ],
        );
    })
    .await;
}

#[actix::test]
async fn windowed_operators_over_an_empty_stream() {
    within(async {
        let ssc = ctx();
        let s = ssc.queue_stream::<(String, i64)>(vec![]);
        let w = s.window(batches(2), B).unwrap().collect_batches();
        let c = s.count_by_window(batches(2), B).unwrap().collect_batches();
        let r = s
            .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, batches(2), B)
            .unwrap()
            .collect_batches();
        let n = s.count().collect_batches();
        run(&ssc, 3).await;
        let none: Vec<Vec<(String, i64)>> = vec![vec![], vec![], vec![]];
        assert_batches("window", &w, &every_batch(3), none.clone());
        assert_batches("count_by_window", &c, &every_batch(3), vec![vec![]; 3]);
        assert_batches("reduce_by_key_and_window_inv", &r, &every_batch(3), none);
        // count of an empty batch is 0, not nothing.
        assert_batches("count", &n, &every_batch(3), vec![vec![0]; 3]);
    })
    .await;
}

/// The `what` and operator of a `NotMultipleOfSlide` error.
fn not_multiple<T: std::fmt::Debug>(r: Result<T>) -> (&'static str, String) {
    match r {
        Err(e @ Error::Graph(GraphError::NotMultipleOfSlide { what, .. })) => (what, e.to_string()),
        other => panic!("expected a NotMultipleOfSlide graph error, got {other:?}"),
    }
}

#[test]
fn durations_not_multiple_of_the_parent_slide_are_refused_before_start() {
    let ssc = ctx();
    let s = ssc.queue_stream(pairs());
    let half = B / 2;
    let (what, msg) = not_multiple(s.window(B * 3 / 2, B));
    assert_eq!(what, "window duration", "{msg}");
    assert!(
        msg.contains("window duration") && msg.contains("window at"),
        "{msg}"
    );
    let (what, msg) = not_multiple(s.window(batches(2), half * 3));
    assert_eq!(what, "slide duration", "{msg}");
    assert!(msg.contains("slide duration"), "{msg}");
    assert_eq!(
        not_multiple(s.window(std::time::Duration::ZERO, B)).0,
        "window duration"
    );
    assert_eq!(
        not_multiple(s.reduce_by_window(|a, _| a, half, B)).0,
        "window duration"
    );
    assert_eq!(
        not_multiple(s.reduce_by_window_inv(|a, _| a, |a, _| a, B, half)).0,
        "slide duration"
    );
    assert_eq!(
        not_multiple(s.count_by_window(half, B)).0,
        "window duration"
    );
    assert_eq!(
        not_multiple(s.count_by_value_and_window(B, half)).0,
        "slide duration"
    );
    assert_eq!(
        not_multiple(s.reduce_by_key_and_window(|a, b| a + b, half, B)).0,
        "window duration"
    );
    assert_eq!(
        not_multiple(s.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, B, half)).0,
        "slide duration"
    );
    assert_eq!(
        not_multiple(s.reduce_by_key_and_window_with(WindowReduce::new(|a, b| a + b), half, B)).0,
        "window duration"
    );
    assert_eq!(
        not_multiple(s.group_by_key_and_window(B, half)).0,
        "slide duration"
    );
    // The unit is the parent's slide, not the batch interval: a stream sliding by 2 batches
    // refuses windows of 3 batches and slides of 1.
    let w = s.window(batches(2), batches(2)).unwrap();
    let (what, msg) = not_multiple(w.window(batches(3), batches(2)));
    assert_eq!(what, "window duration", "{msg}");
    assert_eq!(not_multiple(w.window(batches(4), B)).0, "slide duration");
    assert!(w.window(batches(4), batches(2)).is_ok());
}
