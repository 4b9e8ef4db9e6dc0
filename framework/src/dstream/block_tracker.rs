//! [`BlockTracker`]: the one owner of what is known about received blocks: those reported
//! and not yet in a batch, which blocks each batch got, which were replayed from the
//! write-ahead log, and where each receiver's input stands (Spark: `ReceivedBlockTracker`,
//! without its log: the runtime writes the [`BlockLog`](crate::checkpoint::BlockLog) when
//! the write-ahead log is on). Where a block is stored is the runtime's block stores' to
//! say ([`JobRunner::block_locations`](crate::scheduler::JobRunner::block_locations)).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use parking_lot::Mutex;

use crate::block::{BlockId, BlockInfo, StreamId};
use crate::checkpoint::ReceiverPosition;
use crate::time::Time;

#[derive(Default)]
struct Inner {
    /// Blocks reported and not yet allocated, in report order (Spark: the per-stream
    /// `streamIdToUnallocatedBlockQueues`).
    unallocated: Vec<BlockInfo>,
    /// Blocks replayed from the write-ahead log after a restart: their records were never
    /// counted in this run's receiver buffers.
    replayed: HashSet<BlockId>,
    /// The blocks of each batch, per stream.
    allocations: BTreeMap<Time, BTreeMap<StreamId, Vec<BlockInfo>>>,
    /// Per stream: every block numbered below `next_seq` was allocated; the newest offset.
    positions: BTreeMap<StreamId, ReceiverPosition>,
}

/// The block allocations of a graph's batches.
#[derive(Default)]
pub(crate) struct BlockTracker {
    inner: Mutex<Inner>,
}

impl BlockTracker {
    /// Queues `blocks`, reported stored, for the next batch (Spark: `addBlock`).
    pub(crate) fn add(&self, blocks: impl IntoIterator<Item = BlockInfo>) {
        self.inner.lock().unallocated.extend(blocks);
    }

    /// Records `replayed` as replayed from the write-ahead log, and queues `unallocated`
    /// (those of them no batch had) for the next batch.
    pub(crate) fn add_replayed(&self, replayed: &[BlockInfo], unallocated: Vec<BlockInfo>) {
        let mut inner = self.inner.lock();
        inner.replayed.extend(replayed.iter().map(|b| b.id));
        inner.unallocated.extend(unallocated);
    }

    /// Whether `id` was replayed from the write-ahead log.
    pub(crate) fn is_replayed(&self, id: &BlockId) -> bool {
        self.inner.lock().replayed.contains(id)
    }

    /// Whether blocks wait for a batch.
    pub(crate) fn has_unallocated(&self) -> bool {
        !self.inner.lock().unallocated.is_empty()
    }

    /// Allocates every queued block to batch `t` (each block to exactly one batch; Spark:
    /// `allocateBlocksToBatch`) and returns them; `None`, leaving them queued for a later
    /// batch, when `t` already has its blocks (a batch restored from a checkpoint keeps the
    /// blocks it had).
    pub(crate) fn allocate(&self, t: Time) -> Option<Vec<BlockInfo>> {
        let mut inner = self.inner.lock();
        if inner.allocations.contains_key(&t) {
            return None;
        }
        let blocks = std::mem::take(&mut inner.unallocated);
        let mut by_stream: BTreeMap<StreamId, Vec<BlockInfo>> = BTreeMap::new();
        for b in &blocks {
            advance(&mut inner.positions, b);
            by_stream.entry(b.stream).or_default().push(b.clone());
        }
        inner.allocations.insert(t, by_stream);
        Some(blocks)
    }

    /// Puts back allocations read from a checkpoint or the write-ahead log, and the
    /// receivers' positions recorded with them.
    pub(crate) fn restore(
        &self,
        allocations: impl IntoIterator<Item = (Time, Vec<BlockInfo>)>,
        positions: &[ReceiverPosition],
    ) {
        let mut inner = self.inner.lock();
        for p in positions {
            inner.positions.insert(p.stream, p.clone());
        }
        for (t, blocks) in allocations {
            let mut by_stream: BTreeMap<StreamId, Vec<BlockInfo>> = BTreeMap::new();
            for b in blocks {
                advance(&mut inner.positions, &b);
                by_stream.entry(b.stream).or_default().push(b);
            }
            inner.allocations.insert(t, by_stream);
        }
    }

    /// The blocks of batch `t`, all streams.
    pub(crate) fn allocated(&self, t: Time) -> Vec<BlockInfo> {
        self.inner
            .lock()
            .allocations
            .get(&t)
            .map(|s| s.values().flatten().cloned().collect())
            .unwrap_or_default()
    }

    /// The blocks of `stream` in batch `t`.
    pub(crate) fn of_stream(&self, stream: StreamId, t: Time) -> Vec<BlockInfo> {
        self.inner
            .lock()
            .allocations
            .get(&t)
            .and_then(|s| s.get(&stream))
            .cloned()
            .unwrap_or_default()
    }

    /// The allocations of batches after `horizon` (for a metadata checkpoint).
    pub(crate) fn after(&self, horizon: Time) -> Vec<(i64, Vec<BlockInfo>)> {
        self.inner
            .lock()
            .allocations
            .range(horizon + Duration::from_millis(1)..)
            .map(|(t, streams)| (t.as_ms(), streams.values().flatten().cloned().collect()))
            .collect()
    }

    /// Where each receiver's input stands (for a metadata checkpoint).
    pub(crate) fn positions(&self) -> Vec<ReceiverPosition> {
        self.inner.lock().positions.values().cloned().collect()
    }

    /// Forgets the allocations of batches up to `horizon`; returns their blocks.
    pub(crate) fn forget_up_to(&self, horizon: Time) -> Vec<BlockInfo> {
        let mut inner = self.inner.lock();
        let keep = inner
            .allocations
            .split_off(&(horizon + Duration::from_millis(1)));
        let dropped = std::mem::replace(&mut inner.allocations, keep);
        let dropped: Vec<BlockInfo> = dropped
            .into_values()
            .flat_map(|s| s.into_values().flatten())
            .collect();
        for b in &dropped {
            inner.replayed.remove(&b.id);
        }
        dropped
    }

    /// Forgets everything (the context stopped).
    pub(crate) fn clear(&self) {
        let mut inner = self.inner.lock();
        inner.allocations.clear();
        inner.unallocated.clear();
        inner.replayed.clear();
    }
}

/// Moves `stream`'s position past `block`, taking its offset when it has one.
fn advance(positions: &mut BTreeMap<StreamId, ReceiverPosition>, block: &BlockInfo) {
    let BlockId::Input { stream, seq } = block.id else {
        return;
    };
    let position = positions.entry(stream).or_insert(ReceiverPosition {
        stream,
        next_seq: 0,
        offset: None,
    });
    if seq >= position.next_seq {
        position.next_seq = seq + 1;
        if block.offset.is_some() {
            position.offset = block.offset.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(stream: StreamId, seq: u64, offset: Option<u8>) -> BlockInfo {
        BlockInfo {
            id: BlockId::Input { stream, seq },
            stream,
            num_records: 10,
            offset: offset.map(|o| vec![o]),
        }
    }

    #[test]
    fn a_batch_keeps_its_blocks_and_positions_move_past_allocated_blocks() {
        let tracker = BlockTracker::default();
        let t = |ms| Time::from_ms(ms);
        tracker.add(vec![
            block(0, 0, Some(1)),
            block(0, 1, None),
            block(1, 0, Some(7)),
        ]);
        assert!(tracker.has_unallocated());
        assert_eq!(tracker.allocate(t(100)).map(|b| b.len()), Some(3));
        assert!(!tracker.has_unallocated());
        tracker.add(vec![block(0, 2, Some(3))]);
        assert_eq!(
            tracker.allocate(t(100)),
            None,
            "a batch's blocks are fixed once allocated"
        );
        assert!(tracker.has_unallocated(), "kept for a later batch");
        assert_eq!(tracker.allocated(t(100)).len(), 3);
        assert_eq!(tracker.of_stream(1, t(100)).len(), 1);
        let positions = tracker.positions();
        assert_eq!(positions[0].next_seq, 2);
        assert_eq!(
            positions[0].offset,
            Some(vec![1]),
            "the newest block with an offset"
        );
        assert_eq!(positions[1].next_seq, 1);
        assert_eq!(tracker.allocate(t(200)), Some(vec![block(0, 2, Some(3))]));
        assert_eq!(tracker.positions()[0].offset, Some(vec![3]));
        assert_eq!(tracker.after(t(100)).len(), 1);
        assert_eq!(tracker.forget_up_to(t(100)).len(), 3);
        assert_eq!(tracker.allocated(t(200)).len(), 1);
    }

    #[test]
    fn replayed_blocks_are_known_until_their_batch_is_forgotten() {
        let tracker = BlockTracker::default();
        let t = |ms| Time::from_ms(ms);
        let (old, new) = (block(0, 0, None), block(0, 1, None));
        tracker.restore(vec![(t(100), vec![old.clone()])], &[]);
        tracker.add_replayed(&[old.clone(), new.clone()], vec![new.clone()]);
        assert!(tracker.is_replayed(&old.id) && tracker.is_replayed(&new.id));
        assert!(!tracker.is_replayed(&block(0, 2, None).id));
        assert_eq!(tracker.allocate(t(100)), None, "batch 100 has its block");
        assert_eq!(tracker.allocate(t(200)), Some(vec![new.clone()]));
        tracker.forget_up_to(t(100));
        assert!(!tracker.is_replayed(&old.id));
        assert!(tracker.is_replayed(&new.id));
    }
}
