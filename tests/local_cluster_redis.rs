//! A Redis Streams consumer-group receiver on an executor process
//! (`receivers_in_executor_processes`, the receiver write-ahead log on, the manual clock):
//! it runs in a process, not in the coordinator; the entries it reads reach the batches and
//! are acknowledged (`XACK`) only once the coordinator logged their blocks and confirmed
//! them. The process running it is SIGKILLed once nothing is pending; the receiver starts
//! again in the process that takes its slot, as the same consumer, and reads what was added
//! since. Every entry is counted once and none is left pending.
//!
//! This file holds ONE test on purpose: an executor process is this test binary started
//! again with the same arguments, which runs the same test up to `start` and serves the
//! coordinator from there.

mod common;
mod redis_support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rivulet::prelude::*;
use rivulet::receivers::{RedisEntry, RedisGroupReceiver};

/// Where the coordinator tells its executor processes (which inherit its environment) the
/// server's port.
const PORT_ENV: &str = "RIVULET_TEST_REDIS_PORT";
/// Entries added before the kill, and after it.
const ENTRIES: usize = 1_000;

/// `n` lines, each naming its number.
fn lines(from: usize, n: usize) -> Vec<String> {
    (from..from + n).map(|i| format!("line {i}")).collect()
}

#[actix_rt::test]
async fn a_redis_group_receiver_runs_in_an_executor_process_and_moves_with_its_slot() {
    tokio::time::timeout(Duration::from_secs(120), run())
        .await
        .expect("the run finished in time");
}

async fn run() {
    // The coordinator starts the server; its executor processes read the port it set.
    let server = match StreamingContext::is_executor_process() {
        true => None,
        false => {
            let Some(server) = redis_support::server("a_redis_group_receiver_on_a_process") else {
                return;
            };
            std::env::set_var(PORT_ENV, server.port.to_string());
            Some(server)
        }
    };
    let port: u16 = std::env::var(PORT_ENV)
        .expect("the coordinator set the port")
        .parse()
        .expect("a port");
    let checkpoints = tempfile::tempdir().expect("a checkpoint directory");
    let ssc = StreamingContext::new(
        config(1, 2)
            .local_cluster(2)
            .checkpoint_dir(checkpoints.path())
            .receiver_wal(true)
            .receivers_in_executor_processes(true)
            .heartbeat_timeout(Duration::from_secs(2)),
    )
    .expect("valid config");
    let receiver = RedisGroupReceiver::new(
        &format!("redis://127.0.0.1:{port}/"),
        "lines",
        "wordcount",
        "w1",
    )
    .expect("a valid url")
    .claim_idle(Duration::ZERO);
    let read = Arc::new(Mutex::new(Vec::new()));
    let seen = read.clone();
    ssc.receiver_stream(receiver).foreach_rdd(move |rdd, _| {
        let lines: Vec<String> = rdd
            .map(|e: RedisEntry| {
                String::from_utf8_lossy(e.get("line").unwrap_or_default()).into_owned()
            })
            .collect()?;
        seen.lock().unwrap().extend(lines);
        Ok(())
    });
    ssc.start().await.expect("started");
    let Some(server) = server else {
        unreachable!("an executor process does not return from start")
    };
    let pending = || {
        server
            .cli(&["XPENDING", "lines", "wordcount"])
            .lines()
            .next()
            .and_then(|l| l.trim().parse::<u64>().ok())
    };
    let processes = ssc.executor_processes();
    let holder = processes
        .iter()
        .position(|p| !p.receivers.is_empty())
        .expect("the receiver placed on a process");
    let count = || read.lock().unwrap().len();

    server.add_lines("lines", &lines(0, ENTRIES));
    advance_until(&ssc, || count() >= ENTRIES).await;
    // Acknowledged once the coordinator confirmed them: nothing pending before the kill.
    advance_until(&ssc, || pending() == Some(0)).await;
    let killed = ssc.executor_processes()[holder].executor;
    ssc.kill_executor(killed).await.expect("killed");
    server.add_lines("lines", &lines(ENTRIES, ENTRIES));
    advance_until(&ssc, || count() >= 2 * ENTRIES).await;
    advance_until(&ssc, || pending() == Some(0)).await;
    let processes = ssc.executor_processes();
    ssc.stop(StopMode::Graceful).await.expect("stopped");

    let read = read.lock().unwrap().clone();
    let unique: BTreeSet<&String> = read.iter().collect();
    let expected = lines(0, 2 * ENTRIES);
    assert_eq!(
        (read.len(), unique.len()),
        (2 * ENTRIES, 2 * ENTRIES),
        "each entry once"
    );
    assert!(expected.iter().all(|l| unique.contains(l)), "every entry");
    // It ran in the process, which was lost once, and in its replacement.
    assert_eq!(processes[holder].receivers.len(), 1, "{processes:?}");
    assert_eq!(processes[holder].losses, 1, "{processes:?}");
}
