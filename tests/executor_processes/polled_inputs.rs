//! A polled input read by executor processes: the `stateful_wordcount` recovery job over a
//! directory (`--directory`) with `--local-cluster 2`. The coordinator lists the directory
//! and chooses each batch's files; the processes read them (the map stages leave the
//! coordinator) and send back what they read and what the source noted. Fed a good file, a
//! file with a line over `--max-line-bytes` and a byte of invalid UTF-8, and a
//! subdirectory (unreadable: skipped), the job must count every word of what was readable
//! exactly once (counted here independently), report the truncated and repaired lines and
//! the skipped entry as if it had read everything itself, and exit 1 (input was lost).

use std::time::Duration;

use crate::common::count_words;
use crate::crash_support::read_counts;
use crate::example_runs::{as_str, start};
use crate::tasks_run;

#[test]
fn files_read_by_executor_processes_are_counted_once_and_their_losses_reported() {
    let root = tempfile::tempdir().expect("a temporary directory");
    let (dir, staging) = (root.path().join("in"), root.path().join("staging"));
    std::fs::create_dir(&dir).unwrap();
    std::fs::create_dir(&staging).unwrap();
    let final_state = root.path().join("final.tsv");
    let mut run = start(
        "stateful_wordcount",
        &[
            "--directory",
            as_str(&dir),
            "--local-cluster",
            "2",
            "--executors",
            "1",
            "--batch-ms",
            "100",
            "--max-line-bytes",
            "100",
            "--idle-exit-secs",
            "2",
            "--final-state",
            as_str(&final_state),
        ],
    );
    run.wait_for_stdout("the executor processes' pids", |s| {
        s.contains("Executor process 2: pid")
    });
    let text = std::fs::read_to_string("examples/data/shakespeare.txt").unwrap();
    let good: String = text.lines().take(400).map(|l| format!("{l}\n")).collect();
    let long = format!("{} tail\n", "x".repeat(150));
    let mut damaged = b"first line\n".to_vec();
    damaged.extend_from_slice(long.as_bytes());
    damaged.extend_from_slice(b"bad \xff byte\n");
    let files: [(&str, &[u8]); 2] = [("good.txt", good.as_bytes()), ("damaged.txt", &damaged)];
    for (name, content) in files {
        std::fs::write(staging.join(name), content).unwrap();
        std::fs::rename(staging.join(name), dir.join(name)).unwrap();
        std::thread::sleep(Duration::from_millis(300));
    }
    std::fs::create_dir(dir.join("a-directory")).unwrap();
    let done = run.finish();

    // Independently: the good file's words, plus the damaged file's as the job delivers
    // them (the long line cut to its first 100 bytes, the bad byte replaced).
    let delivered = format!("first line\n{}\nbad \u{fffd} byte\n", "x".repeat(100));
    let expected = count_words(good.lines().chain(delivered.lines()));
    assert_eq!(
        read_counts(&final_state),
        expected,
        "every readable word counted once\n{}",
        done.describe()
    );
    let out = &done.stdout;
    assert!(
        out.contains("1 lines with invalid UTF-8 repaired") && out.contains("1 truncated"),
        "the processes' repairs and cuts are reported\n{}",
        done.describe()
    );
    assert!(
        out.contains("1 entries skipped") && out.contains("a-directory: is a directory"),
        "the skipped entry is reported\n{}",
        done.describe()
    );
    assert_eq!(done.code, Some(1), "input was lost\n{}", done.describe());
    let mapped = tasks_run(out, "map");
    assert!(
        mapped > 0,
        "the processes read the files\n{}",
        done.describe()
    );
}
