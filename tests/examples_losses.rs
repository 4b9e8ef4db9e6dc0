//! The examples' loss accounting, run as a user would (issue 15, part 4): the bytes dropped
//! that an example prints are exact to the byte even when the input ends in a long line; a
//! loss without a named `--on-long-line` policy exits 1, a named policy accepts it (and the
//! checks expect the policy's outcome); `network_wordcount` prints its per-receiver losses
//! too, and a line cut short by a closed connection is reported as incomplete.
//!
//! The examples are built by `cargo test` next to this test's binary (see
//! `common::example_binary`). Every run writes its stdout and stderr to files and is killed
//! if it outlives its deadline; waits poll with a bounded deadline.
#![cfg(unix)]

mod common;
mod example_runs;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use example_runs::{as_str, run, start};
use tempfile::TempDir;

const MIB: usize = 1 << 20;

/// The bytes a socket receiver must drop for `input` served as is: for each line longer than
/// `max` (ASCII, no `\r`), all of it (`skip`) or all but its first `max` bytes
/// (`truncate`); none under `split`. Computed from the text, not by rivulet.
fn true_dropped(input: &[u8], max: usize, policy: &str) -> u64 {
    input
        .split(|&b| b == b'\n')
        .filter(|l| l.len() > max)
        .map(|l| match policy {
            "skip" => l.len() as u64,
            "truncate" => (l.len() - max) as u64,
            _ => 0,
        })
        .sum()
}

/// Lines, then an 8 MiB line of `w` as the last line: a receiver that stopped once the
/// last record was delivered would not have read the line's rest.
fn ends_in_a_long_line(dir: &Path) -> (PathBuf, Vec<u8>) {
    let mut input = b"the cat sat\non the mat\n".to_vec();
    input.extend(std::iter::repeat_n(b'w', 8 * MIB));
    input.push(b'\n');
    let path = dir.join("long_last.txt");
    fs::write(&path, &input).unwrap();
    (path, input)
}

#[test]
fn wordcount_reports_the_bytes_dropped_exactly_and_exits_1_without_a_named_policy() {
    let dir = TempDir::new().unwrap();
    let (path, input) = ends_in_a_long_line(dir.path());
    let base = [
        "--input",
        as_str(&path),
        "--rate",
        "0",
        "--batch-ms",
        "50",
        "--max-line-bytes",
        "1048576",
    ];
    // No policy named: truncated by default, reported exactly, and the run fails.
    let r = run("wordcount", &base);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    let truth = true_dropped(&input, MIB, "truncate");
    assert_eq!(truth, (7 * MIB) as u64);
    assert!(
        r.input_line().contains(&format!("; {truth} bytes dropped")),
        "{}",
        r.describe()
    );
    assert!(r.stderr.contains("input was lost"), "{}", r.describe());
    // Each named policy: exit 0, the same exact accounting.
    for policy in ["truncate", "skip", "split"] {
        let r = run(
            "wordcount",
            &[&base[..], &["--on-long-line", policy]].concat(),
        );
        assert_eq!(r.code, Some(0), "{policy}: {}", r.describe());
        let truth = true_dropped(&input, MIB, policy);
        assert!(
            r.input_line().contains(&format!("; {truth} bytes dropped")),
            "{policy}: expected {truth} bytes dropped\n{}",
            r.describe()
        );
        let (summary, records) = match policy {
            "truncate" => ("1 truncated, 0 skipped, 0 split", 3),
            "skip" => ("0 truncated, 1 skipped, 0 split (0 cuts", 2),
            // A run of `w` only: every cut is inside that one "word", and counted.
            _ => ("0 truncated, 0 skipped, 1 split (7 cuts inside a word)", 10),
        };
        assert!(
            r.input_line().contains(summary),
            "{policy}: {}",
            r.describe()
        );
        assert!(
            r.input_line()
                .contains(&format!("{records} records stored")),
            "{policy}: {}",
            r.describe()
        );
    }
}

/// A short file, then a long line of short words (3,001 bytes), then more lines.
fn long_line_of_words(dir: &Path) -> PathBuf {
    let mut input = b"hello world\nthe cat sat on the mat\n".to_vec();
    let mut long = Vec::new();
    let words = ["alpha", "be", "gamma", "delta", "epsilon", "z"];
    let mut i = 0;
    while long.len() < 3000 {
        long.extend_from_slice(words[i % words.len()].as_bytes());
        long.push(b' ');
        i += 1;
    }
    input.extend(&long);
    input.extend(b"\nthe end\n");
    let path = dir.join("words.txt");
    fs::write(&path, &input).unwrap();
    path
}

#[test]
fn stateful_wordcount_accepts_each_named_policy_and_fails_an_unnamed_loss() {
    let dir = TempDir::new().unwrap();
    let path = long_line_of_words(dir.path());
    let base = [
        "--input",
        as_str(&path),
        "--rate",
        "0",
        "--batch-ms",
        "50",
        "--max-line-bytes",
        "1000",
    ];
    for policy in ["truncate", "skip", "split"] {
        let r = run(
            "stateful_wordcount",
            &[&base[..], &["--on-long-line", policy]].concat(),
        );
        assert_eq!(r.code, Some(0), "{policy}: {}", r.describe());
        assert!(r.stdout.contains("Check OK"), "{policy}: {}", r.describe());
    }
    // `split` cut the line at spaces: no word was cut, the counts are the file's.
    let r = run(
        "stateful_wordcount",
        &[&base[..], &["--on-long-line", "split"]].concat(),
    );
    assert!(
        r.input_line().contains("1 split (0 cuts inside a word)"),
        "{}",
        r.describe()
    );
    let r = run("stateful_wordcount", &base);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(r.stderr.contains("input was lost"), "{}", r.describe());
    assert!(!r.stdout.contains("Check OK"), "{}", r.describe());
}

/// A server on 127.0.0.1 that accepts one connection, writes `data`, then closes it (or,
/// with `hold`, reads until the client goes away). Returns its port.
fn serve(data: Vec<u8>, hold: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let Ok((mut conn, _)) = listener.accept() else {
            return;
        };
        let _ = conn.write_all(&data);
        if hold {
            let _ = conn.read_to_end(&mut Vec::new());
        }
    });
    port
}

fn long_line_then_close() -> Vec<u8> {
    let mut data = b"hello world\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 5000));
    data.extend(b"\nbye\n");
    data
}

#[test]
fn network_wordcount_prints_its_losses_and_exits_1_without_a_named_policy() {
    let port = serve(long_line_then_close(), false).to_string();
    let base = [
        "127.0.0.1",
        port.as_str(),
        "--stop-on-close",
        "--max-line-bytes",
        "1000",
    ];
    let r = run("network_wordcount", &base);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    let line = r.input_line();
    assert!(
        line.contains("1 truncated") && line.contains("; 4000 bytes dropped"),
        "{}",
        r.describe()
    );
    assert!(r.stderr.contains("input was lost"), "{}", r.describe());
    assert!(
        r.stdout.contains("after the server closed the connection"),
        "{}",
        r.describe()
    );

    let port = serve(long_line_then_close(), false).to_string();
    let r = run(
        "network_wordcount",
        &[
            "127.0.0.1",
            port.as_str(),
            "--stop-on-close",
            "--max-line-bytes",
            "1000",
            "--on-long-line",
            "truncate",
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(
        r.input_line().contains("; 4000 bytes dropped"),
        "{}",
        r.describe()
    );
}

#[test]
fn network_wordcount_reports_a_line_cut_by_a_closed_connection_as_incomplete() {
    // The feeder dies mid-line: "partial li" is stored, but counted and reported.
    let port = serve(b"hello world\npartial li".to_vec(), false).to_string();
    let r = run(
        "network_wordcount",
        &["127.0.0.1", &port, "--stop-on-close"],
    );
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(
        r.input_line().contains("2 records stored")
            && r.input_line().contains("1 incomplete lines"),
        "{}",
        r.describe()
    );
    assert!(
        r.stderr
            .contains("cut short by the end of their connection"),
        "{}",
        r.describe()
    );
    assert!(
        r.stderr.contains("WARN") && r.stderr.contains("bytes_received=10"),
        "no WARN naming the bytes of the cut line\n{}",
        r.describe()
    );
}

#[test]
fn network_wordcount_stopped_by_a_signal_reports_its_losses_too() {
    // A live feed that stays open: the run ends on SIGTERM, and its loss still fails it.
    let port = serve(long_line_then_close(), true).to_string();
    let mut running = start(
        "network_wordcount",
        &["127.0.0.1", &port, "--max-line-bytes", "1000"],
    );
    // The last line's count is printed once its batch ran: everything was received.
    running.wait_for_stdout("the count of `bye`", |out| out.contains("(\"bye\", 1)"));
    let pid = running.pid().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let r = running.finish();
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(r.stdout.contains("Stopped on a signal"), "{}", r.describe());
    assert!(
        r.input_line().contains("; 4000 bytes dropped"),
        "{}",
        r.describe()
    );
}

#[test]
fn directory_wordcount_prints_what_reading_the_files_lost_and_exits_1_without_a_policy() {
    for (policy, code, summary) in [
        (
            None,
            1,
            "1 truncated, 0 skipped, 0 split (0 cuts inside a word); 4000 bytes dropped",
        ),
        (
            Some("skip"),
            0,
            "0 truncated, 1 skipped, 0 split (0 cuts inside a word); 5000 bytes dropped",
        ),
    ] {
        let root = TempDir::new().unwrap();
        let (watched, staged) = (root.path().join("in"), root.path().join("staged.txt"));
        fs::create_dir(&watched).unwrap();
        let mut args = vec![as_str(&watched), "--max-line-bytes", "1000"];
        if let Some(policy) = policy {
            args.extend(["--on-long-line", policy]);
        }
        let mut running = start("directory_wordcount", &args);
        running.wait_for_stdout("that it watches", |out| out.contains("Watching"));
        // Files must appear atomically: written aside, then moved in.
        fs::write(&staged, long_line_then_close()).unwrap();
        fs::rename(&staged, watched.join("feed.txt")).unwrap();
        running.wait_for_stdout("the count of `bye`", |out| out.contains("(\"bye\", 1)"));
        let pid = running.pid().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let r = running.finish();
        assert_eq!(r.code, Some(code), "{policy:?}: {}", r.describe());
        assert!(
            r.input_line().contains("1 files in") && r.input_line().contains(summary),
            "{policy:?}: {}",
            r.describe()
        );
    }
}
