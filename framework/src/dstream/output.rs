//! Output operations (Spark: `ForEachDStream` and the outputs built on it). Each registers
//! a job per batch; jobs run in batch order, one at a time, on a thread that may block.
//! Everything here is a thin layer over [`DStream::foreach_rdd`].

use std::fmt::{Debug, Display};
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::data::Data;
use crate::dstream::{DStream, OutputJob};
use crate::error::{BoxError, Error, OpInfo};
use crate::rdd::{Existing, PartitionIter, Rdd};
use crate::time::Time;

impl<T: Data> DStream<T> {
    /// Runs `f` on each batch's RDD and time, on the job thread, in batch order (Spark:
    /// `foreachRDD`). `f` may run RDD actions (`collect`, `foreach_partition`, ...) and
    /// block. An `Err` or a panic fails this output for the batch (reported to listeners and
    /// `await_termination`); later batches still run.
    ///
    /// # Examples
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let counts = Arc::new(Mutex::new(Vec::new()));
    /// let sink = counts.clone();
    /// run_batches(vec![vec!['a', 'b'], vec![], vec!['c']], |s| {
    ///     s.foreach_rdd(move |rdd, t| {
    ///         sink.lock().unwrap().push((t.as_ms(), rdd.count()?)); // an action: may block
    ///         Ok(())
    ///     });
    ///     s
    /// });
    /// assert_eq!(*counts.lock().unwrap(), vec![(1000, 2), (2000, 0), (3000, 1)]);
    /// ```
    #[track_caller]
    pub fn foreach_rdd(
        &self,
        f: impl Fn(&Rdd<T>, Time) -> Result<(), BoxError> + Send + Sync + 'static,
    ) {
        self.foreach_rdd_op(OpInfo::caller("foreach_rdd"), f)
    }

    /// [`foreach_rdd`](DStream::foreach_rdd) named after a caller's operator (for output
    /// operations built on it in other crates, e.g. the runtime's actor sinks).
    pub fn foreach_rdd_op(
        &self,
        op: OpInfo,
        f: impl Fn(&Rdd<T>, Time) -> Result<(), BoxError> + Send + Sync + 'static,
    ) {
        let stream = self.clone();
        let f = Arc::new(f);
        self.graph().add_output(op, self.node(), move |t| {
            let Some(rdd) = stream.get_or_compute(t)? else {
                return Ok(None);
            };
            let f = f.clone();
            let base = rdd.as_base();
            let job = OutputJob::new(t, op, move || {
                f(&rdd, t).map_err(|e| match e.downcast::<Error>() {
                    Ok(inner) => *inner,
                    Err(e) => Error::Output {
                        batch_time: t,
                        operator: op.to_string(),
                        message: e.to_string(),
                    },
                })
            });
            Ok(Some(job.with_rdd(base)))
        });
    }

    /// Collects each batch and hands it to `f` with the batch time, on the job thread, in
    /// batch order. **Shapes:** per batch, `f(time, all records in partition order)`.
    ///
    /// # Examples
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let seen = Arc::new(Mutex::new(Vec::new()));
    /// let sink = seen.clone();
    /// run_batches(vec![vec![1, 2], vec![]], |s| {
    ///     s.foreach_batch(move |t, records| sink.lock().unwrap().push((t.as_ms(), records)));
    ///     s
    /// });
    /// assert_eq!(*seen.lock().unwrap(), vec![(1000, vec![1, 2]), (2000, vec![])]);
    /// ```
    #[track_caller]
    pub fn foreach_batch(&self, f: impl Fn(Time, Vec<T>) + Send + Sync + 'static) {
        self.foreach_rdd_op(OpInfo::caller("foreach_batch"), move |rdd, t| {
            f(t, rdd.collect()?);
            Ok(())
        })
    }

    /// Runs `f` on each partition of each batch, inside executor tasks (Spark:
    /// `foreachRDD(_.foreachPartition(..))`); an `Err` fails the task, which is retried.
    ///
    /// # Examples
    /// [`run_batches`](crate::testing::run_batches) cuts each batch into 2 partitions:
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use rivulet_framework::testing::run_batches;
    ///
    /// let sizes = Arc::new(Mutex::new(Vec::new()));
    /// let sink = sizes.clone();
    /// run_batches(vec![vec![1, 2, 3]], |s| {
    ///     s.foreach_partition(move |p, records| {
    ///         sink.lock().unwrap().push((p, records.count()));
    ///         Ok(())
    ///     });
    ///     s
    /// });
    /// let mut sizes = sizes.lock().unwrap().clone();
    /// sizes.sort(); // tasks may run in any order
    /// assert_eq!(sizes, vec![(0, 1), (1, 2)]);
    /// ```
    #[track_caller]
    pub fn foreach_partition(
        &self,
        f: impl Fn(usize, PartitionIter<T>) -> Result<(), BoxError> + Send + Sync + 'static,
    ) {
        let op = OpInfo::caller("foreach_partition");
        let f = Arc::new(f);
        self.foreach_rdd_op(op, move |rdd, _| {
            let f = f.clone();
            rdd.foreach_partition_op(op, move |p, it| f(p, it))?;
            Ok(())
        })
    }

    /// Prints the first `n` records of each batch to stdout, as Spark's `DStream.print`:
    /// a header with the batch time, one record per line (`Debug`), and `...` when the batch
    /// holds more.
    ///
    /// # Examples
    /// ```
    /// use rivulet_framework::testing::run_batches;
    ///
    /// run_batches(vec![vec![1, 2, 3]], |s| {
    ///     s.print(2);
    ///     s
    /// });
    /// ```
    /// prints
    /// ```text
    /// -------------------------------------------
    /// Time: 1000 ms
    /// -------------------------------------------
    /// 1
    /// 2
    /// ...
    /// ```
    #[track_caller]
    pub fn print(&self, n: usize)
    where
        T: Debug,
    {
        self.foreach_rdd_op(OpInfo::caller("print"), move |rdd, t| {
            let first = rdd.take(n + 1)?;
            let mut out = format!("-------------------------------------------\nTime: {t}\n-------------------------------------------\n");
            for record in first.iter().take(n) {
                out.push_str(&format!("{record:?}\n"));
            }
            if first.len() > n {
                out.push_str("...\n");
            }
            println!("{out}");
            Ok(())
        })
    }

    /// Writes each batch as text files in the directory `{prefix}-{time_ms}` (or
    /// `{prefix}-{time_ms}.{suffix}` when `suffix` is not empty), one `part-NNNNN` file per
    /// partition, one record per line (`Display`), written by executor tasks, then an empty
    /// `_SUCCESS` (Spark: `saveAsTextFiles`).
    ///
    /// Each batch's directory appears whole or not at all: it is written under a hidden
    /// temporary sibling name (`.<name>.tmp-<pid>`; readers skip hidden names) and renamed
    /// into place. If the directory already exists (the batch ran again, e.g. after a
    /// restart), it is replaced, so exactly one copy remains.
    ///
    /// Two runs never mix: a context that did not restart from a checkpoint refuses a prefix
    /// under which batch directories (`{prefix}-*`) already exist, so use one prefix per run
    /// or clear it first (the examples' `--out DIR --overwrite`). A context restarted with
    /// `StreamingContext::get_or_create` continues its own run: its batches are written next
    /// to (or over) the earlier ones.
    ///
    /// # Errors
    /// A batch fails with [`Error::Io`] naming the path when a
    /// directory or file cannot be written or renamed (the temporary directory is removed),
    /// with [`Error::Output`] naming the directory when it holds batches of an earlier run,
    /// and as [`Rdd::run_job`] when computing the batch fails.
    ///
    /// # Examples
    /// ```
    /// use std::fs;
    /// use rivulet_framework::testing::run_batches;
    ///
    /// # fn main() -> std::io::Result<()> {
    /// let dir = std::env::temp_dir().join(format!("rivulet-doc-save-{}", std::process::id()));
    /// run_batches(vec![vec![1, 2, 3]], |s| {
    ///     s.save_as_text_files(dir.join("numbers"), "txt");
    ///     s
    /// });
    /// let batch = dir.join("numbers-1000.txt"); // the batch at 1 s, in 2 partitions
    /// assert_eq!(fs::read_to_string(batch.join("part-00000"))?, "1\n");
    /// assert_eq!(fs::read_to_string(batch.join("part-00001"))?, "2\n3\n");
    /// assert!(batch.join("_SUCCESS").exists());
    /// fs::remove_dir_all(&dir)?;
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn save_as_text_files(&self, prefix: impl Into<PathBuf>, suffix: &str)
    where
        T: Display,
    {
        let op = OpInfo::caller("save_as_text_files");
        let prefix: PathBuf = prefix.into();
        let suffix = suffix.to_string();
        let graph = self.graph().clone();
        let checked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        self.foreach_rdd_op(op, move |rdd, t| {
            if graph.restored().is_none() && !checked.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(earlier) = earlier_batch(&prefix)? {
                    return Err(Box::new(Error::Output {
                        batch_time: t,
                        operator: op.to_string(),
                        message: format!(
                            "{} already holds {earlier}, a batch of an earlier run: use another prefix or remove it (runs are never mixed)",
                            prefix.parent().unwrap_or(std::path::Path::new(".")).display()
                        ),
                    }));
                }
                checked.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            let mut name = prefix
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            name.push_str(&format!("-{}", t.as_ms()));
            if !suffix.is_empty() {
                name.push('.');
                name.push_str(&suffix);
            }
            rdd.save_as_text_file_op(op, &prefix.with_file_name(name), Existing::Replace)?;
            Ok(())
        })
    }

    /// Collects every batch into a [`BatchCollector`]: one entry per batch time of this
    /// stream, empty batches included, in batch order. The testing output (Spark's
    /// `TestOutputStream`).
    ///
    /// # Examples
    /// A graph run by hand, as [`run_batches`](crate::testing::run_batches) does:
    /// ```
    /// use rivulet_framework::dstream::DStreamGraph;
    /// use rivulet_framework::testing::{local_context, BATCH};
    /// use rivulet_framework::time::Time;
    ///
    /// # fn main() -> rivulet_framework::Result<()> {
    /// let graph = DStreamGraph::new(BATCH, local_context(2), 1000, None);
    /// let out = graph.queue_stream(vec![vec![1, 2], vec![3]]).collect_batches();
    /// graph.start(Time::ZERO)?;
    /// for t in [Time::from_ms(1000), Time::from_ms(2000)] {
    ///     for job in graph.generate_jobs(t) {
    ///         job.run()?;
    ///     }
    /// }
    /// assert_eq!(out.batches(), vec![vec![1, 2], vec![3]]);
    /// assert_eq!(out.timed_batches()[1], (Time::from_ms(2000), vec![3]));
    /// # Ok(())
    /// # }
    /// ```
    #[track_caller]
    pub fn collect_batches(&self) -> BatchCollector<T> {
        let collector = BatchCollector {
            batches: Arc::new(Mutex::new(Vec::new())),
        };
        let sink = collector.batches.clone();
        self.foreach_rdd_op(OpInfo::caller("collect_batches"), move |rdd, t| {
            let records = rdd.collect()?;
            sink.lock().push((t, records));
            Ok(())
        });
        collector
    }
}

type TimedBatches<T> = Arc<Mutex<Vec<(Time, Vec<T>)>>>;

/// The batches a stream produced, as collected by [`DStream::collect_batches`].
#[derive(Debug)]
pub struct BatchCollector<T> {
    batches: TimedBatches<T>,
}

impl<T> Clone for BatchCollector<T> {
    fn clone(&self) -> Self {
        BatchCollector {
            batches: self.batches.clone(),
        }
    }
}

impl<T: Clone> BatchCollector<T> {
    /// The records of each batch so far, in batch order.
    pub fn batches(&self) -> Vec<Vec<T>> {
        self.batches.lock().iter().map(|(_, b)| b.clone()).collect()
    }

    /// Each batch so far with its time, in batch order.
    pub fn timed_batches(&self) -> Vec<(Time, Vec<T>)> {
        self.batches.lock().clone()
    }

    /// How many batches were collected.
    pub fn len(&self) -> usize {
        self.batches.lock().len()
    }

    /// Whether no batch was collected yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All records of all batches so far, in order.
    pub fn records(&self) -> Vec<T> {
        self.batches
            .lock()
            .iter()
            .flat_map(|(_, b)| b.iter().cloned())
            .collect()
    }
}

/// The name of a batch directory of `prefix` (`{prefix}-*`, not hidden) that already exists.
///
/// # Errors
/// [`Error::Io`] naming the directory when it exists but cannot be listed.
fn earlier_batch(prefix: &std::path::Path) -> crate::Result<Option<String>> {
    let parent = match prefix.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => std::path::Path::new("."),
    };
    let Some(name) = prefix
        .file_name()
        .map(|n| format!("{}-", n.to_string_lossy()))
    else {
        return Ok(None);
    };
    let entries = match std::fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("listing {}", parent.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", parent.display()), e))?;
        let entry = entry.file_name().to_string_lossy().into_owned();
        if entry.starts_with(&name) {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}
