//! The input cut: what the polled inputs (direct streams, file streams) chose for the
//! batches up to one about to run, made durable before its outputs run.
//!
//! A metadata checkpoint records a polled input's splits (a direct stream's offset ranges)
//! only once the batch completed. Without more, a process killed after a batch's outputs
//! ran and before its checkpoint was written would cut that batch again at restart, from
//! the same start to wherever the source stands then: an output that already published the
//! batch (a Kafka transaction) would see other ranges. Spark's direct Kafka stream has this
//! window (`DirectKafkaInputDStream` writes its ranges with the checkpoint after the jobs);
//! rivulet closes it: on the job thread, before the batch's first output, the inputs' state
//! (every batch's splits the last metadata checkpoint kept and those since, and each
//! source's position) is put under
//! [`Key::InputCut`] and flushed, and older cut records are removed. A restart takes the
//! newest cut record after the restored checkpoint, so a batch is always recomputed over the
//! ranges its outputs saw. The cut is not trimmed to the batch's own horizon: a restore that
//! falls back to the older of the two kept checkpoints (the newest damaged) still finds
//! every batch after it.

use serde::{Deserialize, Serialize};

use super::{list_keys, read_record, remove_record, write_record, CheckpointStore, Key, Tree};
use super::{InputState, MetadataCheckpoint};
use crate::error::Result;

/// One input cut record: each restorable input's state when batch `batch_time_ms` was about
/// to run (the same state a metadata checkpoint holds in
/// [`MetadataCheckpoint::inputs`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputCut {
    /// The run's zero time (ms): a cut of another run (another zero) is never used.
    pub zero_time_ms: i64,
    /// The batch about to run (ms).
    pub batch_time_ms: i64,
    /// What each restorable input needs to recompute the batches up to `batch_time_ms`
    /// over the same splits.
    pub inputs: Vec<InputState>,
}

impl InputCut {
    /// Puts `self` under [`Key::InputCut`], flushes the store, then removes every older cut
    /// record (a kill before the removal leaves records the next cut removes).
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the store cannot be written or
    /// flushed: the batch must not run, since a restart could not recompute it over the
    /// same splits.
    pub fn write(&self, store: &dyn CheckpointStore) -> Result<()> {
        let key = Key::InputCut {
            batch_ms: self.batch_time_ms,
        };
        write_record(store, key, self)?;
        store.flush()?;
        for older in list_keys(store, Tree::Wal, Key::input_cut_prefix())? {
            if older < key {
                remove_record(store, older)?;
            }
        }
        Ok(())
    }

    /// The newest cut record of `store` that continues `checkpoint`: of the same run (zero
    /// time) and of a later batch; `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the store cannot be read or the
    /// newest cut record does not decode (naming the store and the key).
    pub fn after(
        store: &dyn CheckpointStore,
        checkpoint: &MetadataCheckpoint,
    ) -> Result<Option<InputCut>> {
        let Some(newest) = list_keys(store, Tree::Wal, Key::input_cut_prefix())?.pop() else {
            return Ok(None);
        };
        let cut: Option<InputCut> = read_record(store, newest)?;
        Ok(cut.filter(|c| {
            c.zero_time_ms == checkpoint.zero_time_ms && c.batch_time_ms > checkpoint.batch_time_ms
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryCheckpointStore;

    fn checkpoint(zero: i64, batch: i64) -> MetadataCheckpoint {
        MetadataCheckpoint {
            graph: Vec::new(),
            batch_interval_ms: 100,
            zero_time_ms: zero,
            batch_time_ms: batch,
            input_horizon_ms: batch,
            data: Vec::new(),
            inputs: Vec::new(),
            allocations: Vec::new(),
            receivers: Vec::new(),
        }
    }

    fn cut(batch: i64, state: u8) -> InputCut {
        InputCut {
            zero_time_ms: 0,
            batch_time_ms: batch,
            inputs: vec![InputState {
                stream: 0,
                state: vec![state],
            }],
        }
    }

    #[test]
    fn the_newest_cut_after_the_checkpoint_is_used_and_older_ones_are_removed() {
        let store = MemoryCheckpointStore::new();
        cut(200, 2).write(&store).unwrap();
        cut(300, 3).write(&store).unwrap();
        assert_eq!(
            store.keys(Tree::Wal, Key::input_cut_prefix()).unwrap(),
            vec![Key::InputCut { batch_ms: 300 }.encode()]
        );
        assert_eq!(
            InputCut::after(&store, &checkpoint(0, 200)).unwrap(),
            Some(cut(300, 3))
        );
        // The checkpoint already covers the cut's batch, or the cut is of another run.
        assert_eq!(InputCut::after(&store, &checkpoint(0, 300)).unwrap(), None);
        assert_eq!(InputCut::after(&store, &checkpoint(50, 200)).unwrap(), None);
        assert_eq!(
            InputCut::after(&MemoryCheckpointStore::new(), &checkpoint(0, 0)).unwrap(),
            None
        );
    }

    #[test]
    fn a_corrupt_cut_is_an_error_naming_its_key() {
        let store = MemoryCheckpointStore::new();
        let key = Key::InputCut { batch_ms: 400 };
        store
            .put(Tree::Wal, &key.encode(), b"not a record")
            .unwrap();
        let e = InputCut::after(&store, &checkpoint(0, 100)).unwrap_err();
        assert!(e.to_string().contains("cut/00000000000000000400"), "{e}");
    }
}
