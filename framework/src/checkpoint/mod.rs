//! Checkpoints (Spark: `Checkpoint`, `DStreamCheckpointData`, `ReliableCheckpointRDD`,
//! `ReceivedBlockTracker`): what is written so that state survives the loss of an executor
//! and a process can restart where it stopped, on this machine or another.
//!
//! * A **data checkpoint** writes every partition of a stateful or windowed DStream's RDD
//!   every checkpoint interval, and cuts the stream's lineage there: the next batch's state
//!   depends on the checkpointed RDD, read back from the store when it is not cached.
//! * A **metadata checkpoint** ([`MetadataCheckpoint`]) is written after every completed
//!   batch: the graph's fingerprint, the batch time, the newest complete data checkpoint of
//!   each stream, the input of every batch a restart may recompute or run (received blocks
//!   per batch, a polled input's splits per batch), what each input needs to resume, and
//!   where each receiver's input stands.
//! * The **receiver write-ahead log** ([`BlockLog`], with `receiver_wal` on) holds received
//!   blocks until their batch is done.
//! * The **input cut** ([`InputCut`]) records the polled inputs' splits (a direct stream's
//!   offset ranges) before a batch's outputs run, so that a restart recomputes the batch
//!   over the ranges its outputs saw even when it was killed before the batch's metadata
//!   checkpoint.
//!
//! Values are records (see [`encode`] and [`decode`]): versioned, named-field rmp-serde with
//! a CRC-32 checksum, under the typed [`Key`]s. The [`CheckpointStore`] trait is the storage:
//! [`MemoryCheckpointStore`] (the default, which survives executor loss but not the process)
//! here, and sled (with `StreamingConfig::checkpoint_dir`) in the runtime crate. It lives
//! here, not in the runtime crate, because RDDs read checkpointed partitions back inside
//! tasks.
//!
//! # The metadata checkpoint of batch `t`, step by step
//! Written by [`Checkpointer::write`] on the job thread once every output of batch `t` ran
//! (the batch's data checkpoint jobs, which put partitions under [`Key::Data`], ran among
//! them):
//! 1. Flush: the data checkpoints and allocation records written so far are durable.
//! 2. Put the record under [`Key::Meta`]`(t)`.
//! 3. Flush: from here a restart resumes after `t`; the checkpoint is complete.
//! 4. Record `t` as the directory's progress ([`CheckpointStore::record_progress`]).
//! 5. Purge: keep the records of the two newest metadata checkpoints this run wrote (or
//!    restored from); delete every older one and every data checkpoint none of the two
//!    names. The purge is a sweep of what is no longer named, not a list of what to delete,
//!    so a kill during it only leaves garbage the next sweep takes; the first purge after a
//!    restart sweeps the whole `state` tree.
//! 6. Clean the write-ahead log up to the older kept checkpoint's horizon (see below).
//! 7. Let the store compact itself if it outgrew its bound ([`CheckpointStore::maintain`]).
//!
//! A kill before step 3 leaves the previous checkpoint complete and the batch is recomputed
//! at restart; after it, the batch is never run again.
//!
//! # Restore, step by step
//! [`Checkpointer::load`]:
//! 1. Read the metadata checkpoints newest first; take the first that decodes and whose
//!    data checkpoints are all present. Each one skipped (torn, corrupt, naming a missing
//!    partition) is reported with a WARN naming it and the one used.
//! 2. Compare the batch it completed with the directory's progress: a store older than the
//!    last batch this directory completed (a rolled-back file, a lost write) is reported
//!    with a WARN saying how many batches run again.
//! 3. The graph checks its fingerprint, restores data checkpoints (with their partition
//!    counts), inputs and allocations; the write-ahead log is replayed ([`BlockLog::replay`]).
//! 4. The polled inputs take the newest input cut after the checkpoint's batch, if any
//!    ([`InputCut::after`]): the batches it names are recomputed over the recorded splits.
//!
//! # The receiver write-ahead log, step by step
//! As Spark's `ReceivedBlockTracker`, every change is a durable record before it takes effect:
//! 1. **Add.** A sealed block is put under [`Key::Block`] with its source offset and flushed
//!    before it is reported to the coordinator and before `store_reliably` returns (the
//!    receiver acknowledges its source only then).
//! 2. **Allocate.** When batch `t` is cut, the blocks it gets are put under
//!    [`Key::Allocation`]`(t)`, made durable before the batch's outputs run.
//! 3. **Checkpoint.** The metadata checkpoint of a completed batch records, per receiver,
//!    the next sequence number not yet allocated and the newest allocated offset
//!    ([`ReceiverPosition`]).
//! 4. **Clean up.** Once no kept metadata checkpoint needs batch `t`'s input, its blocks are
//!    removed, then its allocation record.
//! 5. **Replay** at restart: a block allocated to a batch after the restored one (by an
//!    allocation record, or the checkpoint's own allocations) goes back into that batch; a
//!    block numbered below its receiver's recorded position that no allocation names
//!    belonged to a completed batch and is deleted, never replayed; the rest are new and go
//!    to the next batch, in order. The receiver resumes its source at the newest offset
//!    logged.

mod checkpointer;
mod input_cut;
mod keys;
mod metadata;
mod record;
mod wal;

pub use checkpointer::{Checkpointer, Restored};
pub use input_cut::InputCut;
pub use keys::{key_text, Key};
pub use metadata::{
    DataCheckpoint, InputState, MetadataCheckpoint, ReceiverPosition, StreamSignature,
};
pub use record::{decode, encode, frame, FORMAT_VERSION, OLDEST_FORMAT_VERSION};
pub use wal::{BlockLog, LoggedBlock, Replay, ReplayedBlock};

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{CheckpointError, Result};

/// The key spaces of a checkpoint store (sled trees).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tree {
    /// Metadata checkpoints, one per completed batch (only the newest few are kept).
    Meta,
    /// Checkpointed RDD partitions of stateful and windowed streams.
    State,
    /// Received blocks (the receiver write-ahead log).
    Wal,
}

impl Tree {
    /// The tree's name (`meta`, `state`, `wal`).
    pub fn name(self) -> &'static str {
        match self {
            Tree::Meta => "meta",
            Tree::State => "state",
            Tree::Wal => "wal",
        }
    }
}

/// Durable (or in-memory) storage of checkpoint values, by tree and key. Implementations
/// are shared by every executor thread.
///
/// Writes need not be durable until [`flush`](CheckpointStore::flush) returns.
pub trait CheckpointStore: Send + Sync + 'static {
    /// Where the store lives, for error messages (a directory, or `memory`).
    fn location(&self) -> String;
    /// Stores `value` under `key` in `tree`, replacing any value there.
    ///
    /// # Errors
    /// [`CheckpointError::Storage`] when the store cannot
    /// be written (an unwritable or full directory).
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()>;
    /// The value under `key` in `tree`, if any.
    ///
    /// # Errors
    /// [`CheckpointError::Storage`] when the store cannot
    /// be read.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Removes `key` from `tree` (nothing if absent).
    ///
    /// # Errors
    /// As [`put`](CheckpointStore::put).
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<()>;
    /// The keys of `tree` that start with `prefix`, in ascending byte order.
    ///
    /// # Errors
    /// As [`get`](CheckpointStore::get).
    fn keys(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Vec<u8>>>;
    /// Makes every write so far durable; returns once it is (sled: `flush`, an fsync).
    ///
    /// # Errors
    /// As [`put`](CheckpointStore::put).
    fn flush(&self) -> Result<()>;
    /// Records `batch_ms` as the newest batch whose metadata checkpoint is durable, outside
    /// the store's own files, so that a restore can tell when the store rolled back (a
    /// damaged or lost file). The default records nothing.
    ///
    /// # Errors
    /// As [`put`](CheckpointStore::put).
    fn record_progress(&self, batch_ms: i64) -> Result<()> {
        let _ = batch_ms;
        Ok(())
    }
    /// The batch [`record_progress`](CheckpointStore::record_progress) last recorded.
    fn progress(&self) -> Option<i64> {
        None
    }
    /// The store's size and live bytes.
    fn stats(&self) -> StoreStats {
        StoreStats::default()
    }
    /// Keeps the store within its bounds (compacts it when it outgrew them), after a
    /// metadata checkpoint's purge; returns its size and live bytes. The default does
    /// nothing.
    ///
    /// # Errors
    /// As [`put`](CheckpointStore::put).
    fn maintain(&self) -> Result<StoreStats> {
        Ok(self.stats())
    }
}

/// A checkpoint store's size: what a metric or the status page shows, and what its
/// compaction watches.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreStats {
    /// The bytes the store takes on disk (every file of the checkpoint directory); `None`
    /// for a store in memory or one that cannot be measured.
    pub size_bytes: Option<u64>,
    /// The bytes of the keys and values it holds.
    pub live_bytes: u64,
    /// How many times it compacted since it was opened.
    pub compactions: u64,
    /// How long its last compaction took.
    pub last_compaction: Option<Duration>,
}

/// When a checkpoint store on disk compacts (see
/// [`StreamingConfig::checkpoint_compaction`](crate::config::StreamingConfig::checkpoint_compaction)): once the directory holds more than `floor_bytes` and more than
/// `max_ratio` times the live bytes. The directory then stays within about twice that bound
/// (the old database is deleted once the new one is live).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CompactionPolicy {
    /// Never compact below this size (bytes). Default 32 MiB.
    pub floor_bytes: u64,
    /// Compact above this many times the live bytes. Default 6: sled 0.34 itself settles at about 4-5x the live bytes under the churn of data checkpoints (`bench_checkpoint_store`), so a lower ratio compacts after nearly every checkpoint.
    pub max_ratio: f64,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            floor_bytes: 32 << 20,
            max_ratio: 6.0,
        }
    }
}

impl CompactionPolicy {
    /// Whether a directory of `size` bytes holding `live` live bytes should be compacted.
    pub fn is_due(&self, size: u64, live: u64) -> bool {
        size > self.floor_bytes && size as f64 > self.max_ratio * live as f64
    }
}

/// Writes `value` as a record under `key`.
///
/// # Errors
/// As [`CheckpointStore::put`]; [`Error::Internal`](crate::Error::Internal) if it cannot be
/// serialized.
pub fn write_record<T: Serialize + ?Sized>(
    store: &dyn CheckpointStore,
    key: Key,
    value: &T,
) -> Result<()> {
    store.put(key.tree(), &key.encode(), &encode(value)?)
}

/// The record under `key`, if any.
///
/// # Errors
/// As [`CheckpointStore::get`] and [`decode`] (naming the store and the key).
pub fn read_record<T: DeserializeOwned>(
    store: &dyn CheckpointStore,
    key: Key,
) -> Result<Option<T>> {
    match store.get(key.tree(), &key.encode())? {
        Some(bytes) => decode(&bytes, &store.location(), &key.to_string()).map(Some),
        None => Ok(None),
    }
}

/// Removes the value under `key`.
///
/// # Errors
/// As [`CheckpointStore::remove`].
pub fn remove_record(store: &dyn CheckpointStore, key: Key) -> Result<()> {
    store.remove(key.tree(), &key.encode())
}

/// The keys of `tree` that start with `prefix` and parse as keys of that tree (others are
/// skipped with a WARN: no build of rivulet writes them).
///
/// # Errors
/// As [`CheckpointStore::keys`].
pub fn list_keys(store: &dyn CheckpointStore, tree: Tree, prefix: &[u8]) -> Result<Vec<Key>> {
    let mut keys = Vec::new();
    for raw in store.keys(tree, prefix)? {
        match Key::parse(tree, &raw) {
            Some(key) => keys.push(key),
            None => tracing::warn!(
                dir = %store.location(),
                key = %key_text(tree, &raw),
                "Ignoring a key no rivulet checkpoint writes."
            ),
        }
    }
    Ok(keys)
}

/// A missing value a checkpoint names, as [`CheckpointError::Corrupt`].
pub(crate) fn missing(store: &dyn CheckpointStore, key: Key, what: &str) -> crate::Error {
    CheckpointError::Corrupt {
        dir: store.location(),
        key: key.to_string(),
        reason: format!("{what} is missing"),
    }
    .into()
}

/// A [`CheckpointStore`] in the process's memory: cuts lineage and survives executor loss,
/// but not a restart. The default when no checkpoint directory is configured.
#[derive(Default)]
pub struct MemoryCheckpointStore {
    values: Mutex<BTreeMap<(Tree, Vec<u8>), Vec<u8>>>,
}

impl MemoryCheckpointStore {
    /// An empty store.
    pub fn new() -> MemoryCheckpointStore {
        MemoryCheckpointStore::default()
    }
}

impl fmt::Debug for MemoryCheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCheckpointStore")
            .field("values", &self.values.lock().len())
            .finish()
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn location(&self) -> String {
        "memory".into()
    }
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()> {
        self.values
            .lock()
            .insert((tree, key.to_vec()), value.to_vec());
        Ok(())
    }
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.values.lock().get(&(tree, key.to_vec())).cloned())
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<()> {
        self.values.lock().remove(&(tree, key.to_vec()));
        Ok(())
    }
    fn keys(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self
            .values
            .lock()
            .range((tree, prefix.to_vec())..)
            .map(|((t, k), _)| (t, k))
            .take_while(|(t, k)| **t == tree && k.starts_with(prefix))
            .map(|(_, k)| k.clone())
            .collect())
    }
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// No size on disk; the live bytes summed over what it holds (once per batch, by
    /// [`maintain`](CheckpointStore::maintain)).
    fn stats(&self) -> StoreStats {
        let live_bytes = self
            .values
            .lock()
            .iter()
            .map(|((_, key), value)| (key.len() + value.len()) as u64)
            .sum();
        StoreStats {
            live_bytes,
            ..StoreStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(time_ms: i64, partition: u32) -> Key {
        Key::Data {
            stream: 1,
            time_ms,
            partition,
        }
    }

    #[test]
    fn memory_store_lists_keys_by_prefix_in_order() {
        let s = MemoryCheckpointStore::new();
        s.put(Tree::State, &data(200, 1).encode(), b"b").unwrap();
        s.put(Tree::State, &data(200, 0).encode(), b"a").unwrap();
        s.put(Tree::State, &data(1000, 0).encode(), b"c").unwrap();
        s.put(Tree::Meta, &Key::Meta { batch_ms: 200 }.encode(), b"m")
            .unwrap();
        let keys = list_keys(&s, Tree::State, &Key::data_prefix(1, 200)).unwrap();
        assert_eq!(keys, vec![data(200, 0), data(200, 1)]);
        assert_eq!(s.keys(Tree::State, b"").unwrap().len(), 3);
        s.remove(Tree::State, &data(200, 0).encode()).unwrap();
        assert_eq!(s.get(Tree::State, &data(200, 0).encode()).unwrap(), None);
        write_record(&s, Key::Meta { batch_ms: 300 }, &vec![1u8, 2]).unwrap();
        assert_eq!(
            read_record::<Vec<u8>>(&s, Key::Meta { batch_ms: 300 }).unwrap(),
            Some(vec![1, 2])
        );
        assert_eq!(
            read_record::<Vec<u8>>(&s, Key::Meta { batch_ms: 1 }).unwrap(),
            None
        );
    }

    #[test]
    fn memory_store_counts_live_bytes_but_no_size() {
        let s = MemoryCheckpointStore::new();
        assert_eq!(s.maintain().unwrap(), StoreStats::default());
        let key = data(200, 0).encode();
        s.put(Tree::State, &key, b"abc").unwrap();
        s.put(Tree::State, &key, b"abcde").unwrap(); // replaced, not added
        let stats = s.maintain().unwrap();
        assert_eq!(stats.live_bytes, (key.len() + 5) as u64);
        assert_eq!((stats.size_bytes, stats.compactions), (None, 0));
        s.remove(Tree::State, &key).unwrap();
        assert_eq!(s.stats().live_bytes, 0);
    }
}
