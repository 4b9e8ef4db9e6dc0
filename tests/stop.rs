//! Stopping: `StopMode::Graceful` processes every record already stored by a receiver (but
//! not yet in a batch) before stopping, and then cuts no new batch; `StopMode::Now` stops at
//! once.

mod common;

use std::sync::Arc;

use common::*;
use rivulet::prelude::*;
use tokio::sync::Notify;

/// Stores `0..half`, signals `stored`, waits for `go`, stores `half..2*half`, signals
/// `stored` again, then idles until stopped.
struct TwoPhases {
    half: u32,
    phase: u8,
    stored: Arc<Notify>,
    go: Arc<Notify>,
}

impl Receiver for TwoPhases {
    type Item = u32;
    fn name(&self) -> String {
        "two-phases".into()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, sink: &mut BlockSink<u32>) -> Result<Flow, ReceiverError> {
        let range = match self.phase {
            0 => 0..self.half,
            1 => {
                self.go.notified().await;
                self.half..2 * self.half
            }
            _ => {
                std::future::pending::<()>().await;
                unreachable!()
            }
        };
        sink.store_many(range.collect())
            .await
            .map_err(|_| ReceiverError::fatal("stopped"))?;
        self.phase += 1;
        self.stored.notify_one();
        Ok(Flow::Continue)
    }
}

#[actix::test]
async fn graceful_stop_processes_stored_records() {
    within(async {
        let (stored, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let ssc = context(2, 2);
        let events = Events::attach(&ssc);
        let numbers = ssc.receiver_stream(TwoPhases {
            half: 500,
            phase: 0,
            stored: stored.clone(),
            go: go.clone(),
        });
        let out = numbers.collect_batches();
        let sums = numbers.reduce(|a, b| a + b).collect_batches();
        ssc.start().await.unwrap();

        tokio::time::timeout(DATA_TIMEOUT, stored.notified())
            .await
            .expect("phase 1 stored");
        ssc.advance(1).await.unwrap();
        assert_eq!(out.records(), (0..500).collect::<Vec<u32>>());

        go.notify_one();
        tokio::time::timeout(DATA_TIMEOUT, stored.notified())
            .await
            .expect("phase 2 stored");
        // Phase 2's records are stored but in no batch yet: the stop must process them.
        ssc.stop(StopMode::Graceful).await.unwrap();

        assert_eq!(out.records(), (0..1000).collect::<Vec<u32>>());
        let times: Vec<i64> = out.timed_batches().iter().map(|(t, _)| t.as_ms()).collect();
        assert_eq!(times, vec![100, 200]);
        assert_eq!(
            sums.batches(),
            vec![vec![(0..500).sum::<u32>()], vec![(500..1000).sum::<u32>()]]
        );
        assert_eq!(events.records_completed(), 1000);
        assert!(matches!(ssc.status(), Some(Status::Stopped(None))));
        ssc.await_termination().await.expect("stopped cleanly");
    })
    .await
}

#[actix::test]
async fn graceful_stop_without_pending_records_runs_no_extra_batch() {
    within(async {
        let ssc = context(2, 2);
        let out = ssc.queue_stream(vec![vec![1, 2]]).collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(out.batches(), vec![vec![1, 2], vec![]]);
    })
    .await
}

#[actix::test]
async fn stop_now_stops_at_once() {
    within(async {
        let (stored, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let ssc = context(2, 2);
        let out = ssc
            .receiver_stream(TwoPhases {
                half: 10,
                phase: 0,
                stored: stored.clone(),
                go,
            })
            .collect_batches();
        ssc.start().await.unwrap();
        tokio::time::timeout(DATA_TIMEOUT, stored.notified())
            .await
            .expect("phase 1 stored");
        ssc.stop(StopMode::Now).await.unwrap();
        assert!(matches!(ssc.status(), Some(Status::Stopped(None))));
        assert!(out.is_empty(), "no batch runs after stop(Now)");
        assert!(matches!(ssc.advance(1).await, Err(Error::NotRunning(_))));
        ssc.await_termination().await.expect("stopped cleanly");
    })
    .await
}

/// On the system clock, a graceful stop of a pipeline that has fallen behind and whose
/// stream is not fed by a receiver (a `transform` over a static RDD, so every batch holds
/// records, and each takes three batch intervals): the stop runs the batches already cut,
/// then ends. It used to cut a new batch at every tick while draining, so the backlog never
/// emptied and the stop never returned. As Spark's `JobGenerator`, which stops its timer
/// once every received block is in a batch.
#[actix::test]
async fn graceful_stop_of_a_backlog_without_receivers_ends() {
    within(async {
        let ssc = StreamingContext::new(
            config(1, 1)
                .manual_clock(false)
                .batch_interval(std::time::Duration::from_millis(10)),
        )
        .unwrap();
        let events = Events::attach(&ssc);
        let data = ssc.parallelize(vec![1u32, 2, 3], 1);
        let ran: Arc<std::sync::Mutex<Vec<(Time, Vec<u32>)>>> = Arc::default();
        let (record, one_more) = (ran.clone(), Arc::new(Notify::new()));
        let notify = one_more.clone();
        ssc.queue_stream::<u32>(Vec::new())
            .transform(move |_, _| data.clone())
            .foreach_batch(move |t, records| {
                // Slow processing: three batch intervals per batch.
                std::thread::sleep(std::time::Duration::from_millis(30));
                record.lock().unwrap().push((t, records));
                notify.notify_one();
            });
        ssc.start().await.unwrap();
        while ran.lock().unwrap().len() < 3 {
            tokio::time::timeout(DATA_TIMEOUT, one_more.notified())
                .await
                .expect("three batches ran");
        }

        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            ssc.stop(StopMode::Graceful),
        )
        .await
        .expect("the graceful stop ended once the backlog was processed")
        .unwrap();
        assert!(matches!(ssc.status(), Some(Status::Stopped(None))));

        // Every batch cut was processed, with its records, in order.
        let submitted: Vec<Time> = events
            .all()
            .iter()
            .filter_map(|e| match e {
                Event::Submitted(b) => Some(b.batch_time),
                _ => None,
            })
            .collect();
        let ran = ran.lock().unwrap().clone();
        assert_eq!(
            ran.iter().map(|(t, _)| *t).collect::<Vec<_>>(),
            submitted,
            "one output per batch cut"
        );
        assert!(ran.iter().all(|(_, records)| records == &vec![1, 2, 3]));
        assert_eq!(events.completed().len(), submitted.len());
    })
    .await
}

/// On the system clock with a one-hour batch interval, a graceful stop does not wait for
/// the next tick: the records the receiver stored are cut into the last batch at once,
/// with the time that batch would have had (the next multiple of the interval), and
/// processed. It used to hold the stop until the tick, up to a batch interval (a day at most).
#[actix::test]
async fn graceful_stop_under_a_long_batch_interval_does_not_wait_for_the_tick() {
    within(async {
        let hour = std::time::Duration::from_secs(3600);
        let ssc =
            StreamingContext::new(config(1, 1).manual_clock(false).batch_interval(hour)).unwrap();
        let (stored, go) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let out = ssc
            .receiver_stream(TwoPhases {
                half: 100,
                phase: 0,
                stored: stored.clone(),
                go,
            })
            .collect_batches();
        ssc.start().await.unwrap();
        tokio::time::timeout(DATA_TIMEOUT, stored.notified())
            .await
            .expect("phase 1 stored");
        let before_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        tokio::time::timeout(DATA_TIMEOUT, ssc.stop(StopMode::Graceful))
            .await
            .expect("the graceful stop ended without waiting for the hourly tick")
            .unwrap();
        assert!(matches!(ssc.status(), Some(Status::Stopped(None))));
        let batches = out.timed_batches();
        assert_eq!(batches.len(), 1, "one batch: the last, cut at the stop");
        let (time, records) = &batches[0];
        assert_eq!(records, &(0..100).collect::<Vec<u32>>());
        let hour_ms = 3_600_000;
        assert_eq!(time.as_ms() % hour_ms, 0, "a batch time on the interval");
        assert!(
            time.as_ms() > before_ms && time.as_ms() <= before_ms + hour_ms,
            "the next boundary after the stop: {time}"
        );
    })
    .await
}
