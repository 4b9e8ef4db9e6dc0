//! Process-level recovery of a reliable receiver: the `stateful_wordcount` recovery job
//! reads an MQTT topic (`--mqtt`: QoS 1 in a persistent session, each message acknowledged
//! only once its block is in the receiver write-ahead log) while a publisher publishes
//! 20,000 lines at QoS 1, with 100 ms batches and a data checkpoint every 500 ms. It is
//! SIGKILLed at 20 random moments (`RIVULET_MQTT_KILLS` changes the count) and started again
//! each time with the same command, while the broker (a mosquitto of the test's own) keeps
//! the session and what it queued.
//!
//! MQTT cannot replay what a subscriber acknowledged, so the guarantee is Spark's reliable
//! receiver's, at least once: **no acknowledged message is lost** (every word's final count
//! is at least its independent count), and a message stored in the log but not yet
//! acknowledged when the job died is delivered again and counted twice. The test reports
//! how many words were counted more than once; it fails on any word counted less.
#![cfg(unix)]

mod common;
mod crash_support;
mod mqtt_support;

use std::time::Duration;

use common::{count_words, example_binary};
use crash_support::{assert_at_least_once, count_from_env, read_counts, Job};

#[test]
fn killed_twenty_times_the_mqtt_job_loses_no_acknowledged_message() {
    let Some(broker) = mqtt_support::broker("killed_twenty_times_the_mqtt_job") else {
        return;
    };
    let kills = count_from_env("RIVULET_MQTT_KILLS", 20);
    let root = tempfile::tempdir().unwrap();
    let lines = mqtt_support::lines(20_000);
    let expected = count_words(lines.iter().map(String::as_str));
    // The job's session exists before its first run, so the broker keeps every message
    // published from now on for it, whether the job is up or not.
    mqtt_support::create_session(broker.port, "wordcount-job", "lines");
    // 200 messages every 25 ms (about 2.5 s in all), while the job is killed and restarted.
    let publisher = {
        let (port, lines) = (broker.port, lines.clone());
        std::thread::spawn(move || {
            for chunk in lines.chunks(200) {
                let payloads = chunk.iter().map(|l| l.clone().into_bytes()).collect();
                mqtt_support::publish_at(port, "lines", payloads);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    let mqtt = format!("mqtt://127.0.0.1:{}#lines", broker.port);
    let mut job = Job::recovery(
        example_binary("stateful_wordcount"),
        root.path(),
        &["--mqtt", &mqtt, "--mqtt-client-id", "wordcount-job"],
        &["--executors", "2"],
    )
    .env("RUST_LOG", "warn,rivulet_actors::runtime=info");
    // Some kills land before the run restored, most while it counts.
    job.kill_at_random_moments(kills, 0x5eed_3017, "Counting the words");
    publisher.join().expect("the publisher");
    job.start(&[]);
    job.finish_restored();
    let final_state = read_counts(&root.path().join("final.tsv"));
    let twice = assert_at_least_once(&expected, &final_state, "");
    let want: u64 = expected.values().sum();
    let words_more = final_state
        .iter()
        .filter(|(w, n)| expected.get(*w).is_some_and(|m| m < *n))
        .count();
    eprintln!(
        "{} runs, {kills} SIGKILLs: none lost; {} of {want} word occurrences counted more than once \
         ({words_more} of {} distinct words over their count): redelivered messages, at least once",
        job.runs(),
        twice,
        expected.len()
    );
}
