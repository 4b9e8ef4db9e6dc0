//! Stopping: `StopMode::Graceful` processes every record already stored by a receiver (but
//! not yet in a batch) before stopping; `StopMode::Now` stops at once.

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
