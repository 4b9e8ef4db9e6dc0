//! A receiver's bounded record buffer (Spark: `BlockGenerator`'s current buffer plus its
//! bounded `blocksForPushing` queue, merged into one bound).
//!
//! The bound counts records that were stored and whose batch has not finished yet, so memory
//! stays bounded even when processing falls behind: `store` waits until finished batches
//! [`release`](super::BufferControl::release) room.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::block::{Block, BlockData, BlockId, StreamId};
use crate::data::Data;

use super::{BlockReplay, BlockSealer, BufferControl, ReceiverCounters};

/// A store into a closed buffer (the context is stopping); carries the records not stored.
#[derive(Debug, thiserror::Error)]
#[error("the receiver is stopping: records were not stored")]
pub struct SinkClosed<T>(pub T);

/// A rate limit on a buffer's stores: a GCRA limiter (`governor`) at `records_per_sec`,
/// admitting bursts of up to 100 ms of records.
struct RateLimit {
    records_per_sec: f64,
    burst: u32,
    limiter: governor::DefaultDirectRateLimiter,
}

impl RateLimit {
    /// `None` for a rate that is not a positive number (no limit).
    fn new(records_per_sec: f64) -> Option<RateLimit> {
        if !(records_per_sec.is_finite() && records_per_sec > 0.0) {
            return None;
        }
        let period = std::time::Duration::from_secs_f64(1.0 / records_per_sec)
            .max(std::time::Duration::from_nanos(1));
        let burst = (records_per_sec / 10.0).clamp(1.0, f64::from(u32::MAX)) as u32;
        let quota = governor::Quota::with_period(period)?
            .allow_burst(std::num::NonZeroU32::new(burst).unwrap_or(std::num::NonZeroU32::MIN));
        Some(RateLimit {
            records_per_sec,
            burst,
            limiter: governor::RateLimiter::direct(quota),
        })
    }
}

/// Why [`BlockBuffer::try_store`] did not store a record; carries the record back.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryStoreError<T> {
    /// The buffer is full (backpressure).
    #[error("the stream's buffer is full")]
    Full(T),
    /// The buffer is closed (the context is stopping or stopped).
    #[error("the stream is stopping: records were not stored")]
    Closed(T),
}

/// Counters of one receiver, for listeners and logs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReceiverMetrics {
    /// Records stored so far.
    pub records_stored: u64,
    /// Malformed inputs the receiver reported (e.g. lines with invalid UTF-8, replaced).
    pub malformed: u64,
    /// Errors the receiver reported and recovered from (refused connections, unreadable files).
    pub errors: u64,
    /// Records stored cut short, the rest of each dropped (e.g. lines longer than the
    /// socket receiver's `max_line_bytes` under its `truncate` policy).
    pub truncated: u64,
    /// Records dropped whole (e.g. long lines under the `skip` policy).
    pub dropped: u64,
    /// Bytes of input not stored: the cut-off rests of truncated records and the whole of
    /// dropped ones.
    pub dropped_bytes: u64,
    /// Records delivered as several records, nothing lost (e.g. long lines under `split`).
    pub split: u64,
    /// Cuts made inside a word while splitting records (`split`): a piece that had to end
    /// inside a run of non-whitespace bytes because the run is longer than the limit. Every
    /// byte is still delivered, but a word was cut in two (a tokenizer sees two words).
    pub words_cut: u64,
    /// Records the source ended in the middle of (e.g. a connection closed or reset before
    /// a line's newline): stored as they were received (Spark's `socketTextStream` does
    /// the same), but their rest never came. Counted as lost input.
    pub incomplete: u64,
}

/// The counters of two runs of a receiver, summed field by field (a receiver that moved to
/// another executor process counts again from 0 there).
impl std::ops::Add for ReceiverMetrics {
    type Output = ReceiverMetrics;

    fn add(self, o: ReceiverMetrics) -> ReceiverMetrics {
        ReceiverMetrics {
            records_stored: self.records_stored + o.records_stored,
            malformed: self.malformed + o.malformed,
            errors: self.errors + o.errors,
            truncated: self.truncated + o.truncated,
            dropped: self.dropped + o.dropped,
            dropped_bytes: self.dropped_bytes + o.dropped_bytes,
            split: self.split + o.split,
            words_cut: self.words_cut + o.words_cut,
            incomplete: self.incomplete + o.incomplete,
        }
    }
}

impl ReceiverMetrics {
    /// Whether any input was lost: a record truncated, dropped, or cut short by the end of
    /// its source (`incomplete`).
    pub fn lost_input(&self) -> bool {
        self.truncated > 0 || self.dropped > 0 || self.dropped_bytes > 0 || self.incomplete > 0
    }
}

struct State<T> {
    /// Blocks that reached the size cap, waiting for the batch builder, oldest first.
    full: Vec<Vec<T>>,
    records: Vec<T>,
    /// Records stored whose batch has not finished (sealed or not).
    outstanding: usize,
    closed: bool,
    next_seq: u64,
    /// Source offsets given by `store_reliably_at`, by the sequence number of the block
    /// whose records end there.
    offsets: Vec<(u64, Vec<u8>)>,
    /// While a reliable store is in progress: the sequence number of the first block that
    /// holds its records (it starts a block of its own). Its blocks are held back from
    /// sealing until it ends, so that a block never holds part of a store whose offset a
    /// crash could lose (a restart would read those records again from the previous
    /// offset, and the write-ahead log would replay them too).
    open_from: Option<u64>,
    /// Whether the open store's blocks are held back: given up when the store must wait for
    /// room (its own records fill the buffer, and only sealing frees room). A store's blocks
    /// before its last are marked [`Block::continues`] (sealed early, or cut at the size
    /// cap).
    hold_open: bool,
    /// The sequence numbers of the blocks where reliable stores start, and of those where
    /// they end, not sealed yet.
    store_starts: Vec<u64>,
    store_ends: Vec<u64>,
    /// Whether the blocks sealed last ended inside a reliable store (its end not sealed).
    inside_store: bool,
}

/// The bounded buffer between a receiver and its batch builder.
///
/// Records are cut into blocks every block interval (by the batch builder) and also
/// whenever the current block reaches `max_block` records, so that a fast source still
/// gives each batch several partitions.
pub struct BlockBuffer<T> {
    stream: StreamId,
    /// The bound on stored-but-unfinished records; moves with the measured processing rate
    /// (see [`BufferBound`](super::BufferBound)).
    capacity: AtomicUsize,
    max_block: usize,
    state: Mutex<State<T>>,
    space: Notify,
    stored: AtomicU64,
    malformed: AtomicU64,
    errors: AtomicU64,
    /// Blocks with a sequence number below this are stored (in the block stores, and in the
    /// write-ahead log when it is on): what `store_reliably` waits for.
    durable: AtomicU64,
    durable_changed: Notify,
    /// The rate limit on stores (rate control), if any.
    limit: Mutex<Option<Arc<RateLimit>>>,
    /// Where the source resumes after a restart (the newest offset in the write-ahead log).
    resume_offset: Mutex<Option<Vec<u8>>>,
    /// `truncated`, `dropped`, `dropped_bytes`, `split`, `words_cut`, `incomplete` of
    /// [`ReceiverMetrics`].
    long: [AtomicU64; 6],
}

impl<T> BlockBuffer<T> {
    /// A buffer for stream `stream` holding at most `capacity` unfinished records (at least
    /// 1; [`BufferControl::set_capacity`](super::BufferControl::set_capacity) moves it), in blocks of at most `capacity` records.
    pub fn new(stream: StreamId, capacity: usize) -> BlockBuffer<T> {
        BlockBuffer {
            stream,
            capacity: AtomicUsize::new(capacity.max(1)),
            max_block: capacity.max(1),
            state: Mutex::new(State {
                full: Vec::new(),
                records: Vec::new(),
                outstanding: 0,
                closed: false,
                next_seq: 0,
                offsets: Vec::new(),
                open_from: None,
                hold_open: false,
                store_starts: Vec::new(),
                store_ends: Vec::new(),
                inside_store: false,
            }),
            resume_offset: Mutex::new(None),
            space: Notify::new(),
            stored: AtomicU64::new(0),
            malformed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            durable: AtomicU64::new(0),
            durable_changed: Notify::new(),
            limit: Mutex::new(None),
            long: Default::default(),
        }
    }

    /// Caps blocks at `max_block` records (at least 1).
    pub fn with_max_block(mut self, max_block: usize) -> BlockBuffer<T> {
        self.max_block = max_block.max(1);
        self
    }

    /// Moves as many of `items` as there is room for into the buffer, in order; returns
    /// whether all were stored, or `Err` if the buffer is closed.
    fn push_some(&self, items: &mut std::vec::IntoIter<T>) -> Result<bool, ()> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(());
        }
        let mut stored = 0;
        let capacity = self.bound();
        loop {
            let room = capacity.saturating_sub(s.outstanding + stored);
            let in_block = self.max_block - s.records.len();
            let n = room.min(in_block).min(items.len());
            if n == 0 {
                break;
            }
            s.records.extend(items.by_ref().take(n));
            stored += n;
            if s.records.len() >= self.max_block {
                let block = std::mem::take(&mut s.records);
                s.full.push(block);
            }
        }
        s.outstanding += stored;
        drop(s);
        self.stored.fetch_add(stored as u64, Ordering::Relaxed);
        Ok(items.len() == 0)
    }

    /// Stores all `items`, waiting for room as needed.
    ///
    /// # Errors
    /// [`SinkClosed`] with the records not stored when the buffer is closed.
    ///
    /// Under a rate limit, each burst the limit admits is stored as soon as it is admitted:
    /// a large `items` at a low limit trickles in instead of waiting for the whole of it
    /// (which at rate control's floor of 100 records/s held 4,096 lines back for 41 s, and
    /// every batch meanwhile was empty, so no estimate could raise the limit).
    pub async fn store_many(&self, items: Vec<T>) -> Result<(), SinkClosed<Vec<T>>> {
        if self.current_limit().is_none() {
            return self.store_admitted(items).await;
        }
        let mut items = items.into_iter();
        while items.len() > 0 {
            let admitted = self.admit_some(items.len()).await;
            if admitted == items.len() {
                return self.store_admitted(items.collect()).await;
            }
            let chunk: Vec<T> = items.by_ref().take(admitted).collect();
            if let Err(SinkClosed(mut rest)) = self.store_admitted(chunk).await {
                rest.extend(items);
                return Err(SinkClosed(rest));
            }
        }
        Ok(())
    }

    /// [`store_many`](BlockBuffer::store_many) for records the rate limit already admitted.
    async fn store_admitted(&self, items: Vec<T>) -> Result<(), SinkClosed<Vec<T>>> {
        let mut items = items.into_iter();
        loop {
            match self.push_some(&mut items) {
                Err(()) => return Err(SinkClosed(items.collect())),
                Ok(true) => return Ok(()),
                Ok(false) => {}
            }
            // Full: register for a wake-up, then look again so a release in between is seen.
            let notified = self.space.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut s = self.state.lock();
                if !s.closed && s.outstanding < self.bound() {
                    continue;
                }
                // Waiting for room while holding an open reliable store's records back
                // would wait for ever if they fill the buffer: let them be sealed.
                s.hold_open = false;
                if s.closed {
                    drop(s);
                    return Err(SinkClosed(items.collect()));
                }
            }
            notified.await;
        }
    }

    /// Stores one record if there is room now, without waiting.
    ///
    /// # Errors
    /// [`TryStoreError::Full`] with the record when the buffer is full (backpressure: try
    /// later, or wait with [`store`](BlockBuffer::store)); [`TryStoreError::Closed`] when it
    /// is closed.
    pub fn try_store(&self, item: T) -> Result<(), TryStoreError<T>> {
        if let Some(limit) = self.current_limit() {
            if limit.limiter.check().is_err() {
                return Err(TryStoreError::Full(item));
            }
        }
        self.push_now(item)
    }

    /// Stores one record if the buffer has room now (the rate limit is the caller's).
    fn push_now(&self, item: T) -> Result<(), TryStoreError<T>> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(TryStoreError::Closed(item));
        }
        if s.outstanding >= self.bound() {
            return Err(TryStoreError::Full(item));
        }
        s.records.push(item);
        s.outstanding += 1;
        if s.records.len() >= self.max_block {
            let block = std::mem::take(&mut s.records);
            s.full.push(block);
        }
        drop(s);
        self.stored.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Stores one record, waiting for room.
    ///
    /// # Errors
    /// [`SinkClosed`] with the record when the buffer is closed.
    pub async fn store(&self, item: T) -> Result<(), SinkClosed<T>> {
        self.admit_some(1).await;
        match self.push_now(item) {
            Ok(()) => Ok(()),
            Err(TryStoreError::Closed(item)) => Err(SinkClosed(item)),
            // Full: wait for room (already admitted by the rate limit).
            Err(TryStoreError::Full(item)) => self
                .store_admitted(vec![item])
                .await
                .map_err(|SinkClosed(mut v)| SinkClosed(v.pop().expect("one record was passed"))),
        }
    }

    /// Stores `items` in the current block's place, ends the block there, and returns once
    /// every block holding them is stored: on executors and, with the receiver write-ahead
    /// log on, durably in it. Under a rate limit the records are stored at once, whole, and
    /// the call returns only once the limit would have admitted them (the backpressure
    /// comes after the store, not in the middle of it). A receiver that can acknowledge its
    /// source acknowledges after this returns (Spark: a reliable receiver's
    /// `store(ArrayBuffer)`), so records it acknowledged survive a crash of the process.
    ///
    /// # Errors
    /// [`SinkClosed`] with the records not stored when the buffer is closed; and with none
    /// (an empty `Vec`) when it closed before the stored records' blocks were stored: do not
    /// acknowledge them then (the source sends them again: at least once at a stop).
    pub async fn store_reliably(&self, items: Vec<T>) -> Result<(), SinkClosed<Vec<T>>> {
        self.store_reliably_with(items, None).await
    }

    /// [`store_reliably`](BlockBuffer::store_reliably), and records `offset` (the source's
    /// position just after `items`: a byte offset, a broker offset, opaque to rivulet) with
    /// the block that ends with them. With the receiver write-ahead log on, the offset is
    /// logged with the block, kept in metadata checkpoints, and handed back after a restart
    /// by [`BlockSink::resume_offset`]: a receiver that resumes its source there gets every
    /// record exactly once across crashes. Empty `items` record no offset. Meant for a
    /// receiver that stores from one task (records another task stores between would be
    /// counted before the offset).
    ///
    /// # Errors
    /// As [`store_reliably`](BlockBuffer::store_reliably).
    pub async fn store_reliably_at(
        &self,
        items: Vec<T>,
        offset: Vec<u8>,
    ) -> Result<(), SinkClosed<Vec<T>>> {
        self.store_reliably_with(items, Some(offset)).await
    }

    async fn store_reliably_with(
        &self,
        items: Vec<T>,
        offset: Option<Vec<u8>>,
    ) -> Result<(), SinkClosed<Vec<T>>> {
        let stored_any = !items.is_empty();
        {
            // The store's records start a block of their own, so that a block sealed before
            // the store ends holds nothing else (see `Block::continues`).
            let mut s = self.state.lock();
            if !s.records.is_empty() {
                let block = std::mem::take(&mut s.records);
                s.full.push(block);
            }
            let first = s.next_seq + s.full.len() as u64;
            s.open_from = Some(first);
            s.hold_open = true;
            if stored_any {
                s.store_starts.push(first);
            }
        }
        let count = items.len();
        // Whole, not in the rate's bursts: a store held back by the rate would be sealed only
        // once it ended, and its records would reach no batch meanwhile (3,000 MQTT
        // messages at rate control's floor of 100 records/s: 30 s of empty batches).
        let stored = self.store_admitted(items).await;
        let needed = {
            let mut s = self.state.lock();
            s.open_from = None;
            stored?;
            if !s.records.is_empty() {
                let block = std::mem::take(&mut s.records);
                s.full.push(block);
            }
            let needed = s.next_seq + s.full.len() as u64;
            if stored_any {
                s.store_ends.push(needed - 1);
            }
            if let (Some(offset), true) = (offset, stored_any) {
                // `needed - 1` is the block that ends with the records just stored.
                s.offsets.push((needed - 1, offset));
            }
            needed
        };
        // The rate is paid after the store: the receiver, waiting here, takes nothing more
        // from its source until the limit would have admitted these records.
        let mut unpaid = count;
        while unpaid > 0 {
            unpaid -= self.admit_some(unpaid).await;
        }
        loop {
            let changed = self.durable_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.durable.load(Ordering::Acquire) >= needed {
                return Ok(());
            }
            if self.state.lock().closed {
                return Err(SinkClosed(Vec::new()));
            }
            changed.await;
        }
    }

    fn current_limit(&self) -> Option<Arc<RateLimit>> {
        self.limit.lock().clone()
    }

    /// Waits until the rate limit admits up to `n` more records, at most one burst; returns
    /// how many it admitted (`n` at once without a limit).
    async fn admit_some(&self, n: usize) -> usize {
        let Some(limit) = self.current_limit() else {
            return n;
        };
        let chunk = n.min(limit.burst as usize).max(1);
        let cells = std::num::NonZeroU32::new(chunk as u32).unwrap_or(std::num::NonZeroU32::MIN);
        // A chunk is at most the burst, so it always fits the limiter's capacity.
        let _ = limit.limiter.until_n_ready(cells).await;
        chunk
    }

    fn bound(&self) -> usize {
        self.capacity.load(Ordering::Relaxed)
    }

    /// Records stored but not yet sealed into a block.
    pub fn unsealed(&self) -> usize {
        let s = self.state.lock();
        s.records.len() + s.full.iter().map(Vec::len).sum::<usize>()
    }
}

impl<T: Data> BlockSealer for BlockBuffer<T> {
    fn stream(&self) -> StreamId {
        self.stream
    }

    fn seal(&self) -> Vec<Block> {
        let mut s = self.state.lock();
        let held = match (s.open_from, s.hold_open) {
            // The open reliable store's blocks (from index `i` of `full` ++ `records`) wait
            // until it ends.
            (Some(from), true) => usize::try_from(from.saturating_sub(s.next_seq)).ok(),
            _ => None,
        };
        let blocks: Vec<Vec<T>> = match held {
            Some(i) if i <= s.full.len() => s.full.drain(..i).collect(),
            _ => {
                let mut blocks = std::mem::take(&mut s.full);
                if !s.records.is_empty() {
                    blocks.push(std::mem::take(&mut s.records));
                }
                blocks
            }
        };
        let first_seq = s.next_seq;
        s.next_seq += blocks.len() as u64;
        let next_seq = s.next_seq;
        let (sealed, pending): (Vec<_>, Vec<_>) = std::mem::take(&mut s.offsets)
            .into_iter()
            .partition(|(seq, _)| *seq < next_seq);
        s.offsets = pending;
        let mut offsets: std::collections::BTreeMap<u64, Vec<u8>> = sealed.into_iter().collect();
        let mut sealed = Vec::with_capacity(blocks.len());
        for (records, seq) in blocks.into_iter().zip(first_seq..) {
            if s.store_starts.first() == Some(&seq) {
                s.store_starts.remove(0);
                s.inside_store = true;
            }
            let ends = s.store_ends.first() == Some(&seq);
            if ends {
                s.store_ends.remove(0);
            }
            sealed.push(Block {
                id: BlockId::Input {
                    stream: self.stream,
                    seq,
                },
                num_records: records.len(),
                data: Arc::new(records),
                continues: s.inside_store && !ends,
                offset: offsets.remove(&seq),
            });
            if ends {
                s.inside_store = false;
            }
        }
        sealed
    }

    fn has_unsealed(&self) -> bool {
        let s = self.state.lock();
        !s.records.is_empty() || !s.full.is_empty()
    }

    fn mark_stored(&self, next_seq: u64) {
        self.durable.fetch_max(next_seq, Ordering::AcqRel);
        self.durable_changed.notify_waiters();
    }

    fn encode_block(&self, block: &Block) -> crate::Result<Vec<u8>> {
        let records = block
            .data
            .downcast_ref::<Vec<T>>()
            .ok_or(crate::Error::BlockType(block.id))?;
        crate::checkpoint::encode(records)
    }

    fn block_encoder(&self) -> crate::block::BlockEncoder {
        crate::block::encoder_of::<T>()
    }
}

impl<T: Data> BufferControl for BlockBuffer<T> {
    fn release(&self, records: usize) {
        let mut s = self.state.lock();
        s.outstanding = s.outstanding.saturating_sub(records);
        drop(s);
        self.space.notify_waiters();
    }

    fn close(&self) {
        self.state.lock().closed = true;
        self.space.notify_waiters();
    }

    fn set_rate(&self, records_per_sec: Option<f64>) {
        let limit = records_per_sec.and_then(RateLimit::new).map(Arc::new);
        *self.limit.lock() = limit;
    }

    fn rate(&self) -> Option<f64> {
        self.current_limit().map(|l| l.records_per_sec)
    }

    fn set_capacity(&self, records: usize) {
        let old = self.capacity.swap(records.max(1), Ordering::Relaxed);
        if records > old {
            // A waiting store registered for the wake-up before it looked at the bound.
            self.space.notify_waiters();
        }
    }

    fn capacity(&self) -> usize {
        self.bound()
    }
}

impl<T: Data> ReceiverCounters for BlockBuffer<T> {
    fn metrics(&self) -> ReceiverMetrics {
        ReceiverMetrics {
            records_stored: self.stored.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            truncated: self.long[0].load(Ordering::Relaxed),
            dropped: self.long[1].load(Ordering::Relaxed),
            dropped_bytes: self.long[2].load(Ordering::Relaxed),
            split: self.long[3].load(Ordering::Relaxed),
            words_cut: self.long[4].load(Ordering::Relaxed),
            incomplete: self.long[5].load(Ordering::Relaxed),
        }
    }
}

impl<T: Data> BlockReplay for BlockBuffer<T> {
    fn resume_at(&self, next_seq: u64, offset: Option<Vec<u8>>) {
        let mut s = self.state.lock();
        s.next_seq = s.next_seq.max(next_seq);
        drop(s);
        *self.resume_offset.lock() = offset;
        self.mark_stored(next_seq);
    }

    fn resume_position(&self) -> (u64, Option<Vec<u8>>) {
        let next_seq = self.state.lock().next_seq;
        (next_seq, self.resume_offset.lock().clone())
    }

    fn decode_block(
        &self,
        bytes: &[u8],
        dir: &str,
        key: &str,
    ) -> crate::Result<(BlockData, usize)> {
        let records: Vec<T> = crate::checkpoint::decode(bytes, dir, key)?;
        let n = records.len();
        Ok((Arc::new(records), n))
    }
}

impl<T> fmt::Debug for BlockBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockBuffer")
            .field("stream", &self.stream)
            .field("capacity", &self.bound())
            .finish_non_exhaustive()
    }
}

/// Where a [`Receiver`](super::Receiver) stores its records (Spark: `Receiver.store`).
///
/// `store` is async and waits while the receiver's buffer is full; that wait is the
/// backpressure that reaches the source.
pub struct BlockSink<T> {
    buffer: Arc<BlockBuffer<T>>,
}

impl<T: Data> BlockSink<T> {
    /// A sink into `buffer`.
    pub fn new(buffer: Arc<BlockBuffer<T>>) -> BlockSink<T> {
        BlockSink { buffer }
    }

    /// Stores one record (shapes: one record in, into the current block), waiting while the
    /// buffer is full.
    ///
    /// # Errors
    /// [`SinkClosed`] with the record when the context is stopping.
    ///
    /// # Cancel safety
    /// Cancel-safe: a cancelled call stored nothing, and the record is dropped with the future.
    pub async fn store(&mut self, item: T) -> Result<(), SinkClosed<T>> {
        self.buffer.store(item).await
    }

    /// Stores records in order, waiting for room as needed; cheaper than one `store` each.
    ///
    /// # Errors
    /// [`SinkClosed`] with the records not stored when the context is stopping.
    ///
    /// # Cancel safety
    /// Not cancel-safe: a cancelled call may have stored a prefix of `items`.
    pub async fn store_many(&mut self, items: Vec<T>) -> Result<(), SinkClosed<Vec<T>>> {
        self.buffer.store_many(items).await
    }

    /// Stores records and waits until the blocks holding them are stored (durably, with the
    /// receiver write-ahead log on): acknowledge the source after it returns. See
    /// [`BlockBuffer::store_reliably`].
    ///
    /// # Errors
    /// As [`BlockBuffer::store_reliably`].
    ///
    /// # Cancel safety
    /// Not cancel-safe: a cancelled call may have stored the records without their blocks
    /// being stored yet; do not acknowledge them.
    pub async fn store_reliably(&mut self, items: Vec<T>) -> Result<(), SinkClosed<Vec<T>>> {
        self.buffer.store_reliably(items).await
    }

    /// Stores records as [`store_reliably`](BlockSink::store_reliably) does and records
    /// `offset`, the source's position just after them, with their block: see
    /// [`BlockBuffer::store_reliably_at`]. After a restart from the checkpoint directory,
    /// [`resume_offset`](BlockSink::resume_offset) gives the newest offset logged.
    ///
    /// # Errors
    /// As [`BlockBuffer::store_reliably`].
    ///
    /// # Cancel safety
    /// As [`store_reliably`](BlockSink::store_reliably).
    pub async fn store_reliably_at(
        &mut self,
        items: Vec<T>,
        offset: Vec<u8>,
    ) -> Result<(), SinkClosed<Vec<T>>> {
        self.buffer.store_reliably_at(items, offset).await
    }

    /// The most records one reliable store should hold, for a receiver that reads its source
    /// in batches of up to `max` records (MQTT messages, Redis Streams entries): `max`, or
    /// under a rate limit (rate control, `max_rate_per_receiver`) what the limit admits in
    /// 200 ms (the default block interval), at least 1. A store is sealed whole and its
    /// rate is paid after it ([`store_reliably`](BlockSink::store_reliably)): reading more
    /// than this at once under a low rate would put one late block into the batches and
    /// then hold the receiver back for long (10,000 messages at rate control's floor of 100
    /// records/s: 100 s).
    pub fn store_size(&self, max: usize) -> usize {
        const SHARE_SECS: f64 = 0.2;
        let admitted = self
            .buffer
            .rate()
            .map_or(max, |rate| (rate * SHARE_SECS).ceil() as usize);
        admitted.clamp(1, max.max(1))
    }

    /// Where the receiver's source should resume: the offset stored with the newest block
    /// the write-ahead log holds (or a metadata checkpoint recorded) when the context was
    /// restored from a checkpoint directory with
    /// [`receiver_wal`](crate::config::StreamingConfig::receiver_wal) on; `None` on a fresh
    /// start, without the log, or when the receiver never gave an offset. Every record
    /// before it is in a batch already, or will be replayed into one; read it when the
    /// receiver opens its source (in its first [`Receiver::receive`](super::Receiver::receive)).
    pub fn resume_offset(&self) -> Option<Vec<u8>> {
        self.buffer.resume_offset.lock().clone()
    }

    /// Stores one record if there is room now, without waiting.
    ///
    /// # Errors
    /// As [`BlockBuffer::try_store`].
    pub fn try_store(&self, item: T) -> Result<(), TryStoreError<T>> {
        self.buffer.try_store(item)
    }

    /// Counts `count` malformed inputs the receiver repaired or skipped (it logs them itself).
    pub fn report_malformed(&mut self, count: u64) {
        self.buffer.malformed.fetch_add(count, Ordering::Relaxed);
    }

    /// Counts records the receiver could not store whole (it logs them itself): `truncated`
    /// records stored cut short, `dropped` records not stored, `dropped_bytes` bytes of
    /// input lost by both, and `split` records stored as several. See [`ReceiverMetrics`].
    pub fn report_long_lines(
        &mut self,
        truncated: u64,
        dropped: u64,
        dropped_bytes: u64,
        split: u64,
    ) {
        for (counter, n) in self
            .buffer
            .long
            .iter()
            .zip([truncated, dropped, dropped_bytes, split])
        {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counts `count` cuts made inside a word while splitting records
    /// ([`ReceiverMetrics::words_cut`]; the receiver logs them itself).
    pub fn report_words_cut(&mut self, count: u64) {
        self.buffer.long[4].fetch_add(count, Ordering::Relaxed);
    }

    /// Counts `count` records the source ended in the middle of
    /// ([`ReceiverMetrics::incomplete`]; the receiver logs them itself).
    pub fn report_incomplete(&mut self, count: u64) {
        self.buffer.long[5].fetch_add(count, Ordering::Relaxed);
    }

    /// Counts one recoverable error (a refused connection, an unreadable file).
    pub fn report_error(&mut self) {
        self.buffer.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The input stream this sink feeds.
    pub fn stream(&self) -> StreamId {
        self.buffer.stream
    }
}

impl<T> Clone for BlockSink<T> {
    /// Another sink into the same buffer (e.g. for an actor that stores on its own).
    fn clone(&self) -> Self {
        BlockSink {
            buffer: self.buffer.clone(),
        }
    }
}

impl<T> fmt::Debug for BlockSink<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockSink")
            .field("buffer", &self.buffer)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn records(block: Block) -> Vec<u32> {
        block
            .data
            .downcast_ref::<Vec<u32>>()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn seals_in_order_with_increasing_sequence_numbers() {
        let buf = BlockBuffer::<u32>::new(7, 10);
        assert!(buf.store(1).now_or_never().is_some());
        assert!(buf.store_many(vec![2, 3]).now_or_never().is_some());
        let b = buf.seal().pop().expect("a block");
        assert_eq!(b.id, BlockId::Input { stream: 7, seq: 0 });
        assert_eq!(b.num_records, 3);
        assert_eq!(records(b), vec![1, 2, 3]);
        assert!(buf.seal().is_empty());
        assert!(buf.store(4).now_or_never().is_some());
        let ids: Vec<BlockId> = buf.seal().iter().map(|b| b.id).collect();
        assert_eq!(ids, vec![BlockId::Input { stream: 7, seq: 1 }]);
        assert_eq!(buf.metrics().records_stored, 4);
    }

    #[test]
    fn blocks_are_cut_at_the_size_cap_in_order() {
        let buf = BlockBuffer::<u32>::new(0, 100).with_max_block(3);
        assert!(buf.store_many((0..7).collect()).now_or_never().is_some());
        assert!(buf.store(7).now_or_never().is_some());
        assert!(buf.store(8).now_or_never().is_some());
        let blocks = buf.seal();
        let ids: Vec<BlockId> = blocks.iter().map(|b| b.id).collect();
        assert_eq!(
            ids,
            (0..3)
                .map(|seq| BlockId::Input { stream: 0, seq })
                .collect::<Vec<_>>()
        );
        let all: Vec<Vec<u32>> = blocks.into_iter().map(records).collect();
        assert_eq!(all, vec![vec![0, 1, 2], vec![3, 4, 5], vec![6, 7, 8]]);
    }

    #[test]
    fn store_waits_for_release_not_for_seal() {
        let buf = Arc::new(BlockBuffer::<u32>::new(0, 2));
        assert!(buf.store_many(vec![1, 2]).now_or_never().is_some());
        let mut third = Box::pin(buf.store(3));
        assert!(
            (&mut third).now_or_never().is_none(),
            "full buffer must wait"
        );
        // Sealing moves records out but they still count until their batch finishes.
        assert_eq!(buf.seal().len(), 1);
        assert!((&mut third).now_or_never().is_none());
        buf.release(2);
        assert!(matches!((&mut third).now_or_never(), Some(Ok(()))));
        assert_eq!(
            buf.seal().into_iter().map(records).collect::<Vec<_>>(),
            vec![vec![3]]
        );
    }

    #[test]
    fn a_raised_bound_wakes_a_waiting_store_and_a_lowered_one_holds_stores_back() {
        let buf = Arc::new(BlockBuffer::<u32>::new(0, 2));
        assert!(buf.store_many(vec![1, 2]).now_or_never().is_some());
        let mut more = Box::pin(buf.store_many(vec![3, 4]));
        assert!(
            (&mut more).now_or_never().is_none(),
            "full buffer must wait"
        );
        buf.set_capacity(4);
        assert_eq!(buf.capacity(), 4);
        assert!(matches!((&mut more).now_or_never(), Some(Ok(()))));
        buf.set_capacity(1);
        assert!(matches!(buf.try_store(5), Err(TryStoreError::Full(5))));
        buf.release(4);
        assert!(
            buf.try_store(5).is_ok(),
            "room again once the batch finished"
        );
        buf.set_capacity(0);
        assert_eq!(buf.capacity(), 1, "the bound is at least one record");
    }

    #[test]
    fn store_reliably_returns_once_its_block_is_marked_stored() {
        let buf = Arc::new(BlockBuffer::<u32>::new(3, 100));
        assert!(buf.store(0).now_or_never().is_some());
        let mut reliable = Box::pin(buf.store_reliably(vec![1, 2]));
        assert!((&mut reliable).now_or_never().is_none(), "not stored yet");
        let blocks = buf.seal();
        assert_eq!(
            blocks.len(),
            2,
            "the records start and end a block of their own"
        );
        assert_eq!(records(blocks[1].clone()), vec![1, 2]);
        assert!(
            (&mut reliable).now_or_never().is_none(),
            "sealed is not stored"
        );
        // The block is encoded for the log and read back as it was.
        let bytes = buf.encode_block(&blocks[1]).unwrap();
        let (data, n) = buf.decode_block(&bytes, "d", "k").unwrap();
        assert_eq!(
            (data.downcast_ref::<Vec<u32>>().cloned(), n),
            (Some(vec![1, 2]), 2)
        );
        buf.mark_stored(1);
        assert!(
            (&mut reliable).now_or_never().is_none(),
            "its own block is not stored yet"
        );
        buf.mark_stored(2);
        assert!(matches!((&mut reliable).now_or_never(), Some(Ok(()))));
        // After a restart, numbering continues past the logged blocks.
        buf.resume_at(40, Some(vec![5]));
        assert_eq!(buf.resume_position(), (40, Some(vec![5])));
        assert!(buf.store(9).now_or_never().is_some());
        assert_eq!(buf.seal()[0].id, BlockId::Input { stream: 3, seq: 40 });
        assert_eq!(buf.resume_position().0, 41);
    }

    #[test]
    fn a_store_holds_what_the_rate_admits_in_200_ms_within_the_receiver_s_maximum() {
        let buf = Arc::new(BlockBuffer::<u32>::new(0, 1_000));
        let sink = BlockSink::new(buf.clone());
        assert_eq!(sink.store_size(10_000), 10_000, "no rate limit");
        buf.set_rate(Some(100.0));
        assert_eq!(sink.store_size(10_000), 20);
        assert_eq!(sink.store_size(5), 5);
        buf.set_rate(Some(1.0));
        assert_eq!(sink.store_size(10_000), 1, "at least one record");
        buf.set_rate(Some(1e9));
        assert_eq!(sink.store_size(1_000), 1_000);
        assert_eq!(sink.store_size(0), 1);
    }

    #[test]
    fn a_reliable_store_under_a_rate_is_stored_whole_at_once_and_pays_the_rate_after() {
        let buf = BlockBuffer::<u32>::new(0, 1_000);
        buf.set_rate(Some(20.0)); // bursts of 2 records, one every 100 ms
        let mut reliable = Box::pin(buf.store_reliably_at((0..6).collect(), vec![7]));
        assert!(
            (&mut reliable).now_or_never().is_none(),
            "held back by the rate"
        );
        // In the next block at once, whole, with its offset: no part of a store is sealed
        // before the store ends.
        assert_eq!(buf.unsealed(), 6);
        let blocks = buf.seal();
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].offset, Some(vec![7]));
        assert!(!blocks[0].continues);
        assert_eq!(records(blocks[0].clone()), (0..6).collect::<Vec<_>>());
        buf.mark_stored(1);
        // Stored, yet the call returns only once the rate admitted its 6 records (3 bursts,
        // the first at once): not before 150 ms, and it does return.
        let started = std::time::Instant::now();
        loop {
            if (&mut reliable).now_or_never().is_some() {
                break;
            }
            assert!(started.elapsed() < std::time::Duration::from_secs(5));
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(started.elapsed() >= std::time::Duration::from_millis(150));
    }

    #[test]
    fn a_reliable_store_that_fills_the_buffer_is_sealed_in_parts_marked_as_continuing() {
        let buf = Arc::new(BlockBuffer::<u32>::new(0, 2));
        let mut reliable = Box::pin(buf.store_reliably_at(vec![1, 2, 3, 4], vec![9]));
        assert!((&mut reliable).now_or_never().is_none(), "waits for room");
        // Only sealing (and the batch finishing) frees room: the first part is sealed,
        // marked as the beginning of a store whose offset comes later.
        let first = buf.seal();
        assert_eq!(first.len(), 1);
        assert!(first[0].continues);
        assert_eq!(first[0].offset, None);
        assert_eq!(records(first[0].clone()), vec![1, 2]);
        buf.release(2);
        assert!((&mut reliable).now_or_never().is_none(), "not stored yet");
        let rest = buf.seal();
        assert_eq!(rest.len(), 1);
        assert!(!rest[0].continues);
        assert_eq!(rest[0].offset, Some(vec![9]));
        assert_eq!(records(rest[0].clone()), vec![3, 4]);
        buf.mark_stored(2);
        assert!(matches!((&mut reliable).now_or_never(), Some(Ok(()))));
    }

    #[test]
    fn a_rate_limit_admits_a_burst_then_refuses_try_store_and_can_be_lifted() {
        let buf = BlockBuffer::<u32>::new(0, 1_000);
        buf.set_rate(Some(100.0)); // bursts of 100 ms: 10 records
        assert_eq!(buf.rate(), Some(100.0));
        for x in 0..10 {
            assert_eq!(buf.try_store(x), Ok(()), "record {x} is within the burst");
        }
        assert_eq!(buf.try_store(10), Err(TryStoreError::Full(10)));
        // A waiting store is held back by the rate, not by room.
        assert!(buf.store(10).now_or_never().is_none());
        buf.set_rate(None);
        assert_eq!(buf.rate(), None);
        assert!(buf.store(10).now_or_never().is_some());
        assert_eq!(buf.unsealed(), 11);
        buf.set_rate(Some(f64::NAN));
        assert_eq!(
            buf.rate(),
            None,
            "a rate that is not a positive number is no limit"
        );
    }

    #[test]
    fn a_large_store_under_a_low_rate_stores_each_admitted_burst_at_once() {
        let buf = BlockBuffer::<u32>::new(0, 10_000);
        buf.set_rate(Some(20.0)); // bursts of 2 records, then one every 50 ms
        let mut many = Box::pin(buf.store_many((0..4_096).collect()));
        assert!(
            (&mut many).now_or_never().is_none(),
            "held back by the rate"
        );
        assert_eq!(
            buf.unsealed(),
            2,
            "the first burst is stored without waiting for the other 4,094 records"
        );
        // Lifting the limit lets the rest in on the next poll.
        buf.set_rate(None);
        assert!(matches!(futures::executor::block_on(&mut many), Ok(())));
        assert_eq!(buf.unsealed(), 4_096);
        let all: Vec<u32> = buf.seal().into_iter().flat_map(records).collect();
        assert_eq!(all, (0..4_096).collect::<Vec<_>>(), "in order, each once");
    }

    #[test]
    fn close_fails_waiting_and_later_stores_with_the_records() {
        let buf = Arc::new(BlockBuffer::<u32>::new(0, 1));
        assert!(buf.store(1).now_or_never().is_some());
        let mut waiting = Box::pin(buf.store_many(vec![2, 3]));
        assert!((&mut waiting).now_or_never().is_none());
        buf.close();
        match waiting.now_or_never() {
            Some(Err(SinkClosed(rest))) => assert_eq!(rest, vec![2, 3]),
            other => panic!("expected SinkClosed, got {other:?}"),
        }
        assert!(matches!(
            buf.store(9).now_or_never(),
            Some(Err(SinkClosed(9)))
        ));
        // What was stored before the close is still sealed: nothing is lost.
        assert_eq!(
            buf.seal().into_iter().map(records).collect::<Vec<_>>(),
            vec![vec![1]]
        );
    }
}
