//! Input DStreams: receiver-fed streams (Spark: `ReceiverInputDStream`) and the queue stream
//! for tests (Spark: `QueueInputDStream`).

use std::sync::Arc;
use std::time::Duration;

use crate::data::Data;
use crate::dstream::{DStream, DStreamGraph};
use crate::error::OpInfo;
use crate::rdd::{block_rdd, empty_rdd};
use crate::receiver::{BlockBuffer, BlockSink, Flow, Receiver, ReceiverError, ReceiverSlot};
use crate::time::Time;

impl DStreamGraph {
    /// A stream fed by `receiver` (Spark: `receiverStream`). Batch `t`'s RDD has one
    /// partition per block the receiver's records were sealed into during
    /// `(t - batch_interval, t]`, in the order they were sealed.
    #[track_caller]
    pub fn receiver_stream<R: Receiver>(&self, receiver: R) -> DStream<R::Item> {
        self.receiver_stream_op(OpInfo::caller("receiver_stream"), receiver)
    }

    /// [`receiver_stream`](DStreamGraph::receiver_stream) named after a caller's operator.
    pub fn receiver_stream_op<R: Receiver>(&self, op: OpInfo, receiver: R) -> DStream<R::Item> {
        self.receiver_stream_with_buffer(op, receiver).0
    }

    /// A stream whose records are pushed into its receiver buffer by handles (actors, tasks,
    /// threads) rather than pulled by a receiver: records stored in the returned buffer
    /// (`store` waits while it is full: backpressure) are sealed into blocks and batches like
    /// a receiver's. The runtime supervises a placeholder receiver named `name` that only
    /// waits; stopping the context closes the buffer, so later stores fail.
    pub fn pushed_stream_op<T: Data>(
        &self,
        op: OpInfo,
        name: String,
    ) -> (DStream<T>, Arc<BlockBuffer<T>>) {
        self.receiver_stream_with_buffer(
            op,
            Pushed {
                name,
                _records: std::marker::PhantomData,
            },
        )
    }

    fn receiver_stream_with_buffer<R: Receiver>(
        &self,
        op: OpInfo,
        receiver: R,
    ) -> (DStream<R::Item>, Arc<BlockBuffer<R::Item>>) {
        let shared = self.shared().clone();
        let (stream, buffer) = shared.add_receiver(|id, capacity, max_block| {
            let b = Arc::new(BlockBuffer::new(id, capacity).with_max_block(max_block));
            (ReceiverSlot::with_buffer(id, receiver, b.clone()), b)
        });
        let g = shared.clone();
        let stream_node = DStream::new_node(
            &shared,
            op,
            shared.batch_interval(),
            Vec::new(),
            Duration::ZERO,
            move |_, t| {
                Ok(Some(block_rdd::<R::Item>(
                    g.rdd_context(),
                    op,
                    g.allocated_blocks(stream, t),
                )))
            },
        );
        (stream_node, buffer)
    }

    /// A stream whose `k`-th batch (at `zero + k * batch_interval`, from `k = 1`) holds
    /// `batches[k - 1]`, cut into the default parallelism's number of partitions; later
    /// batches are empty RDDs (Spark: `queueStream` with `oneAtATime`). Batch `k` holds its
    /// records whatever asks for it and when, so windows with a large slide see the right
    /// batches.
    #[track_caller]
    pub fn queue_stream<T: Data>(&self, batches: Vec<Vec<T>>) -> DStream<T> {
        self.queue_stream_op(OpInfo::caller("queue_stream"), batches)
    }

    /// [`queue_stream`](DStreamGraph::queue_stream) named after a caller's operator.
    pub fn queue_stream_op<T: Data>(&self, op: OpInfo, batches: Vec<Vec<T>>) -> DStream<T> {
        let shared = self.shared().clone();
        let batches = Arc::new(batches);
        let (ctx, g) = (shared.rdd_context().clone(), shared.clone());
        // Batch `k` (from 1) at `zero + k * batch_interval` holds `batches[k - 1]`.
        let batch_at = move |t: Time| {
            let zero = g.zero_time().unwrap_or(Time::ZERO);
            let k = (t - zero).as_millis() / g.batch_interval().as_millis().max(1);
            usize::try_from(k).ok().and_then(|k| k.checked_sub(1))
        };
        let (counted, at) = (batches.clone(), batch_at.clone());
        shared.add_queue(Arc::new(move |t| {
            at(t).and_then(|i| counted.get(i)).map_or(0, Vec::len)
        }));
        DStream::new_node(
            &shared,
            op,
            shared.batch_interval(),
            Vec::new(),
            Duration::ZERO,
            move |_, t| {
                let records = batch_at(t).and_then(|i| batches.get(i));
                Ok(Some(match records {
                    Some(records) => {
                        ctx.parallelize_op(op, records.clone(), ctx.default_parallelism())
                    }
                    None => empty_rdd(&ctx, op),
                }))
            },
        )
    }
}

/// The placeholder receiver of a pushed stream: its records come from handles to its buffer,
/// so it only waits until the context stops it.
struct Pushed<T> {
    name: String,
    _records: std::marker::PhantomData<fn() -> T>,
}

impl<T: Data> Receiver for Pushed<T> {
    type Item = T;
    fn name(&self) -> String {
        self.name.clone()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, _sink: &mut BlockSink<T>) -> Result<Flow, ReceiverError> {
        std::future::pending::<()>().await;
        Ok(Flow::Finished)
    }
}
