//! A receiver buffer's sides as the runtime sees them, one trait per role (the record type
//! erased): the batch builder seals blocks ([`BlockSealer`]), the coordinator paces the
//! receiver ([`BufferControl`]), the supervisor and the status page read its counters
//! ([`ReceiverCounters`]), and a restart puts the write-ahead log's blocks back
//! ([`BlockReplay`]). [`BlockSource`] is all four, as a [`ReceiverSlot`](super::ReceiverSlot)
//! holds it; each actor keeps only the role it plays (`Arc<dyn BlockSource>` upcasts to any
//! of them).

use crate::block::{Block, BlockData, StreamId};

use super::ReceiverMetrics;

/// The batch builder's role: seals stored records into blocks every block interval and
/// hears when they are stored.
pub trait BlockSealer: Send + Sync {
    /// The input stream.
    fn stream(&self) -> StreamId;
    /// Takes the records stored since the last seal as blocks, in order: the blocks that
    /// reached the size cap, then the rest; empty if nothing was stored.
    fn seal(&self) -> Vec<Block>;
    /// Whether records are stored but not sealed.
    fn has_unsealed(&self) -> bool;
    /// Says that every block with a sequence number below `next_seq` is stored (on
    /// executors, and in the write-ahead log when it is on); wakes `store_reliably`.
    fn mark_stored(&self, next_seq: u64);
    /// The records of a sealed block as a checkpoint record (for the write-ahead log).
    ///
    /// # Errors
    /// [`Error::BlockType`](crate::Error::BlockType) if the block is not this stream's.
    fn encode_block(&self, block: &Block) -> crate::Result<Vec<u8>>;
    /// How the block store serves this stream's blocks to executor processes.
    fn block_encoder(&self) -> crate::block::BlockEncoder;
}

/// The coordinator's role: backpressure on the receiver (Spark's rate controller and
/// `receiver.maxRate`, and rivulet's bounded buffer), and closing it at stop.
pub trait BufferControl: Send + Sync {
    /// Frees room for `records` records whose batch finished.
    fn release(&self, records: usize);
    /// Closes the buffer: pending and later `store`s fail with
    /// [`SinkClosed`](super::SinkClosed).
    fn close(&self);
    /// Limits stores to `records_per_sec` (rate control; `None`: no limit). `store` and
    /// `store_many` wait for the rate, `try_store` reports the buffer full past it.
    fn set_rate(&self, records_per_sec: Option<f64>);
    /// The rate limit in force, in records per second.
    fn rate(&self) -> Option<f64>;
    /// Bounds the records stored and not yet finished at `records` (at least 1): `store`
    /// waits beyond it. A larger bound wakes stores waiting for room.
    fn set_capacity(&self, records: usize);
    /// The bound on stored-but-unfinished records in force.
    fn capacity(&self) -> usize;
}

/// The receiver supervisor's and the status page's role: the receiver's counters, read
/// live.
pub trait ReceiverCounters: Send + Sync {
    /// The receiver's counters.
    fn metrics(&self) -> ReceiverMetrics;
    /// The executor process running the receiver and its host (IP), or `None` when it runs
    /// in this process (the default).
    fn executor(&self) -> Option<(crate::block::ExecutorId, String)> {
        None
    }
}

/// A restart's role: the write-ahead log's blocks decoded back, and block numbering resumed
/// after them.
pub trait BlockReplay: Send + Sync {
    /// Continues block numbering at `next_seq` (after a restart, past the blocks of the
    /// write-ahead log and those allocated before; they count as stored), and hands the
    /// receiver `offset`, the newest source offset logged, as where its source resumes.
    fn resume_at(&self, next_seq: u64, offset: Option<Vec<u8>>);
    /// Where the receiver resumes: the next block's sequence number and the offset
    /// [`resume_at`](BlockReplay::resume_at) handed over (the coordinator passes both to an
    /// executor process that runs the receiver).
    fn resume_position(&self) -> (u64, Option<Vec<u8>>);
    /// A block read back from the write-ahead log (from `dir` under `key`, for errors):
    /// its data and record count.
    ///
    /// # Errors
    /// [`CheckpointError`](crate::CheckpointError) when the value is corrupt.
    fn decode_block(&self, bytes: &[u8], dir: &str, key: &str)
        -> crate::Result<(BlockData, usize)>;
}

/// Every role of a receiver buffer: what a [`ReceiverSlot`](super::ReceiverSlot) holds and
/// the runtime hands out, one role to each actor. Implemented for every type that plays
/// all four ([`BlockBuffer`](super::BlockBuffer) does).
pub trait BlockSource: BlockSealer + BufferControl + ReceiverCounters + BlockReplay {}

impl<T: BlockSealer + BufferControl + ReceiverCounters + BlockReplay + ?Sized> BlockSource for T {}
