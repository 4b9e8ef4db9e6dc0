//! The MQTT receiver against a real `mosquitto` (started by each test on a free 127.0.0.1
//! port, in a temporary directory, and killed at its end), with the receiver write-ahead log
//! on, as the receiver is meant to run: 100,000 messages published at QoS 1 through a word
//! count equal an independent count, each message once; messages published while the
//! receiver is away are delivered when it comes back (a persistent session); a broker down
//! at the start is
//! retried until it comes up; a broker restarted mid-run loses no message; two receivers in
//! a shared subscription group split the messages between them; payloads that are not
//! UTF-8 are delivered and counted, not a panic; a message over the receiver's size limit
//! stops the context with an error naming the limit (instead of failing again at every
//! redelivery). Against a broker that admits one user with a password, a wrong password or
//! none stops the receiver and the context with an error naming the broker, the topic and
//! the `CONNACK` return code (without the password); the right one receives every message.
//!
//! mosquitto comes from Debian's `mosquitto` package (`bash scripts/install-test-tools.sh`;
//! the binary is /usr/sbin/mosquitto). Without it each test prints a loud `SKIPPED` line and
//! passes, except under `.ci/run` (`RIVULET_REQUIRE_BROKERS=1`), where it fails.

mod common;
mod mqtt_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mqtt_support::{broker, broker_not_started, broker_with_password, lines};
use rivulet::prelude::*;
use rivulet::receivers::{MqttMessage, MqttReceiver};

/// How long one of these tests may take: the 100,000 messages cross the broker twice.
const MQTT_TEST_TIMEOUT: Duration = Duration::from_secs(120);

/// The pipeline's own word split (the expectation uses `common::words_of`).
fn split_words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The independent count of the words of `lines`.
fn expected_words<'a>(lines: impl IntoIterator<Item = &'a String>) -> BTreeMap<String, u64> {
    let mut expected = BTreeMap::new();
    for w in lines.into_iter().flat_map(|l| words_of(l)) {
        *expected.entry(w).or_insert(0u64) += 1;
    }
    expected
}

/// What the outputs of one receiver's stream saw, over all batches.
#[derive(Clone, Default)]
struct Tally {
    /// The word counts the engine computed (flat_map, map, reduce_by_key per batch), summed.
    words: Arc<Mutex<BTreeMap<String, u64>>>,
    /// Every payload, in the order the batches gave them.
    payloads: Arc<Mutex<Vec<Vec<u8>>>>,
    /// Messages whose payload is not UTF-8.
    not_text: Arc<Mutex<u64>>,
    /// Messages the broker flagged as delivered before (`DUP`).
    redelivered: Arc<Mutex<u64>>,
}

impl Tally {
    /// Counts the words of `messages` with the engine, and records each payload.
    fn of(messages: &DStream<MqttMessage>) -> Tally {
        let tally = Tally::default();
        let words = tally.words.clone();
        messages
            .flat_map(|m: MqttMessage| split_words(m.text().unwrap_or_default()))
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b)
            .foreach_batch(move |_, counts| {
                let mut words = words.lock().unwrap();
                for (w, n) in counts {
                    *words.entry(w).or_default() += n;
                }
            });
        let (payloads, not_text, redelivered) = (
            tally.payloads.clone(),
            tally.not_text.clone(),
            tally.redelivered.clone(),
        );
        messages.foreach_batch(move |_, batch: Vec<MqttMessage>| {
            *not_text.lock().unwrap() += batch.iter().filter(|m| m.text().is_none()).count() as u64;
            *redelivered.lock().unwrap() += batch.iter().filter(|m| m.redelivered).count() as u64;
            payloads
                .lock()
                .unwrap()
                .extend(batch.into_iter().map(|m| m.payload));
        });
        tally
    }

    fn messages(&self) -> usize {
        self.payloads.lock().unwrap().len()
    }

    fn words(&self) -> BTreeMap<String, u64> {
        self.words.lock().unwrap().clone()
    }
}

/// A context on the manual clock with the receiver write-ahead log in `dir`.
fn wal_context(dir: &std::path::Path) -> StreamingContext {
    StreamingContext::new(config(2, 2).checkpoint_dir(dir).receiver_wal(true))
        .expect("a valid config")
}

/// Advances one batch at a time until `done()` holds, pausing a few ms between batches for
/// the receiver (as `common::advance_until`, with a longer limit for the larger runs).
async fn run_until(ssc: &StreamingContext, limit: Duration, mut done: impl FnMut() -> bool) {
    let run = async {
        while !done() {
            ssc.advance(1).await.expect("a batch failed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(limit, run)
        .await
        .expect("the messages did not arrive in time");
}

/// Waits until `n` receivers reported their start.
async fn receivers_started(events: &Events, n: usize) {
    let started = |es: &[Event]| {
        es.iter()
            .filter(|e| matches!(e, Event::ReceiverStarted(_)))
            .count()
            >= n
    };
    tokio::time::timeout(DATA_TIMEOUT, events.wait_for(started))
        .await
        .expect("the receivers did not start");
}

/// `id <i>: <line>` for each line, so that every message can be told apart.
fn numbered(lines: &[String], first: usize) -> Vec<Vec<u8>> {
    lines
        .iter()
        .enumerate()
        .map(|(i, l)| format!("id {}: {l}", first + i).into_bytes())
        .collect()
}

/// The ids of `numbered` payloads, with how often each was seen.
fn ids(payloads: &[Vec<u8>]) -> BTreeMap<usize, usize> {
    let mut seen = BTreeMap::new();
    for p in payloads {
        let text = std::str::from_utf8(p).expect("a numbered payload");
        let id = text
            .strip_prefix("id ")
            .and_then(|t| t.split(':').next())
            .and_then(|n| n.parse().ok())
            .expect("an id");
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

#[actix::test]
async fn a_hundred_thousand_messages_count_as_an_independent_count() {
    let Some(broker) = broker("a_hundred_thousand_messages_count_as_an_independent_count") else {
        return;
    };
    let all = lines(100_000);
    let expected = expected_words(&all);
    let ckpt = tempfile::tempdir().unwrap();
    let run = async {
        let ssc = wal_context(ckpt.path());
        let events = Events::attach(&ssc);
        let receiver = MqttReceiver::new("127.0.0.1", broker.port, "lines", "wordcount").unwrap();
        let tally = Tally::of(&ssc.receiver_stream(receiver));
        ssc.start().await.unwrap();
        // Subscribed: from now on the broker keeps every message for the session.
        receivers_started(&events, 1).await;
        let started = std::time::Instant::now();
        let payloads: Vec<Vec<u8>> = all.iter().map(|l| l.clone().into_bytes()).collect();
        let publisher = broker.publish_in_background("lines", payloads);
        run_until(&ssc, Duration::from_secs(90), || {
            tally.messages() >= 100_000
        })
        .await;
        let elapsed = started.elapsed();
        publisher.join().expect("the publisher");
        // One more batch: nothing beyond the 100,000 (no message twice).
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        eprintln!("100,000 MQTT messages published and counted in {elapsed:?}");
        assert_eq!(tally.messages(), 100_000, "each message once");
        assert_eq!(tally.words(), expected);
    };
    tokio::time::timeout(MQTT_TEST_TIMEOUT, run)
        .await
        .expect("the test did not finish in time");
}

#[actix::test]
async fn a_broker_down_at_the_start_is_retried_until_it_comes_up() {
    let Some(mut broker) =
        broker_not_started("a_broker_down_at_the_start_is_retried_until_it_comes_up")
    else {
        return;
    };
    let ckpt = tempfile::tempdir().unwrap();
    let port = broker.port;
    let run = async {
        let ssc = wal_context(ckpt.path());
        let events = Events::attach(&ssc);
        let receiver = MqttReceiver::new("127.0.0.1", port, "down", "late").unwrap();
        let tally = Tally::of(&ssc.receiver_stream(receiver));
        ssc.start().await.unwrap();
        // The receiver fails, retryable, naming the broker and the topic.
        let named = format!("mqtt 127.0.0.1:{port} topic down: cannot connect");
        let refused = |es: &[Event]| {
            es.iter().any(|e| match e {
                Event::ReceiverError(r) => {
                    r.last_error.as_deref().is_some_and(|m| m.contains(&named))
                }
                _ => false,
            })
        };
        tokio::time::timeout(DATA_TIMEOUT, events.wait_for(refused))
            .await
            .unwrap_or_else(|_| panic!("no receiver error naming {named:?}: {:?}", events.all()));
        broker.start();
        receivers_started(&events, 1).await;
        let all = lines(2_000);
        broker.publish("down", all.iter().map(|l| l.clone().into_bytes()).collect());
        run_until(&ssc, Duration::from_secs(30), || tally.messages() >= 2_000).await;
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(tally.messages(), 2_000);
        assert_eq!(tally.words(), expected_words(&all));
    };
    tokio::time::timeout(MQTT_TEST_TIMEOUT, run)
        .await
        .expect("the test did not finish in time");
}

#[actix::test]
async fn a_broker_restarted_mid_run_loses_no_message() {
    let Some(mut broker) = broker("a_broker_restarted_mid_run_loses_no_message") else {
        return;
    };
    let ckpt = tempfile::tempdir().unwrap();
    let all = lines(8_000);
    let run = async {
        let ssc = wal_context(ckpt.path());
        let events = Events::attach(&ssc);
        let receiver = MqttReceiver::new("127.0.0.1", broker.port, "restart", "survivor").unwrap();
        let tally = Tally::of(&ssc.receiver_stream(receiver));
        ssc.start().await.unwrap();
        receivers_started(&events, 1).await;
        broker.publish("restart", numbered(&all[..4_000], 0));
        // Part of them counted (and acknowledged), the rest queued or in flight.
        run_until(&ssc, Duration::from_secs(30), || tally.messages() >= 1_000).await;
        let before = tally.messages();
        broker.stop();
        // Batches run while the broker is down; the receiver fails and is restarted.
        for _ in 0..3 {
            ssc.advance(1).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        broker.start();
        broker.publish("restart", numbered(&all[4_000..], 4_000));
        run_until(&ssc, Duration::from_secs(60), || {
            ids(&tally.payloads.lock().unwrap()).len() >= 8_000
        })
        .await;
        ssc.stop(StopMode::Graceful).await.unwrap();
        let seen = ids(&tally.payloads.lock().unwrap());
        let missing: Vec<usize> = (0..8_000).filter(|i| !seen.contains_key(i)).collect();
        assert!(missing.is_empty(), "lost: {missing:?}");
        let twice: usize = seen.values().map(|n| n - 1).sum();
        let twice_ids: Vec<usize> = seen
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(i, _)| *i)
            .collect();
        eprintln!(
            "broker restarted after {before} of 8,000 messages were counted: none lost, {twice} counted twice (at least once); flagged redelivered: {}; ids twice: {:?}..{:?}",
            tally.redelivered.lock().unwrap(), twice_ids.first(), twice_ids.last()
        );
        let failed = events
            .all()
            .iter()
            .any(|e| matches!(e, Event::ReceiverError(_)));
        assert!(failed, "the receiver saw the broker go");
    };
    tokio::time::timeout(MQTT_TEST_TIMEOUT, run)
        .await
        .expect("the test did not finish in time");
}

#[actix::test]
async fn two_receivers_in_a_shared_group_split_the_messages() {
    let Some(broker) = broker("two_receivers_in_a_shared_group_split_the_messages") else {
        return;
    };
    let ckpt = tempfile::tempdir().unwrap();
    let all = lines(10_000);
    let run = async {
        let ssc = wal_context(ckpt.path());
        let events = Events::attach(&ssc);
        let tallies: Vec<Tally> = ["member-a", "member-b"]
            .iter()
            .map(|id| {
                let receiver = MqttReceiver::new("127.0.0.1", broker.port, "shared", id)
                    .unwrap()
                    .shared_group("counters")
                    .unwrap();
                Tally::of(&ssc.receiver_stream(receiver))
            })
            .collect();
        ssc.start().await.unwrap();
        receivers_started(&events, 2).await;
        broker.publish("shared", numbered(&all, 0));
        let total = || tallies.iter().map(Tally::messages).sum::<usize>();
        run_until(&ssc, Duration::from_secs(30), || total() >= 10_000).await;
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let (a, b) = (tallies[0].messages(), tallies[1].messages());
        assert_eq!(a + b, 10_000, "each message to one member: {a} + {b}");
        assert!(a > 0 && b > 0, "both members received: {a} and {b}");
        let mut payloads = tallies[0].payloads.lock().unwrap().clone();
        payloads.extend(tallies[1].payloads.lock().unwrap().iter().cloned());
        let seen: BTreeSet<usize> = ids(&payloads).into_keys().collect();
        assert_eq!(seen, (0..10_000).collect());
        let mut words = tallies[0].words();
        for (w, n) in tallies[1].words() {
            *words.entry(w).or_default() += n;
        }
        let numbered_text: Vec<String> = numbered(&all, 0)
            .into_iter()
            .map(|p| String::from_utf8(p).unwrap())
            .collect();
        assert_eq!(words, expected_words(&numbered_text));
    };
    tokio::time::timeout(MQTT_TEST_TIMEOUT, run)
        .await
        .expect("the test did not finish in time");
}

#[actix::test]
async fn payloads_that_are_not_utf8_are_counted_not_a_panic() {
    let Some(broker) = broker("payloads_that_are_not_utf8_are_counted_not_a_panic") else {
        return;
    };
    let ckpt = tempfile::tempdir().unwrap();
    let text = lines(1_000);
    let mut payloads: Vec<Vec<u8>> = Vec::new();
    for (i, line) in text.iter().enumerate() {
        payloads.push(line.clone().into_bytes());
        if i % 100 == 0 {
            // A lone continuation byte, and a truncated two-byte sequence.
            payloads.push(vec![b'o', b'h', 0x80, b' ', 0xc3]);
        }
    }
    let run = async {
        let ssc = wal_context(ckpt.path());
        let events = Events::attach(&ssc);
        let receiver = MqttReceiver::new("127.0.0.1", broker.port, "bytes", "bytes").unwrap();
        let tally = Tally::of(&ssc.receiver_stream(receiver));
        ssc.start().await.unwrap();
        receivers_started(&events, 1).await;
        broker.publish("bytes", payloads.clone());
        run_until(&ssc, Duration::from_secs(30), || tally.messages() >= 1_010).await;
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(tally.messages(), 1_010);
        assert_eq!(
            *tally.not_text.lock().unwrap(),
            10,
            "the non-UTF-8 payloads"
        );
        assert_eq!(
            tally.words(),
            expected_words(&text),
            "only text counts words"
        );
        // Delivered as published, byte for byte.
        let got = tally.payloads.lock().unwrap().clone();
        assert_eq!(sorted(got), sorted(payloads));
    };
    tokio::time::timeout(MQTT_TEST_TIMEOUT, run)
        .await
        .expect("the test did not finish in time");
}

#[actix::test]
async fn a_message_over_the_size_limit_stops_the_context_naming_the_limit() {
    let Some(broker) = broker("a_message_over_the_size_limit_stops_the_context_naming_the_limit")
    else {
        return;
    };
    let ckpt = tempfile::tempdir().unwrap();
    let run = async {
        let ssc = wal_context(ckpt.path());
        let events = Events::attach(&ssc);
        let receiver = MqttReceiver::new("127.0.0.1", broker.port, "big", "small-limit")
            .unwrap()
            .max_message_bytes(1_024);
        ssc.receiver_stream(receiver).foreach_batch(|_, _| {});
        ssc.start().await.unwrap();
        receivers_started(&events, 1).await;
        broker.publish("big", vec![vec![b'x'; 4_096]]);
        let stopped = async {
            while ssc.advance(1).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(DATA_TIMEOUT, stopped)
            .await
            .expect("the context did not stop");
        let error = ssc
            .await_termination()
            .await
            .expect_err("a fatal receiver error");
        let message = error.to_string();
        assert!(
            message.contains(&format!(
                "mqtt 127.0.0.1:{} topic big: a message of",
                broker.port
            )) && message.contains("is larger than max_message_bytes (1024)"),
            "{message}"
        );
    };
    tokio::time::timeout(MQTT_TEST_TIMEOUT, run)
        .await
        .expect("the test did not finish in time");
}

#[actix::test]
async fn messages_published_while_the_receiver_is_away_are_delivered_when_it_returns() {
    let Some(broker) = broker("messages_published_while_the_receiver_is_away") else {
        return;
    };
    let all = lines(3_000);
    let run = async {
        // Each run: a context of its own (its own write-ahead log), the same client id.
        let counted = |payloads: Vec<Vec<u8>>, total: usize| {
            let broker = &broker;
            async move {
                let ckpt = tempfile::tempdir().unwrap();
                let ssc = wal_context(ckpt.path());
                let events = Events::attach(&ssc);
                let receiver =
                    MqttReceiver::new("127.0.0.1", broker.port, "away", "returning").unwrap();
                let tally = Tally::of(&ssc.receiver_stream(receiver));
                ssc.start().await.unwrap();
                receivers_started(&events, 1).await;
                broker.publish("away", payloads);
                run_until(&ssc, Duration::from_secs(30), || tally.messages() >= total).await;
                ssc.stop(StopMode::Graceful).await.unwrap();
                tally
            }
        };
        let first = counted(numbered(&all[..1_000], 0), 1_000).await;
        assert_eq!(ids(&first.payloads.lock().unwrap()).len(), 1_000);
        // Nobody connected as `returning`: the broker keeps these for its session.
        broker.publish("away", numbered(&all[1_000..], 1_000));
        let second = counted(Vec::new(), 2_000).await;
        let seen = ids(&second.payloads.lock().unwrap());
        assert_eq!(
            seen.keys().copied().collect::<Vec<_>>(),
            (1_000..3_000).collect::<Vec<_>>(),
            "the messages published while away, and only those (the first run acknowledged its own)"
        );
        assert!(seen.values().all(|&n| n == 1), "each once");
    };
    tokio::time::timeout(MQTT_TEST_TIMEOUT, run)
        .await
        .expect("the test did not finish in time");
}

#[actix::test]
async fn wrong_or_missing_credentials_stop_the_context_naming_the_broker_and_return_code() {
    let Some(broker) = broker_with_password(
        "wrong_or_missing_credentials_stop_the_context_naming_the_broker_and_return_code",
        "reader",
        "s3cret-pw",
    ) else {
        return;
    };
    let run = async {
        for credentials in [
            Some(("reader", "wrong-pw")),
            Some(("nobody", "s3cret-pw")),
            None,
        ] {
            let ckpt = tempfile::tempdir().unwrap();
            let ssc = wal_context(ckpt.path());
            let mut receiver =
                MqttReceiver::new("127.0.0.1", broker.port, "secured", "auth-1").unwrap();
            if let Some((user, password)) = credentials {
                receiver = receiver.credentials(user, password);
            }
            assert!(!format!("{receiver:?}").contains("pw"), "{receiver:?}");
            ssc.receiver_stream(receiver).foreach_batch(|_, _| {});
            ssc.start().await.unwrap();
            // A fatal receiver error: no restarts, the context stops at once.
            let started = std::time::Instant::now();
            while ssc.advance(1).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let error = ssc
                .await_termination()
                .await
                .expect_err("a fatal receiver error");
            let message = error.to_string();
            assert!(
                message.contains(&format!(
                    "mqtt 127.0.0.1:{} topic secured: the broker refused the connection: not authorized (CONNACK return code 5)",
                    broker.port
                )),
                "{credentials:?}: {message}"
            );
            assert!(!message.contains("pw"), "the password shows: {message}");
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "stopped in {:?}: not retried",
                started.elapsed()
            );
        }
        // The right credentials receive every message.
        let ckpt = tempfile::tempdir().unwrap();
        let ssc = wal_context(ckpt.path());
        let events = Events::attach(&ssc);
        let receiver = MqttReceiver::new("127.0.0.1", broker.port, "secured", "auth-1")
            .unwrap()
            .credentials("reader", "s3cret-pw");
        let tally = Tally::of(&ssc.receiver_stream(receiver));
        ssc.start().await.unwrap();
        receivers_started(&events, 1).await;
        let text = lines(1_000);
        broker.publish(
            "secured",
            text.iter().map(|l| l.clone().into_bytes()).collect(),
        );
        run_until(&ssc, Duration::from_secs(30), || tally.messages() >= 1_000).await;
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(tally.messages(), 1_000);
        assert_eq!(tally.words(), expected_words(&text));
    };
    tokio::time::timeout(MQTT_TEST_TIMEOUT, run)
        .await
        .expect("the test did not finish in time");
}
