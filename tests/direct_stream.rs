//! The direct input DStream (Spark's direct Kafka stream, receiver-less) through the public
//! API, over an in-memory replayable log on the manual clock: each batch reads exactly the
//! records appended before it was cut, one partition per source partition, with its offset
//! ranges; a rate cap spreads a backlog; ranges are committed only after a batch's outputs
//! succeeded; new partitions are picked up, a gone one and a range no longer on the source
//! are errors naming them; and a program restarted from its checkpoint recomputes its
//! pending batches over the same ranges and goes on: the running counts equal an
//! independent count, none lost, none doubled.

mod common;
#[path = "ui_support/mod.rs"]
mod ui_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use common::*;
use rivulet::prelude::*;

/// A replayable log in memory: records per partition, appended by the test; what was
/// committed; and offsets below which records are "deleted" (retention).
#[derive(Clone, Default)]
struct MemoryLog {
    partitions: Arc<Mutex<BTreeMap<SourcePartition, Vec<String>>>>,
    commits: Arc<Mutex<Vec<Vec<OffsetRange>>>>,
    retained_from: Arc<Mutex<u64>>,
}

impl MemoryLog {
    fn append(&self, partition: u32, records: &[&str]) {
        self.partitions
            .lock()
            .unwrap()
            .entry(SourcePartition::new("words", partition))
            .or_default()
            .extend(records.iter().map(|r| r.to_string()));
    }

    fn remove_partition(&self, partition: u32) {
        self.partitions
            .lock()
            .unwrap()
            .remove(&SourcePartition::new("words", partition));
    }

    fn commits(&self) -> Vec<Vec<OffsetRange>> {
        self.commits.lock().unwrap().clone()
    }
}

impl DirectSource for MemoryLog {
    type Item = String;

    fn name(&self) -> String {
        "memory log".into()
    }

    fn latest_offsets(&self) -> Result<BTreeMap<SourcePartition, u64>> {
        Ok(self
            .partitions
            .lock()
            .unwrap()
            .iter()
            .map(|(p, records)| (p.clone(), records.len() as u64))
            .collect())
    }

    fn start_offset(&self, _partition: &SourcePartition, _latest: u64) -> Result<u64> {
        Ok(0)
    }

    fn read(&self, range: &OffsetRange) -> std::result::Result<PartitionIter<String>, ReadError> {
        if range.from < *self.retained_from.lock().unwrap() {
            return Err(ReadError::Unreadable {
                reason: format!("offsets {}..{} are past retention", range.from, range.until),
            });
        }
        let partitions = self.partitions.lock().unwrap();
        let records = partitions
            .get(&range.partition)
            .ok_or_else(|| Error::User(format!("no partition {}", range.partition)))?;
        let read: Vec<String> = records[range.from as usize..range.until as usize].to_vec();
        Ok(Box::new(read.into_iter()))
    }

    fn commit(&self, ranges: &[OffsetRange]) -> Result<()> {
        self.commits.lock().unwrap().push(ranges.to_vec());
        Ok(())
    }
}

fn range(partition: u32, from: u64, until: u64) -> OffsetRange {
    OffsetRange {
        partition: SourcePartition::new("words", partition),
        from,
        until,
    }
}

/// Each batch's records (sorted) and offset ranges, as its output saw them.
type Seen = Arc<Mutex<Vec<(Time, Vec<String>, Vec<OffsetRange>)>>>;

fn collect(direct: &DirectStream<String>) -> Seen {
    let seen: Seen = Arc::default();
    let (out, ranges) = (seen.clone(), direct.clone());
    direct.stream().foreach_rdd(move |rdd, t| {
        let mut records = rdd.collect()?;
        records.sort();
        let ranges = ranges.offset_ranges(t).unwrap_or_default();
        out.lock().unwrap().push((t, records, ranges));
        Ok(())
    });
    seen
}

#[actix::test]
async fn each_batch_reads_what_was_appended_before_it_was_cut_and_commits_after() {
    within(async {
        let log = MemoryLog::default();
        log.append(0, &["a", "b"]);
        log.append(1, &["c"]);
        let ssc = context(2, 2);
        let direct = ssc.direct_stream(log.clone(), DirectOptions::default());
        let seen = collect(&direct);
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        log.append(1, &["d", "e"]);
        ssc.advance(1).await.unwrap();
        // Nothing new: empty ranges, an empty batch.
        ssc.advance(1).await.unwrap();
        log.append(0, &["f"]);
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();

        let seen = seen.lock().unwrap().clone();
        let records: Vec<Vec<String>> = seen.iter().map(|s| s.1.clone()).collect();
        assert_eq!(
            records,
            vec![
                strings(&["a", "b", "c"]),
                strings(&["d", "e"]),
                vec![],
                strings(&["f"])
            ]
        );
        let ranges: Vec<Vec<OffsetRange>> = seen.iter().map(|s| s.2.clone()).collect();
        let expected = vec![
            vec![range(0, 0, 2), range(1, 0, 1)],
            vec![range(0, 2, 2), range(1, 1, 3)],
            vec![range(0, 2, 2), range(1, 3, 3)],
            vec![range(0, 2, 3), range(1, 3, 3)],
        ];
        assert_eq!(ranges, expected);
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            (1..=4).map(batch_time).collect::<Vec<_>>()
        );
        // Committed once per batch, in order, after its output.
        assert_eq!(log.commits(), expected);
    })
    .await;
}

/// Sorted copies of each batch's records.
fn sorted_batches<T: Ord + Clone>(collector: &BatchCollector<T>) -> Vec<(Time, Vec<T>)> {
    collector
        .timed_batches()
        .into_iter()
        .map(|(t, mut records)| {
            records.sort();
            (t, records)
        })
        .collect()
}

#[actix::test]
async fn with_skip_empty_batches_a_batch_without_records_has_no_rdd_and_operators_act_as_sparks() {
    within(async {
        let log = MemoryLog::default();
        log.append(0, &["a", "b"]);
        let ssc = context(2, 2);
        let direct = ssc.direct_stream(
            log.clone(),
            DirectOptions::default().skip_empty_batches(true),
        );
        let seen = collect(&direct);
        let batch = std::time::Duration::from_millis(BATCH_MS as u64);
        let windows = direct
            .stream()
            .window(batch * 2, batch)
            .unwrap()
            .collect_batches();
        // (count, how many times the update function saw the key)
        let state = direct
            .stream()
            .map(|w| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<(u64, u64)>| {
                let (n, calls) = s.unwrap_or((0, 0));
                Some((n + vs.iter().sum::<u64>(), calls + 1))
            })
            .collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        ssc.advance(1).await.unwrap(); // no records: no RDD
        log.append(0, &["c"]);
        ssc.advance(1).await.unwrap();
        ssc.advance(1).await.unwrap(); // no records: no RDD
        ssc.stop(StopMode::Graceful).await.unwrap();

        // The output operation ran for the batches with an RDD only.
        let seen = seen.lock().unwrap().clone();
        let outputs: Vec<(Time, Vec<String>)> = seen.iter().map(|s| (s.0, s.1.clone())).collect();
        assert_eq!(
            outputs,
            vec![
                (batch_time(1), strings(&["a", "b"])),
                (batch_time(3), strings(&["c"]))
            ]
        );
        // Every batch's ranges were still committed, the empty ones too.
        assert_eq!(
            log.commits(),
            vec![
                vec![range(0, 0, 2)],
                vec![range(0, 2, 2)],
                vec![range(0, 2, 3)],
                vec![range(0, 3, 3)]
            ]
        );
        // A window leaves the missing batches out (Spark's `slice`).
        assert_eq!(
            sorted_batches(&windows),
            vec![
                (batch_time(1), strings(&["a", "b"])),
                (batch_time(2), strings(&["a", "b"])),
                (batch_time(3), strings(&["c"])),
                (batch_time(4), strings(&["c"]))
            ]
        );
        // update_state_by_key calls its function for every key in every batch, with no
        // values where the input had no RDD (Spark's StateDStream).
        let pair = |w: &str, n: u64, calls: u64| (w.to_string(), (n, calls));
        assert_eq!(
            sorted_batches(&state),
            vec![
                (batch_time(1), vec![pair("a", 1, 1), pair("b", 1, 1)]),
                (batch_time(2), vec![pair("a", 1, 2), pair("b", 1, 2)]),
                (
                    batch_time(3),
                    vec![pair("a", 1, 3), pair("b", 1, 3), pair("c", 1, 1)]
                ),
                (
                    batch_time(4),
                    vec![pair("a", 1, 4), pair("b", 1, 4), pair("c", 1, 2)]
                ),
            ]
        );
    })
    .await;
}

fn strings(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[actix::test]
async fn a_rate_cap_per_partition_spreads_a_backlog_over_batches() {
    within(async {
        let log = MemoryLog::default();
        let records: Vec<String> = (0..25).map(|i| format!("r{i:02}")).collect();
        log.append(0, &records.iter().map(String::as_str).collect::<Vec<_>>());
        let ssc = context(2, 2);
        // 100 ms batches at 100 records/s per partition: 10 records per batch.
        let direct = ssc.direct_stream(
            log.clone(),
            DirectOptions::default().max_rate_per_partition(100.0),
        );
        let seen = collect(&direct);
        ssc.start().await.unwrap();
        ssc.advance(4).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let counts: Vec<u64> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.2.iter().map(OffsetRange::count).sum())
            .collect();
        assert_eq!(counts, vec![10, 10, 5, 0]);
        let all: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .flat_map(|s| s.1.clone())
            .collect();
        assert_eq!(sorted(all), records, "every record once");
    })
    .await;
}

#[actix::test]
async fn a_failed_output_commits_nothing_for_its_batch() {
    within(async {
        let log = MemoryLog::default();
        log.append(0, &["a"]);
        let ssc = context(1, 1);
        let direct = ssc.direct_stream(log.clone(), DirectOptions::default());
        direct.stream().foreach_batch(|t, _| {
            assert!(t != batch_time(1), "fails on purpose");
        });
        ssc.start().await.unwrap();
        assert!(ssc.advance(1).await.is_err(), "batch 1's output fails");
        log.append(0, &["b"]);
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(log.commits(), vec![vec![range(0, 1, 2)]]);
    })
    .await;
}

#[actix::test]
async fn a_new_partition_is_read_and_a_gone_one_fails_the_batch_naming_it() {
    within(async {
        let log = MemoryLog::default();
        log.append(0, &["a"]);
        let ssc = context(2, 2);
        let direct = ssc.direct_stream(log.clone(), DirectOptions::default());
        let seen = collect(&direct);
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        log.append(3, &["x", "y"]);
        ssc.advance(1).await.unwrap();
        log.remove_partition(0);
        let error = ssc.advance(1).await.expect_err("partition 0 is gone");
        let message = error.to_string();
        assert!(
            message.contains("words/0") && message.contains("gone"),
            "{message}"
        );
        ssc.stop(StopMode::Now).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen[1].1, strings(&["x", "y"]));
        assert_eq!(seen[1].2, vec![range(0, 1, 1), range(3, 0, 2)]);
    })
    .await;
}

#[actix::test]
async fn a_range_no_longer_on_the_source_stops_the_context_naming_it() {
    within(async {
        let log = MemoryLog::default();
        log.append(0, &["a", "b"]);
        *log.retained_from.lock().unwrap() = 1;
        let ssc = context(1, 1);
        let direct = ssc.direct_stream(log.clone(), DirectOptions::default());
        direct.stream().count().foreach_batch(|_, _| {});
        ssc.start().await.unwrap();
        let _ = ssc.advance(1).await;
        let error = ssc
            .await_termination()
            .await
            .expect_err("stopped with the error");
        let message = error.to_string();
        assert!(
            message.contains("words/0 offsets 0..2") && message.contains("past retention"),
            "{message}"
        );
        assert!(log.commits().is_empty());
    })
    .await;
}

/// The running word count over the log, collecting each batch's state.
fn running_count(
    ssc: &StreamingContext,
    log: &MemoryLog,
    out: &Arc<Mutex<Option<BatchCollector<(String, u64)>>>>,
) -> Result<()> {
    let state = ssc
        .direct_stream(
            log.clone(),
            DirectOptions::default().max_rate_per_partition(30.0),
        )
        .stream()
        .map(|w| (w, 1u64))
        .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
            Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
        });
    *out.lock().unwrap() = Some(state.collect_batches());
    Ok(())
}

#[actix::test]
async fn a_restarted_program_reads_each_offset_once() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let log = MemoryLog::default();
        let words: Vec<String> = (0..40).map(|i| format!("w{}", i % 7)).collect();
        let (first, second) = words.split_at(25);
        log.append(0, &first.iter().map(String::as_str).collect::<Vec<_>>());
        log.append(1, &second.iter().map(String::as_str).collect::<Vec<_>>());
        // Three records per partition per 100 ms batch: 9 batches to read all 40 words.
        // The first run reads 4 batches and stops; its last batch's ranges are checkpointed.
        let out = Arc::new(Mutex::new(None));
        let ssc = StreamingContext::get_or_create(dir.path(), config(2, 2), |ssc| {
            running_count(ssc, &log, &out)
        })
        .unwrap();
        ssc.start().await.unwrap();
        ssc.advance(4).await.unwrap();
        ssc.stop(StopMode::Now).await.unwrap();
        drop(ssc);

        let out = Arc::new(Mutex::new(None));
        let ssc = StreamingContext::get_or_create(dir.path(), config(2, 2), |ssc| {
            running_count(ssc, &log, &out)
        })
        .unwrap();
        assert_eq!(ssc.restored_batch(), Some(batch_time(4)));
        ssc.start().await.unwrap();
        ssc.advance(6).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let last = out.lock().unwrap().take().unwrap().batches().pop().unwrap();
        let mut expected = BTreeMap::new();
        for w in &words {
            *expected.entry(w.clone()).or_insert(0u64) += 1;
        }
        assert_eq!(sorted(last), expected.into_iter().collect::<Vec<_>>());
    })
    .await;
}

/// A context on `dir` (created, or restored from its checkpoint) whose direct stream reads
/// `log`, and what each of its batches saw.
fn checkpointed_direct(dir: &std::path::Path, log: &MemoryLog) -> (StreamingContext, Seen) {
    let slot: Arc<Mutex<Option<Seen>>> = Arc::default();
    let (log, set) = (log.clone(), slot.clone());
    let ssc = StreamingContext::get_or_create(dir, config(2, 2), move |ssc| {
        let direct = ssc.direct_stream(log.clone(), DirectOptions::default());
        *set.lock().unwrap() = Some(collect(&direct));
        Ok(())
    })
    .unwrap();
    let seen = slot.lock().unwrap().take().unwrap();
    (ssc, seen)
}

/// Makes the newest metadata checkpoint in `dir` unreadable, as if the process had been
/// killed after the batch's outputs ran and before its checkpoint was complete.
fn tear_newest_metadata_checkpoint(dir: &std::path::Path) {
    use rivulet::framework::checkpoint::{CheckpointStore, Tree};
    let store = rivulet::actors::SledCheckpointStore::open(dir).unwrap();
    let keys = store.keys(Tree::Meta, b"meta/").unwrap();
    let newest = keys.last().unwrap();
    let mut value = store.get(Tree::Meta, newest).unwrap().unwrap();
    value.truncate(value.len() - 3);
    store.put(Tree::Meta, newest, &value).unwrap();
    store.flush().unwrap();
}

#[actix::test]
async fn a_batch_killed_before_its_checkpoint_is_recomputed_over_the_ranges_its_outputs_saw() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let log = MemoryLog::default();
        log.append(0, &["a", "b", "c"]);
        log.append(1, &["d"]);
        // The first run: batch 1 reads what is there, batch 2 what was appended after it.
        let (ssc, first) = checkpointed_direct(dir.path(), &log);
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        log.append(0, &["e", "f"]);
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Now).await.unwrap();
        drop(ssc);
        let first = first.lock().unwrap().clone();
        assert_eq!(first[1].2, vec![range(0, 3, 5), range(1, 1, 1)]);

        // Batch 2's outputs ran, its checkpoint is lost; meanwhile the log grew.
        tear_newest_metadata_checkpoint(dir.path());
        log.append(0, &["g"]);
        log.append(1, &["h", "i"]);
        let (ssc, second) = checkpointed_direct(dir.path(), &log);
        assert_eq!(ssc.restored_batch(), Some(batch_time(1)));
        ssc.start().await.unwrap();
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let second = second.lock().unwrap().clone();
        // Batch 2 again, over exactly the ranges (and records) its outputs saw before the
        // kill; batch 3 reads everything appended since, once.
        assert_eq!(second[0].0, batch_time(2));
        assert_eq!((&second[0].1, &second[0].2), (&first[1].1, &first[1].2));
        assert_eq!(second[1].0, batch_time(3));
        assert_eq!(second[1].1, strings(&["g", "h", "i"]));
        assert_eq!(second[1].2, vec![range(0, 5, 6), range(1, 1, 3)]);
    })
    .await;
}

#[actix::test]
async fn a_restore_that_falls_back_a_checkpoint_still_finds_every_batch_in_the_input_cut() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let log = MemoryLog::default();
        // The first run: batches 1 and 2 complete; batch 3's input cut is written, then its
        // read fails and the context stops before batch 3's checkpoint.
        let (ssc, first) = checkpointed_direct(dir.path(), &log);
        ssc.start().await.unwrap();
        log.append(0, &["a", "b"]);
        ssc.advance(1).await.unwrap();
        log.append(0, &["c"]);
        ssc.advance(1).await.unwrap();
        log.append(0, &["d"]);
        *log.retained_from.lock().unwrap() = 100;
        let _ = ssc.advance(1).await;
        ssc.await_termination()
            .await
            .expect_err("batch 3's read failed");
        drop(ssc);
        let first: Vec<Vec<String>> = first.lock().unwrap().iter().map(|b| b.1.clone()).collect();
        assert_eq!(first[..2], [strings(&["a", "b"]), strings(&["c"])]);

        // Batch 2's checkpoint is damaged too: the restart falls back to batch 1's, and the
        // input cut of batch 3 must still hold batch 2's range.
        tear_newest_metadata_checkpoint(dir.path());
        *log.retained_from.lock().unwrap() = 0;
        log.append(0, &["e"]);
        let (ssc, second) = checkpointed_direct(dir.path(), &log);
        assert_eq!(ssc.restored_batch(), Some(batch_time(1)));
        ssc.start().await.unwrap();
        ssc.advance(3).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let batches = second.lock().unwrap().clone();
        assert_eq!(
            batches,
            vec![
                (batch_time(2), strings(&["c"]), vec![range(0, 2, 3)]),
                (batch_time(3), strings(&["d"]), vec![range(0, 3, 4)]),
                (batch_time(4), strings(&["e"]), vec![range(0, 4, 5)]),
            ]
        );
    })
    .await;
}

#[actix::test]
async fn the_status_api_lists_each_batchs_offset_ranges() {
    within(async {
        let log = MemoryLog::default();
        log.append(0, &["a", "b"]);
        log.append(1, &["c"]);
        let ssc = StreamingContext::new(config(2, 2).ui_address("127.0.0.1:0")).unwrap();
        ssc.direct_stream(log.clone(), DirectOptions::default())
            .stream()
            .count()
            .foreach_batch(|_, _| {});
        ssc.start().await.unwrap();
        ssc.advance(2).await.unwrap();
        let api = format!("{}api/v1/streaming/batches", ssc.ui_url().unwrap());
        let (first, second) = tokio::task::spawn_blocking(move || {
            ui_support::poll_json(&format!("{api}/200"), |b| b["status"] == "COMPLETED");
            (
                ui_support::get_json(&format!("{api}/100"), 200),
                ui_support::get_json(&format!("{api}/200"), 200),
            )
        })
        .await
        .unwrap();
        let input = &first["inputs"][0];
        assert_eq!(input["name"], "memory log", "{first}");
        assert_eq!(input["records"], 3, "{first}");
        assert_eq!(
            input["splits"],
            serde_json::json!(["words/0 offsets 0..2", "words/1 offsets 0..1"]),
            "{first}"
        );
        assert_eq!(first["inputSize"], 3, "{first}");
        assert_eq!(
            second["inputs"][0]["splits"],
            serde_json::json!(["words/0 offsets 2..2", "words/1 offsets 1..1"]),
            "{second}"
        );
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await;
}

#[actix::test]
async fn backpressure_splits_its_rate_over_partitions_by_lag() {
    within(async {
        for (max_per_partition, expected) in [
            (None, vec![range(0, 0, 30), range(1, 0, 10)]),
            (Some(200.0), vec![range(0, 0, 20), range(1, 0, 10)]),
        ] {
            let log = MemoryLog::default();
            let records: Vec<String> = (0..30_000).map(|i| format!("r{i}")).collect();
            let refs: Vec<&str> = records.iter().map(String::as_str).collect();
            log.append(0, &refs[..300]);
            log.append(1, &refs[..100]);
            // 400 records/s over 100 ms batches: 40 records in the first batch, 3 to 1 as
            // the partitions' lags (300 and 100), each at most its own maximum.
            let ssc = StreamingContext::new(
                config(2, 2)
                    .backpressure(true)
                    .backpressure_initial_rate(400.0),
            )
            .unwrap();
            let options = match max_per_partition {
                Some(m) => DirectOptions::default().max_rate_per_partition(m),
                None => DirectOptions::default(),
            };
            let direct = ssc.direct_stream(log.clone(), options);
            let seen = collect(&direct);
            ssc.start().await.unwrap();
            ssc.advance(1).await.unwrap();
            // A backlog for the estimator: the batches read its rate, which follows how fast
            // the records are processed (far more than 400 a second here).
            log.append(0, &refs[300..]);
            ssc.advance(5).await.unwrap();
            ssc.stop(StopMode::Now).await.unwrap();
            let seen = seen.lock().unwrap().clone();
            assert_eq!(seen[0].2, expected, "max {max_per_partition:?}");
            let read = |b: &(Time, Vec<String>, Vec<OffsetRange>)| -> u64 {
                b.2.iter().map(OffsetRange::count).sum()
            };
            assert_eq!(seen[0].1.len() as u64, read(&seen[0]));
            if max_per_partition.is_none() {
                assert!(
                    seen[1..].iter().any(|b| read(b) > 40),
                    "the estimator raised the rate: {:?}",
                    seen.iter().map(read).collect::<Vec<_>>()
                );
            }
        }
    })
    .await;
}
