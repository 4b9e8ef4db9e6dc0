//! Process-level recovery of a direct stream: the `stateful_wordcount` recovery job reads a
//! Redis stream that a feeder appends to (`--redis-stream`: entry id ranges decided per batch
//! and kept in the metadata checkpoint, no write-ahead log), with 100 ms batches and a data
//! checkpoint every 500 ms. It is SIGKILLed at 20 random moments (`RIVULET_REDIS_KILLS`
//! changes the count) and started again each time with the same command, while the Redis
//! server (a process of the test's own) keeps the stream. Its final state must equal an
//! independent count of every line appended: no entry lost, none counted twice.
#![cfg(unix)]

mod common;
mod crash_support;
mod redis_support;

use std::time::Duration;

use common::{count_words, example_binary};
use crash_support::{assert_exactly_once, count_from_env, read_counts, Job};

#[test]
fn killed_twenty_times_the_redis_job_loses_and_doubles_nothing() {
    let Some(server) = redis_support::server("killed_twenty_times_the_redis_job") else {
        return;
    };
    let kills = count_from_env("RIVULET_REDIS_KILLS", 20);
    let root = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("examples/data/shakespeare.txt").unwrap();
    let lines: Vec<String> = text.lines().take(20_000).map(str::to_string).collect();
    let expected = count_words(lines.iter().map(String::as_str));
    // The stream exists before the first run; the feeder adds the rest, 200 entries every
    // 25 ms (about 2.5 s in all), while the job is killed and restarted.
    let (first, rest) = lines.split_at(200);
    server.add_lines("events", first);
    let port = server.port;
    let feeder = {
        let rest = rest.to_vec();
        std::thread::spawn(move || {
            for chunk in rest.chunks(200) {
                redis_support::add_lines_at(port, "events", chunk);
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    let stream = format!("{}#events", server.url());
    let mut job = Job::recovery(
        example_binary("stateful_wordcount"),
        root.path(),
        &["--redis-stream", &stream],
        &["--executors", "2"],
    )
    .env("RUST_LOG", "warn,rivulet_actors::runtime=info");
    // Some kills land before the run restored, most while it counts.
    job.kill_at_random_moments(kills, 0x5eed_4ed1, "Counting the words");
    feeder.join().unwrap();
    job.start(&[]);
    job.finish_restored();
    let final_state = read_counts(&root.path().join("final.tsv"));
    assert_exactly_once(&expected, &final_state);
}
