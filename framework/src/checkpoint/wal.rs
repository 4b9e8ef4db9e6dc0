//! [`BlockLog`]: the receiver write-ahead log (Spark: `ReceivedBlockTracker` with its
//! `WriteAheadLog`, and `WriteAheadLogBasedBlockHandler`). The protocol is in the
//! [module doc](super), "The receiver write-ahead log, step by step".

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::block::{BlockId, BlockInfo, StreamId};
use crate::error::{CheckpointError, Result};
use crate::time::Time;

use super::{
    decode, encode, list_keys, read_record, remove_record, write_record, CheckpointStore, Key,
    MetadataCheckpoint, Tree,
};

/// A received block as the log holds it: its stream, number, record count, the source
/// offset it carries, and its records as the stream encoded them
/// ([`BlockSealer::encode_block`](crate::receiver::BlockSealer::encode_block)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedBlock {
    /// The input stream.
    pub stream: StreamId,
    /// The block's sequence number.
    pub seq: u64,
    /// How many records it holds.
    pub num_records: usize,
    /// The source offset after its records, if the receiver gave one.
    pub offset: Option<Vec<u8>>,
    /// Whether it holds records of a reliable store that go on in a later block
    /// ([`Block::continues`](crate::block::Block::continues)).
    pub continues: bool,
    /// Its records, encoded by the stream (a checkpoint record).
    pub data: Vec<u8>,
}

/// What a logged block's value starts with (the records follow as their own record).
#[derive(Serialize, Deserialize)]
struct BlockHeader {
    num_records: usize,
    offset: Option<Vec<u8>>,
    /// Absent in logs written before it existed: `false`.
    #[serde(default)]
    continues: bool,
}

impl LoggedBlock {
    /// The block's key.
    pub fn key(&self) -> Key {
        Key::Block {
            stream: self.stream,
            seq: self.seq,
        }
    }

    /// The value: `header length: u32 LE ++ header record ++ records`.
    fn to_value(&self) -> Result<Vec<u8>> {
        let header = encode(&BlockHeader {
            num_records: self.num_records,
            offset: self.offset.clone(),
            continues: self.continues,
        })?;
        let mut value = Vec::with_capacity(4 + header.len() + self.data.len());
        value.extend_from_slice(&(header.len() as u32).to_le_bytes());
        value.extend_from_slice(&header);
        value.extend_from_slice(&self.data);
        Ok(value)
    }

    fn from_value(key: Key, value: &[u8], dir: &str) -> Result<LoggedBlock> {
        let Key::Block { stream, seq } = key else {
            return Err(crate::Error::Internal(format!("{key} is not a block key")));
        };
        let corrupt = |reason: &str| CheckpointError::Corrupt {
            dir: dir.to_string(),
            key: key.to_string(),
            reason: reason.to_string(),
        };
        let len = value
            .get(..4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or_else(|| corrupt("shorter than its header length"))?;
        let header = value
            .get(4..4 + len)
            .ok_or_else(|| corrupt("shorter than its header"))?;
        let header: BlockHeader = decode(header, dir, &key.to_string())?;
        Ok(LoggedBlock {
            stream,
            seq,
            num_records: header.num_records,
            offset: header.offset,
            continues: header.continues,
            data: value[4 + len..].to_vec(),
        })
    }

    /// The block's description (no locations yet).
    pub fn info(&self) -> BlockInfo {
        BlockInfo {
            id: BlockId::Input {
                stream: self.stream,
                seq: self.seq,
            },
            stream: self.stream,
            num_records: self.num_records,
            offset: self.offset.clone(),
        }
    }
}

/// A block read back at restart, with the batch it goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayedBlock {
    /// The block.
    pub block: LoggedBlock,
    /// The batch it was allocated to; `None` for a block no batch had yet.
    pub batch: Option<Time>,
}

/// What [`BlockLog::replay`] read back: every block that must be in the block stores, the
/// batches (after the restored one) whose allocations are only in the log, and where each
/// receiver resumes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    /// The blocks to put back, in key order (by stream, then sequence number).
    pub blocks: Vec<ReplayedBlock>,
    /// Allocation records of batches after the restored one, by batch.
    pub allocations: BTreeMap<Time, Vec<BlockInfo>>,
    /// Per stream: the next block sequence number, and the newest source offset logged.
    pub positions: BTreeMap<StreamId, (u64, Option<Vec<u8>>)>,
    /// How many blocks of completed batches were found and deleted (a clean-up a kill cut
    /// short).
    pub deleted: usize,
    /// How many blocks were dropped because they hold the beginning of a reliable store
    /// whose end was never logged: the receiver reads those records again from its resume
    /// offset, so replaying them too would count them twice.
    pub unfinished: usize,
}

impl Replay {
    /// The replayed blocks that no batch had yet, in order: they go to the next batch.
    pub fn unallocated(&self) -> Vec<BlockInfo> {
        self.blocks
            .iter()
            .filter(|b| b.batch.is_none())
            .map(|b| b.block.info())
            .collect()
    }
}

/// Drops, from `replay` and from the log, each stream's last blocks when they hold the
/// beginning of a reliable store whose last block was never logged
/// ([`LoggedBlock::continues`]): the receiver never acknowledged them (nor logged an
/// offset after them), and its source delivers their records again. Only blocks no batch
/// had are dropped: a block a batch was given (its allocation logged before the batch's
/// outputs ran) stays in that batch.
fn drop_unfinished_stores(store: &dyn CheckpointStore, replay: &mut Replay) -> Result<()> {
    // Per stream, the newest block that does not go on in a later one.
    let mut finished: BTreeMap<StreamId, u64> = BTreeMap::new();
    for b in replay.blocks.iter().filter(|b| !b.block.continues) {
        finished.insert(b.block.stream, b.block.seq);
    }
    let unfinished = |b: &ReplayedBlock| {
        b.block.continues
            && b.batch.is_none()
            && finished
                .get(&b.block.stream)
                .is_none_or(|&seq| b.block.seq > seq)
    };
    for b in replay.blocks.iter().filter(|b| unfinished(b)) {
        remove_record(store, b.block.key())?;
        replay.unfinished += 1;
    }
    replay.blocks.retain(|b| !unfinished(b));
    Ok(())
}

/// The receiver write-ahead log in a checkpoint store (tree `wal`). Cheap to clone.
#[derive(Clone)]
pub struct BlockLog {
    store: Arc<dyn CheckpointStore>,
}

impl std::fmt::Debug for BlockLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockLog")
            .field("store", &self.store.location())
            .finish()
    }
}

impl BlockLog {
    /// The log in `store`.
    pub fn new(store: Arc<dyn CheckpointStore>) -> BlockLog {
        BlockLog { store }
    }

    /// Step 1, add: logs `blocks` and flushes; once this returns they survive a crash.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the store cannot be written.
    pub fn add(&self, blocks: &[LoggedBlock]) -> Result<()> {
        for block in blocks {
            let key = block.key();
            self.store
                .put(Tree::Wal, &key.encode(), &block.to_value()?)?;
        }
        self.store.flush()
    }

    /// Step 2, allocate: records that batch `t` gets `blocks` (written, not yet flushed:
    /// call [`sync`](BlockLog::sync) before the batch's outputs run).
    ///
    /// # Errors
    /// As [`add`](BlockLog::add).
    pub fn allocate(&self, t: Time, blocks: &[BlockInfo]) -> Result<()> {
        write_record(
            &*self.store,
            Key::Allocation {
                batch_ms: t.as_ms(),
            },
            blocks,
        )
    }

    /// Makes the allocations recorded so far durable.
    ///
    /// # Errors
    /// As [`add`](BlockLog::add).
    pub fn sync(&self) -> Result<()> {
        self.store.flush()
    }

    /// Step 4, clean up: removes the blocks of every batch up to `t`, then the batch's
    /// allocation record; returns how many blocks it removed. Not flushed: a kill may keep
    /// some, which [`replay`](BlockLog::replay) recognises and deletes.
    ///
    /// # Errors
    /// As [`add`](BlockLog::add); [`Error::Checkpoint`](crate::Error::Checkpoint) for a
    /// corrupt allocation record.
    pub fn clean_up_to(&self, t: Time) -> Result<usize> {
        let mut removed = 0;
        for key in list_keys(&*self.store, Tree::Wal, Key::allocation_prefix())? {
            let Key::Allocation { batch_ms } = key else {
                continue;
            };
            if batch_ms > t.as_ms() {
                break;
            }
            let blocks: Vec<BlockInfo> = read_record(&*self.store, key)?.unwrap_or_default();
            for block in blocks {
                if let BlockId::Input { stream, seq } = block.id {
                    remove_record(&*self.store, Key::Block { stream, seq })?;
                    removed += 1;
                }
            }
            remove_record(&*self.store, key)?;
        }
        Ok(removed)
    }

    /// Step 5, replay at restart from `restored` (or from nothing, when the directory has no
    /// metadata checkpoint yet): reads every logged block back and says which batch each
    /// belongs to; deletes, never replays, those of completed batches; drops allocation
    /// records of completed batches.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the log cannot be read or a
    /// value in it is corrupt.
    pub fn replay(&self, restored: Option<&MetadataCheckpoint>) -> Result<Replay> {
        let store = &*self.store;
        let dir = store.location();
        let restored_ms = restored.map_or(i64::MIN, |m| m.batch_time_ms);
        let mut replay = Replay::default();
        // Which batch each block went to: the checkpoint's own allocations, then the
        // allocation records of batches after it (written before those batches ran).
        let mut batch_of: BTreeMap<(StreamId, u64), Time> = BTreeMap::new();
        for (t, blocks) in restored.map_or(&[][..], |m| &m.allocations) {
            for b in blocks {
                if let BlockId::Input { stream, seq } = b.id {
                    batch_of.insert((stream, seq), Time::from_ms(*t));
                }
            }
        }
        for key in list_keys(store, Tree::Wal, Key::allocation_prefix())? {
            let Key::Allocation { batch_ms } = key else {
                continue;
            };
            if batch_ms <= restored_ms {
                continue;
            }
            let blocks: Vec<BlockInfo> = read_record(store, key)?.unwrap_or_default();
            for b in &blocks {
                if let BlockId::Input { stream, seq } = b.id {
                    batch_of.insert((stream, seq), Time::from_ms(batch_ms));
                }
            }
            replay.allocations.insert(Time::from_ms(batch_ms), blocks);
        }
        // Every block numbered below a receiver's position was allocated when the
        // checkpoint was written.
        let allocated_below: BTreeMap<StreamId, u64> = restored
            .map(|m| m.receivers.iter().map(|r| (r.stream, r.next_seq)).collect())
            .unwrap_or_default();
        for r in restored.map_or(&[][..], |m| &m.receivers) {
            replay
                .positions
                .insert(r.stream, (r.next_seq, r.offset.clone()));
        }
        for key in list_keys(store, Tree::Wal, Key::block_prefix())? {
            let Key::Block { stream, seq } = key else {
                continue;
            };
            let Some(value) = store.get(Tree::Wal, &key.encode())? else {
                continue;
            };
            let batch = batch_of.get(&(stream, seq)).copied();
            if batch.is_none() && seq < allocated_below.get(&stream).copied().unwrap_or(0) {
                // Its batch completed and no kept checkpoint needs it: a clean-up cut short.
                remove_record(store, key)?;
                replay.deleted += 1;
                continue;
            }
            let block = LoggedBlock::from_value(key, &value, &dir)?;
            let position = replay.positions.entry(stream).or_insert((0, None));
            position.0 = position.0.max(seq + 1);
            if block.offset.is_some() {
                // Blocks come in sequence order: the last one with an offset is the newest.
                position.1 = block.offset.clone();
            }
            replay.blocks.push(ReplayedBlock { block, batch });
        }
        drop_unfinished_stores(store, &mut replay)?;
        // Allocation records of completed batches stay: `clean_up_to` removes them with
        // their blocks once no checkpoint needs them.
        Ok(replay)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{MemoryCheckpointStore, ReceiverPosition};

    fn logged(seq: u64, offset: Option<u8>) -> LoggedBlock {
        LoggedBlock {
            stream: 0,
            seq,
            num_records: 10,
            offset: offset.map(|o| vec![o]),
            continues: false,
            data: encode(&vec![seq; 10]).unwrap(),
        }
    }

    /// Block 0 ends a reliable store (offset 10); blocks 1 and 2 hold the beginning of the
    /// next one, whose end (with its offset) was never logged: the receiver resumes at
    /// offset 10 and reads their records again, so they are not replayed (and are deleted
    /// from the log), while block 1, which a batch was given, stays in it. A block of an
    /// older log (no `continues` in its header) reads as `false`.
    #[test]
    fn blocks_of_a_reliable_store_whose_end_was_not_logged_are_not_replayed() {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
        let log = BlockLog::new(store.clone());
        let mut blocks = vec![logged(0, Some(10)), logged(1, None), logged(2, None)];
        blocks[1].continues = true;
        blocks[2].continues = true;
        log.add(&blocks).unwrap();
        log.allocate(Time::from_ms(100), &[blocks[1].info()])
            .unwrap();

        let replay = log.replay(None).unwrap();
        assert_eq!(seqs(&replay.blocks), vec![(0, None), (1, Some(100))]);
        assert_eq!(replay.unfinished, 1);
        assert_eq!(
            replay.positions[&0],
            (3, Some(vec![10])),
            "resume at offset 10"
        );
        assert_eq!(
            store.get(Tree::Wal, &blocks[2].key().encode()).unwrap(),
            None,
            "deleted from the log"
        );

        #[derive(Serialize)]
        struct OldHeader {
            num_records: usize,
            offset: Option<Vec<u8>>,
        }
        let old = encode(&OldHeader {
            num_records: 10,
            offset: None,
        })
        .unwrap();
        let mut value = (old.len() as u32).to_le_bytes().to_vec();
        value.extend_from_slice(&old);
        let read = LoggedBlock::from_value(Key::Block { stream: 0, seq: 7 }, &value, "d").unwrap();
        assert!(!read.continues);
    }

    fn marker(
        batch_ms: i64,
        allocations: Vec<(i64, Vec<BlockInfo>)>,
        next_seq: u64,
    ) -> MetadataCheckpoint {
        MetadataCheckpoint {
            graph: Vec::new(),
            batch_interval_ms: 100,
            zero_time_ms: 0,
            batch_time_ms: batch_ms,
            input_horizon_ms: batch_ms,
            data: Vec::new(),
            inputs: Vec::new(),
            allocations,
            receivers: vec![ReceiverPosition {
                stream: 0,
                next_seq,
                offset: Some(vec![1]),
            }],
        }
    }

    fn seqs(blocks: &[ReplayedBlock]) -> Vec<(u64, Option<i64>)> {
        blocks
            .iter()
            .map(|b| (b.block.seq, b.batch.map(|t| t.as_ms())))
            .collect()
    }

    /// Batches 100 and 200 got blocks 0-1 and 2-3; the checkpoint of batch 100 (batch 200
    /// queued) was written; then batch 300 got block 4 (its allocation only in the log) and
    /// block 5 arrived. Blocks of the completed batch 100 are deleted, never replayed;
    /// blocks of batches 200 and 300 go back to them; block 5 is new.
    #[test]
    fn replay_puts_each_block_in_exactly_one_batch() {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
        let log = BlockLog::new(store.clone());
        let blocks: Vec<LoggedBlock> = (0..6).map(|s| logged(s, Some(s as u8 + 10))).collect();
        log.add(&blocks).unwrap();
        let infos: Vec<BlockInfo> = blocks.iter().map(LoggedBlock::info).collect();
        log.allocate(Time::from_ms(100), &infos[0..2]).unwrap();
        log.allocate(Time::from_ms(200), &infos[2..4]).unwrap();
        let checkpoint = marker(100, vec![(200, infos[2..4].to_vec())], 4);
        log.allocate(Time::from_ms(300), &infos[4..5]).unwrap();

        let replay = log.replay(Some(&checkpoint)).unwrap();
        assert_eq!(
            seqs(&replay.blocks),
            vec![(2, Some(200)), (3, Some(200)), (4, Some(300)), (5, None)]
        );
        assert_eq!(replay.deleted, 2, "blocks 0 and 1 of the completed batch");
        assert_eq!(
            replay
                .allocations
                .keys()
                .map(|t| t.as_ms())
                .collect::<Vec<_>>(),
            vec![200, 300]
        );
        assert_eq!(replay.unallocated().len(), 1);
        assert_eq!(
            replay.positions[&0],
            (6, Some(vec![15])),
            "after block 5, at its offset"
        );
        assert_eq!(
            store.keys(Tree::Wal, Key::block_prefix()).unwrap().len(),
            4,
            "the done blocks are gone from the log"
        );
        // A second replay (a kill during the first restart) sees the same.
        let again = log.replay(Some(&checkpoint)).unwrap();
        assert_eq!(seqs(&again.blocks), seqs(&replay.blocks));
        let block = &again.blocks[0].block;
        assert_eq!(
            decode::<Vec<u64>>(&block.data, "memory", "k").unwrap(),
            vec![2; 10]
        );
    }

    #[test]
    fn clean_up_removes_blocks_then_their_allocation_and_keeps_later_batches() {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
        let log = BlockLog::new(store.clone());
        let blocks: Vec<LoggedBlock> = (0..4).map(|s| logged(s, None)).collect();
        log.add(&blocks).unwrap();
        let infos: Vec<BlockInfo> = blocks.iter().map(LoggedBlock::info).collect();
        log.allocate(Time::from_ms(100), &infos[0..1]).unwrap();
        log.allocate(Time::from_ms(200), &infos[1..3]).unwrap();
        assert_eq!(log.clean_up_to(Time::from_ms(100)).unwrap(), 1);
        assert_eq!(log.clean_up_to(Time::from_ms(100)).unwrap(), 0);
        let left = list_keys(&*store, Tree::Wal, b"").unwrap();
        assert_eq!(
            left,
            vec![
                Key::Allocation { batch_ms: 200 },
                Key::Block { stream: 0, seq: 1 },
                Key::Block { stream: 0, seq: 2 },
                Key::Block { stream: 0, seq: 3 },
            ]
        );
        // Without a checkpoint (a fresh directory), every logged block is new.
        let replay = log.replay(None).unwrap();
        assert_eq!(replay.deleted, 0);
        assert_eq!(replay.blocks.len(), 3);
        assert_eq!(replay.positions[&0], (4, None));
    }

    #[test]
    fn a_torn_block_is_a_corrupt_error_naming_it() {
        let store: Arc<dyn CheckpointStore> = Arc::new(MemoryCheckpointStore::new());
        let log = BlockLog::new(store.clone());
        store
            .put(
                Tree::Wal,
                &Key::Block { stream: 0, seq: 7 }.encode(),
                &[9, 0, 0, 0, 1],
            )
            .unwrap();
        let err = log.replay(None).unwrap_err().to_string();
        assert!(
            err.contains("wal/block/0000000000/00000000000000000007"),
            "{err}"
        );
    }
}
