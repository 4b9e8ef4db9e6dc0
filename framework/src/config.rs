//! [`StreamingConfig`]: the settings of one streaming context (Spark: `SparkConf` entries
//! `spark.streaming.*` plus the `StreamingContext` batch duration).

use std::time::Duration;

use crate::cluster_manager::ClusterManager;
use crate::error::{Error, Result};
use crate::scheduler::Speculation;
use crate::time::{duration_ms, is_multiple};

/// The default block interval (Spark: `spark.streaming.blockInterval`), capped at the batch
/// interval when that is shorter.
pub const DEFAULT_BLOCK_INTERVAL: Duration = Duration::from_millis(200);

/// The default least bound on a receiver's stored-but-unfinished records (its bound until
/// the first batch is measured).
pub const DEFAULT_RECEIVER_BUFFER_RECORDS: usize = 500_000;

/// The default receiver buffer time, in batch intervals: a buffer holds what the executors
/// process in three batch intervals at their measured rate.
pub const DEFAULT_RECEIVER_BUFFER_BATCHES: u32 = 3;

/// The most executors a context may have: each is a thread with its own event loop and file
/// descriptors, and past a few thousand the machine, not the work, is the limit.
pub const MAX_EXECUTORS: usize = 4096;

/// The longest batch interval (and block and checkpoint interval): one day. Batch times are
/// aligned to multiples of the interval on the wall clock, so the first batch of a long
/// interval may be far away (the runtime logs when).
pub const MAX_BATCH_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest `receiver_buffer_records` and `default_parallelism`: 2^30.
pub const MAX_COUNT_SETTING: usize = 1 << 30;
/// The default number of batches the status server remembers (Spark:
/// `spark.streaming.ui.retainedBatches`).
pub const DEFAULT_UI_RETAINED_BATCHES: usize = 1000;

/// The executor processes of a [`StreamingConfig::cluster_manager`]: where the
/// coordinator listens, the host the processes are told to connect to, how many and who
/// places them. Equal when the manager is the same object.
#[derive(Clone)]
pub struct ManagedCluster {
    /// The coordinator's listen address, `ip:port`.
    pub listen: String,
    /// The host (name or IP) the processes connect to, at the listen port.
    pub advertise_host: String,
    /// How many executor processes.
    pub n: usize,
    /// Who places them.
    pub manager: std::sync::Arc<dyn ClusterManager>,
}

impl std::fmt::Debug for ManagedCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManagedCluster")
            .field("listen", &self.listen)
            .field("advertise_host", &self.advertise_host)
            .field("n", &self.n)
            .field("manager", &self.manager.name())
            .finish()
    }
}

impl PartialEq for ManagedCluster {
    fn eq(&self, other: &Self) -> bool {
        self.listen == other.listen
            && self.advertise_host == other.advertise_host
            && self.n == other.n
            && std::sync::Arc::ptr_eq(&self.manager, &other.manager)
    }
}

/// Settings of a streaming context, built with chained setters and checked by
/// [`validate`](StreamingConfig::validate) (which `StreamingContext::new` calls).
///
/// # Examples
/// ```
/// use std::time::Duration;
/// use rivulet_framework::config::StreamingConfig;
///
/// let config = StreamingConfig::new()
///     .batch_interval(Duration::from_millis(100))
///     .executors(2)
///     .manual_clock(true);
/// assert!(config.validate().is_ok());
/// assert!(StreamingConfig::new().batch_interval(Duration::ZERO).validate().is_err());
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct StreamingConfig {
    app_name: String,
    batch_interval: Duration,
    block_interval: Option<Duration>,
    executors: Option<usize>,
    local_cluster: usize,
    static_cluster: Option<(String, usize)>,
    managed_cluster: Option<ManagedCluster>,
    heartbeat_timeout: Duration,
    receivers_in_processes: bool,
    state_in_processes: bool,
    default_parallelism: Option<usize>,
    manual_clock: bool,
    remember: Option<Duration>,
    receiver_buffer_records: usize,
    receiver_buffer_time: Option<Duration>,
    receiver_buffer_max_records: usize,
    max_task_attempts: u32,
    receiver_max_restarts: u32,
    receiver_restart_delay: Duration,
    checkpoint_dir: Option<std::path::PathBuf>,
    checkpoint_interval: Option<Duration>,
    checkpoint_compaction: crate::checkpoint::CompactionPolicy,
    receiver_wal: bool,
    backpressure: bool,
    max_rate_per_receiver: Option<f64>,
    backpressure_initial_rate: Option<f64>,
    speculation: bool,
    speculation_settings: Speculation,
    pipelining: bool,
    ui_address: Option<String>,
    ui_retained_batches: usize,
    ui_linger: Duration,
    event_log_dir: Option<std::path::PathBuf>,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        StreamingConfig {
            app_name: "rivulet".into(),
            batch_interval: Duration::from_secs(1),
            block_interval: None,
            executors: None,
            local_cluster: 0,
            static_cluster: None,
            managed_cluster: None,
            heartbeat_timeout: Duration::from_secs(2),
            receivers_in_processes: false,
            state_in_processes: true,
            default_parallelism: None,
            manual_clock: false,
            remember: None,
            receiver_buffer_records: DEFAULT_RECEIVER_BUFFER_RECORDS,
            receiver_buffer_time: None,
            receiver_buffer_max_records: MAX_COUNT_SETTING,
            max_task_attempts: 4,
            receiver_max_restarts: 10,
            receiver_restart_delay: Duration::from_millis(100),
            checkpoint_dir: None,
            checkpoint_interval: None,
            checkpoint_compaction: crate::checkpoint::CompactionPolicy::default(),
            receiver_wal: false,
            backpressure: true,
            max_rate_per_receiver: None,
            backpressure_initial_rate: None,
            speculation: true,
            speculation_settings: Speculation::default(),
            pipelining: false,
            ui_address: None,
            ui_retained_batches: DEFAULT_UI_RETAINED_BATCHES,
            ui_linger: Duration::ZERO,
            event_log_dir: None,
        }
    }
}

impl StreamingConfig {
    /// The defaults: 1 s batches, 200 ms blocks, one executor per core, system clock.
    pub fn new() -> StreamingConfig {
        StreamingConfig::default()
    }

    /// The application's name, used in logs (default `"rivulet"`).
    pub fn app_name(mut self, name: impl Into<String>) -> Self {
        self.app_name = name.into();
        self
    }

    /// How often a batch is cut (Spark: `batchDuration`); whole milliseconds, at least 1 ms.
    pub fn batch_interval(mut self, interval: Duration) -> Self {
        self.batch_interval = interval;
        self
    }

    /// How often a receiver's records are sealed into a block, i.e. one input partition
    /// (Spark: `spark.streaming.blockInterval`); at most the batch interval. Default 200 ms,
    /// or less so that each receiver's batch has two blocks per executor (see
    /// [`get_block_interval`](StreamingConfig::get_block_interval)).
    pub fn block_interval(mut self, interval: Duration) -> Self {
        self.block_interval = Some(interval);
        self
    }

    /// How many executors (task threads) to run; default: the machine's available cores.
    pub fn executors(mut self, n: usize) -> Self {
        self.executors = Some(n);
        self
    }

    /// Runs `n` executor processes of this program on this host beside the in-process
    /// executors (Spark's `local-cluster[n, ...]`); 0 (the default): none. Each is this
    /// program started again in the executor role (an environment variable that
    /// `StreamingContext::start` reads), builds the same DStream graph, registers with the
    /// coordinator over TCP on 127.0.0.1 and runs [`executors`](StreamingConfig::executors)
    /// task threads; a map stage of a batch whose lineage starts at received blocks runs on
    /// them (see [`computable_remotely`](crate::rdd::computable_remotely)), and so does the
    /// computation of a stateful stream's state and a window from the previous batch's
    /// (a cache stage, which keeps them there; see
    /// [`DagScheduler`](crate::scheduler::DagScheduler)); result stages and everything else
    /// run on the in-process executors. A process that dies or stops answering is lost:
    /// its map outputs and cached partitions are recomputed from lineage and a new process
    /// takes its place.
    pub fn local_cluster(mut self, n: usize) -> Self {
        self.local_cluster = n;
        self
    }

    /// Waits for `n` executor processes started elsewhere (by hand, by systemd, on other
    /// hosts) instead of starting them: the coordinator listens on `listen` (`ip:port`,
    /// e.g. `0.0.0.0:7077`), and each executor is this program run with the same arguments
    /// and the environment `RIVULET_EXECUTOR_OF=<coordinator ip:port>` and
    /// `RIVULET_EXECUTOR_SLOT=<0..n>` (Spark's standalone workers, without a master). An
    /// executor retries connecting for 60 s, and exits when the coordinator stops, goes
    /// away or is silent past the heartbeat timeout, so that its supervisor (systemd's
    /// `Restart=always`) starts it again for the next coordinator. A lost executor is not
    /// replaced by the coordinator: its slot waits for the process to come back. Otherwise as
    /// [`local_cluster`](StreamingConfig::local_cluster), which it replaces.
    pub fn static_cluster(mut self, listen: impl Into<String>, n: usize) -> Self {
        self.static_cluster = Some((listen.into(), n));
        self
    }

    /// Runs `n` executor processes placed by `manager` (e.g. `rivulet-kubernetes`'s pods):
    /// the coordinator listens on `listen` (`ip:port`; port 0 picks one) and tells each
    /// process to connect to `advertise_host` at the port it listens on (on Kubernetes: the
    /// coordinator pod's IP, from the downward API). A lost process is replaced through the
    /// manager (10 replacements per slot). Otherwise as
    /// [`local_cluster`](StreamingConfig::local_cluster), which it replaces.
    pub fn cluster_manager(
        mut self,
        listen: impl Into<String>,
        advertise_host: impl Into<String>,
        n: usize,
        manager: std::sync::Arc<dyn ClusterManager>,
    ) -> Self {
        self.managed_cluster = Some(ManagedCluster {
            listen: listen.into(),
            advertise_host: advertise_host.into(),
            n,
            manager,
        });
        self
    }

    /// How long an executor process may stay silent (no heartbeat, sent every
    /// `timeout / 4`) before it is taken as lost (Spark: `spark.network.timeout`, whose
    /// default is 120 s; here 2 s, because a batch of 100 ms should not wait minutes).
    pub fn heartbeat_timeout(mut self, timeout: Duration) -> Self {
        self.heartbeat_timeout = timeout;
        self
    }

    /// Runs the receivers that may run anywhere ([`Receiver::runs_anywhere`]) on the
    /// executor processes, as Spark runs
    /// receivers on executors: receiver `i` on process slot `i % n`, which keeps its blocks
    /// and runs the map tasks that read them, so input does not cross to the coordinator
    /// and back. Each block is replicated on the next executor process (its bytes, relayed
    /// through the coordinator, which keeps them only until that process holds them, and
    /// decoded only if a task reads them), or kept by the coordinator when no other process
    /// runs or the write-ahead log is on (Spark's `MEMORY_AND_DISK_SER_2`, or the log as
    /// the second copy): a lost process's blocks are read from their replicas, and its
    /// receivers start again in the process that takes its slot, after the last block that
    /// was durable (a block whose replica was held but whose report did not arrive is
    /// counted by the coordinator in the lost process's place). What a
    /// lost process had stored but not yet sealed into a block is lost, as with Spark's
    /// receivers without a write-ahead log, unless the receiver stored it reliably
    /// ([`BlockSink::store_reliably`]: it acknowledges its source only once the coordinator
    /// confirmed the block, i.e. its replica is held, and the source delivers it again). With
    /// [`receiver_wal`](StreamingConfig::receiver_wal) on, the coordinator, which holds the
    /// log, adds each block to it before it confirms or counts it, as its own receivers'
    /// builders do. No effect without executor processes. Default `false`.
    ///
    /// [`BlockSink::store_reliably`]: crate::receiver::BlockSink::store_reliably
    ///
    /// [`Receiver::runs_anywhere`]: crate::receiver::Receiver::runs_anywhere
    pub fn receivers_in_executor_processes(mut self, on: bool) -> Self {
        self.receivers_in_processes = on;
        self
    }

    /// Computes stateful streams' state and windows on the executor processes and keeps
    /// them there from batch to batch (cache stages, see
    /// [`DagScheduler`](crate::scheduler::DagScheduler)), as Spark's executors hold a state
    /// RDD's blocks: the coordinator's result stage then fetches what its output reads (for
    /// `map_with_state`, the mapped records; for an output of `update_state_by_key`'s whole
    /// state, all of it every batch). `false` keeps them in the coordinator's in-process
    /// executors, which read the batch's map outputs from the processes. No effect without
    /// executor processes. Default `true`.
    pub fn state_in_executor_processes(mut self, on: bool) -> Self {
        self.state_in_processes = on;
        self
    }

    /// Partitions of shuffles and of stateful streams' state without an explicit count
    /// (Spark: `spark.default.parallelism`). Default: for shuffles, the number of
    /// [`executors`](StreamingConfig::executors) of this process (which run the result
    /// stages that read them); for state kept on executor processes
    /// ([`state_in_executor_processes`](StreamingConfig::state_in_executor_processes)),
    /// every task thread of the run, as Spark's total cores of all executors (this
    /// process's executors plus as many per executor process), so that the state spreads
    /// over the processes.
    pub fn default_parallelism(mut self, n: usize) -> Self {
        self.default_parallelism = Some(n);
        self
    }

    /// Use the manual clock: batches run only when `StreamingContext::advance` is called,
    /// starting at time 0 (Spark: `ManualClock`, for tests).
    pub fn manual_clock(mut self, manual: bool) -> Self {
        self.manual_clock = manual;
        self
    }

    /// Keep every DStream's RDDs at least this long (Spark: `StreamingContext.remember`),
    /// e.g. for `slice` over past batches.
    pub fn remember(mut self, duration: Duration) -> Self {
        self.remember = Some(duration);
        self
    }

    /// The least bound, in records, on what each receiver may have stored and not yet seen
    /// processed, and its bound until the first batch is measured; `store` waits beyond the
    /// bound (backpressure). Default 500 000. After each batch the bound becomes what the
    /// executors process in [`receiver_buffer_time`](StreamingConfig::receiver_buffer_time)
    /// at that batch's rate, if that is more (see
    /// [`BufferBound`](crate::receiver::BufferBound)). A block is also sealed when it reaches
    /// this count / (2 × default parallelism) records, so a fast source still gives each
    /// batch several partitions.
    pub fn receiver_buffer_records(mut self, records: usize) -> Self {
        self.receiver_buffer_records = records;
        self
    }

    /// A hard cap, in records, on each receiver's buffer bound (default 2^30, i.e. the time
    /// bound alone), for a memory budget; a cap under
    /// [`receiver_buffer_records`](StreamingConfig::receiver_buffer_records) is that floor.
    /// Setting both to `n` gives a fixed bound of `n` records.
    pub fn receiver_buffer_max_records(mut self, records: usize) -> Self {
        self.receiver_buffer_max_records = records;
        self
    }

    /// How much input, in processing time at the executors' measured rate, each receiver's
    /// buffer may hold (default three batch intervals): the buffer is bounded by time at
    /// the current rate, not by a fixed record count, so it never caps throughput below
    /// what the executors sustain. Whole milliseconds, from 1 ms to one day.
    pub fn receiver_buffer_time(mut self, time: Duration) -> Self {
        self.receiver_buffer_time = Some(time);
        self
    }

    /// Attempts per task before its job fails (Spark: `spark.task.maxFailures`, default 4).
    pub fn max_task_attempts(mut self, attempts: u32) -> Self {
        self.max_task_attempts = attempts;
        self
    }

    /// Restarts of a failing receiver before its failure stops the context (default 10),
    /// and the first restart delay, doubled on each restart (default 100 ms).
    pub fn receiver_restarts(mut self, max_restarts: u32, first_delay: Duration) -> Self {
        self.receiver_max_restarts = max_restarts;
        self.receiver_restart_delay = first_delay;
        self
    }

    /// Keeps checkpoints in a sled database in `dir` (Spark: `StreamingContext.checkpoint`):
    /// the state of stateful and windowed streams every checkpoint interval, and metadata
    /// after every batch, so that `StreamingContext::get_or_create(dir, ..)` restarts where
    /// a stopped or killed program left off. Without it, checkpoints are kept in memory:
    /// lineage is still cut and executor loss still heals, but a restart starts over.
    pub fn checkpoint_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.checkpoint_dir = Some(dir.into());
        self
    }

    /// Keeps checkpoints in memory (the default): undoes
    /// [`checkpoint_dir`](StreamingConfig::checkpoint_dir). An executor process of a local
    /// cluster runs so, since the coordinator owns the directory.
    pub fn without_checkpoint_dir(mut self) -> Self {
        self.checkpoint_dir = None;
        self
    }

    /// How often stateful and windowed streams write a data checkpoint (at least 1 ms;
    /// streams whose slide it is not a multiple of use the default). Default: for each
    /// stream, the smallest multiple of its slide that is at least 10 s (as Spark).
    /// `DStream::checkpoint(interval)` overrides it per stream.
    pub fn checkpoint_interval(mut self, interval: Duration) -> Self {
        self.checkpoint_interval = Some(interval);
        self
    }

    /// When the checkpoint directory compacts (copies its live records into a fresh
    /// database and deletes the old one): once it holds more than `policy.floor_bytes` and
    /// more than `policy.max_ratio` times its live bytes. Default: 32 MiB and 6x, which keeps
    /// the directory within max(64 MiB, 8x the live bytes). A compaction runs between
    /// batches and takes about the time of copying the live bytes.
    pub fn checkpoint_compaction(mut self, policy: crate::checkpoint::CompactionPolicy) -> Self {
        self.checkpoint_compaction = policy;
        self
    }

    /// Writes every received block to a write-ahead log in the checkpoint directory before
    /// it is reported (Spark: `spark.streaming.receiver.writeAheadLog.enable`), so that after
    /// a crash and a restart with `StreamingContext::get_or_create`, the blocks of batches
    /// that had not completed, and blocks not yet in a batch, are replayed into their batches.
    /// Receivers that acknowledge their source (`BlockSink::store_reliably`) acknowledge only
    /// once the block is in the log. Needs [`checkpoint_dir`](StreamingConfig::checkpoint_dir).
    /// Default off: each block costs a `flush` (an fsync) of the log.
    pub fn receiver_wal(mut self, enabled: bool) -> Self {
        self.receiver_wal = enabled;
        self
    }

    /// Rate control (Spark's `spark.streaming.backpressure.enabled`; on by default here,
    /// where Spark's is off): after each batch, a PID estimator (Spark's `PIDRateEstimator`:
    /// proportional 1.0, integral 0.2, derivative 0, at least 100 records/s) fed by the
    /// batch's records, processing and scheduling delay sets each receiver's rate, so that
    /// batches are processed within the interval; receivers and actor sources honour it by
    /// waiting. The bounded receiver buffer stays as the hard limit.
    pub fn backpressure(mut self, enabled: bool) -> Self {
        self.backpressure = enabled;
        self
    }

    /// The most records per second any receiver (or actor source) stores (Spark:
    /// `spark.streaming.receiver.maxRate`); with backpressure, the estimated rate is capped
    /// at it. Default: no limit.
    pub fn max_rate_per_receiver(mut self, records_per_sec: f64) -> Self {
        self.max_rate_per_receiver = Some(records_per_sec);
        self
    }

    /// The rate each receiver starts at before the first estimate (Spark:
    /// `spark.streaming.backpressure.initialRate`), so the first batch after a backlog is
    /// bounded too. Default: no limit until the first estimate (or `max_rate_per_receiver`).
    pub fn backpressure_initial_rate(mut self, records_per_sec: f64) -> Self {
        self.backpressure_initial_rate = Some(records_per_sec);
        self
    }

    /// Whether slow tasks get a speculative copy on another executor, the first copy to
    /// finish winning (Spark: `spark.speculation`; on by default here). See
    /// [`Speculation`] for when a task counts as slow.
    pub fn speculation(mut self, enabled: bool) -> Self {
        self.speculation = enabled;
        self
    }

    /// Timestep pipelining (the D-Streams paper, section 4.2; off by default): while a batch
    /// runs, the executors may already run the map stages of the next queued batch that do
    /// not depend on a batch still running (those over its input blocks, for example; not
    /// a window or state over the running batch). Its job then skips them. Output operations
    /// still run one batch at a time, in batch order. It matters when batches queue up
    /// (processing near or above the batch interval): the next batch's map tasks fill the
    /// executors' idle time in the running batch's stage boundaries. The stages run ahead are
    /// those of the RDD each output operation receives: an output whose function does not act
    /// on its RDD in some batch wastes that work (only while batches queue), and user closures
    /// in those stages run before the previous batch's outputs finish. Spark runs one batch
    /// at a time (`spark.streaming.concurrentJobs` = 1), and so does the default.
    ///
    /// Why off by default: rate control (on by default) reads a pipelined batch's processing
    /// time as its processing delay plus the time its stages ran ahead, which counts the time
    /// shared with the previous batch twice. That errs on the safe side (the delay alone made
    /// pipelined batches look fast and let a 10x overload build a 20 s backlog), but under
    /// overload it admitted about 10 % fewer records than without pipelining. With rate
    /// control off, pipelining let a word count that falls behind at 3.6 M lines/s keep up
    /// with 3.9 M (BENCHMARKS.md).
    pub fn pipelining(mut self, enabled: bool) -> Self {
        self.pipelining = enabled;
        self
    }

    /// How many times slower than the median of its stage's finished tasks a task must be
    /// to be speculated (Spark: `spark.speculation.multiplier`, default 1.5; at least 1).
    pub fn speculation_multiplier(mut self, multiplier: f64) -> Self {
        self.speculation_settings.multiplier = multiplier;
        self
    }

    /// The fraction of a stage's tasks that must finish before any is speculated (Spark:
    /// `spark.speculation.quantile`, default 0.75; in `(0, 1]`).
    pub fn speculation_quantile(mut self, quantile: f64) -> Self {
        self.speculation_settings.quantile = quantile;
        self
    }

    /// Serves the status page, its JSON API (`/api/v1/streaming/...`) and Prometheus
    /// `/metrics` on `address` while the context runs (Spark: the web UI's Streaming tab,
    /// `spark.ui.port` 4040). `address` is `ip:port`, e.g. `"127.0.0.1:4040"`; port 0 picks
    /// a free port (the context reports the one bound). Off by default; name a loopback
    /// address unless the page must be reachable from other hosts.
    pub fn ui_address(mut self, address: impl Into<String>) -> Self {
        self.ui_address = Some(address.into());
        self
    }

    /// How many of the latest batches the status server keeps, the oldest dropped first
    /// (Spark: `spark.streaming.ui.retainedBatches`, default 1,000; at least 1).
    pub fn ui_retained_batches(mut self, batches: usize) -> Self {
        self.ui_retained_batches = batches;
        self
    }

    /// How long the status server stays up after the context stops, default zero: with a
    /// linger, `stop` returns as before but leaves the server answering, with the final state
    /// (receivers stopped, every batch done), for `linger` more, so that an open page can
    /// still be read after the run ends. The process must live that long too (the examples'
    /// `--ui-linger SECS` waits).
    pub fn ui_linger(mut self, linger: Duration) -> Self {
        self.ui_linger = linger;
        self
    }

    /// Writes every listener event of the run to a file of its own in `dir` (created if
    /// needed), so that `rivulet_actors::HistoryServer` serves the run's status page after
    /// it ended (Spark: `spark.eventLog.enabled` with `spark.eventLog.dir`). Off by default.
    /// The file is `<app>-<start ms>.jsonl.inprogress` while the context runs and loses the
    /// `.inprogress` suffix when it stops; see `rivulet_actors::EventLog` for the format.
    /// The context fails to start (`Error::Io` naming the path) when the file cannot be
    /// created.
    pub fn event_log_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.event_log_dir = Some(dir.into());
        self
    }

    /// Checks every setting.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting: a batch interval under 1 ms or not whole
    /// milliseconds, a block interval larger than the batch interval or zero, zero executors,
    /// zero default parallelism, zero receiver buffer, a receiver buffer time outside 1 ms..1 day, zero task attempts, a speculation
    /// multiplier under 1 or a quantile outside `(0, 1]`, a `ui_address` that is not
    /// `ip:port`, zero `ui_retained_batches`, more than 64 local-cluster executor processes,
    /// a heartbeat timeout under 100 ms, a `static_cluster` listen address that is not
    /// `ip:port` or with 0 or more than 64 processes, or beside a `local_cluster`; the same
    /// for a `cluster_manager`, and an empty advertised host.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.local_cluster > 64 {
            return bad(format!(
                "local_cluster must be at most 64 executor processes, got {}",
                self.local_cluster
            ));
        }
        if let Some((listen, n)) = &self.static_cluster {
            if listen.parse::<std::net::SocketAddr>().is_err() {
                return bad(format!(
                    "static_cluster: listen address {listen:?} is not ip:port"
                ));
            }
            if !(1..=64).contains(n) {
                return bad(format!(
                    "static_cluster must have 1 to 64 executor processes, got {n}"
                ));
            }
            if self.local_cluster > 0 {
                return bad("static_cluster and local_cluster exclude each other".into());
            }
        }
        if let Some(m) = &self.managed_cluster {
            if m.listen.parse::<std::net::SocketAddr>().is_err() {
                return bad(format!(
                    "cluster_manager: listen address {:?} is not ip:port",
                    m.listen
                ));
            }
            if m.advertise_host.is_empty() || m.advertise_host.contains(char::is_whitespace) {
                return bad(format!(
                    "cluster_manager: advertised host {:?} is not a host name or IP address",
                    m.advertise_host
                ));
            }
            if !(1..=64).contains(&m.n) {
                return bad(format!(
                    "cluster_manager must have 1 to 64 executor processes, got {}",
                    m.n
                ));
            }
            if self.local_cluster > 0 || self.static_cluster.is_some() {
                return bad("cluster_manager excludes local_cluster and static_cluster".into());
            }
        }
        if self.heartbeat_timeout < Duration::from_millis(100) {
            return bad(format!(
                "heartbeat_timeout must be at least 100 ms, got {:?}",
                self.heartbeat_timeout
            ));
        }
        if duration_ms(self.batch_interval) < 1 {
            return bad(format!(
                "batch_interval must be at least 1 ms, got {:?}",
                self.batch_interval
            ));
        }
        if self.batch_interval > MAX_BATCH_INTERVAL {
            return bad(format!(
                "batch_interval must be at most {} ms (one day), got {:?}",
                MAX_BATCH_INTERVAL.as_millis(),
                self.batch_interval
            ));
        }
        if let Some(c) = self.checkpoint_interval.filter(|c| *c > MAX_BATCH_INTERVAL) {
            return bad(format!(
                "checkpoint_interval must be at most {} ms (one day), got {c:?}",
                MAX_BATCH_INTERVAL.as_millis()
            ));
        }
        if let Some(n) = self.executors.filter(|n| *n > MAX_EXECUTORS) {
            return bad(format!(
                "executors must be at most {MAX_EXECUTORS}, got {n}"
            ));
        }
        if let Some(n) = self.default_parallelism.filter(|n| *n > MAX_COUNT_SETTING) {
            return bad(format!(
                "default_parallelism must be at most {MAX_COUNT_SETTING}, got {n}"
            ));
        }
        if self.receiver_buffer_max_records > MAX_COUNT_SETTING {
            return bad(format!(
                "receiver_buffer_max_records must be at most {MAX_COUNT_SETTING}, got {}",
                self.receiver_buffer_max_records
            ));
        }
        if self.receiver_buffer_records > MAX_COUNT_SETTING {
            return bad(format!(
                "receiver_buffer_records must be at most {MAX_COUNT_SETTING}, got {}",
                self.receiver_buffer_records
            ));
        }
        if let Some(t) = self.receiver_buffer_time {
            if duration_ms(t) < 1 || t > MAX_BATCH_INTERVAL {
                return bad(format!(
                    "receiver_buffer_time must be from 1 ms to one day, got {t:?}"
                ));
            }
        }
        if !self.batch_interval.subsec_nanos().is_multiple_of(1_000_000) {
            return bad(format!(
                "batch_interval must be whole milliseconds, got {:?}",
                self.batch_interval
            ));
        }
        if let Some(block) = self.block_interval {
            if duration_ms(block) < 1 {
                return bad(format!(
                    "block_interval must be at least 1 ms, got {block:?}"
                ));
            }
            if block > self.batch_interval {
                return bad(format!(
                    "block_interval {block:?} is larger than batch_interval {:?}",
                    self.batch_interval
                ));
            }
        }
        if self.executors == Some(0) {
            return bad("executors must be at least 1".into());
        }
        if self.default_parallelism == Some(0) {
            return bad("default_parallelism must be at least 1".into());
        }
        if self.receiver_buffer_records == 0 {
            return bad("receiver_buffer_records must be at least 1".into());
        }
        if self.max_task_attempts == 0 {
            return bad("max_task_attempts must be at least 1".into());
        }
        for (name, rate) in [
            ("max_rate_per_receiver", self.max_rate_per_receiver),
            ("backpressure_initial_rate", self.backpressure_initial_rate),
        ] {
            if let Some(r) = rate {
                if !(r.is_finite() && r >= 1.0) {
                    return bad(format!(
                        "{name} must be at least 1 record per second, got {r}"
                    ));
                }
            }
        }
        if self.receiver_wal && self.checkpoint_dir.is_none() {
            return bad(
                "receiver_wal needs checkpoint_dir: the write-ahead log lives in the checkpoint directory".into(),
            );
        }
        if let Some(c) = self.checkpoint_interval {
            if duration_ms(c) < 1 {
                return bad(format!(
                    "checkpoint_interval must be at least 1 ms, got {c:?}"
                ));
            }
        }
        let s = self.speculation_settings;
        if !(s.multiplier.is_finite() && s.multiplier >= 1.0) {
            return bad(format!(
                "speculation_multiplier must be a number of at least 1, got {}",
                s.multiplier
            ));
        }
        if !(s.quantile > 0.0 && s.quantile <= 1.0) {
            return bad(format!(
                "speculation_quantile must be in (0, 1], got {}",
                s.quantile
            ));
        }
        if let Some(address) = &self.ui_address {
            if address.parse::<std::net::SocketAddr>().is_err() {
                return bad(format!(
                    "ui_address must be ip:port (e.g. 127.0.0.1:4040), got {address:?}"
                ));
            }
        }
        if self.ui_retained_batches == 0 {
            return bad("ui_retained_batches must be at least 1".into());
        }
        if let Some(r) = self.remember {
            if !is_multiple(r, Duration::from_millis(1)) {
                return bad(format!("remember must be at least 1 ms, got {r:?}"));
            }
        }
        Ok(())
    }

    /// The application's name.
    pub fn get_app_name(&self) -> &str {
        &self.app_name
    }
    /// The batch interval.
    pub fn get_batch_interval(&self) -> Duration {
        self.batch_interval
    }
    /// The block interval in effect: the one set, or by default 200 ms capped so that each
    /// receiver's batch has at least two blocks (input partitions) per executor: at most
    /// batch interval / (2 × executors), in whole milliseconds, at least 1 ms. (Spark keeps
    /// 200 ms and advises lowering it until the tasks per batch cover the cores; at 100 ms
    /// batches its default gives every receiver one partition, one busy core.)
    pub fn get_block_interval(&self) -> Duration {
        self.block_interval.unwrap_or_else(|| {
            let slots = 2 * self.get_executors().max(1) as u128;
            let ms = (self.batch_interval.as_millis() / slots).max(1);
            let spread = Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
            DEFAULT_BLOCK_INTERVAL.min(spread).min(self.batch_interval)
        })
    }
    /// The number of executors in effect.
    pub fn get_executors(&self) -> usize {
        self.executors
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
    /// Executor processes to run on this host (see
    /// [`local_cluster`](StreamingConfig::local_cluster)); 0 for none.
    pub fn get_local_cluster(&self) -> usize {
        self.local_cluster
    }
    /// The listen address and executor count of a
    /// [`static_cluster`](StreamingConfig::static_cluster), if set.
    pub fn get_static_cluster(&self) -> Option<(&str, usize)> {
        self.static_cluster.as_ref().map(|(l, n)| (l.as_str(), *n))
    }
    /// The executor processes of a [`cluster_manager`](StreamingConfig::cluster_manager),
    /// if set.
    pub fn get_managed_cluster(&self) -> Option<&ManagedCluster> {
        self.managed_cluster.as_ref()
    }
    /// Whether receivers that may run anywhere run on the executor processes (and not in
    /// the coordinator): [`receivers_in_executor_processes`](Self::receivers_in_executor_processes)
    /// set and executor processes configured.
    pub fn get_receivers_in_executor_processes(&self) -> bool {
        self.receivers_in_processes
            && (self.local_cluster > 0
                || self.static_cluster.is_some()
                || self.managed_cluster.is_some())
    }
    /// Whether state and windows are computed and kept on the executor processes (see
    /// [`state_in_executor_processes`](Self::state_in_executor_processes)); `false` without
    /// executor processes.
    pub fn get_state_in_executor_processes(&self) -> bool {
        self.state_in_processes && self.executor_processes() > 0
    }
    /// How long an executor process may stay silent before it is lost.
    pub fn get_heartbeat_timeout(&self) -> Duration {
        self.heartbeat_timeout
    }
    /// The default parallelism of shuffles in effect (see
    /// [`default_parallelism`](StreamingConfig::default_parallelism)).
    pub fn get_default_parallelism(&self) -> usize {
        self.default_parallelism
            .unwrap_or_else(|| self.get_executors())
    }
    /// The default partition count of stateful streams' state in effect (see
    /// [`default_parallelism`](StreamingConfig::default_parallelism)).
    pub fn get_state_parallelism(&self) -> usize {
        match (
            self.default_parallelism,
            self.get_state_in_executor_processes(),
        ) {
            (Some(n), _) => n,
            (None, true) => self.get_task_threads(),
            (None, false) => self.get_executors(),
        }
    }
    /// How many tasks the run's executors can run at once: this process's
    /// [`executors`](StreamingConfig::executors) plus as many on each executor process
    /// (each runs `executors` task threads; Spark: the total cores of all executors). Map
    /// stages spread over all of them.
    pub fn get_task_threads(&self) -> usize {
        self.get_executors() * (1 + self.executor_processes())
    }
    /// How many executor processes the run has, however they are placed.
    fn executor_processes(&self) -> usize {
        self.local_cluster
            + self.static_cluster.as_ref().map_or(0, |(_, n)| *n)
            + self.managed_cluster.as_ref().map_or(0, |m| m.n)
    }
    /// Whether the manual clock is used.
    pub fn is_manual_clock(&self) -> bool {
        self.manual_clock
    }
    /// The minimum remember duration set by the user.
    pub fn get_remember(&self) -> Option<Duration> {
        self.remember
    }
    /// The least receiver buffer bound, in records.
    pub fn get_receiver_buffer_records(&self) -> usize {
        self.receiver_buffer_records
    }
    /// The cap on the receiver buffer bound, in records.
    pub fn get_receiver_buffer_max_records(&self) -> usize {
        self.receiver_buffer_max_records
    }
    /// The receiver buffer time in effect (default three batch intervals).
    pub fn get_receiver_buffer_time(&self) -> Duration {
        self.receiver_buffer_time
            .unwrap_or(self.batch_interval * DEFAULT_RECEIVER_BUFFER_BATCHES)
    }
    /// Attempts per task.
    pub fn get_max_task_attempts(&self) -> u32 {
        self.max_task_attempts
    }
    /// Receiver restarts allowed before the context fails.
    pub fn get_receiver_max_restarts(&self) -> u32 {
        self.receiver_max_restarts
    }
    /// The checkpoint directory, if set.
    pub fn get_checkpoint_dir(&self) -> Option<&std::path::Path> {
        self.checkpoint_dir.as_deref()
    }
    /// Whether rate control (backpressure) is on.
    pub fn get_backpressure(&self) -> bool {
        self.backpressure
    }
    /// The cap on each receiver's rate (records/s), if any.
    pub fn get_max_rate_per_receiver(&self) -> Option<f64> {
        self.max_rate_per_receiver
    }
    /// The rate receivers start at (records/s), if set.
    pub fn get_backpressure_initial_rate(&self) -> Option<f64> {
        self.backpressure_initial_rate
    }
    /// Whether the receiver write-ahead log is on.
    pub fn get_receiver_wal(&self) -> bool {
        self.receiver_wal
    }
    /// The configured data checkpoint interval, if set.
    pub fn get_checkpoint_interval(&self) -> Option<Duration> {
        self.checkpoint_interval
    }
    /// When the checkpoint directory compacts.
    pub fn get_checkpoint_compaction(&self) -> crate::checkpoint::CompactionPolicy {
        self.checkpoint_compaction
    }
    /// The first receiver restart delay.
    pub fn get_receiver_restart_delay(&self) -> Duration {
        self.receiver_restart_delay
    }
    /// The speculation settings in effect; `None` when speculation is off.
    pub fn get_speculation(&self) -> Option<Speculation> {
        self.speculation.then_some(self.speculation_settings)
    }

    /// Whether timestep pipelining is on (see [`pipelining`](StreamingConfig::pipelining)).
    pub fn get_pipelining(&self) -> bool {
        self.pipelining
    }

    /// Where the status server listens, if it is on (see
    /// [`ui_address`](StreamingConfig::ui_address)).
    pub fn get_ui_address(&self) -> Option<&str> {
        self.ui_address.as_deref()
    }

    /// How many batches the status server keeps.
    pub fn get_ui_retained_batches(&self) -> usize {
        self.ui_retained_batches
    }

    /// How long the status server stays up after the context stops.
    pub fn get_ui_linger(&self) -> Duration {
        self.ui_linger
    }

    /// Where the event log is written, if it is on (see
    /// [`event_log_dir`](StreamingConfig::event_log_dir)).
    pub fn get_event_log_dir(&self) -> Option<&std::path::Path> {
        self.event_log_dir.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(c: StreamingConfig) -> String {
        c.validate().expect_err("must be rejected").to_string()
    }

    /// A manager that places nothing (only its settings are checked here).
    struct Nowhere;

    impl ClusterManager for Nowhere {
        fn name(&self) -> &str {
            "nowhere"
        }
        fn start_executor(&self, _slot: usize, _coordinator: &str) -> Result<()> {
            Ok(())
        }
        fn ended(&self, _slots: &[usize]) -> Vec<(usize, String)> {
            Vec::new()
        }
        fn kill_executor(&self, _slot: usize) -> Result<()> {
            Ok(())
        }
        fn stop_all(&self, _grace: Duration) {}
    }

    #[test]
    fn state_leaves_the_coordinator_only_with_processes_unless_kept_there() {
        assert!(!StreamingConfig::new().get_state_in_executor_processes());
        let cluster = StreamingConfig::new().local_cluster(2);
        assert!(cluster.get_state_in_executor_processes(), "the default");
        assert!(!cluster
            .state_in_executor_processes(false)
            .get_state_in_executor_processes());
    }

    #[test]
    fn state_on_processes_defaults_to_every_task_thread_of_the_run() {
        let two = StreamingConfig::new().executors(2);
        assert_eq!(two.get_state_parallelism(), 2);
        let cluster = two.clone().local_cluster(3);
        assert_eq!(cluster.get_state_parallelism(), 8);
        assert_eq!(
            cluster.get_default_parallelism(),
            2,
            "shuffles: the executors here"
        );
        assert_eq!(
            cluster
                .clone()
                .state_in_executor_processes(false)
                .get_state_parallelism(),
            2
        );
        assert_eq!(
            two.clone()
                .static_cluster("127.0.0.1:7077", 1)
                .get_state_parallelism(),
            4
        );
        let set = cluster.default_parallelism(5);
        assert_eq!(
            (set.get_state_parallelism(), set.get_default_parallelism()),
            (5, 5),
            "as set"
        );
    }

    #[test]
    fn task_threads_count_every_executor_process_and_not_the_shuffles() {
        let two = StreamingConfig::new().executors(2);
        assert_eq!(two.get_task_threads(), 2);
        assert_eq!(two.clone().local_cluster(3).get_task_threads(), 8);
        assert_eq!(
            two.clone()
                .static_cluster("127.0.0.1:7077", 1)
                .get_task_threads(),
            4
        );
        assert_eq!(
            two.local_cluster(1)
                .default_parallelism(7)
                .get_task_threads(),
            4,
            "the shuffles' partitions are another count"
        );
    }

    #[test]
    fn receivers_leave_the_coordinator_only_with_processes() {
        let on = StreamingConfig::new().receivers_in_executor_processes(true);
        assert!(!on.get_receivers_in_executor_processes(), "no processes");
        assert!(on
            .clone()
            .local_cluster(2)
            .get_receivers_in_executor_processes());
        assert!(on
            .clone()
            .static_cluster("127.0.0.1:7077", 2)
            .get_receivers_in_executor_processes());
        assert!(
            on.clone()
                .local_cluster(2)
                .receiver_wal(true)
                .get_receivers_in_executor_processes(),
            "the coordinator logs their blocks"
        );
        assert!(!StreamingConfig::new()
            .local_cluster(2)
            .get_receivers_in_executor_processes());
    }

    #[test]
    fn a_cluster_manager_is_checked_and_excludes_the_other_clusters() {
        let manager: std::sync::Arc<dyn ClusterManager> = std::sync::Arc::new(Nowhere);
        let managed = |listen: &str, host: &str, n| {
            StreamingConfig::new().cluster_manager(listen, host, n, manager.clone())
        };
        assert!(managed("0.0.0.0:7077", "10.0.0.5", 2).validate().is_ok());
        assert!(err(managed("nowhere", "10.0.0.5", 2)).contains("listen address"));
        assert!(err(managed("0.0.0.0:7077", "", 2)).contains("advertised host"));
        assert!(err(managed("0.0.0.0:7077", "a b", 2)).contains("advertised host"));
        assert!(err(managed("0.0.0.0:7077", "h", 0)).contains("1 to 64"));
        assert!(err(managed("0.0.0.0:7077", "h", 65)).contains("1 to 64"));
        assert!(err(managed("0.0.0.0:7077", "h", 2).local_cluster(1)).contains("excludes"));
        let one = managed("0.0.0.0:7077", "h", 2);
        assert_eq!(one.clone(), one, "the same manager");
        assert_ne!(
            one,
            StreamingConfig::new().cluster_manager(
                "0.0.0.0:7077",
                "h",
                2,
                std::sync::Arc::new(Nowhere)
            ),
            "another manager"
        );
        assert_eq!(
            one.get_managed_cluster().map(|m| m.manager.name()),
            Some("nowhere")
        );
    }

    #[test]
    fn rejects_bad_settings_naming_them() {
        let ms = Duration::from_millis;
        assert!(
            err(StreamingConfig::new().batch_interval(Duration::ZERO)).contains("batch_interval")
        );
        assert!(
            err(StreamingConfig::new().batch_interval(Duration::from_micros(1500)))
                .contains("whole milliseconds")
        );
        assert!(err(StreamingConfig::new()
            .batch_interval(ms(100))
            .block_interval(ms(200)))
        .contains("block_interval"));
        assert!(err(StreamingConfig::new().executors(0)).contains("executors"));
        assert!(err(StreamingConfig::new().default_parallelism(0)).contains("default_parallelism"));
        assert!(err(StreamingConfig::new().speculation_multiplier(0.5))
            .contains("speculation_multiplier"));
        assert!(
            err(StreamingConfig::new().speculation_quantile(0.0)).contains("speculation_quantile")
        );
        assert!(err(StreamingConfig::new().speculation_quantile(f64::NAN))
            .contains("speculation_quantile"));
        assert!(err(StreamingConfig::new().ui_address("localhost")).contains("ui_address"));
        assert!(err(StreamingConfig::new().ui_retained_batches(0)).contains("ui_retained_batches"));
        assert!(
            err(StreamingConfig::new().receiver_buffer_time(Duration::ZERO))
                .contains("receiver_buffer_time")
        );
        assert!(
            err(StreamingConfig::new().receiver_buffer_time(MAX_BATCH_INTERVAL + ms(1)))
                .contains("receiver_buffer_time")
        );
    }

    #[test]
    fn the_receiver_buffer_time_is_three_batch_intervals_by_default() {
        let c = StreamingConfig::new().batch_interval(Duration::from_millis(100));
        assert_eq!(c.get_receiver_buffer_time(), Duration::from_millis(300));
        let c = c.receiver_buffer_time(Duration::from_secs(2));
        assert_eq!(c.get_receiver_buffer_time(), Duration::from_secs(2));
    }

    #[test]
    fn speculation_is_on_by_default_with_spark_settings() {
        let s = StreamingConfig::new()
            .get_speculation()
            .expect("on by default");
        assert_eq!((s.multiplier, s.quantile), (1.5, 0.75));
        assert_eq!(
            StreamingConfig::new().speculation(false).get_speculation(),
            None
        );
    }

    #[test]
    fn pipelining_is_off_by_default_as_spark() {
        assert!(!StreamingConfig::new().get_pipelining());
        assert!(StreamingConfig::new().pipelining(true).get_pipelining());
    }

    #[test]
    fn block_interval_default_gives_two_blocks_per_executor_per_batch() {
        let ms = Duration::from_millis;
        let c = |batch: u64, executors: usize| {
            StreamingConfig::new()
                .batch_interval(ms(batch))
                .executors(executors)
                .get_block_interval()
        };
        assert_eq!(
            c(1000, 2),
            ms(200),
            "Spark's 200 ms where it gives enough blocks"
        );
        assert_eq!(c(1000, 4), ms(125));
        assert_eq!(c(100, 2), ms(25));
        assert_eq!(c(10, 2), ms(2));
        assert_eq!(c(1, 2), ms(1), "never under 1 ms");
        assert_eq!(c(50, 1), ms(25));
        assert_eq!(
            StreamingConfig::new()
                .batch_interval(ms(100))
                .block_interval(ms(100))
                .get_block_interval(),
            ms(100),
            "a set block interval is kept"
        );
        assert_eq!(
            StreamingConfig::new()
                .executors(3)
                .get_default_parallelism(),
            3
        );
    }
}
