//! Errors of the data model and of running batches.
//!
//! [`Error`] is `Clone` (causes are kept as messages or `Arc`s) because one batch failure
//! reaches several places: the listener bus, `advance` and `await_termination`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::block::BlockId;
use crate::rdd::ShuffleId;
use crate::time::Time;

/// A boxed error from user code or a library (`Send + Sync`, so it can cross threads).
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A result with rivulet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in rivulet, from configuration to a batch's tasks.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `StreamingConfig` value is out of range; found by `StreamingContext::new`.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The DStream graph is not valid; found before the first batch.
    #[error("invalid DStream graph: {0}")]
    Graph(#[from] GraphError),
    /// A task failed on every attempt, so its job and batch failed.
    #[error("{}operator `{operator}` failed on partition {partition} after {attempts} attempt(s): {message}", at_batch(.batch_time))]
    Task {
        /// The batch whose job ran the task; `None` for jobs outside a batch.
        batch_time: Option<Time>,
        /// The operator that failed and where the program created it, e.g. `map at src/main.rs:12:10`.
        operator: String,
        /// The partition the task computed.
        partition: usize,
        /// How many attempts were made.
        attempts: u32,
        /// The panic message or error of the last attempt.
        message: String,
    },
    /// An output operation (`print`, `foreach_batch`, ...) failed outside its tasks, or the
    /// batch's RDD could not be generated for it.
    #[error("batch {batch_time}: output operation `{operator}` failed: {message}")]
    Output {
        /// The batch.
        batch_time: Time,
        /// The output operation and where the program created it.
        operator: String,
        /// The cause.
        message: String,
    },
    /// A DStream could not compute its RDD for a batch.
    #[error("batch {batch_time}: DStream `{stream}` could not compute its RDD: {message}")]
    Compute {
        /// The batch.
        batch_time: Time,
        /// The DStream's operator and call site.
        stream: String,
        /// The cause.
        message: String,
    },
    /// A shuffle output a reduce task needs is gone (its executor was lost); the map stage
    /// is rerun (Spark: `FetchFailedException`).
    #[error("shuffle {shuffle}: output of map partition {map_partition} is missing")]
    FetchFailed {
        /// The shuffle.
        shuffle: ShuffleId,
        /// The map partition whose output is missing.
        map_partition: usize,
    },
    /// A user function returned an error (e.g. the closure of `foreach_partition`).
    #[error("{0}")]
    User(String),
    /// A block an RDD needs is gone and cannot be recomputed from lineage.
    #[error("block {0} is missing and has no lineage to recompute it from")]
    BlockMissing(BlockId),
    /// A block held a value of another type than the RDD expected (a bug).
    #[error("block {0} holds records of another type than expected (this is a bug)")]
    BlockType(BlockId),
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the file or address.
        context: String,
        /// The I/O error.
        source: Arc<std::io::Error>,
    },
    /// A polled input (such as `text_file_stream`) could not read an input of a batch, and
    /// its unreadable-input policy is `fail`: the task is not retried (the read would fail
    /// again), the batch fails and the streaming context stops with this error.
    #[error("batch {batch_time}: input `{input}` cannot read {split}: {reason} (unreadable-input policy: fail; the skip policy reports it and goes on)")]
    InputFailed {
        /// The batch.
        batch_time: Time,
        /// The input's name, e.g. `text files in /data/in`.
        input: String,
        /// What could not be read, e.g. the file's path.
        split: String,
        /// Why.
        reason: String,
    },
    /// A receiver failed past its supervisor's restart limit.
    #[error("receiver `{receiver}` failed: {message}")]
    Receiver {
        /// The receiver's name.
        receiver: String,
        /// The last error.
        message: String,
    },
    /// A blocking RDD action was called where it would deadlock: on an actor thread, or
    /// while the batch's jobs are being generated (inside `transform`).
    #[error("RDD action `{0}` cannot block here: call it from an output operation (foreach_rdd, foreach_batch) or a plain thread")]
    BlockingAction(&'static str),
    /// A component of the runtime died, or failed past its restart limit, and the streaming
    /// context stopped because of it: the coordinator stopped without a clean stop (a panic in
    /// it, or the `crash_coordinator` fault drill), or every
    /// executor was lost more often than its restart policy allows.
    #[error("{component} stopped unexpectedly: {reason}")]
    Crashed {
        /// What died: `the coordinator`, `executor 2`, ...
        component: String,
        /// How, and how often it had failed.
        reason: String,
    },
    /// The streaming context is not running (not started yet, or stopped).
    #[error("the streaming context is not running: {0}")]
    NotRunning(String),
    /// A checkpoint could not be written or read back (see [`CheckpointError`]).
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A broken invariant: a bug in rivulet, not in the user's program.
    #[error("internal error: {0} (this is a bug)")]
    Internal(String),
}

fn at_batch(t: &Option<Time>) -> String {
    t.map(|t| format!("batch {t}: ")).unwrap_or_default()
}

impl Error {
    /// Whether a task that failed with this error may succeed if run again. Not for
    /// [`Error::InputFailed`], whose cause a retry does not change; the scheduler then
    /// fails the task at once instead of retrying it.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Error::InputFailed { .. })
    }

    /// An [`Error::Io`] naming what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source: Arc::new(source),
        }
    }
}

/// A DStream graph that cannot run, found when the graph is built or validated at start.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// A window or slide duration is not a positive multiple of its parent's slide duration.
    #[error("{stream}: {what} {duration:?} is not a positive multiple of the parent's slide duration {unit:?}")]
    NotMultipleOfSlide {
        /// The operator and its call site.
        stream: String,
        /// `"window duration"` or `"slide duration"`.
        what: &'static str,
        /// The duration given.
        duration: Duration,
        /// The parent's slide duration.
        unit: Duration,
    },
    /// Streams combined by one operator (union, join, ...) have different slide durations.
    #[error("{stream}: parents have different slide durations ({left:?} and {right:?})")]
    SlideMismatch {
        /// The operator and its call site.
        stream: String,
        /// One parent's slide.
        left: Duration,
        /// Another parent's slide.
        right: Duration,
    },
    /// Streams from different streaming contexts were combined.
    #[error("{0}: parents belong to different streaming contexts")]
    ForeignStream(String),
    /// An operator needs at least one parent stream.
    #[error("{0}: needs at least one stream")]
    NoStreams(String),
    /// The graph has no output operation, so no batch would do anything.
    #[error(
        "no output operation is registered (add print, foreach_batch, save_as_text_files, ...)"
    )]
    NoOutputs,
    /// The graph was changed after `start`.
    #[error("{0}: DStreams cannot be added after the streaming context has started")]
    AlreadyStarted(String),
}

/// What went wrong with a checkpoint directory. Every variant names the directory and says
/// what to do; only a checkpoint that cannot be read back (corrupt, of another layout, of
/// another graph) suggests starting over, since that deletes the state it holds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// A stored value is torn, truncated or altered: its checksum or structure is wrong.
    #[error("checkpoint {dir}: value `{key}` is corrupt or truncated ({reason}); delete the directory to start over")]
    Corrupt {
        /// The checkpoint directory.
        dir: String,
        /// The key of the value.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A value was written by a newer rivulet with a checkpoint format this build cannot read.
    #[error("checkpoint {dir}: value `{key}` has format version {found}, but this build reads versions up to {supported}; run the newer build, or delete the directory to start over")]
    NewerFormat {
        /// The checkpoint directory.
        dir: String,
        /// The key of the value.
        key: String,
        /// The format version found.
        found: u32,
        /// The newest format version this build reads.
        supported: u32,
    },
    /// A value was written by an older rivulet with a checkpoint format this build no longer
    /// reads (format 1 placed state in partitions by another hash).
    #[error("checkpoint {dir}: value `{key}` has format version {found}, but this build reads versions from {oldest}; run the older build, or delete the directory to start over")]
    OlderFormat {
        /// The checkpoint directory.
        dir: String,
        /// The key of the value.
        key: String,
        /// The format version found.
        found: u32,
        /// The oldest format version this build reads.
        oldest: u32,
    },
    /// The checkpoint was written by a program whose DStream graph differs from this one.
    #[error("checkpoint {dir} was written by a different DStream graph: {}; use another directory or delete it to start over", .differences.join("; "))]
    GraphChanged {
        /// The checkpoint directory.
        dir: String,
        /// Each DStream that differs, e.g. `stream 3: checkpoint has map, program has filter`.
        differences: Vec<String>,
    },
    /// Another running process holds the directory (Spark refuses a second driver on one
    /// checkpoint the same way). Starting over would destroy that process's checkpoint:
    /// stop it first.
    #[error("checkpoint {dir} is in use by another running process{}: stop that process first (or use another directory); do not delete the directory, it is that process's checkpoint", holder_text(.holder))]
    Locked {
        /// The checkpoint directory.
        dir: String,
        /// The process id recorded by the holder, when it could be read.
        holder: Option<u32>,
    },
    /// The file system holding the directory is full (or the process's file size limit was
    /// reached). Nothing written so far is lost: free space and restart from the checkpoint.
    #[error("checkpoint {dir}: cannot {action}: the file system is full ({message}); free space and restart: the checkpoint written so far is kept")]
    NoSpace {
        /// The checkpoint directory.
        dir: String,
        /// What was being done.
        action: String,
        /// The underlying error.
        message: String,
    },
    /// The directory is not a rivulet checkpoint directory: it holds other files. rivulet
    /// never writes into (or deletes) a directory it did not create.
    #[error(
        "{dir} is not a rivulet checkpoint directory ({reason}); pass an empty or new directory"
    )]
    NotACheckpoint {
        /// The directory.
        dir: String,
        /// What was found there instead.
        reason: String,
    },
    /// The directory was written with another checkpoint layout (an older rivulet), which
    /// this build cannot read.
    #[error("checkpoint {dir} has layout {found}, but this build reads layout {supported}; restart it with the build that wrote it, or delete the directory to start over")]
    Layout {
        /// The checkpoint directory.
        dir: String,
        /// The layout found (`1` for a directory written before layouts were recorded).
        found: u32,
        /// The layout this build reads and writes.
        supported: u32,
    },
    /// A stateful stream's state was checkpointed in another number of partitions than the
    /// program now asks for explicitly (`StateSpec::num_partitions`, the `partitions` of
    /// `update_state_by_key_with_initial` or `WindowReduce::partitions`). A stream whose
    /// count is not given adopts the checkpoint's instead.
    #[error("checkpoint {dir}: DStream `{stream}` keeps its state in {checkpoint} partitions, but the program asks for {program}; ask for {checkpoint} (or leave the count unset to adopt the checkpoint's), or delete the directory to start over")]
    PartitionsChanged {
        /// The checkpoint directory.
        dir: String,
        /// The stateful stream: its operator, call site and id, e.g.
        /// `map_with_state at src/main.rs:12 (stream 3)`.
        stream: String,
        /// The partition count of the checkpointed state.
        checkpoint: usize,
        /// The partition count the program gives.
        program: usize,
    },
    /// The store failed: the directory cannot be opened or written (permissions, an I/O
    /// error).
    #[error("checkpoint {dir}: cannot {action}: {message}")]
    Storage {
        /// The checkpoint directory.
        dir: String,
        /// What was being done, e.g. `write value state/...`.
        action: String,
        /// The underlying error.
        message: String,
    },
}

impl CheckpointError {
    /// Whether the remedy is to start over (delete the directory, losing its state): true
    /// only for a checkpoint that cannot be read back by this program (corrupt, of another
    /// layout or a newer format, of another graph or partitioning). A held directory, a
    /// full disk, or an I/O failure is not healed by deleting the checkpoint.
    pub fn suggests_starting_over(&self) -> bool {
        matches!(
            self,
            CheckpointError::Corrupt { .. }
                | CheckpointError::NewerFormat { .. }
                | CheckpointError::GraphChanged { .. }
                | CheckpointError::Layout { .. }
                | CheckpointError::PartitionsChanged { .. }
        )
    }
}

fn holder_text(holder: &Option<u32>) -> String {
    holder
        .map(|pid| format!(" (pid {pid})"))
        .unwrap_or_default()
}

/// A panic payload (from `catch_unwind` or a joined thread) as a message: the `&str` or
/// `String` it carries, else "panic with a non-string payload".
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-string payload".to_string()
    }
}

/// A place in the user's program where an operator was created (Spark: the call site shown
/// in stage names, e.g. `reduceByKey at WordCount.scala:26`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OpInfo {
    /// The operator, e.g. `"map"`.
    pub name: &'static str,
    /// Where the program called it.
    pub location: &'static std::panic::Location<'static>,
}

impl OpInfo {
    /// The operator `name` created at the caller's location (use in `#[track_caller]` fns).
    #[track_caller]
    pub fn caller(name: &'static str) -> OpInfo {
        OpInfo {
            name,
            location: std::panic::Location::caller(),
        }
    }
}

impl fmt::Display for OpInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}:{}",
            self.name,
            self.location.file(),
            self.location.line()
        )
    }
}

impl fmt::Debug for OpInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
