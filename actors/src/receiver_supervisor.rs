//! [`ReceiverSupervisor`]: runs one receiver on its arbiter, restarts it with backoff when it
//! fails (a retryable error or a panic), and escalates past the restart limit (Spark:
//! `ReceiverSupervisor`).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Recipient, ResponseFuture, WrapFuture,
};
use futures::FutureExt;
use rivulet_framework::block::StreamId;
use rivulet_framework::listener::ReceiverInfo;
use rivulet_framework::receiver::{
    BlockSource, BufferControl, DynReceiver, Flow, ReceiverCounters, ReceiverError, ReceiverMetrics,
};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn, Instrument};

use crate::messages::{ReceiverEvent, StopReceiver};
use crate::supervision::{RestartPolicy, RestartTracker};

/// Supervises one receiver.
pub struct ReceiverSupervisor {
    stream: StreamId,
    name: String,
    receiver: Option<Box<dyn DynReceiver>>,
    /// The receiver's counters, reported with each event.
    counters: Arc<dyn ReceiverCounters>,
    /// The receiver's buffer, closed when the receiver ends.
    buffer: Arc<dyn BufferControl>,
    coordinator: Recipient<ReceiverEvent>,
    policy: RestartPolicy,
    stop: watch::Sender<bool>,
    done: Option<oneshot::Receiver<()>>,
}

impl ReceiverSupervisor {
    /// Supervises `receiver` of `stream`, whose buffer is `source`, reporting to `coordinator`.
    pub fn new(
        stream: StreamId,
        receiver: Box<dyn DynReceiver>,
        source: Arc<dyn BlockSource>,
        coordinator: Recipient<ReceiverEvent>,
        policy: RestartPolicy,
    ) -> ReceiverSupervisor {
        ReceiverSupervisor {
            stream,
            name: receiver.name(),
            receiver: Some(receiver),
            counters: source.clone(),
            buffer: source,
            coordinator,
            policy,
            stop: watch::channel(false).0,
            done: None,
        }
    }
}

impl std::fmt::Debug for ReceiverSupervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverSupervisor")
            .field("stream", &self.stream)
            .field("name", &self.name)
            .finish()
    }
}

/// How a receiver's run ended.
enum Ended {
    Finished,
    Stopped,
    GaveUp(String),
}

/// Reports receiver events; control messages, so `do_send` is right here.
struct Reporter {
    stream: StreamId,
    name: String,
    counters: Arc<dyn ReceiverCounters>,
    buffer: Arc<dyn BufferControl>,
    coordinator: Recipient<ReceiverEvent>,
}

impl Reporter {
    fn info(&self, active: bool, last_error: Option<String>) -> ReceiverInfo {
        ReceiverInfo {
            stream: self.stream,
            name: self.name.clone(),
            active,
            last_error,
            metrics: self.counters.metrics(),
        }
    }
    fn send(&self, event: ReceiverEvent) {
        self.coordinator.do_send(event);
    }

    /// Delivers the final event before the supervisor reports itself done, so a stopping
    /// coordinator has handled it before it stops reading its mailbox.
    async fn send_last(&self, event: ReceiverEvent) {
        if let Err(e) = self.coordinator.send(event).await {
            warn!(error = %e, "Coordinator gone; final receiver event not delivered.");
        }
    }
}

/// Runs `f` with panics turned into retryable errors.
async fn guarded<T>(
    f: impl std::future::Future<Output = Result<T, ReceiverError>>,
) -> Result<T, ReceiverError> {
    match AssertUnwindSafe(f).catch_unwind().await {
        Ok(r) => r,
        Err(p) => Err(ReceiverError::retryable(format!(
            "receiver panicked: {}",
            rivulet_framework::error::panic_message(&*p)
        ))),
    }
}

/// Runs the receiver until it finishes, is stopped, or fails past the policy.
async fn run(
    mut receiver: Box<dyn DynReceiver>,
    policy: RestartPolicy,
    mut stop: watch::Receiver<bool>,
    reporter: &Reporter,
) -> Ended {
    let mut restarts = RestartTracker::new(policy);
    loop {
        let outcome = tokio::select! {
            _ = stop.wait_for(|s| *s) => None,
            failure = run_once(&mut *receiver, reporter) => Some(failure),
        };
        receiver.on_stop().await;
        let e = match outcome {
            None => return Ended::Stopped,
            Some(None) => return Ended::Finished,
            Some(Some(e)) => e,
        };
        let message = e.to_string();
        let backoff = if e.is_retryable() {
            restarts.on_failure(Instant::now())
        } else {
            None
        };
        let Some(backoff) = backoff else {
            // The coordinator logs the error once as it stops the context with it.
            debug!(error = %message, "Receiver failed for good.");
            if !e.is_retryable() {
                return Ended::GaveUp(message);
            }
            let policy = restarts.policy();
            return Ended::GaveUp(format!(
                "{message} (failed {} times within {} s, past its limit of {} restarts)",
                policy.max_restarts + 1,
                policy.period.as_secs(),
                policy.max_restarts
            ));
        };
        warn!(error = %message, backoff_ms = backoff.as_millis() as u64, "Receiver failed; restarting.");
        reporter.send(ReceiverEvent::Failed(reporter.info(false, Some(message))));
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return Ended::Stopped,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

/// Sends `ReceiverEvent::InputLost` when the receiver truncated, dropped or left incomplete
/// input since the last report, at most once per [`LOSS_REPORT_EVERY`].
struct LossReporter {
    /// `truncated`, `dropped` and `incomplete` as last reported (the bytes of a line being
    /// dropped grow with every read: the line was reported once).
    reported: (u64, u64, u64),
    last: Option<Instant>,
}

/// The least time between two `InputLost` events of one receiver.
const LOSS_REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl LossReporter {
    fn check(&mut self, reporter: &Reporter) {
        let m = reporter.counters.metrics();
        let lost = losses_of(&m);
        if lost == self.reported || self.last.is_some_and(|t| t.elapsed() < LOSS_REPORT_EVERY) {
            return;
        }
        self.reported = lost;
        self.last = Some(Instant::now());
        warn!(
            truncated = m.truncated,
            dropped = m.dropped,
            dropped_bytes = m.dropped_bytes,
            incomplete = m.incomplete,
            "Receiver lost input (totals so far)."
        );
        reporter.send(ReceiverEvent::InputLost(reporter.info(true, None)));
    }
}

/// The counters whose growth means input was lost.
fn losses_of(m: &ReceiverMetrics) -> (u64, u64, u64) {
    (m.truncated, m.dropped, m.incomplete)
}

/// One start..failure cycle: `None` when the receiver finished, else its error.
async fn run_once(receiver: &mut dyn DynReceiver, reporter: &Reporter) -> Option<ReceiverError> {
    if let Err(e) = guarded(receiver.on_start()).await {
        return Some(e);
    }
    info!("Receiver started.");
    reporter.send(ReceiverEvent::Started(reporter.info(true, None)));
    let mut losses = LossReporter {
        reported: losses_of(&reporter.counters.metrics()),
        last: None,
    };
    loop {
        let received = guarded(receiver.receive()).await;
        losses.check(reporter);
        match received {
            // A receiver that always finds room never waits; give the arbiter's other
            // actors (its batch builder's block timer) their turn now and then.
            Ok(Flow::Continue) => tokio::task::coop::consume_budget().await,
            Ok(Flow::Finished) => return None,
            Err(e) => return Some(e),
        }
    }
}

impl Actor for ReceiverSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(receiver) = self.receiver.take() else {
            return;
        };
        let reporter = Reporter {
            stream: self.stream,
            name: self.name.clone(),
            counters: self.counters.clone(),
            buffer: self.buffer.clone(),
            coordinator: self.coordinator.clone(),
        };
        let (done_tx, done_rx) = oneshot::channel();
        self.done = Some(done_rx);
        let span = tracing::error_span!("receiver", stream = self.stream, name = %self.name);
        let (policy, stop) = (self.policy, self.stop.subscribe());
        let fut = async move {
            let ended = run(receiver, policy, stop, &reporter).await;
            // Nothing more will be stored; waiting stores (there are none now) would fail.
            reporter.buffer.close();
            let m = reporter.counters.metrics();
            if m.lost_input() {
                warn!(
                    records_stored = m.records_stored,
                    truncated = m.truncated,
                    dropped = m.dropped,
                    dropped_bytes = m.dropped_bytes,
                    incomplete = m.incomplete,
                    "Receiver stopping; it lost input."
                );
            }
            match ended {
                Ended::Finished | Ended::Stopped => {
                    info!("Receiver stopped.");
                    reporter
                        .send_last(ReceiverEvent::Stopped(reporter.info(false, None)))
                        .await;
                }
                Ended::GaveUp(e) => {
                    reporter
                        .send_last(ReceiverEvent::GaveUp(reporter.info(false, Some(e))))
                        .await
                }
            }
            let _ = done_tx.send(());
        }
        .instrument(span);
        ctx.spawn(fut.into_actor(self).map(|_, _, _| ()));
    }
}

impl Handler<StopReceiver> for ReceiverSupervisor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopReceiver, _: &mut Context<Self>) -> Self::Result {
        let _ = self.stop.send(true);
        let done = self.done.take();
        Box::pin(async move {
            if let Some(done) = done {
                let _ = done.await;
            }
        })
    }
}
