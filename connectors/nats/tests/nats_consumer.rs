//! The durable pull consumer receiver against a real `nats-server -js` (started by each test
//! on a free 127.0.0.1 port, killed at its end): every message is counted once and
//! acknowledged; messages are acknowledged only after their blocks are stored (a context
//! stopped before that leaves them unacknowledged, and they are delivered again to the next
//! receiver of the consumer); several receivers share one durable consumer, each message
//! going to one of them. A wrong password or none stops the receiver (no restarts) and the
//! context with an error naming the server and saying authentication failed; the right
//! password receives every message.
//!
//! Without nats-server each test prints a loud `SKIPPED` line and passes, except under
//! `RIVULET_REQUIRE_BROKERS=1`, where it fails.

mod nats_support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer;
use nats_support::*;
use rivulet::prelude::*;
use rivulet_nats::{NatsConsumerReceiver, NatsMessage};

/// The durable consumer's state on the server; `None` before a receiver made it.
async fn consumer_info(url: &str, stream: &str, durable: &str) -> Option<consumer::Info> {
    js(url)
        .await
        .get_stream(stream)
        .await
        .expect("the stream")
        .consumer_info(durable)
        .await
        .ok()
}

/// Waits (polling the server, at most 10 s) until `pred` holds of the consumer's state.
async fn wait_for_consumer(
    url: &str,
    stream: &str,
    durable: &str,
    pred: impl Fn(&consumer::Info) -> bool,
) -> consumer::Info {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let info = consumer_info(url, stream, durable).await;
        if let Some(info) = info.as_ref().filter(|i| pred(i)) {
            return info.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the consumer never reached the state: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Advances the manual clock a batch at a time (pausing 5 ms between batches for the
/// receivers) until `done()` holds, at most 20 s.
async fn advance_until(ssc: &StreamingContext, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "the messages did not all arrive");
        ssc.advance(1).await.expect("a batch");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Records the sequences of each batch of `stream` into the returned list.
fn sequences_of(stream: &DStream<NatsMessage>) -> Arc<Mutex<Vec<u64>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let into = seen.clone();
    stream.foreach_rdd(move |rdd, _| {
        let batch: Vec<u64> = rdd.map(|m: NatsMessage| m.sequence).collect()?;
        into.lock().unwrap().extend(batch);
        Ok(())
    });
    seen
}

#[actix::test]
async fn every_message_is_counted_once_and_acknowledged() {
    let Some(server) = server("every_message_is_counted_once_and_acknowledged") else {
        return;
    };
    let all = lines(20_000);
    let js = js(&server.url()).await;
    make_stream(&js, "events", None).await;
    publish(&js, "events", &all).await;
    let expected = independent_count(&all);
    within(60, async {
        let ssc = context(2, 2);
        let receiver = NatsConsumerReceiver::new(&server.url(), "events", "counter")
            .unwrap()
            .batch(2_000);
        let messages = ssc.receiver_stream(receiver);
        let seen = sequences_of(&messages);
        let counts = messages
            .flat_map(|m: NatsMessage| split_words(m.text().unwrap_or_default()))
            .map(|w| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
                Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
            })
            .collect_batches();
        ssc.start().await.unwrap();
        advance_until(&ssc, || seen.lock().unwrap().len() >= 20_000).await;
        let info = wait_for_consumer(&server.url(), "events", "counter", |i| {
            i.ack_floor.stream_sequence == 20_000
        })
        .await;
        assert_eq!((info.num_ack_pending, info.num_pending), (0, 0), "{info:?}");
        ssc.stop(StopMode::Graceful).await.unwrap();
        let seen = seen.lock().unwrap().clone();
        let unique: BTreeSet<u64> = seen.iter().copied().collect();
        assert_eq!(unique.len(), seen.len(), "no message delivered twice");
        assert_eq!(unique, (1..=20_000).collect());
        let mut last = counts.batches().pop().unwrap();
        last.sort();
        assert_eq!(last, expected.into_iter().collect::<Vec<_>>());
    })
    .await;
}

#[actix::test]
async fn messages_are_acknowledged_only_after_their_blocks_are_stored() {
    let Some(server) = server("messages_are_acknowledged_only_after_their_blocks_are_stored")
    else {
        return;
    };
    let js = js(&server.url()).await;
    make_stream(&js, "events", None).await;
    publish(&js, "events", &lines(100)).await;
    within(60, async {
        // Under the manual clock no block is stored before the clock advances: the receiver
        // fetches the 100 messages and waits in `store_reliably`.
        let ssc = context(1, 1);
        let receiver = NatsConsumerReceiver::new(&server.url(), "events", "counter")
            .unwrap()
            .ack_wait(Duration::from_secs(1));
        let seen = sequences_of(&ssc.receiver_stream(receiver));
        ssc.start().await.unwrap();
        let info = wait_for_consumer(&server.url(), "events", "counter", |i| {
            i.num_ack_pending == 100
        })
        .await;
        assert_eq!(
            info.ack_floor.stream_sequence, 0,
            "acknowledged before stored: {info:?}"
        );
        // A receiver that acknowledged before storing would have its acks on the server
        // within milliseconds of the delivery: watch for them for half a second.
        let watch_until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < watch_until {
            let info = consumer_info(&server.url(), "events", "counter")
                .await
                .unwrap();
            assert_eq!(
                (info.ack_floor.stream_sequence, info.num_ack_pending),
                (0, 100),
                "acknowledged before stored: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The context goes away before the blocks were stored: nothing is acknowledged.
        ssc.stop(StopMode::Now).await.unwrap();
        assert!(seen.lock().unwrap().is_empty());
        let info = consumer_info(&server.url(), "events", "counter")
            .await
            .unwrap();
        assert_eq!(info.ack_floor.stream_sequence, 0, "{info:?}");

        // A new receiver of the consumer gets them again once the ack wait (1 s) passed.
        let ssc = context(1, 1);
        let receiver = NatsConsumerReceiver::new(&server.url(), "events", "counter").unwrap();
        let seen = sequences_of(&ssc.receiver_stream(receiver));
        ssc.start().await.unwrap();
        advance_until(&ssc, || seen.lock().unwrap().len() >= 100).await;
        let info = wait_for_consumer(&server.url(), "events", "counter", |i| {
            i.ack_floor.stream_sequence == 100
        })
        .await;
        // 200 deliveries for 100 messages: each was delivered again.
        assert_eq!(info.delivered.consumer_sequence, 200, "{info:?}");
        ssc.stop(StopMode::Graceful).await.unwrap();
        let seen: BTreeSet<u64> = seen.lock().unwrap().iter().copied().collect();
        assert_eq!(seen, (1..=100).collect());
    })
    .await;
}

#[actix::test]
async fn several_receivers_share_one_durable_consumer() {
    let Some(server) = server("several_receivers_share_one_durable_consumer") else {
        return;
    };
    let js = js(&server.url()).await;
    make_stream(&js, "events", None).await;
    publish(&js, "events", &lines(5_000)).await;
    within(60, async {
        let ssc = context(2, 2);
        let receiver = || {
            NatsConsumerReceiver::new(&server.url(), "events", "shared")
                .unwrap()
                .batch(50)
        };
        let first = sequences_of(&ssc.receiver_stream(receiver()));
        let second = sequences_of(&ssc.receiver_stream(receiver()));
        ssc.start().await.unwrap();
        advance_until(&ssc, || {
            first.lock().unwrap().len() + second.lock().unwrap().len() >= 5_000
        })
        .await;
        wait_for_consumer(&server.url(), "events", "shared", |i| {
            i.ack_floor.stream_sequence == 5_000
        })
        .await;
        ssc.stop(StopMode::Graceful).await.unwrap();
        let (first, second) = (
            first.lock().unwrap().clone(),
            second.lock().unwrap().clone(),
        );
        assert!(
            !first.is_empty() && !second.is_empty(),
            "both receivers took messages: {} and {}",
            first.len(),
            second.len()
        );
        let all: Vec<u64> = first.iter().chain(&second).copied().collect();
        let unique: BTreeSet<u64> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "a message went to both receivers");
        assert_eq!(unique, (1..=5_000).collect());
    })
    .await;
}

#[actix::test]
async fn wrong_or_missing_credentials_stop_the_receiver_and_the_context() {
    let Some(server) = server_with_password(
        "wrong_or_missing_credentials_stop_the_receiver_and_the_context",
        "reader",
        "s3cret-pw",
    ) else {
        return;
    };
    let good = server.url_as("reader", "s3cret-pw");
    let js = js(&good).await;
    make_stream(&js, "secured", None).await;
    publish(&js, "secured", &lines(1_000)).await;
    within(60, async {
        for url in [server.url_as("reader", "wrong-pw"), server.url()] {
            let ssc = context(1, 1);
            let receiver = NatsConsumerReceiver::new(&url, "secured", "counter").unwrap();
            ssc.receiver_stream(receiver).foreach_batch(|_, _| {});
            ssc.start().await.unwrap();
            // A fatal receiver error: no restarts, the context stops at once.
            let started = Instant::now();
            while ssc.advance(1).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let message = ssc
                .await_termination()
                .await
                .expect_err("a fatal receiver error")
                .to_string();
            assert!(
                message.contains(&format!(
                    "nats nats://127.0.0.1:{} stream secured consumer counter: authentication failed",
                    server.port
                )) && message.contains("authorization violation"),
                "{url}: {message}"
            );
            assert!(!message.contains("pw"), "the password shows: {message}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "stopped in {:?}: not retried",
                started.elapsed()
            );
        }
        assert!(
            consumer_info(&good, "secured", "counter").await.is_none(),
            "no consumer was made"
        );
        // The right credentials receive every message.
        let ssc = context(1, 1);
        let receiver = NatsConsumerReceiver::new(&good, "secured", "counter").unwrap();
        let seen = sequences_of(&ssc.receiver_stream(receiver));
        ssc.start().await.unwrap();
        advance_until(&ssc, || seen.lock().unwrap().len() >= 1_000).await;
        ssc.stop(StopMode::Graceful).await.unwrap();
        let seen: BTreeSet<u64> = seen.lock().unwrap().iter().copied().collect();
        assert_eq!(seen, (1..=1_000).collect());
    })
    .await;
}
