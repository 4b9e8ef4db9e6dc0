//! Process-level exactly-once from Kafka to Kafka: the `kafka_log_pipeline` job (direct
//! stream, 100 ms batches, per-batch status counts written by `save_to_kafka_exactly_once`)
//! is SIGKILLed at 20 random moments (`RIVULET_KAFKA_KILLS` changes the count) and started
//! again each time with the same command, while a feeder produces the access log's lines
//! into a mock Kafka cluster that runs in a process of its own
//! (`kafka_log_pipeline --serve-mock-cluster`). Afterwards a `read_committed` consumer of
//! this test reads the committed progress records: their offset ranges must cover every
//! offset of the input (none lost), and no range may overlap another unless it is the same
//! range (a batch recomputed after a kill reads the ranges of its input cut, never a range
//! re-cut longer). It reports the ranges published twice as they were.
//!
//! What it does not check: that a batch recomputed after its transaction committed
//! publishes nothing. On the mock cluster a transaction aborted after its progress record
//! was sent stays visible, so a range published twice cannot be told from a skip that does
//! not work (with the skip disabled, 4 ranges came twice in one run; with it, 0 or 1).
//!
//! Nor what a `read_committed` reader sees on a broker with transaction isolation. librdkafka's mock cluster has none (its `EndTxn` handler commits and aborts
//! nothing; what a transaction sent is visible at once), so the records a killed run had
//! sent before its commit stay visible; the job's check counts each batch's count of a
//! status once (`BATCH_HEADER`).
#![cfg(unix)]

#[path = "../../../tests/crash_support/mod.rs"]
mod crash_support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crash_support::{count_from_env, Job};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

fn example() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent()
        .and_then(|deps| deps.parent())
        .expect("target/<profile>")
        .join("examples")
        .join("kafka_log_pipeline")
}

/// The mock cluster's process, killed on drop.
struct Cluster(Child);

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cluster() -> (Cluster, String) {
    let mut child = Command::new(example())
        .arg("--serve-mock-cluster")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the mock cluster starts");
    let stdout = child.stdout.take().expect("its stdout");
    let cluster = Cluster(child);
    let mut first = String::new();
    BufReader::new(stdout)
        .read_line(&mut first)
        .expect("the cluster's address");
    let brokers = first
        .trim()
        .strip_prefix("brokers ")
        .unwrap_or_else(|| panic!("not an address: {first:?}"))
        .to_string();
    (cluster, brokers)
}

/// The status code of an Apache combined log line: the first field after the request's
/// closing quote (a simpler reading than the job's full parser).
fn status_of(line: &str) -> String {
    line.split('"')
        .nth(2)
        .and_then(|after| after.split_whitespace().next())
        .unwrap_or_else(|| panic!("no status in {line:?}"))
        .to_string()
}

/// How many records `partitions` partitions of `topic` hold (high minus low watermark).
fn records_in(brokers: &str, topic: &str, partitions: i32) -> u64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "recovery-kafka-kill-check")
        .create()
        .expect("a consumer");
    (0..partitions)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("the partition's offsets");
            (high - low) as u64
        })
        .sum()
}

/// Every committed record of partition 0 of `topic`, read with `read_committed` to the end:
/// its batch header (empty when it has none), key and value.
fn committed(brokers: &str, topic: &str) -> Vec<(String, String, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "recovery-kafka-kill-check")
        .set("isolation.level", "read_committed")
        .create()
        .expect("a consumer");
    let (low, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("the topic's offsets");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(low))
        .expect("assign");
    consumer.assign(&tpl).expect("assign");
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let position = consumer.position().expect("the position");
        if matches!(position.find_partition(topic, 0).map(|e| e.offset()),
            Some(Offset::Offset(at)) if at >= high)
        {
            return records;
        }
        assert!(Instant::now() < deadline, "{topic} not read to {high}");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m.expect("a record");
            let text =
                |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
            let batch = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == rivulet_kafka::BATCH_HEADER))
                .and_then(|h| h.value);
            records.push((text(batch), text(m.key()), text(m.payload())));
            if m.offset() + 1 >= high {
                return records;
            }
        }
    }
}

#[test]
fn killed_twenty_times_the_kafka_pipeline_publishes_every_count_once() {
    let kills = count_from_env("RIVULET_KAFKA_KILLS", 20);
    let root = tempfile::tempdir().unwrap();
    let log = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/data/apache_access.log"
    ))
    .unwrap();
    // Whole lines only (the log's one truncated line is left out), so that the simple
    // reading of the status here and the job's parser agree on every line.
    let lines: Vec<String> = log
        .lines()
        .filter(|l| l.ends_with('"'))
        .map(str::to_string)
        .collect();
    assert!(lines.len() > 9_000, "{}", lines.len());
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for line in &lines {
        *expected.entry(status_of(line)).or_default() += 1;
    }
    let input = root.path().join("fed.log");
    std::fs::write(&input, lines.join("\n")).unwrap();

    let (_cluster, brokers) = cluster();
    // The feeder produces 200 lines every 25 ms (about 1.3 s in all) while the job is
    // killed and restarted.
    let feeder = {
        let (brokers, lines) = (brokers.clone(), lines.clone());
        std::thread::spawn(move || {
            let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
                .set("bootstrap.servers", &brokers)
                .set("enable.idempotence", "true")
                .create()
                .expect("a producer");
            for chunk in lines.chunks(200) {
                for line in chunk {
                    rivulet_kafka::send_waiting(
                        &producer,
                        BaseRecord::<(), String>::to("access").payload(line),
                    )
                    .expect("produce");
                }
                producer.flush(Duration::from_secs(30)).expect("flush");
                std::thread::sleep(Duration::from_millis(25));
            }
        })
    };
    let input_arg = input.to_string_lossy().into_owned();
    let mut job = Job::new(
        example(),
        root.path(),
        &[
            "--brokers",
            &brokers,
            "--no-load",
            "--input",
            &input_arg,
            "--checkpoint-dir",
            "ckpt",
            "--idle-exit-secs",
            "3",
            "--batch-ms",
            "100",
            "--max-rate-per-partition",
            "3000",
        ],
    )
    .env("RUST_LOG", "warn");
    job.kill_at_random_moments(kills, 0x6b61_666b, "Counting status codes");
    feeder.join().unwrap();
    let last = job.start(&[]);
    let status = job.wait(Duration::from_secs(120));
    let out = job.output(last);
    assert!(out.contains("Restored from checkpoint"), "{out}");
    assert!(out.contains("No new lines for 3 s: stopping."), "{out}");

    // What the feeder's topic holds: exactly the lines fed, or the fault is upstream of the
    // job (a producer retry the broker appended twice).
    let held = records_in(&brokers, "access", 3);
    assert_eq!(
        held,
        lines.len() as u64,
        "topic access holds {held} records for {} lines fed",
        lines.len()
    );
    // The committed progress records, in order: their ranges must cover every offset of the
    // input (none lost), and a range either starts where the partition's published offsets
    // end or repeats a range exactly (a batch recomputed after a kill reads its input cut's
    // ranges; the mock cluster leaves an aborted transaction's progress record visible).
    let mut covered: BTreeMap<u64, u64> = BTreeMap::new();
    let mut seen: std::collections::BTreeSet<(u64, u64, u64)> = Default::default();
    let mut batches = 0;
    let mut republished: Vec<String> = Vec::new();
    for (_, _, p) in committed(&brokers, "status_counts.progress") {
        let v: serde_json::Value = serde_json::from_str(&p).expect("a progress record");
        batches += 1;
        for r in v["ranges"].as_array().cloned().unwrap_or_default() {
            let partition = r["partition"]["partition"].as_u64().expect("a partition");
            let (from, until) = (
                r["from"].as_u64().expect("from"),
                r["until"].as_u64().expect("until"),
            );
            if from == until {
                continue;
            }
            let at = covered.entry(partition).or_insert(0);
            if !seen.insert((partition, from, until)) {
                republished.push(format!("{partition}:{from}..{until}"));
                continue;
            }
            assert!(
                from >= *at,
                "partition {partition}: {from}..{until} overlaps offsets published up to {} (a batch re-cut after a crash)",
                *at
            );
            assert!(
                from <= *at,
                "partition {partition}: offsets {}..{from} never published",
                *at
            );
            *at = until;
        }
    }
    assert_eq!(
        covered.values().sum::<u64>(),
        held,
        "offsets published vs the topic"
    );
    // Written to stderr directly: the harness captures `eprintln!` of passing tests.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "{batches} batches published; ranges published twice as they were (mock cluster artifacts): {republished:?}"
    );
    // The job's own check passed: the committed counts, each batch's count of a status read
    // once (`BATCH_HEADER`: on the mock cluster an aborted transaction's records stay
    // visible beside the batch written again over the same ranges), equal its independent
    // count of the log.
    assert!(status.success(), "the last run failed: {status}\n{out}");
}
