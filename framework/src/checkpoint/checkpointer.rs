//! [`Checkpointer`]: the metadata checkpoint protocol and restore (Spark: `CheckpointWriter`
//! and `CheckpointReader`). The steps are in the [module doc](super).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::Result;
use crate::time::Time;

use super::{
    list_keys, missing, read_record, remove_record, write_record, BlockLog, CheckpointStore,
    DataCheckpoint, Key, MetadataCheckpoint, StoreStats, Tree,
};

/// How many metadata checkpoints are kept: the newest, and the one before it to fall back
/// to when the newest is found damaged.
const KEPT: usize = 2;

/// A metadata checkpoint the purge keeps, with what it needs.
#[derive(Clone, Debug)]
struct Kept {
    batch_ms: i64,
    /// The data checkpoints it names, as `(stream, time ms)`.
    data: BTreeSet<(u32, i64)>,
    /// The oldest batch whose input it may need (ms).
    horizon_ms: i64,
}

impl Kept {
    fn of(record: &MetadataCheckpoint) -> Kept {
        Kept {
            batch_ms: record.batch_time_ms,
            data: record.data.iter().map(|d| (d.stream, d.time_ms)).collect(),
            horizon_ms: record.input_horizon_ms,
        }
    }
}

#[derive(Default)]
struct Book {
    /// The newest complete data checkpoint of each stream.
    latest: BTreeMap<u32, DataCheckpoint>,
    /// Written since the runtime last asked (for listeners).
    fresh: Vec<DataCheckpoint>,
    /// The kept metadata checkpoints, oldest first.
    kept: VecDeque<Kept>,
    /// The data checkpoints the kept checkpoints named at the last sweep of the `state`
    /// tree (`None` before the first: a restart sweeps what a kill left behind).
    swept: Option<BTreeSet<(u32, i64)>>,
    /// The write-ahead log batches up to this time were cleaned from.
    cleaned_ms: Option<i64>,
    log: Option<BlockLog>,
    stats: StoreStats,
}

/// A metadata checkpoint read back by [`Checkpointer::load`], with what was found on the way.
#[derive(Clone, Debug, PartialEq)]
pub struct Restored {
    /// The checkpoint restored from.
    pub checkpoint: MetadataCheckpoint,
    /// Each newer metadata checkpoint that could not be used, with why.
    pub skipped: Vec<String>,
    /// The newest batch the directory had completed, when it is newer than the checkpoint
    /// restored from (a rollback: the batches in between run again).
    pub progress_ms: Option<i64>,
}

impl Restored {
    /// How many batches after the restored one the directory had already completed (0
    /// without a rollback).
    pub fn batches_behind(&self) -> u64 {
        let (Some(progress), interval) = (self.progress_ms, self.checkpoint.batch_interval_ms)
        else {
            return 0;
        };
        (progress.saturating_sub(self.checkpoint.batch_time_ms)).max(0) as u64 / interval.max(1)
    }
}

/// Writes metadata checkpoints and keeps the book of data checkpoints they name; reads them
/// back at restore.
#[derive(Default)]
pub struct Checkpointer {
    book: Mutex<Book>,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let book = self.book.lock();
        f.debug_struct("Checkpointer")
            .field("latest", &book.latest.len())
            .field("kept", &book.kept.len())
            .finish()
    }
}

impl Checkpointer {
    /// A checkpointer with no checkpoint yet; its first purge sweeps.
    pub fn new() -> Checkpointer {
        Checkpointer::default()
    }

    /// Cleans `log` as checkpoints stop needing its batches (step 6).
    pub fn set_block_log(&self, log: BlockLog) {
        self.book.lock().log = Some(log);
    }

    /// Records a complete data checkpoint (written by a checkpoint job); the next metadata
    /// checkpoint names it.
    pub fn record_data(&self, written: DataCheckpoint) {
        let mut book = self.book.lock();
        book.fresh.push(written.clone());
        book.latest.insert(written.stream, written);
    }

    /// The newest complete data checkpoint of every stream, in stream order.
    pub fn latest(&self) -> Vec<DataCheckpoint> {
        self.book.lock().latest.values().cloned().collect()
    }

    /// The time of `stream`'s newest complete data checkpoint.
    pub fn latest_time(&self, stream: u32) -> Option<Time> {
        self.book
            .lock()
            .latest
            .get(&stream)
            .map(|c| Time::from_ms(c.time_ms))
    }

    /// The data checkpoints recorded since the last call (for listeners), oldest first.
    pub fn take_fresh(&self) -> Vec<DataCheckpoint> {
        std::mem::take(&mut self.book.lock().fresh)
    }

    /// The store's size and live bytes after the last metadata checkpoint.
    pub fn stats(&self) -> StoreStats {
        self.book.lock().stats
    }

    /// Takes `restored` as the checkpoint this run continues from: its data checkpoints are
    /// the latest, and it is kept until two newer ones are written.
    pub fn restore(&self, restored: &MetadataCheckpoint) {
        let mut book = self.book.lock();
        for data in &restored.data {
            book.latest.insert(data.stream, data.clone());
        }
        book.kept = VecDeque::from([Kept::of(restored)]);
        book.swept = None;
    }

    /// Writes `record`, the metadata checkpoint of a completed batch, in `store` (steps 1 to
    /// 7 of the protocol); returns the store's size after it.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the store cannot be written; a
    /// failure after step 3 (the checkpoint is complete) still fails the call, so that a
    /// store that cannot delete or compact stops the run before its disk fills.
    pub fn write(
        &self,
        store: &Arc<dyn CheckpointStore>,
        record: &MetadataCheckpoint,
    ) -> Result<StoreStats> {
        let store = &**store;
        // 1-3: data durable, then the record, durable.
        store.flush()?;
        write_record(
            store,
            Key::Meta {
                batch_ms: record.batch_time_ms,
            },
            record,
        )?;
        store.flush()?;
        // 4: progress, outside the store.
        store.record_progress(record.batch_time_ms)?;
        // 5: purge what the kept checkpoints do not name.
        let (kept, sweep, log, clean_to) = {
            let mut book = self.book.lock();
            book.kept.push_back(Kept::of(record));
            while book.kept.len() > KEPT {
                book.kept.pop_front();
            }
            let kept: Vec<Kept> = book.kept.iter().cloned().collect();
            let named: BTreeSet<(u32, i64)> =
                kept.iter().flat_map(|k| k.data.iter().copied()).collect();
            let sweep = (book.swept.as_ref() != Some(&named)).then_some(named);
            let clean_to = kept.iter().map(|k| k.horizon_ms).min().unwrap_or(i64::MIN);
            let clean_to = (book.cleaned_ms < Some(clean_to)).then_some(clean_to);
            (kept, sweep, book.log.clone(), clean_to)
        };
        purge(store, &kept, sweep.as_ref())?;
        if sweep.is_some() {
            self.book.lock().swept = sweep;
        }
        // 6: the write-ahead log's batches no kept checkpoint needs.
        if let (Some(log), Some(to)) = (log, clean_to) {
            log.clean_up_to(Time::from_ms(to))?;
            self.book.lock().cleaned_ms = Some(to);
        }
        // 7: bounded.
        let stats = store.maintain()?;
        self.book.lock().stats = stats;
        Ok(stats)
    }

    /// Reads the newest usable metadata checkpoint in `store` (restore steps 1 and 2), or
    /// `None` when there is none. A damaged newer one is skipped with a WARN naming it and
    /// the one used; a store older than the directory's recorded progress is reported with
    /// a WARN saying how many batches run again.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) when the store cannot be read, or
    /// when metadata checkpoints exist but none is usable (the error of the newest).
    pub fn load(store: &dyn CheckpointStore) -> Result<Option<Restored>> {
        let dir = store.location();
        let keys = list_keys(store, Tree::Meta, Key::meta_prefix())?;
        let mut skipped = Vec::new();
        let mut first_error = None;
        for key in keys.into_iter().rev() {
            match read_usable(store, key) {
                Ok(checkpoint) => {
                    for reason in &skipped {
                        tracing::warn!(
                            dir = %dir,
                            skipped = %reason,
                            used = %key,
                            "The newest metadata checkpoint is damaged: restoring from the previous complete one."
                        );
                    }
                    let progress = store.progress().filter(|&p| p > checkpoint.batch_time_ms);
                    let restored = Restored {
                        checkpoint,
                        skipped,
                        progress_ms: progress,
                    };
                    if let Some(progress_ms) = progress {
                        tracing::warn!(
                            dir = %dir,
                            restored_batch_ms = restored.checkpoint.batch_time_ms,
                            completed_batch_ms = progress_ms,
                            batches_behind = restored.batches_behind(),
                            "The checkpoint store is older than the last batch this directory completed: those batches run again."
                        );
                    }
                    return Ok(Some(restored));
                }
                Err(e) => {
                    skipped.push(e.to_string());
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(None),
        }
    }
}

/// The metadata checkpoint under `key`, if it decodes and every data checkpoint partition
/// it names is present.
fn read_usable(store: &dyn CheckpointStore, key: Key) -> Result<MetadataCheckpoint> {
    let checkpoint: MetadataCheckpoint =
        read_record(store, key)?.ok_or_else(|| missing(store, key, "the listed value"))?;
    for data in &checkpoint.data {
        let present = list_keys(
            store,
            Tree::State,
            &Key::data_prefix(data.stream, data.time_ms),
        )?;
        for partition in 0..data.partitions {
            let part = Key::Data {
                stream: data.stream,
                time_ms: data.time_ms,
                partition,
            };
            if !present.contains(&part) {
                return Err(missing(
                    store,
                    part,
                    &format!("partition {partition} of the data checkpoint {key} names"),
                ));
            }
        }
    }
    Ok(checkpoint)
}

/// Step 5: deletes every metadata checkpoint but the kept ones and, given the data
/// checkpoints they name, every data checkpoint partition not among them.
fn purge(
    store: &dyn CheckpointStore,
    kept: &[Kept],
    named: Option<&BTreeSet<(u32, i64)>>,
) -> Result<()> {
    let kept_meta: BTreeSet<i64> = kept.iter().map(|k| k.batch_ms).collect();
    for key in list_keys(store, Tree::Meta, Key::meta_prefix())? {
        if let Key::Meta { batch_ms } = key {
            if !kept_meta.contains(&batch_ms) {
                remove_record(store, key)?;
            }
        }
    }
    if let Some(named) = named {
        for key in list_keys(store, Tree::State, b"")? {
            if let Key::Data {
                stream, time_ms, ..
            } = key
            {
                if !named.contains(&(stream, time_ms)) {
                    remove_record(store, key)?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{MemoryCheckpointStore, StreamSignature};
    use crate::rdd::RddId;

    /// A store that records progress as the sled store does (in memory here).
    #[derive(Default)]
    struct WithProgress {
        inner: MemoryCheckpointStore,
        progress: Mutex<Option<i64>>,
    }

    impl CheckpointStore for WithProgress {
        fn location(&self) -> String {
            "test".into()
        }
        fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()> {
            self.inner.put(tree, key, value)
        }
        fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
            self.inner.get(tree, key)
        }
        fn remove(&self, tree: Tree, key: &[u8]) -> Result<()> {
            self.inner.remove(tree, key)
        }
        fn keys(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
            self.inner.keys(tree, prefix)
        }
        fn flush(&self) -> Result<()> {
            Ok(())
        }
        fn record_progress(&self, batch_ms: i64) -> Result<()> {
            *self.progress.lock() = Some(batch_ms);
            Ok(())
        }
        fn progress(&self) -> Option<i64> {
            *self.progress.lock()
        }
    }

    fn data_checkpoint(time_ms: i64) -> DataCheckpoint {
        DataCheckpoint {
            stream: 2,
            time_ms,
            rdd: RddId {
                scope: 2,
                time_ms,
                seq: 0,
            },
            partitions: 2,
            partitioner: Some(2),
            keys: None,
        }
    }

    /// Writes the two partitions of the data checkpoint at `time_ms`, as a checkpoint job does.
    fn write_data(store: &dyn CheckpointStore, checkpointer: &Checkpointer, time_ms: i64) {
        for partition in 0..2 {
            let key = Key::Data {
                stream: 2,
                time_ms,
                partition,
            };
            store.put(Tree::State, &key.encode(), b"partition").unwrap();
        }
        checkpointer.record_data(data_checkpoint(time_ms));
    }

    fn record(checkpointer: &Checkpointer, batch_ms: i64) -> MetadataCheckpoint {
        MetadataCheckpoint {
            graph: vec![StreamSignature {
                id: 2,
                op: "map_with_state".into(),
                slide_ms: 100,
            }],
            batch_interval_ms: 100,
            zero_time_ms: 0,
            batch_time_ms: batch_ms,
            input_horizon_ms: batch_ms,
            data: checkpointer.latest(),
            inputs: Vec::new(),
            allocations: Vec::new(),
            receivers: Vec::new(),
        }
    }

    fn data_times(store: &dyn CheckpointStore) -> BTreeSet<i64> {
        list_keys(store, Tree::State, b"")
            .unwrap()
            .into_iter()
            .filter_map(|k| match k {
                Key::Data { time_ms, .. } => Some(time_ms),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn two_checkpoints_are_kept_and_what_neither_names_is_swept() {
        let store: Arc<dyn CheckpointStore> = Arc::new(WithProgress::default());
        let checkpointer = Checkpointer::new();
        // A data checkpoint a killed run left behind, which no metadata checkpoint names.
        store
            .put(
                Tree::State,
                &Key::Data {
                    stream: 2,
                    time_ms: 50,
                    partition: 0,
                }
                .encode(),
                b"orphan",
            )
            .unwrap();
        for batch in 1..=6i64 {
            let t = batch * 100;
            if batch % 2 == 0 {
                write_data(&*store, &checkpointer, t);
            }
            checkpointer
                .write(&store, &record(&checkpointer, t))
                .unwrap();
        }
        let metas = list_keys(&*store, Tree::Meta, Key::meta_prefix()).unwrap();
        assert_eq!(
            metas,
            vec![Key::Meta { batch_ms: 500 }, Key::Meta { batch_ms: 600 }]
        );
        // Batch 500's checkpoint names the data of 400; batch 600's names 600.
        assert_eq!(data_times(&*store), BTreeSet::from([400, 600]));
        assert_eq!(store.progress(), Some(600));
    }

    #[test]
    fn a_damaged_newest_checkpoint_falls_back_and_a_rollback_is_counted() {
        let store: Arc<dyn CheckpointStore> = Arc::new(WithProgress::default());
        let checkpointer = Checkpointer::new();
        for batch in 1..=4i64 {
            write_data(&*store, &checkpointer, batch * 100);
            checkpointer
                .write(&store, &record(&checkpointer, batch * 100))
                .unwrap();
        }
        // One flipped byte in the newest metadata checkpoint.
        let key = Key::Meta { batch_ms: 400 }.encode();
        let mut bytes = store.get(Tree::Meta, &key).unwrap().unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        store.put(Tree::Meta, &key, &bytes).unwrap();
        let restored = Checkpointer::load(&*store).unwrap().unwrap();
        assert_eq!(restored.checkpoint.batch_time_ms, 300);
        assert_eq!(restored.skipped.len(), 1);
        assert!(
            restored.skipped[0].contains("meta/meta/"),
            "{:?}",
            restored.skipped
        );
        assert_eq!(restored.progress_ms, Some(400));
        assert_eq!(restored.batches_behind(), 1);

        // A missing data partition makes a checkpoint unusable too; with none usable, the
        // newest one's error is returned.
        store
            .remove(
                Tree::State,
                &Key::Data {
                    stream: 2,
                    time_ms: 300,
                    partition: 1,
                }
                .encode(),
            )
            .unwrap();
        let err = Checkpointer::load(&*store).unwrap_err().to_string();
        assert!(err.contains("checksum"), "{err}");
    }

    #[test]
    fn an_empty_store_has_no_checkpoint() {
        let store = MemoryCheckpointStore::new();
        assert_eq!(Checkpointer::load(&store).unwrap(), None);
    }
}
