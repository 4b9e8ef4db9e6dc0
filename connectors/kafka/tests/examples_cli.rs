//! The Kafka examples as a user runs them on a fresh machine (no `--brokers`: the embedded
//! mock cluster): each loads its bundled input, processes it over several batches and exits
//! 0 with its check passed. Examples are built by `cargo test` next to this test's binary.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn example() -> PathBuf {
    example_named("kafka_wordcount")
}

fn example_named(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/examples/kafka_wordcount
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join(name)
}

#[test]
fn kafka_wordcount_on_the_embedded_cluster_passes_its_check() {
    let mut child = Command::new(example())
        .args(["--batch-ms", "200", "--max-rate-per-partition", "20000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kafka_wordcount starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("poll").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kafka_wordcount did not end within 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("its output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("embedded mock cluster"), "{stdout}");
    // 40,000 lines over 3 partitions at 4,000 records per partition and batch: 4 batches
    // with records.
    let batches = stdout
        .lines()
        .filter(|l| l.starts_with("batch ") && !l.contains(": 0 records"))
        .count();
    assert!(batches >= 3, "{stdout}");
    assert!(
        stdout.contains("equals an independent count of the input: OK"),
        "{stdout}"
    );
}

#[test]
fn kafka_wordcount_of_an_input_without_words_says_it_checked_nothing() {
    let dir = std::env::temp_dir().join(format!("kafka_wordcount_empty_{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory");
    let input = dir.join("empty.txt");
    std::fs::write(&input, "").expect("an empty input");
    let out = Command::new(example())
        .arg("--input")
        .arg(&input)
        .output()
        .expect("kafka_wordcount runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("nothing to check"), "{stdout}");
}

#[test]
fn kafka_log_pipeline_on_the_embedded_cluster_publishes_counts_that_add_up() {
    let out = Command::new(example_named("kafka_log_pipeline"))
        .output()
        .expect("kafka_log_pipeline runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // 10,000 lines over 3 partitions at 1,000 records per partition and 500 ms batch.
    let batches = stdout.lines().filter(|l| l.starts_with("batch ")).count();
    assert!(batches >= 4, "{stdout}");
    // The bundled log's truncated line 8,899 is reported, not fatal.
    assert!(stdout.contains("1 line(s) did not parse"), "{stdout}");
    assert!(
        stdout.contains(
            "status codes in status_counts add up to an independent count of the 10000 lines: OK"
        ),
        "{stdout}"
    );
}
