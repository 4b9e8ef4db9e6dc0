//! Listener events as values (Spark: the `StreamingListenerEvent` case classes): what an
//! event log stores, one per line, and what a replay hands back to any listener.

use serde::{Deserialize, Serialize};

use super::{
    BatchInfo, JobInfo, OutputOperationInfo, PolledInputInfo, ReceiverInfo, StreamingListener,
};
use crate::block::StreamId;
use crate::checkpoint::{DataCheckpoint, StoreStats};

/// One call of a [`StreamingListener`] method, with its argument: each variant is named
/// after the method it stands for (`BatchSubmitted` for `on_batch_submitted`, ...).
/// Serializable, so that a run's events can be written down and replayed later (the event
/// log and its history server; Spark: `spark.eventLog.dir` and the History Server).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamingEvent {
    /// [`StreamingListener::on_batch_submitted`].
    BatchSubmitted(BatchInfo),
    /// [`StreamingListener::on_batch_started`].
    BatchStarted(BatchInfo),
    /// [`StreamingListener::on_batch_completed`].
    BatchCompleted(BatchInfo),
    /// [`StreamingListener::on_polled_input`].
    PolledInput(PolledInputInfo),
    /// [`StreamingListener::on_job_completed`].
    JobCompleted(JobInfo),
    /// [`StreamingListener::on_data_checkpoint`].
    DataCheckpoint(DataCheckpoint),
    /// [`StreamingListener::on_checkpoint_store`].
    CheckpointStore(StoreStats),
    /// [`StreamingListener::on_output_operation_completed`].
    OutputOperationCompleted(OutputOperationInfo),
    /// [`StreamingListener::on_receiver_started`].
    ReceiverStarted(ReceiverInfo),
    /// [`StreamingListener::on_receiver_error`].
    ReceiverError(ReceiverInfo),
    /// [`StreamingListener::on_receiver_stopped`].
    ReceiverStopped(ReceiverInfo),
    /// [`StreamingListener::on_receiver_input_lost`].
    ReceiverInputLost(ReceiverInfo),
    /// [`StreamingListener::on_receiver_rate_limit`].
    ReceiverRateLimit {
        /// The input stream.
        stream: StreamId,
        /// The new limit in records per second; `None`: no limit.
        records_per_sec: Option<f64>,
    },
}

impl StreamingEvent {
    /// Calls the method of `listener` this event stands for.
    pub fn deliver(&self, listener: &mut dyn StreamingListener) {
        match self {
            StreamingEvent::BatchSubmitted(b) => listener.on_batch_submitted(b),
            StreamingEvent::BatchStarted(b) => listener.on_batch_started(b),
            StreamingEvent::BatchCompleted(b) => listener.on_batch_completed(b),
            StreamingEvent::PolledInput(p) => listener.on_polled_input(p),
            StreamingEvent::JobCompleted(j) => listener.on_job_completed(j),
            StreamingEvent::DataCheckpoint(c) => listener.on_data_checkpoint(c),
            StreamingEvent::CheckpointStore(s) => listener.on_checkpoint_store(s),
            StreamingEvent::OutputOperationCompleted(o) => {
                listener.on_output_operation_completed(o)
            }
            StreamingEvent::ReceiverStarted(r) => listener.on_receiver_started(r),
            StreamingEvent::ReceiverError(r) => listener.on_receiver_error(r),
            StreamingEvent::ReceiverStopped(r) => listener.on_receiver_stopped(r),
            StreamingEvent::ReceiverInputLost(r) => listener.on_receiver_input_lost(r),
            StreamingEvent::ReceiverRateLimit {
                stream,
                records_per_sec,
            } => listener.on_receiver_rate_limit(*stream, *records_per_sec),
        }
    }
}

/// Turns every listener call into a [`StreamingEvent`] handed to `send` (the event's own
/// clone): the one place that maps methods to events, for listeners that forward events
/// elsewhere (a queue, a file).
#[derive(Debug)]
pub struct EventForwarder<F> {
    send: F,
}

impl<F: FnMut(StreamingEvent) + Send + 'static> EventForwarder<F> {
    /// A listener calling `send` with each event.
    pub fn new(send: F) -> Self {
        EventForwarder { send }
    }
}

impl<F: FnMut(StreamingEvent) + Send + 'static> StreamingListener for EventForwarder<F> {
    fn on_batch_submitted(&mut self, batch: &BatchInfo) {
        (self.send)(StreamingEvent::BatchSubmitted(batch.clone()));
    }
    fn on_batch_started(&mut self, batch: &BatchInfo) {
        (self.send)(StreamingEvent::BatchStarted(batch.clone()));
    }
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        (self.send)(StreamingEvent::BatchCompleted(batch.clone()));
    }
    fn on_polled_input(&mut self, input: &PolledInputInfo) {
        (self.send)(StreamingEvent::PolledInput(input.clone()));
    }
    fn on_job_completed(&mut self, job: &JobInfo) {
        (self.send)(StreamingEvent::JobCompleted(job.clone()));
    }
    fn on_data_checkpoint(&mut self, checkpoint: &DataCheckpoint) {
        (self.send)(StreamingEvent::DataCheckpoint(checkpoint.clone()));
    }
    fn on_checkpoint_store(&mut self, stats: &StoreStats) {
        (self.send)(StreamingEvent::CheckpointStore(*stats));
    }
    fn on_output_operation_completed(&mut self, output: &OutputOperationInfo) {
        (self.send)(StreamingEvent::OutputOperationCompleted(output.clone()));
    }
    fn on_receiver_started(&mut self, receiver: &ReceiverInfo) {
        (self.send)(StreamingEvent::ReceiverStarted(receiver.clone()));
    }
    fn on_receiver_error(&mut self, receiver: &ReceiverInfo) {
        (self.send)(StreamingEvent::ReceiverError(receiver.clone()));
    }
    fn on_receiver_stopped(&mut self, receiver: &ReceiverInfo) {
        (self.send)(StreamingEvent::ReceiverStopped(receiver.clone()));
    }
    fn on_receiver_input_lost(&mut self, receiver: &ReceiverInfo) {
        (self.send)(StreamingEvent::ReceiverInputLost(receiver.clone()));
    }
    fn on_receiver_rate_limit(&mut self, stream: StreamId, records_per_sec: Option<f64>) {
        (self.send)(StreamingEvent::ReceiverRateLimit {
            stream,
            records_per_sec,
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::time::Time;

    fn batch(ms: i64) -> BatchInfo {
        BatchInfo {
            batch_time: Time::from_ms(ms),
            num_records: 3,
            stream_records: [(0, 3)].into_iter().collect(),
            submission_time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            scheduling_delay: Some(Duration::from_micros(250)),
            processing_delay: None,
            failures: vec![("print".into(), "boom".into())],
            num_output_ops: 1,
        }
    }

    #[test]
    fn an_event_delivered_to_a_forwarder_comes_out_as_itself() {
        let events = vec![
            StreamingEvent::BatchSubmitted(batch(1_000)),
            StreamingEvent::BatchCompleted(batch(2_000)),
            StreamingEvent::ReceiverRateLimit {
                stream: 2,
                records_per_sec: Some(12.5),
            },
            StreamingEvent::CheckpointStore(StoreStats {
                size_bytes: Some(10),
                live_bytes: 4,
                compactions: 1,
                last_compaction: Some(Duration::from_millis(3)),
            }),
        ];
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        let mut forwarder = EventForwarder::new(move |e| sink.lock().unwrap().push(e));
        for e in &events {
            e.deliver(&mut forwarder);
        }
        assert_eq!(*seen.lock().unwrap(), events);
    }

    #[test]
    fn events_survive_a_json_round_trip() {
        let job = JobInfo {
            id: 7,
            output_op: Some(0),
            batch_time: Some(Time::from_ms(3_000)),
            operator: "collect at src/main.rs:1:1".into(),
            stages: vec![
                super::super::StageInfo {
                    id: 0,
                    kind: "shuffle map".into(),
                    operator: "reduce_by_key".into(),
                    tasks: 2,
                    launched: 3,
                    retries: 1,
                    speculative: 0,
                    duration: Duration::from_nanos(1_500),
                },
                super::super::StageInfo {
                    id: 1,
                    kind: "result".into(),
                    operator: "collect".into(),
                    tasks: 2,
                    launched: 2,
                    retries: 0,
                    speculative: 0,
                    duration: Duration::from_millis(4),
                },
            ],
            duration: Duration::from_millis(5),
            failure: None,
        };
        for e in [
            StreamingEvent::JobCompleted(job),
            StreamingEvent::BatchStarted(batch(4_000)),
        ] {
            let line = serde_json::to_string(&e).unwrap();
            assert!(!line.contains('\n'));
            assert_eq!(serde_json::from_str::<StreamingEvent>(&line).unwrap(), e);
        }
        let err = serde_json::from_str::<StreamingEvent>(r#"{"BatchDone":{}}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown variant `BatchDone`"),
            "{err}"
        );
    }
}
