//! [`Coordinator`]: turns each batch-interval tick into jobs and runs them (Spark:
//! `JobGenerator` + `JobScheduler` + `DAGScheduler`, one actor).
//!
//! Every batch time `t` it allocates the blocks reported so far to batch `t`, asks the
//! graph for `t`'s output jobs, and runs them in batch order, one batch at a time, on a
//! blocking thread; the jobs' RDD actions come back as [`SubmitJob`]s, which it runs through
//! the DAG scheduler on the executors. With timestep pipelining on, a batch queued behind a
//! running one has its independent map stages run ahead meanwhile. When a batch ends it
//! notifies listeners, frees the receivers' buffer room for the batch's records, and forgets
//! what no stream remembers.

mod batches;
mod crash;
mod executor_pool;
mod faults;
mod job_runner;
mod rate_control;
mod stopping;

pub(crate) use crash::coordinator_crashed;
pub(crate) use executor_pool::ExecutorPool;
pub(crate) use job_runner::ClusterRunner;
pub(crate) use rate_control::RateControl;

use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix::{
    Actor, ActorFutureExt, Arbiter, AsyncContext, Context, Handler, Recipient, ResponseActFuture,
    WrapFuture,
};
use rivulet_framework::block::StreamId;
use rivulet_framework::checkpoint::BlockLog;
use rivulet_framework::dstream::DStreamGraph;
use rivulet_framework::receiver::{BufferBound, BufferControl};
use rivulet_framework::scheduler::{DagScheduler, TaskOutput};
use rivulet_framework::time::Time;
use rivulet_framework::{Error, Result};
use tokio::sync::{oneshot, watch};
use tracing::Span;

use crate::listener_bus::ListenerBus;
use crate::messages::{
    AddListener, Advance, BlocksStored, ManualTick, ReceiverEvent, SealBlock, StopReceiver,
    SubmitJob, WalFailed,
};
use crate::runtime::Status;

use batches::Batch;
use stopping::Stopping;

/// One receiver as the coordinator tracks it, wherever it runs: here (its supervisor and
/// batch builder) or in an executor process (a `RemoteReceiver` answers both roles, and a
/// `RemoteBuffer` forwards backpressure).
pub(crate) struct ReceiverHandle {
    pub(crate) stream: StreamId,
    /// Stops it.
    pub(crate) supervisor: Recipient<StopReceiver>,
    /// Seals what it stored into blocks.
    pub(crate) builder: Recipient<SealBlock>,
    pub(crate) source: Arc<dyn BufferControl>,
    /// The thread of its supervisor and batch builder (none for a receiver in an executor
    /// process); taken (stopped and joined) at stop.
    pub(crate) arbiter: Option<Arbiter>,
    /// Blocks of this receiver the coordinator has heard of.
    pub(crate) reported: u64,
    /// Blocks its builder said it sealed (known at manual ticks and at stop).
    pub(crate) sealed_total: u64,
}

/// The coordinator actor.
pub struct Coordinator {
    graph: DStreamGraph,
    batch_interval: Duration,
    manual: bool,
    /// Timestep pipelining: run a queued batch's independent map stages ahead.
    pipelining: bool,
    /// Whether map stages of a queued batch are running ahead now (one batch at a time).
    running_ahead: bool,
    /// Disconnects when the running batch's job thread returns (see `stopping`).
    job_thread: Option<std::sync::mpsc::Receiver<()>>,
    dag: Rc<DagScheduler>,
    pool: Rc<ExecutorPool>,
    blocks: Arc<crate::block_store::BlockManager>,
    receivers: Vec<ReceiverHandle>,
    /// The receiver write-ahead log, when it is on: each batch's allocation is recorded in
    /// it (its blocks are cleaned up by the metadata checkpoints).
    wal: Option<BlockLog>,
    /// Whether each batch's input cut is recorded before its outputs run (polled inputs
    /// with a checkpoint directory; see `DStreamGraph::record_input_cut`).
    input_cuts: bool,
    /// Rate control (backpressure), when it is on.
    rate_control: Option<rate_control::RateControl>,
    /// The receiver buffers' bound, set after each batch from its processing rate.
    buffer_bound: BufferBound,
    queue: VecDeque<Batch>,
    /// Batches waiting for their polled inputs' poll, oldest (being polled) first.
    cutting: VecDeque<Time>,
    running: bool,
    last_time: Time,
    waiters: HashMap<Time, oneshot::Sender<Result<()>>>,
    listeners: ListenerBus,
    status: watch::Sender<Status>,
    stopping: Option<Stopping>,
    span: Span,
}

/// What the coordinator is built from (see `Runtime::start`).
pub(crate) struct CoordinatorParts {
    /// Rate control (backpressure), when it is on.
    pub(crate) rate_control: Option<rate_control::RateControl>,
    /// The receiver buffers' bound.
    pub(crate) buffer_bound: BufferBound,
    /// The receiver write-ahead log, when it is on.
    pub(crate) wal: Option<BlockLog>,
    /// Whether each batch's input cut is recorded before its outputs run.
    pub(crate) input_cuts: bool,
    pub(crate) graph: DStreamGraph,
    pub(crate) manual: bool,
    /// Timestep pipelining (see `StreamingConfig::pipelining`).
    pub(crate) pipelining: bool,
    pub(crate) dag: Rc<DagScheduler>,
    pub(crate) pool: Rc<ExecutorPool>,
    pub(crate) blocks: Arc<crate::block_store::BlockManager>,
    pub(crate) receivers: Vec<ReceiverHandle>,
    pub(crate) listeners: ListenerBus,
    pub(crate) status: watch::Sender<Status>,
    pub(crate) app_name: String,
}

impl Coordinator {
    pub(crate) fn new(parts: CoordinatorParts) -> Coordinator {
        // After a restore, batches continue after the last one the checkpoint completed;
        // under the system clock the batches missed while the program was down run first.
        let zero = parts
            .graph
            .restored_batch()
            .or(parts.graph.zero_time())
            .unwrap_or(Time::ZERO);
        Coordinator {
            batch_interval: parts.graph.batch_interval(),
            graph: parts.graph,
            manual: parts.manual,
            pipelining: parts.pipelining,
            running_ahead: false,
            job_thread: None,
            dag: parts.dag,
            pool: parts.pool,
            blocks: parts.blocks,
            receivers: parts.receivers,
            wal: parts.wal,
            input_cuts: parts.input_cuts,
            rate_control: parts.rate_control,
            buffer_bound: parts.buffer_bound,
            queue: VecDeque::new(),
            cutting: VecDeque::new(),
            running: false,
            last_time: zero,
            waiters: HashMap::new(),
            listeners: parts.listeners,
            status: parts.status,
            stopping: None,
            span: tracing::error_span!("coordinator", app = %parts.app_name),
        }
    }

    /// Schedules the system-clock tick for batch `t` (Spark: `RecurringTimer`).
    fn schedule_tick(&mut self, t: Time, ctx: &mut Context<Self>) {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let delay = Duration::from_millis(u64::try_from(t.as_ms() - now_ms).unwrap_or(0));
        ctx.run_later(delay, move |act, ctx| {
            if act.stopping.as_ref().is_some_and(|s| s.is_final()) {
                return;
            }
            // Draining a graceful stop: no new batch, but keep ticking, so that a block a
            // pushed stream seals late still gets one.
            if act.drained() {
                act.check_stop(ctx);
            } else if t <= act.last_time || act.cutting.contains(&t) {
                // A graceful stop cut this batch before its tick.
            } else {
                act.cut_batch(t, ctx);
            }
            act.schedule_tick(t + act.batch_interval, ctx);
        });
    }

    fn receiver_mut(&mut self, stream: StreamId) -> Option<&mut ReceiverHandle> {
        self.receivers.iter_mut().find(|r| r.stream == stream)
    }
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("last_time", &self.last_time)
            .field("queued", &self.queue.len())
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        for r in &self.receivers {
            let (stream, rate) = (r.stream, r.source.rate());
            self.listeners
                .post(|l| l.on_receiver_rate_limit(stream, rate));
        }
        if !self.manual {
            let first = self.last_time + self.batch_interval;
            self.schedule_tick(first, ctx);
        }
    }
}

impl Handler<BlocksStored> for Coordinator {
    type Result = ();

    fn handle(&mut self, stored: BlocksStored, ctx: &mut Context<Self>) {
        self.record_sealed(stored.stream, stored.sealed);
        self.check_stop(ctx);
    }
}

impl Handler<SubmitJob> for Coordinator {
    type Result = ResponseActFuture<Self, Result<Vec<TaskOutput>>>;

    fn handle(&mut self, SubmitJob(job): SubmitJob, _: &mut Context<Self>) -> Self::Result {
        let (dag, pool) = (self.dag.clone(), self.pool.clone());
        Box::pin(
            async move { dag.run_job_with_info(&job, &*pool).await }
                .into_actor(self)
                .map(|(result, info), act, ctx| {
                    act.listeners.post(|l| l.on_job_completed(&info));
                    act.escalate_pool_failure(ctx);
                    result
                }),
        )
    }
}

impl Handler<Advance> for Coordinator {
    type Result = ResponseActFuture<Self, Result<()>>;

    fn handle(&mut self, Advance(n): Advance, ctx: &mut Context<Self>) -> Self::Result {
        let me = ctx.address();
        Box::pin(
            async move {
                let mut first_failure = None;
                for _ in 0..n {
                    let done = me
                        .send(ManualTick)
                        .await
                        .map_err(|e| Error::NotRunning(e.to_string()))?;
                    let outcome = done.await.unwrap_or_else(|_| {
                        Err(Error::NotRunning("stopped during the batch".into()))
                    });
                    if let Err(e) = outcome {
                        first_failure.get_or_insert(e);
                    }
                }
                first_failure.map_or(Ok(()), Err)
            }
            .into_actor(self),
        )
    }
}

impl Handler<ManualTick> for Coordinator {
    type Result = ResponseActFuture<Self, oneshot::Receiver<Result<()>>>;

    fn handle(&mut self, _: ManualTick, _: &mut Context<Self>) -> Self::Result {
        let builders: Vec<_> = self
            .receivers
            .iter()
            .map(|r| (r.stream, r.builder.clone()))
            .collect();
        Box::pin(
            async move {
                futures::future::join_all(
                    builders
                        .into_iter()
                        .map(|(s, b)| async move { (s, b.send(SealBlock).await) }),
                )
                .await
            }
            .into_actor(self)
            .map(|sealed, act, ctx| {
                act.record_seal_answers(sealed);
                let t = act.last_time + act.batch_interval;
                let (tx, rx) = oneshot::channel();
                act.waiters.insert(t, tx);
                act.cut_batch(t, ctx);
                rx
            }),
        )
    }
}

impl Handler<ReceiverEvent> for Coordinator {
    type Result = ();

    fn handle(&mut self, event: ReceiverEvent, ctx: &mut Context<Self>) {
        match event {
            ReceiverEvent::Started(info) => self.listeners.post(|l| l.on_receiver_started(&info)),
            ReceiverEvent::Failed(info) => self.listeners.post(|l| l.on_receiver_error(&info)),
            ReceiverEvent::Stopped(info) => self.listeners.post(|l| l.on_receiver_stopped(&info)),
            ReceiverEvent::InputLost(info) => {
                self.listeners.post(|l| l.on_receiver_input_lost(&info))
            }
            ReceiverEvent::GaveUp(info) => {
                self.listeners.post(|l| l.on_receiver_error(&info));
                let error = Error::Receiver {
                    receiver: info.name.clone(),
                    message: info.last_error.clone().unwrap_or_default(),
                };
                self.fail(error, ctx);
            }
        }
    }
}

impl Handler<WalFailed> for Coordinator {
    type Result = ();

    fn handle(&mut self, WalFailed(error): WalFailed, ctx: &mut Context<Self>) {
        self.fail(error, ctx);
    }
}

impl Handler<AddListener> for Coordinator {
    type Result = ();

    fn handle(&mut self, AddListener(listener): AddListener, _: &mut Context<Self>) {
        self.listeners.add(listener);
    }
}
