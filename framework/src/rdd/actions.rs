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
    /// `dir/part-NNNNN`, then an empty `dir/_SUCCESS` (Spark: `RDD.saveAsTextFile`). Each part
    /// file is written to a temporary name and renamed, so a retried task never leaves a
    /// half-written part behind.
    ///
    /// # Errors
    /// [`Error::Io`] naming the path if a directory or file cannot be written; as
    /// [`run_job`](Rdd::run_job) otherwise.
    #[track_caller]
    pub fn save_as_text_file(&self, dir: impl AsRef<Path>) -> Result<()>
    where
        T: Display,
    {
        self.save_as_text_file_op(OpInfo::caller("save_as_text_file"), dir.as_ref())
    }

    pub(crate) fn save_as_text_file_op(&self, op: OpInfo, dir: &Path) -> Result<()>
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
