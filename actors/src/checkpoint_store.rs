//! [`SledCheckpointStore`]: checkpoints in one sled (0.34) database per checkpoint
//! directory, one tree per [`Tree`] (DESIGN, "Persistence").
//!
//! sled makes writes durable every 500 ms on its own; a checkpoint is complete only after
//! [`flush`](CheckpointStore::flush) returned, which the protocol (data, flush, metadata,
//! flush, purge) relies on. `../shared/experiments/sled-kill/` measured this under SIGKILL.

use std::fmt;
use std::path::{Path, PathBuf};

use rivulet_framework::checkpoint::{key_text, CheckpointStore, Tree};
use rivulet_framework::{CheckpointError, Error, Result};

/// A checkpoint directory backed by sled.
pub struct SledCheckpointStore {
    dir: PathBuf,
    db: sled::Db,
    meta: sled::Tree,
    state: sled::Tree,
    wal: sled::Tree,
}

impl SledCheckpointStore {
    /// Opens (or creates) the checkpoint database in `dir`.
    ///
    /// # Errors
    /// [`CheckpointError::Storage`] naming `dir` when it cannot be created or opened (not
    /// writable, on a full disk, or held by another running program).
    pub fn open(dir: impl AsRef<Path>) -> Result<SledCheckpointStore> {
        let dir = dir.as_ref().to_path_buf();
        let fail = |action: &str, e: &dyn fmt::Display| -> Error {
            CheckpointError::Storage {
                dir: dir.display().to_string(),
                action: action.to_string(),
                message: e.to_string(),
            }
            .into()
        };
        std::fs::create_dir_all(&dir).map_err(|e| fail("create the directory", &e))?;
        let db = sled::Config::new()
            .path(&dir)
            .open()
            .map_err(|e| fail("open the sled database", &e))?;
        let tree = |t: Tree| {
            db.open_tree(t.name())
                .map_err(|e| fail(&format!("open tree {}", t.name()), &e))
        };
        Ok(SledCheckpointStore {
            meta: tree(Tree::Meta)?,
            state: tree(Tree::State)?,
            wal: tree(Tree::Wal)?,
            db,
            dir,
        })
    }

    /// The checkpoint directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The database's size on disk, in bytes (sled grows after unclean stops and compacts
    /// as it goes; watched by tests and benches).
    ///
    /// # Errors
    /// [`CheckpointError::Storage`] when sled cannot tell.
    pub fn size_on_disk(&self) -> Result<u64> {
        self.db
            .size_on_disk()
            .map_err(|e| self.error("measure the database", e))
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        match tree {
            Tree::Meta => &self.meta,
            Tree::State => &self.state,
            Tree::Wal => &self.wal,
        }
    }

    fn error(&self, action: impl Into<String>, e: sled::Error) -> Error {
        CheckpointError::Storage {
            dir: self.dir.display().to_string(),
            action: action.into(),
            message: e.to_string(),
        }
        .into()
    }
}

impl fmt::Debug for SledCheckpointStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledCheckpointStore")
            .field("dir", &self.dir)
            .finish()
    }
}

impl CheckpointStore for SledCheckpointStore {
    fn location(&self) -> String {
        self.dir.display().to_string()
    }
    fn put(&self, tree: Tree, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree(tree)
            .insert(key, value)
            .map(|_| ())
            .map_err(|e| self.error(format!("write {}", key_text(tree, key)), e))
    }
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.tree(tree)
            .get(key)
            .map(|v| v.map(|v| v.to_vec()))
            .map_err(|e| self.error(format!("read {}", key_text(tree, key)), e))
    }
    fn remove(&self, tree: Tree, key: &[u8]) -> Result<()> {
        self.tree(tree)
            .remove(key)
            .map(|_| ())
            .map_err(|e| self.error(format!("remove {}", key_text(tree, key)), e))
    }
    fn keys(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        self.tree(tree)
            .scan_prefix(prefix)
            .keys()
            .map(|k| k.map(|k| k.to_vec()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| self.error(format!("list {}", key_text(tree, prefix)), e))
    }
    fn flush(&self) -> Result<()> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| self.error("flush", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rivulet_framework::checkpoint::{data_key, decode, encode, meta_key};

    #[test]
    fn values_survive_reopening_and_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledCheckpointStore::open(dir.path()).unwrap();
            store
                .put(
                    Tree::State,
                    &data_key(3, 1000, 0),
                    &encode(&vec![1u64, 2]).unwrap(),
                )
                .unwrap();
            store
                .put(Tree::State, &data_key(3, 1000, 1), b"RVCK torn")
                .unwrap();
            store.put(Tree::Meta, &meta_key(1000), b"m").unwrap();
            store.flush().unwrap();
        }
        let store = SledCheckpointStore::open(dir.path()).unwrap();
        let key = data_key(3, 1000, 0);
        let bytes = store.get(Tree::State, &key).unwrap().unwrap();
        let loc = store.location();
        assert_eq!(decode::<Vec<u64>>(&bytes, &loc, "k").unwrap(), vec![1, 2]);
        let torn = store
            .get(Tree::State, &data_key(3, 1000, 1))
            .unwrap()
            .unwrap();
        let err = decode::<Vec<u64>>(&torn, &loc, &key_text(Tree::State, &data_key(3, 1000, 1)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&loc) && err.contains("state/0000000003/"),
            "{err}"
        );
        assert_eq!(
            store.keys(Tree::Meta, b"meta/").unwrap(),
            vec![meta_key(1000)]
        );
        store.remove(Tree::Meta, &meta_key(1000)).unwrap();
        assert!(store.keys(Tree::Meta, b"").unwrap().is_empty());
        assert!(store.size_on_disk().unwrap() > 0);
    }

    #[test]
    fn an_unusable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let err = SledCheckpointStore::open(&file).unwrap_err().to_string();
        assert!(err.contains("not-a-dir") && err.contains("cannot"), "{err}");
    }
}
