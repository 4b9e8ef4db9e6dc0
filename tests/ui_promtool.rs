//! `/metrics` in the Prometheus text format passes `promtool check metrics` (Prometheus's
//! own linter: HELP and TYPE for every family, counter names ending in `_total`, units in
//! base units, no duplicate series), for a run with a receiver, a failed output, data
//! checkpoints and a checkpoint store on disk, so that every family has samples.
//!
//! promtool comes with Debian's `prometheus` package (`bash scripts/install-test-tools.sh`).
//! Without it the test prints a loud `SKIPPED` line and passes, except under `.ci/run`
//! (`RIVULET_REQUIRE_PROMTOOL=1`), where it fails.

mod common;
#[path = "ui_support/mod.rs"]
mod ui_support;

use std::io::Write;
use std::process::{Command, Stdio};

use ui_support::*;

#[actix::test]
async fn metrics_pass_promtool_check_metrics() {
    let Some(promtool) = common::installed_tool(
        "promtool",
        "prometheus",
        "RIVULET_REQUIRE_PROMTOOL",
        "metrics_pass_promtool_check_metrics",
    ) else {
        return;
    };
    let checkpoints = tempfile::tempdir().expect("a temporary directory");
    // 3 records, 3 batches, batch 200's second output fails; checkpoints on disk.
    let ssc = run_with_failure_in(Some(checkpoints.path()), 3, 3).await;
    let url = ssc.ui_url().expect("the UI is on");
    let text = tokio::task::spawn_blocking(move || {
        poll_json(&format!("{url}api/v1/streaming/statistics"), |s| {
            s["numTotalCompletedBatches"] == 3
        });
        let (status, text) = get(&format!("{url}metrics"));
        assert_eq!(status, 200, "{text}");
        text
    })
    .await
    .expect("the requests ran");
    for family in [
        "rivulet_batches_completed_total",
        "rivulet_receiver_records_total",
        "rivulet_checkpoint_store_size_bytes",
    ] {
        assert!(text.contains(family), "{family} has samples:\n{text}");
    }
    let mut check = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    check
        .stdin
        .take()
        .expect("a stdin")
        .write_all(text.as_bytes())
        .expect("the metrics reach promtool");
    let out = check.wait_with_output().expect("promtool ends");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics ({}): {said}\n--- the metrics:\n{text}",
        out.status
    );
    ssc.stop(rivulet::prelude::StopMode::Now)
        .await
        .expect("stops");
}
