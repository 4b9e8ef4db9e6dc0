//! Checkpoints (Spark: `Checkpoint`, `DStreamCheckpointData`, `ReliableCheckpointRDD`): what
//! is written so that state survives the loss of an executor and a process can restart
//! where it stopped.
//!
//! * A **data checkpoint** writes every partition of a stateful or windowed DStream's RDD
//!   every checkpoint interval, and cuts the stream's lineage there: the next batch's state
//!   depends on the checkpointed RDD, read back from the store when it is not cached.
//! * A **metadata checkpoint** ([`MetadataCheckpoint`]) is written after every completed
//!   batch: the graph's fingerprint, the batch time, the newest complete data checkpoint of
//!   each stream, the input of every batch a restart may recompute or run (received blocks
//!   per batch, a polled input's splits per batch) and what each input needs to resume.
//!
//! Values are records (see [`encode`] and [`decode`]): versioned, named-field rmp-serde with a CRC-32 checksum. A
//! checkpoint is complete only once its metadata record is durable: data, `flush`, metadata,
//! `flush`, and only then purge what older checkpoints held (DESIGN, "Persistence").
//!
//! The [`CheckpointStore`] trait is the storage: [`MemoryCheckpointStore`] (the default,
//! which survives executor loss but not the process) here, and sled (with
//! `StreamingConfig::checkpoint_dir`) in the runtime crate. It lives here, not in the runtime
//! crate, because RDDs read checkpointed partitions back inside tasks.

mod record;

pub use record::{decode, encode, FORMAT_VERSION, OLDEST_FORMAT_VERSION};

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::rdd::RddId;

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
    /// [`CheckpointError::Storage`](crate::CheckpointError::Storage) when the store cannot
    /// be written (an unwritable or full directory).
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()>;
    /// The value under `key` in `tree`, if any.
    ///
    /// # Errors
    /// [`CheckpointError::Storage`](crate::CheckpointError::Storage) when the store cannot
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
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Tree, Vec<u8>), Vec<u8>>> {
        self.values.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for MemoryCheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCheckpointStore")
            .field("values", &self.lock().len())
            .finish()
    }
}

impl CheckpointStore for MemoryCheckpointStore {
    fn location(&self) -> String {
        "memory".into()
    }
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()> {
        self.lock().insert((tree, key.to_vec()), value.to_vec());
        Ok(())
    }
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock().get(&(tree, key.to_vec())).cloned())
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<()> {
        self.lock().remove(&(tree, key.to_vec()));
        Ok(())
    }
    fn keys(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        Ok(self
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
}

/// The key of a metadata checkpoint: `meta/<batch time ms, 20 digits>` (sorts by time).
pub fn meta_key(batch_time_ms: i64) -> Vec<u8> {
    format!("meta/{batch_time_ms:020}").into_bytes()
}

/// The key prefix of every partition of one data checkpoint: `<stream>/<time ms>/`.
pub fn data_prefix(stream: u32, time_ms: i64) -> Vec<u8> {
    format!("{stream:010}/{time_ms:020}/").into_bytes()
}

/// The key of partition `partition` of a data checkpoint.
pub fn data_key(stream: u32, time_ms: i64, partition: usize) -> Vec<u8> {
    let mut key = data_prefix(stream, time_ms);
    key.extend_from_slice(format!("{partition:010}").as_bytes());
    key
}

/// The key prefix of one input stream's blocks in the write-ahead log: `<stream>/`.
pub fn wal_prefix(stream: u32) -> Vec<u8> {
    format!("{stream:010}/").into_bytes()
}

/// The key of an input block in the write-ahead log: `<stream>/<seq, 20 digits>`.
pub fn wal_key(stream: u32, seq: u64) -> Vec<u8> {
    let mut key = wal_prefix(stream);
    key.extend_from_slice(format!("{seq:020}").as_bytes());
    key
}

/// A key as text, for error messages.
pub fn key_text(tree: Tree, key: &[u8]) -> String {
    format!("{}/{}", tree.name(), String::from_utf8_lossy(key))
}

/// One DStream as the graph fingerprint records it: its id, operator and slide. Call sites
/// are left out so that a rebuilt program whose lines moved still restores.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSignature {
    /// The DStream's id (creation order).
    pub id: u32,
    /// The operator's name, e.g. `map_with_state`.
    pub op: String,
    /// The slide duration in ms.
    pub slide_ms: u64,
}

/// A complete data checkpoint of one DStream: its RDD at `time_ms`, in `partitions`
/// partitions under [`data_key`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCheckpoint {
    /// The DStream.
    pub stream: u32,
    /// The batch time of the checkpointed RDD (ms).
    pub time_ms: i64,
    /// The checkpointed RDD's id (restored under the same id).
    pub rdd: RddId,
    /// How many partitions were written.
    pub partitions: u32,
    /// The partition count of the RDD's hash partitioner, if it had one (state is kept
    /// partitioned by key with [`stable_hash`](crate::partitioner::stable_hash)).
    pub partitioner: Option<usize>,
    /// How many keys the checkpointed state held, when the stream knows how to count them.
    #[serde(default)]
    pub keys: Option<u64>,
}

/// What an input DStream needs to resume: an opaque, versioned value it encodes itself
/// (e.g. the files a file stream has selected, per batch).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputState {
    /// The input DStream.
    pub stream: u32,
    /// Its state, a record the stream encoded (see [`decode`]).
    pub state: Vec<u8>,
}

/// The metadata checkpoint written after every completed batch (Spark: `Checkpoint`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataCheckpoint {
    /// The graph's fingerprint: every DStream, in id order.
    pub graph: Vec<StreamSignature>,
    /// The batch interval (ms).
    pub batch_interval_ms: u64,
    /// The graph's zero time (ms): batch times are `zero + k * interval`.
    pub zero_time_ms: i64,
    /// The last completed batch (ms); every batch up to it completed.
    pub batch_time_ms: i64,
    /// The newest complete data checkpoint of each checkpointed stream.
    pub data: Vec<DataCheckpoint>,
    /// What each restorable input stream needs to resume.
    pub inputs: Vec<InputState>,
    /// Received blocks allocated to each batch (ms) that a restart may recompute or run:
    /// those after the oldest batch still needed (their data is in the write-ahead log).
    #[serde(default)]
    pub allocations: Vec<(i64, Vec<crate::block::BlockInfo>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_lists_keys_by_prefix_in_order() {
        let s = MemoryCheckpointStore::new();
        s.put(Tree::State, &data_key(1, 200, 1), b"b").unwrap();
        s.put(Tree::State, &data_key(1, 200, 0), b"a").unwrap();
        s.put(Tree::State, &data_key(1, 1000, 0), b"c").unwrap();
        s.put(Tree::Meta, &meta_key(200), b"m").unwrap();
        let keys = s.keys(Tree::State, &data_prefix(1, 200)).unwrap();
        assert_eq!(keys, vec![data_key(1, 200, 0), data_key(1, 200, 1)]);
        assert_eq!(s.keys(Tree::State, b"").unwrap().len(), 3);
        s.remove(Tree::State, &data_key(1, 200, 0)).unwrap();
        assert_eq!(s.get(Tree::State, &data_key(1, 200, 0)).unwrap(), None);
        assert_eq!(s.get(Tree::Meta, &meta_key(200)).unwrap().unwrap(), b"m");
        assert!(meta_key(999) < meta_key(1000), "keys sort by time");
    }
}
