//! [`DStreamGraph`]: the streams, inputs and outputs of one streaming program, and how a
//! batch time becomes jobs (Spark: `DStreamGraph` + `ReceivedBlockTracker`'s allocation).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;

use crate::block::{BlockInfo, StreamId};
use crate::checkpoint::{
    Checkpointer, InputCut, InputState, MetadataCheckpoint, Restored, StoreStats, StreamSignature,
};
use crate::dstream::block_tracker::BlockTracker;
use crate::dstream::job::OutputJob;
use crate::dstream::{CheckpointSetting, DStreamId, DStreamNode};
use crate::error::{panic_message, CheckpointError, Error, GraphError, OpInfo, Result};
use crate::listener::PolledInputInfo;
use crate::rdd::{Dependency, RddBase, RddContext, RddId, ShuffleId, ShuffleMap};
use crate::receiver::ReceiverSlot;
use crate::scheduler::GenerationGuard;
use crate::time::Time;

type GenerateFn = dyn Fn(Time) -> Result<Option<OutputJob>> + Send + Sync;

/// How many records a queue stream holds in the batch at a time.
pub(crate) type QueuedRecords = Arc<dyn Fn(Time) -> usize + Send + Sync>;

#[derive(Clone)]
pub(crate) struct OutputOp {
    op: OpInfo,
    node: Arc<dyn DStreamNode>,
    generate: Arc<GenerateFn>,
}

/// What a restorable input stream (one whose batches can be recomputed after a restart)
/// saves in the metadata checkpoint and reads back.
pub(crate) trait RestorableInput: Send + Sync {
    /// The input DStream's id.
    fn stream(&self) -> DStreamId;
    /// Prepares a fresh start (not called when restored from a checkpoint).
    fn start(&self) -> Result<()>;
    /// Its state: what it needs to recompute the batches after `horizon` and to resume.
    fn save(&self, horizon: Time) -> Result<Vec<u8>>;
    /// Restores the state `save` returned (from the store at `dir`, for errors).
    fn restore(&self, state: &[u8], dir: &str) -> Result<()>;
    /// Finds batch `t`'s input before its jobs are generated (a polled input polls its
    /// source); an error is kept and fails the batch's generation.
    fn prepare(&self, _t: Time) {}
    /// What batch `t` read and lost, taken once its jobs ran (every output operation
    /// `succeeded`, or not); with the error that must stop the context, if any.
    fn take_report(&self, _t: Time, _succeeded: bool) -> Option<(PolledInputInfo, Option<Error>)> {
        None
    }
    /// Whether batch `t` failed for good on this input (see [`DStreamGraph::input_failed`]).
    fn failed(&self, _t: Time) -> bool {
        false
    }
    /// Whether it takes a rate limit from backpressure.
    fn rate_controlled(&self) -> bool {
        false
    }
    /// Sets its rate limit (records per second; `None`: none).
    fn set_rate(&self, _records_per_sec: Option<f64>) {}
    /// What batch `t` reads, encoded for an executor process (a polled input's splits).
    fn batch_splits(&self, _t: Time) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Installs what [`batch_splits`](Self::batch_splits) returned on the coordinator
    /// (`None`: the coordinator has no splits for `t`; the batch reads none here).
    fn install_batch_splits(&self, _t: Time, _encoded: Option<&[u8]>) -> Result<()> {
        Ok(())
    }
    /// Forgets what it holds of batches at or before `t` (an executor process's graph,
    /// which writes no checkpoint that would trim it).
    fn forget_up_to(&self, _t: Time) {}
    /// What this process's tasks read of batch `t` since the last call.
    fn take_reads(&self, _t: Time) -> Option<crate::dstream::InputReads> {
        None
    }
    /// Adds what an executor process's task read of batch `t` to the batch's report.
    fn merge_reads(&self, _t: Time, _reads: crate::dstream::InputReads) {}
}

/// What the polled inputs of one batch read and lost (see
/// [`DStreamGraph::take_input_reports`]).
#[derive(Debug, Default)]
pub struct InputReports {
    /// One per polled input, in registration order.
    pub inputs: Vec<PolledInputInfo>,
    /// The first error that must stop the streaming context (an input that could not be
    /// read under [`UnreadablePolicy::Fail`](crate::dstream::UnreadablePolicy::Fail)).
    pub fatal: Option<Error>,
}

/// The default data checkpoint interval of a stream with slide `slide`: the smallest
/// multiple of the slide that is at least 10 s (Spark's `DStream.initialize`).
pub(crate) fn default_checkpoint_interval(slide: Duration) -> Duration {
    let slide_ms = (crate::time::duration_ms(slide) as u64).max(1);
    Duration::from_millis(slide_ms * 10_000u64.div_ceil(slide_ms).max(1))
}

#[derive(Default)]
struct GraphState {
    nodes: Vec<Arc<dyn DStreamNode>>,
    outputs: Vec<OutputOp>,
    receivers: Vec<ReceiverSlot>,
    next_input: StreamId,
    errors: Vec<GraphError>,
    started: bool,
    max_remember: Duration,
    inputs: Vec<Arc<dyn RestorableInput>>,
    /// The queue streams' records per batch.
    queues: Vec<QueuedRecords>,
    checkpoint_interval: Option<Duration>,
    /// The last completed batch of the run a restore came from.
    restored: Option<Time>,
    /// The metadata checkpoint restored from.
    restored_checkpoint: Option<Arc<MetadataCheckpoint>>,
}

/// The graph's shared state, behind every `DStream` handle.
pub(crate) struct GraphShared {
    batch_interval: Duration,
    rdd_ctx: Arc<RddContext>,
    receiver_buffer: usize,
    user_remember: Option<Duration>,
    zero_time: OnceLock<Time>,
    state: Mutex<GraphState>,
    /// Input blocks allocated to each batch (Spark: `ReceivedBlockTracker`).
    blocks: BlockTracker,
    checkpointer: Checkpointer,
    /// Whether the graph was shut down: held for the whole of a metadata checkpoint write,
    /// so that none is written (or half written) once the context stopped.
    shut_down: Mutex<bool>,
    /// In an executor process: the batches generated for map tasks, newest last.
    executor_batches: Mutex<std::collections::BTreeSet<Time>>,
    /// In an executor process, while it generates batch `t`: `t`. Streams generate no RDD
    /// for an earlier batch then, so that a stateful stream does not recurse back to the
    /// run's first batch (a process joins late, and keeps few batches); the map stages
    /// sent to a process never read earlier batches (see
    /// [`computable_remotely`](crate::rdd::computable_remotely)), so what they read is
    /// exact.
    executor_floor: Mutex<Option<Time>>,
}

/// How many batches an executor process keeps generated: tasks of older batches (a
/// recomputation far behind) generate theirs again.
const EXECUTOR_BATCHES: usize = 8;

impl GraphShared {
    pub(crate) fn next_stream_id(&self, op: OpInfo) -> DStreamId {
        let mut state = self.state.lock();
        if state.started {
            state
                .errors
                .push(GraphError::AlreadyStarted(op.to_string()));
            tracing::error!(operator = %op, "DStream added after start; it will not run.");
        }
        state.nodes.len() as DStreamId
    }

    pub(crate) fn add_node(&self, node: Arc<dyn DStreamNode>) {
        self.state.lock().nodes.push(node);
    }

    pub(crate) fn add_output(
        &self,
        op: OpInfo,
        node: Arc<dyn DStreamNode>,
        generate: impl Fn(Time) -> Result<Option<OutputJob>> + Send + Sync + 'static,
    ) {
        let mut state = self.state.lock();
        if state.started {
            tracing::error!(operator = %op, "Output operation added after start; it will not run.");
            state
                .errors
                .push(GraphError::AlreadyStarted(op.to_string()));
            return;
        }
        state.outputs.push(OutputOp {
            op,
            node,
            generate: Arc::new(generate),
        });
    }

    /// Records a graph error found while building; `start` reports it.
    pub(crate) fn add_error(&self, error: GraphError) {
        tracing::error!(%error, "Invalid DStream graph.");
        self.state.lock().errors.push(error);
    }

    /// Registers the receiver `make(stream, buffer capacity, block size cap)` builds, and returns
    /// its stream with what else `make` returned (e.g. a handle to the buffer). Blocks
    /// are capped at `capacity / (2 * task threads)` records
    /// ([`RddContext::task_threads`]: the executor processes' threads included), so a
    /// source that fills its whole buffer within one block interval still gives the batch
    /// at least two map tasks for every task thread of the run.
    pub(crate) fn add_receiver<X>(
        &self,
        make: impl FnOnce(StreamId, usize, usize) -> (ReceiverSlot, X),
    ) -> (StreamId, X) {
        let mut state = self.state.lock();
        let stream = state.next_input;
        state.next_input += 1;
        let max_block = (self.receiver_buffer / (2 * self.rdd_ctx.task_threads())).max(1);
        let (slot, extra) = make(stream, self.receiver_buffer, max_block);
        state.receivers.push(slot);
        (stream, extra)
    }

    /// The earliest batch streams may generate an RDD for, in an executor process.
    pub(crate) fn executor_floor(&self) -> Option<Time> {
        *self.executor_floor.lock()
    }

    pub(crate) fn zero_time(&self) -> Option<Time> {
        self.zero_time.get().copied()
    }

    pub(crate) fn batch_interval(&self) -> Duration {
        self.batch_interval
    }

    pub(crate) fn rdd_context(&self) -> &Arc<RddContext> {
        &self.rdd_ctx
    }

    /// The last completed batch of the run this graph was restored from, if any.
    pub(crate) fn restored(&self) -> Option<Time> {
        self.state.lock().restored
    }

    /// The polled inputs, in registration order.
    pub(crate) fn inputs(&self) -> Vec<Arc<dyn RestorableInput>> {
        self.state.lock().inputs.clone()
    }

    /// Registers an input stream that saves and restores its state through checkpoints.
    pub(crate) fn add_restorable_input(&self, input: Arc<dyn RestorableInput>) {
        self.state.lock().inputs.push(input);
    }

    /// Registers a queue stream by its records per batch (see
    /// [`DStreamGraph::queued_records`]).
    pub(crate) fn add_queue(&self, records: QueuedRecords) {
        self.state.lock().queues.push(records);
    }

    /// The oldest batch whose input may still be needed after batch `t`: by a stream's
    /// remember duration, or to recompute a checkpointed stream from its newest data
    /// checkpoint (and a window's length before it).
    pub(crate) fn input_horizon(&self, t: Time) -> Time {
        let (nodes, max_remember) = {
            let state = self.state.lock();
            (state.nodes.clone(), state.max_remember)
        };
        let zero = self.zero_time().unwrap_or(Time::ZERO);
        let oldest_checkpoint = nodes
            .iter()
            .filter(|n| n.info().checkpoint_interval().is_some())
            .map(|n| self.checkpointer.latest_time(n.info().id()).unwrap_or(zero))
            .min()
            .unwrap_or(t);
        t.min(oldest_checkpoint) - max_remember
    }

    pub(crate) fn allocated_blocks(&self, stream: StreamId, t: Time) -> Vec<BlockInfo> {
        self.blocks.of_stream(stream, t)
    }

    /// Records a complete data checkpoint a checkpoint job wrote.
    pub(crate) fn record_data_checkpoint(&self, written: crate::checkpoint::DataCheckpoint) {
        self.checkpointer.record_data(written);
    }
}

/// The DStream graph of one streaming program. Cheap to clone; clones share the graph.
#[derive(Clone)]
pub struct DStreamGraph {
    shared: Arc<GraphShared>,
}

impl fmt::Debug for DStreamGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.lock();
        f.debug_struct("DStreamGraph")
            .field("batch_interval", &self.shared.batch_interval)
            .field("streams", &state.nodes.len())
            .field("outputs", &state.outputs.len())
            .field("zero_time", &self.shared.zero_time())
            .finish()
    }
}

impl DStreamGraph {
    /// An empty graph cutting batches every `batch_interval`, building RDDs in `rdd_ctx`,
    /// giving each receiver a buffer of `receiver_buffer` records, remembering RDDs at least
    /// `remember` (or one slide).
    pub fn new(
        batch_interval: Duration,
        rdd_ctx: Arc<RddContext>,
        receiver_buffer: usize,
        remember: Option<Duration>,
    ) -> DStreamGraph {
        DStreamGraph {
            shared: Arc::new(GraphShared {
                batch_interval,
                rdd_ctx,
                receiver_buffer,
                user_remember: remember,
                zero_time: OnceLock::new(),
                state: Mutex::new(GraphState::default()),
                blocks: BlockTracker::default(),
                checkpointer: Checkpointer::new(),
                shut_down: Mutex::new(false),
                executor_batches: Mutex::default(),
                executor_floor: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<GraphShared> {
        &self.shared
    }

    /// The batch interval.
    pub fn batch_interval(&self) -> Duration {
        self.shared.batch_interval
    }

    /// The RDD context of the graph's RDDs (set its job runner before the first batch).
    pub fn rdd_context(&self) -> &Arc<RddContext> {
        &self.shared.rdd_ctx
    }

    /// The graph's zero time, once started: batch times are `zero + k * batch_interval`.
    pub fn zero_time(&self) -> Option<Time> {
        self.shared.zero_time()
    }

    /// How long the longest-remembering stream keeps its RDDs (valid after `start`); blocks
    /// of older batches may be dropped.
    pub fn max_remember(&self) -> Duration {
        self.shared.state.lock().max_remember
    }

    /// Validates the graph, fixes its zero time, and hands out its receivers (Spark:
    /// `DStreamGraph.start` + `validate`).
    ///
    /// # Errors
    /// [`Error::Graph`] with the first problem found while building the graph (a window not
    /// a multiple of the slide, mismatched slides, a stream added after start), or
    /// [`GraphError::NoOutputs`].
    pub fn start(&self, zero_time: Time) -> Result<Vec<ReceiverSlot>> {
        self.prepare(zero_time, true)
    }

    /// Starts the graph in an executor process of a cluster (see
    /// [`executor_shuffle`](DStreamGraph::executor_shuffle)): as [`start`](DStreamGraph::start)
    /// with the coordinator's zero time, except that no input starts (the coordinator's
    /// sources read the input, and it says which receivers, if any, this process runs).
    /// Returns the graph's receivers, not started.
    ///
    /// # Errors
    /// As [`start`](DStreamGraph::start).
    pub fn start_as_executor(&self, zero_time: Time) -> Result<Vec<ReceiverSlot>> {
        self.prepare(zero_time, false)
    }

    fn prepare(&self, zero_time: Time, start_inputs: bool) -> Result<Vec<ReceiverSlot>> {
        let mut state = self.shared.state.lock();
        if state.started {
            return Err(Error::NotRunning("the graph was already started".into()));
        }
        if let Some(e) = state.errors.first() {
            return Err(e.clone().into());
        }
        if state.outputs.is_empty() {
            return Err(GraphError::NoOutputs.into());
        }
        // Every stream remembers at least one slide (and what the user asked); outputs'
        // needs flow to their parents (Spark: `DStream.initialize` + `remember`).
        for node in &state.nodes {
            let info = node.info();
            info.require_remember(
                info.slide()
                    .max(self.shared.user_remember.unwrap_or_default()),
            );
        }
        let default_interval = state.checkpoint_interval;
        for node in &state.nodes {
            let info = node.info();
            if info.checkpoint_setting() == CheckpointSetting::Default {
                let slide = info.slide();
                let interval = default_interval
                    .filter(|d| crate::time::is_multiple(*d, slide))
                    .unwrap_or_else(|| default_checkpoint_interval(slide));
                info.set_checkpoint(CheckpointSetting::Every(interval));
            }
        }
        state.max_remember = state
            .nodes
            .iter()
            .map(|n| n.info().remember())
            .max()
            .unwrap_or_default();
        if state.restored.is_none() && start_inputs {
            for input in &state.inputs {
                input.start()?;
            }
        }
        state.started = true;
        // A restored graph keeps the zero time of the run it restores.
        let _ = self.shared.zero_time.set(zero_time);
        Ok(std::mem::take(&mut state.receivers))
    }

    /// Sets the data checkpoint interval of stateful streams that did not set their own
    /// (`None`: the smallest multiple of the slide that is at least 10 s). Call before
    /// `start`; an interval that is not a multiple of a stream's slide falls back to the
    /// default for that stream.
    pub fn set_checkpoint_interval(&self, interval: Option<Duration>) {
        self.shared.state.lock().checkpoint_interval = interval;
    }

    /// The graph's fingerprint: every DStream's id, operator and slide, in id order.
    pub fn fingerprint(&self) -> Vec<StreamSignature> {
        self.shared
            .state
            .lock()
            .nodes
            .iter()
            .map(|n| StreamSignature {
                id: n.info().id(),
                op: n.info().op().name.to_string(),
                slide_ms: crate::time::duration_ms(n.info().slide()) as u64,
            })
            .collect()
    }

    /// The graph's streams, with their operators, call sites and parents, and its outputs:
    /// what the status page draws as a DAG.
    pub fn describe(&self) -> super::GraphDescription {
        use super::describe::call_site;
        let state = self.shared.state.lock();
        super::GraphDescription {
            streams: state
                .nodes
                .iter()
                .map(|n| {
                    let info = n.info();
                    super::StreamDescription {
                        id: info.id(),
                        op: info.op().name.to_string(),
                        call_site: call_site(info.op().location),
                        slide_ms: crate::time::duration_ms(info.slide()) as u64,
                        parents: info.parent_ids(),
                    }
                })
                .collect(),
            outputs: state
                .outputs
                .iter()
                .enumerate()
                .map(|(id, o)| super::OutputDescription {
                    id,
                    op: o.op.name.to_string(),
                    call_site: call_site(o.op.location),
                    stream: o.node.info().id(),
                })
                .collect(),
        }
    }

    /// The newest usable metadata checkpoint in `store`, if any (see
    /// [`Checkpointer::load`]: a damaged newest one falls back to the previous complete one,
    /// and a rollback is reported).
    ///
    /// # Errors
    /// [`Error::Checkpoint`] if metadata checkpoints exist but none can be read (corrupt, or
    /// of a newer format).
    pub fn load_checkpoint(
        store: &dyn crate::checkpoint::CheckpointStore,
    ) -> Result<Option<Restored>> {
        Checkpointer::load(store)
    }

    /// Restores the graph from `checkpoint` before `start`: checks that it was written by
    /// this graph, then puts each stream's data checkpoint back as its RDD (with the
    /// checkpoint's partition count) and each input's state back (a polled input's from the
    /// newest input cut after the checkpoint when there is one), and takes the checkpoint's
    /// zero time (a later `start` keeps it); batches continue after
    /// [`restored_batch`](DStreamGraph::restored_batch).
    ///
    /// # Errors
    /// [`CheckpointError::GraphChanged`] naming the DStreams that differ (or a different
    /// batch interval); [`CheckpointError::PartitionsChanged`] when a stream's state was
    /// kept in another number of partitions than the program asks for;
    /// [`Error::Checkpoint`] when an input's state or the input cut cannot be read.
    pub fn restore(&self, checkpoint: &MetadataCheckpoint) -> Result<()> {
        let store = self.shared.rdd_ctx.checkpoint_store().clone();
        let dir = store.location();
        let interval_ms = crate::time::duration_ms(self.shared.batch_interval) as u64;
        let differences = checkpoint.differences(&self.fingerprint(), interval_ms);
        if !differences.is_empty() {
            return Err(CheckpointError::GraphChanged { dir, differences }.into());
        }
        let (nodes, inputs) = {
            let state = self.shared.state.lock();
            (state.nodes.clone(), state.inputs.clone())
        };
        for data in &checkpoint.data {
            if let Some(node) = nodes.get(data.stream as usize) {
                node.restore_checkpoint(data)?;
            }
        }
        self.shared.blocks.restore(
            checkpoint
                .allocations
                .iter()
                .map(|(t, blocks)| (Time::from_ms(*t), blocks.clone())),
            &checkpoint.receivers,
        );
        // The newest input cut after the checkpoint, if any, names the splits of batches
        // whose outputs may have run: they are recomputed over the same splits.
        let cut = InputCut::after(&*store, checkpoint)?;
        if let Some(cut) = &cut {
            tracing::info!(
                dir = %dir,
                checkpoint = checkpoint.batch_time_ms,
                cut = cut.batch_time_ms,
                "Polled inputs resume from the input cut of a batch after the checkpoint."
            );
        }
        let saved_inputs = cut.as_ref().map_or(&checkpoint.inputs, |c| &c.inputs);
        for saved in saved_inputs {
            if let Some(input) = inputs.iter().find(|i| i.stream() == saved.stream) {
                input.restore(&saved.state, &dir)?;
            }
        }
        self.shared.checkpointer.restore(checkpoint);
        let mut state = self.shared.state.lock();
        state.restored = Some(Time::from_ms(checkpoint.batch_time_ms));
        state.restored_checkpoint = Some(Arc::new(checkpoint.clone()));
        drop(state);
        let _ = self
            .shared
            .zero_time
            .set(Time::from_ms(checkpoint.zero_time_ms));
        Ok(())
    }

    /// Whether the graph has polled inputs (such as a text file stream), which
    /// [`poll_inputs`](Self::poll_inputs) polls.
    pub fn has_polled_inputs(&self) -> bool {
        !self.shared.state.lock().inputs.is_empty()
    }

    /// Polls the polled inputs for batch `t`, before [`generate_jobs`](Self::generate_jobs)
    /// uses what they found. Polling may block (a directory listing), so the runtime calls
    /// this on a blocking thread, never on an actor's thread; `generate_jobs` polls the
    /// inputs that were not polled yet itself. An input whose poll fails keeps the error,
    /// and the batch's jobs fail with it.
    pub fn poll_inputs(&self, t: Time) {
        let inputs = self.shared.state.lock().inputs.clone();
        for input in inputs {
            input.prepare(t);
        }
    }

    /// The records the queue streams ([`queue_stream`](DStreamGraph::queue_stream)) hold in
    /// batch `t`, summed over them: known when the batch is cut, as a receiver's blocks are
    /// (the runtime adds them to the batch's `BatchInfo::num_records`; Spark's queue streams
    /// report none). 0 for a batch past every queue's end.
    pub fn queued_records(&self, t: Time) -> usize {
        let queues = self.shared.state.lock().queues.clone();
        queues.iter().map(|records| records(t)).sum()
    }

    /// What the polled inputs read and skipped in batch `t`, taken once its jobs ran (each
    /// batch's report is given once; reads of older batches made since are dropped). The
    /// runtime sends each to listeners ([`StreamingListener::on_polled_input`](crate::listener::StreamingListener::on_polled_input)),
    /// adds the records to the batch's `num_records` and stops the context with
    /// [`InputReports::fatal`]. `succeeded`: whether every output operation of the batch
    /// succeeded; the inputs' sources then hear of the batch
    /// ([`PolledSource::batch_completed`](crate::dstream::PolledSource::batch_completed)).
    pub fn take_input_reports(&self, t: Time, succeeded: bool) -> InputReports {
        let inputs = self.shared.state.lock().inputs.clone();
        let mut reports = InputReports::default();
        for (info, fatal) in inputs.iter().filter_map(|i| i.take_report(t, succeeded)) {
            reports.inputs.push(info);
            if reports.fatal.is_none() {
                reports.fatal = fatal;
            }
        }
        reports
    }

    /// The input DStreams that take a rate limit from backpressure (direct streams), by id:
    /// the runtime's rate control estimates a rate for each from its records per batch.
    pub fn rate_controlled_inputs(&self) -> Vec<DStreamId> {
        let inputs = self.shared.state.lock().inputs.clone();
        inputs
            .iter()
            .filter(|i| i.rate_controlled())
            .map(|i| i.stream())
            .collect()
    }

    /// Sets the rate limit of input DStream `stream` (records per second; `None`: none), if
    /// it takes one (see [`rate_controlled_inputs`](Self::rate_controlled_inputs)).
    pub fn set_input_rate(&self, stream: DStreamId, records_per_sec: Option<f64>) {
        let inputs = self.shared.state.lock().inputs.clone();
        for input in inputs.iter().filter(|i| i.stream() == stream) {
            input.set_rate(records_per_sec);
        }
    }

    /// Whether a polled input failed batch `t` under
    /// [`UnreadablePolicy::Fail`](crate::dstream::UnreadablePolicy::Fail). The runtime then
    /// writes no metadata checkpoint for `t` (the context stops), so that a restart reads
    /// the batch's inputs again: the ones that were fine are not lost, and the bad one is met
    /// again, under the policy of the restarted program.
    pub fn input_failed(&self, t: Time) -> bool {
        let inputs = self.shared.state.lock().inputs.clone();
        inputs.iter().any(|i| i.failed(t))
    }

    /// The data checkpoints written since the last call (for listeners), oldest first.
    pub fn take_new_checkpoints(&self) -> Vec<crate::checkpoint::DataCheckpoint> {
        self.shared.checkpointer.take_fresh()
    }

    /// Has the metadata checkpoints clean `log` up as batches stop needing their blocks.
    pub fn set_block_log(&self, log: crate::checkpoint::BlockLog) {
        self.shared.checkpointer.set_block_log(log);
    }

    /// The last completed batch of the run this graph was restored from.
    pub fn restored_batch(&self) -> Option<Time> {
        self.shared.state.lock().restored
    }

    /// The metadata checkpoint this graph was restored from.
    pub fn restored_checkpoint(&self) -> Option<Arc<MetadataCheckpoint>> {
        self.shared.state.lock().restored_checkpoint.clone()
    }

    /// Writes the metadata checkpoint of completed batch `t` (Spark: `DoCheckpoint`) by the
    /// protocol of [`crate::checkpoint`]: the data checkpoints written so far made durable,
    /// the record naming them made durable, then what no kept checkpoint names purged, the
    /// write-ahead log cleaned, and the store compacted if it outgrew its bound. Called
    /// once per completed batch, in order.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the store cannot be written; [`Error::NotRunning`] after
    /// [`shutdown`](DStreamGraph::shutdown) (the batch did not complete: nothing is written).
    pub fn write_metadata_checkpoint(&self, t: Time) -> Result<StoreStats> {
        // Held to the end: `shutdown` waits for a write in progress, and none starts after.
        let shut_down = self.shared.shut_down.lock();
        if *shut_down {
            return Err(Error::NotRunning(format!(
                "the context stopped before batch {t} completed: its metadata checkpoint is \
                 not written, and a restart recomputes the batch"
            )));
        }
        let store = self.shared.rdd_ctx.checkpoint_store().clone();
        let horizon = self.shared.input_horizon(t);
        let inputs = self.save_inputs(horizon)?;
        let record = MetadataCheckpoint {
            graph: self.fingerprint(),
            batch_interval_ms: crate::time::duration_ms(self.shared.batch_interval) as u64,
            zero_time_ms: self.zero_time().unwrap_or(Time::ZERO).as_ms(),
            batch_time_ms: t.as_ms(),
            input_horizon_ms: horizon.as_ms(),
            data: self.shared.checkpointer.latest(),
            inputs,
            allocations: self.shared.blocks.after(horizon),
            receivers: self.shared.blocks.positions(),
        };
        self.shared.checkpointer.write(&store, &record)
    }

    /// Each restorable input's state, its batches at or before `horizon` forgotten.
    fn save_inputs(&self, horizon: Time) -> Result<Vec<InputState>> {
        let inputs = self.shared.state.lock().inputs.clone();
        inputs
            .iter()
            .map(|i| {
                Ok(InputState {
                    stream: i.stream(),
                    state: i.save(horizon)?,
                })
            })
            .collect()
    }

    /// Makes the polled inputs' choice for every batch up to `t` durable before batch `t`'s
    /// outputs run (see [`InputCut`]): a restart recomputes these batches over the same
    /// splits (a direct stream's offset ranges) even if it was killed before the batch's
    /// metadata checkpoint. Does nothing for a graph without polled inputs. Called on the
    /// job thread, in batch order, when the checkpoint store outlives the process.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the store cannot be written (the batch must not run);
    /// [`Error::NotRunning`] after [`shutdown`](DStreamGraph::shutdown).
    pub fn record_input_cut(&self, t: Time) -> Result<()> {
        if !self.has_polled_inputs() {
            return Ok(());
        }
        let shut_down = self.shared.shut_down.lock();
        if *shut_down {
            return Err(Error::NotRunning(format!(
                "the context stopped before batch {t} ran: its input is not recorded"
            )));
        }
        // Untrimmed: every batch the last metadata checkpoint kept, and those since. A
        // restore that falls back to the checkpoint before it (the newest one damaged)
        // needs batches this batch's horizon would already drop.
        let cut = InputCut {
            zero_time_ms: self.zero_time().unwrap_or(Time::ZERO).as_ms(),
            batch_time_ms: t.as_ms(),
            inputs: self.save_inputs(Time::from_ms(i64::MIN))?,
        };
        cut.write(&**self.shared.rdd_ctx.checkpoint_store())
    }

    /// Queues received blocks, reported stored on executors, for the next batch (Spark:
    /// `ReceivedBlockTracker.addBlock`). The graph's block tracker is the one owner of what
    /// is known of received blocks.
    pub fn add_blocks(&self, blocks: impl IntoIterator<Item = BlockInfo>) {
        self.shared.blocks.add(blocks);
    }

    /// Allocates every queued block to batch `t` (each block to exactly one batch) and
    /// returns them; `None`, keeping them queued for a later batch, when `t` already has
    /// its blocks (a batch restored from a checkpoint keeps the blocks it had).
    pub fn allocate_blocks(&self, t: Time) -> Option<Vec<BlockInfo>> {
        self.shared.blocks.allocate(t)
    }

    /// Whether received blocks wait for a batch.
    pub fn has_unallocated_blocks(&self) -> bool {
        self.shared.blocks.has_unallocated()
    }

    /// Records the blocks replayed from the write-ahead log at a restart (their records
    /// never counted in this run's receiver buffers) and queues `unallocated`, those no
    /// batch had, for the next batch.
    pub fn add_replayed_blocks(&self, replayed: &[BlockInfo], unallocated: Vec<BlockInfo>) {
        self.shared.blocks.add_replayed(replayed, unallocated);
    }

    /// Whether block `id` was replayed from the write-ahead log at this run's start.
    pub fn is_replayed_block(&self, id: &crate::block::BlockId) -> bool {
        self.shared.blocks.is_replayed(id)
    }

    /// Puts back allocations of batches after the restored one that only the write-ahead
    /// log recorded (see [`BlockLog::replay`](crate::checkpoint::BlockLog::replay)).
    pub fn restore_allocations(
        &self,
        allocations: impl IntoIterator<Item = (Time, Vec<BlockInfo>)>,
    ) {
        self.shared.blocks.restore(allocations, &[]);
    }

    /// The blocks allocated to batch `t`, all streams.
    pub fn allocated(&self, t: Time) -> Vec<BlockInfo> {
        self.shared.blocks.allocated(t)
    }

    /// The jobs of batch `t`, one per output operation whose stream has an RDD at `t`, in
    /// registration order (Spark: `DStreamGraph.generateJobs`). An output whose RDD could
    /// not be generated still gets a job, which fails with the error; the others run.
    pub fn generate_jobs(&self, t: Time) -> Vec<OutputJob> {
        let _generating = GenerationGuard::enter();
        // Not under the lock: user functions run here.
        let outputs = self.shared.state.lock().outputs.clone();
        let mut jobs = Vec::new();
        for (id, output) in outputs.iter().enumerate() {
            let generated =
                catch_unwind(AssertUnwindSafe(|| (output.generate)(t))).unwrap_or_else(|payload| {
                    Err(Error::Output {
                        batch_time: t,
                        operator: output.op.to_string(),
                        message: format!("panicked while generating: {}", panic_message(&*payload)),
                    })
                });
            match generated {
                Ok(Some(job)) => jobs.push(job.with_id(id)),
                Ok(None) => {}
                Err(e) => jobs.push(OutputJob::failed(t, output.op, e).with_id(id)),
            }
        }
        // Data checkpoints run after the outputs, which leave the state's partitions cached.
        let nodes = self.shared.state.lock().nodes.clone();
        for node in nodes.into_iter().filter(|n| n.info().checkpoint_due(t)) {
            let op = OpInfo {
                name: "checkpoint",
                ..node.info().op()
            };
            let shared = self.shared.clone();
            let job = OutputJob::new(t, op, move || {
                if let Some(written) = node.write_checkpoint(t)? {
                    shared.record_data_checkpoint(written);
                }
                Ok(())
            });
            jobs.push(job.with_id(jobs.len()));
        }
        jobs
    }

    /// For an executor process: the map side of shuffle `shuffle` in batch `t`, found in the
    /// RDDs this process generates for `t` from `input` (the blocks the coordinator
    /// allocated to `t` and the splits its polled inputs chose: [`batch_input`]). The batch is generated once (its jobs are not run:
    /// outputs run on the coordinator); later calls for `t` search what it generated. Every
    /// process running the program derives the same RDD and shuffle ids, so the coordinator's
    /// shuffle is found under its id when the stage is
    /// [computable remotely](crate::rdd::computable_remotely).
    ///
    /// # Errors
    /// [`Error::Internal`] naming the shuffle and batch when this process's graph has no such
    /// shuffle (another program, or a stage that should not have been sent here);
    /// [`Error::Checkpoint`] when a polled input's splits do not decode.
    ///
    /// [`batch_input`]: DStreamGraph::batch_input
    pub fn executor_shuffle(
        &self,
        t: Time,
        input: crate::dstream::BatchInput,
        shuffle: ShuffleId,
    ) -> Result<Arc<dyn ShuffleMap>> {
        self.executor_batch(t, input)?;
        self.find_in_batch(t, ("shuffle", &shuffle), |rdd| {
            rdd.meta().dependencies().iter().find_map(|dep| match dep {
                Dependency::Shuffle(map) if map.shuffle_id() == shuffle => Some(map.clone()),
                _ => None,
            })
        })
    }

    /// For an executor process: RDD `id` of batch `t`, found as
    /// [`executor_shuffle`](DStreamGraph::executor_shuffle) finds a shuffle, for a cache
    /// task that materializes it.
    ///
    /// # Errors
    /// As [`executor_shuffle`](DStreamGraph::executor_shuffle), naming the RDD.
    pub fn executor_rdd(
        &self,
        t: Time,
        input: crate::dstream::BatchInput,
        id: RddId,
    ) -> Result<Arc<dyn RddBase>> {
        self.executor_batch(t, input)?;
        self.find_in_batch(t, ("RDD", &id), |rdd| {
            (rdd.meta().id() == id).then(|| rdd.clone())
        })
    }

    /// Generates batch `t` in this executor process from `input`, unless it did already.
    fn executor_batch(&self, t: Time, input: crate::dstream::BatchInput) -> Result<()> {
        let mut generated = self.shared.executor_batches.lock();
        if !generated.contains(&t) {
            // A stand-in of `t` (read by a later batch) gives way to the batch itself.
            for node in self.nodes() {
                node.forget_stand_in(t);
            }
            self.install_batch_input(t, input)?;
            generated.insert(t);
            // Batches before `t` are not generated here while `t` is (what the batch reads
            // of them, the coordinator named); the floor then stays at the newest batch (an
            // older one is regenerated to recover a lost partition of it).
            let newest = self.shared.executor_floor().map_or(t, |f| f.max(t));
            *self.shared.executor_floor.lock() = Some(t);
            drop(self.generate_jobs(t));
            *self.shared.executor_floor.lock() = Some(newest);
            // Batches this far behind are done on the coordinator: forget their RDDs.
            let before = generated.iter().rev().nth(EXECUTOR_BATCHES).copied();
            if let Some(old) = before.filter(|_| newest == t) {
                generated.retain(|b| *b > old);
                self.clear_old(old);
                for input in self.shared.inputs() {
                    input.forget_up_to(old);
                }
            }
        }
        Ok(())
    }

    /// The first `Some` that `found` gives for an RDD of batch `t`'s lineage, walked from
    /// every stream's RDD of `t` through narrow dependencies and across shuffles.
    ///
    /// # Errors
    /// [`Error::Internal`] naming `what` (a kind and an id) and the batch when nothing is
    /// found.
    fn find_in_batch<R>(
        &self,
        t: Time,
        (kind, id): (&str, &dyn std::fmt::Display),
        mut found: impl FnMut(&Arc<dyn RddBase>) -> Option<R>,
    ) -> Result<R> {
        let mut stack: Vec<Arc<dyn RddBase>> = self
            .nodes()
            .iter()
            .filter_map(|n| n.generated_rdd(t))
            .collect();
        let mut seen = std::collections::HashSet::new();
        while let Some(rdd) = stack.pop() {
            if !seen.insert(rdd.meta().id()) {
                continue;
            }
            if let Some(r) = found(&rdd) {
                return Ok(r);
            }
            stack.extend(rdd.meta().dependencies().iter().map(Dependency::parent));
        }
        Err(Error::Internal(format!(
            "this executor's program has no {kind} {id} in batch {t}: is it the coordinator's program, with the same arguments?"
        )))
    }

    /// Forgets RDDs and block allocations no stream remembers after batch `t` finished
    /// (Spark: `DStreamGraph.clearMetadata`); returns the blocks of forgotten batches,
    /// which the runtime may now drop from its block stores.
    pub fn clear_old(&self, t: Time) -> Vec<BlockInfo> {
        let (nodes, max_remember) = {
            let state = self.shared.state.lock();
            (state.nodes.clone(), state.max_remember)
        };
        for node in &nodes {
            node.clear_old(t);
        }
        let horizon = self.shared.input_horizon(t).min(t - max_remember);
        self.shared.blocks.forget_up_to(horizon)
    }

    /// On the coordinator: each stateful stream's state partition count, as resolved here
    /// (restored from a checkpoint, given by the program, or the context's state
    /// parallelism), for executor processes to adopt ([`adopt_state_partitions`](DStreamGraph::adopt_state_partitions)).
    pub fn state_partitions(&self) -> Vec<(DStreamId, usize)> {
        self.nodes()
            .iter()
            .filter_map(|n| Some((n.info().id, n.state_partitions()?)))
            .collect()
    }

    /// In an executor process, before any batch is generated: adopts the coordinator's state
    /// partition counts ([`state_partitions`](DStreamGraph::state_partitions)), which a
    /// restore from a checkpoint may have set to another count than this process's
    /// default: the process's map tasks must cut the batch data into as many buckets.
    ///
    /// # Errors
    /// [`Error::Internal`] naming the stream when this process's graph has no such stateful
    /// stream (another program) or already partitioned it otherwise.
    pub fn adopt_state_partitions(&self, counts: &[(DStreamId, usize)]) -> Result<()> {
        let nodes = self.nodes();
        for &(stream, n) in counts {
            let node = nodes.iter().find(|node| node.info().id == stream);
            match node
                .map(|node| node.adopt_state_partitions(n))
                .transpose()?
            {
                Some(true) => {}
                Some(false) | None => {
                    return Err(Error::Internal(format!(
                        "the coordinator's stateful stream {stream} is not one of this \
                         executor's program: is it the coordinator's program, with the same \
                         arguments?"
                    )))
                }
            }
        }
        Ok(())
    }

    /// The graph's streams, in id order.
    pub(crate) fn nodes(&self) -> Vec<Arc<dyn DStreamNode>> {
        self.shared.state.lock().nodes.clone()
    }

    /// Drops the graph's streams, outputs, queue counters and allocations (they hold the
    /// graph, which holds them); called when the streaming context stops. The graph cannot run afterwards, and
    /// writes no more metadata checkpoints (it waits for one being written).
    pub fn shutdown(&self) {
        // First: a batch cut short by the stop must not be checkpointed as completed (nor
        // with the emptied graph below), which would make a restart skip it or refuse it.
        *self.shared.shut_down.lock() = true;
        let mut state = self.shared.state.lock();
        state.nodes.clear();
        state.outputs.clear();
        state.receivers.clear();
        state.queues.clear();
        state.started = true;
        drop(state);
        self.shared.blocks.clear();
    }

    /// How many output operations are registered.
    pub fn num_outputs(&self) -> usize {
        self.shared.state.lock().outputs.len()
    }

    /// The ids of the output operations' streams, in registration order.
    pub fn output_streams(&self) -> Vec<DStreamId> {
        self.shared
            .state
            .lock()
            .outputs
            .iter()
            .map(|o| o.node.info().id())
            .collect()
    }
}
