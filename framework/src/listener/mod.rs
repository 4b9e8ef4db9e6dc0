//! Streaming listener events (Spark: `StreamingListener`, `BatchInfo`,
//! `OutputOperationInfo`, `ReceiverInfo`). The runtime calls listeners on its coordinator,
//! in event order; a listener must return quickly and never block.

use std::time::{Duration, SystemTime};

use crate::block::StreamId;
use crate::receiver::ReceiverMetrics;
use crate::time::Time;

mod event;

pub use self::event::{EventForwarder, StreamingEvent};

/// One batch, as known when an event about it is sent.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchInfo {
    /// The batch time.
    pub batch_time: Time,
    /// Records of the batch, over all input streams. Receiver-fed and queue streams
    /// (`queue_stream`) count from the start (their blocks and queued batches are known
    /// when the batch is cut); polled inputs (such as `text_file_stream`) are read by the
    /// batch's tasks, so their records are added when the batch completes: in
    /// `on_batch_completed` this is every input's, in `on_batch_submitted` and
    /// `on_batch_started` the receivers' and queues' only (see [`PolledInputInfo`]).
    pub num_records: usize,
    /// Records received in the batch per receiver-fed input stream, for streams that sent
    /// blocks (Spark: `BatchInfo.streamIdToInputInfo`). Polled inputs are not in it: see
    /// [`StreamingListener::on_polled_input`].
    pub stream_records: std::collections::BTreeMap<StreamId, usize>,
    /// When the batch's jobs were generated (wall clock).
    pub submission_time: SystemTime,
    /// From submission to the start of its first job (waiting for earlier batches).
    pub scheduling_delay: Option<Duration>,
    /// From the start of its first job to the end of its last.
    pub processing_delay: Option<Duration>,
    /// Each failed output operation of the batch: its operator and the error.
    pub failures: Vec<(String, String)>,
    /// The output operations the batch runs (Spark: `outputOperationInfos.size`): one per
    /// registered output operation whose jobs were generated for this batch.
    pub num_output_ops: usize,
}

impl BatchInfo {
    /// Scheduling plus processing delay (Spark: `totalDelay`).
    pub fn total_delay(&self) -> Option<Duration> {
        Some(self.scheduling_delay? + self.processing_delay?)
    }

    /// Whether every output operation of the batch succeeded.
    pub fn succeeded(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One output operation's run for one batch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputOperationInfo {
    /// The batch time.
    pub batch_time: Time,
    /// The output's index in registration order.
    pub id: usize,
    /// The operator and its call site, e.g. `print at src/main.rs:20:5`.
    pub name: String,
    /// When it started (wall clock; Spark: `startTime`); it ended at `start_time + duration`.
    pub start_time: SystemTime,
    /// How long it ran.
    pub duration: Duration,
    /// The error, if it failed.
    pub failure: Option<String>,
}

/// A receiver's state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiverInfo {
    /// The input stream it feeds.
    pub stream: StreamId,
    /// The receiver's name.
    pub name: String,
    /// Whether it is running.
    pub active: bool,
    /// The last error it reported.
    pub last_error: Option<String>,
    /// Its counters.
    pub metrics: ReceiverMetrics,
}

/// One stage of a job as it ran (Spark: `StageInfo`): a shuffle map stage or the result
/// stage.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StageInfo {
    /// The stage's id within its job.
    pub id: u32,
    /// `"shuffle map"` or `"result"`.
    pub kind: String,
    /// The operator the stage computes and its call site.
    pub operator: String,
    /// Partitions the stage had to compute (its tasks).
    pub tasks: usize,
    /// Task copies launched: tasks, retries, reruns after executor loss and speculative
    /// copies.
    pub launched: usize,
    /// Failed attempts that were retried.
    pub retries: usize,
    /// Speculative copies launched for slow tasks.
    pub speculative: usize,
    /// How long the stage ran.
    pub duration: Duration,
}

/// A job (one RDD action) as it ran (Spark: `JobInfo` in the listener's `SparkListenerJobEnd`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobInfo {
    /// The job's id, unique within the process (the scheduler's [`JobId`](crate::scheduler::JobId)).
    pub id: u64,
    /// The output operation (its index, as [`OutputOperationInfo::id`]) whose run submitted
    /// the job, if any.
    pub output_op: Option<usize>,
    /// The batch whose output operation ran the job, if any.
    pub batch_time: Option<Time>,
    /// The action and its call site, e.g. `collect at src/main.rs:12`.
    pub operator: String,
    /// The stages that ran, in order (stages whose outputs existed are not listed).
    pub stages: Vec<StageInfo>,
    /// How long the job ran.
    pub duration: Duration,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

/// An input a polled input did not read (a file that vanished, a directory, a FIFO, a
/// dangling symlink, a permission error, a file older than the remember window).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SkippedSplit {
    /// What was not read, e.g. the file's path.
    pub split: String,
    /// Why, e.g. `is a directory` or `No such file or directory (os error 2)`.
    pub reason: String,
}

/// What a polled input (one without a receiver, such as `text_file_stream`) read and lost
/// in one batch, sent by [`StreamingListener::on_polled_input`] when the batch completes
/// (Spark: the `StreamInputInfo` of `FileInputDStream`, whose record count is always 0 and
/// whose metadata lists the files; here the lines are counted).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PolledInputInfo {
    /// The batch time.
    pub batch_time: Time,
    /// The input DStream's id (`DStream::id`; not a receiver's `StreamId`).
    pub stream: u32,
    /// The source's name, e.g. `text files in /data/in`.
    pub name: String,
    /// Splits (files) the batch took, skipped ones included.
    pub splits: usize,
    /// Those splits as the source names them, in partition order: file paths, or offset
    /// ranges such as `events/0 offsets 0..500` (Spark: the `Description` of a batch's
    /// `StreamInputInfo`, which lists a file stream's files and a Kafka stream's ranges).
    #[serde(default)]
    pub split_names: Vec<String>,
    /// Records (lines) read from them. A split read more than once (a retried task, a
    /// partition recomputed after an executor loss) counts once.
    pub records: usize,
    /// The splits that were not read, with the reason, in name order; each is also logged
    /// once at WARN.
    pub skipped: Vec<SkippedSplit>,
    /// The error that failed the batch under `UnreadablePolicy::Fail` (the context stops
    /// with it).
    pub failure: Option<String>,
}

/// Receives streaming events (Spark: `StreamingListener`). All methods default to nothing.
pub trait StreamingListener: Send + 'static {
    /// A batch's jobs were generated.
    fn on_batch_submitted(&mut self, _batch: &BatchInfo) {}
    /// A batch's first job started.
    fn on_batch_started(&mut self, _batch: &BatchInfo) {}
    /// A batch's jobs all ended (see [`BatchInfo::failures`]).
    fn on_batch_completed(&mut self, _batch: &BatchInfo) {}
    /// A polled input's report of a completed batch: the records it read and the inputs it
    /// skipped, with reasons. Sent once per polled input and batch, just before
    /// [`on_batch_completed`](Self::on_batch_completed).
    fn on_polled_input(&mut self, _input: &PolledInputInfo) {}
    /// A job (an RDD action of an output operation) ended, with its stages.
    fn on_job_completed(&mut self, _job: &JobInfo) {}
    /// A stateful or windowed stream wrote a data checkpoint (with its key count).
    fn on_data_checkpoint(&mut self, _checkpoint: &crate::checkpoint::DataCheckpoint) {}
    /// The checkpoint store's size and live bytes after a batch's metadata checkpoint (with a
    /// checkpoint directory: the directory's bytes on disk, and how often it compacted).
    fn on_checkpoint_store(&mut self, _stats: &crate::checkpoint::StoreStats) {}
    /// An output operation of a batch ended.
    fn on_output_operation_completed(&mut self, _output: &OutputOperationInfo) {}
    /// A receiver started (also after a restart).
    fn on_receiver_started(&mut self, _receiver: &ReceiverInfo) {}
    /// A receiver failed; it is restarted unless its restart limit was reached.
    fn on_receiver_error(&mut self, _receiver: &ReceiverInfo) {}
    /// A receiver stopped for good.
    fn on_receiver_stopped(&mut self, _receiver: &ReceiverInfo) {}
    /// A receiver truncated or dropped input since its last report (see
    /// [`ReceiverMetrics::lost_input`]); its metrics hold the totals so far. Sent at most
    /// once per second per receiver; the final totals also come with
    /// [`on_receiver_stopped`](Self::on_receiver_stopped).
    fn on_receiver_input_lost(&mut self, _receiver: &ReceiverInfo) {}
    /// Rate control set the rate limit of input stream `stream` to `records_per_sec` (`None`:
    /// no limit); sent at start and after each new estimate.
    fn on_receiver_rate_limit(&mut self, _stream: StreamId, _records_per_sec: Option<f64>) {}
}
