//! Input streams polled once per batch, without a receiver (Spark: `InputDStream` subclasses
//! such as `FileInputDStream`): as batch `t` is cut, the source names the new inputs of the
//! batch (its *splits*, e.g. file names); tasks read one split per partition. The splits of
//! every batch that a restart may have to recompute are saved in the metadata checkpoint, so
//! each input is read into exactly one batch, across executor losses and restarts.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::checkpoint::{decode, encode};
use crate::data::Data;
use crate::dstream::graph::RestorableInput;
use crate::dstream::{lock, DStream, DStreamGraph, DStreamId};
use crate::error::{OpInfo, Result};
use crate::rdd::{PartitionIter, Rdd, RddBase, RddImpl, RddMeta};
use crate::scheduler::TaskContext;
use crate::time::Time;

/// A source that is asked for its new inputs once per batch (Spark: a receiver-less
/// `InputDStream`). `poll` runs on the coordinator's thread while the batch is cut, so it
/// must be quick (list a directory, not read it); `read` runs in tasks on executors.
pub trait PolledSource: Send + Sync + 'static {
    /// The record type.
    type Item: Data;
    /// What one partition reads, e.g. a file name. Saved in checkpoints.
    type Split: Data + fmt::Debug;
    /// What the source needs to resume after a restart (e.g. the names it has seen).
    type State: Data;

    /// A short name for logs and errors, e.g. `text files in /data/in`.
    fn name(&self) -> String;

    /// Called once when the context starts without a checkpoint (e.g. to note the files
    /// present at start, which are not read).
    ///
    /// # Errors
    /// A clear error naming the source (a missing directory): the context does not start.
    fn start(&self) -> Result<()>;

    /// The new splits of batch `t` (in the order their partitions get); called once per
    /// batch, in time order.
    ///
    /// # Errors
    /// An error naming the source; the batch fails with it and the next batch polls again.
    fn poll(&self, t: Time) -> Result<Vec<Self::Split>>;

    /// The records of one split, read inside a task.
    ///
    /// # Errors
    /// An error naming the split (an unreadable file): the task fails and is retried.
    fn read(&self, split: &Self::Split) -> Result<PartitionIter<Self::Item>>;

    /// The state to save after a batch.
    fn state(&self) -> Self::State;

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

/// The input node's shared part: the source and the splits chosen per batch.
struct Polled<S: PolledSource> {
    stream: Mutex<Option<DStreamId>>,
    source: S,
    selected: Mutex<BTreeMap<Time, Vec<S::Split>>>,
}

impl<S: PolledSource> Polled<S> {
    /// The splits of batch `t`: those recorded, else (for a batch after every recorded one)
    /// freshly polled and recorded; none for an older batch that was never recorded.
    fn splits(&self, t: Time) -> Result<Vec<S::Split>> {
        let mut selected = lock(&self.selected);
        if let Some(splits) = selected.get(&t) {
            return Ok(splits.clone());
        }
        if selected.keys().next_back().is_some_and(|last| *last > t) {
            return Ok(Vec::new());
        }
        let splits = self.source.poll(t)?;
        selected.insert(t, splits.clone());
        Ok(splits)
    }
}

impl<S: PolledSource> RestorableInput for Polled<S> {
    fn stream(&self) -> DStreamId {
        lock(&self.stream).unwrap_or(DStreamId::MAX)
    }
    fn start(&self) -> Result<()> {
        self.source.start()
    }
    fn save(&self, horizon: Time) -> Result<Vec<u8>> {
        // Under the lock `poll` runs under: the splits and the source's state agree (a split
        // the source counts as seen is in some batch).
        let mut selected = lock(&self.selected);
        // Batches at or before the horizon are never recomputed again: forget them.
        let keep = selected.split_off(&(horizon + Duration::from_millis(1)));
        *selected = keep;
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
        *lock(&self.selected) = saved
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
        self.polled.source.read(&self.splits[partition])
    }
}

impl DStreamGraph {
    /// A stream fed by a [`PolledSource`]: batch `t` holds the records of the splits the
    /// source named for `t`, one partition per split, in its order. Its splits are saved in
    /// metadata checkpoints, so a restarted program recomputes the same batches and reads
    /// every split into exactly one batch.
    #[track_caller]
    pub fn polled_stream<S: PolledSource>(&self, source: S) -> DStream<S::Item> {
        self.polled_stream_op(OpInfo::caller("polled_stream"), source)
    }

    /// [`polled_stream`](DStreamGraph::polled_stream) named after a caller's operator.
    pub fn polled_stream_op<S: PolledSource>(&self, op: OpInfo, source: S) -> DStream<S::Item> {
        let shared = self.shared().clone();
        let polled = Arc::new(Polled {
            stream: Mutex::new(None),
            source,
            selected: Mutex::new(BTreeMap::new()),
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
                let meta = RddMeta::in_scope(
                    &ctx,
                    ctx.static_scope(),
                    op,
                    splits.len(),
                    |_| Vec::new(),
                    None,
                );
                Ok(Some(Rdd::new(PolledRdd {
                    meta,
                    polled: reader.clone(),
                    splits,
                    _records: PhantomData,
                })))
            },
        );
        *lock(&polled.stream) = Some(stream.id());
        shared.add_restorable_input(polled);
        stream
    }
}
