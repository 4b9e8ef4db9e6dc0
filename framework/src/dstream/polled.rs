//! Input streams polled once per batch, without a receiver (Spark: `InputDStream` subclasses
//! such as `FileInputDStream`): as batch `t` is cut, the source names the new inputs of the
//! batch (its *splits*, e.g. file names); tasks read one split per partition. The splits of
//! every batch that a restart may have to recompute are saved in the metadata checkpoint, so
//! each input is read into exactly one batch, across executor losses and restarts.
//!
//! What a polled input read and lost is reported per batch, in the order of these steps:
//!
//! 1. As batch `t` is cut, [`PolledSource::poll`] names its splits and the entries it
//!    already knows it cannot read ([`NewSplits::skipped`]).
//! 2. Each task reads one split ([`PolledSource::read`]). A split that cannot be read for a
//!    reason a retry will not change ([`ReadError::Unreadable`]: gone, not a regular file,
//!    permission denied) is handled by the source's [`UnreadablePolicy`]: `Skip` makes the
//!    partition empty, records the split and the reason and logs one WARN for it; `Fail`
//!    fails the task with [`Error::InputFailed`], which is not retried. Other errors fail
//!    the task, which is retried as any task.
//! 3. When the batch's jobs ran, a batch that failed under `Fail` gets no metadata
//!    checkpoint ([`DStreamGraph::input_failed`]), so a restart reads its splits again.
//! 4. When the batch completes, the runtime takes the batch's [`PolledInputInfo`] (records
//!    read, splits skipped with reasons, the failure) from
//!    [`DStreamGraph::take_input_reports`] and sends it to listeners; a failure under
//!    `Fail` stops the context with its error.
//!
//! A split read again (a task retried, a partition recomputed after an executor loss or
//! by a window) is counted and reported once: records are kept per partition, and skipped
//! splits are remembered per batch as long as the batch may be recomputed. A restart that
//! recomputes a batch reports it again (a new process, a new report).

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::checkpoint::{decode, encode};
use crate::data::Data;
use crate::dstream::batch_input::InputReads;
use crate::dstream::graph::RestorableInput;
use crate::dstream::{DStream, DStreamGraph, DStreamId};
use crate::error::{Error, OpInfo, Result};
use crate::listener::{PolledInputInfo, SkippedSplit};
use crate::rdd::{PartitionIter, Rdd, RddBase, RddImpl, RddMeta};
use crate::scheduler::TaskContext;
use crate::time::Time;

/// What a polled input does with a split it cannot read (a file that vanished between the
/// listing and the read, a directory, a FIFO, a dangling symlink, a permission error).
/// Either way the split is reported: its description and the reason, in the batch's
/// [`PolledInputInfo`] and in one WARN.
///
/// Parsed from (and displayed as) `skip` or `fail`. Spark's `FileInputDStream` has no such
/// choice: a file that cannot be read fails the batch's job after the task retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnreadablePolicy {
    /// Read nothing from it (its partition is empty), report it and go on.
    #[default]
    Skip,
    /// Fail the batch with [`Error::InputFailed`] naming it (the task is not retried: the
    /// read would fail again) and stop the streaming context with that error.
    Fail,
}

impl UnreadablePolicy {
    /// The policy's name: `skip` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            UnreadablePolicy::Skip => "skip",
            UnreadablePolicy::Fail => "fail",
        }
    }
}

impl fmt::Display for UnreadablePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UnreadablePolicy {
    type Err = Error;

    /// Parses `skip` or `fail` (ASCII case ignored).
    ///
    /// # Errors
    /// [`Error::Config`] naming the string and the two policies.
    fn from_str(s: &str) -> Result<UnreadablePolicy> {
        [UnreadablePolicy::Skip, UnreadablePolicy::Fail]
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::Config(format!(
                    "`{s}` is not an unreadable-input policy: use skip or fail"
                ))
            })
    }
}

/// Why [`PolledSource::read`] returned no records.
#[derive(Debug)]
pub enum ReadError {
    /// The split cannot be read, and reading it again would not change that (it is gone, it
    /// is not a regular file, permission is denied): handled by the source's
    /// [`UnreadablePolicy`].
    Unreadable {
        /// Why, e.g. `No such file or directory (os error 2)` or `is a directory`.
        reason: String,
    },
    /// Any other failure (e.g. too many open files): the task fails and is retried.
    Failed(Error),
}

impl From<Error> for ReadError {
    fn from(e: Error) -> ReadError {
        ReadError::Failed(e)
    }
}

/// What [`PolledSource::poll`] found for one batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSplits<S> {
    /// The batch's splits, in the order their partitions get.
    pub splits: Vec<S>,
    /// New entries the source will not read, with the reason, found while polling (e.g. a
    /// file whose modification time is older than the source's remember window); handled
    /// by the source's [`UnreadablePolicy`] as the splits whose read fails.
    pub skipped: Vec<SkippedSplit>,
}

impl<S> From<Vec<S>> for NewSplits<S> {
    fn from(splits: Vec<S>) -> NewSplits<S> {
        NewSplits {
            splits,
            skipped: Vec::new(),
        }
    }
}

/// A source that is asked for its new inputs once per batch (Spark: a receiver-less
/// `InputDStream`). `poll` runs off the actor threads as the batch is cut (the runtime calls
/// [`DStreamGraph::poll_inputs`] on a blocking thread), before the batch's jobs are
/// generated, so it may list a directory; `read` runs in tasks on executors.
pub trait PolledSource: Send + Sync + 'static {
    /// The record type.
    type Item: Data;
    /// What one partition reads, e.g. a file name. Saved in checkpoints.
    type Split: Data + fmt::Debug;
    /// What the source needs to resume after a restart (e.g. the names it has seen).
    type State: Data;

    /// A short name for logs and errors, e.g. `text files in /data/in`.
    fn name(&self) -> String;

    /// How `split` is named in reports and errors (default: its `Debug` form; a file
    /// source gives the path).
    fn describe(&self, split: &Self::Split) -> String {
        format!("{split:?}")
    }

    /// What to do with a split that cannot be read (default: [`UnreadablePolicy::Fail`],
    /// so that a source that did not choose loses nothing silently).
    fn unreadable_policy(&self) -> UnreadablePolicy {
        UnreadablePolicy::Fail
    }

    /// Called once when the context starts without a checkpoint (e.g. to note the files
    /// present at start, which are not read).
    ///
    /// # Errors
    /// A clear error naming the source (a missing directory): the context does not start.
    fn start(&self) -> Result<()>;

    /// The new splits of batch `t`, and the new entries it will not read; called once per
    /// batch, in time order.
    ///
    /// # Errors
    /// An error naming the source; the batch fails with it and the next batch polls again.
    fn poll(&self, t: Time) -> Result<NewSplits<Self::Split>>;

    /// The records of one split, read inside a task.
    ///
    /// # Errors
    /// [`ReadError::Unreadable`] for a split that cannot be read (the policy decides);
    /// [`ReadError::Failed`] for another failure: the task fails and is retried.
    fn read(
        &self,
        split: &Self::Split,
    ) -> std::result::Result<PartitionIter<Self::Item>, ReadError>;

    /// Whether tasks on executor processes (this program started again, possibly on another
    /// host: see `StreamingConfig::local_cluster`) may read this source's splits; default
    /// `false`, so that a source reading memory of the coordinator's process stays there.
    /// `true` for a source every process reaches the same way (a broker; a directory, which
    /// on other hosts must be shared, as Spark's file stream needs HDFS). The splits stay
    /// chosen by the coordinator alone ([`poll`](Self::poll)) and travel with the task;
    /// what the task read is reported back to the coordinator's batch report.
    fn read_anywhere(&self) -> bool {
        false
    }

    /// What reading `split` in this process noted beyond its records (e.g. a file source's
    /// repaired and cut lines), encoded, for an executor process to send to the coordinator
    /// with the split's record count; default none. Asked once the split was read to its
    /// end.
    fn read_note(&self, _split: &Self::Split) -> Option<Vec<u8>> {
        None
    }

    /// On the coordinator: takes in what an executor process noted reading `split`
    /// ([`read_note`](Self::read_note)), as if it had been read here. Default: nothing.
    fn add_read_note(&self, _split: &Self::Split, _note: &[u8]) {}

    /// The state to save after a batch.
    fn state(&self) -> Self::State;

    /// Batch `t` completed and every output operation of it succeeded, after reading
    /// `splits` (e.g. a log's source commits the offsets it read, as Spark's direct Kafka
    /// stream's `commitAsync`). Called once per batch, in batch order, on the coordinator's
    /// thread: it must return quickly. Default: nothing.
    fn batch_completed(&self, _t: Time, _splits: &[Self::Split]) {}

    /// Whether a batch that reads `splits` has an RDD; default `true` (an empty RDD when
    /// there are no splits). `false` makes the input produce no RDD for the batch (Spark: an
    /// input DStream's `compute` returning `None`), and the operators downstream behave as
    /// Spark's: stateless ones have no RDD either, output operations do not run for the
    /// batch, a window leaves the batch out, and `update_state_by_key` calls its function
    /// for every key with no new values. The splits are still recorded, reported and
    /// completed (`batch_completed`).
    fn produces_rdd(&self, _splits: &[Self::Split]) -> bool {
        true
    }

    /// Whether the source takes a rate limit from backpressure ([`set_rate`](Self::set_rate));
    /// default `false`. A direct stream does.
    fn rate_controlled(&self) -> bool {
        false
    }

    /// The rate, in records per second, backpressure allows the input from now on (`None`:
    /// no limit); called with the initial rate at start and after each completed batch.
    /// Default: ignored.
    fn set_rate(&self, _records_per_sec: Option<f64>) {}

    /// Restores a saved state before the first batch after a restart.
    fn restore(&self, state: Self::State);
}

/// What a polled input saves: its splits per batch after the horizon, and its source's state.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
struct Saved<S: PolledSource> {
    batches: Vec<(i64, Vec<S::Split>)>,
    source: S::State,
}

/// What one batch of a polled input read and lost, gathered as its tasks run.
#[derive(Default)]
struct Report {
    splits: usize,
    /// Records of each partition whose read ran to its end.
    records: BTreeMap<usize, usize>,
    /// Skipped splits: description -> reason.
    skipped: BTreeMap<String, String>,
    failure: Option<Error>,
}

/// Reports kept at most (batches whose report was not taken: a runtime that does not take
/// them, e.g. the local scheduler of tests).
const MAX_REPORTS: usize = 1024;

/// The input node's shared part: the source and the splits chosen per batch.
pub(crate) struct Polled<S: PolledSource> {
    stream: Mutex<Option<DStreamId>>,
    source: S,
    selected: Mutex<BTreeMap<Time, Vec<S::Split>>>,
    /// A poll that failed, kept so that generating the batch does not poll again.
    poll_failed: Mutex<Option<(Time, Error)>>,
    reports: Mutex<BTreeMap<Time, Report>>,
    /// The splits of each batch not yet completed, for [`PolledSource::batch_completed`]
    /// (kept apart from `selected`, which a checkpoint may trim before the batch completes).
    uncompleted: Mutex<BTreeMap<Time, Vec<S::Split>>>,
    /// The splits already reported skipped, per batch whose report was taken, until the
    /// batch can no longer be recomputed (a window reading it again is not reported again).
    reported: Mutex<BTreeMap<Time, std::collections::BTreeSet<String>>>,
}

impl<S: PolledSource> Polled<S> {
    fn with_report<R>(&self, t: Time, f: impl FnOnce(&mut Report) -> R) -> R {
        let mut reports = self.reports.lock();
        let r = f(reports.entry(t).or_default());
        while reports.len() > MAX_REPORTS {
            reports.pop_first();
        }
        r
    }

    /// The error `t` fails with under [`UnreadablePolicy::Fail`].
    fn input_failed(&self, t: Time, split: String, reason: String) -> Error {
        Error::InputFailed {
            batch_time: t,
            input: self.source.name(),
            split,
            reason,
        }
    }

    /// Records that `split` of batch `t` (partition `partition`, if read by a task) was not
    /// read, and why, under the source's policy: the error to fail with under `Fail`.
    fn skip(&self, t: Time, split: String, reason: String) -> Option<Error> {
        let policy = self.source.unreadable_policy();
        let failure = (policy == UnreadablePolicy::Fail)
            .then(|| self.input_failed(t, split.clone(), reason.clone()));
        if self
            .reported
            .lock()
            .get(&t)
            .is_some_and(|r| r.contains(&split))
        {
            return failure;
        }
        let first = self.with_report(t, |r| {
            if let Some(e) = &failure {
                r.failure.get_or_insert_with(|| e.clone());
            }
            r.skipped.insert(split.clone(), reason.clone()).is_none()
        });
        // One WARN per split (a retried or recomputed read is not logged again).
        if first {
            match policy {
                UnreadablePolicy::Skip => warn!(
                    input = %self.source.name(),
                    batch_time = %t,
                    split = %split,
                    reason = %reason,
                    "Input not read; skipped (unreadable-input policy: skip). It is counted \
                     in the batch's input report."
                ),
                UnreadablePolicy::Fail => warn!(
                    input = %self.source.name(),
                    batch_time = %t,
                    split = %split,
                    reason = %reason,
                    "Input not read; the batch fails and the context stops (unreadable-input \
                     policy: fail)."
                ),
            }
        }
        failure
    }

    /// The splits of batch `t`: those recorded, else (for a batch after every recorded one)
    /// freshly polled and recorded; none for an older batch that was never recorded.
    ///
    /// # Errors
    /// The poll's error; [`Error::InputFailed`] when the poll named entries it will not
    /// read and the policy is `Fail`.
    fn splits(&self, t: Time) -> Result<Vec<S::Split>> {
        if let Some((failed_t, e)) = self.poll_failed.lock().take() {
            if failed_t == t {
                return Err(e);
            }
        }
        let mut selected = self.selected.lock();
        if let Some(splits) = selected.get(&t) {
            let splits = splits.clone();
            drop(selected);
            self.with_report(t, |r| r.splits = splits.len());
            self.remember_uncompleted(t, &splits);
            return Ok(splits);
        }
        if selected.keys().next_back().is_some_and(|last| *last > t) {
            return Ok(Vec::new());
        }
        let NewSplits { splits, skipped } = self.source.poll(t)?;
        selected.insert(t, splits.clone());
        drop(selected);
        self.with_report(t, |r| r.splits = splits.len());
        self.remember_uncompleted(t, &splits);
        let mut failure = None;
        for s in skipped {
            if let Some(e) = self.skip(t, s.split, s.reason) {
                failure.get_or_insert(e);
            }
        }
        failure.map_or(Ok(splits), Err)
    }

    fn remember_uncompleted(&self, t: Time, splits: &[S::Split]) {
        let mut uncompleted = self.uncompleted.lock();
        uncompleted.entry(t).or_insert_with(|| splits.to_vec());
        while uncompleted.len() > MAX_REPORTS {
            uncompleted.pop_first();
        }
    }

    /// The splits batch `t` reads, while it may still run or be recomputed (see
    /// [`DirectStream::offset_ranges`](crate::dstream::DirectStream::offset_ranges)).
    pub(crate) fn splits_of(&self, t: Time) -> Option<Vec<S::Split>> {
        self.selected
            .lock()
            .get(&t)
            .or(self.uncompleted.lock().get(&t))
            .cloned()
    }

    /// The splits batch `t` reads, encoded for an executor process; `None` when unknown.
    ///
    /// # Errors
    /// [`Error::Internal`] when a split cannot be serialized.
    fn encoded_splits(&self, t: Time) -> Result<Option<Vec<u8>>> {
        self.splits_of(t).map(|splits| encode(&splits)).transpose()
    }

    /// Puts the splits the coordinator chose for batch `t` (as [`encoded_splits`]
    /// returned them) in place, so that generating the batch here reads them and never polls.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the input when they do not
    /// decode (another program).
    ///
    /// [`encoded_splits`]: Polled::encoded_splits
    fn install_splits(&self, t: Time, encoded: Option<&[u8]>) -> Result<()> {
        let splits: Vec<S::Split> = match encoded {
            Some(encoded) => {
                let key = format!("batch input {t} of {}", self.source.name());
                decode(encoded, "the coordinator's task", &key)?
            }
            None => Vec::new(),
        };
        self.selected.lock().insert(t, splits);
        Ok(())
    }

    /// Forgets the splits, reports and skipped splits of batches at or before `t`.
    fn forget_up_to(&self, t: Time) {
        let after = t + Duration::from_millis(1);
        fn keep_after<V>(map: &Mutex<BTreeMap<Time, V>>, after: Time) {
            let mut map = map.lock();
            let kept = map.split_off(&after);
            *map = kept;
        }
        keep_after(&self.selected, after);
        keep_after(&self.uncompleted, after);
        keep_after(&self.reports, after);
        keep_after(&self.reported, after);
    }

    /// What tasks of this process read of batch `t` since the last call: records per
    /// partition read to the end, splits skipped with why.
    fn take_reads(&self, t: Time) -> InputReads {
        let report = self.reports.lock().remove(&t).unwrap_or_default();
        let splits = self.splits_of(t).unwrap_or_default();
        let notes = report
            .records
            .keys()
            .filter_map(|&p| Some((p, self.source.read_note(splits.get(p)?)?)))
            .collect();
        InputReads {
            stream: self.stream.lock().unwrap_or(DStreamId::MAX),
            notes,
            records: report.records.into_iter().collect(),
            skipped: report
                .skipped
                .into_iter()
                .map(|(split, reason)| SkippedSplit { split, reason })
                .collect(),
        }
    }

    /// Adds what a task of an executor process read of batch `t` to the batch's report, as
    /// if it had read here: records per partition (a partition read twice counts once),
    /// skipped splits under the source's policy (the batch fails under `Fail`).
    fn merge_reads(&self, t: Time, reads: InputReads) {
        if reads.records.is_empty() && reads.skipped.is_empty() {
            return;
        }
        let splits = self.splits_of(t).unwrap_or_default();
        for (p, note) in &reads.notes {
            if let Some(split) = splits.get(*p) {
                self.source.add_read_note(split, note);
            }
        }
        self.with_report(t, |r| r.records.extend(reads.records));
        for s in reads.skipped {
            let _ = self.skip(t, s.split, s.reason);
        }
    }

    /// The report of batch `t`, taken: later reads of older batches are dropped with it.
    /// When the batch `succeeded` (every output operation) and this input did not fail it,
    /// the source hears of it ([`PolledSource::batch_completed`]).
    fn take_report(&self, t: Time, succeeded: bool) -> (PolledInputInfo, Option<Error>) {
        let splits = {
            let mut uncompleted = self.uncompleted.lock();
            let later = uncompleted.split_off(&(t + Duration::from_millis(1)));
            let mine = uncompleted.remove(&t);
            *uncompleted = later;
            mine
        };
        let report = {
            let mut reports = self.reports.lock();
            let later = reports.split_off(&(t + Duration::from_millis(1)));
            let mine = reports.remove(&t);
            *reports = later;
            mine.unwrap_or_default()
        };
        if !report.skipped.is_empty() {
            let mut reported = self.reported.lock();
            reported.insert(t, report.skipped.keys().cloned().collect());
            while reported.len() > MAX_REPORTS {
                reported.pop_first();
            }
        }
        let info = PolledInputInfo {
            batch_time: t,
            stream: self.stream.lock().unwrap_or(DStreamId::MAX),
            name: self.source.name(),
            splits: report.splits,
            split_names: splits
                .iter()
                .flatten()
                .map(|split| self.source.describe(split))
                .collect(),
            records: report.records.values().sum(),
            skipped: report
                .skipped
                .into_iter()
                .map(|(split, reason)| SkippedSplit { split, reason })
                .collect(),
            failure: report.failure.as_ref().map(ToString::to_string),
        };
        if let (true, None, Some(splits)) = (succeeded, &report.failure, &splits) {
            self.source.batch_completed(t, splits);
        }
        (info, report.failure)
    }
}

impl<S: PolledSource> RestorableInput for Polled<S> {
    fn stream(&self) -> DStreamId {
        self.stream.lock().unwrap_or(DStreamId::MAX)
    }
    fn start(&self) -> Result<()> {
        self.source.start()
    }
    fn prepare(&self, t: Time) {
        if let Err(e) = self.splits(t) {
            // Generating the batch fails with it, without polling again.
            *self.poll_failed.lock() = Some((t, e));
        }
    }
    fn take_report(&self, t: Time, succeeded: bool) -> Option<(PolledInputInfo, Option<Error>)> {
        Some(Polled::take_report(self, t, succeeded))
    }
    fn rate_controlled(&self) -> bool {
        self.source.rate_controlled()
    }
    fn set_rate(&self, records_per_sec: Option<f64>) {
        self.source.set_rate(records_per_sec);
    }
    fn batch_splits(&self, t: Time) -> Result<Option<Vec<u8>>> {
        self.encoded_splits(t)
    }
    fn install_batch_splits(&self, t: Time, encoded: Option<&[u8]>) -> Result<()> {
        self.install_splits(t, encoded)
    }
    fn forget_up_to(&self, t: Time) {
        Polled::forget_up_to(self, t);
    }
    fn take_reads(&self, t: Time) -> Option<InputReads> {
        Some(Polled::take_reads(self, t))
    }
    fn merge_reads(&self, t: Time, reads: InputReads) {
        Polled::merge_reads(self, t, reads);
    }
    fn failed(&self, t: Time) -> bool {
        self.reports
            .lock()
            .get(&t)
            .is_some_and(|r| r.failure.is_some())
    }
    fn save(&self, horizon: Time) -> Result<Vec<u8>> {
        // Under the lock `poll` runs under: the splits and the source's state agree (a split
        // the source counts as seen is in some batch).
        let mut selected = self.selected.lock();
        // Batches at or before the horizon are never recomputed again: forget them.
        let keep = selected.split_off(&(horizon + Duration::from_millis(1)));
        *selected = keep;
        let mut reported = self.reported.lock();
        let kept = reported.split_off(&(horizon + Duration::from_millis(1)));
        *reported = kept;
        drop(reported);
        let saved = Saved::<S> {
            batches: selected
                .iter()
                .map(|(t, s)| (t.as_ms(), s.clone()))
                .collect(),
            source: self.source.state(),
        };
        drop(selected);
        encode(&saved)
    }
    fn restore(&self, state: &[u8], dir: &str) -> Result<()> {
        let key = format!("meta/input {}", self.source.name());
        let saved: Saved<S> = decode(state, dir, &key)?;
        *self.selected.lock() = saved
            .batches
            .into_iter()
            .map(|(t, s)| (Time::from_ms(t), s))
            .collect();
        self.source.restore(saved.source);
        Ok(())
    }
}

/// One batch of a polled input: partition `i` reads split `i`.
struct PolledRdd<S: PolledSource> {
    meta: RddMeta,
    time: Time,
    polled: Arc<Polled<S>>,
    splits: Vec<S::Split>,
    _records: PhantomData<fn() -> S::Item>,
}

impl<S: PolledSource> RddBase for PolledRdd<S> {
    fn meta(&self) -> &RddMeta {
        &self.meta
    }
}

impl<S: PolledSource> RddImpl<S::Item> for PolledRdd<S> {
    fn compute(&self, partition: usize, _ctx: &TaskContext) -> Result<PartitionIter<S::Item>> {
        let split = &self.splits[partition];
        match self.polled.source.read(split) {
            Ok(records) => Ok(Box::new(Counted {
                records,
                n: 0,
                done: Some((self.polled.clone(), self.time, partition)),
            })),
            Err(ReadError::Failed(e)) => Err(e),
            Err(ReadError::Unreadable { reason }) => {
                let described = self.polled.source.describe(split);
                match self.polled.skip(self.time, described, reason) {
                    Some(e) => Err(e),
                    None => Ok(Box::new(std::iter::empty())),
                }
            }
        }
    }
}

/// A split's records, counted into the batch's report when the read reaches the end (a
/// read cut short, e.g. by `take`, does not count).
struct Counted<S: PolledSource> {
    records: PartitionIter<S::Item>,
    n: usize,
    done: Option<(Arc<Polled<S>>, Time, usize)>,
}

impl<S: PolledSource> Iterator for Counted<S> {
    type Item = S::Item;

    fn next(&mut self) -> Option<S::Item> {
        let next = self.records.next();
        match next {
            Some(_) => self.n += 1,
            None => {
                if let Some((polled, t, partition)) = self.done.take() {
                    let n = self.n;
                    polled.with_report(t, |r| r.records.insert(partition, n));
                }
            }
        }
        next
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.records.size_hint()
    }
}

impl DStreamGraph {
    /// A stream fed by a [`PolledSource`]: batch `t` holds the records of the splits the
    /// source named for `t`, one partition per split, in its order. Its splits are saved in
    /// metadata checkpoints, so a restarted program recomputes the same batches and reads
    /// every split into exactly one batch. What each batch read and skipped is reported to
    /// listeners (`StreamingListener::on_polled_input`) as the batch completes.
    #[track_caller]
    pub fn polled_stream<S: PolledSource>(&self, source: S) -> DStream<S::Item> {
        self.polled_stream_op(OpInfo::caller("polled_stream"), source)
    }

    /// [`polled_stream`](DStreamGraph::polled_stream) named after a caller's operator.
    pub fn polled_stream_op<S: PolledSource>(&self, op: OpInfo, source: S) -> DStream<S::Item> {
        self.polled_stream_with(op, source).0
    }

    /// [`polled_stream_op`](DStreamGraph::polled_stream_op), with the input's shared part.
    pub(crate) fn polled_stream_with<S: PolledSource>(
        &self,
        op: OpInfo,
        source: S,
    ) -> (DStream<S::Item>, Arc<Polled<S>>) {
        let shared = self.shared().clone();
        let polled = Arc::new(Polled {
            stream: Mutex::new(None),
            source,
            selected: Mutex::new(BTreeMap::new()),
            poll_failed: Mutex::new(None),
            reports: Mutex::new(BTreeMap::new()),
            uncompleted: Mutex::new(BTreeMap::new()),
            reported: Mutex::new(BTreeMap::new()),
        });
        let (reader, ctx) = (polled.clone(), shared.rdd_context().clone());
        let stream = DStream::new_node(
            &shared,
            op,
            shared.batch_interval(),
            Vec::new(),
            Duration::ZERO,
            move |_, t| {
                let splits = reader.splits(t)?;
                if !reader.source.produces_rdd(&splits) {
                    return Ok(None);
                }
                let meta = RddMeta::in_scope(
                    &ctx,
                    ctx.static_scope(),
                    op,
                    splits.len(),
                    |_| Vec::new(),
                    None,
                );
                let meta = match reader.source.read_anywhere() {
                    true => meta.reads_portable_input(),
                    false => meta,
                };
                Ok(Some(Rdd::new(PolledRdd {
                    meta,
                    time: t,
                    polled: reader.clone(),
                    splits,
                    _records: PhantomData,
                })))
            },
        );
        *polled.stream.lock() = Some(stream.id());
        shared.add_restorable_input(polled.clone());
        (stream, polled)
    }
}
