//! Feeding generated Nexmark events through a [`Receiver`], one second of event time per
//! batch (the mapping of `queries.rs`'s module doc), on the manual clock.
//!
//! [`NexmarkSource`] holds the events grouped by batch. The driver ([`Feed::run`]) releases
//! batch `k`'s events to it; the source stores them with `store_many` (waiting while its
//! bounded buffer is full: the backpressure) and says so; the driver then cuts batch `k`
//! with `advance(1)`, which seals everything stored so far into it, and waits until the
//! batch is generated (`on_batch_submitted`) before releasing batch `k + 1`. So a batch
//! holds exactly its second of events, whatever the speed of either side, while storing
//! batch `k + 1` overlaps the processing of batch `k` (at most [`MAX_IN_FLIGHT`] batches
//! cut and not finished). With several sources (see [`nexmark_stream`]), each stores an
//! equal part of every batch and the driver waits for all of them before cutting it.
//! Shared by the harness and `benches/tests/nexmark.rs`.

// Each includer uses part of this module.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::sync::Arc;

use nexmark::event::Event;
use rivulet::prelude::*;
use tokio::sync::watch;

use crate::queries::{BATCH, SLICE_MS};

/// Batches cut but not finished at most, while the next batch's events are stored.
pub const MAX_IN_FLIGHT: usize = 2;

/// The events a [`NexmarkSource`] stores, grouped by batch (batch `k` = element `k - 1`).
#[derive(Debug)]
pub enum Events {
    /// Shared with the caller: the source clones its part (`part` of `parts` equal
    /// contiguous ranges) of each batch's events as it stores them, as a source that
    /// decodes its input makes its records (the harness's default).
    Shared {
        /// Every event, by batch.
        all: Arc<Vec<Vec<Event>>>,
        /// Which range of each batch this source stores.
        part: usize,
        /// Into how many ranges each batch is cut.
        parts: usize,
    },
    /// Owned by the source: each batch's events are moved into the context, so the
    /// source costs nothing per event (the harness's `--source move`).
    Owned(Vec<Vec<Event>>),
}

impl Events {
    /// All of `all`, cloned as stored.
    pub fn shared(all: Arc<Vec<Vec<Event>>>) -> Events {
        Events::Shared {
            all,
            part: 0,
            parts: 1,
        }
    }

    /// How many batches of events there are.
    fn batches(&self) -> usize {
        match self {
            Events::Shared { all, .. } => all.len(),
            Events::Owned(s) => s.len(),
        }
    }

    /// Cuts every batch into `n` contiguous ranges, one per source.
    fn split(self, n: usize) -> Vec<Events> {
        match self {
            Events::Shared { all, .. } => (0..n)
                .map(|part| Events::Shared {
                    all: all.clone(),
                    part,
                    parts: n,
                })
                .collect(),
            Events::Owned(batches) => {
                let mut out: Vec<Vec<Vec<Event>>> = vec![Vec::new(); n];
                for mut batch in batches {
                    let len = batch.len();
                    for part in (0..n).rev() {
                        let piece = batch.split_off(part * len / n);
                        out[part].push(piece);
                    }
                }
                out.into_iter().map(Events::Owned).collect()
            }
        }
    }

    /// This source's events of batch `i + 1`, cloned or moved out (empty past the last).
    fn take(&mut self, i: usize) -> Vec<Event> {
        match self {
            Events::Shared { all, part, parts } => all.get(i).map_or_else(Vec::new, |b| {
                b[*part * b.len() / *parts..(*part + 1) * b.len() / *parts].to_vec()
            }),
            Events::Owned(s) => s.get_mut(i).map(std::mem::take).unwrap_or_default(),
        }
    }
}

/// A receiver over events held in memory, grouped by batch; it stores batch `k`'s events
/// once the driver released them (see the module doc), then finishes after the last.
pub struct NexmarkSource {
    slices: Events,
    next: usize,
    released: watch::Receiver<usize>,
    stored: watch::Sender<usize>,
}

impl Receiver for NexmarkSource {
    type Item = Event;

    fn name(&self) -> String {
        format!("nexmark({} batches)", self.slices.batches())
    }

    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }

    async fn receive(&mut self, sink: &mut BlockSink<Event>) -> Result<Flow, ReceiverError> {
        let next = self.next;
        if next >= self.slices.batches() {
            return Ok(Flow::Finished);
        }
        self.released
            .wait_for(|&released| released > next)
            .await
            .map_err(|_| ReceiverError::fatal("the nexmark driver stopped"))?;
        let events = self.slices.take(next);
        if !events.is_empty() {
            sink.store_many(events).await.map_err(|_| {
                ReceiverError::fatal("the context stopped before all events were stored")
            })?;
        }
        self.next += 1;
        self.stored.send_replace(self.next);
        Ok(Flow::Continue)
    }
}

/// A listener publishing the newest batch time generated.
struct Submitted(watch::Sender<i64>);

impl StreamingListener for Submitted {
    fn on_batch_submitted(&mut self, batch: &BatchInfo) {
        let t = batch.batch_time.as_ms();
        self.0.send_if_modified(|newest| {
            let newer = t > *newest;
            if newer {
                *newest = t;
            }
            newer
        });
    }
}

/// The driver's side of a [`NexmarkSource`].
#[derive(Debug)]
pub struct Feed {
    slices: usize,
    release: watch::Sender<usize>,
    stored: Vec<watch::Receiver<usize>>,
    submitted: watch::Receiver<i64>,
}

/// The rivulet configuration every Nexmark run uses on top of `base`: 1 s batches on the
/// manual clock (batch `k` at `k` s), `executors` executors and as many partitions per
/// shuffle, a buffer per receiver of twice the largest batch (so batch `k + 1` can be
/// stored while batch `k` runs; blocks are cut at `largest / executors` events, so a
/// batch has at least one input partition per executor, or per receiver), and no rate
/// controller: the sources store as fast as their bounded buffers let them.
pub fn config(base: StreamingConfig, executors: usize, largest_batch: usize) -> StreamingConfig {
    base.batch_interval(BATCH)
        .manual_clock(true)
        .executors(executors)
        .default_parallelism(executors)
        .receiver_buffer_records((2 * largest_batch).max(1))
        .backpressure(false)
}

/// The events of `slices` as an input stream of `ssc`, stored by `receivers` sources (the
/// union of their streams; each stores an equal part of every batch), and the driver that
/// feeds them (call [`Feed::run`] after `start`). Several receivers store in parallel, as
/// Spark users union several receivers.
///
/// # Errors
/// If `receivers` is 0.
pub fn nexmark_stream(
    ssc: &StreamingContext,
    slices: Events,
    receivers: usize,
) -> Result<(DStream<Event>, Feed)> {
    let (release, released) = watch::channel(0);
    let (submitted_tx, submitted) = watch::channel(i64::MIN);
    let n = slices.batches();
    let mut streams = Vec::new();
    let mut stored = Vec::new();
    for part in slices.split(receivers) {
        let (stored_tx, stored_rx) = watch::channel(0);
        streams.push(ssc.receiver_stream(NexmarkSource {
            slices: part,
            next: 0,
            released: released.clone(),
            stored: stored_tx,
        }));
        stored.push(stored_rx);
    }
    let stream = match &streams[..] {
        [one] => one.clone(),
        _ => ssc.union(&streams)?,
    };
    ssc.add_listener(Submitted(submitted_tx));
    let feed = Feed {
        slices: n,
        release,
        stored,
        submitted,
    };
    Ok((stream, feed))
}

impl Feed {
    /// Runs batches `1..=batches` of the started `ssc` (batches past the events are empty),
    /// each holding its second of events, and returns once the last has completed.
    ///
    /// # Errors
    /// The first failed batch's error, or an error if the context or the source stopped
    /// first.
    pub async fn run(mut self, ssc: &StreamingContext, batches: usize) -> Result<(), BoxError> {
        let mut in_flight: VecDeque<tokio::task::JoinHandle<Result<()>>> = VecDeque::new();
        for k in 1..=batches {
            if k <= self.slices {
                self.release.send_replace(k);
                for source in &mut self.stored {
                    until_stopped(ssc, source.wait_for(|&s| s >= k), "storing").await?;
                }
            }
            let ctx = ssc.clone();
            in_flight.push_back(actix::spawn(async move { ctx.advance(1).await }));
            let batch_ms = k as i64 * SLICE_MS as i64;
            let generated = self.submitted.wait_for(|&t| t >= batch_ms);
            until_stopped(ssc, generated, "cutting a batch").await?;
            while in_flight.len() > MAX_IN_FLIGHT {
                if let Some(oldest) = in_flight.pop_front() {
                    oldest.await.map_err(|e| format!("advance task: {e}"))??;
                }
            }
        }
        for batch in in_flight {
            batch.await.map_err(|e| format!("advance task: {e}"))??;
        }
        Ok(())
    }
}

/// Awaits `wait` unless the context stops (or a batch fails) first.
async fn until_stopped<T, E: std::fmt::Display>(
    ssc: &StreamingContext,
    wait: impl std::future::Future<Output = Result<T, E>>,
    what: &str,
) -> Result<(), BoxError> {
    tokio::select! {
        done = wait => done.map(|_| ()).map_err(|e| format!("{what}: {e}").into()),
        stopped = ssc.await_termination() => Err(match stopped {
            Err(e) => e.into(),
            Ok(()) => format!("the context stopped while {what}").into(),
        }),
    }
}
