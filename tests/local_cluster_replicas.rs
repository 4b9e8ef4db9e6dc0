//! Replicas of received blocks on a second executor process (Spark's receiver storage level
//! `MEMORY_AND_DISK_SER_2`), with the receiver write-ahead log off: a socket receiver runs
//! in one executor process, and each block it stores is replicated on the other, not kept
//! by the coordinator. The receiver's process is SIGKILLed between batches: the windows
//! that read the raw lines of earlier batches again (in the batches after the kill) read the
//! lost process's blocks from their replicas on the other process, and equal what the test
//! computes itself. Then the process holding the replicas is SIGKILLed: the replicas it held
//! are copied again from the receiver's process, and the windows still equal the count.
//!
//! This file holds ONE test on purpose: an executor process is this test binary started
//! again with the same arguments, which runs the same test up to `start` and serves the
//! coordinator from there.

mod cluster_support;
mod common;

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
const PORT_ENV: &str = "RIVULET_TEST_REPLICA_FEED_PORT";
/// Lines per chunk the feed sends, one chunk at a time.
const CHUNK: usize = 150;
/// The chunk after which the process running the receiver is killed.
const KILL_RECEIVER_AFTER: usize = 2;
/// The chunk after which the process holding the replicas is killed.
const KILL_HOLDER_AFTER: usize = 4;

#[actix_rt::test]
async fn received_blocks_are_replicated_on_a_second_executor_process() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("the run finished in time");
}

async fn run() {
    let vocab = ["alder", "beech", "hazel", "larch", "maple", "rowan"];
    let lines = lines_of(&vocab, CHUNK * 7, 23);
    let expected = hand_count(&lines);
    let upto = words_upto(&lines, CHUNK);
    let (port, feed) = Feed::for_this_process(PORT_ENV).await;
    // No write-ahead log: the second process's replica is what survives the first's loss.
    let ssc = StreamingContext::new(
        config(1, 2)
            .local_cluster(2)
            .receivers_in_executor_processes(true)
            .heartbeat_timeout(Duration::from_secs(2)),
    )
    .expect("valid config");
    let slide = Duration::from_millis(BATCH_MS as u64);
    let text = ssc.socket_text_stream("127.0.0.1", port);
    let counts = word_counts(&text);
    // The words of the last 3 batches, counted again from their raw lines every batch.
    let windowed = word_counts(&text.window(slide * 3, slide).expect("a valid window"));
    let (batch_counts, windows) = (per_batch(&counts), per_batch(&windowed));
    ssc.start().await.expect("started");
    let Some(mut feed) = feed else {
        unreachable!("an executor process does not return from start")
    };

    let processes = ssc.executor_processes();
    let receiver_slot = processes
        .iter()
        .position(|p| !p.receivers.is_empty())
        .expect("the receiver placed on a process");
    let other_slot = 1 - receiver_slot;
    let seen = || words_counted(&batch_counts);
    let accepted = feed.accepted.clone();
    advance_until(&ssc, || accepted.load(Ordering::SeqCst) >= 1).await;
    let mut held_before_kill = 0;
    for (i, chunk) in lines.chunks(CHUNK).enumerate() {
        feed.send(chunk).await;
        advance_until(&ssc, || seen() >= upto[i]).await;
        if i == KILL_RECEIVER_AFTER {
            let processes = ssc.executor_processes();
            held_before_kill = processes[other_slot].replicas;
            assert_eq!(
                processes[receiver_slot].replicas, 0,
                "a process holds no replica of its own blocks: {processes:?}"
            );
            ssc.kill_executor(processes[receiver_slot].executor)
                .await
                .expect("killed");
            // Its replacement starts the receiver, which connects again.
            advance_until(&ssc, || accepted.load(Ordering::SeqCst) >= 2).await;
        }
        if i == KILL_HOLDER_AFTER {
            let holder = ssc.executor_processes()[other_slot].executor;
            ssc.kill_executor(holder).await.expect("killed");
            advance_until(&ssc, || {
                let p = &ssc.executor_processes()[other_slot];
                p.alive && p.losses == 1
            })
            .await;
        }
    }
    // Three more batches: the last lines leave the windows.
    ssc.advance(3).await.expect("three more batches");
    let processes = ssc.executor_processes();
    ssc.stop(StopMode::Graceful).await.expect("stopped");

    // The blocks the receiver's process stored before its loss had their replicas on the
    // other process (the write-ahead log is off, so the coordinator kept none once held).
    assert!(
        held_before_kill > 0,
        "the other process held replicas before the kill"
    );
    assert_eq!(processes[receiver_slot].losses, 1, "{processes:?}");
    assert_eq!(processes[other_slot].losses, 1, "{processes:?}");
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        2,
        "the receiver connected twice"
    );

    // Each word once.
    let by_batch = by_batch(&batch_counts);
    assert_eq!(
        sum(&by_batch, Time::ZERO, Time::from_ms(i64::MAX)),
        expected,
        "each word counted once"
    );
    // Each window, read again from the blocks (the lost process's from their replicas),
    // equals the sum of its 3 batches.
    let windows = windows.lock().unwrap();
    assert!(windows.len() > 8, "windows ran: {}", windows.len());
    for (t, window) in windows.iter() {
        let window: BTreeMap<String, u64> = window.iter().cloned().collect();
        assert_eq!(
            window,
            sum(&by_batch, *t - slide * 2, *t),
            "the window at {t}"
        );
    }
}
