//! JetStream streams as a direct source against a real `nats-server -js` (started by each
//! test on a free 127.0.0.1 port, its store in a temporary directory, and killed at its end):
//! 100,000 messages over two streams through a word count equal an independent count; a
//! server killed and restarted mid-run loses nothing and doubles nothing; a server down at
//! start stops the start naming it, and the same source works once the server is up; a
//! stream that does not exist stops the start naming it; messages removed from a decided
//! range (a purge, a `max_msgs` limit, the stream deleted) stop the context naming the
//! stream and sequences; messages deleted one by one, or by a per-subject limit, inside a
//! range are left out of the batch and logged at WARN naming the stream, the range and the
//! missing sequences; a server that requires TLS, without the `tls` feature, is an error
//! naming the feature. Against a server that admits one user with a password, a wrong
//! password, an unknown user or none stops the start with an error naming the server and
//! saying authentication failed (without the password), and the right ones read every
//! message.
//!
//! nats-server comes from Debian's `nats-server` package (`bash
//! scripts/install-test-tools.sh`). Without it each test prints a loud `SKIPPED` line and
//! passes, except under `.ci/run` (`RIVULET_REQUIRE_BROKERS=1`), where it fails.

mod nats_support;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};

use nats_support::*;
use rivulet::prelude::*;
use rivulet_nats::{NatsMessage, NatsStreamSource};

#[actix::test]
async fn a_hundred_thousand_messages_count_as_an_independent_count() {
    let Some(server) = server("a_hundred_thousand_messages_count_as_an_independent_count") else {
        return;
    };
    let all = lines(100_000);
    let (a, b) = all.split_at(60_000);
    let js = js(&server.url()).await;
    make_stream(&js, "left", None).await;
    make_stream(&js, "right", None).await;
    publish(&js, "left", a).await;
    publish(&js, "right", b).await;
    let expected = independent_count(&all);
    within(60, async {
        // Without backpressure, so that the rate cap alone sets what each batch reads.
        let ssc = StreamingContext::new(config(2, 2).backpressure(false)).unwrap();
        let source = NatsStreamSource::new(&server.url(), ["left", "right"]).unwrap();
        // 100 ms batches, 150,000 messages/s per stream: 15,000 per batch, 4 batches for all.
        let direct = ssc.direct_stream(
            source,
            DirectOptions::default().max_rate_per_partition(150_000.0),
        );
        let counts = direct
            .stream()
            .flat_map(|m: NatsMessage| split_words(m.text().unwrap_or_default()))
            .map(|w| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
                Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
            });
        let out = counts.collect_batches();
        let read = Arc::new(Mutex::new(Vec::new()));
        let (seen, ranges) = (read.clone(), direct.clone());
        direct.stream().foreach_rdd(move |rdd, t| {
            let ranges = ranges.offset_ranges(t).unwrap_or_default();
            let n: u64 = ranges.iter().map(|r| r.count()).sum();
            // Offsets count messages here: a range's length is what its partition read.
            assert_eq!(rdd.count()?, n, "{ranges:?}");
            seen.lock().unwrap().push(n);
            Ok(())
        });
        ssc.start().await.unwrap();
        ssc.advance(5).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let last = out.batches().pop().unwrap();
        let mut last = last;
        last.sort();
        assert_eq!(last, expected.into_iter().collect::<Vec<_>>());
        let read = read.lock().unwrap().clone();
        // left: 60,000 in four batches of 15,000; right: 40,000 in 15,000 + 15,000 + 10,000.
        assert_eq!(read[..5], [30_000, 30_000, 25_000, 15_000, 0], "{read:?}");
    })
    .await;
}

#[actix::test]
async fn a_server_killed_and_restarted_mid_run_loses_and_doubles_nothing() {
    let Some(mut server) =
        server("a_server_killed_and_restarted_mid_run_loses_and_doubles_nothing")
    else {
        return;
    };
    let all = lines(3_000);
    {
        let js = js(&server.url()).await;
        make_stream(&js, "events", None).await;
        publish(&js, "events", &all[..1_000]).await;
    }
    within(60, async {
        let ssc = context(2, 2);
        let source = NatsStreamSource::new(&server.url(), ["events"]).unwrap();
        let direct = ssc.direct_stream(
            source,
            DirectOptions::default().max_rate_per_partition(6_000.0),
        );
        let sequences = Arc::new(Mutex::new(Vec::new()));
        let seen = sequences.clone();
        direct.stream().foreach_rdd(move |rdd, _| {
            let batch: Vec<u64> = rdd.map(|m: NatsMessage| m.sequence).collect()?;
            seen.lock().unwrap().extend(batch);
            Ok(())
        });
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        server.kill();
        let down = ssc.advance(1).await.expect_err("the server is down");
        let message = down.to_string();
        assert!(message.contains(&server.url()), "{message}");
        server.start();
        // The stream and its 1,000 messages survived in the file store.
        let js = js(&server.url()).await;
        publish(&js, "events", &all[1_000..]).await;
        ssc.advance(6).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let sequences = sequences.lock().unwrap().clone();
        let unique: BTreeSet<u64> = sequences.iter().copied().collect();
        assert_eq!(unique.len(), sequences.len(), "no message read twice");
        assert_eq!(unique, (1..=3_000).collect(), "every message read");
    })
    .await;
}

#[actix::test]
async fn a_server_down_at_start_is_named_and_the_source_recovers_when_it_comes() {
    let Some(mut server) =
        stopped_server("a_server_down_at_start_is_named_and_the_source_recovers_when_it_comes")
    else {
        return;
    };
    within(60, async {
        let source = NatsStreamSource::new(&server.url(), ["events"]).unwrap();
        let ssc = context(1, 1);
        ssc.direct_stream(source.clone(), DirectOptions::default())
            .stream()
            .foreach_batch(|_, _| {});
        let error = ssc.start().await.expect_err("no server");
        let message = error.to_string();
        assert!(
            message.contains(&format!("nats {}: cannot connect", server.url())),
            "{message}"
        );

        server.start();
        let js = js(&server.url()).await;
        make_stream(&js, "events", None).await;
        publish(&js, "events", &lines(100)).await;
        let ssc = context(1, 1);
        let counts = ssc
            .direct_stream(source, DirectOptions::default())
            .stream()
            .count()
            .collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(counts.batches()[0], vec![100]);
    })
    .await;
}

#[actix::test]
async fn a_stream_that_does_not_exist_stops_the_start_naming_it() {
    let Some(server) = server("a_stream_that_does_not_exist_stops_the_start_naming_it") else {
        return;
    };
    within(30, async {
        let ssc = context(1, 1);
        let source = NatsStreamSource::new(&server.url(), ["missing"]).unwrap();
        ssc.direct_stream(source, DirectOptions::default())
            .stream()
            .foreach_batch(|_, _| {});
        let error = ssc.start().await.expect_err("no such stream");
        let message = error.to_string();
        assert!(
            message.contains("stream missing does not exist"),
            "{message}"
        );
    })
    .await;
}

/// A change on the server: a purge, a publish.
type Change =
    fn(async_nats::jetstream::Context, String) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `change` on stream `name` with a JetStream context of its own, on a thread and
/// runtime of its own (an output operation runs on an executor's thread).
fn on_own_runtime(url: String, name: String, change: Change) {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move { change(js(&url).await, name).await })
    })
    .join()
    .expect("the server-side change");
}

/// Decides batch 1's range over 10 messages of `stream` (at most `max_messages` kept), then
/// runs `remove` on the server before the batch reads the range: the context stops with an
/// error containing `expected`.
async fn removed_after_the_range_was_decided(
    server: &Server,
    stream: &str,
    max_messages: Option<i64>,
    remove: Change,
    expected: &str,
) {
    let js = js(&server.url()).await;
    make_stream(&js, stream, max_messages).await;
    publish(&js, stream, &lines(10)).await;
    within(30, async {
        let ssc = context(1, 1);
        let source = NatsStreamSource::new(&server.url(), [stream]).unwrap();
        let direct = ssc.direct_stream(source, DirectOptions::default());
        let done = Arc::new(Mutex::new(false));
        let (once, url, name) = (done.clone(), server.url(), stream.to_string());
        // The range is decided as the batch is cut; the removal runs in the batch's first
        // output, before the second output reads the range.
        direct.stream().foreach_batch(move |_, _| {
            if !std::mem::replace(&mut *once.lock().unwrap(), true) {
                on_own_runtime(url.clone(), name.clone(), remove);
            }
        });
        direct.stream().count().foreach_batch(|_, _| {});
        ssc.start().await.unwrap();
        let _ = ssc.advance(1).await;
        let error = ssc.await_termination().await.expect_err("stopped");
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
    })
    .await;
}

#[actix::test]
async fn a_purged_range_stops_the_context_naming_stream_and_sequences() {
    let Some(server) = server("a_purged_range_stops_the_context_naming_stream_and_sequences")
    else {
        return;
    };
    removed_after_the_range_was_decided(&server, "purged", None, |js, name| {
        Box::pin(async move {
            js.get_stream(&name)
                .await
                .unwrap()
                .purge()
                .await
                .expect("purge");
        })
    }, "stream purged: sequences 1..=10 are no longer all in the stream (its first sequence is now 11")
    .await;
}

#[actix::test]
async fn a_range_past_the_streams_limit_stops_the_context_naming_stream_and_sequences() {
    let Some(server) =
        server("a_range_past_the_streams_limit_stops_the_context_naming_stream_and_sequences")
    else {
        return;
    };
    // At most 10 messages: 10 more push the range's 10 out.
    removed_after_the_range_was_decided(&server, "limited", Some(10), |js, name| {
        Box::pin(async move { publish(&js, &name, &lines(10)).await })
    }, "stream limited: sequences 1..=10 are no longer all in the stream (its first sequence is now 11")
    .await;
}

#[actix::test]
async fn a_range_of_a_deleted_stream_stops_the_context_naming_stream_and_sequences() {
    let Some(server) =
        server("a_range_of_a_deleted_stream_stops_the_context_naming_stream_and_sequences")
    else {
        return;
    };
    removed_after_the_range_was_decided(
        &server,
        "deleted",
        None,
        |js, name| {
            Box::pin(async move {
                js.delete_stream(&name).await.expect("delete the stream");
            })
        },
        "stream deleted does not exist: sequences 1..=10 cannot be read",
    )
    .await;
}

/// What every thread of this test process logs at WARN or above from the first call on (a
/// global subscriber: a range is read, and its gaps logged, on an executor's thread).
fn captured_warnings() -> Arc<Mutex<Vec<u8>>> {
    static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    CAPTURED
        .get_or_init(|| {
            let buffer = Arc::new(Mutex::new(Vec::new()));
            let writer = buffer.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(move || Capture(writer.clone()))
                .finish();
            tracing::subscriber::set_global_default(subscriber)
                .expect("no other global subscriber in this test binary");
            buffer
        })
        .clone()
}

/// A writer into [`captured_warnings`]' buffer.
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The polled-input reports of a context's batches.
struct Reports(Arc<Mutex<Vec<PolledInputInfo>>>);

impl StreamingListener for Reports {
    fn on_polled_input(&mut self, input: &PolledInputInfo) {
        self.0.lock().unwrap().push(input.clone());
    }
}

/// Timeline (manual clock, 100 ms batches), two streams read by one source:
///
/// ```text
/// gappy: 1..=10 published  | batch 1 reads 1..=10 | 11..=20 published, 11, 14, 15, 20
///                                                   deleted | batch 2 reads 11..=20
/// keyed (1 message per subject): a b | batch 1 reads 1..=2 | c a c d published (a's 1
///                                                   and c's 3 removed) | batch 2 reads 3..=6
/// ```
///
/// Batch 2 holds the messages still in the streams, computed here from what was published
/// and deleted, and one WARN per stream names the stream, the range and the gaps.
#[actix::test]
async fn messages_deleted_inside_a_range_are_left_out_and_logged_naming_the_gaps() {
    let Some(server) =
        server("messages_deleted_inside_a_range_are_left_out_and_logged_naming_the_gaps")
    else {
        return;
    };
    let warnings = captured_warnings();
    let js = js(&server.url()).await;
    make_stream(&js, "gappy", None).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "keyed".to_string(),
        subjects: vec!["keyed.*".to_string()],
        storage: async_nats::jetstream::stream::StorageType::File,
        max_messages_per_subject: 1,
        ..Default::default()
    })
    .await
    .expect("create the keyed stream");
    let text = lines(20);
    // keyed's messages: (sequence, subject), the payload is the subject.
    let keyed: Vec<(u64, &str)> = ["a", "b", "c", "a", "c", "d"]
        .into_iter()
        .enumerate()
        .map(|(i, subject)| (i as u64 + 1, subject))
        .collect();
    let publish_keyed = |messages: &[(u64, &'static str)]| {
        let (js, messages) = (js.clone(), messages.to_vec());
        async move {
            for (_, subject) in messages {
                publish(&js, &format!("keyed.{subject}"), &[subject.to_string()]).await;
            }
        }
    };
    publish(&js, "gappy", &text[..10]).await;
    publish_keyed(&keyed[..2]).await;
    let deleted: BTreeSet<u64> = [11, 14, 15, 20].into();
    // What batch 2 reads, computed from what was published and deleted: gappy's 11..=20 but
    // the deleted ones; keyed's 3..=6 that are the last of their subject.
    let gappy_expected: Vec<(u64, String)> = (11..=20u64)
        .filter(|s| !deleted.contains(s))
        .map(|s| (s, text[s as usize - 1].clone()))
        .collect();
    let last_of_subject: BTreeMap<&str, u64> =
        keyed.iter().map(|&(s, subject)| (subject, s)).collect();
    let keyed_expected: Vec<(u64, String)> = keyed
        .iter()
        .filter(|&&(s, subject)| (3..=6).contains(&s) && last_of_subject[subject] == s)
        .map(|&(s, subject)| (s, subject.to_string()))
        .collect();
    within(60, async {
        let ssc = context(1, 1);
        let reports = Arc::new(Mutex::new(Vec::new()));
        ssc.add_listener(Reports(reports.clone()));
        let source = NatsStreamSource::new(&server.url(), ["gappy", "keyed"]).unwrap();
        let direct = ssc.direct_stream(source, DirectOptions::default());
        type Read = BTreeMap<String, Vec<(u64, String)>>;
        let batches: Arc<Mutex<Vec<Read>>> = Arc::default();
        let seen = batches.clone();
        direct.stream().foreach_rdd(move |rdd, _| {
            let mut read = Read::new();
            for m in rdd.collect()? {
                let text = m.text().unwrap_or_default().to_string();
                read.entry(m.stream.clone())
                    .or_default()
                    .push((m.sequence, text));
            }
            seen.lock().unwrap().push(read);
            Ok(())
        });
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        publish(&js, "gappy", &text[10..]).await;
        publish_keyed(&keyed[2..]).await;
        let stream = js.get_stream("gappy").await.unwrap();
        for &s in &deleted {
            assert!(stream.delete_message(s).await.expect("delete a message"));
        }
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();

        let batches = batches.lock().unwrap().clone();
        let batch_1 = &batches[0];
        let all_10: Vec<(u64, String)> = (1..=10u64).zip(text[..10].iter().cloned()).collect();
        assert_eq!(batch_1["gappy"], all_10);
        assert_eq!(
            batch_1["keyed"],
            [(1, "a".to_string()), (2, "b".to_string())]
        );
        let batch_2 = &batches[1];
        assert_eq!(batch_2["gappy"], gappy_expected);
        assert_eq!(batch_2["keyed"], keyed_expected);

        // The report counts the messages read, short of the ranges' 10 + 4 offsets.
        let reports = reports.lock().unwrap().clone();
        let report_2 = &reports[1];
        assert_eq!(
            report_2.split_names,
            ["gappy/0 offsets 10..20", "keyed/0 offsets 2..6"]
        );
        assert_eq!(
            report_2.records,
            gappy_expected.len() + keyed_expected.len()
        );
        assert!(report_2.skipped.is_empty(), "{report_2:?}");
    })
    .await;

    let logged = String::from_utf8(warnings.lock().unwrap().clone()).unwrap();
    let gaps_of = |stream: &str| -> Vec<String> {
        logged
            .lines()
            .filter(|l| l.contains("Messages of a batch's range are no longer in the stream"))
            .filter(|l| l.contains(&format!(" stream={stream} ")))
            // Each field then ends with a space, the last one too.
            .map(|l| format!("{l} "))
            .collect()
    };
    let gappy = gaps_of("gappy");
    assert_eq!(gappy.len(), 1, "one WARN for gappy's batch 2: {logged}");
    for field in [
        "WARN",
        "sequences=11..=20 ",
        "range=gappy/0 offsets 10..20 ",
        "missing=4 ",
        "missing_sequences=11, 14..=15, 20 ",
        "read=6 ",
    ] {
        assert!(gappy[0].contains(field), "{field} in {}", gappy[0]);
    }
    let keyed = gaps_of("keyed");
    assert_eq!(keyed.len(), 1, "one WARN for keyed's batch 2: {logged}");
    for field in [
        "sequences=3..=6 ",
        "missing=1 ",
        "missing_sequences=3 ",
        "read=3 ",
    ] {
        assert!(keyed[0].contains(field), "{field} in {}", keyed[0]);
    }
}

/// Without the `tls` feature (no crypto provider), a server that requires TLS makes the
/// client's task panic inside the source's own runtime: the start fails with an error naming
/// the server and the feature, and the test's thread goes on.
#[cfg(not(feature = "tls"))]
#[actix::test]
async fn a_server_that_requires_tls_is_an_error_naming_the_tls_feature() {
    let Some(mut server) =
        stopped_server("a_server_that_requires_tls_is_an_error_naming_the_tls_feature")
    else {
        return;
    };
    let (cert, key) = (
        server.store_dir().join("cert.pem"),
        server.store_dir().join("key.pem"),
    );
    let made = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=127.0.0.1", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("\n*** SKIPPED: openssl cannot make a test certificate. ***\n");
        return;
    }
    server.extra_args(&[
        "--tls".into(),
        "--tlscert".into(),
        cert.to_string_lossy().into_owned(),
        "--tlskey".into(),
        key.to_string_lossy().into_owned(),
    ]);
    server.start();
    within(30, async {
        let source = NatsStreamSource::new(&server.url(), ["events"]).unwrap();
        let ssc = context(1, 1);
        ssc.direct_stream(source, DirectOptions::default())
            .stream()
            .foreach_batch(|_, _| {});
        let message = ssc.start().await.expect_err("no TLS").to_string();
        assert!(
            message.contains(&format!("nats {}", server.url()))
                && message.contains("the `tls` feature"),
            "{message}"
        );
    })
    .await;
}

#[actix::test]
async fn wrong_or_missing_credentials_stop_the_start_naming_the_server() {
    let Some(server) = server_with_password(
        "wrong_or_missing_credentials_stop_the_start_naming_the_server",
        "reader",
        "s3cret-pw",
    ) else {
        return;
    };
    within(30, async {
        let js = js(&server.url_as("reader", "s3cret-pw")).await;
        make_stream(&js, "secured", None).await;
        publish(&js, "secured", &lines(100)).await;
        for url in [
            server.url_as("reader", "wrong-pw"),
            server.url_as("nobody", "s3cret-pw"),
            server.url(),
        ] {
            let ssc = context(1, 1);
            let source = NatsStreamSource::new(&url, ["secured"]).unwrap();
            assert!(!format!("{source:?}").contains("pw"), "{source:?}");
            ssc.direct_stream(source, DirectOptions::default())
                .stream()
                .foreach_batch(|_, _| {});
            let message = ssc.start().await.expect_err("refused").to_string();
            assert!(
                message.contains(&format!(
                    "nats nats://127.0.0.1:{}: authentication failed",
                    server.port
                )) && message.contains("authorization violation"),
                "{url}: {message}"
            );
            assert!(!message.contains("pw"), "the password shows: {message}");
        }
        // The right credentials read every message.
        let ssc = context(1, 1);
        let source =
            NatsStreamSource::new(&server.url_as("reader", "s3cret-pw"), ["secured"]).unwrap();
        let counts = ssc
            .direct_stream(source, DirectOptions::default())
            .stream()
            .count()
            .collect_batches();
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(counts.batches()[0], vec![100]);
    })
    .await;
}
