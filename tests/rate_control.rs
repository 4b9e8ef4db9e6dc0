//! Rate control (Spark's backpressure) through the public API: a receiver's rate follows the
//! speed its batches are processed at (capped at `max_rate_per_receiver`), sends beyond the
//! rate wait, and nothing accepted is lost.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{config, within};
use rivulet::prelude::*;

/// Runs `batches` batches of `per_batch` events, each event costing `cost` to process;
/// returns the rate limit after them and the events counted.
async fn run(
    cfg: StreamingConfig,
    per_batch: u32,
    batches: u32,
    cost: Duration,
) -> (Option<f64>, u64) {
    let ssc = StreamingContext::new(cfg).unwrap();
    let (events, source) = ssc.actor_stream::<u32>("events");
    let counted = events
        .map(move |x| {
            std::thread::sleep(cost);
            x
        })
        .count()
        .collect_batches();
    ssc.start().await.unwrap();
    for b in 0..batches {
        source
            .send_many((0..per_batch).map(|i| b * per_batch + i).collect())
            .await
            .unwrap();
        ssc.advance(1).await.unwrap();
    }
    let rate = source.rate_limit();
    ssc.stop(StopMode::Graceful).await.unwrap();
    (rate, counted.records().into_iter().sum())
}

#[actix::test]
async fn a_fast_pipeline_is_capped_at_the_maximum_rate() {
    within(async {
        let cfg = config(1, 1).max_rate_per_receiver(5_000.0);
        let (rate, counted) = run(cfg, 50, 3, Duration::ZERO).await;
        // 50 events processed in well under 10 ms: far above 5,000/s, so the cap applies.
        assert_eq!(rate, Some(5_000.0));
        assert_eq!(counted, 150, "nothing lost");
    })
    .await;
}

#[actix::test]
async fn a_slow_pipeline_gets_the_rate_it_can_process() {
    within(async {
        // 50 events at 2 ms each take at least 100 ms: at most 500 events/s.
        let cfg = config(1, 1).max_rate_per_receiver(5_000.0);
        let (rate, counted) = run(cfg, 50, 3, Duration::from_millis(2)).await;
        let rate = rate.expect("an estimate after the second batch");
        assert!((100.0..=500.0).contains(&rate), "rate {rate}");
        assert_eq!(counted, 150);
    })
    .await;
}

#[actix::test]
async fn without_backpressure_only_the_maximum_applies() {
    within(async {
        let cfg = config(1, 1)
            .backpressure(false)
            .max_rate_per_receiver(2_000.0);
        let (rate, _) = run(cfg, 50, 3, Duration::from_millis(2)).await;
        assert_eq!(rate, Some(2_000.0));
        let (rate, _) = run(config(1, 1).backpressure(false), 5, 2, Duration::ZERO).await;
        assert_eq!(rate, None);
    })
    .await;
}

#[actix::test]
async fn sends_beyond_the_initial_rate_wait_for_it() {
    within(async {
        let ssc = StreamingContext::new(config(1, 1).backpressure_initial_rate(1_000.0)).unwrap();
        let (events, source) = ssc.actor_stream::<u32>("burst");
        let out = events.collect_batches();
        ssc.start().await.unwrap();
        assert_eq!(source.rate_limit(), Some(1_000.0));
        let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let sender = {
            let (source, sent) = (source.clone(), sent.clone());
            actix::spawn(async move {
                for x in 0..10_000u32 {
                    if source.send(x).await.is_err() {
                        break;
                    }
                    sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        };
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let accepted = sent.load(std::sync::atomic::Ordering::SeqCst) as f64;
        let elapsed = start.elapsed().as_secs_f64();
        // At most the rate times the time that passed, plus one burst (100 ms of events).
        assert!(
            accepted <= 1_000.0 * elapsed + 100.0 + 1.0,
            "{accepted} in {elapsed} s"
        );
        assert!(accepted >= 1.0, "some were accepted");
        ssc.stop(StopMode::Graceful).await.unwrap();
        sender.await.unwrap();
        let accepted = sent.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(
            out.records().len() as u64,
            accepted,
            "every accepted event is in a batch"
        );
    })
    .await;
}

/// The largest scheduling delay among completed batches.
#[derive(Clone, Default)]
struct MaxDelay(Arc<std::sync::Mutex<Duration>>);

impl StreamingListener for MaxDelay {
    fn on_batch_completed(&mut self, batch: &BatchInfo) {
        let mut m = self.0.lock().unwrap();
        *m = (*m).max(batch.scheduling_delay.unwrap_or_default());
    }
}

#[actix::test]
async fn ten_times_overload_keeps_the_scheduling_delay_bounded_and_loses_nothing() {
    overload(false).await;
}

/// With timestep pipelining the estimator must still see each batch's work: its processing
/// delay alone (the map stages having run ahead) made batches look fast, and this overload
/// then built a backlog of over 20 s under a loaded machine.
#[actix::test]
async fn ten_times_overload_with_pipelining_keeps_the_scheduling_delay_bounded() {
    overload(true).await;
}

async fn overload(pipelining: bool) {
    tokio::time::timeout(Duration::from_secs(60), async {
        // One executor at ~100 µs per record: ~10,000 records/s. The source offers ~10x that
        // for 3 s, starting from a bounded initial rate (so the first batch is bounded too).
        let ssc = StreamingContext::new(
            StreamingConfig::new()
                .batch_interval(Duration::from_millis(100))
                .executors(1)
                .backpressure_initial_rate(2_000.0)
                .pipelining(pipelining),
        )
        .unwrap();
        let (events, source) = ssc.actor_stream::<u64>("overload");
        let counted = events
            .map(|x| {
                let start = Instant::now();
                while start.elapsed() < Duration::from_micros(100) {
                    std::hint::spin_loop();
                }
                x
            })
            .count()
            .collect_batches();
        let delay = MaxDelay::default();
        ssc.add_listener(delay.clone());
        ssc.start().await.unwrap();
        let start = Instant::now();
        let mut accepted = 0u64;
        while start.elapsed() < Duration::from_secs(3) {
            let due = (start.elapsed().as_secs_f64() * 100_000.0) as u64;
            if accepted >= due {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            source
                .send_many((accepted..accepted + 100).collect())
                .await
                .unwrap();
            accepted += 100;
        }
        ssc.stop(StopMode::Graceful).await.unwrap();
        let total: u64 = counted.records().into_iter().sum();
        assert_eq!(total, accepted, "every accepted event was counted");
        let worst = *delay.0.lock().unwrap();
        // Without rate control the buffer (500,000 records) would hold ~50 s of work.
        assert!(
            worst < Duration::from_secs(3),
            "scheduling delay reached {worst:?}"
        );
        assert!(
            accepted < 300_000,
            "the source was slowed: {accepted} accepted"
        );
    })
    .await
    .expect("bounded in time");
}
