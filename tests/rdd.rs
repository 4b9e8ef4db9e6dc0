//! RDD-level API through a streaming program: static RDDs from `parallelize` joined into a
//! stream with `transform`, RDD operators inside `transform`, and RDD actions inside
//! `foreach_rdd`.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use common::*;
use rivulet::prelude::*;

#[actix::test]
async fn static_rdd_unioned_into_every_batch() {
    within(async {
        let ssc = context(2, 3);
        let history = ssc.parallelize(vec![100, 200, 300], 2);
        let with_history = ssc
            .queue_stream(vec![vec![1, 2, 3, 4], vec![], vec![5]])
            .transform(move |rdd, _| rdd.union(&history))
            .collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(4).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(
            with_history.batches(),
            vec![
                vec![1, 2, 3, 4, 100, 200, 300],
                vec![100, 200, 300],
                vec![5, 100, 200, 300],
                vec![100, 200, 300],
            ]
        );
    })
    .await
}

#[actix::test]
async fn batch_counts_merged_with_historical_counts() {
    within(async {
        let ssc = context(2, 3);
        let history = ssc.parallelize(vec![kv("a", 100u64), kv("z", 1)], 2);
        let totals = ssc
            .queue_stream(vec![strings(&["a", "b", "a"]), strings(&["z"])])
            .transform(move |rdd, _| {
                rdd.map(|w| (w, 1u64))
                    .union(&history)
                    .reduce_by_key(|a, b| a + b)
                    .filter(|(_, n)| *n > 1)
                    .map_values(|n| n * 2)
            })
            .collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(3).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(
            sorted_batches(totals.batches()),
            vec![
                vec![kv("a", 204)],
                vec![kv("a", 200), kv("z", 4)],
                vec![kv("a", 200)],
            ]
        );
    })
    .await
}

#[actix::test]
async fn rdd_operators_inside_transform() {
    within(async {
        let ssc = context(2, 3);
        let out = ssc
            .queue_stream(vec![strings(&["x y", "y z z"])])
            .transform(|rdd, _| {
                rdd.flat_map(|l: String| l.split(' ').map(str::to_string).collect::<Vec<_>>())
                    .map(|w| (w, 1u32))
                    .combine_by_key(
                        |v| vec![v],
                        |mut c, v| {
                            c.push(v);
                            c
                        },
                        |mut a, b| {
                            a.extend(b);
                            a
                        },
                        2,
                    )
                    .flat_map_values(|ones| vec![ones.len()])
                    .group_by_key()
                    .map(|(w, counts)| format!("{w}={}", counts.iter().sum::<usize>()))
                    .repartition(1)
            })
            .glom()
            .collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let batches = out.batches();
        assert_eq!(batches[0].len(), 1, "one partition after repartition(1)");
        assert_eq!(
            sorted(batches[0][0].clone()),
            strings(&["x=1", "y=2", "z=2"])
        );
        assert_eq!(batches[1], vec![Vec::<String>::new()]);
    })
    .await
}

/// What the actions returned for one batch.
#[derive(Debug, PartialEq)]
struct Actions {
    time: Time,
    collected: Vec<i64>,
    count: u64,
    first_two: Vec<i64>,
    sum: Option<i64>,
    by_value: HashMap<i64, u64>,
    history_count: u64,
}

#[actix::test]
async fn rdd_actions_inside_foreach_rdd() {
    within(async {
        let ssc = context(2, 3);
        let history = ssc.parallelize((1..=10).collect::<Vec<i64>>(), 3);
        let seen: Arc<Mutex<Vec<Actions>>> = Arc::default();
        let sink = seen.clone();
        ssc.queue_stream(vec![vec![5, 1, 5, 2, 5], vec![]])
            .foreach_rdd(move |rdd, time| {
                let actions = Actions {
                    time,
                    collected: rdd.collect()?,
                    count: rdd.count()?,
                    first_two: rdd.take(2)?,
                    sum: rdd.reduce(|a, b| a + b)?,
                    by_value: rdd.count_by_value()?,
                    history_count: history.count()?,
                };
                sink.lock().unwrap().push(actions);
                Ok(())
            });
        ssc.start().await.unwrap();
        ssc.advance(3).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        let empty = |time| Actions {
            time,
            collected: vec![],
            count: 0,
            first_two: vec![],
            sum: None,
            by_value: HashMap::new(),
            history_count: 10,
        };
        assert_eq!(
            seen,
            vec![
                Actions {
                    time: batch_time(1),
                    collected: vec![5, 1, 5, 2, 5],
                    count: 5,
                    first_two: vec![5, 1],
                    sum: Some(18),
                    by_value: HashMap::from([(5, 3), (1, 1), (2, 1)]),
                    history_count: 10,
                },
                empty(batch_time(2)),
                empty(batch_time(3)),
            ]
        );
    })
    .await
}

#[actix::test]
async fn an_action_inside_transform_fails_the_batch_clearly() {
    within(async {
        let ssc = context(2, 3);
        let out = ssc
            .queue_stream(vec![vec![1, 2, 3]])
            .transform(|rdd, _| {
                let n = rdd.count().unwrap_or_else(|e| panic!("{e}"));
                rdd.map(move |x| x + n as i64)
            })
            .collect_batches();
        ssc.start().await.unwrap();
        let err = ssc
            .advance(1)
            .await
            .expect_err("the action cannot block here");
        let msg = err.to_string();
        assert!(msg.contains("transform at tests/rdd.rs:"), "{msg}");
        assert!(msg.contains("cannot block"), "{msg}");
        assert!(msg.contains("100 ms"), "{msg}");
        assert!(out.is_empty());
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await
}

#[actix::test]
async fn save_as_text_file_writes_once_and_refuses_an_existing_directory() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("saved");
        let ssc = context(2, 3);
        let rdd = ssc.parallelize(vec![1, 2, 3], 2);
        ssc.queue_stream(vec![vec![0]]).collect_batches();
        ssc.start().await.unwrap();
        let save = |rdd: Rdd<i32>, out: std::path::PathBuf| {
            tokio::task::spawn_blocking(move || rdd.save_as_text_file(&out))
        };
        save(rdd.clone(), out.clone()).await.unwrap().unwrap();
        let err = save(rdd, out.clone()).await.unwrap().unwrap_err();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert!(
            err.to_string().contains(&out.display().to_string()),
            "{err}"
        );
        // One directory, no temporary sibling; its parts hold every record once.
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, vec!["saved"]);
        let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
        assert_eq!(read("part-00000") + &read("part-00001"), "1\n2\n3\n");
        assert_eq!(read("_SUCCESS"), "");
    })
    .await
}
