//! Blocks: the unit in which received records, cached partitions and shuffle outputs are
//! stored on executors (Spark: `BlockId`, `ReceivedBlockInfo`).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::rdd::{RddId, ShuffleId};

/// Identifies one input stream of a DStream graph (Spark: `streamId`).
pub type StreamId = u32;

/// Identifies one executor (an index, `0..executors`).
pub type ExecutorId = usize;

/// Names a block in an executor's block store.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub enum BlockId {
    /// Records a receiver stored, sealed by its batch builder (Spark: `StreamBlockId`).
    Input {
        /// The input stream.
        stream: StreamId,
        /// The block's sequence number within the stream, from 0.
        seq: u64,
    },
    /// A cached partition of an RDD (Spark: `RDDBlockId`).
    Rdd {
        /// The RDD.
        rdd: RddId,
        /// The partition.
        partition: u32,
    },
    /// The bucket a map task wrote for one reduce partition (Spark: `ShuffleBlockId`).
    Shuffle {
        /// The shuffle.
        shuffle: ShuffleId,
        /// The map partition that wrote it.
        map: u32,
        /// The reduce partition that reads it.
        reduce: u32,
    },
}

impl BlockId {
    /// The batch time the block belongs to, when the id carries one (RDD and shuffle blocks);
    /// input blocks are tracked by the batch they were allocated to instead.
    pub fn rdd_time_ms(&self) -> Option<i64> {
        match self {
            BlockId::Input { .. } => None,
            BlockId::Rdd { rdd, .. } => Some(rdd.time_ms),
            BlockId::Shuffle { shuffle, .. } => Some(shuffle.0.time_ms),
        }
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockId::Input { stream, seq } => write!(f, "input-{stream}-{seq}"),
            BlockId::Rdd { rdd, partition } => write!(f, "rdd-{rdd}-{partition}"),
            BlockId::Shuffle {
                shuffle,
                map,
                reduce,
            } => write!(f, "shuffle-{shuffle}-{map}-{reduce}"),
        }
    }
}

/// A block's records, shared without copying: an `Arc` holding a `Vec<T>` of the block's
/// record type. Serialized only at process borders and checkpoints.
pub type BlockData = Arc<dyn Any + Send + Sync>;

/// Serializes a block's records for another process: the `Vec<X>` behind a [`BlockData`]
/// as MessagePack (rmp-serde, positional). Chosen where the record type `X` is known, when
/// the block is stored ([`encoder_of`]), and kept beside it, so that a block store can serve
/// any block it holds to a remote executor without knowing its type.
///
/// # Errors
/// [`Error::BlockType`](crate::Error::BlockType) if the data is not a `Vec<X>` (the id
/// passed names the block); [`Error::Internal`](crate::Error::Internal) if a record does
/// not serialize.
pub type BlockEncoder = fn(&BlockId, &BlockData) -> crate::Result<Vec<u8>>;

/// The [`BlockEncoder`] of blocks holding `Vec<X>`.
pub fn encoder_of<X: crate::data::Data>() -> BlockEncoder {
    |id, data| {
        let records = data
            .downcast_ref::<Vec<X>>()
            .ok_or(crate::Error::BlockType(*id))?;
        rmp_serde::to_vec(records)
            .map_err(|e| crate::Error::Internal(format!("block {id} does not serialize: {e}")))
    }
}

/// Reads back what the [`BlockEncoder`] of `Vec<X>` wrote.
///
/// # Errors
/// [`Error::Internal`](crate::Error::Internal) naming the block and the decoder's error when
/// `bytes` are not a `Vec<X>` (another build's records, or a damaged frame).
pub fn decode_block<X: crate::data::Data>(id: &BlockId, bytes: &[u8]) -> crate::Result<Vec<X>> {
    rmp_serde::from_slice(bytes).map_err(|e| {
        crate::Error::Internal(format!(
            "block {id} from another process ({} bytes) does not decode: {e}",
            bytes.len()
        ))
    })
}

/// A sealed block of received records.
#[derive(Clone)]
pub struct Block {
    /// The block's id.
    pub id: BlockId,
    /// The records, a `Vec<T>` behind an `Arc`.
    pub data: BlockData,
    /// How many records it holds.
    pub num_records: usize,
    /// The source offset after its records, when its receiver gives offsets (set on the
    /// last block of a seal).
    pub offset: Option<Vec<u8>>,
    /// Whether it holds records of a reliable store (`store_reliably`, `store_reliably_at`)
    /// that go on in a later block: until that block is logged, the source still owes these
    /// records (it has no acknowledgement or offset for them, and delivers them again after
    /// a restart), so the write-ahead log does not replay them alone.
    pub continues: bool,
}

impl fmt::Debug for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Block")
            .field("id", &self.id)
            .field("num_records", &self.num_records)
            .finish()
    }
}

/// What the coordinator knows of a stored input block (Spark: `ReceivedBlockInfo`). Where
/// the block is stored is not part of it: the runtime's block stores are the one source of
/// that ([`JobRunner::block_locations`](crate::scheduler::JobRunner::block_locations)),
/// since executors come and go.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// The block.
    pub id: BlockId,
    /// The input stream it belongs to.
    pub stream: StreamId,
    /// How many records it holds.
    pub num_records: usize,
    /// The source offset after its records, when its receiver gives offsets
    /// ([`BlockSink::store_reliably_at`](crate::receiver::BlockSink::store_reliably_at)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<Vec<u8>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A block info as checkpoints before this build wrote it, with the executors it was
    /// stored on.
    #[derive(Serialize)]
    struct RecordedWithLocations {
        id: BlockId,
        stream: StreamId,
        num_records: usize,
        locations: Vec<ExecutorId>,
    }

    #[test]
    fn a_checkpoint_that_recorded_block_locations_still_reads() {
        let old = RecordedWithLocations {
            id: BlockId::Input { stream: 1, seq: 7 },
            stream: 1,
            num_records: 12,
            locations: vec![0, 1],
        };
        let bytes = crate::checkpoint::encode(&old).unwrap();
        let read: BlockInfo = crate::checkpoint::decode(&bytes, "dir", "key").unwrap();
        assert_eq!(
            read,
            BlockInfo {
                id: BlockId::Input { stream: 1, seq: 7 },
                stream: 1,
                num_records: 12,
                offset: None,
            }
        );
    }
}
