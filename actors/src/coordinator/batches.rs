//! A batch's life in the coordinator: generated, queued, run on the job thread, completed.

use std::time::{Duration, Instant, SystemTime};

use actix::{ActorFutureExt, AsyncContext, Context, MailboxError, WrapFuture};
use rivulet_framework::block::{BlockInfo, StreamId};
use rivulet_framework::checkpoint::{BlockLog, StoreStats};
use rivulet_framework::dstream::OutputJob;
use rivulet_framework::listener::{BatchInfo, OutputOperationInfo};
use rivulet_framework::time::Time;
use rivulet_framework::{Error, Result};
use tokio::sync::oneshot;
use tracing::{debug, error, info};

use super::Coordinator;
use crate::messages::SealedBlock;
use crate::runtime::Status;

/// A generated batch waiting for, or in, the job thread.
pub(super) struct Batch {
    time: Time,
    jobs: Vec<OutputJob>,
    blocks: Vec<BlockInfo>,
    info: BatchInfo,
    submitted: Instant,
    /// Set once its map stages started running ahead; resolves, with how long they took,
    /// when they are done.
    ahead: Option<oneshot::Receiver<Duration>>,
    /// How long its map stages ran ahead (zero if they did not).
    ahead_time: Duration,
}

impl Batch {
    /// What rate control and the buffer bound read as the batch's processing time: its
    /// processing delay plus the time its map stages ran ahead. Counting the time they
    /// shared with the previous batch errs on the low side of the rate, as it must: the
    /// processing delay alone made pipelined batches look fast, the estimate overshot, and a
    /// 10x overload built a backlog of 20 s.
    fn work_time(&self) -> Option<Duration> {
        Some(self.info.processing_delay? + self.ahead_time)
    }
}

/// One output operation's run.
struct OutputRun {
    id: usize,
    name: String,
    start_time: SystemTime,
    duration: Duration,
    result: Result<()>,
}

/// Runs a batch's output jobs in order on the calling (blocking) thread.
fn run_jobs(jobs: Vec<OutputJob>) -> Vec<OutputRun> {
    jobs.into_iter()
        .map(|job| {
            let (id, name, start) = (job.id(), job.op().to_string(), Instant::now());
            let start_time = SystemTime::now();
            let result = job.run();
            OutputRun {
                id,
                name,
                start_time,
                duration: start.elapsed(),
                result,
            }
        })
        .collect()
}

impl Coordinator {
    /// Records the builders' answers to a seal request (a builder that did not answer
    /// reports its blocks at its next seal, or at stop).
    pub(super) fn record_seal_answers(
        &mut self,
        answers: Vec<(StreamId, Result<SealedBlock, MailboxError>)>,
    ) {
        for (stream, answer) in answers {
            if let Ok(sealed) = answer {
                self.record_sealed(stream, sealed);
            }
        }
    }

    /// Records blocks a builder of `stream` sealed and stored, however they came (its
    /// timer, or a seal request): they wait for the next batch.
    pub(super) fn record_sealed(&mut self, stream: StreamId, sealed: SealedBlock) {
        let SealedBlock {
            blocks,
            sealed_total,
        } = sealed;
        let reported = blocks.len() as u64;
        self.graph.add_blocks(blocks);
        if let Some(r) = self.receiver_mut(stream) {
            r.sealed_total = r.sealed_total.max(sealed_total);
            r.reported += reported;
        }
    }

    /// Cuts batch `t`: first polls the polled inputs (a directory listing) on a blocking
    /// thread, never on this actor's thread, then [`generate_batch`](Self::generate_batch).
    /// Batches are cut in order: one poll at a time, the next after the previous batch was
    /// generated.
    pub(super) fn cut_batch(&mut self, t: Time, ctx: &mut Context<Self>) {
        if !self.graph.has_polled_inputs() {
            self.generate_batch(t, ctx);
            return;
        }
        self.cutting.push_back(t);
        if self.cutting.len() == 1 {
            self.poll_next(ctx);
        }
    }

    /// Polls the inputs of the oldest batch waiting to be cut, then generates it.
    fn poll_next(&mut self, ctx: &mut Context<Self>) {
        let Some(&t) = self.cutting.front() else {
            return;
        };
        let graph = self.graph.clone();
        let poll = async move { tokio::task::spawn_blocking(move || graph.poll_inputs(t)).await };
        ctx.spawn(poll.into_actor(self).map(move |polled, act, ctx| {
            act.cutting.pop_front();
            if act.stopping.as_ref().is_some_and(|s| s.is_final()) {
                act.cutting.clear();
                return;
            }
            if let Err(e) = polled {
                // The poll panicked; generating the batch polls again and reports the error.
                error!(parent: &act.span, batch_time = %t, error = %e, "Polling the inputs failed.");
            }
            act.generate_batch(t, ctx);
            act.poll_next(ctx);
        }));
    }

    /// Cuts batch `t`: allocates the reported blocks, generates the jobs, queues them.
    pub(super) fn generate_batch(&mut self, t: Time, ctx: &mut Context<Self>) {
        let _span = tracing::info_span!(parent: &self.span, "batch", batch_time = %t).entered();
        // A batch restored from a checkpoint keeps its blocks; the new ones go to the next.
        let fresh = self.graph.allocate_blocks(t).is_some_and(|b| !b.is_empty());
        let blocks = self.graph.allocated(t);
        if let Some(wal) = self.wal.as_ref().filter(|_| fresh) {
            // Write-ahead log step 2: the allocation is recorded (made durable on the job
            // thread before the batch's outputs run).
            if let Err(e) = wal.allocate(t, &blocks) {
                error!(parent: &self.span, batch_time = %t, error = %e, "Cannot record the batch's blocks in the write-ahead log.");
                self.fail(e, ctx);
                return;
            }
        }
        let received: usize = blocks.iter().map(|b| b.num_records).sum();
        let num_records = received + self.graph.queued_records(t);
        let jobs = self.graph.generate_jobs(t);
        debug!(
            blocks = blocks.len(),
            records = num_records,
            jobs = jobs.len(),
            "Batch generated."
        );
        let mut stream_records = std::collections::BTreeMap::new();
        for b in &blocks {
            *stream_records.entry(b.stream).or_insert(0) += b.num_records;
        }
        let info = BatchInfo {
            batch_time: t,
            num_records,
            stream_records,
            submission_time: SystemTime::now(),
            scheduling_delay: None,
            processing_delay: None,
            failures: Vec::new(),
            num_output_ops: jobs.len(),
        };
        self.listeners.post(|l| l.on_batch_submitted(&info));
        self.queue.push_back(Batch {
            time: t,
            jobs,
            blocks,
            info,
            submitted: Instant::now(),
            ahead: None,
            ahead_time: Duration::ZERO,
        });
        self.last_time = t;
        self.run_next(ctx);
        self.run_ahead(ctx);
    }

    /// Timestep pipelining: while a batch runs, runs the independent map stages of the next
    /// one (only the next: the map outputs held ahead stay one batch's worth); its job waits
    /// for them, then skips them.
    fn run_ahead(&mut self, ctx: &mut Context<Self>) {
        if !self.pipelining || !self.running || self.running_ahead {
            return;
        }
        let Some(batch) = self.queue.front_mut().filter(|b| b.ahead.is_none()) else {
            return;
        };
        let rdds: Vec<_> = batch.jobs.iter().filter_map(|j| j.rdd().cloned()).collect();
        let (tx, rx) = oneshot::channel();
        batch.ahead = Some(rx);
        let t = batch.time;
        let (dag, pool) = (self.dag.clone(), self.pool.clone());
        self.running_ahead = true;
        let ahead = async move {
            let (start, mut ran) = (Instant::now(), 0);
            for rdd in &rdds {
                ran += dag.run_map_stages_ahead(rdd, t, &*pool).await;
            }
            let _ = tx.send(start.elapsed());
            ran
        };
        ctx.spawn(ahead.into_actor(self).map(move |ran, act, ctx| {
            debug!(parent: &act.span, batch_time = %t, stages = ran, "Map stages ran ahead.");
            act.running_ahead = false;
            act.escalate_pool_failure(ctx);
            act.run_ahead(ctx);
        }));
    }

    /// Starts the oldest queued batch if none is running (batches run one at a time, in order).
    pub(super) fn run_next(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            return;
        }
        let Some(mut batch) = self.queue.pop_front() else {
            self.check_stop(ctx);
            return;
        };
        self.running = true;
        let started = Instant::now();
        batch.info.scheduling_delay = Some(started - batch.submitted);
        self.listeners.post(|l| l.on_batch_started(&batch.info));
        let jobs = std::mem::take(&mut batch.jobs);
        let ahead = batch.ahead.take();
        // Output jobs block in RDD actions, so they run off the actor threads; so does the
        // batch's metadata checkpoint, written after them, in batch order. Map stages that
        // run ahead finish first (a stopped coordinator drops them: nothing to wait for).
        let (graph, t, wal) = (self.graph.clone(), batch.time, self.wal.clone());
        let input_cut = self.input_cuts;
        let (job_done, job_thread) = std::sync::mpsc::channel::<()>();
        self.job_thread = Some(job_thread);
        let handle = async move {
            let ahead_time = match ahead {
                Some(ahead) => ahead.await.unwrap_or_default(),
                None => Duration::ZERO,
            };
            let ran = tokio::task::spawn_blocking(move || {
                let (start, start_time) = (Instant::now(), SystemTime::now());
                let failed = |name: &str, e| OutputRun {
                    id: 0,
                    name: name.into(),
                    start_time,
                    duration: start.elapsed(),
                    result: Err(e),
                };
                // The batch's input (its polled inputs' splits, its allocated blocks) is
                // durable before any of its outputs runs.
                let recorded = if input_cut {
                    graph.record_input_cut(t)
                } else {
                    Ok(())
                };
                let synced = wal.as_ref().map_or(Ok(()), BlockLog::sync);
                let (runs, stats) = match (recorded, synced) {
                    (Err(e), _) => (vec![failed("input cut", e)], None),
                    (_, Err(e)) => (vec![failed("write-ahead log", e)], None),
                    (Ok(()), Ok(())) => {
                        let mut runs = run_jobs(jobs);
                        let (start, start_time) = (Instant::now(), SystemTime::now());
                        // A batch an input failed under the `fail` policy is not
                        // checkpointed: the context stops, and a restart reads it again.
                        let written = if graph.input_failed(t) {
                            None
                        } else {
                            Some(graph.write_metadata_checkpoint(t))
                        };
                        let stats = match written {
                            None => None,
                            Some(Ok(stats)) => Some(stats),
                            Some(Err(e)) => {
                                runs.push(OutputRun {
                                    id: runs.len(),
                                    name: "metadata checkpoint".into(),
                                    start_time,
                                    duration: start.elapsed(),
                                    result: Err(e),
                                });
                                None
                            }
                        };
                        (runs, stats)
                    }
                };
                // The graph (and the checkpoint store it holds) goes first, then the signal
                // a stop waits for (bounded): closure captures drop after its locals.
                drop(graph);
                drop(wal);
                drop(job_done);
                (runs, stats)
            })
            .await;
            (ahead_time, ran)
        };
        ctx.spawn(
            handle
                .into_actor(self)
                .map(move |(ahead_time, joined), act, ctx| {
                    batch.ahead_time = ahead_time;
                    let (runs, stats) = joined.unwrap_or_else(|e| {
                        let run = OutputRun {
                            id: 0,
                            name: "job thread".into(),
                            start_time: SystemTime::now(),
                            duration: Duration::ZERO,
                            result: Err(Error::Internal(format!("the job thread failed: {e}"))),
                        };
                        (vec![run], None)
                    });
                    act.batch_finished(batch, started, runs, stats, ctx);
                }),
        );
        self.run_ahead(ctx);
    }

    fn batch_finished(
        &mut self,
        mut batch: Batch,
        started: Instant,
        runs: Vec<OutputRun>,
        stats: Option<StoreStats>,
        ctx: &mut Context<Self>,
    ) {
        self.running = false;
        let t = batch.time;
        batch.info.processing_delay = Some(started.elapsed());
        let mut first_failure = None;
        // A checkpoint or write-ahead log that cannot be written stops the context: going on
        // would lose the guarantee that a restart resumes where this run stopped. Any such
        // failure of the batch, not only its first failure.
        let mut checkpoint_failure = None;
        for run in runs {
            let output = OutputOperationInfo {
                batch_time: t,
                id: run.id,
                name: run.name.clone(),
                start_time: run.start_time,
                duration: run.duration,
                failure: run.result.as_ref().err().map(|e| e.to_string()),
            };
            self.listeners
                .post(|l| l.on_output_operation_completed(&output));
            if let Err(e) = run.result {
                error!(parent: &self.span, batch_time = %t, output = %run.name, error = %e, "Output operation failed.");
                batch.info.failures.push((run.name, e.to_string()));
                if matches!(e, Error::Checkpoint(_)) && checkpoint_failure.is_none() {
                    checkpoint_failure = Some(e.clone());
                }
                first_failure.get_or_insert(e);
            }
        }
        if let Some(stats) = stats {
            self.listeners.post(|l| l.on_checkpoint_store(&stats));
        }
        info!(
            parent: &self.span,
            batch_time = %t,
            records = batch.info.num_records,
            processing_ms = batch.info.processing_delay.unwrap_or_default().as_millis() as u64,
            "Batch completed."
        );
        for checkpoint in self.graph.take_new_checkpoints() {
            self.listeners.post(|l| l.on_data_checkpoint(&checkpoint));
        }
        // Polled inputs are read by the batch's tasks: their records are known only now.
        let inputs = self.graph.take_input_reports(t, first_failure.is_none());
        let input_records: Vec<(u32, usize)> = inputs
            .inputs
            .iter()
            .map(|i| (i.stream, i.records))
            .collect();
        for input in inputs.inputs {
            batch.info.num_records += input.records;
            self.listeners.post(|l| l.on_polled_input(&input));
        }
        self.listeners.post(|l| l.on_batch_completed(&batch.info));
        if let Some(rc) = &mut self.rate_control {
            let work = batch.work_time();
            for (stream, rate) in
                rc.on_batch_completed(&batch.info, work, &batch.blocks, &self.receivers)
            {
                self.listeners
                    .post(|l| l.on_receiver_rate_limit(stream, Some(rate)));
            }
            let controlled = self.graph.rate_controlled_inputs();
            for (stream, records) in input_records {
                if controlled.contains(&stream) {
                    if let Some(rate) = rc.on_input_completed(stream, &batch.info, work, records) {
                        self.graph.set_input_rate(stream, Some(rate));
                    }
                }
            }
        }
        self.resize_buffers(&batch);
        for block in &batch.blocks {
            if self.graph.is_replayed_block(&block.id) {
                continue;
            }
            if let Some(r) = self.receiver_mut(block.stream) {
                r.source.release(block.num_records);
            }
        }
        self.forget_before(t);
        // A checkpoint failure is reported as the stop's error once stopped, not as `Failed`
        // (which says later batches still run).
        if let (Some(e), None) = (&first_failure, &checkpoint_failure) {
            self.status.send_if_modified(|s| match s {
                Status::Running => {
                    *s = Status::Failed(e.clone());
                    true
                }
                _ => false,
            });
        }
        if let Some(waiter) = self.waiters.remove(&t) {
            let _ = waiter.send(first_failure.map_or(Ok(()), Err));
        }
        // So does an input that could not be read under the `fail` policy: the user asked
        // for the run to stop rather than go on without it.
        if let Some(e) = checkpoint_failure.or(inputs.fatal) {
            self.fail(e, ctx);
            return;
        }
        self.run_next(ctx);
    }

    /// Bounds each receiver's buffer by what the executors process in the buffer time at the
    /// rate this batch processed the receiver's records (a batch without its records keeps
    /// the bound it had).
    fn resize_buffers(&self, batch: &Batch) {
        let Some(processing) = batch.work_time() else {
            return;
        };
        for r in &self.receivers {
            let records = records_of(&batch.blocks, r.stream);
            if records > 0 {
                let bound = self.buffer_bound.after_batch(records, processing);
                if bound != r.source.capacity() {
                    debug!(stream = r.stream, bound, "Receiver buffer bound set.");
                    r.source.set_capacity(bound);
                }
            }
        }
    }

    /// Drops what no stream remembers once batch `t` is done (Spark: `clearMetadata`).
    fn forget_before(&mut self, t: Time) {
        let mut garbage = Vec::new();
        // The write-ahead log keeps their blocks until the metadata checkpoints no longer
        // need them (see `Checkpointer::write`).
        for block in &self.graph.clear_old(t) {
            garbage.extend(self.blocks.remove(&block.id));
        }
        let horizon = (t - self.graph.max_remember()).as_ms();
        garbage.extend(self.blocks.remove_batches_up_to(horizon));
        self.dag.map_outputs().remove_before(horizon + 1);
        // Freeing a batch's records takes milliseconds: not on the thread that dispatches tasks.
        if !garbage.is_empty() {
            tokio::task::spawn_blocking(move || drop(garbage));
        }
    }
}

/// The records of `stream` in `blocks`.
pub(crate) fn records_of(blocks: &[BlockInfo], stream: StreamId) -> usize {
    blocks
        .iter()
        .filter(|b| b.stream == stream)
        .map(|b| b.num_records)
        .sum()
}
