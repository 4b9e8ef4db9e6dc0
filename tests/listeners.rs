//! Streaming listener events: per batch `submitted`, `started`, one `output operation
//! completed` per output, then `completed`, in order, with the batch's received records;
//! receiver events for receiver-fed streams.

mod common;

use std::sync::Arc;

use common::*;
use rivulet::prelude::*;
use tokio::sync::Notify;

const SOURCE: &str = include_str!("listeners.rs");

/// Stores `records`, signals `stored`, then idles until stopped.
struct Fixed {
    records: Vec<String>,
    stored: Arc<Notify>,
    done: bool,
}

impl Receiver for Fixed {
    type Item = String;
    fn name(&self) -> String {
        "fixed".into()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        if self.done {
            std::future::pending::<()>().await;
        }
        sink.store_many(std::mem::take(&mut self.records))
            .await
            .map_err(|_| ReceiverError::fatal("stopped"))?;
        self.done = true;
        self.stored.notify_one();
        Ok(Flow::Continue)
    }
}

/// A compact view of an event: kind, batch time, records or output id.
fn summary(e: &Event) -> String {
    match e {
        Event::Submitted(b) => format!("submitted {} {}", b.batch_time.as_ms(), b.num_records),
        Event::Started(b) => format!("started {} {}", b.batch_time.as_ms(), b.num_records),
        Event::Completed(b) => format!(
            "completed {} {} failures={}",
            b.batch_time.as_ms(),
            b.num_records,
            b.failures.len()
        ),
        Event::Output(o) => format!(
            "output {} #{} failed={}",
            o.batch_time.as_ms(),
            o.id,
            o.failure.is_some()
        ),
        Event::ReceiverStarted(r) => format!("receiver started {}", r.name),
        Event::ReceiverError(r) => format!("receiver error {}", r.name),
        Event::ReceiverStopped(r) => format!("receiver stopped {}", r.name),
    }
}

#[actix::test]
async fn batch_and_output_events_in_order() {
    within(async {
        let ssc = context(2, 2);
        let events = Events::attach(&ssc);
        let stored = Arc::new(Notify::new());
        let lines = ssc.receiver_stream(Fixed {
            records: strings(&["a", "b", "c"]),
            stored: stored.clone(),
            done: false,
        });
        let collect_line = line_of(SOURCE, "let collected = lines.collect_batches();");
        let collected = lines.collect_batches();
        let foreach_line = line_of(SOURCE, "lines.map(|l| l.len()).foreach_batch(");
        lines.map(|l| l.len()).foreach_batch(|t, _| {
            assert!(t != batch_time(2), "fails on purpose");
        });
        ssc.start().await.unwrap();
        tokio::time::timeout(DATA_TIMEOUT, stored.notified())
            .await
            .expect("the receiver stores its records");
        ssc.advance(1).await.unwrap();
        ssc.advance(2)
            .await
            .expect_err("batch 2's second output fails");
        ssc.stop(StopMode::Graceful).await.unwrap();

        assert_eq!(
            collected.batches(),
            vec![strings(&["a", "b", "c"]), vec![], vec![]]
        );
        let all = events.all();
        let batch_events: Vec<String> = all
            .iter()
            .filter(|e| !matches!(e, Event::ReceiverStarted(_) | Event::ReceiverStopped(_)))
            .map(summary)
            .collect();
        assert_eq!(
            batch_events,
            vec![
                "submitted 100 3",
                "started 100 3",
                "output 100 #0 failed=false",
                "output 100 #1 failed=false",
                "completed 100 3 failures=0",
                "submitted 200 0",
                "started 200 0",
                "output 200 #0 failed=false",
                "output 200 #1 failed=true",
                "completed 200 0 failures=1",
                "submitted 300 0",
                "started 300 0",
                "output 300 #0 failed=false",
                "output 300 #1 failed=false",
                "completed 300 0 failures=0",
            ]
        );

        let outputs: Vec<&OutputOperationInfo> = all
            .iter()
            .filter_map(|e| match e {
                Event::Output(o) => Some(o),
                _ => None,
            })
            .collect();
        assert_eq!(
            outputs[0].name,
            format!("collect_batches at tests/listeners.rs:{collect_line}")
        );
        assert_eq!(
            outputs[1].name,
            format!("foreach_batch at tests/listeners.rs:{foreach_line}")
        );
        let failure = outputs[3].failure.as_deref().unwrap();
        assert!(failure.contains("fails on purpose"), "{failure}");

        let completed = events.completed();
        for b in &completed {
            assert!(b.scheduling_delay.is_some(), "{b:?}");
            assert!(b.processing_delay.is_some(), "{b:?}");
            assert!(b.total_delay().is_some(), "{b:?}");
        }
        assert!(completed[0].succeeded());
        assert!(!completed[1].succeeded());
        assert_eq!(
            completed[1].failures[0].0,
            format!("foreach_batch at tests/listeners.rs:{foreach_line}")
        );

        let receiver_started: Vec<String> = all
            .iter()
            .filter(|e| matches!(e, Event::ReceiverStarted(_)))
            .map(summary)
            .collect();
        assert_eq!(receiver_started, vec!["receiver started fixed"]);
    })
    .await
}

/// Every receiver stopped by a graceful stop gets its `on_receiver_stopped` event, with its
/// final counters. Repeated because a lost event is a race.
#[actix::test]
async fn graceful_stop_reports_each_receiver_stopped() {
    const ROUNDS: usize = 30;
    within(async {
        let mut lost = Vec::new();
        for round in 0..ROUNDS {
            let ssc = context(2, 2);
            let events = Events::attach(&ssc);
            let stored = Arc::new(Notify::new());
            ssc.receiver_stream(Fixed {
                records: strings(&["a", "b"]),
                stored: stored.clone(),
                done: false,
            })
            .collect_batches();
            ssc.start().await.unwrap();
            tokio::time::timeout(DATA_TIMEOUT, stored.notified())
                .await
                .expect("the receiver stores its records");
            ssc.advance(1).await.unwrap();
            ssc.stop(StopMode::Graceful).await.unwrap();
            let stopped = events.receiver_stopped();
            match stopped.as_slice() {
                [info] => {
                    assert_eq!(info.name, "fixed");
                    assert!(!info.active);
                    assert_eq!(info.metrics.records_stored, 2);
                }
                [] => lost.push(round),
                more => panic!("round {round}: several stopped events: {more:?}"),
            }
        }
        assert!(
            lost.is_empty(),
            "on_receiver_stopped was not delivered in rounds {lost:?} of {ROUNDS}"
        );
    })
    .await
}

#[actix::test]
async fn socket_stream_reports_its_receiver_start() {
    within(async {
        let listener = listen(0);
        let port = listener.local_addr().unwrap().port();
        let (_more, _server) = serve_and_hold(listener, text(&strings(&["hello"])));
        let ssc = context(2, 2);
        let events = Events::attach(&ssc);
        let lines = ssc.socket_text_stream("127.0.0.1", port).collect_batches();
        ssc.start().await.unwrap();
        let started = events.wait_receiver_started().await;
        assert_eq!(started.name, format!("socket 127.0.0.1:{port}"));
        assert!(started.active);
        assert_eq!(started.stream, 0);
        advance_until(&ssc, || !lines.records().is_empty()).await;
        assert_eq!(lines.records(), strings(&["hello"]));
        ssc.stop(StopMode::Graceful).await.unwrap();
    })
    .await
}

#[actix::test]
async fn a_listener_added_after_start_sees_later_events() {
    within(async {
        let ssc = context(1, 1);
        ssc.queue_stream(vec![vec![1], vec![2]]).collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        let events = Events::attach(&ssc);
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let times: Vec<i64> = events
            .completed()
            .iter()
            .map(|b| b.batch_time.as_ms())
            .collect();
        assert_eq!(times, vec![200]);
    })
    .await
}

#[actix::test]
async fn queue_streams_count_their_records_from_the_batch_s_submission() {
    within(async {
        let ssc = context(1, 1);
        let numbers = ssc.queue_stream(vec![vec![1, 2, 3], vec![4, 5]]);
        let letters = ssc.queue_stream(vec![
            vec!["a".to_string()],
            vec![],
            vec!["b".into(), "c".into(), "d".into(), "e".into()],
        ]);
        numbers.collect_batches();
        letters.collect_batches();
        let events = Events::attach(&ssc);
        ssc.start().await.unwrap();
        ssc.advance(4).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let of_kind = |kind: &str| -> Vec<String> {
            events
                .all()
                .iter()
                .map(summary)
                .filter(|s| s.starts_with(kind))
                .collect()
        };
        // 3 + 1, 2 + 0, 0 + 4, then past both queues' ends.
        assert_eq!(
            of_kind("submitted"),
            [
                "submitted 100 4",
                "submitted 200 2",
                "submitted 300 4",
                "submitted 400 0"
            ]
        );
        assert_eq!(
            of_kind("completed"),
            [
                "completed 100 4 failures=0",
                "completed 200 2 failures=0",
                "completed 300 4 failures=0",
                "completed 400 0 failures=0"
            ]
        );
    })
    .await
}
