//! Actions: run a job and bring results to the caller (Spark: `RDD.collect`, `count`, ...).
//!
//! Actions block the calling thread until the job finishes. Call them from output
//! operations (`foreach_rdd`, `foreach_batch`) or plain threads, never from inside
//! `transform` (which runs while the batch's jobs are generated) nor on an actor thread.

use std::collections::HashMap;
use std::fmt::Display;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::data::{Data, Key};
use crate::error::{BoxError, Error, OpInfo, Result};
use crate::rdd::{PartitionIter, Rdd};
use crate::scheduler::{ensure_can_block, JobSpec, TaskOutput};

impl<T: Data> Rdd<T> {
    /// Runs `f` on every partition (in executor tasks) and returns its results in partition
    /// order. The building block of every action (Spark: `SparkContext.runJob`).
    ///
    /// # Errors
    /// [`Error::Task`] if a task failed on every attempt (a panic or error in `f` or in any
    /// operator of the lineage), [`Error::BlockingAction`] inside `transform`,
    /// [`Error::NotRunning`] without a running context.
    pub fn run_job<R: Send + 'static>(
        &self,
        op: OpInfo,
        f: impl Fn(usize, PartitionIter<T>) -> Result<R> + Send + Sync + 'static,
    ) -> Result<Vec<R>> {
        ensure_can_block(op.name)?;
        let rdd = self.clone();
        let func = Arc::new(
            move |p: usize, ctx: &crate::scheduler::TaskContext| -> Result<TaskOutput> {
                let records = rdd.iterator(p, ctx)?;
                Ok(Box::new(f(p, records)?))
            },
        );
        let job = JobSpec {
            rdd: self.as_base(),
            func,
            op,
            batch_time: self.id().batch_time(),
            output_op: crate::scheduler::current_output_op(),
        };
        let outputs = self.context().runner()?.run_job(job)?;
        outputs
            .into_iter()
            .map(|o| {
                o.downcast::<R>().map(|r| *r).map_err(|_| {
                    Error::Internal(format!("{op}: a task returned another type than expected"))
                })
            })
            .collect()
    }

    /// All records, partition by partition (Spark: `RDD.collect`).
    ///
    /// # Errors
    /// As [`run_job`](Rdd::run_job).
    #[track_caller]
    pub fn collect(&self) -> Result<Vec<T>> {
        let parts = self.run_job(OpInfo::caller("collect"), |_, records| {
            Ok(records.collect::<Vec<T>>())
        })?;
        Ok(parts.into_iter().flatten().collect())
    }

    /// How many records (Spark: `RDD.count`).
    ///
    /// # Errors
    /// As [`run_job`](Rdd::run_job).
    #[track_caller]
    pub fn count(&self) -> Result<u64> {
        let parts = self.run_job(OpInfo::caller("count"), |_, records| {
            Ok(records.count() as u64)
        })?;
        Ok(parts.into_iter().sum())
    }

    /// The first `n` records in partition order (Spark: `RDD.take`, here in one job).
    ///
    /// # Errors
    /// As [`run_job`](Rdd::run_job).
    #[track_caller]
    pub fn take(&self, n: usize) -> Result<Vec<T>> {
        let parts = self.run_job(OpInfo::caller("take"), move |_, records| {
            Ok(records.take(n).collect::<Vec<T>>())
        })?;
        Ok(parts.into_iter().flatten().take(n).collect())
    }

    /// Folds all records with an associative, commutative `f`; `None` if there are none
    /// (Spark: `RDD.reduce`, which throws on empty RDDs).
    ///
    /// # Errors
    /// As [`run_job`](Rdd::run_job).
    #[track_caller]
    pub fn reduce(&self, f: impl Fn(T, T) -> T + Send + Sync + 'static) -> Result<Option<T>> {
        let f = Arc::new(f);
        let g = f.clone();
        let parts = self.run_job(OpInfo::caller("reduce"), move |_, records| {
            Ok(records.reduce(|a, b| g(a, b)))
        })?;
        Ok(parts.into_iter().flatten().reduce(|a, b| f(a, b)))
    }

    /// Runs `f` on each partition's records inside executor tasks (Spark:
    /// `RDD.foreachPartition`). `f` gets the partition index and its records; an `Err` fails
    /// the task, which is retried.
    ///
    /// # Errors
    /// As [`run_job`](Rdd::run_job).
    #[track_caller]
    pub fn foreach_partition(
        &self,
        f: impl Fn(usize, PartitionIter<T>) -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Result<()> {
        self.foreach_partition_op(OpInfo::caller("foreach_partition"), f)
    }

    pub(crate) fn foreach_partition_op(
        &self,
        op: OpInfo,
        f: impl Fn(usize, PartitionIter<T>) -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Result<()> {
        self.run_job(op, move |p, records| {
            f(p, records).map_err(|e| Error::User(e.to_string()))
        })?;
        Ok(())
    }

    /// Writes each partition as text, one record per line (its `Display`), to
    /// `dir/part-NNNNN`, then an empty `dir/_SUCCESS` (Spark: `RDD.saveAsTextFile`).
    ///
    /// The directory appears whole or not at all: it is written under a hidden temporary
    /// sibling name (`.<name>.tmp-<pid>`, which readers of the parent skip) and renamed into
    /// place once every part and `_SUCCESS` are written. Like Spark, it refuses a `dir` that
    /// already exists.
    ///
    /// # Errors
    /// [`Error::Io`] naming the path if `dir` already exists or a directory or file cannot be
    /// written (the temporary directory is removed); as [`run_job`](Rdd::run_job) otherwise.
    #[track_caller]
    pub fn save_as_text_file(&self, dir: impl AsRef<Path>) -> Result<()>
    where
        T: Display,
    {
        let op = OpInfo::caller("save_as_text_file");
        self.save_as_text_file_op(op, dir.as_ref(), Existing::Refuse)
    }

    /// [`save_as_text_file`](Rdd::save_as_text_file), with what to do when `dir` exists.
    pub(crate) fn save_as_text_file_op(
        &self,
        op: OpInfo,
        dir: &Path,
        existing: Existing,
    ) -> Result<()>
    where
        T: Display,
    {
        let (parent, name) = match (dir.parent(), dir.file_name()) {
            (Some(parent), Some(name)) => (parent, name.to_string_lossy()),
            _ => {
                let e = std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file name");
                return Err(Error::io(format!("writing {}", dir.display()), e));
            }
        };
        if existing == Existing::Refuse && dir.exists() {
            let e = std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already exists");
            return Err(Error::io(format!("writing {}", dir.display()), e));
        }
        let pid = std::process::id();
        let tmp = parent.join(format!(".{name}.tmp-{pid}"));
        // A leftover of an earlier attempt of this process (a failed or retried job).
        remove_dir_if_exists(&tmp)?;
        let written = self.write_text_parts(op, &tmp).and_then(|()| {
            let aside = parent.join(format!(".{name}.old-{pid}"));
            replace_dir(&tmp, dir, &aside)
        });
        if written.is_err() {
            // Best effort: the write's error is the one to report.
            let _ = fs::remove_dir_all(&tmp);
        }
        written
    }

    /// Writes every partition's part file and `_SUCCESS` into `dir`, created first.
    fn write_text_parts(&self, op: OpInfo, dir: &Path) -> Result<()>
    where
        T: Display,
    {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating directory {}", dir.display()), e))?;
        let out: PathBuf = dir.to_path_buf();
        self.foreach_partition_op(op, move |p, records| {
            let part = out.join(format!("part-{p:05}"));
            let tmp = out.join(format!(".part-{p:05}.tmp"));
            let write = || -> std::io::Result<()> {
                let mut w = BufWriter::new(fs::File::create(&tmp)?);
                for record in records {
                    writeln!(w, "{record}")?;
                }
                w.into_inner().map_err(|e| e.into_error())?.sync_all()?;
                fs::rename(&tmp, &part)
            };
            write().map_err(|e| format!("writing {}: {e}", part.display()).into())
        })?;
        let success = dir.join("_SUCCESS");
        fs::write(&success, b"").map_err(|e| Error::io(format!("writing {}", success.display()), e))
    }
}

/// What [`Rdd::save_as_text_file_op`] does when its directory already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Fail (an RDD saved by the user: Spark refuses an existing output directory).
    Refuse,
    /// Replace it, so exactly one copy remains (a streaming batch run again after a restart).
    Replace,
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", dir.display()), e))
        }
        _ => Ok(()),
    }
}

/// Renames the complete directory `tmp` to `dir`. An existing `dir` is first renamed to
/// `aside` (a directory cannot be renamed over a non-empty one), then removed; if the final
/// rename fails, it is put back.
fn replace_dir(tmp: &Path, dir: &Path, aside: &Path) -> Result<()> {
    let had_old = dir.exists();
    if had_old {
        remove_dir_if_exists(aside)?;
        fs::rename(dir, aside).map_err(|e| {
            Error::io(
                format!("moving {} aside to {}", dir.display(), aside.display()),
                e,
            )
        })?;
    }
    if let Err(e) = fs::rename(tmp, dir) {
        if had_old {
            // Best effort: keep the old copy rather than none.
            let _ = fs::rename(aside, dir);
        }
        return Err(Error::io(
            format!("renaming {} to {}", tmp.display(), dir.display()),
            e,
        ));
    }
    if had_old {
        remove_dir_if_exists(aside)?;
    }
    sync_parent(dir)
}

/// Makes the rename durable: on Unix a directory entry is durable once its parent is synced.
fn sync_parent(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    if let Some(parent) = dir.parent() {
        let parent = if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        };
        fs::File::open(parent)
            .and_then(|f| f.sync_all())
            .map_err(|e| Error::io(format!("syncing directory {}", parent.display()), e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

impl<T: Key> Rdd<T> {
    /// How often each distinct record occurs (Spark: `RDD.countByValue`), counted by a
    /// shuffle with map-side combine.
    ///
    /// # Errors
    /// As [`run_job`](Rdd::run_job).
    #[track_caller]
    pub fn count_by_value(&self) -> Result<HashMap<T, u64>> {
        let op = OpInfo::caller("count_by_value");
        let counts = self.map_op(op, |x| (x, 1u64)).reduce_by_key_op(
            op,
            |a, b| a + b,
            crate::partitioner::HashPartitioner::new(self.context().default_parallelism()),
        );
        Ok(counts.collect()?.into_iter().collect())
    }
}
