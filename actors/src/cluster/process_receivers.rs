//! The receivers an executor process runs for its coordinator (Spark runs receivers on
//! executors: `ReceiverSupervisorImpl`). The process built the program's graph, so it has
//! every receiver; it starts one when the coordinator says, with the supervisor and batch
//! builder the coordinator would use, on an actix system of the receiver's own thread. Its
//! blocks stay in the process's store (a replica goes to the coordinator, see
//! [`ReceivedBlockStore`] in `executor_process.rs`); its reports and events, and the answers
//! to the coordinator's seal and stop requests, travel as frames.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler};
use parking_lot::Mutex;
use rivulet_framework::block::StreamId;
use rivulet_framework::listener::ReceiverInfo;
use rivulet_framework::receiver::{BlockSource, ReceiverSlot};
use tokio::sync::mpsc;
use tracing::{debug, error, info};

use super::protocol::{ReceiverControl, ToCoordinator};
use crate::batch_builder::{BatchBuilder, ReceivedBlockStore};
use crate::messages::{BlocksStored, ReceiverEvent, SealBlock, SealedBlock, StopReceiver};
use crate::receiver_supervisor::ReceiverSupervisor;
use crate::supervision::RestartPolicy;

/// A receiver running in this process.
struct Running {
    supervisor: Addr<ReceiverSupervisor>,
    builder: Addr<BatchBuilder>,
    source: Arc<dyn BlockSource>,
}

/// The receivers of this process's graph: those not started, and those running.
pub(super) struct ProcessReceivers {
    idle: Mutex<HashMap<StreamId, ReceiverSlot>>,
    running: Mutex<HashMap<StreamId, Running>>,
    out: mpsc::UnboundedSender<ToCoordinator>,
    blocks: Arc<dyn ReceivedBlockStore>,
    /// `None` under the manual clock: blocks are sealed when the coordinator asks.
    block_interval: Option<Duration>,
    policy: RestartPolicy,
}

impl ProcessReceivers {
    /// The receivers of `slots`, none started; reports go to `out`, blocks to `blocks`.
    pub(super) fn new(
        slots: Vec<ReceiverSlot>,
        out: mpsc::UnboundedSender<ToCoordinator>,
        blocks: Arc<dyn ReceivedBlockStore>,
        block_interval: Option<Duration>,
        policy: RestartPolicy,
    ) -> ProcessReceivers {
        ProcessReceivers {
            idle: Mutex::new(slots.into_iter().map(|s| (s.stream, s)).collect()),
            running: Mutex::new(HashMap::new()),
            out,
            blocks,
            block_interval,
            policy,
        }
    }

    /// Starts the receiver of `stream` at `position` (its next block number and the source
    /// offset it resumes at), rate `rate` and buffer bound `capacity`; a stream this graph
    /// has no receiver for, or whose thread cannot start, is reported as given up (the
    /// coordinator stops the context with it).
    pub(super) fn start(
        &self,
        stream: StreamId,
        position: (u64, Option<Vec<u8>>),
        rate: Option<f64>,
        capacity: usize,
    ) {
        let (next_seq, offset) = position;
        if self.running.lock().contains_key(&stream) {
            return;
        }
        let Some(slot) = self.idle.lock().remove(&stream) else {
            self.give_up(
                stream,
                format!("this executor process's graph has no receiver for input stream {stream} (was it built as the coordinator's?)"),
            );
            return;
        };
        slot.source.resume_at(next_seq, offset);
        slot.source.set_rate(rate);
        slot.source.set_capacity(capacity);
        let name = slot.receiver.name();
        let (out, blocks, interval, policy) = (
            self.out.clone(),
            self.blocks.clone(),
            self.block_interval,
            self.policy,
        );
        let source = slot.source.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("rivulet-receiver-{stream}"))
            .spawn(move || {
                let system = actix::System::new();
                let started = system.block_on(async move {
                    let relay = Relay {
                        out,
                        source: slot.source.clone(),
                    }
                    .start();
                    let builder = BatchBuilder::new(
                        slot.source.clone(),
                        blocks,
                        relay.clone().recipient(),
                        interval,
                    )
                    .start();
                    let supervisor = ReceiverSupervisor::new(
                        stream,
                        slot.receiver,
                        slot.source,
                        relay.recipient(),
                        policy,
                    )
                    .start();
                    (supervisor, builder)
                });
                let _ = tx.send(started);
                if let Err(e) = system.run() {
                    error!(stream, error = %e, "A receiver's system ended with an error.");
                }
            });
        match thread.map_err(|e| e.to_string()).and_then(|_| {
            rx.recv()
                .map_err(|_| "its thread ended at start".to_string())
        }) {
            Ok((supervisor, builder)) => {
                info!(stream, receiver = %name, next_seq, "Receiver started in this executor process.");
                self.running.lock().insert(
                    stream,
                    Running {
                        supervisor,
                        builder,
                        source,
                    },
                );
            }
            Err(e) => self.give_up(stream, format!("cannot start receiver {name}: {e}")),
        }
    }

    /// Seals what receiver `stream` stored (nothing for one not running here), then sends
    /// its counters and the answer to request `req`.
    pub(super) fn seal(&self, req: u64, stream: StreamId) {
        let running = self
            .running
            .lock()
            .get(&stream)
            .map(|r| (r.builder.clone(), r.source.clone()));
        let out = self.out.clone();
        tokio::spawn(async move {
            let sealed = match running {
                Some((builder, source)) => {
                    let sealed = builder.send(SealBlock).await.ok();
                    let counters = vec![(stream, source.metrics())];
                    let _ = out.send(ToCoordinator::ReceiverCounters(counters));
                    sealed
                }
                None => None,
            };
            let sealed = sealed.unwrap_or(SealedBlock {
                blocks: Vec::new(),
                sealed_total: 0,
            });
            let _ = out.send(ToCoordinator::Sealed { req, sealed });
        });
    }

    /// Stops receiver `stream` (its last event goes out first), then answers request `req`.
    pub(super) fn stop(&self, req: u64, stream: StreamId) {
        let supervisor = self
            .running
            .lock()
            .get(&stream)
            .map(|r| r.supervisor.clone());
        let out = self.out.clone();
        tokio::spawn(async move {
            if let Some(s) = supervisor {
                let _ = s.send(StopReceiver).await;
            }
            let _ = out.send(ToCoordinator::ReceiverStopped { req });
        });
    }

    /// Says that receiver `stream`'s blocks below `next_seq` are stored for good (the
    /// coordinator holds them): its reliable stores of them return.
    pub(super) fn durable(&self, stream: StreamId, next_seq: u64) {
        if let Some(r) = self.running.lock().get(&stream) {
            debug!(stream, next_seq, "Blocks confirmed by the coordinator.");
            r.source.mark_stored(next_seq);
        }
    }

    /// Applies the coordinator's backpressure to receiver `stream`.
    pub(super) fn control(&self, stream: StreamId, control: ReceiverControl) {
        let running = self.running.lock();
        let Some(r) = running.get(&stream) else {
            return;
        };
        debug!(stream, ?control, "Backpressure from the coordinator.");
        match control {
            ReceiverControl::Release(records) => r.source.release(records),
            ReceiverControl::Rate(rate) => r.source.set_rate(rate),
            ReceiverControl::Capacity(records) => r.source.set_capacity(records),
        }
    }

    /// Sends the running receivers' counters, if any run here.
    pub(super) fn report_counters(&self) {
        let counters: Vec<_> = self
            .running
            .lock()
            .iter()
            .map(|(stream, r)| (*stream, r.source.metrics()))
            .collect();
        if !counters.is_empty() {
            let _ = self.out.send(ToCoordinator::ReceiverCounters(counters));
        }
    }

    fn give_up(&self, stream: StreamId, error: String) {
        error!(stream, error = %error, "Cannot run a receiver in this executor process.");
        let info = ReceiverInfo {
            stream,
            name: format!("receiver of stream {stream}"),
            active: false,
            last_error: Some(error),
            metrics: Default::default(),
        };
        let _ = self
            .out
            .send(ToCoordinator::ReceiverEvent(ReceiverEvent::GaveUp(info)));
    }
}

/// Sends a receiver's events and its builder's reports to the coordinator, each report
/// with the receiver's counters.
struct Relay {
    out: mpsc::UnboundedSender<ToCoordinator>,
    source: Arc<dyn BlockSource>,
}

impl Actor for Relay {
    type Context = Context<Self>;
}

impl Handler<ReceiverEvent> for Relay {
    type Result = ();

    fn handle(&mut self, event: ReceiverEvent, _: &mut Context<Self>) {
        let _ = self.out.send(ToCoordinator::ReceiverEvent(event));
    }
}

impl Handler<BlocksStored> for Relay {
    type Result = ();

    fn handle(&mut self, stored: BlocksStored, _: &mut Context<Self>) {
        let counters = vec![(stored.stream, self.source.metrics())];
        let _ = self.out.send(ToCoordinator::BlocksStored {
            stream: stored.stream,
            sealed: stored.sealed,
        });
        let _ = self.out.send(ToCoordinator::ReceiverCounters(counters));
    }
}
