//! `StreamingConfig::ui_linger`: the status server outlives the context's stop by the linger,
//! serving the final state, then stops.

mod common;
#[path = "ui_support/mod.rs"]
mod ui_support;

use std::time::{Duration, Instant};

use rivulet::prelude::*;
use ui_support::*;

/// Whether anything accepts connections at `url`'s address.
fn answers(url: &str) -> bool {
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    std::net::TcpStream::connect(host).is_ok()
}

#[actix::test]
async fn the_status_server_lingers_after_the_stop_then_stops() {
    let linger = Duration::from_millis(1500);
    let ssc = StreamingContext::new(
        StreamingConfig::new()
            .batch_interval(Duration::from_millis(100))
            .manual_clock(true)
            .ui_address("127.0.0.1:0")
            .ui_linger(linger),
    )
    .expect("valid config");
    ssc.queue_stream(vec![vec![1, 2, 3]])
        .count()
        .foreach_batch(|_, _| {});
    ssc.start().await.expect("starts");
    ssc.advance(1).await.expect("one batch");
    let url = ssc.ui_url().expect("the UI is on");
    let stopped = Instant::now();
    ssc.stop(StopMode::Graceful).await.expect("stops");
    assert!(
        stopped.elapsed() < linger,
        "stop does not wait for the linger"
    );
    // After the stop, the final state is still served.
    let api = format!("{url}api/v1/streaming");
    let stats = tokio::task::spawn_blocking(move || get_json(&format!("{api}/statistics"), 200))
        .await
        .expect("the request");
    assert_eq!(stats["numTotalCompletedBatches"], 1, "{stats}");
    // Then the server stops.
    let deadline = stopped + linger + Duration::from_secs(5);
    while answers(&url) {
        assert!(
            Instant::now() < deadline,
            "the status server still answers {:?} after the stop",
            stopped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        stopped.elapsed() >= linger,
        "the server stopped before its linger: {:?}",
        stopped.elapsed()
    );
}
