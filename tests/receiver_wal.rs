//! The receiver write-ahead log: a receiver that acknowledges its source only after
//! `store_reliably` returned loses nothing when the process dies with received records not
//! yet processed: after a restart from the checkpoint directory, the logged blocks are
//! replayed into batches, and the source resumes after what it acknowledged. Every record
//! lands in exactly one batch across the two runs.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::within;
use rivulet::prelude::*;

/// A replayable source of `0..total`: stores chunks of 10 reliably and acknowledges
/// (advances `acked`) only after each chunk's block is in the write-ahead log.
struct Acking {
    acked: Arc<AtomicU64>,
    total: u64,
}

impl Receiver for Acking {
    type Item = u64;
    fn name(&self) -> String {
        "acking source".into()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, sink: &mut BlockSink<u64>) -> Result<Flow, ReceiverError> {
        let from = self.acked.load(Ordering::SeqCst);
        if from >= self.total {
            return Ok(Flow::Finished);
        }
        let to = (from + 10).min(self.total);
        if sink.store_reliably((from..to).collect()).await.is_err() {
            return Ok(Flow::Finished);
        }
        self.acked.store(to, Ordering::SeqCst);
        Ok(Flow::Continue)
    }
}

const INTERVAL: Duration = Duration::from_secs(5);

fn config(manual: bool) -> StreamingConfig {
    StreamingConfig::new()
        .batch_interval(INTERVAL)
        .block_interval(Duration::from_millis(10))
        .executors(2)
        .default_parallelism(2)
        .manual_clock(manual)
        .receiver_wal(true)
}

type Out = Arc<Mutex<Option<BatchCollector<u64>>>>;

/// Opens the checkpoint directory, retrying while the previous run's store is still being
/// released (its actors stop asynchronously).
fn open(
    dir: &std::path::Path,
    manual: bool,
    acked: &Arc<AtomicU64>,
    out: &Out,
) -> StreamingContext {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let build = |ssc: &StreamingContext| -> Result<()> {
            let records = ssc.receiver_stream(Acking {
                acked: acked.clone(),
                total: 100,
            });
            *out.lock().unwrap() = Some(records.collect_batches());
            Ok(())
        };
        match StreamingContext::get_or_create(dir, config(manual), build) {
            Ok(ssc) => return ssc,
            Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("cannot open the checkpoint directory: {e}"),
        }
    }
}

#[actix::test]
async fn acknowledged_records_survive_a_crash_exactly_once() {
    within(async {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("ckpt");
        let acked = Arc::new(AtomicU64::new(0));

        // Run 1, system clock, 5 s batches: keep clear of a batch boundary so that the
        // records are received and logged but not processed when the run dies.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let to_boundary = 5_000 - now_ms % 5_000;
        if to_boundary < 2_000 {
            std::thread::sleep(Duration::from_millis(to_boundary + 50));
        }
        let out1: Out = Arc::default();
        let ssc = open(&dir, false, &acked, &out1);
        ssc.start().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while acked.load(Ordering::SeqCst) < 100 {
            assert!(
                Instant::now() < deadline,
                "the source was not acknowledged in time"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // The process dies: nothing received is processed.
        ssc.stop(StopMode::Now).await.unwrap();
        let first: Vec<u64> = out1.lock().unwrap().take().unwrap().records();
        drop(ssc);

        // Run 2 restarts from the checkpoint (manual clock: batch times continue from it).
        let out2: Out = Arc::default();
        let ssc = open(&dir, true, &acked, &out2);
        assert!(
            ssc.restored_batch().is_some(),
            "the restart read the checkpoint"
        );
        ssc.start().await.unwrap();
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let second: Vec<u64> = out2.lock().unwrap().take().unwrap().records();

        assert!(
            !second.is_empty(),
            "records were replayed from the write-ahead log"
        );
        let mut all: Vec<u64> = first.into_iter().chain(second).collect();
        all.sort();
        assert_eq!(
            all,
            (0..100).collect::<Vec<u64>>(),
            "every record exactly once"
        );
    })
    .await;
}

#[actix::test]
async fn the_log_needs_a_checkpoint_directory() {
    let err = StreamingContext::new(StreamingConfig::new().receiver_wal(true)).unwrap_err();
    assert!(
        err.to_string()
            .contains("receiver_wal needs checkpoint_dir"),
        "{err}"
    );
}
