//! [`BlockTracker`]: which received blocks each batch got, and where each receiver's input
//! stands (Spark: `ReceivedBlockTracker`, without its log: the runtime writes the
//! [`BlockLog`](crate::checkpoint::BlockLog) when the write-ahead log is on).

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;

use crate::block::{BlockId, BlockInfo, StreamId};
use crate::checkpoint::ReceiverPosition;
use crate::time::Time;

#[derive(Default)]
struct Inner {
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
    /// Allocates `blocks` to batch `t` (each block to exactly one batch); returns them all,
    /// unallocated, when `t` already has its blocks (a batch restored from a checkpoint keeps
    /// the blocks it had: the caller gives these to a later batch).
    pub(crate) fn allocate(&self, t: Time, blocks: Vec<BlockInfo>) -> Vec<BlockInfo> {
        let mut inner = self.inner.lock();
        if inner.allocations.contains_key(&t) {
            return blocks;
        }
        let mut by_stream: BTreeMap<StreamId, Vec<BlockInfo>> = BTreeMap::new();
        for b in blocks {
            advance(&mut inner.positions, &b);
            by_stream.entry(b.stream).or_default().push(b);
        }
        inner.allocations.insert(t, by_stream);
        Vec::new()
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
        dropped
            .into_values()
            .flat_map(|s| s.into_values().flatten())
            .collect()
    }

    /// Forgets everything (the context stopped).
    pub(crate) fn clear(&self) {
        self.inner.lock().allocations.clear();
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
        assert!(tracker
            .allocate(
                t(100),
                vec![
                    block(0, 0, Some(1)),
                    block(0, 1, None),
                    block(1, 0, Some(7))
                ]
            )
            .is_empty());
        let again = tracker.allocate(t(100), vec![block(0, 2, Some(3))]);
        assert_eq!(again.len(), 1, "a batch's blocks are fixed once allocated");
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
        tracker.allocate(t(200), again);
        assert_eq!(tracker.positions()[0].offset, Some(vec![3]));
        assert_eq!(tracker.after(t(100)).len(), 1);
        assert_eq!(tracker.forget_up_to(t(100)).len(), 3);
        assert_eq!(tracker.allocated(t(200)).len(), 1);
    }
}
