//! Process-level recovery with executor processes: the `stateful_wordcount` recovery job
//! tails a file a feeder keeps appending to (a reliable receiver through the write-ahead log, 100 ms
//! batches) with `--local-cluster 2`, so that each batch's map stages run in two executor
//! processes. The coordinator is SIGKILLed at 10 random moments (`RIVULET_CLUSTER_KILLS`
//! changes the count) and started again with the same command, and now and then one of its
//! executor processes is SIGKILLed too. The final state must equal an independent count of
//! every line appended; every run's executor processes must be gone once it is (no orphan
//! outlives its coordinator); and the last run's processes must have run map tasks.
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{example_binary, words_of};
use crate::crash_support::{assert_exactly_once, count_from_env, read_counts, Job};
use crate::running;

/// The executor processes' pids a run printed.
fn executor_pids(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| l.strip_prefix("Executor process "))
        .filter_map(|l| l.split_once(": pid "))
        .filter_map(|(_, pid)| pid.trim().parse().ok())
        .collect()
}

#[test]
fn coordinator_and_executor_processes_killed_the_job_loses_and_doubles_nothing() {
    let kills = count_from_env("RIVULET_CLUSTER_KILLS", 10);
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("in.log");
    let text = std::fs::read_to_string("examples/data/shakespeare.txt").unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    // The feeder appends 40 lines every 25 ms until told to stop (after the last run has
    // counted a while), and returns how many lines it appended.
    std::fs::write(&input, b"").unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (input, stop) = (input.clone(), stop.clone());
        let lines = lines.clone();
        std::thread::spawn(move || {
            let mut file = OpenOptions::new().append(true).open(&input).unwrap();
            let mut written = 0;
            for chunk in lines.chunks(40) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                file.write_all((chunk.join("\n") + "\n").as_bytes())
                    .unwrap();
                written += chunk.len();
                std::thread::sleep(Duration::from_millis(25));
            }
            written
        })
    };

    let mut job = Job::recovery(
        example_binary("stateful_wordcount"),
        root.path(),
        &["--tail", "in.log"],
        &["--executors", "1", "--local-cluster", "2"],
    )
    .env("RUST_LOG", "warn,rivulet_actors::runtime=info");
    let mut rng = fastrand::Rng::with_seed(0xc1_05_7e);
    let mut executors_killed = 0;
    for kill in 0..kills {
        let run = job.start(&[]);
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
    let last = job.start(&[]);
    assert!(job.wait_for_output(last, "Counting the words", Duration::from_secs(60)));
    std::thread::sleep(Duration::from_millis(1_500));
    stop.store(true, Ordering::Relaxed);
    let written = feeder.join().unwrap();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for line in &lines[..written] {
        for w in words_of(line) {
            *expected.entry(w).or_default() += 1;
        }
    }
    let status = job.wait(Duration::from_secs(120));
    let out = job.output(last);
    assert!(status.success(), "the last run failed: {status}\n{out}");
    assert!(out.contains("Restored from checkpoint"), "{out}");
    let final_state = read_counts(&root.path().join("final.tsv"));
    assert_exactly_once(&expected, &final_state);

    let ran: u64 = out
        .lines()
        .filter_map(|l| l.strip_prefix("Executor process "))
        .filter_map(|l| l.split_once(": ").map(|(_, rest)| rest))
        .filter_map(|rest| rest.split_once(" map tasks"))
        .filter_map(|(n, _)| n.parse::<u64>().ok())
        .sum();
    assert!(ran > 0, "the last run's processes ran map tasks:\n{out}");
    // No executor process outlives its coordinator (bounded: they exit on its loss).
    let pids: Vec<u32> = (0..job.runs())
        .flat_map(|r| executor_pids(&job.output(r)))
        .collect();
    assert!(
        pids.len() >= 2 * job.runs(),
        "every run printed its processes"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| running(p)) {
        assert!(
            Instant::now() < deadline,
            "executor processes outlived their coordinators: {:?}",
            pids.iter().filter(|&&p| running(p)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
