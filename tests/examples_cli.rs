//! The example binaries' command lines, run as a user would: usage errors exit 2 with a
//! message naming the option, logs go to stderr without colour codes when it is not a
//! terminal, checks that compared nothing or found bad input fail, and an empty input is
//! reported as 0 lines.
//!
//! The examples are built by `cargo test` (examples are compiled with the tests) next to this
//! test's binary, in `target/<profile>/examples/`. Every run reads a small input at
//! `--rate 0` with short batches, writes its stdout and stderr to files (so neither is a
//! terminal) and is killed if it outlives its deadline.
#![cfg(unix)]

mod common;
mod example_runs;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::example_binary;
use example_runs::{as_str, example, run, start, Run, Running};
use tempfile::TempDir;

/// Runs example `name` with `args` in `cwd`, with `env` set (see `example_runs::example`).
fn run_in(cwd: &Path, env: &[(&str, &str)], name: &str, args: &[&str]) -> Run {
    let mut command = example(name, args);
    command.current_dir(cwd).envs(env.iter().copied());
    Running::spawn(name, command).finish()
}

/// A small text file in `dir`, for inputs.
fn small_input(dir: &Path) -> PathBuf {
    let path = dir.join("small.txt");
    fs::write(&path, "the cat sat\non the mat\nthe end\n").expect("write the input");
    path
}

#[test]
fn wordcount_refuses_a_non_empty_out_directory() {
    let dir = TempDir::new().unwrap();
    let input = small_input(dir.path());
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("batch-1000"), "old\t1\n").unwrap();

    let r = run(
        "wordcount",
        &[
            "--input",
            as_str(&input),
            "--rate",
            "0",
            "--batch-ms",
            "50",
            "--out",
            as_str(&out),
        ],
    );
    assert_eq!(r.code, Some(2), "{}", r.describe());
    assert!(
        r.stderr.contains("--out") && r.stderr.contains("--overwrite"),
        "{}",
        r.describe()
    );
    // Nothing was written next to the old run's output.
    let entries: Vec<_> = fs::read_dir(&out).unwrap().collect();
    assert_eq!(entries.len(), 1, "{}", r.describe());
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `--overwrite` deletes only an earlier output of wordcount (its marker and `batch-*`
/// directories): `.`, a checkout, a home directory and a directory holding anything else are
/// refused with nothing deleted; and nothing is deleted before the input is validated.
#[test]
fn wordcount_overwrite_deletes_only_its_own_earlier_output() {
    let root = TempDir::new().unwrap();
    let input = small_input(root.path());
    let input = as_str(&input);
    let args = |out: &str| -> Vec<String> {
        [
            "--input",
            input,
            "--rate",
            "0",
            "--batch-ms",
            "50",
            "--overwrite",
            "--out",
            out,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let refused = |cwd: &Path, env: &[(&str, &str)], out: &str, dir: &Path| {
        let before = listing(dir);
        let argv = args(out);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let r = run_in(cwd, env, "wordcount", &argv);
        assert_eq!(r.code, Some(2), "--out {out}: {}", r.describe());
        assert!(
            r.stderr.contains("--overwrite refused") && r.stderr.contains("nothing was deleted"),
            "{}",
            r.describe()
        );
        assert_eq!(listing(dir), before, "--out {out}: nothing deleted");
    };
    // `.`: the working directory, holding someone's files.
    let work = root.path().join("work");
    fs::create_dir(&work).unwrap();
    fs::write(work.join("notes.txt"), "mine").unwrap();
    refused(&work, &[], ".", &work);
    // A checkout: `.git` and sources.
    let checkout = root.path().join("checkout");
    fs::create_dir_all(checkout.join(".git")).unwrap();
    fs::create_dir_all(checkout.join("src")).unwrap();
    fs::write(checkout.join("src/main.rs"), "fn main() {}").unwrap();
    refused(root.path(), &[], as_str(&checkout), &checkout);
    // The repository this test runs in (a real checkout), and `/`: neither holds the
    // marker, so both are refused before anything is touched.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    refused(repo, &[], ".", repo);
    refused(root.path(), &[], "/", Path::new("/"));
    // `$HOME`, as the shell expands `--out ~`.
    let home = root.path().join("home");
    fs::create_dir(&home).unwrap();
    fs::write(home.join(".bashrc"), "# mine").unwrap();
    refused(
        root.path(),
        &[("HOME", as_str(&home))],
        as_str(&home),
        &home,
    );

    // An earlier output is replaced ...
    let out = root.path().join("out");
    let base = [
        "--input",
        input,
        "--rate",
        "0",
        "--batch-ms",
        "50",
        "--out",
        as_str(&out),
    ];
    let r = run("wordcount", &base);
    assert_eq!(r.code, Some(0), "the first run: {}", r.describe());
    let r = run("wordcount", &base);
    assert_eq!(
        r.code,
        Some(2),
        "a second run without --overwrite: {}",
        r.describe()
    );
    let r = run("wordcount", &[&base[..], &["--overwrite"]].concat());
    assert_eq!(
        r.code,
        Some(0),
        "a second run with --overwrite: {}",
        r.describe()
    );
    let names = listing(&out);
    assert!(names.contains(&".rivulet-output".to_string()), "{names:?}");
    assert!(names
        .iter()
        .all(|n| n == ".rivulet-output" || n.starts_with("batch-")));
    // ... but not once something else was put in it,
    fs::write(out.join("report.txt"), "mine").unwrap();
    refused(root.path(), &[], as_str(&out), &out);
    fs::remove_file(out.join("report.txt")).unwrap();
    // and not before the input was read.
    let before = listing(&out);
    let r = run(
        "wordcount",
        &[
            "--input",
            "/nonexistent",
            "--overwrite",
            "--out",
            as_str(&out),
        ],
    );
    assert_ne!(r.code, Some(0), "{}", r.describe());
    assert!(r.stderr.contains("/nonexistent"), "{}", r.describe());
    assert_eq!(
        listing(&out),
        before,
        "nothing deleted for a run that could not start"
    );
}

#[test]
fn wordcount_bad_numbers_are_usage_errors_naming_the_option() {
    for (option, value) in [
        ("--executors", "100000"),
        ("--rate", "-5"),
        ("--batch-ms", "99999999999"),
    ] {
        let r = run("wordcount", &[option, value]);
        assert_eq!(r.code, Some(2), "{option} {value}: {}", r.describe());
        assert!(
            r.stderr.contains(option),
            "{option} {value}: the message does not name the option\n{}",
            r.describe()
        );
        assert!(
            !r.stderr.contains("panicked"),
            "{option} {value}: {}",
            r.describe()
        );
    }
}

#[test]
fn logs_go_to_stderr_without_colour_and_results_to_stdout() {
    let dir = TempDir::new().unwrap();
    // Invalid UTF-8: the socket receiver repairs the line and logs a WARN naming its source.
    let input = dir.path().join("bad.txt");
    fs::write(&input, b"good line\nbad \xff\xfe bytes\nlast line\n").unwrap();

    let r = run(
        "wordcount",
        &["--input", as_str(&input), "--rate", "0", "--batch-ms", "50"],
    );
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(r.stdout.contains("Done: 3 lines"), "{}", r.describe());
    assert!(
        r.stderr.contains("WARN"),
        "no WARN on stderr\n{}",
        r.describe()
    );
    assert!(
        !r.stdout.contains("WARN"),
        "a log line on stdout\n{}",
        r.describe()
    );
    for (name, text) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
        assert!(
            !text.contains('\u{1b}'),
            "ANSI escape codes on {name}, which is a file\n{}",
            r.describe()
        );
    }
}

#[test]
fn windowed_wordcount_that_compared_no_window_fails() {
    let dir = TempDir::new().unwrap();
    let input = small_input(dir.path());
    // The input is done in a few 100 ms batches, long before the first 60 s slide.
    let r = run(
        "windowed_wordcount",
        &[
            "--input",
            as_str(&input),
            "--rate",
            "0",
            "--batch-ms",
            "100",
            "--window-secs",
            "60",
            "--slide-secs",
            "60",
        ],
    );
    assert_ne!(r.code, Some(0), "{}", r.describe());
    assert!(r.stderr.contains("nothing to check"), "{}", r.describe());
    assert!(!r.stdout.contains("Check OK"), "{}", r.describe());
}

#[test]
fn log_analytics_fails_on_a_file_that_is_not_an_access_log() {
    let r = run(
        "log_analytics",
        &[
            "--input",
            "examples/data/shakespeare.txt",
            "--rate",
            "0",
            "--batch-ms",
            "200",
        ],
    );
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(r.stdout.contains("Check FAILED"), "{}", r.describe());
    assert!(!r.stdout.contains("Check OK: all"), "{}", r.describe());

    // Malformed lines are rate-limited (at most 10 per listing) and clipped.
    let per_batch: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("batch ") && l.contains(": malformed line "))
        .collect();
    let listed: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("Malformed line "))
        .collect();
    assert!(
        !listed.is_empty() && listed.len() <= 10 && per_batch.len() <= 10,
        "{} per-batch and {} listed malformed lines\n{}",
        per_batch.len(),
        listed.len(),
        r.describe()
    );
    for line in listed.iter().chain(&per_batch) {
        // 200 characters of the line, plus the prefix, the error and the clip marker.
        assert!(
            line.chars().count() <= 200 + 160,
            "a malformed line printed at {} characters: {line}",
            line.chars().count()
        );
    }
    // The whole output stays small: no line dump of the 1 MB input.
    assert!(
        r.stdout.len() < 32 * 1024,
        "{} bytes on stdout",
        r.stdout.len()
    );
}

#[test]
fn wordcount_of_an_empty_input_reports_zero_lines() {
    let r = run(
        "wordcount",
        &["--input", "/dev/null", "--rate", "0", "--batch-ms", "50"],
    );
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(
        r.stdout.contains("(0 lines)") && r.stdout.contains("Done: 0 lines processed"),
        "{}",
        r.describe()
    );
}

/// Runs example `name` with `args` in the repository root under `sh -c` with a file size
/// limit of `kib` KiB (SIGXFSZ ignored, so a write past it fails with EFBIG, as on a full
/// disk).
fn run_with_file_limit(kib: u64, name: &str, args: &[&str]) -> Run {
    let script = format!(
        "trap '' XFSZ; ulimit -f {kib}; exec {} {}",
        example_binary(name).display(),
        args.join(" ")
    );
    let mut command = Command::new("sh");
    command
        .args(["-c", &script])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG");
    Running::spawn(name, command).finish()
}

/// A failed output in the last (here the only) batch: the run must exit 1 with the error,
/// never 0 with "Done" (it used to, 5 runs in 6, when the "every line processed" listener
/// won the race with the failure).
#[test]
fn a_failed_output_fails_the_run() {
    let root = TempDir::new().unwrap();
    let out = root.path().join("out");
    for attempt in 0..3 {
        let _ = fs::remove_dir_all(&out);
        // One batch of the whole text (its part files are ~100 KiB) under a 16 KiB limit.
        let r = run_with_file_limit(
            16,
            "wordcount",
            &["--rate", "0", "--batch-ms", "2000", "--out", as_str(&out)],
        );
        assert_eq!(r.code, Some(1), "attempt {attempt}: {}", r.describe());
        assert!(
            !r.stdout.contains("Done:"),
            "attempt {attempt}: {}",
            r.describe()
        );
        assert!(
            r.stderr.contains("error: ") && r.stderr.contains("save_as_text_files"),
            "attempt {attempt}: the error names the output: {}",
            r.describe()
        );
        assert!(
            !r.stderr.contains("coordinator died"),
            "a failure is not reported as a crash: {}",
            r.describe()
        );
    }
}

/// SIGINT and SIGTERM stop a run before the end of its input: the example stops
/// gracefully, prints what it has, and exits 130 or 143, never 0 as if complete.
#[cfg(unix)]
#[test]
fn a_run_a_signal_stopped_exits_with_the_signals_status() {
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        // The bundled text at 2,000 lines/s lasts 20 s: the signal comes long before.
        let mut running = start("wordcount", &["--rate", "2000", "--batch-ms", "200"]);
        running.wait_for_stdout("progress", |out| out.contains("[progress]"));
        let sent = Command::new("kill")
            .args([signal, &running.pid().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let r = running.finish();
        assert_eq!(r.code, Some(code), "kill {signal}: {}", r.describe());
        assert!(
            r.stdout.contains("Stopped on a signal") && !r.stdout.contains("Done:"),
            "{}",
            r.describe()
        );
        assert!(r.stderr.contains("results are partial"), "{}", r.describe());
        // What was read before the signal, with its losses, is reported all the same.
        assert!(
            r.input_line().contains("records stored"),
            "{}",
            r.describe()
        );
    }
}

/// Usage errors exit 2 with a message naming the option, never clap's raw parse errors.
#[test]
fn usage_errors_exit_2_and_name_the_option() {
    let dir = TempDir::new().unwrap();
    let cases: Vec<(&str, Vec<&str>, &str)> = vec![
        ("wordcount", vec!["--input", "/nonexistent"], "--input"),
        ("wordcount", vec!["--input", as_str(dir.path())], "--input"),
        ("wordcount", vec!["--executors", "100000"], "--executors"),
        (
            "windowed_wordcount",
            vec!["--window-secs", "0"],
            "--window-secs",
        ),
        (
            "windowed_wordcount",
            vec!["--window-secs", "-1"],
            "--window-secs",
        ),
        (
            "windowed_wordcount",
            vec!["--window-secs", "18446744073709551615"],
            "--window-secs",
        ),
        (
            "windowed_wordcount",
            vec!["--slide-secs", "x"],
            "--slide-secs",
        ),
        (
            "log_analytics",
            vec!["--window-batches", "0"],
            "--window-batches",
        ),
        (
            "log_analytics",
            vec!["--max-malformed-percent", "-1"],
            "--max-malformed-percent",
        ),
        ("network_wordcount", vec!["127.0.0.1", "0"], "PORT"),
        ("directory_wordcount", vec!["/nonexistent"], "DIR"),
        // `.invalid` never resolves (RFC 2606): not retried forever as a server that is down.
        (
            "network_wordcount",
            vec!["no-such-host.invalid", "9999"],
            "HOST",
        ),
    ];
    for (example, args, option) in cases {
        let r = run(example, &args);
        assert_eq!(r.code, Some(2), "{example} {args:?}: {}", r.describe());
        assert!(
            r.stderr.contains(option),
            "{example} {args:?}: the message names {option}: {}",
            r.describe()
        );
        for raw in ["invalid digit", "unexpected argument", "panicked"] {
            assert!(
                !r.stderr.contains(raw),
                "{example} {args:?}: {raw}: {}",
                r.describe()
            );
        }
    }
}

/// log_analytics on an empty log fails because nothing was compared, and says so (it was a
/// malformed-percentage failure); on a file that is not an access log, the verdict and the
/// wording agree.
#[test]
fn log_analytics_checks_say_what_they_found() {
    let dir = TempDir::new().unwrap();
    let empty = dir.path().join("empty.log");
    fs::write(&empty, "").unwrap();
    let r = run("log_analytics", &["--input", as_str(&empty), "--rate", "0"]);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    assert!(r.stderr.contains("nothing to check"), "{}", r.describe());
    assert!(!r.stderr.contains("malformed"), "{}", r.describe());
    assert!(!r.stdout.contains("Check OK"), "{}", r.describe());
}

/// `wordcount --event-log DIR` writes a log from which `history` serves the run's API until
/// SIGTERM (exit 0); `history` on a directory without a log, or on none, is a usage error.
#[test]
fn history_serves_a_finished_wordcount_from_its_event_log() {
    let dir = TempDir::new().unwrap();
    let input = small_input(dir.path());
    let events = dir.path().join("events");
    let r = run(
        "wordcount",
        &[
            "--input",
            as_str(&input),
            "--rate",
            "0",
            "--batch-ms",
            "50",
            "--event-log",
            as_str(&events),
        ],
    );
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert_eq!(listing(&events).len(), 1, "one log: {:?}", listing(&events));

    let mut history = start(
        "history",
        &["--event-log", as_str(&events), "--ui", "127.0.0.1:0"],
    );
    history.wait_for_stdout("its address", |out| out.contains("History: http://"));
    let out = history.stdout();
    let url = out
        .lines()
        .find_map(|l| l.strip_prefix("History: "))
        .and_then(|l| l.split_whitespace().next())
        .expect("the address line")
        .to_string();
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let body = {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(host).expect("history answers");
        write!(
            stream,
            "GET /api/v1/streaming/statistics HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    };
    // The input's 3 lines, all processed, in a run that ended.
    assert!(
        body.contains("\"numProcessedRecords\":3") && body.contains("\"appName\":\"wordcount\""),
        "{body}"
    );
    let sent = Command::new("kill")
        .args(["-TERM", &history.pid().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let r = history.finish();
    assert_eq!(r.code, Some(0), "{}", r.describe());
    assert!(
        r.stdout.contains("the run stopped cleanly"),
        "{}",
        r.describe()
    );

    let empty = dir.path().join("empty");
    fs::create_dir(&empty).unwrap();
    for (path, says) in [
        (empty.as_path(), "holds no event log"),
        (input.as_path(), "not a directory"),
    ] {
        let r = run("history", &["--event-log", as_str(path)]);
        assert_eq!(r.code, Some(2), "{}", r.describe());
        assert!(r.stderr.contains(says), "{}", r.describe());
    }
}
