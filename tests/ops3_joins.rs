//! Operators on two streams (issue 3) through the public API on the actor runtime, against
//! hand-computed batches: `join`, `left_outer_join`, `right_outer_join`, `full_outer_join`,
//! `cogroup` (per batch, and on windowed streams), `transform_with`, joining each batch with
//! a static `parallelize`d RDD inside `transform`, and the slide-mismatch errors at start.
//! Contexts: 2 executors, 3 default partitions, manual clock, 100 ms batches.

mod support3;

use rivulet::prelude::*;
use support3::*;

/// The left side, batch by batch: b1 a1 a2 b3 | b2 c4 | b3 empty | then exhausted.
fn left() -> Vec<Vec<(String, i64)>> {
    vec![
        kvs(&[("a", 1), ("a", 2), ("b", 3)]),
        kvs(&[("c", 4)]),
        vec![],
    ]
}

/// The right side: b1 a:x c:y | b2 empty | b3 d:z | then exhausted.
fn right() -> Vec<Vec<(String, String)>> {
    vec![
        kvs(&[("a", "x".to_string()), ("c", "y".to_string())]),
        vec![],
        kvs(&[("d", "z".to_string())]),
    ]
}

fn s(x: &str) -> String {
    x.to_string()
}

#[actix::test]
async fn joins_and_cogroup_per_batch() {
    within(async {
        let ssc = ctx();
        let l = ssc.queue_stream(left());
        let r = ssc.queue_stream(right());
        let join = l.join(&r).collect_batches();
        let left_outer = l.left_outer_join(&r).collect_batches();
        let right_outer = l.right_outer_join(&r).collect_batches();
        let full_outer = l.full_outer_join(&r).collect_batches();
        let cogroup = l.cogroup(&r).collect_batches();
        run(&ssc, 4).await;
        let at = every_batch(4);
        assert_sorted_batches(
            "join",
            &join,
            &at,
            vec![
                vec![(s("a"), (1, s("x"))), (s("a"), (2, s("x")))],
                vec![],
                vec![],
                vec![],
            ],
        );
        assert_sorted_batches(
            "left_outer_join",
            &left_outer,
            &at,
            vec![
                vec![
                    (s("a"), (1, Some(s("x")))),
                    (s("a"), (2, Some(s("x")))),
                    (s("b"), (3, None)),
                ],
                vec![(s("c"), (4, None))],
                vec![],
                vec![],
            ],
        );
        assert_sorted_batches(
            "right_outer_join",
            &right_outer,
            &at,
            vec![
                vec![
                    (s("a"), (Some(1), s("x"))),
                    (s("a"), (Some(2), s("x"))),
                    (s("c"), (None, s("y"))),
                ],
                vec![],
                vec![(s("d"), (None, s("z")))],
                vec![],
            ],
        );
        assert_sorted_batches(
            "full_outer_join",
            &full_outer,
            &at,
            vec![
                vec![
                    (s("a"), (Some(1), Some(s("x")))),
                    (s("a"), (Some(2), Some(s("x")))),
                    (s("b"), (Some(3), None)),
                    (s("c"), (None, Some(s("y")))),
                ],
                vec![(s("c"), (Some(4), None))],
                vec![(s("d"), (None, Some(s("z"))))],
                vec![],
            ],
        );
        // Values of one key in partition order, then record order: a's are [1, 2].
        assert_sorted_batches(
            "cogroup",
            &cogroup,
            &at,
            vec![
                vec![
                    (s("a"), (vec![1, 2], vec![s("x")])),
                    (s("b"), (vec![3], vec![])),
                    (s("c"), (vec![], vec![s("y")])),
                ],
                vec![(s("c"), (vec![4], vec![]))],
                vec![(s("d"), (vec![], vec![s("z")]))],
                vec![],
            ],
        );
    })
    .await;
}

#[actix::test]
async fn joins_of_windowed_streams_with_the_same_slide() {
    within(async {
        let ssc = ctx();
        let l = ssc
            .queue_stream(left())
            .window(batches(2), batches(2))
            .unwrap();
        let r = ssc
            .queue_stream(right())
            .window(batches(2), batches(2))
            .unwrap();
        let join = l.join(&r).collect_batches();
        let full = l.full_outer_join(&r).collect_batches();
        run(&ssc, 4).await;
        // t200: left b1 b2 = a1 a2 b3 c4, right b1 b2 = a:x c:y
        // t400: left b3 b4 = nothing, right b3 b4 = d:z
        assert_sorted_batches(
            "windowed join",
            &join,
            &[200, 400],
            vec![
                vec![
                    (s("a"), (1, s("x"))),
                    (s("a"), (2, s("x"))),
                    (s("c"), (4, s("y"))),
                ],
                vec![],
            ],
        );
        assert_sorted_batches(
            "windowed full_outer_join",
            &full,
            &[200, 400],
            vec![
                vec![
                    (s("a"), (Some(1), Some(s("x")))),
                    (s("a"), (Some(2), Some(s("x")))),
                    (s("b"), (Some(3), None)),
                    (s("c"), (Some(4), Some(s("y")))),
                ],
                vec![(s("d"), (None, Some(s("z"))))],
            ],
        );
    })
    .await;
}

#[actix::test]
async fn transform_with_gets_both_rdds_and_the_time() {
    within(async {
        let ssc = ctx();
        let l = ssc.queue_stream(left());
        let r = ssc.queue_stream(right());
        let out = l
            .transform_with(&r, |a, b, t| {
                let ms = t.as_ms();
                a.map(move |(k, v)| format!("{k}{v}@{ms}"))
                    .union(&b.map(move |(k, v)| format!("{k}:{v}@{ms}")))
            })
            .collect_batches();
        // A join written by hand with transform_with agrees with `join`.
        let by_hand = l.transform_with(&r, |a, b, _| a.join(b)).collect_batches();
        run(&ssc, 4).await;
        // union keeps order: the left records (in order), then the right ones.
        assert_batches(
            "transform_with",
            &out,
            &every_batch(4),
            vec![
                vec![
                    s("a1@100"),
                    s("a2@100"),
                    s("b3@100"),
                    s("a:x@100"),
                    s("c:y@100"),
                ],
                vec![s("c4@200")],
                vec![s("d:z@300")],
                vec![],
            ],
        );
        assert_sorted_batches(
            "transform_with join",
            &by_hand,
            &every_batch(4),
            vec![
                vec![(s("a"), (1, s("x"))), (s("a"), (2, s("x")))],
                vec![],
                vec![],
                vec![],
            ],
        );
    })
    .await;
}

#[actix::test]
async fn each_batch_joined_with_static_historical_data() {
    within(async {
        let ssc = ctx();
        // Historical data: known clients and their names.
        let known = ssc.parallelize(
            kvs(&[("a", s("Alice")), ("b", s("Bob")), ("z", s("Zed"))]),
            2,
        );
        let known2 = known.clone();
        // Per-batch request counts per client: b1 a a b q | b2 empty | b3 z q | then exhausted.
        let requests = ssc
            .queue_stream(words(&[&["a", "a", "b", "q"], &[], &["z", "q"]]))
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b);
        let joined = requests
            .transform(move |rdd, _| rdd.join(&known))
            .collect_batches();
        let with_unknown = requests
            .transform(move |rdd, _| {
                rdd.left_outer_join(&known2)
                    .map(|(k, (n, name))| (name.unwrap_or_else(|| format!("unknown {k}")), n))
            })
            .collect_batches();
        run(&ssc, 4).await;
        let at = every_batch(4);
        assert_sorted_batches(
            "join with static data",
            &joined,
            &at,
            vec![
                vec![(s("a"), (2, s("Alice"))), (s("b"), (1, s("Bob")))],
                vec![],
                vec![(s("z"), (1, s("Zed")))],
                vec![],
            ],
        );
        assert_sorted_batches(
            "left outer join with static data",
            &with_unknown,
            &at,
            vec![
                vec![(s("Alice"), 2), (s("Bob"), 1), (s("unknown q"), 1)],
                vec![],
                vec![(s("Zed"), 1), (s("unknown q"), 1)],
                vec![],
            ],
        );
    })
    .await;
}

/// Asserts that `start` fails with a slide-mismatch graph error naming `op`.
async fn assert_slide_mismatch(ssc: &StreamingContext, op: &str) {
    match ssc.start().await {
        Err(e @ Error::Graph(GraphError::SlideMismatch { .. })) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("{op} at")), "{msg}");
            assert!(msg.contains("200ms") && msg.contains("100ms"), "{msg}");
        }
        other => panic!("{op}: expected a SlideMismatch error at start, got {other:?}"),
    }
}

#[actix::test]
async fn two_stream_operators_refuse_different_slides_at_start() {
    within(async {
        // A windowed stream sliding by 200 ms against a plain one (100 ms), for each operator.
        type Pairs = DStream<(String, i64)>;
        let cases: Vec<(&str, fn(&Pairs, &Pairs))> = vec![
            ("join", |w, p| w.join(p).print(1)),
            ("left_outer_join", |w, p| w.left_outer_join(p).print(1)),
            ("right_outer_join", |w, p| w.right_outer_join(p).print(1)),
            ("full_outer_join", |w, p| p.full_outer_join(w).print(1)),
            ("cogroup", |w, p| w.cogroup(p).print(1)),
            ("transform_with", |w, p| {
                w.transform_with(p, |a, b, _| a.union(b)).print(1)
            }),
        ];
        for (op, build) in cases {
            let ssc = ctx();
            let p = ssc.queue_stream(left());
            let w = p.window(batches(2), batches(2)).unwrap();
            build(&w, &p);
            assert_slide_mismatch(&ssc, op).await;
            assert!(ssc.advance(1).await.is_err(), "{op}: not running");
        }
    })
    .await;
}
