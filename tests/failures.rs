//! Failures in user code: a panicking function is retried (4 attempts by default), then its
//! batch fails with an `Error` naming the operator, its call site and the batch time; the
//! batches after it run normally, and `await_termination` reports the failure. Also failing
//! outputs and `transform` functions, and receivers that fail and are restarted.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::*;
use rivulet::prelude::*;

const SOURCE: &str = include_str!("failures.rs");

/// Input: batch 2 holds the bad record 3 (partitions of batch 2: `2 | 3 | 4`).
fn input() -> Vec<Vec<i64>> {
    vec![vec![1], vec![2, 3, 4], vec![5, 6], vec![], vec![7]]
}

#[actix::test]
async fn panicking_map_is_retried_then_reported_and_later_batches_run() {
    within(async {
        let bad_calls = Arc::new(AtomicUsize::new(0));
        let ssc = context(2, 3);
        let events = Events::attach(&ssc);
        let calls = bad_calls.clone();
        let line = line_of(SOURCE, "let mapped = ssc.queue_stream(input()).map(");
        let mapped = ssc.queue_stream(input()).map(move |x| {
            if x == 3 {
                calls.fetch_add(1, Ordering::SeqCst);
                panic!("boom on {x}");
            }
            x * 10
        });
        let out = mapped.collect_batches();
        ssc.start().await.unwrap();

        ssc.advance(1).await.expect("batch 1 is fine");
        let err = ssc.advance(1).await.expect_err("batch 2 must fail");
        assert_eq!(bad_calls.load(Ordering::SeqCst), 4, "4 attempts");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("map at tests/failures.rs:{line}")),
            "the error must name the operator and its call site: {msg}"
        );
        assert!(
            msg.contains("200 ms"),
            "the error must name the batch: {msg}"
        );
        assert!(
            msg.contains("boom on 3"),
            "the error must carry the panic: {msg}"
        );
        assert!(
            matches!(
                err,
                Error::Task {
                    batch_time: Some(t),
                    partition: 1,
                    attempts: 4,
                    ..
                } if t == batch_time(2)
            ),
            "{err:?}"
        );

        // The following batches are unaffected.
        ssc.advance(4).await.expect("later batches are fine");
        assert_eq!(bad_calls.load(Ordering::SeqCst), 4);
        let batches = out.timed_batches();
        assert_times(&batches, &[100, 300, 400, 500, 600]);
        assert_eq!(
            out.batches(),
            vec![vec![10], vec![50, 60], vec![], vec![70], vec![]]
        );
        // The failure is the context's status, reported by await_termination.
        let reported = ssc.await_termination().await.expect_err("the batch failed");
        assert_eq!(reported.to_string(), msg);
        assert!(matches!(ssc.status(), Some(Status::Failed(_))));

        // Listeners saw the failed batch complete with the failure.
        let failed: Vec<BatchInfo> = events
            .completed()
            .into_iter()
            .filter(|b| !b.succeeded())
            .collect();
        assert_eq!(failed.len(), 1, "{failed:?}");
        assert_eq!(failed[0].batch_time, batch_time(2));
        assert!(failed[0].failures[0]
            .0
            .starts_with("collect_batches at tests/failures.rs:"));
        assert!(failed[0].failures[0].1.contains("boom on 3"));
        ssc.stop(StopMode::Graceful).await.unwrap();
    })
    .await
}

#[actix::test]
async fn max_task_attempts_is_honoured() {
    within(async {
        let bad_calls = Arc::new(AtomicUsize::new(0));
        let ssc = StreamingContext::new(config(2, 3).max_task_attempts(2)).unwrap();
        let calls = bad_calls.clone();
        let _out = ssc
            .queue_stream(input())
            .filter(move |x| {
                if *x == 3 {
                    calls.fetch_add(1, Ordering::SeqCst);
                    panic!("bad filter");
                }
                true
            })
            .collect_batches();
        ssc.start().await.unwrap();
        let err = ssc.advance(3).await.expect_err("batch 2 fails");
        assert_eq!(bad_calls.load(Ordering::SeqCst), 2);
        let msg = err.to_string();
        assert!(msg.contains("filter at tests/failures.rs:"), "{msg}");
        assert!(msg.contains("after 2 attempt"), "{msg}");
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await
}

#[actix::test]
async fn a_flaky_function_heals_on_retry() {
    within(async {
        let calls = Arc::new(AtomicUsize::new(0));
        let ssc = context(2, 3);
        let c = calls.clone();
        let out = ssc
            .queue_stream(input())
            .map(move |x| {
                // The first two attempts on record 3 fail; the third succeeds.
                if x == 3 && c.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("transient");
                }
                x + 1
            })
            .collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(3).await.expect("retries heal the batch");
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(out.batches(), vec![vec![2], vec![3, 4, 5], vec![6, 7]]);
        ssc.stop(StopMode::Graceful).await.unwrap();
        ssc.await_termination().await.expect("no batch failed");
    })
    .await
}

#[actix::test]
async fn panic_in_a_shuffle_names_the_pair_operator() {
    within(async {
        let ssc = context(2, 3);
        let line = line_of(SOURCE, ".reduce_by_key(|a, b| if a + b > 1");
        let out = ssc
            .queue_stream(vec![
                strings(&["a", "b"]),
                strings(&["x", "x", "y"]),
                strings(&["c"]),
            ])
            .map(|w| (w, 1u32))
            .reduce_by_key(|a, b| if a + b > 1 { panic!("too many") } else { a + b })
            .collect_batches();
        ssc.start().await.unwrap();
        let err = ssc.advance(3).await.expect_err("batch 2 fails");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("reduce_by_key at tests/failures.rs:{line}")),
            "{msg}"
        );
        assert!(msg.contains("200 ms"), "{msg}");
        assert_times(&out.timed_batches(), &[100, 300]);
        assert_eq!(
            sorted_batches(out.batches()),
            vec![vec![kv("a", 1), kv("b", 1)], vec![kv("c", 1)]]
        );
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await
}

#[actix::test]
async fn failing_output_function_fails_only_its_batch() {
    within(async {
        let ssc = context(2, 3);
        let s = ssc.queue_stream(input());
        let line = line_of(SOURCE, "s.foreach_rdd(|rdd, t| {");
        s.foreach_rdd(|rdd, t| {
            if t == batch_time(3) {
                return Err(format!("refusing {} records", rdd.count()?).into());
            }
            Ok(())
        });
        let other = s.collect_batches();
        ssc.start().await.unwrap();
        let err = ssc.advance(4).await.expect_err("batch 3 fails");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("foreach_rdd at tests/failures.rs:{line}")),
            "{msg}"
        );
        assert!(msg.contains("300 ms"), "{msg}");
        assert!(msg.contains("refusing 2 records"), "{msg}");
        // The other output of the failed batch still ran.
        assert_eq!(other.len(), 4);
        assert_eq!(other.batches()[2], vec![5, 6]);
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await
}

#[actix::test]
async fn panicking_foreach_batch_is_reported() {
    within(async {
        let ssc = context(1, 2);
        let line = line_of(SOURCE, ".foreach_batch(|_, records| assert!(");
        ssc.queue_stream(input())
            .map(|x| x + 1)
            .foreach_batch(|_, records| assert!(!records.contains(&4), "saw 4"));
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        let err = ssc.advance(2).await.expect_err("batch 2 fails");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("foreach_batch at tests/failures.rs:{line}")),
            "{msg}"
        );
        assert!(msg.contains("saw 4"), "{msg}");
        ssc.advance(1).await.expect("later batches run");
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await
}

#[actix::test]
async fn panicking_transform_function_is_reported() {
    within(async {
        let ssc = context(2, 2);
        let line = line_of(SOURCE, ".transform(|rdd, t| {");
        let out = ssc
            .queue_stream(input())
            .transform(|rdd, t| {
                assert!(t != batch_time(1), "no RDD for the first batch");
                rdd.clone()
            })
            .collect_batches();
        ssc.start().await.unwrap();
        let err = ssc.advance(1).await.expect_err("batch 1 fails");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("transform at tests/failures.rs:{line}")),
            "{msg}"
        );
        assert!(msg.contains("no RDD for the first batch"), "{msg}");
        ssc.advance(1).await.unwrap();
        assert_eq!(out.timed_batches(), vec![(batch_time(2), vec![2, 3, 4])]);
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await
}

#[actix::test]
async fn a_panicking_listener_does_not_stop_the_context() {
    struct Grumpy;
    impl StreamingListener for Grumpy {
        fn on_batch_completed(&mut self, _: &BatchInfo) {
            panic!("listener panics");
        }
    }
    within(async {
        let ssc = context(2, 2);
        ssc.add_listener(Grumpy);
        let events = Events::attach(&ssc);
        let out = ssc.queue_stream(input()).collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(3).await.unwrap();
        assert_eq!(out.batches(), vec![vec![1], vec![2, 3, 4], vec![5, 6]]);
        assert_eq!(
            events.completed().len(),
            3,
            "later listeners still get events"
        );
        ssc.stop(StopMode::Graceful).await.unwrap();
    })
    .await
}

/// Stores `0..n` then fails with a retryable error once; after its restart stores `n..2n`
/// and finishes.
struct FailsOnce {
    n: u32,
    next: u32,
    failed: Arc<AtomicUsize>,
}

impl Receiver for FailsOnce {
    type Item = u32;
    fn name(&self) -> String {
        "fails-once".into()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Ok(())
    }
    async fn receive(&mut self, sink: &mut BlockSink<u32>) -> Result<Flow, ReceiverError> {
        if self.next == self.n && self.failed.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(ReceiverError::retryable("connection lost"));
        }
        if self.next == 2 * self.n {
            return Ok(Flow::Finished);
        }
        sink.store(self.next)
            .await
            .map_err(|_| ReceiverError::fatal("stopped"))?;
        self.next += 1;
        Ok(Flow::Continue)
    }
}

#[actix::test]
async fn a_failed_receiver_is_restarted_and_loses_nothing() {
    within(async {
        let ssc = StreamingContext::new(
            config(2, 2).receiver_restarts(3, std::time::Duration::from_millis(10)),
        )
        .unwrap();
        let events = Events::attach(&ssc);
        let out = ssc
            .receiver_stream(FailsOnce {
                n: 50,
                next: 0,
                failed: Arc::default(),
            })
            .collect_batches();
        ssc.start().await.unwrap();
        tokio::time::timeout(
            DATA_TIMEOUT,
            events.wait_for(|es| es.iter().any(|e| matches!(e, Event::ReceiverStopped(_)))),
        )
        .await
        .expect("the receiver finishes");
        ssc.advance(1).await.unwrap();
        let all = events.all();
        let started = all
            .iter()
            .filter(|e| matches!(e, Event::ReceiverStarted(_)))
            .count();
        assert_eq!(started, 2, "started, then restarted: {all:?}");
        let errors: Vec<&ReceiverInfo> = all
            .iter()
            .filter_map(|e| match e {
                Event::ReceiverError(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(errors.len(), 1, "{all:?}");
        assert_eq!(errors[0].name, "fails-once");
        assert_eq!(errors[0].last_error.as_deref(), Some("connection lost"));
        assert_eq!(out.records(), (0..100).collect::<Vec<u32>>());
        ssc.stop(StopMode::Graceful).await.unwrap();
        ssc.await_termination().await.expect("nothing failed");
    })
    .await
}

/// Fails on every start.
struct AlwaysFails;

impl Receiver for AlwaysFails {
    type Item = String;
    fn name(&self) -> String {
        "always-fails".into()
    }
    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        Err(ReceiverError::retryable("no source"))
    }
    async fn receive(&mut self, _: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        Ok(Flow::Finished)
    }
}

#[actix::test]
async fn a_receiver_failing_past_its_restart_limit_stops_the_context() {
    within(async {
        let ssc = StreamingContext::new(
            config(1, 1).receiver_restarts(2, std::time::Duration::from_millis(5)),
        )
        .unwrap();
        let events = Events::attach(&ssc);
        ssc.receiver_stream(AlwaysFails).collect_batches();
        ssc.start().await.unwrap();
        let err = tokio::time::timeout(DATA_TIMEOUT, ssc.await_termination())
            .await
            .expect("the context stops")
            .expect_err("with the receiver's error");
        let msg = err.to_string();
        assert!(msg.contains("always-fails"), "{msg}");
        assert!(msg.contains("no source"), "{msg}");
        assert!(msg.contains("failed 3 times"), "{msg}");
        assert!(msg.contains("limit of 2 restarts"), "{msg}");
        assert!(matches!(ssc.status(), Some(Status::Stopped(Some(_)))));
        let errors = events
            .all()
            .iter()
            .filter(|e| matches!(e, Event::ReceiverError(_)))
            .count();
        assert_eq!(errors, 3, "two restarts, then it gives up");
        assert!(matches!(ssc.advance(1).await, Err(Error::NotRunning(_))));
    })
    .await
}
