//! Process-level faults of a local cluster, on the `wordcount` example as a user runs it
//! (`--local-cluster 2`): an executor process SIGKILLed mid-run is replaced and every word
//! is still counted exactly once, also with the receiver on a process; a coordinator
//! SIGKILLed leaves no executor process behind.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::example_runs::{as_str, start, Running};
use crate::running;

const INPUT: &str = "examples/data/shakespeare.txt";

/// The words of the input as the example counts them (maximal runs of ASCII letters and
/// digits, lowercased), counted here independently.
fn expected_counts() -> BTreeMap<String, u64> {
    let text = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join(INPUT)).expect("input");
    let mut counts = BTreeMap::new();
    for word in text
        .split(|b| !b.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let word = String::from_utf8_lossy(word).to_ascii_lowercase();
        *counts.entry(word).or_default() += 1;
    }
    counts
}

/// Every batch's `word<TAB>count` lines under `out`, summed.
fn summed_output(out: &Path) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for batch in std::fs::read_dir(out).expect("the output directory") {
        let batch = batch.expect("an entry").path();
        if !batch.is_dir() {
            continue;
        }
        for part in std::fs::read_dir(&batch).expect("a batch directory") {
            let part = part.expect("an entry").path();
            let name = part.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if !name.starts_with("part-") {
                continue;
            }
            for line in std::fs::read_to_string(&part).expect("a part file").lines() {
                let (w, n) = line.split_once('\t').expect("word<TAB>count");
                *counts.entry(w.to_string()).or_default() += n.parse::<u64>().expect("a count");
            }
        }
    }
    counts
}

/// The pid the example printed for executor process `id`.
fn executor_pid(stdout: &str, id: usize) -> u32 {
    let prefix = format!("Executor process {id}: pid ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|pid| pid.trim().parse().ok())
        .unwrap_or_else(|| panic!("no pid for executor process {id} in:\n{stdout}"))
}

fn sigkill(pid: u32) {
    let status = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success(), "kill -KILL {pid}");
}

fn started(args: &[&str]) -> Running {
    let mut run = start("wordcount", args);
    run.wait_for_stdout("the executor processes' pids", |s| {
        s.contains("Executor process 2: pid")
    });
    run.wait_for_stdout("a batch with records", |s| {
        s.lines()
            .any(|l| l.starts_with("batch ") && !l.contains(": 0 distinct"))
    });
    run
}

#[test]
fn an_executor_process_sigkilled_mid_run_is_replaced_and_every_word_counted_once() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let out_dir = out.path().join("wc");
    let mut args = vec!["--rate", "20000", "--batch-ms", "100"];
    args.extend(["--local-cluster", "2", "--executors", "1"]);
    args.extend(["--out", as_str(&out_dir)]);
    let run = started(&args);
    let victim = executor_pid(&run.stdout(), 1);
    sigkill(victim);
    let done = run.finish();
    assert_eq!(done.code, Some(0), "{}", done.describe());
    assert!(
        done.stdout.contains("Executor process 1: ") && done.stdout.contains("lost 1 times"),
        "the killed process's slot reports its loss\n{}",
        done.describe()
    );
    assert!(
        done.stdout.contains("Recovery: 1 executors lost"),
        "{}",
        done.describe()
    );
    assert!(
        !running(victim),
        "the killed process is gone (reaped by its coordinator)"
    );
    assert_eq!(
        summed_output(&out_dir),
        expected_counts(),
        "every word of the input counted exactly once"
    );
}

/// With the socket receiver on an executor process (`--receivers-in-processes`, on the
/// system clock: blocks sealed by the process's own timer and reported as frames), the
/// other process SIGKILLed mid-run: the receiver's process keeps receiving, the lost map
/// outputs are recomputed (from the blocks' replicas where needed), and every word is
/// counted exactly once.
#[test]
fn with_the_receiver_on_a_process_the_other_process_sigkilled_every_word_counted_once() {
    let out = tempfile::tempdir().expect("a temporary directory");
    let out_dir = out.path().join("wc");
    let mut args = vec!["--rate", "20000", "--batch-ms", "100"];
    args.extend(["--local-cluster", "2", "--executors", "1"]);
    args.extend(["--receivers-in-processes", "--out", as_str(&out_dir)]);
    let run = started(&args);
    // The only receiver is placed on slot 0 (executor process 1).
    let victim = executor_pid(&run.stdout(), 2);
    sigkill(victim);
    let done = run.finish();
    assert_eq!(done.code, Some(0), "{}", done.describe());
    assert!(
        done.stdout
            .lines()
            .any(|l| l.starts_with("Executor process 1: ")
                && l.contains("lost 0 times, receivers of streams [0]")),
        "the receiver ran in process 1, which was not lost\n{}",
        done.describe()
    );
    assert!(
        done.stdout.contains("Executor process 2: ") && done.stdout.contains("lost 1 times"),
        "{}",
        done.describe()
    );
    assert!(
        done.stdout.contains("Input from socket") && done.stdout.contains(": 40000 records stored"),
        "the receiver's counters reached the coordinator\n{}",
        done.describe()
    );
    assert_eq!(
        summed_output(&out_dir),
        expected_counts(),
        "every word of the input counted exactly once"
    );
}

#[test]
fn executor_processes_exit_when_their_coordinator_is_sigkilled() {
    // Slow enough to be mid-run for 20 s.
    let run = started(&["--rate", "2000", "--local-cluster", "2", "--executors", "1"]);
    let stdout = run.stdout();
    let executors = [executor_pid(&stdout, 1), executor_pid(&stdout, 2)];
    assert!(executors.iter().all(|&p| running(p)));
    sigkill(run.pid());
    let _ = run.finish();
    let deadline = Instant::now() + Duration::from_secs(10);
    while executors.iter().any(|&p| running(p)) {
        assert!(
            Instant::now() < deadline,
            "executor processes {executors:?} outlived their coordinator by 10 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
