//! Operators over many streams and over past batches (issue 3) through the public API on
//! the actor runtime, against hand-computed batches: `DStream::union`,
//! `StreamingContext::{union, transform}`, `slice(from, to)` over remembered RDDs (from an
//! output operation, with `StreamingConfig::remember`), `count` of empty batches, and the
//! errors (no streams; different slides at start).
//! Contexts: 2 executors, 3 default partitions, manual clock, 100 ms batches.

mod support3;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rivulet::prelude::*;
use support3::*;

/// Three integer streams of different lengths:
/// ```text
/// batch  1(100)   2(200)   3(300)   4..
/// a      1 2      3        -        -
/// b      10       -        -        -
/// c      100      200 201  300      -
/// ```
fn three(ssc: &StreamingContext) -> [DStream<i64>; 3] {
    [
        ssc.queue_stream(vec![vec![1, 2], vec![3]]),
        ssc.queue_stream(vec![vec![10]]),
        ssc.queue_stream(vec![vec![100], vec![200, 201], vec![300]]),
    ]
}

#[actix::test]
async fn unions_keep_stream_order_then_record_order() {
    within(async {
        let ssc = ctx();
        let [a, b, c] = three(&ssc);
        let ab = a.union(&b).collect_batches();
        let ca = c.union(&a).collect_batches();
        let abc = ssc.union(&[a.clone(), b.clone(), c.clone()]).unwrap();
        let abc_out = abc.collect_batches();
        let single = ssc
            .union(std::slice::from_ref(&c))
            .unwrap()
            .collect_batches();
        // A union of unions.
        let nested = ab_c(&ssc, &a, &b, &c).collect_batches();
        run(&ssc, 4).await;
        let at = every_batch(4);
        assert_batches(
            "a.union(b)",
            &ab,
            &at,
            vec![vec![1, 2, 10], vec![3], vec![], vec![]],
        );
        assert_batches(
            "c.union(a)",
            &ca,
            &at,
            vec![vec![100, 1, 2], vec![200, 201, 3], vec![300], vec![]],
        );
        let all = vec![vec![1, 2, 10, 100], vec![3, 200, 201], vec![300], vec![]];
        assert_batches("ssc.union([a, b, c])", &abc_out, &at, all.clone());
        assert_batches(
            "ssc.union([c])",
            &single,
            &at,
            vec![vec![100], vec![200, 201], vec![300], vec![]],
        );
        assert_batches("union of unions", &nested, &at, all);
    })
    .await;
}

fn ab_c(
    ssc: &StreamingContext,
    a: &DStream<i64>,
    b: &DStream<i64>,
    c: &DStream<i64>,
) -> DStream<i64> {
    ssc.union(&[a.union(b), c.clone()]).unwrap()
}

#[actix::test]
async fn unions_of_windowed_streams_with_the_same_slide() {
    within(async {
        let ssc = ctx();
        let [a, _, c] = three(&ssc);
        let wa = a.window(batches(2), batches(2)).unwrap();
        let wc = c.window(batches(4), batches(2)).unwrap();
        let out = wa.union(&wc).collect_batches();
        let counted = ssc.union(&[wa, wc]).unwrap().count().collect_batches();
        run(&ssc, 4).await;
        // wa: t200 = 1 2 3, t400 = nothing; wc: t200 = 100 200 201, t400 = 100 200 201 300
        assert_batches(
            "windowed union",
            &out,
            &[200, 400],
            vec![vec![1, 2, 3, 100, 200, 201], vec![100, 200, 201, 300]],
        );
        assert_batches("count", &counted, &[200, 400], vec![vec![6], vec![4]]);
    })
    .await;
}

#[actix::test]
async fn context_transform_gets_every_rdd_in_order_and_the_time() {
    within(async {
        let ssc = ctx();
        let [a, b, c] = three(&ssc);
        let tagged = ssc
            .transform(&[a, b, c], |rdds, t| {
                let ms = t.as_ms();
                let tagged: Vec<Rdd<(usize, i64, i64)>> = rdds
                    .iter()
                    .enumerate()
                    .map(|(i, r)| r.map(move |x| (i, x, ms)))
                    .collect();
                Rdd::union_all(&tagged)
            })
            .unwrap()
            .collect_batches();
        run(&ssc, 4).await;
        assert_batches(
            "ssc.transform",
            &tagged,
            &every_batch(4),
            vec![
                vec![(0, 1, 100), (0, 2, 100), (1, 10, 100), (2, 100, 100)],
                vec![(0, 3, 200), (2, 200, 200), (2, 201, 200)],
                vec![(2, 300, 300)],
                vec![],
            ],
        );
    })
    .await;
}

#[actix::test]
async fn count_emits_zero_for_empty_batches() {
    within(async {
        let ssc = ctx();
        let s = ssc.queue_stream(vec![vec![1, 2, 3], vec![], vec![4]]);
        let counts = s.count().collect_batches();
        let filtered = s.filter(|_| false).count().collect_batches();
        run(&ssc, 4).await;
        let at = every_batch(4);
        assert_batches(
            "count",
            &counts,
            &at,
            vec![vec![3], vec![0], vec![1], vec![0]],
        );
        assert_batches("filter(false).count", &filtered, &at, vec![vec![0]; 4]);
    })
    .await;
}

/// Each batch's slices, collected on the job thread: `(batch time, [(rdd batch contents)])`.
type Slices = Arc<Mutex<Vec<(i64, Vec<Vec<i64>>)>>>;

/// At every batch time `t` of `driver`, collects `stream.slice(from(t), to(t))`.
fn record_slices(
    driver: &DStream<i64>,
    stream: &DStream<i64>,
    from: impl Fn(Time) -> Time + Send + Sync + 'static,
    to: impl Fn(Time) -> Time + Send + Sync + 'static,
) -> Slices {
    let slices: Slices = Arc::default();
    let (sink, stream) = (slices.clone(), stream.clone());
    driver.foreach_rdd(move |_, t| {
        let rdds = stream.slice(from(t), to(t))?;
        let contents = rdds
            .iter()
            .map(|r| r.collect())
            .collect::<Result<Vec<_>>>()?;
        sink.lock().unwrap().push((t.as_ms(), contents));
        Ok(())
    });
    slices
}

/// The integer input: b1 11 12 | b2 21 | b3 empty | b4 41 | b5 51 | then exhausted.
fn ints() -> Vec<Vec<i64>> {
    vec![vec![11, 12], vec![21], vec![], vec![41], vec![51]]
}

#[actix::test]
async fn slice_returns_past_batches_both_ends_included() {
    within(async {
        let ssc = StreamingContext::new(config(2, 3).remember(Duration::from_secs(1))).unwrap();
        let s = ssc.queue_stream(ints()).map(|x| x + 1000);
        // The last 4 batches, [t - 300, t]: times before the start give no RDD.
        let last4 = record_slices(&s, &s, |t| t - batches(3), |t| t);
        // One past batch only: [t - 200, t - 200].
        let one = record_slices(&s, &s, |t| t - batches(2), |t| t - batches(2));
        run(&ssc, 6).await;
        let v = |xs: &[i64]| xs.iter().map(|x| x + 1000).collect::<Vec<_>>();
        let (b1, b2, b3, b4, b5, b6) = (v(&[11, 12]), v(&[21]), v(&[]), v(&[41]), v(&[51]), v(&[]));
        assert_eq!(
            *last4.lock().unwrap(),
            vec![
                (100, vec![b1.clone()]),
                (200, vec![b1.clone(), b2.clone()]),
                (300, vec![b1.clone(), b2.clone(), b3.clone()]),
                (400, vec![b1.clone(), b2.clone(), b3.clone(), b4.clone()]),
                (500, vec![b2.clone(), b3.clone(), b4.clone(), b5.clone()]),
                (600, vec![b3.clone(), b4.clone(), b5.clone(), b6]),
            ]
        );
        assert_eq!(
            *one.lock().unwrap(),
            vec![
                (100, vec![]),
                (200, vec![]),
                (300, vec![b1]),
                (400, vec![b2]),
                (500, vec![b3]),
                (600, vec![b4]),
            ]
        );
    })
    .await;
}

#[actix::test]
async fn slice_of_a_windowed_stream_uses_its_slide() {
    within(async {
        let ssc = StreamingContext::new(config(2, 3).remember(Duration::from_secs(1))).unwrap();
        let s = ssc.queue_stream(ints());
        let w = s.window(batches(2), batches(2)).unwrap();
        // At t = 600, w's batch times in [200, 600]: 200, 400, 600.
        let aligned = record_slices(&s, &w, |_| Time::from_ms(200), |_| Time::from_ms(600));
        // w's windows: t200 = b1 b2, t400 = b3 b4, t600 = b5 b6.
        let windows = vec![vec![11, 12, 21], vec![41], vec![51]];
        run(&ssc, 6).await;
        let got = aligned.lock().unwrap().clone();
        assert_eq!(got.len(), 6);
        assert_eq!(got[5], (600, windows));
    })
    .await;
}

#[actix::test]
async fn slice_rounds_an_unaligned_start_down_to_a_batch_time() {
    within(async {
        let ssc = StreamingContext::new(config(2, 3).remember(Duration::from_secs(1))).unwrap();
        let s = ssc.queue_stream(ints());
        let w = s.window(batches(2), batches(2)).unwrap();
        // Spark's `slice(from, to)`: `from` rounded down to a batch time of the stream
        // (250 -> 200, and 300 -> 200 for the 200 ms slide of `w`), `to` rounded down
        // (450 -> 400), both ends included.
        let plain = record_slices(&s, &s, |_| Time::from_ms(250), |_| Time::from_ms(450));
        let windowed = record_slices(&s, &w, |_| Time::from_ms(300), |_| Time::from_ms(600));
        run(&ssc, 6).await;
        let plain = plain.lock().unwrap()[5].clone();
        let windowed = windowed.lock().unwrap()[5].clone();
        assert_eq!(
            (plain, windowed),
            (
                // At t = 600, s.slice(250, 450): batches 200, 300, 400.
                (600, vec![vec![21], vec![], vec![41]]),
                // At t = 600, w.slice(300, 600): w at 200, 400, 600.
                (600, vec![vec![11, 12, 21], vec![41], vec![51]]),
            ),
            "(s.slice(250 ms, 450 ms), w.slice(300 ms, 600 ms))"
        );
    })
    .await;
}

#[actix::test]
async fn pair_operators_without_a_count_use_the_default_parallelism() {
    within(async {
        let ssc = context(2, 5);
        let s = ssc.queue_stream(vec![kvs(&[("a", 1i64), ("b", 2), ("c", 3)])]);
        let parts: Arc<Mutex<Vec<(&'static str, usize)>>> = Arc::default();
        let record = |name: &'static str, stream: DStream<String>| {
            let sink = parts.clone();
            stream.foreach_rdd(move |rdd, _| {
                sink.lock().unwrap().push((name, rdd.num_partitions()));
                Ok(())
            });
        };
        let w = batches(2);
        let add = |a: i64, b: i64| a + b;
        let show = |x: &dyn std::fmt::Debug| format!("{x:?}");
        record(
            "reduce_by_key_and_window",
            s.reduce_by_key_and_window(add, w, B)
                .unwrap()
                .map(move |x| show(&x)),
        );
        record(
            "reduce_by_key_and_window_inv",
            s.reduce_by_key_and_window_inv(add, |a, b| a - b, w, B)
                .unwrap()
                .map(move |x| show(&x)),
        );
        record(
            "group_by_key_and_window",
            s.group_by_key_and_window(w, B)
                .unwrap()
                .map(move |x| show(&x)),
        );
        record(
            "count_by_value_and_window",
            s.map(|(k, _)| k)
                .count_by_value_and_window(w, B)
                .unwrap()
                .map(move |x| show(&x)),
        );
        record(
            "update_state_by_key",
            s.update_state_by_key(|vs: Vec<i64>, st: Option<i64>| {
                Some(st.unwrap_or(0) + vs.len() as i64)
            })
            .map(move |x| show(&x)),
        );
        let mws = s.map_with_state(StateSpec::function(
            |k: &String, _: Option<i64>, st: &mut State<i64>| {
                st.update(1);
                k.clone()
            },
        ));
        record("map_with_state", mws.mapped());
        record(
            "state_snapshots",
            mws.state_snapshots().map(move |x| show(&x)),
        );
        record("join", s.join(&s).map(move |x| show(&x)));
        record("cogroup", s.cogroup(&s).map(move |x| show(&x)));
        run(&ssc, 2).await;
        let parts = parts.lock().unwrap().clone();
        assert_eq!(parts.len(), 18, "{parts:?}");
        for (name, n) in parts {
            assert_eq!(n, 5, "{name}: partitions");
        }
    })
    .await;
}

#[test]
fn union_and_transform_of_no_streams_are_errors() {
    let ssc = ctx();
    match ssc.union::<i64>(&[]) {
        Err(Error::Graph(GraphError::NoStreams(op))) => assert!(op.contains("union"), "{op}"),
        other => panic!("expected NoStreams, got {other:?}"),
    }
    match ssc.transform::<i64, i64>(&[], |rdds, _| rdds[0].clone()) {
        Err(Error::Graph(GraphError::NoStreams(op))) => assert!(op.contains("transform"), "{op}"),
        other => panic!("expected NoStreams, got {other:?}"),
    }
}

#[actix::test]
async fn many_stream_operators_refuse_different_slides_at_start() {
    within(async {
        type Ints = DStream<i64>;
        let cases: Vec<(&str, fn(&StreamingContext, &Ints, &Ints))> = vec![
            ("union", |_, w, p| w.union(p).print(1)),
            ("union", |ssc, w, p| {
                ssc.union(&[p.clone(), w.clone()]).unwrap().print(1)
            }),
            ("transform", |ssc, w, p| {
                ssc.transform(&[w.clone(), p.clone()], |rdds, _| Rdd::union_all(rdds))
                    .unwrap()
                    .print(1)
            }),
        ];
        for (op, build) in cases {
            let ssc = ctx();
            let p = ssc.queue_stream(vec![vec![1i64]]);
            let w = p.window(batches(2), batches(2)).unwrap();
            build(&ssc, &w, &p);
            match ssc.start().await {
                Err(e @ Error::Graph(GraphError::SlideMismatch { .. })) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("{op} at")), "{msg}");
                }
                other => panic!("{op}: expected a SlideMismatch error, got {other:?}"),
            }
        }
    })
    .await;
}
