//! Receivers placed on executor processes, as the coordinator drives them (Spark:
//! `ReceiverTracker` launching receivers on executors). The coordinator keeps one
//! `ReceiverHandle` per receiver wherever it runs; for one in a process, its seal and stop
//! requests go to [`RemoteReceiver`], which asks the process over its connection, and its
//! backpressure to [`RemoteBuffer`], which forwards it. The [`Cluster`] remembers where each
//! receiver runs and starts it again in the process that takes a lost one's slot, and keeps
//! the replica of each block the receivers stored (its bytes), which it serves when the
//! process holding the block is gone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Weak;

use actix::{Actor, Context, Handler, Recipient, ResponseFuture};
use futures::future::{BoxFuture, FutureExt};
use parking_lot::Mutex;
use rivulet_framework::block::{BlockId, ExecutorId, StreamId};
use rivulet_framework::config::StreamingConfig;
use rivulet_framework::dstream::DStreamGraph;
use rivulet_framework::receiver::{BufferControl, ReceiverCounters, ReceiverMetrics, ReceiverSlot};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::protocol::{ReceiverControl, ToExecutor};
use super::{Cluster, State};
use crate::messages::{BlocksStored, ReceiverEvent, SealBlock, SealedBlock, StopReceiver};

/// A receiver placed on an executor process.
pub(super) struct PlacedReceiver {
    pub(super) slot: usize,
    /// The next block number: after every block reported so far.
    next_seq: u64,
    rate: Option<f64>,
    capacity: usize,
    /// Blocks reported by the processes it ran in before (since lost).
    earlier: u64,
    /// Blocks reported by the process it runs in now.
    current: u64,
    /// Its counters, as its process last reported them.
    metrics: ReceiverMetrics,
    /// Its counters in the processes it ran in before (since lost).
    earlier_metrics: ReceiverMetrics,
}

impl PlacedReceiver {
    /// Receiver `start`, placed on `slot`.
    fn new(slot: usize, start: &ReceiverStart) -> PlacedReceiver {
        PlacedReceiver {
            slot,
            next_seq: start.next_seq,
            rate: start.rate,
            capacity: start.capacity,
            earlier: 0,
            current: 0,
            metrics: ReceiverMetrics::default(),
            earlier_metrics: ReceiverMetrics::default(),
        }
    }

    /// Its counters over every process it ran in.
    fn total_metrics(&self) -> ReceiverMetrics {
        self.earlier_metrics + self.metrics
    }
}

/// Where a receiver in an executor process reports: the coordinator's mailbox (weak: the
/// coordinator owns the cluster through its block manager).
pub(super) struct Inbox {
    stored: actix::WeakRecipient<BlocksStored>,
    events: actix::WeakRecipient<ReceiverEvent>,
}

/// A seal or stop request waiting for a process's answer (`None`: a stop, or the process
/// was lost).
pub(super) struct ReceiverRequest {
    slot: usize,
    pub(super) stream: StreamId,
    reply: oneshot::Sender<Option<SealedBlock>>,
}

/// A receiver to start: its stream, first block number, rate (records/s) and buffer bound
/// (records).
pub(crate) struct ReceiverStart {
    pub(crate) stream: StreamId,
    pub(crate) next_seq: u64,
    pub(crate) rate: Option<f64>,
    pub(crate) capacity: usize,
}

impl ReceiverStart {
    /// The receivers of `slots` that run on executor processes under `config` (see
    /// `StreamingConfig::receivers_in_executor_processes`), at the rate and buffer bound
    /// their buffers start with, numbering their blocks after those the checkpoint `graph`
    /// was restored from names.
    pub(crate) fn of(
        config: &StreamingConfig,
        graph: &DStreamGraph,
        slots: &[ReceiverSlot],
    ) -> Vec<ReceiverStart> {
        if !config.get_receivers_in_executor_processes() {
            return Vec::new();
        }
        let restored = graph
            .restored_checkpoint()
            .map(|c| c.receivers.clone())
            .unwrap_or_default();
        slots
            .iter()
            .filter(|s| s.receiver.runs_anywhere())
            .map(|s| ReceiverStart {
                stream: s.stream,
                next_seq: restored
                    .iter()
                    .find(|p| p.stream == s.stream)
                    .map_or(0, |p| p.next_seq),
                rate: s.source.rate(),
                capacity: s.source.capacity(),
            })
            .collect()
    }
}

impl Cluster {
    /// Sets where the processes' receivers report.
    pub(crate) fn set_coordinator(
        &self,
        stored: Recipient<BlocksStored>,
        events: Recipient<ReceiverEvent>,
    ) {
        *self.inbox.lock() = Some(Inbox {
            stored: stored.downgrade(),
            events: events.downgrade(),
        });
    }

    /// Places `receivers` on the processes, the `i`th on slot `i % n`, and starts them.
    pub(crate) fn place_receivers(&self, receivers: Vec<ReceiverStart>) {
        let mut state = self.state.lock();
        let n = state.peers.len().max(1);
        for (i, r) in receivers.into_iter().enumerate() {
            let placed = PlacedReceiver::new(i % n, &r);
            info!(
                stream = r.stream,
                slot = placed.slot,
                "Receiver placed on an executor process."
            );
            start_receiver(&state, r.stream, &placed);
            state.receivers.insert(r.stream, placed);
        }
    }

    /// Sends `ToExecutor::StartReceiver` for the receivers placed on `slot` (a process
    /// that just registered there).
    pub(super) fn start_receivers_of(state: &State, slot: usize) {
        for (stream, placed) in &state.receivers {
            if placed.slot == slot {
                start_receiver(state, *stream, placed);
            }
        }
    }

    /// Asks the process running receiver `stream` to seal what it stored (`stop: false`) or
    /// to stop it (`stop: true`); resolves with the sealed blocks (`None` for a stop), and
    /// at once with nothing sealed when the process is lost.
    fn receiver_request(
        &self,
        stream: StreamId,
        stop: bool,
    ) -> BoxFuture<'static, Option<SealedBlock>> {
        let (reply, rx) = oneshot::channel();
        let mut state = self.state.lock();
        let req = state.next_req;
        state.next_req += 1;
        let Some(slot) = state.receivers.get(&stream).map(|p| p.slot) else {
            return futures::future::ready(None).boxed();
        };
        let Some(out) = state.peers[slot].out.clone() else {
            return futures::future::ready(None).boxed();
        };
        state.receiver_requests.insert(
            req,
            ReceiverRequest {
                slot,
                stream,
                reply,
            },
        );
        drop(state);
        let message = match stop {
            true => ToExecutor::StopReceiver { req, stream },
            false => ToExecutor::SealReceiver { req, stream },
        };
        if out.send(message).is_err() {
            self.state.lock().receiver_requests.remove(&req);
            return futures::future::ready(None).boxed();
        }
        async move { rx.await.ok().flatten() }.boxed()
    }

    /// Applies `control` to receiver `stream` where it runs, and to the one that takes its
    /// place after a loss.
    fn control_receiver(&self, stream: StreamId, control: ReceiverControl) {
        let mut state = self.state.lock();
        let Some(placed) = state.receivers.get_mut(&stream) else {
            return;
        };
        match control {
            ReceiverControl::Rate(rate) => placed.rate = rate,
            ReceiverControl::Capacity(records) => placed.capacity = records,
            // Room already freed stays freed: a replacement starts with an empty buffer.
            ReceiverControl::Release(_) => {}
        }
        let slot = placed.slot;
        if let Some(out) = &state.peers[slot].out {
            let _ = out.send(ToExecutor::ReceiverControl { stream, control });
        }
    }

    /// Counts the blocks of `sealed` (a report of receiver `stream` in the process in
    /// `slot`) and gives its count of sealed blocks across every process the receiver ran
    /// in, so that the coordinator's count never goes back after a loss.
    pub(super) fn count_reported(
        state: &mut State,
        stream: StreamId,
        mut sealed: SealedBlock,
    ) -> SealedBlock {
        if let Some(placed) = state.receivers.get_mut(&stream) {
            placed.current += sealed.blocks.len() as u64;
            for b in &sealed.blocks {
                if let BlockId::Input { seq, .. } = b.id {
                    placed.next_seq = placed.next_seq.max(seq + 1);
                }
            }
            sealed.sealed_total += placed.earlier;
        }
        sealed
    }

    /// Forwards a report of the processes' receivers to the coordinator.
    pub(super) fn forward_stored(&self, stored: BlocksStored) {
        let inbox = self.inbox.lock().as_ref().and_then(|i| i.stored.upgrade());
        match inbox {
            Some(to) => to.do_send(stored),
            None => warn!(
                stream = stored.stream,
                "Blocks reported after the coordinator went away."
            ),
        }
    }

    /// Records the counters a process reported for its receivers.
    pub(super) fn record_counters(state: &mut State, counters: Vec<(StreamId, ReceiverMetrics)>) {
        for (stream, metrics) in counters {
            if let Some(placed) = state.receivers.get_mut(&stream) {
                placed.metrics = metrics;
            }
        }
    }

    /// Forwards a receiver event of a process to the coordinator, its counters summed over
    /// every process the receiver ran in.
    pub(super) fn forward_event(&self, mut event: ReceiverEvent) {
        let info = match &mut event {
            ReceiverEvent::Started(i)
            | ReceiverEvent::Failed(i)
            | ReceiverEvent::Stopped(i)
            | ReceiverEvent::GaveUp(i)
            | ReceiverEvent::InputLost(i) => i,
        };
        if let Some(placed) = self.state.lock().receivers.get_mut(&info.stream) {
            placed.metrics = info.metrics;
            info.metrics = placed.total_metrics();
        }
        if let Some(to) = self.inbox.lock().as_ref().and_then(|i| i.events.upgrade()) {
            to.do_send(event);
        }
    }

    /// Answers receiver request `req` with `sealed` (already counted).
    pub(super) fn answer_receiver(state: &mut State, req: u64, sealed: Option<SealedBlock>) {
        if let Some(r) = state.receiver_requests.remove(&req) {
            let _ = r.reply.send(sealed);
        }
    }

    /// What a loss of slot `slot` means for its receivers: their waiting requests answer
    /// nothing sealed (the blocks are counted as the ones that reached the coordinator),
    /// and the count of their next process starts after those.
    pub(super) fn lose_receivers(state: &mut State, slot: usize) {
        for placed in state.receivers.values_mut().filter(|p| p.slot == slot) {
            placed.earlier += placed.current;
            placed.current = 0;
            placed.earlier_metrics = placed.total_metrics();
            placed.metrics = ReceiverMetrics::default();
        }
        let waiting: Vec<ReceiverRequest> = state
            .receiver_requests
            .extract_if(|_, r| r.slot == slot)
            .map(|(_, r)| r)
            .collect();
        for r in waiting {
            let total = state.receivers.get(&r.stream).map_or(0, |p| p.earlier);
            let _ = r.reply.send(Some(SealedBlock {
                blocks: Vec::new(),
                sealed_total: total,
            }));
        }
    }

    /// The executor process holding received block `id`, if it is still the incarnation
    /// that stored it.
    pub(crate) fn received_location(&self, id: &BlockId) -> Option<ExecutorId> {
        let state = self.state.lock();
        let (slot, generation) = state.replicas.get(id).map(|(s, g, _)| (*s, *g))?;
        let peer = &state.peers[slot];
        (peer.out.is_some() && peer.generation == generation).then_some(self.first_id + slot)
    }

    /// The replica of received block `id`, if a process's receiver stored it.
    pub(super) fn replica(state: &State, id: &BlockId) -> Option<Vec<u8>> {
        state.replicas.get(id).map(|(_, _, b)| b.clone())
    }

    /// Forgets received block `id` (no batch needs it): drops its replica and tells the
    /// process holding it.
    pub(crate) fn forget_received(&self, id: &BlockId) {
        let mut state = self.state.lock();
        let Some((slot, generation, _)) = state.replicas.remove(id) else {
            return;
        };
        let peer = &state.peers[slot];
        if let (Some(out), true) = (&peer.out, peer.generation == generation) {
            let _ = out.send(ToExecutor::DropBlocks { ids: vec![*id] });
        }
    }
}

/// Sends `ToExecutor::StartReceiver` for `placed` to its slot's process, if connected.
fn start_receiver(state: &State, stream: StreamId, placed: &PlacedReceiver) {
    if let Some(out) = &state.peers[placed.slot].out {
        let _ = out.send(ToExecutor::StartReceiver {
            stream,
            next_seq: placed.next_seq,
            rate: placed.rate,
            capacity: placed.capacity,
        });
    }
}

/// The coordinator's handle on a receiver in an executor process: answers the
/// coordinator's [`SealBlock`] and [`StopReceiver`] by asking the process.
pub(crate) struct RemoteReceiver {
    stream: StreamId,
    cluster: Weak<Cluster>,
}

impl RemoteReceiver {
    /// The handle of receiver `stream`, placed by `cluster`.
    pub(crate) fn new(stream: StreamId, cluster: Weak<Cluster>) -> RemoteReceiver {
        RemoteReceiver { stream, cluster }
    }

    fn request(&self, stop: bool) -> BoxFuture<'static, Option<SealedBlock>> {
        match self.cluster.upgrade() {
            Some(c) => c.receiver_request(self.stream, stop),
            None => futures::future::ready(None).boxed(),
        }
    }
}

impl Actor for RemoteReceiver {
    type Context = Context<Self>;
}

impl Handler<SealBlock> for RemoteReceiver {
    type Result = ResponseFuture<SealedBlock>;

    fn handle(&mut self, _: SealBlock, _: &mut Context<Self>) -> Self::Result {
        let sealed = self.request(false);
        Box::pin(async move {
            sealed.await.unwrap_or(SealedBlock {
                blocks: Vec::new(),
                sealed_total: 0,
            })
        })
    }
}

impl Handler<StopReceiver> for RemoteReceiver {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: StopReceiver, _: &mut Context<Self>) -> Self::Result {
        let stopped = self.request(true);
        Box::pin(async move {
            stopped.await;
        })
    }
}

/// The coordinator's side of a remote receiver's buffer: backpressure is forwarded to the
/// process, the settings in force are kept here, and its counters are the ones its process
/// reports with each heartbeat (for the status page and the rate controller's logs).
pub(crate) struct RemoteBuffer {
    stream: StreamId,
    /// Set once the cluster started ([`RemoteBuffer::bind`]): the status page takes the
    /// counters before.
    cluster: std::sync::OnceLock<Weak<Cluster>>,
    rate: Mutex<Option<f64>>,
    capacity: AtomicUsize,
}

impl RemoteBuffer {
    /// The buffer of the receiver `start` places, at the rate and bound it starts with.
    pub(crate) fn new(start: &ReceiverStart) -> RemoteBuffer {
        RemoteBuffer {
            stream: start.stream,
            cluster: std::sync::OnceLock::new(),
            rate: Mutex::new(start.rate),
            capacity: AtomicUsize::new(start.capacity),
        }
    }

    /// The stream whose receiver this is.
    pub(crate) fn stream(&self) -> StreamId {
        self.stream
    }

    /// Forwards to `cluster` from now on.
    pub(crate) fn bind(&self, cluster: Weak<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    fn send(&self, control: ReceiverControl) {
        if let Some(c) = self.cluster.get().and_then(Weak::upgrade) {
            c.control_receiver(self.stream, control);
        }
    }
}

impl ReceiverCounters for RemoteBuffer {
    fn metrics(&self) -> ReceiverMetrics {
        let Some(c) = self.cluster.get().and_then(Weak::upgrade) else {
            return ReceiverMetrics::default();
        };
        let state = c.state.lock();
        state
            .receivers
            .get(&self.stream)
            .map(PlacedReceiver::total_metrics)
            .unwrap_or_default()
    }

    /// The process of the slot it is placed on, and the address that process connected
    /// from (the last one, while a replacement is starting).
    fn executor(&self) -> Option<(ExecutorId, String)> {
        let c = self.cluster.get().and_then(Weak::upgrade)?;
        let state = c.state.lock();
        let slot = state.receivers.get(&self.stream)?.slot;
        let host = state.peers[slot]
            .addr
            .map_or_else(|| "unknown".into(), |a| a.ip().to_string());
        Some((c.first_id + slot, host))
    }
}

impl BufferControl for RemoteBuffer {
    fn release(&self, records: usize) {
        self.send(ReceiverControl::Release(records));
    }
    /// The process closes its buffer when it stops the receiver.
    fn close(&self) {}
    fn set_rate(&self, records_per_sec: Option<f64>) {
        *self.rate.lock() = records_per_sec;
        self.send(ReceiverControl::Rate(records_per_sec));
    }
    fn rate(&self) -> Option<f64> {
        *self.rate.lock()
    }
    fn set_capacity(&self, records: usize) {
        self.capacity.store(records.max(1), Ordering::Relaxed);
        self.send(ReceiverControl::Capacity(records.max(1)));
    }
    fn capacity(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use rivulet_framework::block::BlockInfo;

    use super::*;

    fn block(seq: u64) -> BlockInfo {
        BlockInfo {
            id: BlockId::Input { stream: 0, seq },
            stream: 0,
            num_records: 10,
            offset: None,
        }
    }

    fn sealed(seqs: &[u64], sealed_total: u64) -> SealedBlock {
        SealedBlock {
            blocks: seqs.iter().map(|&s| block(s)).collect(),
            sealed_total,
        }
    }

    /// The coordinator waits at stop until it heard of as many blocks as the builders say
    /// they sealed: a receiver that moved to a new process (whose builder counts from 0
    /// again) must not make that count go back, nor leave it above what can still arrive.
    #[test]
    fn sealed_counts_and_counters_carry_over_a_lost_process_and_numbering_resumes_after_them() {
        let mut state = State {
            peers: vec![super::super::Peer::default()],
            ..State::default()
        };
        let start = ReceiverStart {
            stream: 0,
            next_seq: 0,
            rate: None,
            capacity: 100,
        };
        state.receivers.insert(0, PlacedReceiver::new(0, &start));
        let first = Cluster::count_reported(&mut state, 0, sealed(&[0, 1], 2));
        assert_eq!(first.sealed_total, 2);
        let stored = |n| ReceiverMetrics {
            records_stored: n,
            ..ReceiverMetrics::default()
        };
        Cluster::record_counters(&mut state, vec![(0, stored(20))]);
        // The process sealed block 2 and died before reporting it; a seal request waits.
        let (reply, mut rx) = oneshot::channel();
        state.receiver_requests.insert(
            7,
            ReceiverRequest {
                slot: 0,
                stream: 0,
                reply,
            },
        );
        Cluster::lose_receivers(&mut state, 0);
        let answer = rx.try_recv().expect("answered").expect("a seal answer");
        assert!(answer.blocks.is_empty());
        assert_eq!(answer.sealed_total, 2, "only the blocks that reached it");
        assert_eq!(state.receivers[&0].next_seq, 2);
        // Its replacement numbers from 2 and counts from 0 again.
        let second = Cluster::count_reported(&mut state, 0, sealed(&[2], 1));
        assert_eq!(second.sealed_total, 3);
        assert_eq!(state.receivers[&0].next_seq, 3);
        // Its counters too: the new process counts from 0, the sum goes on.
        Cluster::record_counters(&mut state, vec![(0, stored(5))]);
        assert_eq!(state.receivers[&0].total_metrics().records_stored, 25);
        // A stream placed nowhere passes through unchanged.
        assert_eq!(
            Cluster::count_reported(&mut state, 9, sealed(&[], 4)).sealed_total,
            4
        );
    }
}
