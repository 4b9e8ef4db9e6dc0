//! What the process-level crash tests share: the `stateful_wordcount` recovery job run as a
//! child process in a scratch directory, killed with SIGKILL and started again with the
//! same command, and its final state read back.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// The recovery job, run again and again in `root` with the same arguments.
pub struct Job {
    bin: PathBuf,
    root: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    runs: usize,
    child: Option<Child>,
}

impl Job {
    /// The `stateful_wordcount` example with `args`, run in `root`.
    pub fn new(bin: PathBuf, root: &Path, args: &[&str]) -> Job {
        Job {
            bin,
            root: root.to_path_buf(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            runs: 0,
            child: None,
        }
    }

    /// The recovery job: `stateful_wordcount` reading `input` (e.g. `--tail in.log`),
    /// checkpointing to `ckpt` every 500 ms, 100 ms batches, writing its final state to
    /// `final.tsv` and exiting after 3 s without new words; `extra` arguments after those.
    pub fn recovery(bin: PathBuf, root: &Path, input: &[&str], extra: &[&str]) -> Job {
        const COMMON: [&str; 10] = [
            "--checkpoint-dir",
            "ckpt",
            "--final-state",
            "final.tsv",
            "--idle-exit-secs",
            "3",
            "--batch-ms",
            "100",
            "--checkpoint-interval-ms",
            "500",
        ];
        let args: Vec<&str> = input.iter().chain(&COMMON).chain(extra).copied().collect();
        Job::new(bin, root, &args)
    }

    /// Sets an environment variable of every run (e.g. `RUST_LOG`).
    pub fn env(mut self, key: &str, value: &str) -> Job {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts the next run with `extra` arguments after the common ones; its stdout and
    /// stderr go to `run-<n>.out` and `run-<n>.err`. Returns the run's number.
    pub fn start(&mut self, extra: &[&str]) -> usize {
        assert!(self.child.is_none(), "a run is still going");
        let run = self.runs;
        self.runs += 1;
        let file = |ext: &str| {
            fs::File::create(self.root.join(format!("run-{run}.{ext}"))).expect("a log file")
        };
        let mut command = Command::new(&self.bin);
        command
            .args(&self.args)
            .args(extra)
            .current_dir(&self.root)
            .stdout(file("out"))
            .stderr(file("err"));
        for (k, v) in &self.env {
            command.env(k, v);
        }
        self.child = Some(command.spawn().expect("start the recovery job"));
        run
    }

    /// SIGKILLs the running run and checks that the signal killed it.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("a running job");
        child.kill().expect("SIGKILL the job");
        let status = wait_for(&mut child, Duration::from_secs(20));
        let run = self.runs - 1;
        assert_eq!(
            status.signal(),
            Some(9),
            "run {run} ended by itself ({status}) before the kill:\n{}",
            self.output(run)
        );
    }

    /// Waits for the running run to exit by itself within `limit`; fails with the end of
    /// its output if it does not.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("a running job");
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the job") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let out = self.output(self.runs - 1);
                let tail: Vec<&str> = out.lines().rev().take(30).collect();
                panic!(
                    "run {} did not exit within {limit:?}; its last lines:\n{}",
                    self.runs - 1,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits (up to 120 s) for the last run, started after the kills, to exit; asserts that
    /// it succeeded and restored from the checkpoint; returns its output.
    pub fn finish_restored(&mut self) -> String {
        let status = self.wait(Duration::from_secs(120));
        let out = self.output(self.runs - 1);
        assert!(status.success(), "the last run failed: {status}\n{out}");
        assert!(out.contains("Restored from checkpoint"), "{out}");
        out
    }

    /// What run `run` printed, stdout then stderr.
    pub fn output(&self, run: usize) -> String {
        let read = |ext: &str| {
            fs::read_to_string(self.root.join(format!("run-{run}.{ext}"))).unwrap_or_default()
        };
        format!("{}{}", read("out"), read("err"))
    }

    /// Waits until run `run` printed `needle` (or exited), at most `limit`.
    pub fn wait_for_output(&mut self, run: usize, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.output(run).contains(needle) {
                return true;
            }
            if let Some(child) = &mut self.child {
                if child.try_wait().ok().flatten().is_some() {
                    return self.output(run).contains(needle);
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Starts `kills` runs one after the other and SIGKILLs each at a random moment drawn
    /// from `seed`: four runs in five once they printed `ready` (restored and at work), then
    /// 50 to 500 ms later; the others 50 to 500 ms after their start, some before they
    /// restored.
    pub fn kill_at_random_moments(&mut self, kills: usize, seed: u64, ready: &str) {
        let mut rng = fastrand::Rng::with_seed(seed);
        for _ in 0..kills {
            let run = self.start(&[]);
            if rng.u64(..5) > 0 {
                self.wait_for_output(run, ready, Duration::from_secs(20));
            }
            std::thread::sleep(Duration::from_millis(50 + rng.u64(..450)));
            self.kill();
        }
    }

    /// How many runs were started.
    pub fn runs(&self) -> usize {
        self.runs
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits for `child` to exit, killing it and failing after `limit`.
pub fn wait_for(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the job") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the job did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A `word<TAB>count` file (the job's `--final-state`).
pub fn read_counts(path: &Path) -> BTreeMap<String, u64> {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| {
            let (w, n) = l.split_once('\t').expect("word<TAB>count");
            (w.to_string(), n.parse().expect("a count"))
        })
        .collect()
}

/// The first few words of `more` that `fewer` counts less often (or not at all).
fn first_short<'a>(
    more: &'a BTreeMap<String, u64>,
    fewer: &BTreeMap<String, u64>,
) -> Vec<(&'a String, &'a u64)> {
    more.iter()
        .filter(|(w, n)| fewer.get(*w).is_none_or(|m| m < n))
        .take(5)
        .collect()
}

/// Fails with the first few words lost and counted twice when `actual` is not `expected`.
pub fn assert_exactly_once(expected: &BTreeMap<String, u64>, actual: &BTreeMap<String, u64>) {
    assert!(!expected.is_empty(), "the test fed nothing");
    let lost = first_short(expected, actual);
    let doubled = first_short(actual, expected);
    assert!(
        lost.is_empty() && doubled.is_empty(),
        "lost {lost:?}, counted too often {doubled:?}"
    );
    assert_eq!(actual, expected);
}

/// At least once: fails with the first few words counted less than in `expected` (`context`
/// follows in the message), or counted and never fed; returns how many occurrences were
/// counted more than once (redelivered).
pub fn assert_at_least_once(
    expected: &BTreeMap<String, u64>,
    actual: &BTreeMap<String, u64>,
    context: &str,
) -> u64 {
    assert!(!expected.is_empty(), "the test fed nothing");
    let lost = first_short(expected, actual);
    assert!(
        lost.is_empty(),
        "acknowledged messages lost: {lost:?}\n{context}"
    );
    let unknown: Vec<_> = actual
        .keys()
        .filter(|w| !expected.contains_key(*w))
        .take(5)
        .collect();
    assert!(unknown.is_empty(), "words never published: {unknown:?}");
    actual.values().sum::<u64>() - expected.values().sum::<u64>()
}

/// The bytes of every file under `path`.
pub fn dir_size(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| dir_size(&e.path())).sum())
        .unwrap_or(0)
}

/// A count from the environment variable `name` (for longer local drills), else `default`.
pub fn count_from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
