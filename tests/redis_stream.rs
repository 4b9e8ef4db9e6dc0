//! Redis Streams as a direct source against a real `redis-server` (started by each test on
//! a free 127.0.0.1 port, in a temporary directory, and killed at its end): 100,000 entries
//! over two streams through a word count equal an independent count; a server killed and
//! restarted mid-run loses nothing and doubles nothing; a stream that does not exist stops
//! the start naming it; entries trimmed or deleted from a decided range stop the context
//! naming the stream. The consumer-group receiver reads every entry once, acknowledges all
//! of them, and takes over the entries a crashed consumer left pending. Against a server
//! that requires a password, a wrong or missing one stops the direct source's start and the
//! group receiver (and with it the context) with an error naming the server and saying
//! authentication failed, without the password; the right one reads every entry.
//!
//! redis-server comes from Debian's `redis-server` package (`bash
//! scripts/install-test-tools.sh`). Without it each test prints a loud `SKIPPED` line and
//! passes, except under `.ci/run` (`RIVULET_REQUIRE_BROKERS=1`), where it fails.

mod common;
mod redis_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::*;
use redis_support::{server, server_with_password, Server};
use rivulet::prelude::*;
use rivulet::receivers::{RedisEntry, RedisGroupReceiver, RedisStreamSource};

/// The first `n` lines of the bundled text, cycled.
fn lines(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/data/shakespeare.txt"),
    )
    .expect("the bundled text");
    text.lines().cycle().take(n).map(str::to_string).collect()
}

fn split_words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

#[actix::test]
async fn a_hundred_thousand_entries_count_as_an_independent_count() {
    let Some(server) = server("a_hundred_thousand_entries_count_as_an_independent_count") else {
        return;
    };
    let all = lines(100_000);
    let (a, b) = all.split_at(60_000);
    server.add_lines("left", a);
    server.add_lines("right", b);
    let mut expected = BTreeMap::new();
    for w in all.iter().flat_map(|l| common::words_of(l)) {
        *expected.entry(w).or_insert(0u64) += 1;
    }
    within(async {
        // Without backpressure, so that the rate cap alone sets what each batch reads.
        let ssc = StreamingContext::new(config(2, 2).backpressure(false)).unwrap();
        let source = RedisStreamSource::new(&server.url(), ["left", "right"]).unwrap();
        // 100 ms batches, 150,000 entries/s per stream: 15,000 per batch, 4 batches for all.
        let direct = ssc.direct_stream(
            source,
            DirectOptions::default().max_rate_per_partition(150_000.0),
        );
        let counts = direct
            .stream()
            .flat_map(|e: RedisEntry| split_words(e.text("line").unwrap_or_default()))
            .map(|w| (w, 1u64))
            .update_state_by_key(|vs: Vec<u64>, s: Option<u64>| {
                Some(s.unwrap_or(0) + vs.iter().sum::<u64>())
            });
        let out = counts.collect_batches();
        let read = Arc::new(Mutex::new(Vec::new()));
        let (seen, ranges) = (read.clone(), direct.clone());
        direct.stream().foreach_rdd(move |_, t| {
            let n: u64 = ranges
                .offset_ranges(t)
                .unwrap_or_default()
                .iter()
                .map(|r| r.count())
                .sum();
            seen.lock().unwrap().push(n);
            Ok(())
        });
        ssc.start().await.unwrap();
        ssc.advance(5).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let last = out.batches().pop().unwrap();
        assert_eq!(sorted(last), expected.into_iter().collect::<Vec<_>>());
        // Offsets are entry ids, not counts: the ranges are non-empty until all was read.
        let read = read.lock().unwrap().clone();
        assert!(read[..4].iter().all(|&n| n > 0), "{read:?}");
        assert_eq!(read[4], 0, "nothing left for batch 5: {read:?}");
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
    server.add_lines("events", &all[..1_000]);
    within(async {
        let ssc = context(2, 2);
        let source = RedisStreamSource::new(&server.url(), ["events"]).unwrap();
        let direct = ssc.direct_stream(
            source,
            DirectOptions::default().max_rate_per_partition(6_000.0),
        );
        let ids = Arc::new(Mutex::new(Vec::new()));
        let seen = ids.clone();
        direct.stream().foreach_rdd(move |rdd, _| {
            let batch: Vec<String> = rdd.map(|e: RedisEntry| e.id).collect()?;
            seen.lock().unwrap().extend(batch);
            Ok(())
        });
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        server.kill();
        let down = ssc.advance(1).await.expect_err("the server is down");
        assert!(down.to_string().contains("cannot connect"), "{down}");
        server.start();
        server.add_lines("events", &all[1_000..]);
        ssc.advance(6).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        let ids = ids.lock().unwrap().clone();
        let unique: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len(), "no entry read twice");
        assert_eq!(ids.len(), 3_000, "every entry read");
    })
    .await;
}

#[actix::test]
async fn a_stream_that_does_not_exist_stops_the_start_naming_it() {
    let Some(server) = server("a_stream_that_does_not_exist_stops_the_start_naming_it") else {
        return;
    };
    within(async {
        let ssc = context(1, 1);
        let source = RedisStreamSource::new(&server.url(), ["missing"]).unwrap();
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

/// Decides batch 1's range over 10 entries, then runs `delete` on the server before the
/// batch reads it: the context stops with an error naming the stream.
async fn deleted_after_the_range_was_decided(server: &Server, stream: &str, delete: &[&str]) {
    server.add_lines(stream, &lines(10));
    within(async {
        let ssc = context(1, 1);
        let source = RedisStreamSource::new(&server.url(), [stream]).unwrap();
        let direct = ssc.direct_stream(source, DirectOptions::default());
        let (deleted, port, delete) = (
            Arc::new(Mutex::new(false)),
            server.port,
            delete.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        );
        let once = deleted.clone();
        // The range is decided as the batch is cut; the deletion runs in the batch's first
        // output, before the second output reads the range.
        direct.stream().foreach_batch(move |_, _| {
            if !std::mem::replace(&mut *once.lock().unwrap(), true) {
                let ok = Command::new("redis-cli")
                    .args(["-p", &port.to_string()])
                    .args(&delete)
                    .stdout(Stdio::null())
                    .status()
                    .expect("redis-cli runs")
                    .success();
                assert!(ok);
            }
        });
        direct.stream().count().foreach_batch(|_, _| {});
        ssc.start().await.unwrap();
        let _ = ssc.advance(1).await;
        let error = ssc.await_termination().await.expect_err("stopped");
        let message = error.to_string();
        assert!(
            message.contains(&format!("redis stream {stream} between ids"))
                && message.contains("were deleted"),
            "{message}"
        );
    })
    .await;
}

#[actix::test]
async fn entries_trimmed_or_deleted_from_a_range_stop_the_context_naming_the_stream() {
    let Some(server) = server("entries_trimmed_or_deleted_from_a_range_stop_the_context") else {
        return;
    };
    deleted_after_the_range_was_decided(&server, "trimmed", &["XTRIM", "trimmed", "MAXLEN", "0"])
        .await;
    for id in ["1-1", "1-2", "1-3"] {
        server.cli(&["XADD", "other", id, "line", "an entry of long ago"]);
    }
    deleted_after_the_range_was_decided(&server, "other", &["XDEL", "other", "1-2"]).await;
}

/// Runs a consumer-group receiver (consumer `w1`, claiming at once) over `stream` until
/// `total` entries were counted; returns the ids read, in order.
async fn read_with_group(server: &Server, stream: &str, total: usize) -> Vec<String> {
    let ssc = context(2, 2);
    let receiver = RedisGroupReceiver::new(&server.url(), stream, "wordcount", "w1")
        .unwrap()
        .claim_idle(std::time::Duration::ZERO);
    let ids = Arc::new(Mutex::new(Vec::new()));
    let seen = ids.clone();
    ssc.receiver_stream(receiver).foreach_rdd(move |rdd, _| {
        let batch: Vec<String> = rdd.map(|e: RedisEntry| e.id).collect()?;
        seen.lock().unwrap().extend(batch);
        Ok(())
    });
    ssc.start().await.unwrap();
    advance_until(&ssc, || ids.lock().unwrap().len() >= total).await;
    ssc.stop(StopMode::Graceful).await.unwrap();
    let ids = ids.lock().unwrap().clone();
    ids
}

/// Entries of `stream` pending in group `wordcount` (the first field of `XPENDING`).
fn pending(server: &Server, stream: &str) -> u64 {
    let out = server.cli(&["XPENDING", stream, "wordcount"]);
    out.lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("a pending count")
}

#[actix::test]
async fn a_consumer_group_reads_every_entry_once_and_acknowledges_it() {
    let Some(server) = server("a_consumer_group_reads_every_entry_once_and_acknowledges_it") else {
        return;
    };
    server.add_lines("grouped", &lines(10_000));
    let ids = within(read_with_group(&server, "grouped", 10_000)).await;
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!((ids.len(), unique.len()), (10_000, 10_000));
    assert_eq!(pending(&server, "grouped"), 0, "every entry acknowledged");
}

#[actix::test]
async fn a_crashed_consumers_pending_entries_are_claimed() {
    let Some(server) = server("a_crashed_consumers_pending_entries_are_claimed") else {
        return;
    };
    server.add_lines("claimed", &lines(1_000));
    // Consumer `dead` read 300 entries and died before acknowledging them; one of them is
    // deleted since (its pending id has no entry any more).
    server.cli(&["XGROUP", "CREATE", "claimed", "wordcount", "0"]);
    let read = server.cli(&[
        "XREADGROUP",
        "GROUP",
        "wordcount",
        "dead",
        "COUNT",
        "300",
        "STREAMS",
        "claimed",
        ">",
    ]);
    assert!(!read.is_empty());
    let first = server.cli(&["XRANGE", "claimed", "-", "+", "COUNT", "1"]);
    let first_id = first.lines().next().expect("an id").trim().to_string();
    server.cli(&["XDEL", "claimed", &first_id]);
    assert_eq!(pending(&server, "claimed"), 300);
    let ids = within(read_with_group(&server, "claimed", 999)).await;
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(
        (ids.len(), unique.len()),
        (999, 999),
        "each live entry once"
    );
    assert!(!ids.contains(&first_id));
    assert_eq!(
        pending(&server, "claimed"),
        0,
        "the claimed and the deleted acknowledged"
    );
}

/// The password of the servers that require one.
const PASSWORD: &str = "s3cret-pw";

/// Checks an authentication error: it names the server (its URL with the password hidden)
/// and says authentication failed, and does not show the password.
fn assert_auth_error(message: &str, server: &Server, password: Option<&str>) {
    let named = match password {
        Some(_) => format!("redis redis://:***@127.0.0.1:{}/: ", server.port),
        None => format!("redis redis://127.0.0.1:{}/: ", server.port),
    };
    assert!(
        message.contains(&format!("{named}authentication failed")),
        "{message}"
    );
    assert!(!message.contains(PASSWORD), "the password shows: {message}");
    if let Some(p) = password {
        assert!(!message.contains(p), "the password shows: {message}");
    }
}

#[actix::test]
async fn a_wrong_or_missing_password_stops_the_direct_sources_start_naming_the_server() {
    let Some(server) = server_with_password(
        "a_wrong_or_missing_password_stops_the_direct_sources_start_naming_the_server",
        PASSWORD,
    ) else {
        return;
    };
    server.add_lines("events", &lines(100));
    within(async {
        for password in [Some("wrong-pw"), None] {
            let ssc = context(1, 1);
            let url = server.url_with_password(password);
            let source = RedisStreamSource::new(&url, ["events"]).unwrap();
            assert!(
                !format!("{source:?}").contains(password.unwrap_or(PASSWORD)),
                "{source:?}"
            );
            ssc.direct_stream(source, DirectOptions::default())
                .stream()
                .foreach_batch(|_, _| {});
            let error = ssc.start().await.expect_err("authentication fails");
            assert_auth_error(&error.to_string(), &server, password);
        }
        // The right password reads every entry.
        let ssc = context(1, 1);
        let source = RedisStreamSource::new(&server.url(), ["events"]).unwrap();
        let read = Arc::new(Mutex::new(0usize));
        let seen = read.clone();
        ssc.direct_stream(source, DirectOptions::default())
            .stream()
            .foreach_rdd(move |rdd, _| {
                *seen.lock().unwrap() += rdd.count()? as usize;
                Ok(())
            });
        ssc.start().await.unwrap();
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(*read.lock().unwrap(), 100);
    })
    .await;
}

#[actix::test]
async fn a_wrong_or_missing_password_stops_the_group_receiver_and_the_context() {
    let Some(server) = server_with_password(
        "a_wrong_or_missing_password_stops_the_group_receiver_and_the_context",
        PASSWORD,
    ) else {
        return;
    };
    server.add_lines("grouped", &lines(1_000));
    within(async {
        for password in [Some("wrong-pw"), None] {
            let ssc = context(1, 1);
            let receiver = RedisGroupReceiver::new(
                &server.url_with_password(password),
                "grouped",
                "wordcount",
                "w1",
            )
            .unwrap();
            ssc.receiver_stream(receiver).foreach_batch(|_, _| {});
            ssc.start().await.unwrap();
            // A fatal receiver error: no restarts, the context stops at once.
            while ssc.advance(1).await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            let error = ssc
                .await_termination()
                .await
                .expect_err("a fatal receiver error");
            assert_auth_error(&error.to_string(), &server, password);
            assert!(error.to_string().contains("stream grouped"), "{error}");
        }
        // Nothing was read or acknowledged; the right password reads every entry.
        let ids = read_with_group(&server, "grouped", 1_000).await;
        assert_eq!(ids.len(), 1_000);
        assert_eq!(pending(&server, "grouped"), 0);
    })
    .await;
}
