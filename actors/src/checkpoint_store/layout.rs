//! The checkpoint directory's files (layout 2), and the steps that make switching the live
//! database atomic.
//!
//! ```text
//! <checkpoint dir>/
//!   RIVULET      "rivulet checkpoint directory\nlayout 2\n": what the directory is, written once
//!   LOCK         locked (flock) by the process that has the directory open; holds its pid
//!   CURRENT      the name of the live database, e.g. "db-000003\n"; replaced by rename only
//!   PROGRESS     the last batch a metadata checkpoint completed (rollback detection)
//!   db-000003/   the live sled database
//! ```
//!
//! Any other `db-*` directory, and `*.tmp` files, are leftovers of a compaction or a write a
//! kill interrupted: [`open`] removes them once it holds the lock.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::Path;

use rivulet_framework::{CheckpointError, Error, Result};

/// The layout this build reads and writes.
pub(crate) const LAYOUT: u32 = 2;

const IDENTITY: &str = "RIVULET";
const LOCK: &str = "LOCK";
const CURRENT: &str = "CURRENT";
const PROGRESS: &str = "PROGRESS";
const DB_PREFIX: &str = "db-";

/// An open checkpoint directory: its lock is held (released when this is dropped, or when
/// the process dies, by the kernel).
#[derive(Debug)]
pub(crate) struct OpenDir {
    /// The live database's directory name (`db-NNNNNN`).
    pub(crate) current: String,
    _lock: File,
}

fn text(dir: &Path) -> String {
    dir.display().to_string()
}

/// An I/O failure as a checkpoint error: [`CheckpointError::NoSpace`] for a full file system
/// (`ENOSPC`, `EDQUOT`) or a reached file size limit (`EFBIG`), else
/// [`CheckpointError::Storage`].
pub(crate) fn io_error(dir: &Path, action: &str, e: &std::io::Error) -> Error {
    let (dir, action, message) = (text(dir), action.to_string(), e.to_string());
    // ENOSPC 28, EFBIG 27, EDQUOT 122 on Linux; `StorageFull` where std maps it.
    let full = e.kind() == std::io::ErrorKind::StorageFull
        || e.kind() == std::io::ErrorKind::FileTooLarge
        || e.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(e.raw_os_error(), Some(27 | 28 | 122));
    if full {
        CheckpointError::NoSpace {
            dir,
            action,
            message,
        }
        .into()
    } else {
        CheckpointError::Storage {
            dir,
            action,
            message,
        }
        .into()
    }
}

/// What a directory holds, judged by its files.
enum Kind {
    /// Nothing (or only a lock file): a fresh checkpoint directory.
    Empty,
    /// A rivulet checkpoint of this layout.
    Ours,
    /// A rivulet checkpoint of another layout.
    OtherLayout(u32),
    /// Something else, with a few of its entries' names.
    Foreign(Vec<String>),
}

fn classify(dir: &Path) -> Result<Kind> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list the directory", &e))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list the directory", &e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.retain(|n| n != LOCK);
    if names.is_empty() {
        return Ok(Kind::Empty);
    }
    if names.iter().any(|n| n == IDENTITY) {
        let identity = fs::read_to_string(dir.join(IDENTITY))
            .map_err(|e| io_error(dir, &format!("read {IDENTITY}"), &e))?;
        let layout = identity
            .lines()
            .find_map(|l| l.strip_prefix("layout "))
            .and_then(|v| v.trim().parse::<u32>().ok());
        return Ok(match layout {
            Some(LAYOUT) => Kind::Ours,
            Some(other) => Kind::OtherLayout(other),
            None => Kind::Foreign(vec![format!("{IDENTITY} without a layout line")]),
        });
    }
    // Before layouts were recorded, a checkpoint directory was one sled database.
    let sled_conf = fs::read_to_string(dir.join("conf")).unwrap_or_default();
    if sled_conf.contains("segment_size") && dir.join("db").is_file() {
        return Ok(Kind::OtherLayout(1));
    }
    names.sort();
    names.truncate(3);
    Ok(Kind::Foreign(names))
}

/// Checks that `dir` is a rivulet checkpoint directory of this layout or an empty one.
fn check_kind(dir: &Path) -> Result<bool> {
    match classify(dir)? {
        Kind::Empty => Ok(true),
        Kind::Ours => Ok(false),
        Kind::OtherLayout(found) => Err(CheckpointError::Layout {
            dir: text(dir),
            found,
            supported: LAYOUT,
        }
        .into()),
        Kind::Foreign(names) => Err(CheckpointError::NotACheckpoint {
            dir: text(dir),
            reason: format!("it holds {} and no {IDENTITY} file", names.join(", ")),
        }
        .into()),
    }
}

/// Takes the directory's lock, or names the process that holds it.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK);
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| io_error(dir, "open the lock file", &e))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(CheckpointError::Locked {
                dir: text(dir),
                holder: pid.trim().parse().ok(),
            }
            .into());
        }
        Err(TryLockError::Error(e)) => return Err(io_error(dir, "lock the directory", &e)),
    }
    file.set_len(0)
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .map_err(|e| io_error(dir, "write the lock file", &e))?;
    Ok(file)
}

/// Makes a rename or creation in `dir` durable (on Unix a directory entry is durable once
/// its directory is synced).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_error(dir, "sync the directory", &e))?;
    Ok(())
}

/// Writes `name` in `dir` atomically: to `name.tmp`, synced, renamed over `name`, and, when
/// `durable`, the directory synced.
fn replace_file(dir: &Path, name: &str, content: &str, durable: bool) -> Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    let action = format!("write {name}");
    let mut file = File::create(&tmp).map_err(|e| io_error(dir, &action, &e))?;
    file.write_all(content.as_bytes())
        .map_err(|e| io_error(dir, &action, &e))?;
    if durable {
        file.sync_all().map_err(|e| io_error(dir, &action, &e))?;
    }
    fs::rename(&tmp, dir.join(name)).map_err(|e| io_error(dir, &action, &e))?;
    if durable {
        sync_dir(dir)?;
    }
    Ok(())
}

/// The database name after `current` (`db-000003` → `db-000004`).
pub(crate) fn next_db_name(current: &str) -> String {
    let n: u64 = current
        .strip_prefix(DB_PREFIX)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    format!("{DB_PREFIX}{:06}", n + 1)
}

/// Opens `dir` as a checkpoint directory, creating it (and its files) if it is new or empty:
///
/// 1. refuse a directory that holds anything but a checkpoint of this layout;
/// 2. take the lock (naming the holder's pid if another process has it);
/// 3. a new directory gets `RIVULET` and `CURRENT` naming `db-000001`;
/// 4. remove leftovers: every `db-*` that `CURRENT` does not name, and `*.tmp` files.
///
/// # Errors
/// [`CheckpointError::NotACheckpoint`], [`CheckpointError::Layout`],
/// [`CheckpointError::Locked`], [`CheckpointError::NoSpace`] or
/// [`CheckpointError::Storage`], each naming `dir`.
pub(crate) fn open(dir: &Path) -> Result<OpenDir> {
    fs::create_dir_all(dir).map_err(|e| io_error(dir, "create the directory", &e))?;
    let fresh = check_kind(dir)?;
    let lock = lock(dir)?;
    if fresh {
        replace_file(
            dir,
            IDENTITY,
            &format!("rivulet checkpoint directory\nlayout {LAYOUT}\n"),
            true,
        )?;
    }
    let current = match fs::read_to_string(dir.join(CURRENT)) {
        Ok(name) => {
            let name = name.trim().to_string();
            let valid = name
                .strip_prefix(DB_PREFIX)
                .is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()));
            if !valid {
                return Err(CheckpointError::Corrupt {
                    dir: text(dir),
                    key: CURRENT.into(),
                    reason: format!("`{name}` does not name a database"),
                }
                .into());
            }
            name
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let name = format!("{DB_PREFIX}000001");
            switch_current(dir, &name)?;
            name
        }
        Err(e) => return Err(io_error(dir, &format!("read {CURRENT}"), &e)),
    };
    remove_leftovers(dir, &current)?;
    Ok(OpenDir {
        current,
        _lock: lock,
    })
}

/// Removes every `db-*` directory but `current` and every `*.tmp` file.
fn remove_leftovers(dir: &Path, current: &str) -> Result<()> {
    let entries = fs::read_dir(dir).map_err(|e| io_error(dir, "list the directory", &e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, "list the directory", &e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let removed = if name.starts_with(DB_PREFIX) && name != current {
            tracing::info!(dir = %text(dir), database = %name, "Removing a database no checkpoint names (a compaction was interrupted).");
            fs::remove_dir_all(&path)
        } else if name.ends_with(".tmp") {
            fs::remove_file(&path)
        } else {
            continue;
        };
        removed.map_err(|e| io_error(dir, &format!("remove the leftover {name}"), &e))?;
    }
    Ok(())
}

/// Removes the snapshot files sled 0.34 was still writing when its process died
/// (`snap.<lsn>.generating`) from the database directory `db_dir`. sled counts them among
/// its snapshots and reads the newest, so a kill during a snapshot write left a database it
/// refuses to open ("empty/corrupt snapshot file found", then `Corruption { at: None }`:
/// spacejam/sled#1527; seen once in rivulet's crash tests). A `.generating` file is never
/// needed: sled renames it only after it is complete, and removes the older snapshot only
/// after that rename, so the older snapshot and the log still hold every write. Called only
/// under the directory's lock, before sled opens the database.
pub(crate) fn remove_unfinished_snapshots(db_dir: &Path) -> std::io::Result<usize> {
    let entries = match fs::read_dir(db_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Makes `name` the live database: `CURRENT.tmp` written and synced, renamed over `CURRENT`,
/// the directory synced. A kill before the rename leaves the old database live, after it
/// the new one; never neither.
pub(crate) fn switch_current(dir: &Path, name: &str) -> Result<()> {
    replace_file(dir, CURRENT, &format!("{name}\n"), true)
}

/// Records `batch_ms` as the last batch whose metadata checkpoint is durable. Replaced by
/// rename but not synced: it survives a killed process (the kernel has it), and a power loss
/// that loses it only makes a later rollback go unreported, never reported falsely.
pub(crate) fn write_progress(dir: &Path, batch_ms: i64) -> Result<()> {
    replace_file(dir, PROGRESS, &format!("{batch_ms}\n"), false)
}

/// The batch [`write_progress`] last recorded, if any (an unreadable file counts as none).
pub(crate) fn read_progress(dir: &Path) -> Option<i64> {
    fs::read_to_string(dir.join(PROGRESS))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// The bytes of every file under `path` (apparent sizes, recursively): what the checkpoint
/// directory takes on disk.
pub(crate) fn size_of(path: &Path) -> std::io::Result<u64> {
    let meta = fs::symlink_metadata(path)?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in fs::read_dir(path)? {
        match size_of(&entry?.path()) {
            Ok(n) => total += n,
            // A file sled removed while we listed.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

/// Deletes the checkpoint directory `dir` (to start over): only a rivulet checkpoint (of any
/// layout) or an empty directory, and only while no process holds it. Returns whether there
/// was a directory to delete.
///
/// # Errors
/// [`CheckpointError::NotACheckpoint`] for a directory that holds anything else (nothing is
/// deleted); [`CheckpointError::Locked`] naming the process that holds it;
/// [`CheckpointError::Storage`] when it cannot be deleted.
pub(crate) fn remove_checkpoint_dir(dir: &Path) -> Result<bool> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_error(dir, "inspect the directory", &e)),
        Ok(meta) if !meta.is_dir() => {
            return Err(CheckpointError::NotACheckpoint {
                dir: text(dir),
                reason: "it is not a directory".into(),
            }
            .into())
        }
        Ok(_) => {}
    }
    if let Kind::Foreign(names) = classify(dir)? {
        return Err(CheckpointError::NotACheckpoint {
            dir: text(dir),
            reason: format!(
                "it holds {} and no {IDENTITY} file; nothing was deleted",
                names.join(", ")
            ),
        }
        .into());
    }
    // Held while deleting, so that no process opens it half deleted.
    let _lock = lock(dir)?;
    fs::remove_dir_all(dir).map_err(|e| io_error(dir, "delete the directory", &e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_gets_its_files_and_a_second_opener_is_refused_by_pid() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        let opened = open(&dir).unwrap();
        assert_eq!(opened.current, "db-000001");
        assert!(dir.join(IDENTITY).is_file() && dir.join(CURRENT).is_file());
        let err = open(&dir).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("stop that"),
            "{err}"
        );
        assert!(!err.contains("delete the directory to"), "{err}");
        drop(opened);
        assert_eq!(open(&dir).unwrap().current, "db-000001");
    }

    #[test]
    fn foreign_and_old_directories_are_refused_and_never_deleted() {
        let root = tempfile::tempdir().unwrap();
        fs::write(root.path().join("notes.txt"), b"mine").unwrap();
        let err = open(root.path()).unwrap_err().to_string();
        assert!(
            err.contains("not a rivulet checkpoint") && err.contains("notes.txt"),
            "{err}"
        );
        let err = remove_checkpoint_dir(root.path()).unwrap_err().to_string();
        assert!(err.contains("nothing was deleted"), "{err}");
        assert!(root.path().join("notes.txt").is_file());
        assert!(!root.path().join(LOCK).exists(), "nothing written into it");

        let old = tempfile::tempdir().unwrap();
        fs::write(old.path().join("conf"), b"segment_size: 524288\n").unwrap();
        fs::write(old.path().join("db"), b"").unwrap();
        let err = open(old.path()).unwrap_err().to_string();
        assert!(
            err.contains("layout 1") && err.contains("layout 2"),
            "{err}"
        );
        assert!(remove_checkpoint_dir(old.path()).unwrap());
        assert!(!old.path().exists());
    }

    #[test]
    fn leftovers_of_an_interrupted_switch_are_removed_and_current_wins() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        drop(open(&dir).unwrap());
        // A kill after the new database was written but before CURRENT was replaced ...
        fs::create_dir(dir.join("db-000002")).unwrap();
        fs::write(dir.join("CURRENT.tmp"), b"db-000002\n").unwrap();
        let opened = open(&dir).unwrap();
        assert_eq!(opened.current, "db-000001");
        assert!(!dir.join("db-000002").exists() && !dir.join("CURRENT.tmp").exists());
        // ... and after: the new one is live, the old one goes.
        fs::create_dir(dir.join("db-000002")).unwrap();
        switch_current(&dir, "db-000002").unwrap();
        drop(opened);
        let opened = open(&dir).unwrap();
        assert_eq!(opened.current, "db-000002");
        assert!(!dir.join("db-000001").exists());
        assert_eq!(next_db_name(&opened.current), "db-000003");
    }

    #[test]
    fn a_held_directory_is_not_deleted() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        let opened = open(&dir).unwrap();
        let err = remove_checkpoint_dir(&dir).unwrap_err().to_string();
        assert!(err.contains("in use"), "{err}");
        assert!(dir.join(IDENTITY).is_file());
        drop(opened);
        assert!(remove_checkpoint_dir(&dir).unwrap());
        assert!(!remove_checkpoint_dir(&dir).unwrap(), "already gone");
    }

    #[test]
    fn progress_round_trips() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read_progress(root.path()), None);
        write_progress(root.path(), 1500).unwrap();
        write_progress(root.path(), 2000).unwrap();
        assert_eq!(read_progress(root.path()), Some(2000));
    }
}
