//! What the status server knows: the last `ui_retained_batches` batches, the receivers and
//! running totals, rebuilt from listener events on the server's own thread (Spark:
//! `StreamingJobProgressListener`). The coordinator only `try_send`s events into a bounded
//! channel, so a slow reader of this state never slows batches: when the channel is full,
//! events are dropped and counted.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use rivulet_framework::block::StreamId;
use rivulet_framework::checkpoint::StoreStats;
use rivulet_framework::dstream::GraphDescription;
use rivulet_framework::listener::{
    BatchInfo, JobInfo, OutputOperationInfo, PolledInputInfo, ReceiverInfo, SkippedSplit,
    StreamingEvent,
};
use rivulet_framework::time::Time;

use super::metrics::Metrics;

/// Events buffered between the coordinator and the status server's thread.
pub(crate) const EVENT_QUEUE: usize = 10_000;

/// Skipped inputs shown per polled input: the most recent ones.
pub(crate) const SKIPPED_SHOWN: usize = 10;

/// One polled input (such as a text file stream), as its per-batch reports told.
#[derive(Clone, Debug)]
pub(crate) struct PolledInputRecord {
    pub(crate) name: String,
    /// Records read, over the batches reported.
    pub(crate) records: u64,
    /// Splits (files) taken, skipped ones included.
    pub(crate) splits: u64,
    /// Splits skipped, over the batches reported.
    pub(crate) skipped: u64,
    /// The last [`SKIPPED_SHOWN`] skipped, oldest first, with their batch.
    pub(crate) last_skipped: std::collections::VecDeque<(Time, SkippedSplit)>,
    /// The failure that stopped the context under the `fail` policy.
    pub(crate) failure: Option<String>,
}

/// Where a batch stands (Spark's `BatchStatus`, plus `Failed` for a completed batch with a
/// failed output operation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchStatus {
    Queued,
    Processing,
    Completed,
    Failed,
}

impl BatchStatus {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BatchStatus::Queued => "QUEUED",
            BatchStatus::Processing => "PROCESSING",
            BatchStatus::Completed => "COMPLETED",
            BatchStatus::Failed => "FAILED",
        }
    }
}

/// One retained batch.
#[derive(Clone, Debug)]
pub(crate) struct BatchRecord {
    pub(crate) info: BatchInfo,
    pub(crate) status: BatchStatus,
    /// Its output operations that ended, by id.
    pub(crate) outputs: BTreeMap<usize, OutputOperationInfo>,
    /// The jobs its output operations ran, in the order they ended.
    pub(crate) jobs: Vec<JobInfo>,
    /// What each polled input read in it (files, offset ranges), once it completed.
    pub(crate) inputs: Vec<PolledInputInfo>,
}

/// One receiver, as its events told.
#[derive(Clone, Debug)]
pub(crate) struct ReceiverRecord {
    pub(crate) info: ReceiverInfo,
    /// Times it started; every start after the first is a restart.
    pub(crate) starts: u64,
    /// Errors it failed with (each followed by a restart unless past the limit).
    pub(crate) failures: u64,
    pub(crate) last_error_time: Option<SystemTime>,
    /// Records of its stream in batches so far.
    pub(crate) records_in_batches: u64,
}

/// The status server's view of the run.
#[derive(Debug)]
pub(crate) struct UiState {
    pub(crate) retained: usize,
    pub(crate) start_time: SystemTime,
    pub(crate) batch_interval: Duration,
    pub(crate) graph: GraphDescription,
    pub(crate) batches: BTreeMap<Time, BatchRecord>,
    pub(crate) receivers: BTreeMap<StreamId, ReceiverRecord>,
    /// The rate limit rate control set on each input stream (records/s; `None`: none).
    pub(crate) rate_limits: BTreeMap<StreamId, Option<f64>>,
    pub(crate) completed_total: u64,
    pub(crate) failed_total: u64,
    /// Records of the completed batches (Spark: `numProcessedRecords`).
    pub(crate) records_total: u64,
    /// Records of the batches that started (Spark: `numReceivedRecords`): counted when a
    /// batch starts, plus its polled inputs' records when it completes.
    pub(crate) received_total: u64,
    /// Records counted in `received_total` of each batch that started and has not
    /// completed (apart from `batches`, whose oldest may be dropped while still running).
    received_counted: BTreeMap<Time, usize>,
    /// The checkpoint store's size after the last metadata checkpoint (`None` before the
    /// first).
    pub(crate) checkpoint_store: Option<StoreStats>,
    /// Polled inputs by DStream id.
    pub(crate) polled_inputs: BTreeMap<u32, PolledInputRecord>,
}

impl UiState {
    pub(crate) fn new(retained: usize, batch_interval: Duration, graph: GraphDescription) -> Self {
        UiState {
            retained: retained.max(1),
            start_time: SystemTime::now(),
            batch_interval,
            graph,
            batches: BTreeMap::new(),
            receivers: BTreeMap::new(),
            rate_limits: BTreeMap::new(),
            completed_total: 0,
            failed_total: 0,
            records_total: 0,
            received_total: 0,
            received_counted: BTreeMap::new(),
            checkpoint_store: None,
            polled_inputs: BTreeMap::new(),
        }
    }

    /// The name shown for `stream`'s receiver.
    pub(crate) fn receiver_name(&self, stream: StreamId) -> String {
        self.receivers
            .get(&stream)
            .map_or_else(|| format!("stream-{stream}"), |r| r.info.name.clone())
    }

    fn upsert_batch(&mut self, info: BatchInfo, status: BatchStatus) {
        let t = info.batch_time;
        match self.batches.get_mut(&t) {
            Some(b) => {
                b.info = info;
                b.status = status;
            }
            None => {
                self.batches.insert(
                    t,
                    BatchRecord {
                        info,
                        status,
                        outputs: BTreeMap::new(),
                        jobs: Vec::new(),
                        inputs: Vec::new(),
                    },
                );
                while self.batches.len() > self.retained {
                    self.batches.pop_first();
                }
            }
        }
    }

    fn receiver(&mut self, info: ReceiverInfo) -> &mut ReceiverRecord {
        let r = self
            .receivers
            .entry(info.stream)
            .or_insert_with(|| ReceiverRecord {
                info: info.clone(),
                starts: 0,
                failures: 0,
                last_error_time: None,
                records_in_batches: 0,
            });
        r.info = info;
        r
    }

    /// Applies one event, which happened at `at` (wall clock), to the state and the metrics.
    pub(crate) fn apply(&mut self, event: StreamingEvent, at: SystemTime, metrics: &Metrics) {
        match event {
            StreamingEvent::BatchSubmitted(info) => {
                metrics.batch_submitted();
                self.upsert_batch(info, BatchStatus::Queued)
            }
            StreamingEvent::BatchStarted(info) => {
                let counted = self.received_counted.entry(info.batch_time).or_insert(0);
                self.received_total += info.num_records.saturating_sub(*counted) as u64;
                *counted = (*counted).max(info.num_records);
                self.upsert_batch(info, BatchStatus::Processing)
            }
            StreamingEvent::BatchCompleted(info) => {
                // A batch whose start was not seen (its event dropped) counts whole here.
                let counted = self.received_counted.remove(&info.batch_time).unwrap_or(0);
                self.received_total += info.num_records.saturating_sub(counted) as u64;
                let status = if info.succeeded() {
                    self.completed_total += 1;
                    BatchStatus::Completed
                } else {
                    self.failed_total += 1;
                    BatchStatus::Failed
                };
                self.records_total += info.num_records as u64;
                for (&stream, &n) in &info.stream_records {
                    let name = self.receiver_name(stream);
                    if let Some(r) = self.receivers.get_mut(&stream) {
                        r.records_in_batches += n as u64;
                    }
                    metrics.records(stream, &name, n as u64);
                }
                metrics.batch_completed(&info);
                self.upsert_batch(info, status);
            }
            StreamingEvent::OutputOperationCompleted(output) => {
                if output.failure.is_some() {
                    metrics.output_failed();
                }
                if let Some(b) = self.batches.get_mut(&output.batch_time) {
                    b.outputs.insert(output.id, output);
                }
            }
            StreamingEvent::ReceiverStarted(info) => {
                let r = self.receiver(info);
                r.starts += 1;
                if r.starts > 1 {
                    let (stream, name) = (r.info.stream, r.info.name.clone());
                    metrics.receiver_restarted(stream, &name);
                }
            }
            StreamingEvent::ReceiverError(info) => {
                let r = self.receiver(info);
                r.failures += 1;
                r.last_error_time = Some(at);
                let (stream, name) = (r.info.stream, r.info.name.clone());
                metrics.receiver_failed(stream, &name);
            }
            StreamingEvent::ReceiverInputLost(info) | StreamingEvent::ReceiverStopped(info) => {
                self.receiver(info);
            }
            StreamingEvent::ReceiverRateLimit {
                stream,
                records_per_sec: rate,
            } => {
                self.rate_limits.insert(stream, rate);
            }
            StreamingEvent::DataCheckpoint(c) => {
                if let Some(keys) = c.keys {
                    metrics.state_keys(c.stream, keys);
                }
            }
            StreamingEvent::CheckpointStore(stats) => {
                metrics.checkpoint_store(stats);
                self.checkpoint_store = Some(stats);
            }
            StreamingEvent::PolledInput(input) => {
                if let Some(b) = self.batches.get_mut(&input.batch_time) {
                    b.inputs.push(input.clone());
                }
                let r =
                    self.polled_inputs
                        .entry(input.stream)
                        .or_insert_with(|| PolledInputRecord {
                            name: input.name.clone(),
                            records: 0,
                            splits: 0,
                            skipped: 0,
                            last_skipped: std::collections::VecDeque::new(),
                            failure: None,
                        });
                r.records += input.records as u64;
                r.splits += input.splits as u64;
                r.skipped += input.skipped.len() as u64;
                for skipped in input.skipped {
                    r.last_skipped.push_back((input.batch_time, skipped));
                    if r.last_skipped.len() > SKIPPED_SHOWN {
                        r.last_skipped.pop_front();
                    }
                }
                if input.failure.is_some() {
                    r.failure = input.failure;
                }
            }
            StreamingEvent::JobCompleted(job) => {
                if let Some(b) = job.batch_time.and_then(|t| self.batches.get_mut(&t)) {
                    b.jobs.push(job);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use rivulet_framework::scheduler::SchedulerCounters;

    fn batch(ms: i64, failed: bool) -> BatchInfo {
        BatchInfo {
            batch_time: Time::from_ms(ms),
            num_records: 3,
            stream_records: BTreeMap::from([(0, 3)]),
            submission_time: SystemTime::now(),
            scheduling_delay: Some(Duration::from_millis(1)),
            processing_delay: Some(Duration::from_millis(2)),
            failures: if failed {
                vec![("print".into(), "boom".into())]
            } else {
                Vec::new()
            },
            num_output_ops: 1,
        }
    }

    #[test]
    fn keeps_the_newest_batches_and_counts_all() {
        let metrics = Metrics::new(Arc::new(SchedulerCounters::default()), Arc::default());
        let mut s = UiState::new(3, Duration::from_millis(100), GraphDescription::default());
        for i in 1..=10 {
            s.apply(
                StreamingEvent::BatchSubmitted(batch(i * 100, false)),
                SystemTime::now(),
                &metrics,
            );
            s.apply(
                StreamingEvent::BatchCompleted(batch(i * 100, i == 10)),
                SystemTime::now(),
                &metrics,
            );
        }
        let kept: Vec<i64> = s.batches.keys().map(|t| t.as_ms()).collect();
        assert_eq!(kept, vec![800, 900, 1000]);
        assert_eq!(
            (s.completed_total, s.failed_total, s.records_total),
            (9, 1, 30)
        );
        assert_eq!(s.batches[&Time::from_ms(1000)].status, BatchStatus::Failed);
        // No start seen: each batch's records are received as it completes.
        assert_eq!(s.received_total, 30);
    }

    #[test]
    fn received_records_count_at_the_start_and_polled_ones_at_completion() {
        let metrics = Metrics::new(Arc::new(SchedulerCounters::default()), Arc::default());
        // Retaining one batch: batch 100 is dropped from the view while it still runs.
        let mut s = UiState::new(1, Duration::from_millis(100), GraphDescription::default());
        let (mut b1, mut b2) = (batch(100, false), batch(200, false));
        s.apply(
            StreamingEvent::BatchSubmitted(b1.clone()),
            SystemTime::now(),
            &metrics,
        );
        s.apply(
            StreamingEvent::BatchStarted(b1.clone()),
            SystemTime::now(),
            &metrics,
        );
        s.apply(
            StreamingEvent::BatchSubmitted(b2.clone()),
            SystemTime::now(),
            &metrics,
        );
        assert_eq!((s.received_total, s.records_total), (3, 0));
        // Batch 100 completes with 2 records of a polled input besides its receiver's 3.
        b1.num_records += 2;
        s.apply(
            StreamingEvent::BatchCompleted(b1),
            SystemTime::now(),
            &metrics,
        );
        assert_eq!((s.received_total, s.records_total), (5, 5));
        s.apply(
            StreamingEvent::BatchStarted(b2.clone()),
            SystemTime::now(),
            &metrics,
        );
        b2.num_records += 1;
        s.apply(
            StreamingEvent::BatchCompleted(b2),
            SystemTime::now(),
            &metrics,
        );
        assert_eq!((s.received_total, s.records_total), (9, 9));
        assert!(s.received_counted.is_empty(), "nothing kept once completed");
    }

    #[test]
    fn polled_inputs_sum_records_and_keep_the_last_skipped() {
        let metrics = Metrics::new(Arc::new(SchedulerCounters::default()), Arc::default());
        let mut s = UiState::new(3, Duration::from_millis(100), GraphDescription::default());
        for i in 1..=12i64 {
            let skipped = (0..i % 3)
                .map(|k| SkippedSplit {
                    split: format!("/in/{i}-{k}"),
                    reason: "is a directory".into(),
                })
                .collect();
            let input = PolledInputInfo {
                batch_time: Time::from_ms(i * 100),
                stream: 0,
                name: "text files in /in".into(),
                splits: 2,
                split_names: vec![format!("/in/{i}-a"), format!("/in/{i}-b")],
                records: 5,
                skipped,
                failure: None,
            };
            s.apply(
                StreamingEvent::PolledInput(input),
                SystemTime::now(),
                &metrics,
            );
        }
        let r = &s.polled_inputs[&0];
        // i % 3 skipped per batch: 4 batches each of 0, 1 and 2.
        assert_eq!((r.records, r.splits, r.skipped), (60, 24, 12));
        assert_eq!(r.last_skipped.len(), SKIPPED_SHOWN);
        assert_eq!(r.last_skipped.back().unwrap().1.split, "/in/11-1");
        assert_eq!(r.last_skipped.front().unwrap().1.split, "/in/2-1");
    }

    #[test]
    fn the_checkpoint_store_shows_a_size_only_when_it_has_one() {
        let metrics = Metrics::new(Arc::new(SchedulerCounters::default()), Arc::default());
        let mut s = UiState::new(3, Duration::from_millis(100), GraphDescription::default());
        let text = metrics.encode().unwrap();
        assert!(
            !text.contains("checkpoint_store"),
            "nothing before the first: {text}"
        );

        let in_memory = StoreStats {
            live_bytes: 10,
            ..StoreStats::default()
        };
        s.apply(
            StreamingEvent::CheckpointStore(in_memory),
            SystemTime::now(),
            &metrics,
        );
        let text = metrics.encode().unwrap();
        assert!(!text.contains("checkpoint_store_size_bytes"), "{text}");
        assert!(!text.contains("last_compaction"), "{text}");
        assert!(
            text.contains("\nrivulet_checkpoint_store_live_bytes 10\n"),
            "{text}"
        );
        assert!(
            text.contains("\nrivulet_checkpoint_store_compactions_total 0\n"),
            "{text}"
        );

        let on_disk = StoreStats {
            size_bytes: Some(4096),
            live_bytes: 1000,
            compactions: 2,
            last_compaction: Some(Duration::from_millis(250)),
        };
        s.apply(
            StreamingEvent::CheckpointStore(on_disk),
            SystemTime::now(),
            &metrics,
        );
        let text = metrics.encode().unwrap();
        for line in [
            "# TYPE rivulet_checkpoint_store_size_bytes gauge",
            "rivulet_checkpoint_store_size_bytes 4096",
            "rivulet_checkpoint_store_live_bytes 1000",
            "# TYPE rivulet_checkpoint_store_compactions counter",
            "rivulet_checkpoint_store_compactions_total 2",
            "rivulet_checkpoint_store_last_compaction_seconds 0.25",
        ] {
            assert!(text.lines().any(|l| l == line), "{line:?} in {text}");
        }
        assert_eq!(s.checkpoint_store, Some(on_disk));
    }
}
