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
//!   compacts: when the directory outgrows [`CompactionPolicy`], the live records are copied
//!   into a fresh database that then replaces the old one atomically.
//!
//! # Compaction, step by step
//! Run by [`maintain`](CheckpointStore::maintain) after a metadata checkpoint (on the job
//! thread, between batches) and at open; every other store call waits for it.
//! 1. Open a new sled database `db-<N+1>` beside the live `db-<N>` (a leftover of an
//!    interrupted compaction was removed at open).
//! 2. Copy every value of every tree (the checkpoint protocols deleted the dead ones; pieces
//!    no value names are left behind).
//! 3. Flush the new database.
//! 4. Replace `CURRENT` by rename, naming `db-<N+1>`, and sync the directory: from here a
//!    restart opens the new database.
//! 5. Use the new database; close the old one and delete it.
//!
//! A kill before step 4 leaves `db-<N>` live and a partial `db-<N+1>`, which the next open
//! deletes; a kill after it leaves `db-<N+1>` live and complete, and the next open deletes
//! `db-<N>`.

mod chunked;
mod layout;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

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
        let db = sled::Config::new()
            .path(dir.join(name))
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
    dir: PathBuf,
    /// The live database; compaction takes it exclusively to replace it.
    current: RwLock<Database>,
    policy: CompactionPolicy,
    live: AtomicI64,
    compactions: AtomicU64,
    last_compaction_us: AtomicU64,
    _dir_lock: OpenDir,
}

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
    /// pieces a kill left without their value, and compacts if the directory is over
    /// `policy`.
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
        let store = SledCheckpointStore {
            current: RwLock::new(database),
            policy,
            live: AtomicI64::new(live as i64),
            compactions: AtomicU64::new(0),
            last_compaction_us: AtomicU64::new(0),
            _dir_lock: opened,
            dir,
        };
        store.maintain()?;
        Ok(store)
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
        &self.dir
    }

    /// The checkpoint directory's size on disk, in bytes (every file in it).
    ///
    /// # Errors
    /// [`CheckpointError::Storage`] when the directory cannot be listed.
    pub fn size_on_disk(&self) -> Result<u64> {
        layout::size_of(&self.dir)
            .map_err(|e| layout::io_error(&self.dir, "measure the directory", &e))
    }

    fn read(&self) -> RwLockReadGuard<'_, Database> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, delta: i64) {
        self.live.fetch_add(delta, Ordering::Relaxed);
    }

    fn error(&self, action: impl Into<String>, e: sled::Error) -> Error {
        sled_error(&self.dir, &action.into(), e)
    }

    /// Compacts now (see the module doc for the steps).
    ///
    /// # Errors
    /// [`CheckpointError::NoSpace`] or [`CheckpointError::Storage`] when the new database
    /// cannot be written; the old one stays live.
    pub fn compact(&self) -> Result<()> {
        let start = Instant::now();
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let size_before = self.size_on_disk()?;
        // 1. A new database beside the live one.
        let name = layout::next_db_name(&current.name);
        let path = self.dir.join(&name);
        let fresh = self.copy_into(&current, &name).inspect_err(|_| {
            // Not live: a later compaction starts it anew (or the next open removes it).
            let _ = std::fs::remove_dir_all(&path);
        })?;
        // 4. The switch.
        layout::switch_current(&self.dir, &name)?;
        crash_point(4);
        // 5. The old database goes.
        let old = std::mem::replace(&mut *current, fresh);
        let old_name = old.name.clone();
        drop(old);
        if let Err(e) = std::fs::remove_dir_all(self.dir.join(&old_name)) {
            // Removed at the next open.
            tracing::warn!(dir = %self.dir.display(), database = %old_name, error = %e, "Cannot delete the compacted database.");
        }
        crash_point(5);
        drop(current);
        let took = start.elapsed();
        self.compactions.fetch_add(1, Ordering::Relaxed);
        self.last_compaction_us
            .store(took.as_micros().max(1) as u64, Ordering::Relaxed);
        tracing::info!(
            dir = %self.dir.display(),
            before_bytes = size_before,
            after_bytes = self.size_on_disk().unwrap_or(0),
            live_bytes = self.live.load(Ordering::Relaxed),
            took_ms = took.as_millis() as u64,
            "Checkpoint store compacted."
        );
        Ok(())
    }

    /// Steps 1 to 3 of a compaction: a new database `name` holding every value of `from`,
    /// flushed.
    fn copy_into(&self, from: &Database, name: &str) -> Result<Database> {
        let path = self.dir.join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| {
                layout::io_error(&self.dir, &format!("remove the leftover {name}"), &e)
            })?;
        }
        let fresh = Database::open(&self.dir, name)
            .map_err(|(action, e)| self.error(format!("{action} {name}"), e))?;
        crash_point(1);
        for t in [Tree::Meta, Tree::State, Tree::Wal] {
            from.tree(t)
                .copy_to(fresh.tree(t))
                .map_err(|e| self.error(format!("copy tree {} into {name}", t.name()), e))?;
        }
        crash_point(2);
        fresh
            .db
            .flush()
            .map_err(|e| self.error(format!("flush {name}"), e))?;
        crash_point(3);
        Ok(fresh)
    }
}

/// In this crate's tests, SIGKILLs the process at compaction step `step` when the
/// `RIVULET_TEST_KILL_AT_STEP` variable says so (the crash test's child process).
fn crash_point(step: u8) {
    #[cfg(test)]
    tests::kill_at(step);
    #[cfg(not(test))]
    let _ = step;
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
            .field("dir", &self.dir)
            .field("database", &self.read().name)
            .finish()
    }
}

impl CheckpointStore for SledCheckpointStore {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()> {
        let delta = self
            .read()
            .tree(tree)
            .put(key, value)
            .map_err(|e| self.error(format!("write {}", key_text(tree, key)), e))?;
        self.count(delta);
        Ok(())
    }
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.read().tree(tree).get(key).map_err(|e| match e {
            ReadError::Sled(e) => self.error(format!("read {}", key_text(tree, key)), e),
            ReadError::Torn(reason) => CheckpointError::Corrupt {
                dir: self.location(),
                key: key_text(tree, key),
                reason,
            }
            .into(),
        })
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<()> {
        let delta = self
            .read()
            .tree(tree)
            .remove(key)
            .map_err(|e| self.error(format!("remove {}", key_text(tree, key)), e))?;
        self.count(delta);
        Ok(())
    }
    fn keys(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.read()
            .tree(tree)
            .keys(prefix)
            .map_err(|e| self.error(format!("list {}", key_text(tree, prefix)), e))
    }
    fn flush(&self) -> Result<()> {
        self.read()
            .db
            .flush()
            .map(|_| ())
            .map_err(|e| self.error("flush", e))
    }
    fn record_progress(&self, batch_ms: i64) -> Result<()> {
        layout::write_progress(&self.dir, batch_ms)
    }
    fn progress(&self) -> Option<i64> {
        layout::read_progress(&self.dir)
    }
    fn stats(&self) -> StoreStats {
        StoreStats {
            size_bytes: self.size_on_disk().ok(),
            live_bytes: self.live.load(Ordering::Relaxed).max(0) as u64,
            compactions: self.compactions.load(Ordering::Relaxed),
            last_compaction: match self.last_compaction_us.load(Ordering::Relaxed) {
                0 => None,
                us => Some(Duration::from_micros(us)),
            },
        }
    }
    fn maintain(&self) -> Result<StoreStats> {
        let size = self.size_on_disk()?;
        let live = self.live.load(Ordering::Relaxed).max(0) as u64;
        if self.policy.is_due(size, live) {
            self.compact()?;
        }
        Ok(self.stats())
    }
}

#[cfg(test)]
mod tests;
