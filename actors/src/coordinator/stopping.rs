//! Stopping the streaming context: gracefully (drain what was received) or now, and
//! failing it when a component fails past its restart limit.

use std::sync::mpsc::RecvTimeoutError;
use std::time::Duration;

use actix::{
    ActorContext, ActorFutureExt, Arbiter, AsyncContext, Context, Handler, ResponseActFuture,
    WrapFuture,
};
use rivulet_framework::Error;
use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use super::Coordinator;
use crate::messages::{SealBlock, StopContext, StopMode, StopReceiver};
use crate::runtime::Status;

/// A stop in progress.
pub(super) struct Stopping {
    mode: StopMode,
    receivers_stopped: bool,
    finished: bool,
    replies: Vec<oneshot::Sender<()>>,
    error: Option<Error>,
}

/// Where a stop stands, in the order a graceful stop goes through (a `Now` stop is
/// [`Ready`](StopState::Ready) at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopState {
    /// No stop was asked for.
    NotStopping,
    /// The stop finished: no more batches are generated.
    Finished,
    /// The receivers are stopping, or blocks they sealed are not reported yet.
    AwaitingBlocks,
    /// Every block is reported, some are in no batch yet, and no batch is cut or running:
    /// the last batch is cut now.
    AwaitingLastBatch,
    /// Some blocks are in no batch yet, and batches are cut or running: the last batch waits.
    AwaitingBatchesThenLast,
    /// Every block is in a batch (drained); batches are still cut or running.
    AwaitingBatches,
    /// Nothing is left: the stop finishes.
    Ready,
}

impl Stopping {
    /// Whether the stop has finished: no more batches are generated.
    pub(super) fn is_final(&self) -> bool {
        self.finished
    }
}

impl Handler<StopContext> for Coordinator {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, StopContext(mode): StopContext, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.begin_stop(mode, None, tx, ctx);
        Box::pin(
            async move {
                let _ = rx.await;
            }
            .into_actor(self),
        )
    }
}

impl Coordinator {
    fn begin_stop(
        &mut self,
        mode: StopMode,
        error: Option<Error>,
        reply: oneshot::Sender<()>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(stopping) = &mut self.stopping {
            stopping.replies.push(reply);
            if mode == StopMode::Now {
                stopping.mode = StopMode::Now;
            }
            if stopping.error.is_none() {
                stopping.error = error;
            }
            self.check_stop(ctx);
            return;
        }
        info!(parent: &self.span, ?mode, "Stopping.");
        self.stopping = Some(Stopping {
            mode,
            receivers_stopped: false,
            finished: false,
            replies: vec![reply],
            error,
        });
        let supervisors: Vec<_> = self
            .receivers
            .iter()
            .map(|r| r.supervisor.clone())
            .collect();
        let builders: Vec<_> = self
            .receivers
            .iter()
            .map(|r| (r.stream, r.builder.clone()))
            .collect();
        // Stop receiving first, then seal what they stored: every stored record gets a batch.
        let drain = async move {
            futures::future::join_all(supervisors.iter().map(|s| s.send(StopReceiver))).await;
            futures::future::join_all(
                builders
                    .into_iter()
                    .map(|(s, b)| async move { (s, b.send(SealBlock).await) }),
            )
            .await
        };
        ctx.spawn(drain.into_actor(self).map(|sealed, act, ctx| {
            act.record_seal_answers(sealed);
            if let Some(s) = &mut act.stopping {
                s.receivers_stopped = true;
            }
            act.check_stop(ctx);
        }));
        self.check_stop(ctx);
    }

    /// Stops the context now with `error` (a component failed past its restart limit).
    pub(super) fn fail(&mut self, error: Error, ctx: &mut Context<Self>) {
        error!(parent: &self.span, %error, "Stopping the streaming context after a failure.");
        let (tx, _) = oneshot::channel();
        self.begin_stop(StopMode::Now, Some(error), tx, ctx);
    }

    /// Where the stop stands: the one reading of the stop's conditions that both
    /// [`drained`](Self::drained) and [`check_stop`](Self::check_stop) act on.
    fn stop_state(&self) -> StopState {
        let Some(stopping) = &self.stopping else {
            return StopState::NotStopping;
        };
        if stopping.finished {
            return StopState::Finished;
        }
        if stopping.mode == StopMode::Now {
            return StopState::Ready;
        }
        if !stopping.receivers_stopped || self.receivers.iter().any(|r| r.reported < r.sealed_total)
        {
            return StopState::AwaitingBlocks;
        }
        let batches_left = self.running || !self.queue.is_empty() || !self.cutting.is_empty();
        match (!self.graph.has_unallocated_blocks(), batches_left) {
            (false, false) => StopState::AwaitingLastBatch,
            (false, true) => StopState::AwaitingBatchesThenLast,
            (true, true) => StopState::AwaitingBatches,
            (true, false) => StopState::Ready,
        }
    }

    /// Whether a graceful stop has every received block in a batch: from then on the clock
    /// cuts no batch, as Spark's `JobGenerator.stop(processReceivedData)` stops its timer.
    /// The batches already cut still run, and a stream not fed by receivers (a queue, a
    /// `transform` over static RDDs) gets no new batches, so an overloaded pipeline's
    /// graceful stop ends once its backlog is processed.
    pub(super) fn drained(&self) -> bool {
        let graceful = self
            .stopping
            .as_ref()
            .is_some_and(|s| s.mode == StopMode::Graceful);
        graceful
            && matches!(
                self.stop_state(),
                StopState::AwaitingBatches | StopState::Ready
            )
    }

    /// Finishes a stop once its conditions hold: at once for `Now`; for `Graceful`, once the
    /// receivers stopped, every sealed block was reported and allocated, and no batch is left.
    pub(super) fn check_stop(&mut self, ctx: &mut Context<Self>) {
        match self.stop_state() {
            StopState::Ready => self.finish_stop(ctx),
            // Cut the last batch now, with the time it would have had, rather than wait for
            // its tick: under the manual clock nobody ticks, and under the system clock a
            // long batch interval would hold the stop for up to an interval (a day at most)
            // although every record is already in.
            StopState::AwaitingLastBatch => {
                let t = self.last_time + self.batch_interval;
                self.cut_batch(t, ctx);
            }
            StopState::NotStopping
            | StopState::Finished
            | StopState::AwaitingBlocks
            | StopState::AwaitingBatchesThenLast
            | StopState::AwaitingBatches => {}
        }
    }

    fn finish_stop(&mut self, ctx: &mut Context<Self>) {
        let Some(stopping) = &mut self.stopping else {
            return;
        };
        stopping.finished = true;
        let error = stopping.error.take();
        let replies = std::mem::take(&mut stopping.replies);
        let mut threads = self.pool.stop();
        for r in &mut self.receivers {
            r.source.close();
            if let Some(arbiter) = r.arbiter.take() {
                arbiter.stop();
                threads.push(arbiter);
            }
        }
        self.graph.shutdown();
        self.waiters.clear();
        // The status goes with the joiner; this coordinator reports nothing more.
        let status = std::mem::replace(&mut self.status, watch::channel(Status::Running).0);
        let span = self.span.clone();
        let job_thread = self.job_thread.take();
        let report = move || {
            join_all(threads, &span);
            if let Some(job_thread) = job_thread {
                wait_for_job_thread(&job_thread, &span);
            }
            status.send_replace(Status::Stopped(error));
            info!(parent: &span, "Stopped.");
            for reply in replies {
                let _ = reply.send(());
            }
        };
        if let Err(e) = std::thread::Builder::new()
            .name("rivulet-stop".into())
            .spawn(report)
        {
            // The status sender is dropped unsent: the context reports a crash, not a stop.
            error!(parent: &self.span, error = %e, "Could not start the thread that joins the executors; the stop is not clean.");
        }
        ctx.stop();
    }
}

/// Waits for the executor and receiver threads to end, so that whatever they held (the
/// checkpoint directory's lock above all) is released before the stop is reported: a
/// context restarted on the same directory right after `stop` must be able to open it.
fn join_all(threads: Vec<Arbiter>, span: &tracing::Span) {
    for arbiter in threads {
        if arbiter.join().is_err() {
            error!(parent: span, "An executor or receiver thread panicked while stopping.");
        }
    }
}

/// How long a stop waits for the running batch's job thread (its output operations) to
/// return; their actions fail at once once stopped, but user code may run on. Spark waits
/// 2 s on a stop that is not graceful.
const JOB_THREAD_WAIT: Duration = Duration::from_secs(10);

/// Waits (at most [`JOB_THREAD_WAIT`]) until the running batch's output operations return:
/// until then they hold the graph, and with it the checkpoint directory.
fn wait_for_job_thread(job_thread: &std::sync::mpsc::Receiver<()>, span: &tracing::Span) {
    if let Err(RecvTimeoutError::Timeout) = job_thread.recv_timeout(JOB_THREAD_WAIT) {
        warn!(
            parent: span,
            wait_s = JOB_THREAD_WAIT.as_secs(),
            "An output operation is still running after the stop; the checkpoint directory \
             stays locked until it returns."
        );
    }
}
