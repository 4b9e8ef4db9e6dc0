//! Process-level recovery: the `stateful_wordcount` recovery job counts the words of files
//! that a feeder moves into a directory; it is killed with SIGKILL at 5 random moments and
//! started again each time with the same command. Its final state must equal an independent
//! count of every file moved in: no word lost, none counted twice.
//!
//! The example binary is built by `cargo test` (examples are compiled with the tests) next
//! to this test's binary, in `target/<profile>/examples/`.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{count_words, example_binary};

fn start(bin: &Path, root: &Path, run: usize) -> Child {
    let log = fs::File::create(root.join(format!("run-{run}.log"))).expect("a log file");
    Command::new(bin)
        .args([
            "--directory",
            "in",
            "--checkpoint-dir",
            "ckpt",
            "--final-state",
            "final.tsv",
        ])
        .args([
            "--idle-exit-secs",
            "2",
            "--batch-ms",
            "100",
            "--executors",
            "2",
        ])
        .current_dir(root)
        .stdout(log)
        .stderr(Stdio::null())
        .spawn()
        .expect("start the recovery job")
}

/// Waits for `child` to exit, failing after `limit`.
fn wait(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the job") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the recovery job did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn killed_five_times_with_sigkill_the_job_loses_and_doubles_nothing() {
    let bin = example_binary("stateful_wordcount");
    let root = tempfile::tempdir().unwrap();
    let (dir, staging) = (root.path().join("in"), root.path().join("staging"));
    fs::create_dir(&dir).unwrap();
    fs::create_dir(&staging).unwrap();
    let text = fs::read_to_string("examples/data/shakespeare.txt").unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // The feeder: 60 files of 500 lines each, one every 40 ms (about 2.4 s in all).
    let files: Vec<(String, String)> = lines
        .chunks(500)
        .take(60)
        .enumerate()
        .map(|(i, chunk)| (format!("part-{i:03}.txt"), chunk.join("\n") + "\n"))
        .collect();
    let expected = count_words(files.iter().flat_map(|(_, content)| content.lines()));
    // The first run starts before any file is moved in (files present at a fresh start are
    // ignored): wait until it says it is counting.
    let mut job = start(&bin, root.path(), 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !fs::read_to_string(root.path().join("run-0.log"))
        .unwrap_or_default()
        .contains("Counting the words")
    {
        assert!(Instant::now() < deadline, "the job did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let feeder = {
        let (dir, staging, files) = (dir.clone(), staging.clone(), files.clone());
        std::thread::spawn(move || {
            for (name, content) in files {
                fs::write(staging.join(&name), content).unwrap();
                fs::rename(staging.join(&name), dir.join(&name)).unwrap();
                std::thread::sleep(Duration::from_millis(40));
            }
        })
    };

    let mut rng = fastrand::Rng::with_seed(0x5eed_cafe);
    for kill in 0..5 {
        std::thread::sleep(Duration::from_millis(300 + rng.u64(..700)));
        job.kill().expect("SIGKILL the job");
        let status = wait(&mut job, Duration::from_secs(10));
        assert_eq!(
            status.signal(),
            Some(9),
            "kill {kill}: the job was killed by SIGKILL"
        );
        job = start(&bin, root.path(), kill + 1);
    }
    feeder.join().unwrap();
    let status = wait(&mut job, Duration::from_secs(60));
    let out = fs::read_to_string(root.path().join("run-5.log")).unwrap();
    assert!(status.success(), "the last run failed: {status}\n{out}");
    assert!(
        out.contains("Restored from checkpoint"),
        "the last run restarted from the checkpoint:\n{out}"
    );

    let final_state: BTreeMap<String, u64> = fs::read_to_string(root.path().join("final.tsv"))
        .unwrap()
        .lines()
        .map(|l| {
            let (w, n) = l.split_once('\t').expect("word<TAB>count");
            (w.to_string(), n.parse().expect("a count"))
        })
        .collect();
    assert!(!expected.is_empty());
    let lost: Vec<_> = expected
        .iter()
        .filter(|(w, n)| final_state.get(*w).is_none_or(|m| m < n))
        .take(5)
        .collect();
    let doubled: Vec<_> = final_state
        .iter()
        .filter(|(w, n)| expected.get(*w).is_none_or(|m| m < n))
        .take(5)
        .collect();
    assert!(
        lost.is_empty() && doubled.is_empty(),
        "lost {lost:?}, doubled {doubled:?}"
    );
    assert_eq!(final_state, expected);
}
