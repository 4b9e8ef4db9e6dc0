//! Process-level exactly-once from JetStream: the `nats_wordcount` job (direct stream over
//! stream sequences, 100 ms batches, a running word count kept in its checkpoint) is
//! SIGKILLed at 20 random moments (`RIVULET_NATS_KILLS` changes the count) and started again
//! each time with the same command, while a feeder publishes the bundled text into the
//! stream of a `nats-server -js` of the test's own. The last run, left to finish, writes its
//! final counts: they must equal an independent count of the lines fed (none lost, none
//! counted twice), and the job's own check must agree.
//!
//! Without nats-server the test prints a loud `SKIPPED` line and passes, except under
//! `RIVULET_REQUIRE_BROKERS=1`, where it fails.
#![cfg(unix)]

#[path = "../../../tests/crash_support/mod.rs"]
mod crash_support;
mod nats_support;

use std::path::PathBuf;
use std::time::Duration;

use crash_support::{assert_exactly_once, count_from_env, read_counts, Job};
use nats_support::*;

fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join("nats_wordcount")
}

#[test]
fn killed_twenty_times_the_nats_wordcount_counts_every_message_once() {
    let Some(server) = server("killed_twenty_times_the_nats_wordcount_counts_every_message_once")
    else {
        return;
    };
    let kills = count_from_env("RIVULET_NATS_KILLS", 20);
    let root = tempfile::tempdir().unwrap();
    let fed = lines(40_000);
    let expected = independent_count(&fed);
    let input = root.path().join("fed.txt");
    std::fs::write(&input, fed.join("\n")).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async { make_stream(&js(&server.url()).await, "lines", None).await });
    // The feeder publishes 200 lines every 50 ms (about 10 s in all) while the job is killed
    // and restarted.
    let feeder = {
        let (url, fed) = (server.url(), fed.clone());
        std::thread::spawn(move || {
            rt.block_on(async {
                let js = js(&url).await;
                for chunk in fed.chunks(200) {
                    publish(&js, "lines", chunk).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        })
    };
    let (url, input_arg) = (server.url(), input.to_string_lossy().into_owned());
    let mut job = Job::new(
        example(),
        root.path(),
        &[
            "--server",
            &url,
            "--stream",
            "lines",
            "--no-load",
            "--input",
            &input_arg,
            "--checkpoint-dir",
            "ckpt",
            "--checkpoint-interval-ms",
            "500",
            "--idle-exit-secs",
            "2",
            "--batch-ms",
            "100",
            "--max-rate-per-partition",
            "20000",
            "--final-state",
            "final.tsv",
        ],
    )
    .env("RUST_LOG", "warn");
    // "Ready": the run finished its first batch (restored, caught up, at work).
    job.kill_at_random_moments(kills, 0x6e61_7473, "batch ");
    feeder.join().expect("the feeder");
    // The kills landed while the job worked: some killed runs had restored from the
    // checkpoint and counted batches of messages.
    let killed: Vec<String> = (0..job.runs()).map(|run| job.output(run)).collect();
    let restored = killed
        .iter()
        .filter(|o| o.contains("Restored from checkpoint"))
        .count();
    let counting = killed.iter().filter(|o| o.contains(" messages (")).count();
    assert!(
        restored >= kills / 2 && counting >= kills / 2,
        "{restored} of {kills} killed runs restored, {counting} counted messages; e.g.:\n{}",
        killed
            .iter()
            .rev()
            .take(3)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    let last = job.start(&[]);
    let status = job.wait(Duration::from_secs(120));
    let out = job.output(last);
    assert!(status.success(), "the last run failed: {status}\n{out}");
    assert!(out.contains("Restored from checkpoint"), "{out}");
    let got = read_counts(&root.path().join("final.tsv"));
    assert_exactly_once(&expected, &got);
    assert!(
        out.contains("equals an independent count of the input: OK"),
        "the job's own check: {out}"
    );
}
