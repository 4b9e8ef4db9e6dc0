//! [`SledCheckpointStore`]: checkpoints in a sled (0.34) database inside a checkpoint
//! directory, one logical tree per [`Tree`] (DESIGN, "Persistence"), kept within a small
//! multiple of its live bytes for as long as it runs, whatever the number of crashes.
//!
//! sled makes writes durable every 500 ms on its own; a checkpoint is complete only after
//! [`flush`](CheckpointStore::flush) returned, which the protocols of
//! [`rivulet_framework::checkpoint`] rely on. `../shared/experiments/sled-kill/` measured
//! sled under SIGKILL.
//!
//! Three things keep the directory bounded:
//! * values are stored in pieces of at most 4 KiB ([`chunked`]), under the size at which
//!   sled 0.34 moves a node to a file of its own and leaks it (spacejam/sled#786);
//! * the checkpoint protocols delete what no kept metadata checkpoint names, and sweep at
//!   restore what a kill left behind;
//! * sled never gives back the log space that unclean stops and churn leave, so the store
//!   compacts ([`compaction`]): when the directory outgrows its [`CompactionPolicy`], the
//!   live records are copied into a fresh database, in the background while batches go on,
//!   which then replaces the old one atomically.

mod chunked;
mod compaction;
mod layout;

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rivulet_framework::checkpoint::{
    key_text, CheckpointStore, CompactionPolicy, StoreStats, Tree,
};
use rivulet_framework::{CheckpointError, Error, Result};

use chunked::{ChunkedTree, ReadError};
use layout::OpenDir;

/// One sled database and its trees.
struct Database {
    name: String,
    db: sled::Db,
    trees: [ChunkedTree; 3],
}

impl Database {
    fn open(dir: &Path, name: &str) -> std::result::Result<Database, (String, sled::Error)> {
        let fail = |action: &str, e| (action.to_string(), e);
        let path = dir.join(name);
        let unfinished = layout::remove_unfinished_snapshots(&path)
            .map_err(|e| fail("remove an unfinished sled snapshot", sled::Error::Io(e)))?;
        if unfinished > 0 {
            tracing::info!(database = %path.display(), files = unfinished, "Removed a sled snapshot a kill left unfinished.");
        }
        let db = sled::Config::new()
            .path(&path)
            .open()
            .map_err(|e| fail("open the sled database", e))?;
        let tree = |t: Tree| {
            ChunkedTree::open(&db, t.name())
                .map_err(|e| fail(&format!("open tree {}", t.name()), e))
        };
        Ok(Database {
            trees: [tree(Tree::Meta)?, tree(Tree::State)?, tree(Tree::Wal)?],
            name: name.to_string(),
            db,
        })
    }

    fn tree(&self, tree: Tree) -> &ChunkedTree {
        match tree {
            Tree::Meta => &self.trees[0],
            Tree::State => &self.trees[1],
            Tree::Wal => &self.trees[2],
        }
    }
}

/// A checkpoint directory backed by sled.
pub struct SledCheckpointStore {
    inner: Arc<Inner>,
    /// The background compaction, while one runs (joined at drop: the directory's lock is
    /// held until it ends).
    compaction: Mutex<Option<JoinHandle<()>>>,
}

/// What the store's calls and its background compaction share.
struct Inner {
    dir: PathBuf,
    /// The live database; a compaction takes it exclusively only to switch.
    current: RwLock<Database>,
    policy: CompactionPolicy,
    live: AtomicI64,
    /// The live bytes at the last few `maintain` calls: compaction compares the size with
    /// their peak, since the live bytes dip each time the two kept metadata checkpoints name
    /// a single data checkpoint.
    recent_live: Mutex<VecDeque<u64>>,
    compactions: AtomicU64,
    last_compaction_us: AtomicU64,
    /// The keys written or removed since a compaction began copying; `None` when none runs.
    dirty: Mutex<Option<BTreeSet<(Tree, Vec<u8>)>>>,
    /// A background compaction's failure, returned by the next `maintain`.
    failed: Mutex<Option<Error>>,
    _dir_lock: OpenDir,
}

/// How many `maintain` calls the live-bytes peak looks back over.
const LIVE_WINDOW: usize = 32;

impl SledCheckpointStore {
    /// Opens (or creates) the checkpoint directory `dir` with the default
    /// [`CompactionPolicy`].
    ///
    /// # Errors
    /// As [`open_with`](SledCheckpointStore::open_with).
    pub fn open(dir: impl AsRef<Path>) -> Result<SledCheckpointStore> {
        SledCheckpointStore::open_with(dir, CompactionPolicy::default())
    }

    /// Opens (or creates) the checkpoint directory `dir`: takes its lock, opens the database
    /// `CURRENT` names (removing leftovers of an interrupted compaction), removes value
    /// pieces a kill left without their value, and compacts (before returning) if the
    /// directory is over `policy`.
    ///
    /// # Errors
    /// Each naming `dir`: [`CheckpointError::Locked`] when another running process has it
    /// open (with its pid); [`CheckpointError::NotACheckpoint`] for a directory holding other
    /// files; [`CheckpointError::Layout`] for a checkpoint of an older rivulet;
    /// [`CheckpointError::NoSpace`] on a full file system; [`CheckpointError::Storage`] when
    /// it cannot be created or opened otherwise.
    pub fn open_with(
        dir: impl AsRef<Path>,
        policy: CompactionPolicy,
    ) -> Result<SledCheckpointStore> {
        let dir = dir.as_ref().to_path_buf();
        let opened = layout::open(&dir)?;
        let database = Database::open(&dir, &opened.current)
            .map_err(|(action, e)| sled_error(&dir, &action, e))?;
        let mut live = 0u64;
        for t in [Tree::Meta, Tree::State, Tree::Wal] {
            let tree = database.tree(t);
            let swept = tree
                .sweep()
                .map_err(|e| sled_error(&dir, &format!("sweep tree {}", t.name()), e))?;
            if swept > 0 {
                tracing::info!(dir = %dir.display(), tree = t.name(), pieces = swept, "Removed value pieces a kill left behind.");
            }
            live += tree
                .live_bytes()
                .map_err(|e| sled_error(&dir, &format!("measure tree {}", t.name()), e))?;
        }
        let inner = Inner {
            current: RwLock::new(database),
            policy,
            live: AtomicI64::new(live as i64),
            recent_live: Mutex::new(VecDeque::new()),
            compactions: AtomicU64::new(0),
            last_compaction_us: AtomicU64::new(0),
            dirty: Mutex::new(None),
            failed: Mutex::new(None),
            _dir_lock: opened,
            dir,
        };
        if inner.compaction_due()? {
            inner.compact()?;
        }
        Ok(SledCheckpointStore {
            inner: Arc::new(inner),
            compaction: Mutex::new(None),
        })
    }

    /// Deletes the checkpoint directory `dir` to start over (what `--fresh` options should
    /// call): only a rivulet checkpoint directory (of any layout) or an empty one, and only
    /// while no running process holds it. Returns whether there was a directory to delete.
    ///
    /// # Errors
    /// [`CheckpointError::NotACheckpoint`] for anything else (nothing is deleted);
    /// [`CheckpointError::Locked`] naming the process that holds it;
    /// [`CheckpointError::Storage`] when it cannot be deleted.
    pub fn destroy(dir: impl AsRef<Path>) -> Result<bool> {
        layout::remove_checkpoint_dir(dir.as_ref())
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The checkpoint directory's size on disk, in bytes (every file in it).
    ///
    /// # Errors
    /// [`CheckpointError::Storage`] when the directory cannot be listed.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.inner.size_on_disk()
    }

    /// Compacts now, on the calling thread (copy the live records into a fresh database, bring writes made meanwhile over under a short exclusive step, then switch `CURRENT`); store calls
    /// from other threads go on meanwhile.
    ///
    /// # Errors
    /// [`CheckpointError::NoSpace`] or [`CheckpointError::Storage`] when the new database
    /// cannot be written; the old one stays live.
    pub fn compact(&self) -> Result<()> {
        self.wait_for_compaction();
        self.inner.compact()
    }

    /// Waits for a background compaction, if one runs.
    fn wait_for_compaction(&self) {
        if let Some(handle) = self.compaction.lock().take() {
            let _ = handle.join();
        }
    }
}

impl Drop for SledCheckpointStore {
    fn drop(&mut self) {
        self.wait_for_compaction();
    }
}

impl Inner {
    fn size_on_disk(&self) -> Result<u64> {
        layout::size_of(&self.dir)
            .map_err(|e| layout::io_error(&self.dir, "measure the directory", &e))
    }

    /// Counts a change of `delta` live bytes to `key`, and marks the key for a compaction
    /// that is copying (called while the database is read-locked).
    fn wrote(&self, tree: Tree, key: &[u8], delta: i64) {
        self.live.fetch_add(delta, Ordering::Relaxed);
        if let Some(dirty) = self.dirty.lock().as_mut() {
            dirty.insert((tree, key.to_vec()));
        }
    }

    fn live(&self) -> u64 {
        self.live.load(Ordering::Relaxed).max(0) as u64
    }

    fn error(&self, action: impl Into<String>, e: sled::Error) -> Error {
        sled_error(&self.dir, &action.into(), e)
    }

    /// Whether the directory is over the policy: its size against the peak of the recent
    /// live bytes.
    fn compaction_due(&self) -> Result<bool> {
        let size = self.size_on_disk()?;
        let mut recent = self.recent_live.lock();
        recent.push_back(self.live());
        while recent.len() > LIVE_WINDOW {
            recent.pop_front();
        }
        let peak = recent.iter().copied().max().unwrap_or(0);
        Ok(self.policy.is_due(size, peak))
    }

    fn stats(&self) -> StoreStats {
        StoreStats {
            size_bytes: self.size_on_disk().ok(),
            live_bytes: self.live(),
            compactions: self.compactions.load(Ordering::Relaxed),
            last_compaction: match self.last_compaction_us.load(Ordering::Relaxed) {
                0 => None,
                us => Some(Duration::from_micros(us)),
            },
        }
    }
}

/// A sled failure as a checkpoint error: a full file system as [`CheckpointError::NoSpace`].
fn sled_error(dir: &Path, action: &str, e: sled::Error) -> Error {
    match e {
        sled::Error::Io(io) => layout::io_error(dir, action, &io),
        sled::Error::Corruption { .. } => CheckpointError::Corrupt {
            dir: dir.display().to_string(),
            key: "the sled database".into(),
            reason: format!("sled cannot {action}: {e}"),
        }
        .into(),
        e => CheckpointError::Storage {
            dir: dir.display().to_string(),
            action: action.to_string(),
            message: e.to_string(),
        }
        .into(),
    }
}

impl fmt::Debug for SledCheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledCheckpointStore")
            .field("dir", &self.inner.dir)
            .field("database", &self.inner.current.read().name)
            .finish()
    }
}

impl CheckpointStore for SledCheckpointStore {
    fn location(&self) -> String {
        self.inner.dir.display().to_string()
    }
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()> {
        let inner = &*self.inner;
        let db = inner.current.read();
        let delta = db
            .tree(tree)
            .put(key, value)
            .map_err(|e| inner.error(format!("write {}", key_text(tree, key)), e))?;
        inner.wrote(tree, key, delta);
        Ok(())
    }
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let inner = &*self.inner;
        inner
            .current
            .read()
            .tree(tree)
            .get(key)
            .map_err(|e| match e {
                ReadError::Sled(e) => inner.error(format!("read {}", key_text(tree, key)), e),
                ReadError::Torn(reason) => CheckpointError::Corrupt {
                    dir: self.location(),
                    key: key_text(tree, key),
                    reason,
                }
                .into(),
            })
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<()> {
        let inner = &*self.inner;
        let db = inner.current.read();
        let delta = db
            .tree(tree)
            .remove(key)
            .map_err(|e| inner.error(format!("remove {}", key_text(tree, key)), e))?;
        inner.wrote(tree, key, delta);
        Ok(())
    }
    fn keys(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let inner = &*self.inner;
        inner
            .current
            .read()
            .tree(tree)
            .keys(prefix)
            .map_err(|e| inner.error(format!("list {}", key_text(tree, prefix)), e))
    }
    fn flush(&self) -> Result<()> {
        let inner = &*self.inner;
        inner
            .current
            .read()
            .db
            .flush()
            .map(|_| ())
            .map_err(|e| inner.error("flush", e))
    }
    fn record_progress(&self, batch_ms: i64) -> Result<()> {
        layout::write_progress(&self.inner.dir, batch_ms)
    }
    fn progress(&self) -> Option<i64> {
        layout::read_progress(&self.inner.dir)
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
    /// Reports a failed background compaction; starts one, on a thread of its own, when the
    /// directory is over the policy and none runs.
    fn maintain(&self) -> Result<StoreStats> {
        if let Some(e) = self.inner.failed.lock().take() {
            return Err(e);
        }
        let mut running = self.compaction.lock();
        if running.as_ref().is_some_and(|h| !h.is_finished()) {
            return Ok(self.inner.stats());
        }
        if let Some(done) = running.take() {
            let _ = done.join();
        }
        if self.inner.compaction_due()? {
            let inner = self.inner.clone();
            let handle = std::thread::Builder::new()
                .name("rivulet-compaction".into())
                .spawn(move || {
                    if let Err(e) = inner.compact() {
                        tracing::error!(dir = %inner.dir.display(), error = %e, "Cannot compact the checkpoint store.");
                        *inner.failed.lock() = Some(e);
                    }
                })
                .map_err(|e| {
                    layout::io_error(&self.inner.dir, "start the compaction thread", &e)
                })?;
            *running = Some(handle);
        }
        Ok(self.inner.stats())
    }
}

#[cfg(test)]
mod tests;
