//! The Prometheus metrics behind `/metrics`, kept with `prometheus-client` and encoded on
//! each scrape in OpenMetrics text (asked for with `Accept: application/openmetrics-text`)
//! or, by default, the Prometheus text format 0.0.4 that `promtool check metrics` and older
//! scrapers read ([`to_prometheus_text`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use rivulet_framework::block::StreamId;
use rivulet_framework::checkpoint::StoreStats;
use rivulet_framework::listener::BatchInfo;
use rivulet_framework::scheduler::SchedulerCounters;

/// A receiver's labels: its stream id and its kind.
type ReceiverLabels = Vec<(String, String)>;

/// `stream` (its id) and `receiver`: the first word of its name (`socket` for
/// `socket 127.0.0.1:9999`), so that a series does not change with a port picked at random
/// each run; the full name is on the status page and in the JSON API.
fn receiver_labels(stream: StreamId, name: &str) -> ReceiverLabels {
    let kind = name.split_whitespace().next().unwrap_or(name);
    vec![
        ("stream".to_string(), stream.to_string()),
        ("receiver".to_string(), kind.to_string()),
    ]
}

/// Delay histograms: 1 ms to about 65 s, doubling.
fn delay_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The checkpoint store's metrics, from its last [`StoreStats`]: none before the first
/// metadata checkpoint, and no size for a store that has none (in memory), rather than a 0
/// that reads as an empty directory.
#[derive(Debug, Default)]
struct CheckpointStoreCollector {
    last: Arc<Mutex<Option<StoreStats>>>,
}

/// Writes one metric of `value` under `name` with `help` (the registry adds the prefix).
fn encode_one(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    value.encode(encoder.encode_descriptor(name, help, None, value.metric_type())?)
}

impl Collector for CheckpointStoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(stats) = *self.last.lock() else {
            return Ok(());
        };
        let e = &mut encoder;
        if let Some(size) = stats.size_bytes {
            encode_one(
                e,
                "checkpoint_store_size_bytes",
                "Bytes the checkpoint directory takes on disk, after the last metadata checkpoint",
                &ConstGauge::new(size),
            )?;
        }
        encode_one(
            e,
            "checkpoint_store_live_bytes",
            "Bytes of the keys and values the checkpoint store holds, after the last metadata checkpoint",
            &ConstGauge::new(stats.live_bytes),
        )?;
        encode_one(
            e,
            "checkpoint_store_compactions",
            "Compactions of the checkpoint store since it was opened",
            &ConstCounter::new(stats.compactions),
        )?;
        if let Some(d) = stats.last_compaction {
            encode_one(
                e,
                "checkpoint_store_last_compaction_seconds",
                "Time the checkpoint store's last compaction took",
                &ConstGauge::new(d.as_secs_f64()),
            )?;
        }
        Ok(())
    }
}

/// Every metric `/metrics` serves (names get the `rivulet_` prefix; counters `_total`).
pub(crate) struct Metrics {
    registry: Registry,
    batches_completed: Counter,
    batches_failed: Counter,
    output_operations_failed: Counter,
    receiver_records: Family<ReceiverLabels, Counter>,
    receiver_restarts: Family<ReceiverLabels, Counter>,
    receiver_errors: Family<ReceiverLabels, Counter>,
    state_keys: Family<Vec<(String, String)>, Gauge>,
    scheduling_delay: Histogram,
    processing_time: Histogram,
    total_delay: Histogram,
    executors_lost: Counter,
    tasks_rerun_after_loss: Counter,
    stages_resubmitted: Counter,
    speculative_tasks: Counter,
    task_retries: Counter,
    stages_pipelined: Counter,
    partitions_recovered: Counter,
    events_dropped: Counter,
    /// Batches submitted and not yet completed (Spark's `waitingBatches` plus the running).
    batches_waiting: Gauge,
    last_scheduling_delay: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_processing_time: Gauge<f64, std::sync::atomic::AtomicU64>,
    last_total_delay: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// What the checkpoint store reported last (encoded by a [`CheckpointStoreCollector`]).
    checkpoint_store: Arc<Mutex<Option<StoreStats>>>,
    scheduler: Arc<SchedulerCounters>,
    dropped: Arc<AtomicU64>,
    /// Serialises the copy of the scheduler's counters into the registry at scrape time.
    scrape: Mutex<()>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics reading the scheduler's `counters` and the count of `dropped` listener events.
    pub(crate) fn new(scheduler: Arc<SchedulerCounters>, dropped: Arc<AtomicU64>) -> Metrics {
        let mut registry = Registry::with_prefix("rivulet");
        let m = Metrics {
            registry: Registry::default(),
            batches_completed: Counter::default(),
            batches_failed: Counter::default(),
            output_operations_failed: Counter::default(),
            receiver_records: Family::default(),
            receiver_restarts: Family::default(),
            receiver_errors: Family::default(),
            state_keys: Family::default(),
            scheduling_delay: delay_histogram(),
            processing_time: delay_histogram(),
            total_delay: delay_histogram(),
            executors_lost: Counter::default(),
            tasks_rerun_after_loss: Counter::default(),
            stages_resubmitted: Counter::default(),
            speculative_tasks: Counter::default(),
            task_retries: Counter::default(),
            stages_pipelined: Counter::default(),
            partitions_recovered: Counter::default(),
            events_dropped: Counter::default(),
            batches_waiting: Gauge::default(),
            last_scheduling_delay: Gauge::default(),
            last_processing_time: Gauge::default(),
            last_total_delay: Gauge::default(),
            checkpoint_store: Arc::default(),
            scheduler,
            dropped,
            scrape: Mutex::new(()),
        };
        let r = &mut registry;
        r.register(
            "batches_completed",
            "Batches whose output operations all succeeded",
            m.batches_completed.clone(),
        );
        r.register(
            "batches_failed",
            "Batches with at least one failed output operation",
            m.batches_failed.clone(),
        );
        r.register(
            "output_operations_failed",
            "Output operation runs that failed",
            m.output_operations_failed.clone(),
        );
        r.register(
            "receiver_records",
            "Records received per receiver, counted when their batch completes",
            m.receiver_records.clone(),
        );
        r.register(
            "receiver_restarts",
            "Receiver restarts after a failure",
            m.receiver_restarts.clone(),
        );
        r.register(
            "receiver_errors",
            "Receiver failures reported to the supervisor",
            m.receiver_errors.clone(),
        );
        r.register(
            "state_keys",
            "Keys in each stateful or windowed stream's state, at its last data checkpoint",
            m.state_keys.clone(),
        );
        r.register(
            "batch_scheduling_delay_seconds",
            "Time a batch waited for earlier batches before its first job started",
            m.scheduling_delay.clone(),
        );
        r.register(
            "batch_processing_time_seconds",
            "Time from a batch's first job start to its last job end",
            m.processing_time.clone(),
        );
        r.register(
            "batch_total_delay_seconds",
            "Scheduling delay plus processing time per batch",
            m.total_delay.clone(),
        );
        r.register(
            "executors_lost",
            "Executors lost and replaced (executor restarts)",
            m.executors_lost.clone(),
        );
        r.register(
            "tasks_rerun_after_loss",
            "Tasks relaunched because their executor was lost",
            m.tasks_rerun_after_loss.clone(),
        );
        r.register(
            "stages_resubmitted",
            "Map stages resubmitted for lost shuffle outputs",
            m.stages_resubmitted.clone(),
        );
        r.register(
            "speculative_tasks",
            "Speculative task copies launched",
            m.speculative_tasks.clone(),
        );
        r.register(
            "task_retries",
            "Failed task attempts that were retried",
            m.task_retries.clone(),
        );
        r.register(
            "stages_pipelined",
            "Map stages of a queued batch run ahead while an earlier batch ran",
            m.stages_pipelined.clone(),
        );
        r.register(
            "partitions_recovered",
            "Lost cached partitions of earlier batches recovered before the batch reading them",
            m.partitions_recovered.clone(),
        );
        r.register(
            "ui_events_dropped",
            "Listener events the status server dropped because its queue was full",
            m.events_dropped.clone(),
        );
        r.register(
            "batches_waiting",
            "Batches submitted and not yet completed (queued or running); rising means falling behind",
            m.batches_waiting.clone(),
        );
        r.register(
            "last_batch_scheduling_delay_seconds",
            "Scheduling delay of the last completed batch",
            m.last_scheduling_delay.clone(),
        );
        r.register(
            "last_batch_processing_time_seconds",
            "Processing time of the last completed batch",
            m.last_processing_time.clone(),
        );
        r.register(
            "last_batch_total_delay_seconds",
            "Total delay of the last completed batch; above the batch interval means falling behind",
            m.last_total_delay.clone(),
        );
        r.register_collector(Box::new(CheckpointStoreCollector {
            last: m.checkpoint_store.clone(),
        }));
        Metrics { registry, ..m }
    }

    /// A batch was submitted: one more waiting.
    pub(crate) fn batch_submitted(&self) {
        self.batches_waiting.inc();
    }

    pub(crate) fn batch_completed(&self, info: &BatchInfo) {
        if self.batches_waiting.get() > 0 {
            self.batches_waiting.dec();
        }
        if info.succeeded() {
            self.batches_completed.inc();
        } else {
            self.batches_failed.inc();
        }
        if let Some(d) = info.scheduling_delay {
            self.scheduling_delay.observe(d.as_secs_f64());
            self.last_scheduling_delay.set(d.as_secs_f64());
        }
        if let Some(d) = info.processing_delay {
            self.processing_time.observe(d.as_secs_f64());
            self.last_processing_time.set(d.as_secs_f64());
        }
        if let Some(d) = info.total_delay() {
            self.total_delay.observe(d.as_secs_f64());
            self.last_total_delay.set(d.as_secs_f64());
        }
    }

    pub(crate) fn state_keys(&self, stream: u32, keys: u64) {
        self.state_keys
            .get_or_create(&vec![("stream".to_string(), stream.to_string())])
            .set(i64::try_from(keys).unwrap_or(i64::MAX));
    }

    pub(crate) fn checkpoint_store(&self, stats: StoreStats) {
        *self.checkpoint_store.lock() = Some(stats);
    }

    pub(crate) fn output_failed(&self) {
        self.output_operations_failed.inc();
    }

    pub(crate) fn records(&self, stream: StreamId, name: &str, n: u64) {
        self.receiver_records
            .get_or_create(&receiver_labels(stream, name))
            .inc_by(n);
    }

    pub(crate) fn receiver_restarted(&self, stream: StreamId, name: &str) {
        self.receiver_restarts
            .get_or_create(&receiver_labels(stream, name))
            .inc();
    }

    pub(crate) fn receiver_failed(&self, stream: StreamId, name: &str) {
        self.receiver_errors
            .get_or_create(&receiver_labels(stream, name))
            .inc();
    }

    /// The metrics in OpenMetrics text.
    pub(crate) fn encode(&self) -> Result<String, std::fmt::Error> {
        {
            let _guard = self.scrape.lock();
            let s = self.scheduler.snapshot();
            let catch_up = |c: &Counter, now: u64| {
                let seen = c.get();
                if now > seen {
                    c.inc_by(now - seen);
                }
            };
            catch_up(&self.executors_lost, s.executors_lost);
            catch_up(&self.tasks_rerun_after_loss, s.tasks_rerun_after_loss);
            catch_up(&self.stages_resubmitted, s.stages_resubmitted);
            catch_up(&self.speculative_tasks, s.speculative_tasks);
            catch_up(&self.task_retries, s.task_retries);
            catch_up(&self.stages_pipelined, s.stages_pipelined);
            catch_up(&self.partitions_recovered, s.partitions_recovered);
            catch_up(&self.events_dropped, self.dropped.load(Ordering::Relaxed));
        }
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// OpenMetrics text (as `prometheus-client` writes it) in the Prometheus text format 0.0.4:
/// a counter family's `HELP` and `TYPE` name its samples (`x_total`, where OpenMetrics names
/// the family `x`), `unknown` is `untyped`, and the `# UNIT` and `# EOF` lines go. Samples,
/// labels and histograms are the same in both.
pub(crate) fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let descriptor = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match descriptor {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let name = if counters.contains(name) {
                    format!("{name}_total")
                } else {
                    name.to_string()
                };
                let tail = if prefix == "# TYPE " && tail == "unknown" {
                    "untyped"
                } else {
                    tail
                };
                out.push_str(&format!("{prefix}{name} {tail}\n"));
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receiver_is_labelled_by_its_stream_and_kind_not_its_address() {
        assert_eq!(
            receiver_labels(3, "socket 127.0.0.1:40123"),
            vec![
                ("stream".to_string(), "3".to_string()),
                ("receiver".to_string(), "socket".to_string())
            ]
        );
    }

    #[test]
    fn counters_are_named_by_their_samples_in_prometheus_text() {
        let open = "# HELP rivulet_batches_completed Batches.\n\
                    # TYPE rivulet_batches_completed counter\n\
                    rivulet_batches_completed_total 3\n\
                    # HELP rivulet_batches_waiting Waiting.\n\
                    # TYPE rivulet_batches_waiting gauge\n\
                    rivulet_batches_waiting 1\n\
                    # HELP rivulet_x_seconds X.\n\
                    # TYPE rivulet_x_seconds unknown\n\
                    # UNIT rivulet_x_seconds seconds\n\
                    rivulet_x_seconds 2\n\
                    # EOF\n";
        assert_eq!(
            to_prometheus_text(open),
            "# HELP rivulet_batches_completed_total Batches.\n\
             # TYPE rivulet_batches_completed_total counter\n\
             rivulet_batches_completed_total 3\n\
             # HELP rivulet_batches_waiting Waiting.\n\
             # TYPE rivulet_batches_waiting gauge\n\
             rivulet_batches_waiting 1\n\
             # HELP rivulet_x_seconds X.\n\
             # TYPE rivulet_x_seconds untyped\n\
             rivulet_x_seconds 2\n"
        );
    }

    #[test]
    fn every_family_has_help_and_type_and_waiting_batches_follow_the_events() {
        let m = Metrics::new(Arc::new(SchedulerCounters::default()), Arc::default());
        m.batch_submitted();
        m.batch_submitted();
        let info = BatchInfo {
            batch_time: rivulet_framework::time::Time::from_ms(1000),
            num_records: 1,
            stream_records: Default::default(),
            submission_time: std::time::SystemTime::now(),
            scheduling_delay: Some(std::time::Duration::from_millis(5)),
            processing_delay: Some(std::time::Duration::from_millis(20)),
            failures: Vec::new(),
            num_output_ops: 1,
        };
        m.batch_completed(&info);
        let text = to_prometheus_text(&m.encode().unwrap());
        assert!(text.contains("\nrivulet_batches_waiting 1\n"), "{text}");
        assert!(
            text.contains("\nrivulet_last_batch_processing_time_seconds 0.02\n"),
            "{text}"
        );
        // Every sample's family has its HELP and TYPE under the sample's own name.
        for sample in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let name = sample.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| {
                    name.strip_suffix(s)
                        .filter(|f| text.contains(&format!("# TYPE {f} histogram")))
                })
                .unwrap_or(name);
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family}: {text}"
            );
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}: {text}"
            );
        }
    }
}
