//! Process-level recovery with executor processes: the `stateful_wordcount` recovery job
//! with `--local-cluster 2` (100 ms batches), so that each batch's map stages run in two
//! executor processes, over two inputs: a file a feeder keeps appending to (`--tail`, a
//! reliable receiver through the write-ahead log; the processes fetch the blocks) and a
//! directory a feeder moves files into (`--directory`, a polled input: the processes read
//! the files the coordinator chose for each batch). The coordinator is SIGKILLed at random
//! moments (10 for the tail, 6 for the directory; `RIVULET_CLUSTER_KILLS` changes both)
//! and started again with the same command, with `--executors` 1 and 2 by turns (so the
//! default parallelism, and a fresh state's partition count, changes between runs: a
//! restored coordinator keeps its checkpoint's count, which its executor processes must
//! adopt), and now and then one of its executor processes is SIGKILLed too. The final
//! state must equal an independent count of every line fed; every run's executor processes
//! must be gone once it is (no orphan outlives its coordinator); and the last run's
//! processes must have run map tasks and kept the state (cache tasks).
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{count_words, example_binary};
use crate::crash_support::{assert_exactly_once, count_from_env, read_counts, Job};
use crate::{processes_in, running, tasks_run};

/// The executor processes' pids a run printed.
fn executor_pids(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Executor process "))
        .filter_map(|l| l.split_once(": pid "))
        .filter_map(|(_, pid)| pid.trim().parse().ok())
        .collect()
}

/// How the feeder hands the job its lines.
#[derive(Clone, Copy)]
enum Feed {
    /// Appended to `in.log`.
    Tail,
    /// Written to `staging/` and moved into `in/`, one file per chunk.
    Directory,
}

/// Feeds 40 lines every 25 ms until `stop` (set after the last run has counted a while);
/// returns how many lines it fed.
fn feeder(
    feed: Feed,
    root: &Path,
    lines: Vec<String>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<usize> {
    let root = root.to_path_buf();
    match feed {
        Feed::Tail => std::fs::write(root.join("in.log"), b"").unwrap(),
        Feed::Directory => {
            std::fs::create_dir(root.join("in")).unwrap();
            std::fs::create_dir(root.join("staging")).unwrap();
        }
    }
    std::thread::spawn(move || {
        let mut written = 0;
        for (i, chunk) in lines.chunks(40).enumerate() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let text = chunk.join("\n") + "\n";
            match feed {
                Feed::Tail => OpenOptions::new()
                    .append(true)
                    .open(root.join("in.log"))
                    .and_then(|mut f| f.write_all(text.as_bytes()))
                    .unwrap(),
                Feed::Directory => {
                    let name = format!("part-{i:05}.txt");
                    std::fs::write(root.join("staging").join(&name), text).unwrap();
                    std::fs::rename(
                        root.join("staging").join(&name),
                        root.join("in").join(&name),
                    )
                    .unwrap();
                }
            }
            written += chunk.len();
            std::thread::sleep(Duration::from_millis(25));
        }
        written
    })
}

#[test]
fn tailing_a_file_coordinator_and_executor_processes_killed_the_job_loses_and_doubles_nothing() {
    kill_and_restart(Feed::Tail, &["--tail", "in.log"], 10);
}

#[test]
fn reading_a_directory_coordinator_and_executor_processes_killed_the_job_loses_and_doubles_nothing()
{
    kill_and_restart(Feed::Directory, &["--directory", "in"], 6);
}

/// Each run's `--executors`, by turns.
const EXECUTORS: [&str; 2] = ["1", "2"];

fn kill_and_restart(feed: Feed, input: &[&str], default_kills: usize) {
    let kills = count_from_env("RIVULET_CLUSTER_KILLS", default_kills);
    let root = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string("examples/data/shakespeare.txt").unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = feeder(feed, root.path(), lines.clone(), stop.clone());

    let mut job = Job::recovery(
        example_binary("stateful_wordcount"),
        root.path(),
        input,
        &["--local-cluster", "2"],
    )
    .env("RUST_LOG", "warn,rivulet_actors::runtime=info");
    let mut rng = fastrand::Rng::with_seed(0xc1_05_7e);
    let mut executors_killed = 0;
    for kill in 0..kills {
        // The executor count changes between runs, and with it the default parallelism
        // (every task thread: 3 or 6): a restored coordinator keeps its checkpoint's state
        // partition count, which its new executor processes must adopt.
        let run = job.start(&["--executors", EXECUTORS[kill % 2]]);
        assert!(
            job.wait_for_output(run, "Executor process 2: pid", Duration::from_secs(60)),
            "run {run} started its executor processes:\n{}",
            job.output(run)
        );
        std::thread::sleep(Duration::from_millis(200 + rng.u64(..600)));
        if kill % 3 == 1 {
            // One of the run's executor processes first.
            let pids = executor_pids(&job.output(run));
            let victim = pids[rng.usize(..pids.len())];
            let killed = std::process::Command::new("kill")
                .args(["-KILL", &victim.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(
                killed,
                "run {run}: executor process {victim} was running and is killed"
            );
            executors_killed += 1;
            std::thread::sleep(Duration::from_millis(rng.u64(..300)));
        }
        job.kill();
    }
    assert!(
        kills < 2 || executors_killed > 0,
        "an executor process was SIGKILLed"
    );
    // The last run counts part of the feed itself (its processes run map tasks).
    let last = job.start(&["--executors", EXECUTORS[kills % 2]]);
    assert!(job.wait_for_output(last, "Counting the words", Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(1_500));
    stop.store(true, Ordering::Relaxed);
    let written = feeder.join().unwrap();
    let expected = count_words(lines[..written].iter().map(String::as_str));
    let out = job.finish_restored();
    let final_state = read_counts(&root.path().join("final.tsv"));
    assert_exactly_once(&expected, &final_state);

    let ran = tasks_run(&out, "map");
    assert!(ran > 0, "the last run's processes ran map tasks:\n{out}");
    let cached = tasks_run(&out, "cache");
    assert!(
        cached > 0,
        "the last run's processes computed and kept the state (cache tasks):\n{out}"
    );
    // No executor process outlives its coordinator (bounded: they exit on its loss).
    let pids: Vec<u32> = (0..job.runs())
        .flat_map(|r| executor_pids(&job.output(r)))
        .collect();
    assert!(
        pids.len() >= 2 * job.runs(),
        "every run printed its processes"
    );
    // Nor does any process started in the job's directory: also the replacements a
    // coordinator started just before it was killed, which never printed their pids.
    let deadline = Instant::now() + Duration::from_secs(10);
    let left = || {
        let mut left: Vec<u32> = pids.iter().copied().filter(|&p| running(p)).collect();
        left.extend(processes_in(root.path()));
        left
    };
    while !left().is_empty() {
        assert!(
            Instant::now() < deadline,
            "executor processes outlived their coordinators: {:?}",
            left()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
