//! Process-level recovery of a receiver with the write-ahead log: the `stateful_wordcount`
//! recovery job tails a file that a feeder appends to (a reliable receiver: each read's
//! lines are stored with `store_reliably_at` and the byte offset after them), with
//! `receiver_wal` on, 100 ms batches and a data checkpoint every 500 ms. It is SIGKILLed at
//! 50 random moments (`RIVULET_WAL_KILLS` changes the count) and started again each time
//! with the same command. Its final state must equal an independent count of every line
//! appended: no record lost, none counted twice, although blocks were replayed from the
//! log into the batches they had (or the next) and done blocks deleted, never replayed.
#![cfg(unix)]

mod common;
mod crash_support;

use std::fs::OpenOptions;
use std::io::Write;
use std::time::Duration;

use common::{count_words, example_binary};
use crash_support::{assert_exactly_once, count_from_env, read_counts, Job};

#[test]
fn killed_fifty_times_the_wal_job_loses_and_doubles_nothing() {
    let kills = count_from_env("RIVULET_WAL_KILLS", 50);
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in.log");
    let text = std::fs::read_to_string("examples/data/shakespeare.txt").unwrap();
    let lines: Vec<String> = text.lines().take(20_000).map(str::to_string).collect();
    let expected = count_words(lines.iter().map(String::as_str));

    // The feeder appends 40 lines every 25 ms (about 12 s in all), now and then a line in
    // two writes, so that the reader sees a partial line at the end of the file.
    std::fs::write(&input, b"").unwrap();
    let feeder = {
        let input = input.clone();
        std::thread::spawn(move || {
            let mut file = OpenOptions::new().append(true).open(&input).unwrap();
            let mut rng = fastrand::Rng::with_seed(7);
            for chunk in lines.chunks(40) {
                let mut text = chunk.join("\n") + "\n";
                if rng.u64(..4) == 0 {
                    let cut = text.len() / 2;
                    let rest = text.split_off(cut);
                    file.write_all(text.as_bytes()).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                    file.write_all(rest.as_bytes()).unwrap();
                } else {
                    file.write_all(text.as_bytes()).unwrap();
                }
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };

    let mut job = Job::recovery(
        example_binary("stateful_wordcount"),
        root.path(),
        &["--tail", "in.log"],
        &["--executors", "2"],
    )
    .env("RUST_LOG", "warn,rivulet_actors::runtime=info");
    // Some kills land before the run restored, most while it counts.
    job.kill_at_random_moments(kills, 0x0a1_0b5e, "Counting the words");
    feeder.join().unwrap();
    job.start(&[]);
    job.finish_restored();

    // The faults happened: some runs replayed blocks from the log.
    let replays = (0..job.runs())
        .filter(|&r| job.output(r).contains("Replayed received blocks"))
        .count();
    assert!(
        replays > 0,
        "no run replayed the write-ahead log: the kills missed it"
    );
    let final_state = read_counts(&root.path().join("final.tsv"));
    assert_exactly_once(&expected, &final_state);
}
