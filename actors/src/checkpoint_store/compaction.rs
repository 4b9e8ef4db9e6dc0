//! Compaction: the live records copied into a fresh sled database that replaces the old one.
//!
//! # Compaction, step by step
//! Started by [`maintain`](rivulet_framework::checkpoint::CheckpointStore::maintain) after a
//! metadata checkpoint, on a thread of its own, when the directory is over its
//! [`CompactionPolicy`](rivulet_framework::checkpoint::CompactionPolicy); at open, before
//! anything else runs. Store calls go on while it copies; they wait only for step 4.
//! 1. Start tracking the keys every put and remove touches from now on; open a new sled
//!    database `db-<N+1>` beside the live `db-<N>` (a leftover of an interrupted compaction
//!    is removed first).
//! 2. Copy every value of every tree (the checkpoint protocols deleted the dead ones; pieces
//!    no value names are left behind). Writes meanwhile go to `db-<N>` and are tracked.
//! 3. Take the database exclusively: no store call runs from here to step 5. Bring every
//!    tracked key up to date in `db-<N+1>` (its value in `db-<N>` now, or removed), then
//!    flush `db-<N+1>`: it holds exactly what `db-<N>` holds.
//! 4. Replace `CURRENT` by rename, naming `db-<N+1>`, and sync the directory: from here a
//!    restart opens the new database.
//! 5. Use the new database; close the old one and delete it.
//!
//! A kill before step 4 leaves `db-<N>` live and a partial `db-<N+1>`, which the next open
//! deletes; a kill after it leaves `db-<N+1>` live and complete, and the next open deletes
//! `db-<N>`. A failed step leaves `db-<N>` live and deletes `db-<N+1>`. The time store calls
//! wait (step 3 to 5) follows the writes made during the copy, not the live bytes.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rivulet_framework::checkpoint::{key_text, Tree};
use rivulet_framework::{CheckpointError, Result};

use super::chunked::ReadError;
use super::{layout, Database, Inner};

impl Inner {
    /// Runs a compaction (the steps above) on the calling thread.
    ///
    /// # Errors
    /// [`CheckpointError::NoSpace`](rivulet_framework::CheckpointError::NoSpace) or
    /// [`CheckpointError::Storage`](rivulet_framework::CheckpointError::Storage) when the
    /// new database cannot be written; the old one stays live.
    pub(super) fn compact(&self) -> Result<()> {
        let start = Instant::now();
        let size_before = self.size_on_disk()?;
        // 1. Tracking starts with no store call in flight, so none is missed.
        let name = {
            let current = self.current.write();
            *self.dirty.lock() = Some(BTreeSet::new());
            layout::next_db_name(&current.name)
        };
        let path = self.dir.join(&name);
        let result = self.copy_and_switch(&name);
        *self.dirty.lock() = None;
        let waited = result.inspect_err(|_| {
            // Not live: a later compaction starts it anew (or the next open removes it).
            let _ = std::fs::remove_dir_all(&path);
        })?;
        let took = start.elapsed();
        self.compactions.fetch_add(1, Ordering::Relaxed);
        self.last_compaction_us
            .store(took.as_micros().max(1) as u64, Ordering::Relaxed);
        tracing::info!(
            dir = %self.dir.display(),
            before_bytes = size_before,
            after_bytes = self.size_on_disk().unwrap_or(0),
            live_bytes = self.live(),
            took_ms = took.as_millis() as u64,
            calls_waited_ms = waited.as_millis() as u64,
            "Checkpoint store compacted."
        );
        Ok(())
    }

    /// Steps 1 (the new database) to 5; returns how long store calls waited.
    fn copy_and_switch(&self, name: &str) -> Result<std::time::Duration> {
        let path = self.dir.join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| {
                layout::io_error(&self.dir, &format!("remove the leftover {name}"), &e)
            })?;
        }
        let fresh = Database::open(&self.dir, name)
            .map_err(|(action, e)| self.error(format!("{action} {name}"), e))?;
        crash_point(1);
        // 2. The copy, while store calls go on.
        {
            let current = self.current.read();
            for t in [Tree::Meta, Tree::State, Tree::Wal] {
                current
                    .tree(t)
                    .copy_to(fresh.tree(t))
                    .map_err(|e| self.error(format!("copy tree {} into {name}", t.name()), e))?;
            }
        }
        crash_point(2);
        // 3. Exclusive: the writes made during the copy, then durable.
        let mut current = self.current.write();
        let exclusive = Instant::now();
        let dirty = self.dirty.lock().take().unwrap_or_default();
        for (t, key) in dirty {
            let value = current.tree(t).get(&key).map_err(|e| match e {
                ReadError::Sled(e) => self.error(format!("read {} to copy it", t.name()), e),
                ReadError::Torn(reason) => CheckpointError::Corrupt {
                    dir: self.dir.display().to_string(),
                    key: key_text(t, &key),
                    reason,
                }
                .into(),
            })?;
            let copied = match value {
                Some(value) => fresh.tree(t).put(&key, &value),
                None => fresh.tree(t).remove(&key),
            };
            copied.map_err(|e| self.error(format!("copy into {name}"), e))?;
        }
        fresh
            .db
            .flush()
            .map_err(|e| self.error(format!("flush {name}"), e))?;
        crash_point(3);
        // 4. The switch.
        layout::switch_current(&self.dir, name)?;
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
        Ok(exclusive.elapsed())
    }
}

/// In this crate's tests, SIGKILLs the process at compaction step `step` when the
/// `RIVULET_TEST_KILL_AT_STEP` variable says so (the crash test's child process).
fn crash_point(step: u8) {
    #[cfg(test)]
    super::tests::kill_at(step);
    #[cfg(not(test))]
    let _ = step;
}
