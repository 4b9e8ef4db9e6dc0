//! `bench_sustained`'s command line with tiny durations: one probe and one confirm level in
//! memory mode, one fixed latency level with markers in socket mode and one fixed level in
//! queue mode, each ending with a `RESULT` line whose word count matched the reference (the
//! harness exits 1 otherwise); a bad rate, or markers without a source, is a usage error
//! (exit 2).
//!
//! Cargo builds the `bench_sustained` binary before this test (`CARGO_BIN_EXE_bench_sustained`).
#![cfg(unix)]

use std::process::{Command, Output};

/// Runs the harness with `args` (split at whitespace).
fn run(args: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bench_sustained"))
        .args(args.split_whitespace())
        // The repository's root, where the harness is run from.
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .env_remove("RUST_LOG")
        .output()
        .expect("bench_sustained runs")
}

/// The JSON payloads of the lines tagged `tag`.
fn tagged(out: &Output, tag: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(tag)?.strip_prefix(' '))
        .map(|js| serde_json::from_str(js).expect("a JSON payload"))
        .collect()
}

/// The payload of the run's one `RESULT` line (failing the test if there is not exactly one).
fn the_result(out: &Output) -> serde_json::Value {
    let mut result = tagged(out, "RESULT");
    assert_eq!(result.len(), 1, "{}", describe(out));
    result.remove(0)
}

fn describe(out: &Output) -> String {
    format!(
        "{:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn a_short_search_prints_a_result_with_a_checked_count() {
    let out = run(concat!(
        "--mode memory --batch-ms 50 --warmup-stream-ms 0 --start-rate 20000 --max-probes 1 ",
        "--probe-warm 2 --probe-meas 4 --confirm-warm 2 --confirm-meas 4"
    ));
    assert!(out.status.success(), "{}", describe(&out));
    // One probe (a slow debug build may need its retry instead), then 1 to 3 confirms.
    let kinds: Vec<_> = tagged(&out, "LEVEL")
        .iter()
        .map(|l| l["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        kinds.first().map(String::as_str),
        Some("probe"),
        "{}",
        describe(&out)
    );
    assert_eq!(
        kinds.last().map(String::as_str),
        Some("confirm"),
        "{}",
        describe(&out)
    );
    let r = &the_result(&out);
    assert_eq!(r["kind"], "confirm");
    assert_eq!(r["count_ok"], true);
    // The start rate, or a step below it when a loaded machine failed a confirm (seen in CI
    // with other builds running: 18,000).
    let offered = r["offered_lines_per_s"].as_u64().unwrap_or(0);
    assert!(offered > 0 && offered <= 20_000, "{}", describe(&out));
    assert!(r["received_lines"].as_u64() > Some(0), "{}", describe(&out));
    assert_eq!(r["words_counted"], r["words_expected"]);
}

#[test]
fn a_fixed_socket_level_measures_marker_latency() {
    let out = run(concat!(
        "--mode socket --batch-ms 20 --warmup-stream-ms 0 --fixed-rates 20000 ",
        "--marker-every 100 --fixed-warm-ms 100 --fixed-meas-ms 100"
    ));
    assert!(out.status.success(), "{}", describe(&out));
    let lat = tagged(&out, "LAT");
    assert_eq!(lat.len(), 1, "{}", describe(&out));
    assert!(lat[0]["markers"].as_u64() > Some(0), "{}", describe(&out));
    // A marker's latency is at least the wait for its batch's output, never negative.
    assert!(
        lat[0]["all_min_ms"].as_f64() > Some(0.0),
        "{}",
        describe(&out)
    );
    let r = the_result(&out);
    assert_eq!(r["kind"], "fixed");
    assert_eq!(r["meas"], 30);
    assert_eq!(r["count_ok"], true, "{}", describe(&out));
}

#[test]
fn a_fixed_queue_level_counts_the_alternating_slices() {
    let out = run(concat!(
        "--mode queue --batch-ms 20 --warmup-stream-ms 0 --fixed-rates 50000 ",
        "--fixed-warm-ms 100 --fixed-meas-ms 100"
    ));
    assert!(out.status.success(), "{}", describe(&out));
    let r = &the_result(&out);
    assert_eq!(r["mode"], "queue");
    assert_eq!(r["count_ok"], true, "{}", describe(&out));
    // 50,000 lines/s in 20 ms batches: 1,000 lines per batch, every batch.
    assert_eq!(r["lines_per_batch"], 1000);
    let completed = r["completed"].as_u64().unwrap_or_default();
    assert!(completed >= 35, "{}", describe(&out));
    assert_eq!(r["received_lines"].as_u64(), Some(completed * 1000));
    // The two slices (corpus lines 0..1000 and 1000..2000) differ in words, so a batch that
    // read the other slice than the check expects fails the count.
    assert_eq!(r["words_counted"], r["words_expected"]);
    assert!(r["words_counted"].as_u64() > Some(0), "{}", describe(&out));
}

/// Runs the harness with `args` and checks that it exits 2 (a usage error) naming `option`.
fn assert_usage_error(args: &str, option: &str) {
    let out = run(args);
    assert_eq!(out.status.code(), Some(2), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(option),
        "{}",
        describe(&out)
    );
}

#[test]
fn markers_in_queue_mode_are_a_usage_error() {
    assert_usage_error(
        "--mode queue --fixed-rates 1000 --marker-every 10",
        "--marker-every",
    );
}

#[test]
fn a_rate_that_is_not_positive_is_a_usage_error() {
    assert_usage_error("--fixed-rates 0", "--fixed-rates");
}
