//! Input DStreams: receiver-fed streams (Spark: `ReceiverInputDStream`) and the queue stream
//! for tests (Spark: `QueueInputDStream`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::data::Data;
use crate::dstream::{lock, DStream, DStreamGraph};
use crate::error::OpInfo;
use crate::rdd::{block_rdd, empty_rdd};
use crate::receiver::{Receiver, ReceiverSlot};

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
        let shared = self.shared().clone();
        let stream = shared.add_receiver(|id, capacity| ReceiverSlot::new(id, receiver, capacity));
        let g = shared.clone();
        DStream::new_node(
            &shared,
            op,
            shared.batch_interval(),
            Vec::new(),
            Duration::ZERO,
            move |t| {
                Ok(Some(block_rdd::<R::Item>(
                    g.rdd_context(),
                    op,
                    g.allocated_blocks(stream, t),
                )))
            },
        )
    }

    /// A stream whose batch `i` holds `batches[i]`, cut into the default parallelism's
    /// number of partitions; after the last, batches are empty RDDs (Spark: `queueStream`
    /// with `oneAtATime`).
    #[track_caller]
    pub fn queue_stream<T: Data>(&self, batches: Vec<Vec<T>>) -> DStream<T> {
        self.queue_stream_op(OpInfo::caller("queue_stream"), batches)
    }

    /// [`queue_stream`](DStreamGraph::queue_stream) named after a caller's operator.
    pub fn queue_stream_op<T: Data>(&self, op: OpInfo, batches: Vec<Vec<T>>) -> DStream<T> {
        let shared = self.shared().clone();
        let queue: Arc<Mutex<VecDeque<Vec<T>>>> = Arc::new(Mutex::new(batches.into()));
        let ctx = shared.rdd_context().clone();
        DStream::new_node(
            &shared,
            op,
            shared.batch_interval(),
            Vec::new(),
            Duration::ZERO,
            move |_| {
                let next = lock(&queue).pop_front();
                Ok(Some(match next {
                    Some(records) => ctx.parallelize_op(op, records, ctx.default_parallelism()),
                    None => empty_rdd(&ctx, op),
                }))
            },
        )
    }
}
