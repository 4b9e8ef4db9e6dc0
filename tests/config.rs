//! Bad configuration and bad graphs are clear errors: `StreamingContext::new` rejects
//! invalid settings with `Error::Config` naming the setting; `start` rejects invalid graphs
//! with `Error::Graph`; lifecycle calls in the wrong state give `Error::NotRunning` or
//! `Error::Config`.

mod common;

use std::time::Duration;

use common::*;
use rivulet::prelude::*;

/// The error `StreamingContext::new` gives for `config`, as text.
fn rejected(config: StreamingConfig) -> String {
    match StreamingContext::new(config) {
        Ok(_) => panic!("the config must be rejected"),
        Err(e @ Error::Config(_)) => e.to_string(),
        Err(e) => panic!("expected Error::Config, got {e:?}"),
    }
}

#[test]
fn invalid_settings_are_rejected_naming_the_setting() {
    let ms = Duration::from_millis;
    let msg = rejected(StreamingConfig::new().batch_interval(Duration::ZERO));
    assert!(msg.contains("batch_interval"), "{msg}");
    let msg = rejected(
        StreamingConfig::new()
            .batch_interval(ms(100))
            .block_interval(ms(200)),
    );
    assert!(msg.contains("block_interval"), "{msg}");
    let msg = rejected(StreamingConfig::new().executors(0));
    assert!(msg.contains("executors"), "{msg}");
    let msg = rejected(StreamingConfig::new().default_parallelism(0));
    assert!(msg.contains("default_parallelism"), "{msg}");
    let msg = rejected(StreamingConfig::new().receiver_buffer_records(0));
    assert!(msg.contains("receiver_buffer_records"), "{msg}");
    let msg = rejected(StreamingConfig::new().max_task_attempts(0));
    assert!(msg.contains("max_task_attempts"), "{msg}");
}

#[test]
fn valid_edge_settings_are_accepted() {
    let ms = Duration::from_millis;
    for config in [
        StreamingConfig::new().batch_interval(ms(1)),
        StreamingConfig::new()
            .batch_interval(ms(100))
            .block_interval(ms(100)),
        StreamingConfig::new().executors(1).default_parallelism(1),
        StreamingConfig::new().receiver_buffer_records(1),
    ] {
        if let Err(e) = StreamingContext::new(config.clone()) {
            panic!("{config:?} must be accepted: {e}");
        }
    }
}

#[actix::test]
async fn a_graph_without_outputs_cannot_start() {
    within(async {
        let ssc = context(1, 1);
        let _unused = ssc.queue_stream(vec![vec![1]]).map(|x| x + 1);
        let err = ssc.start().await.expect_err("no outputs");
        assert!(
            matches!(err, Error::Graph(GraphError::NoOutputs)),
            "{err:?}"
        );
        assert!(err.to_string().contains("no output operation"), "{err}");
    })
    .await
}

#[actix::test]
async fn streams_of_two_contexts_cannot_be_combined() {
    within(async {
        let a = context(1, 1);
        let b = context(1, 1);
        let sa = a.queue_stream(vec![vec![1]]);
        let sb = b.queue_stream(vec![vec![2]]);
        sa.union(&sb).collect_batches();
        let err = a.start().await.expect_err("foreign stream");
        assert!(
            matches!(err, Error::Graph(GraphError::ForeignStream(_))),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("union at tests/config.rs:"),
            "{err}"
        );
    })
    .await
}

#[actix::test]
async fn lifecycle_calls_in_the_wrong_state() {
    within(async {
        let ssc = context(1, 1);
        ssc.queue_stream(vec![vec![1]]).collect_batches();
        assert!(ssc.status().is_none());
        assert!(matches!(ssc.advance(1).await, Err(Error::NotRunning(_))));
        assert!(matches!(
            ssc.await_termination().await,
            Err(Error::NotRunning(_))
        ));
        assert!(matches!(
            ssc.stop(StopMode::Now).await,
            Err(Error::NotRunning(_))
        ));

        ssc.start().await.unwrap();
        assert!(matches!(ssc.status(), Some(Status::Running)));
        assert!(matches!(ssc.start().await, Err(Error::NotRunning(_))));
        ssc.advance(1).await.unwrap();

        ssc.stop(StopMode::Graceful).await.unwrap();
        assert!(matches!(ssc.status(), Some(Status::Stopped(None))));
        ssc.await_termination().await.expect("stopped cleanly");
        // Stopping again does nothing; advancing a stopped context is an error.
        ssc.stop(StopMode::Now).await.unwrap();
        assert!(matches!(ssc.advance(1).await, Err(Error::NotRunning(_))));
    })
    .await
}

#[actix::test]
async fn advance_needs_the_manual_clock() {
    within(async {
        let ssc = StreamingContext::new(
            StreamingConfig::new()
                .batch_interval(Duration::from_millis(100))
                .executors(1),
        )
        .unwrap();
        ssc.queue_stream(vec![vec![1]]).collect_batches();
        ssc.start().await.unwrap();
        let err = ssc.advance(1).await.expect_err("system clock");
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains("manual_clock"), "{err}");
        ssc.stop(StopMode::Now).await.unwrap();
    })
    .await
}
