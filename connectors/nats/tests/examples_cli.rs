//! `nats_wordcount` as a user runs it, against a `nats-server -js` of the test's own: it
//! publishes the bundled text, counts it over several batches and exits 0 with its check
//! passed, twice on the same stream (the second run counts only what it published); a
//! server that is down is an error naming it (exit 1); a bad flag is a usage error (exit 2).
//! Examples are built by `cargo test` next to this test's binary.

mod nats_support;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use nats_support::{free_port, server};

fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/nats_wordcount
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join("nats_wordcount")
}

/// Runs the example with `args`, failing after 120 s.
fn run(args: &[&str]) -> (Output, String) {
    let mut child = Command::new(example())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nats_wordcount starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("poll").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("nats_wordcount did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("its output");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

#[test]
fn nats_wordcount_passes_its_check_twice_on_one_stream() {
    let Some(server) = server("nats_wordcount_passes_its_check_twice_on_one_stream") else {
        return;
    };
    for _ in 0..2 {
        let (out, text) = run(&[
            "--server",
            &server.url(),
            "--batch-ms",
            "200",
            "--max-rate-per-partition",
            "50000",
        ]);
        assert_eq!(out.status.code(), Some(0), "{text}");
        // 40,000 lines at 10,000 messages a batch: 4 batches with messages.
        let batches = text.lines().filter(|l| l.starts_with("batch ")).count();
        assert!(batches >= 4, "{text}");
        assert!(
            text.contains("equals an independent count of the input: OK"),
            "{text}"
        );
    }
}

#[test]
fn nats_wordcount_names_a_server_that_is_down_and_refuses_a_bad_flag() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let (out, text) = run(&["--server", &url]);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("nats {url}: cannot connect")),
        "{text}"
    );
    let (out, text) = run(&["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(2), "{text}");
}
