//! A reliable receiver in an executor process: the `stateful_wordcount` recovery job reads
//! an MQTT topic (`--mqtt`: QoS 1 in a persistent session, the receiver write-ahead log on)
//! with `--local-cluster 2 --receivers-in-processes`, so the MQTT receiver runs in executor
//! process 1 (slot 0), whose blocks the coordinator logs and confirms before the receiver
//! acknowledges their messages to the broker. A publisher publishes 20,000 lines at QoS 1
//! while the job is SIGKILLed and started again (6 times; `RIVULET_CLUSTER_KILLS` changes
//! it), and every other run the process running the receiver is SIGKILLed first. In the
//! last run the receiver's process is SIGKILLed while the last lines arrive and the
//! coordinator lives on: its replacement runs the receiver on the same session.
//!
//! As for MQTT in the coordinator (`tests/recovery_mqtt_kill.rs`), the guarantee is at least
//! once: no acknowledged message is lost (every word's final count is at least its
//! independent count), none is invented; a message stored but not yet acknowledged when
//! its process died is delivered again and counted twice, which the test reports.
//!
//! The second test runs the same job without the write-ahead log (`--no-receiver-wal`):
//! each block's replica is held by the other executor process before the receiver
//! acknowledges its messages, and the receiver's process is SIGKILLed three times while the
//! lines arrive (the coordinator lives on): the blocks its replacements' predecessors
//! confirmed are counted and read from their replicas, so none acknowledged is lost.
use std::time::Duration;

use crate::common::{count_words, example_binary};
use crate::crash_support::{assert_at_least_once, count_from_env, read_counts, Job};
use crate::mqtt_support;
use crate::processes_in;

/// The pid that run `out` printed for executor process `id`.
fn pid_of(out: &str, id: usize) -> Option<u32> {
    out.lines()
        .filter_map(|l| l.strip_prefix(&format!("Executor process {id}: pid ")))
        .find_map(|pid| pid.trim().parse().ok())
}

/// SIGKILLs process `pid`; whether it was running.
fn sigkill(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success())
}

/// The MQTT recovery job in `root`, reading `mqtt` as client `client_id`, with its
/// receiver on executor process 1 of 2 (one task thread each), `extra` arguments first; the
/// coordinator logs its executor processes' registrations.
fn mqtt_job(root: &std::path::Path, mqtt: &str, client_id: &str, extra: &[&str]) -> Job {
    let cluster = [
        "--local-cluster",
        "2",
        "--receivers-in-processes",
        "--executors",
        "1",
    ];
    let extra: Vec<&str> = extra.iter().chain(&cluster).copied().collect();
    Job::recovery(
        example_binary("stateful_wordcount"),
        root,
        &["--mqtt", mqtt, "--mqtt-client-id", client_id],
        &extra,
    )
    .env("RUST_LOG", "warn,rivulet_actors=info")
}

/// Publishes `lines` in chunks of 100, one every 25 ms, on a thread of its own.
fn publish(port: u16, lines: Vec<String>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for chunk in lines.chunks(100) {
            let payloads = chunk.iter().map(|l| l.clone().into_bytes()).collect();
            mqtt_support::publish_at(port, "lines", payloads);
            std::thread::sleep(Duration::from_millis(25));
        }
    })
}

#[test]
fn an_mqtt_receiver_in_an_executor_process_killed_with_and_without_its_coordinator_loses_no_acknowledged_message(
) {
    let Some(broker) = mqtt_support::broker("an_mqtt_receiver_in_an_executor_process") else {
        return;
    };
    let kills = count_from_env("RIVULET_CLUSTER_KILLS", 6);
    let lines = mqtt_support::lines(20_000);
    let expected = count_words(lines.iter().map(String::as_str));
    let (first, last) = lines.split_at(15_000);
    mqtt_support::create_session(broker.port, "wordcount-job", "lines");
    let publisher = publish(broker.port, first.to_vec());

    let root = tempfile::tempdir().unwrap();
    let mqtt = format!("mqtt://127.0.0.1:{}#lines", broker.port);
    let mut job = mqtt_job(root.path(), &mqtt, "wordcount-job", &[]);
    let mut rng = fastrand::Rng::with_seed(0x3a7_0d1e);
    for kill in 0..kills {
        let run = job.start(&[]);
        assert!(
            job.wait_for_output(run, "Executor process 2: pid", Duration::from_secs(60)),
            "run {run} started its executor processes:\n{}",
            job.output(run)
        );
        std::thread::sleep(Duration::from_millis(200 + rng.u64(..600)));
        if kill % 2 == 0 {
            let receiver = pid_of(&job.output(run), 1).expect("executor process 1's pid");
            assert!(sigkill(receiver), "run {run}: the receiver's process runs");
            std::thread::sleep(Duration::from_millis(rng.u64(..800)));
        }
        job.kill();
    }
    publisher.join().expect("the publisher");

    // The last run: the receiver's process dies while the last lines arrive; the
    // coordinator counts what it confirmed and its replacement goes on.
    let run = job.start(&[]);
    assert!(job.wait_for_output(run, "Executor process 2: pid", Duration::from_secs(60)));
    let publisher = publish(broker.port, last.to_vec());
    std::thread::sleep(Duration::from_millis(600));
    let receiver = pid_of(&job.output(run), 1).expect("executor process 1's pid");
    assert!(sigkill(receiver), "the last run's receiver process runs");
    publisher.join().expect("the publisher");
    let out = job.finish_restored();

    let final_state = read_counts(&root.path().join("final.tsv"));
    let twice = assert_at_least_once(&expected, &final_state, &out);
    // The receiver ran in executor process 1, which was lost once in the last run.
    assert!(
        out.lines().any(|l| l.starts_with("Executor process 1: ")
            && l.contains("lost 1 times, receivers of streams [0]")),
        "the receiver ran in the process that was killed:\n{out}"
    );
    let want: u64 = expected.values().sum();
    eprintln!(
        "{} runs, {kills} coordinator SIGKILLs and {} of its receiver's process: none lost; \
         {} of {want} word occurrences counted more than once (redelivered: at least once)",
        job.runs(),
        kills.div_ceil(2) + 1,
        twice,
    );
}

/// The running executor process of `slot` among the job's processes in `dir` (its
/// environment names the slot).
fn slot_pid(dir: &std::path::Path, slot: usize) -> Option<u32> {
    let wanted = format!("RIVULET_EXECUTOR_SLOT={slot}");
    processes_in(dir).into_iter().find(|pid| {
        std::fs::read(format!("/proc/{pid}/environ"))
            .is_ok_and(|env| env.split(|&b| b == 0).any(|var| var == wanted.as_bytes()))
    })
}

#[test]
fn without_the_write_ahead_log_an_mqtt_receiver_s_blocks_survive_its_process_on_their_replicas() {
    let Some(broker) = mqtt_support::broker("without_the_write_ahead_log_an_mqtt_receiver") else {
        return;
    };
    let lines = mqtt_support::lines(12_000);
    let expected = count_words(lines.iter().map(String::as_str));
    mqtt_support::create_session(broker.port, "replica-job", "lines");
    let root = tempfile::tempdir().unwrap();
    let mqtt = format!("mqtt://127.0.0.1:{}#lines", broker.port);
    let mut job = mqtt_job(root.path(), &mqtt, "replica-job", &["--no-receiver-wal"]);
    let run = job.start(&[]);
    assert!(
        job.wait_for_output(run, "Executor process 2: pid", Duration::from_secs(60)),
        "the executor processes started:\n{}",
        job.output(run)
    );
    let publisher = publish(broker.port, lines);
    let mut rng = fastrand::Rng::with_seed(0x5e_c0_4d);
    for kill in 0..3 {
        std::thread::sleep(Duration::from_millis(400 + rng.u64(..300)));
        // The receiver runs in slot 0; after a kill, in the process that replaced it, once
        // that registered (killed before, it would be replaced, not lost).
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let pid = loop {
            let registered = |pid: u32| {
                job.output(run).lines().any(|l| {
                    l.contains("Executor process registered") && l.contains(&format!("pid={pid} "))
                })
            };
            if let Some(pid) = slot_pid(root.path(), 0).filter(|&pid| registered(pid)) {
                break pid;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "kill {kill}: slot 0 has no process:\n{}",
                job.output(run)
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(sigkill(pid), "kill {kill}: the receiver's process runs");
    }
    publisher.join().expect("the publisher");
    let status = job.wait(Duration::from_secs(120));
    let out = job.output(run);
    assert!(status.success(), "the run failed: {status}\n{out}");

    let final_state = read_counts(&root.path().join("final.tsv"));
    let twice = assert_at_least_once(&expected, &final_state, &out);
    assert!(
        out.lines().any(|l| l.starts_with("Executor process 1: ")
            && l.contains("lost 3 times, receivers of streams [0]")),
        "the receiver ran in the process killed three times:\n{out}"
    );
    let want: u64 = expected.values().sum();
    eprintln!(
        "3 SIGKILLs of the receiver's process without the write-ahead log: none lost; \
         {twice} of {want} word occurrences counted more than once (redelivered: at least once)"
    );
}
