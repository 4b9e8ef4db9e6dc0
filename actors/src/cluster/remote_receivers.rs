//! Receivers placed on executor processes, as the coordinator drives them (Spark:
//! `ReceiverTracker` launching receivers on executors). The coordinator keeps one
//! `ReceiverHandle` per receiver wherever it runs; for one in a process, its seal and stop
//! requests go to [`RemoteReceiver`], which asks the process over its connection, and its
//! backpressure to [`RemoteBuffer`], which forwards it. The [`Cluster`] remembers where each
//! receiver runs and starts it again in the process that takes a lost one's slot, and
//! confirms each block to its receiver once it is durable: logged (with the write-ahead log
//! on) and its replica held (`replicas.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use actix::{Actor, Context, Handler, Recipient, ResponseFuture};
use futures::future::{BoxFuture, FutureExt};
use parking_lot::Mutex;
use rivulet_framework::block::{BlockId, BlockInfo, ExecutorId, StreamId};
use rivulet_framework::checkpoint::BlockLog;
use rivulet_framework::config::StreamingConfig;
use rivulet_framework::receiver::{BufferControl, ReceiverCounters, ReceiverMetrics, ReceiverSlot};
use rivulet_framework::{Error, Result};
use tokio::sync::oneshot;
use tracing::{info, warn};

use super::protocol::{ReceiverControl, ToExecutor};
use super::received_log::{input_seq, ReceivedLog, ReceiverEntry};
use super::{Cluster, State};
use crate::messages::{
    BlocksStored, ReceiverEvent, SealBlock, SealedBlock, StopReceiver, WalFailed,
};

/// A receiver placed on an executor process.
pub(super) struct PlacedReceiver {
    pub(super) slot: usize,
    /// The next block number: after every block counted so far.
    next_seq: u64,
    /// The newest source offset of a block counted so far, where its source resumes.
    offset: Option<Vec<u8>>,
    /// The blocks its current process stored and the coordinator holds, not yet reported,
    /// by sequence number.
    unreported: BTreeMap<u64, Unreported>,
    /// The blocks of its current process whose replica is on its way to another process.
    replicating: BTreeSet<u64>,
    /// One past the newest block of its current process the journal applied (logged, with
    /// the write-ahead log on).
    logged_next: u64,
    /// The blocks below this are confirmed to its current process (`BlocksDurable`).
    confirmed_next: u64,
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
    pub(super) fn new(slot: usize, start: &ReceiverStart) -> PlacedReceiver {
        PlacedReceiver {
            slot,
            next_seq: start.next_seq,
            offset: start.offset.clone(),
            unreported: BTreeMap::new(),
            replicating: BTreeSet::new(),
            logged_next: start.next_seq,
            confirmed_next: start.next_seq,
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

    /// Counts block `info` (reported, or taken over from a lost process): numbering and
    /// the source offset go on after it.
    fn count(&mut self, info: &BlockInfo) {
        if let Some(seq) = input_seq(info) {
            self.unreported.remove(&seq);
            self.next_seq = self.next_seq.max(seq + 1);
        }
        if info.offset.is_some() {
            self.offset.clone_from(&info.offset);
        }
    }

    /// Its lost process's blocks that the coordinator holds and never heard reported:
    /// those it confirmed (the receiver may have acknowledged its source for them), up to
    /// the last that ends a store, are returned to be counted; the rest (a reliable store
    /// whose end never came, which its source delivers again) are returned second, to be
    /// dropped.
    fn take_unreported(&mut self) -> (Vec<BlockInfo>, Vec<BlockInfo>) {
        let all: Vec<Unreported> = std::mem::take(&mut self.unreported).into_values().collect();
        let confirmed = all.iter().take_while(|u| u.confirmed).count();
        let kept = all[..confirmed]
            .iter()
            .rposition(|u| !u.continues)
            .map_or(0, |i| i + 1);
        let mut all: Vec<BlockInfo> = all.into_iter().map(|u| u.info).collect();
        let dropped = all.split_off(kept);
        for info in &all {
            self.count(info);
        }
        (all, dropped)
    }
}

/// A block a process's receiver stored whose report has not arrived.
#[derive(Debug)]
struct Unreported {
    info: BlockInfo,
    /// It holds the beginning of a reliable store that goes on in a later block.
    continues: bool,
    /// Durable (and so confirmed to the process, while it lives): in the write-ahead log
    /// when it is on, and its replica held (not on its way to another process).
    confirmed: bool,
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

/// A receiver to start: its stream, first block number, the source offset it resumes at,
/// rate (records/s) and buffer bound (records).
pub(crate) struct ReceiverStart {
    pub(crate) stream: StreamId,
    pub(crate) next_seq: u64,
    pub(crate) offset: Option<Vec<u8>>,
    pub(crate) rate: Option<f64>,
    pub(crate) capacity: usize,
}

impl ReceiverStart {
    /// The receivers of `slots` that run on executor processes under `config` (see
    /// `StreamingConfig::receivers_in_executor_processes`), at the rate and buffer bound
    /// their buffers start with, resumed where their buffers in this process resume (after
    /// the blocks a restored checkpoint or the write-ahead log names).
    pub(crate) fn of(config: &StreamingConfig, slots: &[ReceiverSlot]) -> Vec<ReceiverStart> {
        if !config.get_receivers_in_executor_processes() {
            return Vec::new();
        }
        slots
            .iter()
            .filter(|s| s.receiver.runs_anywhere())
            .map(|s| {
                let (next_seq, offset) = s.source.resume_position();
                ReceiverStart {
                    stream: s.stream,
                    next_seq,
                    offset,
                    rate: s.source.rate(),
                    capacity: s.source.capacity(),
                }
            })
            .collect()
    }
}

impl Cluster {
    /// Sets where the processes' receivers report, and starts the journal of their blocks
    /// (see `received_log.rs`), which adds them to `wal` when given and reports a log that
    /// cannot be written to `wal_failed`.
    ///
    /// # Errors
    /// [`Error::Config`] when the journal's thread cannot be started.
    pub(crate) fn set_coordinator(
        self: &Arc<Self>,
        stored: Recipient<BlocksStored>,
        events: Recipient<ReceiverEvent>,
        wal: Option<BlockLog>,
        wal_failed: Recipient<WalFailed>,
    ) -> Result<()> {
        *self.inbox.lock() = Some(Inbox {
            stored: stored.downgrade(),
            events: events.downgrade(),
        });
        let log = ReceivedLog::start(Arc::downgrade(self), wal, wal_failed).map_err(|e| {
            Error::Config(format!(
                "receivers in executor processes: cannot start the thread that logs their blocks: {e}"
            ))
        })?;
        let _ = self.received_log.set(log);
        Ok(())
    }

    /// Adds `entry` to the journal of the processes' receivers (with the block's replica
    /// `bytes` for a block stored). Nothing is placed on the processes before the journal
    /// exists, so there is nothing to record then.
    pub(super) fn journal(&self, entry: ReceiverEntry, bytes: Option<&[u8]>) {
        if let Some(log) = self.received_log.get() {
            log.add(entry, bytes);
        }
    }

    /// A receiver in incarnation `generation` of `slot` stored block `info`: journals it and
    /// keeps its replica `bytes` (`Cluster::keep_replica`; a lost incarnation's late block is
    /// ignored: its receiver never heard it confirmed).
    pub(super) fn received(
        &self,
        slot: usize,
        generation: u64,
        info: BlockInfo,
        continues: bool,
        bytes: Vec<u8>,
    ) {
        let mut state = self.state.lock();
        if !state.is_current(slot, generation) {
            return;
        }
        self.journal(
            ReceiverEntry::Stored {
                slot,
                generation,
                info: info.clone(),
                continues,
            },
            Some(&bytes),
        );
        let wal = self.wal_on();
        Cluster::store_received(&mut state, slot, generation, &info, bytes, wal);
    }

    /// Keeps the replica `bytes` of block `info`, stored by incarnation `generation` of
    /// `slot` ([`Cluster::keep_replica`]), and notes its block as waiting for its replica
    /// when that is on its way.
    pub(super) fn store_received(
        state: &mut State,
        slot: usize,
        generation: u64,
        info: &BlockInfo,
        bytes: Vec<u8>,
        wal: bool,
    ) {
        let sending = Cluster::keep_replica(state, info.id, slot, generation, bytes, wal);
        if let (true, Some(seq), Some(placed)) = (
            sending,
            input_seq(info),
            state.receivers.get_mut(&info.stream),
        ) {
            placed.replicating.insert(seq);
        }
    }

    /// Receiver `stream` in incarnation `generation` of `slot` reported `sealed` (on its own
    /// timer, or in answer to request `req`): journaled, so that it reaches the coordinator
    /// after its blocks were logged (a lost incarnation's late report is ignored: its
    /// blocks were counted at the loss).
    pub(super) fn reported(
        &self,
        slot: usize,
        generation: u64,
        stream: StreamId,
        sealed: SealedBlock,
        req: Option<u64>,
    ) {
        let state = self.state.lock();
        if state.is_current(slot, generation) {
            self.journal(
                ReceiverEntry::Reported {
                    stream,
                    sealed,
                    req,
                },
                None,
            );
        }
    }

    /// Applies a journal entry whose block, if any, is logged (`logged`: with the log on,
    /// its write succeeded).
    pub(super) fn apply_receiver_entry(&self, entry: ReceiverEntry, logged: bool) {
        match entry {
            ReceiverEntry::Stored {
                slot,
                generation,
                info,
                continues,
            } => {
                let mut state = self.state.lock();
                Cluster::apply_stored(&mut state, slot, generation, info, continues, logged);
            }
            ReceiverEntry::Reported {
                stream,
                sealed,
                req,
            } => {
                let mut state = self.state.lock();
                let sealed = Cluster::count_reported(&mut state, stream, sealed);
                match req {
                    Some(req) => Cluster::answer_receiver(&mut state, req, Some(sealed)),
                    None => {
                        drop(state);
                        self.forward_stored(BlocksStored { stream, sealed });
                    }
                }
            }
            ReceiverEntry::Lost { slot } => {
                let taken_over = Cluster::lose_receivers(&mut self.state.lock(), slot);
                for stored in taken_over {
                    self.forward_stored(stored);
                }
            }
            ReceiverEntry::Start { slot } => Cluster::start_receivers_of(&self.state.lock(), slot),
        }
    }

    /// The journal applies block `info`, stored by incarnation `generation` of `slot`
    /// (`logged`: with the log on, its write succeeded): notes it unreported and confirms
    /// what became durable.
    pub(super) fn apply_stored(
        state: &mut State,
        slot: usize,
        generation: u64,
        info: BlockInfo,
        continues: bool,
        logged: bool,
    ) {
        let (Some(seq), stream) = (input_seq(&info), info.stream) else {
            return;
        };
        Cluster::record_stored(state, info, continues, false);
        if let (true, Some(placed)) = (logged, state.receivers.get_mut(&stream)) {
            placed.logged_next = placed.logged_next.max(seq + 1);
        }
        Cluster::confirm_durable(state, stream, slot, generation);
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

    /// Notes block `info` of a process's receiver as held here and not yet reported
    /// (`confirmed`: durable, see [`Unreported`]).
    fn record_stored(state: &mut State, info: BlockInfo, continues: bool, confirmed: bool) {
        let Some(seq) = input_seq(&info) else { return };
        if let Some(placed) = state.receivers.get_mut(&info.stream) {
            let block = Unreported {
                info,
                continues,
                confirmed,
            };
            placed.unreported.insert(seq, block);
        }
    }

    /// Confirms to receiver `stream`'s process (incarnation `generation` of `slot`, if it
    /// is still the one connected) its blocks that are durable: every one below the first
    /// whose replica is on its way or that the journal has not applied. Those are marked
    /// confirmed whether or not the process hears it (a lost process's are counted).
    pub(super) fn confirm_durable(
        state: &mut State,
        stream: StreamId,
        slot: usize,
        generation: u64,
    ) {
        let current = state.is_current(slot, generation);
        let State {
            receivers, peers, ..
        } = state;
        let Some(placed) = receivers.get_mut(&stream) else {
            return;
        };
        let next = placed
            .replicating
            .first()
            .map_or(placed.logged_next, |&s| s.min(placed.logged_next));
        for (_, block) in placed.unreported.range_mut(..next) {
            block.confirmed = true;
        }
        if !current || next <= placed.confirmed_next {
            return;
        }
        placed.confirmed_next = next;
        if let Some(out) = &peers[slot].out {
            let _ = out.send(ToExecutor::BlocksDurable {
                stream,
                next_seq: next,
            });
        }
    }

    /// The replica of received block `id` (stored by incarnation `generation` of process
    /// `slot`) is held: confirms what became durable.
    pub(super) fn replicated(state: &mut State, id: BlockId, slot: usize, generation: u64) {
        let BlockId::Input { stream, seq } = id else {
            return;
        };
        if let Some(placed) = state.receivers.get_mut(&stream) {
            placed.replicating.remove(&seq);
        }
        Cluster::confirm_durable(state, stream, slot, generation);
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
                placed.count(b);
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

    /// What a loss of slot `slot` means for its receivers: the blocks the coordinator
    /// confirmed and never heard reported are counted in the process's place (returned, as
    /// reports to forward), the others dropped; their waiting requests answer nothing
    /// sealed (the blocks are counted as the ones that reached the coordinator), and the
    /// count and numbering of their next process start after those.
    pub(super) fn lose_receivers(state: &mut State, slot: usize) -> Vec<BlocksStored> {
        let mut taken_over = Vec::new();
        let mut dropped = Vec::new();
        for (&stream, placed) in state.receivers.iter_mut().filter(|(_, p)| p.slot == slot) {
            let (counted, not_counted) = placed.take_unreported();
            dropped.extend(not_counted.into_iter().map(|b| b.id));
            // Its next process numbers from `next_seq`; what the lost one waited for is moot.
            placed.replicating.clear();
            placed.logged_next = placed.next_seq;
            placed.confirmed_next = placed.next_seq;
            placed.earlier += placed.current + counted.len() as u64;
            placed.current = 0;
            placed.earlier_metrics = placed.total_metrics();
            placed.metrics = ReceiverMetrics::default();
            if !counted.is_empty() {
                info!(
                    stream,
                    blocks = counted.len(),
                    "A lost executor process's blocks that never were reported are counted from their replicas."
                );
                taken_over.push(BlocksStored {
                    stream,
                    sealed: SealedBlock {
                        blocks: counted,
                        sealed_total: placed.earlier,
                    },
                });
            }
        }
        for id in dropped {
            Cluster::drop_received(state, &id);
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
        taken_over
    }
}

/// Sends `ToExecutor::StartReceiver` for `placed` to its slot's process, if connected.
fn start_receiver(state: &State, stream: StreamId, placed: &PlacedReceiver) {
    if let Some(out) = &state.peers[placed.slot].out {
        let _ = out.send(ToExecutor::StartReceiver {
            stream,
            next_seq: placed.next_seq,
            offset: placed.offset.clone(),
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
pub(super) mod tests {
    use rivulet_framework::block::BlockInfo;

    use super::super::replicas::{ReceivedBlock, Replica};
    use super::*;

    /// Block `seq` of stream 0: 10 records, no source offset.
    pub(in crate::cluster) fn block(seq: u64) -> BlockInfo {
        BlockInfo {
            id: BlockId::Input { stream: 0, seq },
            stream: 0,
            num_records: 10,
            offset: None,
        }
    }

    fn at_offset(seq: u64, offset: u8) -> BlockInfo {
        BlockInfo {
            offset: Some(vec![offset]),
            ..block(seq)
        }
    }

    /// A state with receiver 0 placed on slot 0, numbering from `next_seq`.
    fn placed_from(next_seq: u64) -> State {
        let mut state = State {
            peers: vec![super::super::Peer::default()],
            ..State::default()
        };
        let start = ReceiverStart {
            stream: 0,
            next_seq,
            offset: Some(vec![0]),
            rate: None,
            capacity: 100,
        };
        state.receivers.insert(0, PlacedReceiver::new(0, &start));
        state
    }

    /// Stores block `info` as the journal does: its replica held, then noted unreported.
    fn stored(state: &mut State, info: BlockInfo, continues: bool, confirmed: bool) {
        let block = ReceivedBlock {
            slot: 0,
            generation: 1,
            replica: Replica::Here(vec![1, 2, 3]),
        };
        state.received.insert(info.id, block);
        Cluster::record_stored(state, info, continues, confirmed);
    }

    /// A lost process's receiver may have acknowledged its source for every block the
    /// coordinator confirmed, whether or not the report arrived: those are counted in its
    /// place, up to the last that ends a store; a store whose end never came, and blocks
    /// never confirmed, are dropped (their source delivers the records again), and the
    /// next process numbers its blocks from the first of those and resumes its source at
    /// the newest offset counted.
    #[test]
    fn a_lost_process_s_confirmed_unreported_blocks_are_counted_and_the_rest_dropped() {
        let mut state = placed_from(4);
        stored(&mut state, at_offset(4, 40), false, true);
        let first = Cluster::count_reported(&mut state, 0, sealed(&[4], 1));
        assert_eq!(first.sealed_total, 1);
        // Confirmed, never reported: 5, and a reliable store over 6 and 7.
        stored(&mut state, at_offset(5, 50), false, true);
        stored(&mut state, block(6), true, true);
        stored(&mut state, at_offset(7, 70), false, true);
        // A store whose end (9) never came, then a block never confirmed.
        stored(&mut state, block(8), true, true);
        stored(&mut state, block(9), false, false);

        let taken_over = Cluster::lose_receivers(&mut state, 0);
        assert_eq!(taken_over.len(), 1);
        let counted: Vec<BlockId> = taken_over[0].sealed.blocks.iter().map(|b| b.id).collect();
        assert_eq!(counted, [5, 6, 7].map(|seq| block(seq).id));
        assert_eq!(taken_over[0].stream, 0);
        assert_eq!(
            taken_over[0].sealed.sealed_total, 4,
            "1 reported + 3 counted"
        );
        let placed = &state.receivers[&0];
        assert_eq!(placed.next_seq, 8, "the next process overwrites 8 and 9");
        assert_eq!(placed.offset, Some(vec![70]));
        assert!(placed.unreported.is_empty());
        assert!(state.received.contains_key(&block(7).id));
        assert!(!state.received.contains_key(&block(8).id));
        assert!(!state.received.contains_key(&block(9).id));
        // A loss with nothing unreported forwards nothing.
        assert!(Cluster::lose_receivers(&mut state, 0).is_empty());
    }

    /// Blocks the log could not take are never counted for a lost process, even when a
    /// confirmed block follows (confirmations come in order, so none does in practice).
    #[test]
    fn only_the_confirmed_prefix_of_a_lost_process_s_blocks_is_counted() {
        let mut state = placed_from(0);
        stored(&mut state, block(0), false, true);
        stored(&mut state, block(1), false, false);
        stored(&mut state, block(2), false, true);
        let taken_over = Cluster::lose_receivers(&mut state, 0);
        assert_eq!(taken_over[0].sealed.blocks.len(), 1);
        assert_eq!(state.receivers[&0].next_seq, 1);
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
            offset: None,
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
