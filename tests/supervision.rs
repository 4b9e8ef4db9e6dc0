//! Supervision through the public API: a coordinator that dies without a clean stop is
//! escalated to the context as an error, never reported as a clean stop. (A receiver failing
//! past its restart limit is in `failures.rs`.)

mod common;

use common::*;
use rivulet::prelude::*;

const CRASHED: &str = "the coordinator stopped unexpectedly";

#[actix::test]
async fn a_crashed_coordinator_stops_the_context_with_an_error() {
    within(async {
        let ssc = context(2, 2);
        let out = ssc
            .queue_stream(vec![vec![1, 2], vec![3], vec![4]])
            .map(|x| x * 10)
            .collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(2).await.unwrap();
        assert!(matches!(ssc.status(), Some(Status::Running)));

        // Wait for termination while the coordinator crashes.
        let (terminated, crashed) = tokio::join!(ssc.await_termination(), async {
            ssc.crash_coordinator().await
        });
        crashed.expect("the coordinator was running, so the crash was delivered");
        let err = terminated.expect_err("a crash is never a clean stop");
        assert!(matches!(err, Error::Crashed { .. }), "{err:?}");
        assert!(err.to_string().contains(CRASHED), "{err}");

        // The fault happened: the context is stopped with that error, and stays so.
        match ssc.status() {
            Some(Status::Stopped(Some(e))) => assert!(e.to_string().contains(CRASHED), "{e}"),
            other => panic!("expected a stop with the crash error, got {other:?}"),
        }
        let again = ssc.await_termination().await.expect_err("still crashed");
        assert!(again.to_string().contains(CRASHED), "{again}");
        // Later calls fail instead of hanging.
        let advance = ssc.advance(1).await.expect_err("no coordinator to advance");
        assert!(matches!(advance, Error::NotRunning(_)), "{advance:?}");
        assert!(advance.to_string().contains(CRASHED), "{advance}");
        let stop = ssc
            .stop(StopMode::Graceful)
            .await
            .expect_err("not a clean stop");
        assert!(stop.to_string().contains(CRASHED), "{stop}");
        assert!(matches!(
            ssc.crash_coordinator().await,
            Err(Error::NotRunning(_))
        ));
        // The batches before the crash ran, and none after.
        assert_eq!(out.batches(), vec![vec![10, 20], vec![30]]);
    })
    .await
}

#[actix::test]
async fn a_crash_after_the_first_batch_failure_still_reports_the_crash_in_status() {
    within(async {
        let ssc = context(1, 1);
        ssc.queue_stream(vec![vec![1]])
            .foreach_batch(|_, _| panic!("output down"));
        ssc.start().await.unwrap();
        assert!(ssc.advance(1).await.is_err(), "the batch fails");
        assert!(matches!(ssc.status(), Some(Status::Failed(_))));
        ssc.crash_coordinator().await.unwrap();
        // A batch failure keeps the context running; the crash stops it.
        let stop = ssc
            .stop(StopMode::Now)
            .await
            .expect_err("the coordinator crashed");
        assert!(stop.to_string().contains(CRASHED), "{stop}");
        assert!(matches!(
            ssc.status(),
            Some(Status::Stopped(Some(Error::Crashed { .. })))
        ));
    })
    .await
}

#[actix::test]
async fn a_clean_stop_is_still_ok() {
    within(async {
        let ssc = context(1, 1);
        ssc.queue_stream(vec![vec![1]]).collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        ssc.await_termination().await.expect("a clean stop");
        ssc.stop(StopMode::Now)
            .await
            .expect("stopping twice is fine");
        assert!(matches!(ssc.status(), Some(Status::Stopped(None))));
        assert!(matches!(
            ssc.crash_coordinator().await,
            Err(Error::NotRunning(_))
        ));
    })
    .await
}
