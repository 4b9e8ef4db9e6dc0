//! Process-level faults of the checkpoint directory, each injected for real and each
//! checked to have happened: a flipped byte in the newest metadata checkpoint, a truncated
//! sled file, a second instance on a held directory, a full disk (the process's file size
//! limit, `RLIMIT_FSIZE`, on a real file system), and `--fresh` on paths it must not delete.
//! After each, the `stateful_wordcount` recovery job restarts and its final state equals an
//! independent count of the files fed: nothing lost, nothing counted twice, and the run
//! says what happened and what to do.
#![cfg(unix)]

mod common;
mod crash_support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{example_binary, words_of};
use crash_support::{assert_exactly_once, read_counts, wait_for, Job};
use rivulet::actors::SledCheckpointStore;
use rivulet::framework::checkpoint::{CheckpointStore, Tree};

const ARGS: [&str; 10] = [
    "--directory",
    "in",
    "--checkpoint-dir",
    "ckpt",
    "--idle-exit-secs",
    "2",
    "--batch-ms",
    "100",
    "--checkpoint-interval-ms",
    "500",
];

/// A scratch directory with `in/` and `staging/`, and the lines of the bundled text.
fn scratch() -> (tempfile::TempDir, Vec<String>) {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("in")).unwrap();
    fs::create_dir(root.path().join("staging")).unwrap();
    let text = fs::read_to_string("examples/data/shakespeare.txt").unwrap();
    (root, text.lines().map(str::to_string).collect())
}

/// Moves files `from..to` (200 lines each) into `in/`; adds their words to `expected`.
fn feed(
    root: &Path,
    lines: &[String],
    from: usize,
    to: usize,
    expected: &mut BTreeMap<String, u64>,
) {
    for i in from..to {
        let chunk = &lines[i * 200..(i + 1) * 200];
        for line in chunk {
            for w in words_of(line) {
                *expected.entry(w).or_default() += 1;
            }
        }
        let name = format!("part-{i:03}.txt");
        fs::write(root.join("staging").join(&name), chunk.join("\n") + "\n").unwrap();
        fs::rename(
            root.join("staging").join(&name),
            root.join("in").join(&name),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(30));
    }
}

/// Runs the job until it is idle, feeding files `from..to` once it counts; returns its output.
fn run_fed(
    job: &mut Job,
    root: &Path,
    lines: &[String],
    range: (usize, usize),
    expected: &mut BTreeMap<String, u64>,
) -> String {
    let run = job.start(&["--final-state", "final.tsv"]);
    assert!(
        job.wait_for_output(run, "Counting the words", Duration::from_secs(30)),
        "{}",
        job.output(run)
    );
    feed(root, lines, range.0, range.1, expected);
    let status = job.wait(Duration::from_secs(60));
    let out = job.output(run);
    assert!(status.success(), "{status}\n{out}");
    out
}

#[test]
fn a_damaged_newest_checkpoint_or_a_truncated_store_falls_back_and_loses_nothing() {
    let (root, lines) = scratch();
    let mut expected = BTreeMap::new();
    let mut job = Job::new(example_binary("stateful_wordcount"), root.path(), &ARGS);
    run_fed(&mut job, root.path(), &lines, (0, 10), &mut expected);

    // One flipped byte in the newest metadata checkpoint's value.
    {
        let store = SledCheckpointStore::open(root.path().join("ckpt")).unwrap();
        let newest = store.keys(Tree::Meta, b"meta/").unwrap().pop().unwrap();
        let mut value = store.get(Tree::Meta, &newest).unwrap().unwrap();
        let middle = value.len() / 2;
        value[middle] ^= 0x01;
        store.put(Tree::Meta, &newest, &value).unwrap();
        store.flush().unwrap();
    }
    let out = run_fed(&mut job, root.path(), &lines, (10, 20), &mut expected);
    assert!(
        out.contains("Skipped 1 damaged newer checkpoint") && out.contains("checksum"),
        "the restart fell back and said so:\n{out}"
    );
    assert!(out.contains("1 batch(es) older"), "{out}");
    assert_exactly_once(&expected, &read_counts(&root.path().join("final.tsv")));

    // The sled file cut short: the store rolls back, and the restart says how far.
    let current = fs::read_to_string(root.path().join("ckpt/CURRENT")).unwrap();
    let db = root.path().join("ckpt").join(current.trim()).join("db");
    let len = fs::metadata(&db).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&db)
        .unwrap()
        .set_len(len.saturating_sub(64 << 10))
        .unwrap();
    let out = run_fed(&mut job, root.path(), &lines, (20, 30), &mut expected);
    assert!(
        out.contains("older than the last batch this directory completed"),
        "the rollback was reported:\n{out}"
    );
    assert_exactly_once(&expected, &read_counts(&root.path().join("final.tsv")));
}

#[test]
fn a_second_instance_on_a_held_directory_is_refused_by_pid_and_fresh_never_deletes_it() {
    let (root, lines) = scratch();
    let bin = example_binary("stateful_wordcount");
    let mut expected = BTreeMap::new();
    let mut first = Job::new(bin.clone(), root.path(), &ARGS);
    let run = first.start(&["--final-state", "final.tsv"]);
    assert!(first.wait_for_output(run, "Counting the words", Duration::from_secs(30)));
    let pid = first_pid(root.path());

    for extra in [&[][..], &["--fresh"][..]] {
        let out = Command::new(&bin)
            .args(ARGS)
            .args(extra)
            .current_dir(root.path())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {text}");
        assert!(
            text.contains("in use by another running process")
                && text.contains(&format!("pid {pid}")),
            "{extra:?}: {text}"
        );
        assert!(
            !text.contains("--fresh") && !text.contains("coordinator"),
            "{extra:?}: {text}"
        );
    }
    // The first instance's checkpoint is intact: it goes on and counts everything.
    feed(root.path(), &lines, 0, 10, &mut expected);
    assert!(first.wait(Duration::from_secs(60)).success());
    assert_exactly_once(&expected, &read_counts(&root.path().join("final.tsv")));

    // `--fresh` deletes only a rivulet checkpoint directory.
    let other = root.path().join("notes");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("keep.txt"), b"mine").unwrap();
    let out = Command::new(&bin)
        .args(["--directory", "in", "--checkpoint-dir", "notes", "--fresh"])
        .current_dir(root.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("not a rivulet checkpoint directory"),
        "{text}"
    );
    assert_eq!(fs::read(other.join("keep.txt")).unwrap(), b"mine");
}

/// The pid the first instance wrote in the directory's lock file.
fn first_pid(root: &Path) -> u32 {
    fs::read_to_string(root.join("ckpt/LOCK"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_full_disk_stops_the_job_with_advice_and_a_restart_resumes() {
    let (root, lines) = scratch();
    let bin = example_binary("stateful_wordcount");
    let mut expected = BTreeMap::new();
    // Under a 2 MiB file size limit (SIGXFSZ ignored, so writes fail with EFBIG as on a
    // full disk), the data checkpoints of a growing state soon cannot be written.
    let command = format!(
        "trap '' XFSZ; ulimit -f 2048; exec {} {} --final-state final.tsv",
        bin.display(),
        ARGS.join(" ")
    );
    let mut child = Command::new("sh")
        .args(["-c", &command])
        .current_dir(root.path())
        .stdout(fs::File::create(root.path().join("full.out")).unwrap())
        .stderr(fs::File::create(root.path().join("full.err")).unwrap())
        .spawn()
        .unwrap();
    let mut fed = 0;
    while fed < 60 && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(if fed == 0 { 1500 } else { 0 }));
        feed(root.path(), &lines, fed, fed + 1, &mut expected);
        fed += 1;
    }
    let status = wait_for(&mut child, Duration::from_secs(60));
    let err = fs::read_to_string(root.path().join("full.err")).unwrap();
    assert_eq!(
        status.code(),
        Some(1),
        "the limit was hit and the job failed: {err}"
    );
    let last = err
        .lines()
        .rfind(|l| l.starts_with("error:"))
        .unwrap_or_default();
    assert!(
        last.contains("file system is full") && last.contains("free space and restart"),
        "{err}"
    );
    assert!(!last.contains("--fresh"), "{last}");
    assert!(!err.contains("coordinator died"), "{err}");

    // Space freed (no limit): the restart resumes and counts every file once.
    let mut job = Job::new(bin, root.path(), &ARGS);
    let out = run_fed(&mut job, root.path(), &lines, (fed, fed + 5), &mut expected);
    assert!(out.contains("Restored from checkpoint"), "{out}");
    assert_exactly_once(&expected, &read_counts(&root.path().join("final.tsv")));
}
