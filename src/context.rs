//! [`StreamingContext`]: the entry point of a streaming program (Spark: `StreamingContext`).

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use rivulet_actors::cluster::{run_executor, ExecutorRole};
use rivulet_actors::{
    ActorReceiver, ActorSink, ActorSource, Runtime, RuntimeHandle, SledCheckpointStore, Status,
    StopMode,
};
use rivulet_framework::checkpoint::Restored;
use rivulet_framework::config::StreamingConfig;
use rivulet_framework::data::Data;
use rivulet_framework::dstream::{
    DStream, DStreamGraph, DirectOptions, DirectSource, DirectStream,
};
use rivulet_framework::listener::StreamingListener;
use rivulet_framework::rdd::{Rdd, RddContext};
use rivulet_framework::receiver::Receiver;
use rivulet_framework::scheduler::SchedulerMetrics;
use rivulet_framework::{CheckpointError, Error, OpInfo, Result};
use rivulet_receivers::{SocketTextReceiver, TextFileSource};

struct Inner {
    config: StreamingConfig,
    graph: DStreamGraph,
    pending_listeners: Mutex<Vec<Box<dyn StreamingListener>>>,
    runtime: Mutex<Option<RuntimeHandle>>,
    restored: OnceLock<Restored>,
}

/// A streaming program: its inputs, its DStream graph, and (once started) the actors running
/// it. Cheap to clone; clones share the context, so a task or listener can stop it.
///
/// Build the graph (inputs, operators, outputs), then [`start`](StreamingContext::start);
/// under the manual clock, run batches with [`advance`](StreamingContext::advance).
/// Lifecycle calls are async and must run inside an actix `System` (`#[actix::main]`,
/// `#[actix::test]`).
#[derive(Clone)]
pub struct StreamingContext {
    inner: Arc<Inner>,
}

impl fmt::Debug for StreamingContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamingContext")
            .field("config", &self.inner.config)
            .field("graph", &self.inner.graph)
            .finish()
    }
}

impl StreamingContext {
    /// A context with `config`. With a [`checkpoint_dir`](StreamingConfig::checkpoint_dir),
    /// the directory is opened (created if needed) and must not hold a checkpoint: restart
    /// from one with [`get_or_create`](StreamingContext::get_or_create), or delete it to
    /// start over.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting: a zero batch interval, a block interval larger
    /// than the batch interval, zero executors, ... (see [`StreamingConfig::validate`]);
    /// [`Error::Checkpoint`](rivulet_framework::Error::Checkpoint) when it cannot be
    /// opened, or holds a checkpoint.
    pub fn new(config: StreamingConfig) -> Result<StreamingContext> {
        let ssc = StreamingContext::open(config)?;
        if let Some(dir) = ssc.inner.config.get_checkpoint_dir() {
            let store = ssc.inner.graph.rdd_context().checkpoint_store();
            if DStreamGraph::load_checkpoint(&**store)?.is_some() {
                return Err(CheckpointError::Storage {
                    dir: dir.display().to_string(),
                    action: "start a new context".into(),
                    message: "the directory holds a checkpoint of an earlier run; restart from it with StreamingContext::get_or_create, or delete the directory to start over".into(),
                }
                .into());
            }
        }
        Ok(ssc)
    }

    /// Restarts from the checkpoint in `dir`, or starts anew (Spark:
    /// `StreamingContext.getOrCreate`). `build` defines the program's inputs, operators and
    /// outputs on a context whose [`checkpoint_dir`](StreamingConfig::checkpoint_dir) is
    /// `dir`; it runs in both cases, since checkpoints hold data, never code. If `dir` holds
    /// a checkpoint, the graph is then restored from it: the state of stateful and windowed
    /// streams, the last completed batch (batch times continue from it), the splits of
    /// polled inputs such as [`text_file_stream`](StreamingContext::text_file_stream) (the
    /// files it has read, so files that arrived while the program was down are read exactly
    /// once). Under the system clock the batches missed while the program was down run first,
    /// as in Spark. Records that receivers had received but not processed are replayed from
    /// the write-ahead log when [`receiver_wal`](StreamingConfig::receiver_wal) is on (else
    /// they are lost with the process, as in Spark).
    ///
    /// # Errors
    /// Those of [`new`](StreamingContext::new) and of `build`;
    /// [`CheckpointError::GraphChanged`](rivulet_framework::CheckpointError::GraphChanged)
    /// naming the DStreams that differ when `build` made another graph than the one that
    /// wrote the checkpoint; [`CheckpointError::PartitionsChanged`](rivulet_framework::CheckpointError::PartitionsChanged)
    /// for a state kept in another number of partitions than `build` asks for;
    /// [`CheckpointError::Corrupt`](rivulet_framework::CheckpointError::Corrupt),
    /// [`NewerFormat`](rivulet_framework::CheckpointError::NewerFormat) or
    /// [`OlderFormat`](rivulet_framework::CheckpointError::OlderFormat) naming the directory
    /// and key of a damaged, newer or older value, when no kept metadata checkpoint is usable
    /// (a damaged newest one falls back to the previous one: see
    /// [`restore_report`](StreamingContext::restore_report));
    /// [`CheckpointError::Locked`](rivulet_framework::CheckpointError::Locked) naming the pid
    /// of a running process that holds `dir`; [`CheckpointError::NotACheckpoint`](rivulet_framework::CheckpointError::NotACheckpoint)
    /// for a directory holding other files; [`CheckpointError::Layout`](rivulet_framework::CheckpointError::Layout)
    /// for one written by an older rivulet; [`CheckpointError::NoSpace`](rivulet_framework::CheckpointError::NoSpace)
    /// on a full file system.
    pub fn get_or_create(
        dir: impl Into<PathBuf>,
        config: StreamingConfig,
        build: impl FnOnce(&StreamingContext) -> Result<()>,
    ) -> Result<StreamingContext> {
        let ssc = StreamingContext::open(config.checkpoint_dir(dir))?;
        let restored = build(&ssc).and_then(|()| {
            let store = ssc.inner.graph.rdd_context().checkpoint_store().clone();
            let restored = DStreamGraph::load_checkpoint(&*store)?;
            if let Some(restored) = &restored {
                ssc.inner.graph.restore(&restored.checkpoint)?;
            }
            Ok((store, restored))
        });
        let (store, restored) = match restored {
            Ok(restored) => restored,
            Err(e) => {
                // The graph's streams hold the graph: release it (and the store) now.
                ssc.inner.graph.shutdown();
                return Err(e);
            }
        };
        if let Some(restored) = restored {
            tracing::info!(
                dir = %store.location(),
                batch_time_ms = restored.checkpoint.batch_time_ms,
                "Restored from checkpoint."
            );
            let _ = ssc.inner.restored.set(restored);
        }
        Ok(ssc)
    }

    /// The last completed batch of the checkpoint this context was restored from, if any.
    pub fn restored_batch(&self) -> Option<rivulet_framework::time::Time> {
        self.inner.graph.restored_batch()
    }

    /// What [`get_or_create`](StreamingContext::get_or_create) restored from: the metadata
    /// checkpoint, the newer ones it skipped as damaged (falling back to the previous
    /// complete one), and, when the store was older than the last batch the directory had
    /// completed, how many batches run again ([`Restored::batches_behind`]). `None` when the
    /// context did not restore.
    pub fn restore_report(&self) -> Option<&Restored> {
        self.inner.restored.get()
    }

    fn open(config: StreamingConfig) -> Result<StreamingContext> {
        config.validate()?;
        // An executor process reads no checkpoint: the coordinator owns the directory (and
        // holds its lock), and sends what a task needs.
        let config = match ExecutorRole::from_env()? {
            Some(_) => config.without_checkpoint_dir(),
            None => config,
        };
        crate::limits::check_executors(config.get_executors())?;
        let rdd_ctx = RddContext::new(config.get_default_parallelism());
        rdd_ctx.set_state_parallelism(config.get_state_parallelism());
        rdd_ctx.set_task_threads(config.get_task_threads());
        if let Some(dir) = config.get_checkpoint_dir() {
            rdd_ctx.set_checkpoint_store(Arc::new(SledCheckpointStore::open_with(
                dir,
                config.get_checkpoint_compaction(),
            )?));
        }
        let graph = DStreamGraph::new(
            config.get_batch_interval(),
            rdd_ctx,
            config.get_receiver_buffer_records(),
            config.get_remember(),
        );
        Ok(StreamingContext {
            inner: Arc::new(Inner {
                config,
                graph,
                pending_listeners: Mutex::new(Vec::new()),
                runtime: Mutex::new(None),
                restored: OnceLock::new(),
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &StreamingConfig {
        &self.inner.config
    }

    /// The DStream graph (for tools; programs use the input methods and `DStream` operators).
    pub fn graph(&self) -> &DStreamGraph {
        &self.inner.graph
    }

    /// Lines of text from a TCP server at `host:port`, one record per line (Spark:
    /// `socketTextStream`). Lines are decoded as UTF-8 with invalid bytes replaced (and
    /// counted); refused or dropped connections are logged and retried with backoff.
    ///
    /// A line longer than 1 MiB ([`DEFAULT_MAX_LINE_BYTES`](rivulet_receivers::DEFAULT_MAX_LINE_BYTES))
    /// is truncated, logged and counted (`ReceiverMetrics::truncated`, reported to listeners
    /// by `on_receiver_input_lost`); a line the connection ended in the middle of is stored
    /// as received and counted as `ReceiverMetrics::incomplete`. To raise the limit or choose another policy (skip,
    /// split, fail), pass a configured [`SocketTextReceiver`] to
    /// [`receiver_stream`](StreamingContext::receiver_stream):
    /// `ssc.receiver_stream(SocketTextReceiver::new(host, port).max_line_bytes(n).on_long_line(LongLinePolicy::Split))`.
    #[track_caller]
    pub fn socket_text_stream(&self, host: &str, port: u16) -> DStream<String> {
        let op = OpInfo::caller("socket_text_stream");
        self.inner
            .graph
            .receiver_stream_op(op, SocketTextReceiver::new(host, port))
    }

    /// Lines of the text files that appear in `dir`, each file read once, into the batch in
    /// which it was first seen (Spark: `textFileStream`). Files must be moved into `dir`
    /// atomically; names starting with `.` or `_` are ignored; files present at a fresh
    /// start are ignored, and after a restart with
    /// [`get_or_create`](StreamingContext::get_or_create) every file not read before the
    /// stop is read, exactly once. See [`TextFileSource`] for the details.
    ///
    /// Defaults: an entry that cannot be read (a subdirectory, a FIFO, a dangling symlink, a
    /// file that vanished before its read) is skipped and reported; files are remembered for
    /// 60 s and a file that appears with an older modification time is reported, not read.
    /// What each batch read and skipped reaches listeners through
    /// [`on_polled_input`](rivulet_framework::listener::StreamingListener::on_polled_input).
    /// To change these, use [`text_file_stream_with`](Self::text_file_stream_with).
    #[track_caller]
    pub fn text_file_stream(&self, dir: impl Into<PathBuf>) -> DStream<String> {
        let op = OpInfo::caller("text_file_stream");
        self.text_file_stream_op(op, TextFileSource::new(dir))
    }

    /// [`text_file_stream`](Self::text_file_stream) with a configured [`TextFileSource`]:
    /// its unreadable-input policy ([`UnreadablePolicy::Fail`](rivulet_framework::dstream::UnreadablePolicy::Fail)
    /// stops the context with [`Error::InputFailed`] naming the file), its remember window
    /// (rounded up to a whole number of batch intervals, as Spark's `FileInputDStream`), its
    /// longest line.
    ///
    /// ```no_run
    /// # use rivulet::prelude::*;
    /// # use rivulet::receivers::TextFileSource;
    /// # fn build(ssc: &StreamingContext) {
    /// let lines = ssc.text_file_stream_with(
    ///     TextFileSource::new("/data/in")
    ///         .on_unreadable(UnreadablePolicy::Fail)
    ///         .remember(std::time::Duration::from_secs(300)),
    /// );
    /// # }
    /// ```
    #[track_caller]
    pub fn text_file_stream_with(&self, source: TextFileSource) -> DStream<String> {
        let op = OpInfo::caller("text_file_stream");
        self.text_file_stream_op(op, source)
    }

    /// A direct input DStream over a replayable source (Spark:
    /// `KafkaUtils.createDirectStream`): as each batch is cut, the coordinator takes from each
    /// partition of `source` the offsets from where the last batch stopped to the latest
    /// (capped by [`DirectOptions::max_rate_per_partition`]), records them in the metadata
    /// checkpoint, and the batch's RDD reads exactly those ranges on the executors, one
    /// partition per source partition. Recomputing a lost partition or a restarted program's
    /// pending batches reads the same ranges again: exactly-once input without a write-ahead
    /// log. After a batch's outputs all succeeded its ranges go to
    /// [`DirectSource::commit`]. See [`rivulet_framework::dstream::direct`].
    ///
    /// Returns the stream (`.stream()`) and each batch's ranges (`.offset_ranges(t)`, Spark's
    /// `HasOffsetRanges`).
    #[track_caller]
    pub fn direct_stream<S: DirectSource>(
        &self,
        source: S,
        options: DirectOptions,
    ) -> DirectStream<S::Item> {
        self.inner
            .graph
            .direct_stream_op(OpInfo::caller("direct_stream"), source, options)
    }

    fn text_file_stream_op(&self, op: OpInfo, source: TextFileSource) -> DStream<String> {
        let source = source.round_remember_to(self.inner.config.get_batch_interval());
        self.inner.graph.polled_stream_op(op, source)
    }

    /// A stream whose `i`-th batch holds `batches[i]` (in default-parallelism partitions),
    /// then empty batches (Spark: `queueStream`). For tests.
    #[track_caller]
    pub fn queue_stream<T: Data>(&self, batches: Vec<Vec<T>>) -> DStream<T> {
        self.inner
            .graph
            .queue_stream_op(OpInfo::caller("queue_stream"), batches)
    }

    /// A stream fed by events that actors, tasks or threads send through the returned
    /// [`ActorSource`] (Spark: `actorStream`). Every event a send accepted is in exactly one
    /// batch; `send` waits while the stream is backpressured (its buffer of
    /// `receiver_buffer_records` is full), `try_send` hands the event back. The source also
    /// gives an actix `Recipient<Event<T>>` for actors. After the context stops, sends fail.
    ///
    /// # Panics
    /// Outside an actix `System` (the source's actor needs an arbiter).
    ///
    /// # Examples
    /// ```
    /// use rivulet::actors::Event;
    /// use rivulet::prelude::*;
    ///
    /// #[actix::main]
    /// async fn main() -> Result<()> {
    ///     let ssc = StreamingContext::new(StreamingConfig::new().manual_clock(true).executors(1))?;
    ///     let (clicks, source) = ssc.actor_stream::<String>("clicks");
    ///     let out = clicks.count().collect_batches();
    ///     ssc.start().await?;
    ///     source.send("home".into()).await.expect("running");
    ///     source.recipient().send(Event("about".into())).await.expect("mailbox").expect("running");
    ///     ssc.advance(1).await?;
    ///     ssc.stop(StopMode::Graceful).await?;
    ///     assert_eq!(out.batches()[0], vec![2]);
    ///     Ok(())
    /// }
    /// ```
    #[track_caller]
    pub fn actor_stream<T: Data>(&self, name: &str) -> (DStream<T>, ActorSource<T>) {
        let op = OpInfo::caller("actor_stream");
        let (stream, buffer) = self
            .inner
            .graph
            .pushed_stream_op::<T>(op, format!("actor stream {name}"));
        (stream, ActorSource::new(name, buffer))
    }

    /// A stream fed by a user-written actix actor, `make(sink)`, which stores what it
    /// receives with its [`ActorSink`] (Spark: `actorStream` with `ActorHelper.store`). The
    /// actor runs on its own arbiter under the receiver supervisor: when it panics or stops
    /// it is made again with backoff, and past the restart limit the context stops with an
    /// error naming it.
    #[track_caller]
    pub fn actor_receiver_stream<T, A, F>(&self, make: F) -> DStream<T>
    where
        T: Data,
        A: actix::Actor<Context = actix::Context<A>>,
        F: Fn(ActorSink<T>) -> A + Send + Sync + 'static,
    {
        let op = OpInfo::caller("actor_receiver_stream");
        let name = format!("actor receiver {}", std::any::type_name::<A>());
        self.inner
            .graph
            .receiver_stream_op(op, ActorReceiver::new(name, make))
    }

    /// A stream fed by a custom `receiver` (Spark: `receiverStream`).
    #[track_caller]
    pub fn receiver_stream<R: Receiver>(&self, receiver: R) -> DStream<R::Item> {
        self.inner
            .graph
            .receiver_stream_op(OpInfo::caller("receiver_stream"), receiver)
    }

    /// One stream fed by several `receivers` that read parts of one source in parallel
    /// (partitions of a topic, several connections, slices of a file), each on its own
    /// thread with its own buffer: each batch holds the blocks of every receiver, unioned in
    /// the order given (Spark: the union of several `receiverStream`s, its advice for input
    /// that one receiver cannot take in). Each receiver is supervised, rate-controlled and
    /// write-ahead-logged on its own, as with [`receiver_stream`](StreamingContext::receiver_stream).
    ///
    /// # Errors
    /// [`GraphError::NoStreams`](rivulet_framework::GraphError::NoStreams) if `receivers`
    /// is empty.
    ///
    /// # Examples
    /// Two connections read in parallel, counted as one stream:
    /// ```
    /// use rivulet::prelude::*;
    /// use rivulet::receivers::SocketTextReceiver;
    ///
    /// # fn main() -> Result<()> {
    /// let ssc = StreamingContext::new(StreamingConfig::new().executors(2))?;
    /// let lines = ssc.receiver_streams(
    ///     [9001, 9002].map(|port| SocketTextReceiver::new("127.0.0.1", port)),
    /// )?;
    /// let counts = lines.map(|line| (line, 1u64)).reduce_by_key(|a, b| a + b);
    /// counts.print(10);
    /// // ssc.start().await?; ssc.await_termination().await?;
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn receiver_streams<R: Receiver>(
        &self,
        receivers: impl IntoIterator<Item = R>,
    ) -> Result<DStream<R::Item>> {
        let op = OpInfo::caller("receiver_streams");
        let streams: Vec<DStream<R::Item>> = receivers
            .into_iter()
            .map(|r| self.inner.graph.receiver_stream_op(op, r))
            .collect();
        self.inner.graph.union_streams_op(op, &streams)
    }

    /// A static RDD of `data` in `partitions` partitions, e.g. historical data to join with
    /// each batch inside `transform` (Spark: `sparkContext.parallelize`).
    ///
    /// # Panics
    /// If `partitions` is zero.
    #[track_caller]
    pub fn parallelize<T: Data>(&self, data: Vec<T>, partitions: usize) -> Rdd<T> {
        self.inner.graph.rdd_context().parallelize(data, partitions)
    }

    /// The union of `streams`, batch by batch, in order (Spark: `StreamingContext.union`).
    ///
    /// # Errors
    /// [`GraphError::NoStreams`](rivulet_framework::GraphError::NoStreams) if `streams` is
    /// empty; streams with different slide durations make `start` fail.
    #[track_caller]
    pub fn union<T: Data>(&self, streams: &[DStream<T>]) -> Result<DStream<T>> {
        self.inner
            .graph
            .union_streams_op(OpInfo::caller("union"), streams)
    }

    /// A stream whose RDD at each batch time is `f(the RDDs of all streams at that time,
    /// time)` (Spark: `StreamingContext.transform`).
    ///
    /// # Errors
    /// As [`union`](StreamingContext::union).
    #[track_caller]
    pub fn transform<T: Data, R: Data>(
        &self,
        streams: &[DStream<T>],
        f: impl Fn(&[Rdd<T>], rivulet_framework::time::Time) -> Rdd<R> + Send + Sync + 'static,
    ) -> Result<DStream<R>> {
        self.inner
            .graph
            .transform_streams_op(OpInfo::caller("transform"), streams, f)
    }

    /// Adds a listener for batch, output and receiver events. Listeners run on the
    /// coordinator and must return quickly.
    pub fn add_listener(&self, listener: impl StreamingListener) {
        match self.inner.runtime.lock().as_ref() {
            Some(runtime) => runtime.add_listener_now(Box::new(listener)),
            None => self.inner.pending_listeners.lock().push(Box::new(listener)),
        }
    }

    fn runtime(&self) -> Result<RuntimeHandle> {
        self.inner
            .runtime
            .lock()
            .clone()
            .ok_or_else(|| Error::NotRunning("call start() first".into()))
    }

    /// Validates the graph and starts the receivers, executors and coordinator; with a
    /// [`local_cluster`](StreamingConfig::local_cluster), also starts the executor
    /// processes and waits until each registered (they print nothing on stdout; their log
    /// goes to stderr).
    ///
    /// In a process started as an executor process ([`is_executor_process`](StreamingContext::is_executor_process)),
    /// `start` never returns: the process runs tasks for its coordinator and exits when the
    /// coordinator stops it (status 0) or goes away (status 1).
    ///
    /// # Errors
    /// [`Error::Graph`] for an invalid graph (no output operation, a window that is not a
    /// multiple of the slide, ...); [`Error::NotRunning`] if already started;
    /// [`Error::Crashed`] when an executor process did not register within 60 s.
    pub async fn start(&self) -> Result<()> {
        if let Some(role) = ExecutorRole::from_env()? {
            run_executor(self.inner.graph.clone(), &self.inner.config, role);
        }
        let mut runtime = self.inner.runtime.lock();
        if runtime.is_some() {
            return Err(Error::NotRunning(
                "the streaming context was already started".into(),
            ));
        }
        let listeners = std::mem::take(&mut *self.inner.pending_listeners.lock());
        *runtime = Some(Runtime::start(
            self.inner.graph.clone(),
            &self.inner.config,
            listeners,
        )?);
        Ok(())
    }

    /// The executor processes of the [local](StreamingConfig::local_cluster) or
    /// [static](StreamingConfig::static_cluster) cluster, in slot order: executor id, pid, whether connected, losses so far. Empty before start and
    /// without a local cluster.
    pub fn executor_processes(&self) -> Vec<rivulet_actors::cluster::ExecutorProcess> {
        self.runtime()
            .map(|r| r.executor_processes())
            .unwrap_or_default()
    }

    /// Whether this process was started as an executor process of a local cluster (its
    /// coordinator set `RIVULET_EXECUTOR_OF`). The program runs up to
    /// [`start`](StreamingContext::start) there too, which never returns in such a process;
    /// guard side effects before `start` that only the coordinator should have (writing
    /// an output directory, serving input) with it.
    pub fn is_executor_process() -> bool {
        std::env::var_os("RIVULET_EXECUTOR_OF").is_some()
    }

    /// The status page's URL, e.g. `http://127.0.0.1:4040/`, once started with a
    /// [`ui_address`](StreamingConfig::ui_address) (with port 0, the port actually bound);
    /// `None` before start or when the UI is off. Spark's status API is under
    /// `api/v1/applications/{app}/streaming/` (alias `api/v1/streaming/`; see the README's
    /// "Watching a run") and the Prometheus metrics at `metrics` of this URL.
    pub fn ui_url(&self) -> Option<String> {
        let address = self.inner.runtime.lock().as_ref()?.ui_address()?;
        Some(format!("http://{address}/"))
    }

    /// Runs the next `batches` batches to completion on the manual clock (Spark tests'
    /// `ManualClock.advance` + waiting for the batches).
    ///
    /// # Errors
    /// The first failed batch's error, after all `batches` ran; [`Error::Config`] without
    /// the manual clock; [`Error::NotRunning`] before start or after stop.
    pub async fn advance(&self, batches: u32) -> Result<()> {
        self.runtime()?.advance(batches).await
    }

    /// Waits until the context stops, or a batch fails (Spark: `awaitTermination`).
    ///
    /// # Errors
    /// The first failed batch's error (the context keeps running), or the error that
    /// stopped it (a receiver or the executors past their restart limits, or
    /// [`Error::Crashed`] when the coordinator died: only a clean stop returns `Ok`);
    /// [`Error::NotRunning`] before start.
    pub async fn await_termination(&self) -> Result<()> {
        self.runtime()?.await_termination().await
    }

    /// Stops the context: [`StopMode::Graceful`] processes everything received and every
    /// batch already cut first (and cuts no batch after the last received block is in one),
    /// [`StopMode::Now`] drops what is not processed. Returns once stopped: the executor
    /// and receiver threads have ended (a task running at a `Now` stop finishes first), so
    /// a new context may open the same checkpoint directory at once.
    ///
    /// # Errors
    /// [`Error::NotRunning`] if never started; [`Error::Crashed`] if the coordinator died
    /// instead of stopping cleanly (see [`crash_coordinator`](Self::crash_coordinator)).
    pub async fn stop(&self, mode: StopMode) -> Result<()> {
        self.runtime()?.stop(mode).await
    }

    /// Fault injection for tests and chaos drills: makes the coordinator die abruptly, as a
    /// panic in it would, without a clean stop. The context escalates: it stops,
    /// [`status`](Self::status) reports `Stopped` with [`Error::Crashed`] ("the coordinator
    /// stopped unexpectedly: ..."), [`await_termination`](Self::await_termination) returns
    /// that error, and later [`advance`](Self::advance) and [`stop`](Self::stop) calls
    /// return errors. Not for production use: the context does not recover.
    ///
    /// # Errors
    /// [`Error::NotRunning`] before start or once stopped.
    pub async fn crash_coordinator(&self) -> Result<()> {
        self.runtime()?.crash_coordinator().await
    }

    /// Where the context stands; `None` before start.
    pub fn status(&self) -> Option<Status> {
        self.inner.runtime.lock().as_ref().map(|r| r.status())
    }

    /// Kills executor `executor` (numbered from 0) as a crash outside a task would, for
    /// tests and chaos drills: its thread stops and its block store is lost. Tasks running
    /// on it come back as lost and run elsewhere; lost cached partitions and shuffle outputs
    /// are recomputed from lineage; input blocks are read from their replica on another
    /// executor (with one executor there is none, and the batch fails). A new executor
    /// takes its place at once. Returns once the loss is handled; see
    /// [`scheduler_metrics`](StreamingContext::scheduler_metrics) for what it cost.
    ///
    /// An executor process's id (see [`executor_processes`](StreamingContext::executor_processes))
    /// SIGKILLs that process: a real crash, detected when its connection closes, after
    /// which a new process takes its slot (a local cluster; a static cluster's processes are
    /// not this coordinator's to kill: [`Error::Config`]).
    ///
    /// To kill from inside a task or output function, which are not async, wait on it with
    /// `futures::executor::block_on`.
    ///
    /// # Errors
    /// [`Error::Config`] naming the index and the executor count when `executor` is out of
    /// range; [`Error::NotRunning`] before start or after stop.
    pub async fn kill_executor(&self, executor: usize) -> Result<()> {
        self.runtime()?.kill_executor(executor).await
    }

    /// Makes executor `executor` (numbered from 0) sleep `delay` before each task, a
    /// straggler for speculation tests and benches (see
    /// [`StreamingConfig::speculation`]); `Duration::ZERO` clears it.
    ///
    /// # Errors
    /// [`Error::Config`] naming the index and the executor count when `executor` is out of
    /// range; [`Error::NotRunning`] before start or after stop.
    pub async fn slow_executor(&self, executor: usize, delay: std::time::Duration) -> Result<()> {
        self.runtime()?.slow_executor(executor, delay).await
    }

    /// What the scheduler healed since start (executors lost, tasks rerun, map stages
    /// resubmitted, speculative copies); `None` before start.
    pub fn scheduler_metrics(&self) -> Option<SchedulerMetrics> {
        self.inner
            .runtime
            .lock()
            .as_ref()
            .map(|r| r.scheduler_metrics())
    }
}
