//! Every per-batch DStream operator of issue 2 against hand-computed expected batches.
//!
//! Inputs are queue streams on 3 default partitions and 2 executors. A queue stream cuts
//! each batch into 3 contiguous partitions (`data[i*n/3 .. (i+1)*n/3]`), and after its last
//! batch yields empty batches with no partitions at all; `vec![]` batches in the middle are
//! empty batches with 3 empty partitions. Narrow operators keep the input order, so their
//! results are compared in order; results of shuffles are compared as multisets (sorted).
//!
//! The integer input, batch by batch (`|` separates partitions):
//! ```text
//! batch 1 (100 ms): 1 2 | 3 4 | 5 6 7
//! batch 2 (200 ms):     |     |           (an empty batch)
//! batch 3 (300 ms):     | 10  | 11
//! batch 4, 5:       (the queue is used up: no partitions)
//! ```

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use rivulet::prelude::*;

const BATCHES: u32 = 5;

fn int_input() -> Vec<Vec<i64>> {
    vec![vec![1, 2, 3, 4, 5, 6, 7], vec![], vec![10, 11]]
}

fn pair_input() -> Vec<Vec<(String, i64)>> {
    // Partitions of batch 1: (a,1) (b,2) | (a,3) (c,4) | (b,5) (a,6)
    vec![
        vec![
            kv("a", 1),
            kv("b", 2),
            kv("a", 3),
            kv("c", 4),
            kv("b", 5),
            kv("a", 6),
        ],
        vec![],
        vec![kv("x", 1)],
    ]
}

/// Starts `ssc`, runs [`BATCHES`] batches and stops it.
async fn run(ssc: &StreamingContext) {
    ssc.start().await.expect("start");
    ssc.advance(BATCHES).await.expect("batches");
    ssc.stop(StopMode::Graceful).await.expect("stop");
}

#[actix::test]
async fn map_flat_map_filter_keep_order() {
    within(async {
        let ssc = context(2, 3);
        let s = ssc.queue_stream(int_input());
        let mapped = s.map(|x| x * 2).collect_batches();
        let flat = s.flat_map(|x| vec![x; (x % 3) as usize]).collect_batches();
        let evens = s.filter(|x| x % 2 == 0).collect_batches();
        run(&ssc).await;

        assert_times(&mapped.timed_batches(), &[100, 200, 300, 400, 500]);
        assert_eq!(
            mapped.batches(),
            vec![
                vec![2, 4, 6, 8, 10, 12, 14],
                vec![],
                vec![20, 22],
                vec![],
                vec![]
            ]
        );
        assert_eq!(
            flat.batches(),
            vec![
                vec![1, 2, 2, 4, 5, 5, 7],
                vec![],
                vec![10, 11, 11],
                vec![],
                vec![]
            ]
        );
        assert_eq!(
            evens.batches(),
            vec![vec![2, 4, 6], vec![], vec![10], vec![], vec![]]
        );
    })
    .await
}

#[actix::test]
async fn fused_narrow_chain() {
    within(async {
        let ssc = context(2, 3);
        let out = ssc
            .queue_stream(int_input())
            .map(|x| x + 1)
            .filter(|x| x % 3 != 0)
            .flat_map(|x| vec![x, -x])
            .map(|x| x * 10)
            .collect_batches();
        run(&ssc).await;
        // batch 1: 2..=8 without multiples of 3 = 2 4 5 7 8; batch 3: 11 12 -> 11.
        assert_eq!(
            out.batches(),
            vec![
                vec![20, -20, 40, -40, 50, -50, 70, -70, 80, -80],
                vec![],
                vec![110, -110],
                vec![],
                vec![]
            ]
        );
    })
    .await
}

#[actix::test]
async fn map_partitions_and_glom_see_the_partitions() {
    within(async {
        let ssc = context(2, 3);
        let s = ssc.queue_stream(int_input());
        let sums = s
            .map_partitions(|records| vec![records.sum::<i64>()])
            .collect_batches();
        let sizes_and_firsts = s
            .map_partitions(|mut records| {
                let first = records.next();
                vec![(
                    first,
                    1 + records.count() as i64 - i64::from(first.is_none()),
                )]
            })
            .collect_batches();
        let glommed = s.glom().collect_batches();
        run(&ssc).await;

        assert_eq!(
            sums.batches(),
            vec![
                vec![3, 7, 18],
                vec![0, 0, 0],
                vec![0, 10, 11],
                vec![],
                vec![]
            ]
        );
        assert_eq!(
            sizes_and_firsts.batches(),
            vec![
                vec![(Some(1), 2), (Some(3), 2), (Some(5), 3)],
                vec![(None, 0), (None, 0), (None, 0)],
                vec![(None, 0), (Some(10), 1), (Some(11), 1)],
                vec![],
                vec![]
            ]
        );
        assert_eq!(
            glommed.batches(),
            vec![
                vec![vec![1, 2], vec![3, 4], vec![5, 6, 7]],
                vec![vec![], vec![], vec![]],
                vec![vec![], vec![10], vec![11]],
                vec![],
                vec![]
            ]
        );
    })
    .await
}

#[actix::test]
async fn union_keeps_both_streams_in_order() {
    within(async {
        let ssc = context(2, 3);
        let s1 = ssc.queue_stream(int_input());
        let s2 = ssc.queue_stream(vec![vec![100], vec![200, 201], vec![], vec![300]]);
        let s3 = ssc.queue_stream(vec![vec![-1]]);
        let two = s1.union(&s2).collect_batches();
        let three = s1.union(&s2).union(&s3).collect_batches();
        run(&ssc).await;
        assert_eq!(
            two.batches(),
            vec![
                vec![1, 2, 3, 4, 5, 6, 7, 100],
                vec![200, 201],
                vec![10, 11],
                vec![300],
                vec![]
            ]
        );
        assert_eq!(
            three.batches(),
            vec![
                vec![1, 2, 3, 4, 5, 6, 7, 100, -1],
                vec![200, 201],
                vec![10, 11],
                vec![300],
                vec![]
            ]
        );
    })
    .await
}

#[actix::test]
async fn repartition_moves_every_record_once() {
    within(async {
        let ssc = context(2, 3);
        let parts = ssc
            .queue_stream(int_input())
            .repartition(2)
            .glom()
            .collect_batches();
        run(&ssc).await;
        let batches = parts.batches();
        assert_eq!(batches.len(), 5);
        for (i, b) in batches.iter().enumerate() {
            assert_eq!(b.len(), 2, "batch {i} must have 2 partitions: {b:?}");
        }
        let flat: Vec<Vec<i64>> = batches.iter().map(|b| sorted(b.concat())).collect();
        assert_eq!(
            flat,
            vec![
                vec![1, 2, 3, 4, 5, 6, 7],
                vec![],
                vec![10, 11],
                vec![],
                vec![]
            ]
        );
        // Three map partitions of 2, 2 and 3 records dealt round-robin over 2 partitions.
        let mut sizes: Vec<usize> = batches[0].iter().map(Vec::len).collect();
        sizes.sort();
        assert_eq!(sizes, vec![3, 4], "{:?}", batches[0]);
    })
    .await
}

#[actix::test]
async fn count_and_reduce() {
    within(async {
        let ssc = context(2, 3);
        let s = ssc.queue_stream(int_input());
        let counts = s.count().collect_batches();
        let sums = s.reduce(|a, b| a + b).collect_batches();
        let maxes = s.reduce(|a, b| a.max(b)).collect_batches();
        run(&ssc).await;
        assert_eq!(
            counts.batches(),
            vec![vec![7], vec![0], vec![2], vec![0], vec![0]]
        );
        assert_eq!(
            sums.batches(),
            vec![vec![28], vec![], vec![21], vec![], vec![]]
        );
        assert_eq!(
            maxes.batches(),
            vec![vec![7], vec![], vec![11], vec![], vec![]]
        );
    })
    .await
}

#[actix::test]
async fn count_by_value_counts_each_distinct_record() {
    within(async {
        let ssc = context(2, 3);
        let words = ssc.queue_stream(vec![
            strings(&["a", "b", "a", "c", "b", "a"]),
            vec![],
            strings(&["z"]),
            strings(&["q", "q", "q", "q"]),
        ]);
        let counts = words.count_by_value().collect_batches();
        run(&ssc).await;
        assert_eq!(
            sorted_batches(counts.batches()),
            vec![
                vec![kv("a", 3u64), kv("b", 2), kv("c", 1)],
                vec![],
                vec![kv("z", 1)],
                vec![kv("q", 4)],
                vec![]
            ]
        );
    })
    .await
}

#[actix::test]
async fn transform_gets_each_batch_rdd_and_time() {
    within(async {
        let ssc = context(2, 3);
        let s = ssc.queue_stream(int_input());
        let shifted = s
            .transform(|rdd, t| rdd.map(move |x| x + t.as_ms()))
            .collect_batches();
        // A transform may change the partitioning and use pair operators.
        let parity_counts = s
            .transform(|rdd, _| {
                rdd.map(|x| (x % 2 == 0, 1u64))
                    .reduce_by_key_with_partitions(|a, b| a + b, 1)
            })
            .collect_batches();
        run(&ssc).await;
        assert_eq!(
            shifted.batches(),
            vec![
                vec![101, 102, 103, 104, 105, 106, 107],
                vec![],
                vec![310, 311],
                vec![],
                vec![]
            ]
        );
        assert_eq!(
            sorted_batches(parity_counts.batches()),
            vec![
                vec![(false, 4), (true, 3)],
                vec![],
                vec![(false, 1), (true, 1)],
                vec![],
                vec![]
            ]
        );
    })
    .await
}

#[actix::test]
async fn reduce_by_key_sums_per_key() {
    within(async {
        let ssc = context(2, 3);
        let pairs = ssc.queue_stream(pair_input());
        let sums = pairs.reduce_by_key(|a, b| a + b).collect_batches();
        run(&ssc).await;
        assert_eq!(
            sorted_batches(sums.batches()),
            vec![
                vec![kv("a", 10), kv("b", 7), kv("c", 4)],
                vec![],
                vec![kv("x", 1)],
                vec![],
                vec![]
            ]
        );
    })
    .await
}

#[actix::test]
async fn group_by_key_keeps_map_partition_then_record_order() {
    within(async {
        let ssc = context(2, 3);
        let pairs = ssc.queue_stream(pair_input());
        let groups = pairs.group_by_key().collect_batches();
        // Values of one key spread over all three map partitions, several per partition.
        let spread = ssc
            .queue_stream(vec![(0..9)
                .map(|i| kv(if i % 4 == 0 { "k" } else { "j" }, i))
                .collect()])
            .group_by_key_with_partitions(2)
            .collect_batches();
        run(&ssc).await;
        assert_eq!(
            sorted_batches(groups.batches()),
            vec![
                vec![
                    kv("a", vec![1, 3, 6]),
                    kv("b", vec![2, 5]),
                    kv("c", vec![4])
                ],
                vec![],
                vec![kv("x", vec![1])],
                vec![],
                vec![]
            ]
        );
        // Partitions: 0 1 2 | 3 4 5 | 6 7 8; "k" at 0, 4, 8.
        assert_eq!(
            sorted_batches(spread.batches())[0],
            vec![kv("j", vec![1, 2, 3, 5, 6, 7]), kv("k", vec![0, 4, 8])]
        );
    })
    .await
}

#[actix::test]
async fn flat_map_reduce_by_key_counts_like_flat_map_then_reduce_by_key() {
    within(async {
        let ssc = context(2, 3);
        // Batch 1's partitions: "a b a" | "b c" | "" "a"
        let lines = ssc.queue_stream(vec![
            strings(&["a b a", "b c", "", "a"]),
            vec![],
            strings(&["x x"]),
        ]);
        let count = |s: &DStream<String>| {
            s.flat_map_reduce_by_key(
                |line: &String, words| {
                    for w in line.split(' ').filter(|w| !w.is_empty()) {
                        words.add(w, 1u64);
                    }
                },
                |a, b| a + b,
            )
            .collect_batches()
        };
        // Over the queue's shared partitions, and over computed ones.
        let shared = count(&lines);
        let computed = count(&lines.map(|l| l));
        let plain = lines
            .flat_map(|l: String| {
                l.split(' ')
                    .filter(|w| !w.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b)
            .collect_batches();
        run(&ssc).await;
        let expected = vec![
            vec![kv("a", 3), kv("b", 2), kv("c", 1)],
            vec![],
            vec![kv("x", 2)],
            vec![],
            vec![],
        ];
        assert_eq!(sorted_batches(shared.batches()), expected);
        assert_eq!(sorted_batches(computed.batches()), expected);
        assert_eq!(sorted_batches(plain.batches()), expected);
    })
    .await
}

#[actix::test]
async fn combine_by_key_with_its_three_functions() {
    within(async {
        let ssc = context(2, 3);
        let pairs = ssc.queue_stream(pair_input());
        // (sum, count) per key, into 2 partitions.
        let combined = pairs.combine_by_key(
            |v| (v, 1u32),
            |(s, n), v| (s + v, n + 1),
            |(s1, n1), (s2, n2)| (s1 + s2, n1 + n2),
            2,
        );
        let out = combined.collect_batches();
        let partitions = combined.glom().map(|p| p.len()).collect_batches();
        run(&ssc).await;
        assert_eq!(
            sorted_batches(out.batches()),
            vec![
                vec![kv("a", (10, 3)), kv("b", (7, 2)), kv("c", (4, 1))],
                vec![],
                vec![kv("x", (1, 1))],
                vec![],
                vec![]
            ]
        );
        for (i, b) in partitions.batches().iter().enumerate() {
            assert_eq!(b.len(), 2, "batch {i}: 2 partitions expected, got {b:?}");
        }
    })
    .await
}

#[actix::test]
async fn shuffled_pairs_land_in_their_keys_partition() {
    within(async {
        let ssc = context(2, 3);
        let keys: Vec<String> = (0..40).map(|i| format!("key{i}")).collect();
        // Each key twice per batch, in different map partitions.
        let once: Vec<(String, i64)> = keys.iter().cloned().zip(0..).collect();
        let twice = [once.clone(), once].concat();
        let parts = ssc
            .queue_stream(vec![twice.clone(), twice])
            .reduce_by_key_with_partitions(|a, b| a + b, 4)
            .glom()
            .collect_batches();
        run(&ssc).await;
        let partitioner = HashPartitioner::new(4);
        for batch in &parts.batches()[..2] {
            assert_eq!(batch.len(), 4);
            let mut seen = HashSet::new();
            for (p, records) in batch.iter().enumerate() {
                for (k, v) in records {
                    assert!(seen.insert(k.clone()), "key {k} in two partitions");
                    assert_eq!(partitioner.partition(k), p, "key {k}");
                    let i: i64 = k[3..].parse().unwrap();
                    assert_eq!(*v, 2 * i, "key {k}: both values summed");
                }
            }
            assert_eq!(seen.len(), 40);
        }
    })
    .await
}

#[actix::test]
async fn map_values_and_flat_map_values_keep_keys_and_order() {
    within(async {
        let ssc = context(2, 3);
        let pairs = ssc.queue_stream(pair_input());
        let tens = pairs.map_values(|v| v * 10).collect_batches();
        let flat = pairs
            .flat_map_values(|v| (0..v % 3).map(move |i| v * 10 + i))
            .collect_batches();
        // After a shuffle, map_values keeps each key's partition.
        let after_shuffle = pairs
            .reduce_by_key_with_partitions(|a, b| a + b, 2)
            .map_values(|v| -v)
            .glom()
            .collect_batches();
        run(&ssc).await;
        assert_eq!(
            tens.batches(),
            vec![
                vec![
                    kv("a", 10),
                    kv("b", 20),
                    kv("a", 30),
                    kv("c", 40),
                    kv("b", 50),
                    kv("a", 60)
                ],
                vec![],
                vec![kv("x", 10)],
                vec![],
                vec![]
            ]
        );
        assert_eq!(
            flat.batches(),
            vec![
                vec![
                    kv("a", 10),
                    kv("b", 20),
                    kv("b", 21),
                    kv("c", 40),
                    kv("b", 50),
                    kv("b", 51)
                ],
                vec![],
                vec![kv("x", 10)],
                vec![],
                vec![]
            ]
        );
        let partitioner = HashPartitioner::new(2);
        let first = &after_shuffle.batches()[0];
        assert_eq!(
            sorted(first.concat()),
            vec![kv("a", -10), kv("b", -7), kv("c", -4)]
        );
        for (p, records) in first.iter().enumerate() {
            for (k, _) in records {
                assert_eq!(partitioner.partition(k), p, "key {k}");
            }
        }
    })
    .await
}

#[actix::test]
async fn word_count_pipeline_over_several_batches() {
    within(async {
        let ssc = context(2, 3);
        let lines = ssc.queue_stream(vec![
            strings(&["to be or", "not to be", ""]),
            vec![],
            strings(&["be quick", "or be dead"]),
        ]);
        let counts = lines
            .flat_map(|l: String| {
                l.split(' ')
                    .filter(|w| !w.is_empty())
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b)
            .collect_batches();
        run(&ssc).await;
        assert_eq!(
            sorted_batches(counts.batches()),
            vec![
                vec![kv("be", 2), kv("not", 1), kv("or", 1), kv("to", 2)],
                vec![],
                vec![kv("be", 2), kv("dead", 1), kv("or", 1), kv("quick", 1)],
                vec![],
                vec![]
            ]
        );
    })
    .await
}

#[actix::test]
async fn cache_computes_a_batch_once_for_several_outputs() {
    within(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let ssc = context(2, 3);
        let c = calls.clone();
        let cached = ssc
            .queue_stream(int_input())
            .map(move |x| {
                c.fetch_add(1, Ordering::SeqCst);
                x * 3
            })
            .cache();
        let first = cached.collect_batches();
        let second = cached.filter(|x| x % 2 == 1).collect_batches();
        run(&ssc).await;
        assert_eq!(
            first.batches(),
            vec![
                vec![3, 6, 9, 12, 15, 18, 21],
                vec![],
                vec![30, 33],
                vec![],
                vec![]
            ]
        );
        assert_eq!(
            second.batches(),
            vec![vec![3, 9, 15, 21], vec![], vec![33], vec![], vec![]]
        );
        // 9 records, each mapped once although two outputs read them.
        assert_eq!(calls.load(Ordering::SeqCst), 9);
    })
    .await
}
