//! Receivers on executor processes (`StreamingConfig::receivers_in_executor_processes`): a
//! socket receiver runs in an executor process, not in the coordinator; its blocks stay
//! there (the map tasks that read them run in the processes) and their replicas reach the
//! coordinator, whose windowed tasks read every batch's lines again from them. The process
//! running the receiver is SIGKILLed between batches: the receiver starts again in the
//! process that takes its slot and connects to the feed again; the counts per batch, the
//! running totals, a window with an inverse function and a window over the raw lines equal
//! what the test computes itself. The receiver write-ahead log is on: the coordinator logs
//! each block the process stores before it confirms it to the process and counts its report
//! (every seal of the manual clock goes through that journal). The status page shows the receiver's counters as its
//! process reports them. The state and the windows stay in the coordinator here
//! (`state_in_executor_processes(false)`: no cache task runs on the processes), the other
//! placement than `local_cluster.rs`'s.
//!
//! This file holds ONE test on purpose: an executor process is this test binary started
//! again with the same arguments, which runs the same test up to `start` and serves the
//! coordinator from there.

mod cluster_support;
mod common;
mod ui_support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use cluster_support::{
    by_batch, hand_count, lines_of, per_batch, sum, word_counts, words_counted, words_upto, Feed,
};
use common::*;
use rivulet::prelude::*;

/// Where the coordinator tells its executor processes (which inherit its environment) the
/// feed's port.
const PORT_ENV: &str = "RIVULET_TEST_FEED_PORT";
/// Lines per chunk the feed sends, one chunk at a time.
const CHUNK: usize = 200;
/// The chunk after which the process running the receiver is killed.
const KILL_AFTER: usize = 2;

#[actix_rt::test]
async fn a_receiver_runs_in_an_executor_process_and_moves_with_its_slot() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("the run finished in time");
}

async fn run() {
    let vocab = ["ash", "birch", "cedar", "elm", "fir", "oak", "yew"];
    let lines = lines_of(&vocab, CHUNK * 6, 11);
    let expected = hand_count(&lines);
    let upto = words_upto(&lines, CHUNK);
    // The coordinator serves the feed; its executor processes read the port it set.
    let (port, feed) = Feed::for_this_process(PORT_ENV).await;
    // The receiver write-ahead log on: the coordinator logs the blocks the process stores
    // before it confirms and counts them (the executor processes never open the directory).
    let checkpoints = tempfile::tempdir().expect("a checkpoint directory");
    let ssc = StreamingContext::new(
        config(1, 2)
            .local_cluster(2)
            .checkpoint_dir(checkpoints.path())
            .receiver_wal(true)
            .receivers_in_executor_processes(true)
            .state_in_executor_processes(false)
            .heartbeat_timeout(Duration::from_secs(2))
            .ui_address("127.0.0.1:0"),
    )
    .expect("valid config");
    let slide = Duration::from_millis(BATCH_MS as u64);
    let text = ssc.socket_text_stream("127.0.0.1", port);
    let counts = word_counts(&text);
    let totals = counts.update_state_by_key(|new: Vec<u64>, old: Option<u64>| {
        Some(old.unwrap_or(0) + new.iter().sum::<u64>())
    });
    let windowed = counts
        .reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, slide * 3, slide)
        .expect("a valid window");
    // The raw lines of the last 3 batches, read again from the blocks every batch (in the
    // coordinator: a window's lineage reaches earlier batches).
    let lines_per_batch = text.count();
    let lines_per_window = text
        .window(slide * 3, slide)
        .expect("a valid window")
        .count();
    let (batch_counts, windows, line_counts, window_lines, states) = (
        per_batch(&counts),
        per_batch(&windowed),
        per_batch(&lines_per_batch),
        per_batch(&lines_per_window),
        per_batch(&totals),
    );
    ssc.start().await.expect("started");
    let Some(mut feed) = feed else {
        unreachable!("an executor process does not return from start")
    };

    let processes = ssc.executor_processes();
    let holder = processes
        .iter()
        .position(|p| !p.receivers.is_empty())
        .expect("the receiver placed on a process");
    assert_eq!(
        processes.iter().map(|p| p.receivers.len()).sum::<usize>(),
        1
    );
    let seen = || words_counted(&batch_counts);
    let accepted = feed.accepted.clone();
    advance_until(&ssc, || accepted.load(Ordering::SeqCst) >= 1).await;
    for (i, chunk) in lines.chunks(CHUNK).enumerate() {
        feed.send(chunk).await;
        advance_until(&ssc, || seen() >= upto[i]).await;
        if i == KILL_AFTER {
            let killed = ssc.executor_processes()[holder].executor;
            ssc.kill_executor(killed).await.expect("killed");
            // Its replacement starts the receiver, which connects again.
            advance_until(&ssc, || accepted.load(Ordering::SeqCst) >= 2).await;
        }
    }
    // Three more batches: the last lines leave the windows.
    ssc.advance(3).await.expect("three more batches");
    // The status page shows what the receiver stored in both processes it ran in, as
    // they reported it with their heartbeats.
    let stored = lines.len() as u64;
    let url = format!(
        "{}api/v1/applications/rivulet/streaming/receivers/0",
        ssc.ui_url().expect("the status page")
    );
    let receiver = tokio::task::spawn_blocking(move || {
        ui_support::poll_json(&url, |r| r["recordsStored"] == stored)
    })
    .await
    .expect("polled");
    assert_eq!(receiver["isActive"], true, "{receiver}");
    let holder_id = ssc.executor_processes()[holder].executor.to_string();
    assert_eq!(receiver["executorId"], holder_id.as_str(), "{receiver}");
    assert_eq!(receiver["executorHost"], "127.0.0.1", "{receiver}");
    let processes = ssc.executor_processes();
    ssc.stop(StopMode::Graceful).await.expect("stopped");

    // Each word once, by the batches and by the running totals.
    let by_batch = by_batch(&batch_counts);
    let summed = sum(&by_batch, Time::ZERO, Time::from_ms(i64::MAX));
    assert_eq!(summed, expected, "each word counted once");
    let last_state: BTreeMap<String, u64> = states
        .lock()
        .unwrap()
        .last()
        .map(|(_, s)| s.iter().cloned().collect())
        .unwrap_or_default();
    assert_eq!(
        last_state, expected,
        "the running totals end at the hand count"
    );

    // Each window equals the sum of its 3 batches, computed here.
    let windows = windows.lock().unwrap();
    assert!(windows.len() > 6, "windows ran: {}", windows.len());
    for (t, window) in windows.iter() {
        let nonzero: BTreeMap<String, u64> =
            window.iter().filter(|(_, n)| *n > 0).cloned().collect();
        assert_eq!(
            nonzero,
            sum(&by_batch, *t - slide * 2, *t),
            "the window at {t}"
        );
    }
    let lines_by_batch: BTreeMap<Time, BTreeMap<(), u64>> = line_counts
        .lock()
        .unwrap()
        .iter()
        .map(|(t, c)| (*t, [((), c.iter().sum::<u64>())].into_iter().collect()))
        .collect();
    let total_lines: u64 = lines_by_batch.values().flat_map(|b| b.values()).sum();
    assert_eq!(total_lines, lines.len() as u64);
    let window_lines = window_lines.lock().unwrap();
    assert_eq!(
        window_lines.len(),
        windows.len(),
        "the raw-line window ran each batch too"
    );
    for (t, n) in window_lines.iter() {
        let expected = sum(&lines_by_batch, *t - slide * 2, *t)
            .get(&())
            .copied()
            .unwrap_or(0);
        assert_eq!(
            n.iter().sum::<u64>(),
            expected,
            "the lines of the window at {t}"
        );
    }

    // The receiver ran in the processes, in the slot it was placed on, and moved to the
    // process that replaced the killed one; the map tasks ran there too.
    assert_eq!(processes[holder].receivers.len(), 1, "{processes:?}");
    assert_eq!(processes[holder].losses, 1, "{processes:?}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the receiver connected twice"
    );
    assert!(
        processes.iter().map(|p| p.map_tasks).sum::<u64>() > 0,
        "map tasks ran in the processes: {processes:?}"
    );
    assert_eq!(
        processes.iter().map(|p| p.cache_tasks).sum::<u64>(),
        0,
        "the state stayed in the coordinator: {processes:?}"
    );
    // The receiver's blocks crossed once, as replicas: more bytes came from its slot than
    // the input's.
    let input_bytes: u64 = lines.iter().map(|l| l.len() as u64 + 1).sum();
    assert!(
        processes[holder].bytes_received > input_bytes,
        "the replicas reached the coordinator: {processes:?}"
    );
}
