//! The status page in a real browser: headless Chromium (Debian's `chromium`, installed by
//! `.ci/run`) loads the page of a run with a failed batch, lets its scripts poll the JSON
//! API and draw, and the test checks the DOM (a timeline and a histogram per series, x-axis
//! labels that neither overlap nor stick out, at 1,000 and 2,560 px wide; one table row per
//! batch whose record count matches the API, the failed batch marked with its message,
//! receivers, the DAG with no edge through a node, the checkpoint store's line when there is a
//! checkpoint directory; a batch's page opened by its URL) and saves screenshots at both
//! widths under `target/ui-screenshots/`. An example run with `--ui-linger` is checked after
//! its end: the page still answers, with the final state.
//!
//! Without Chromium these tests print a loud `SKIPPED` line naming the command that
//! installs it (`bash scripts/install-test-tools.sh`) and pass, so that a fresh machine's
//! `cargo test --workspace` runs every other test; with `RIVULET_REQUIRE_BROWSER=1`, as
//! `.ci/run` sets after installing it, they fail instead. `RIVULET_CHROMIUM` names another
//! browser binary.

mod common;
#[path = "ui_support/mod.rs"]
mod ui_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::example_binary;
use rivulet::prelude::*;
use ui_support::*;

/// How long one browser run may take.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(60);

/// The headless browser, if this machine has one.
fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("RIVULET_CHROMIUM") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

/// Whether the browser tests can run: `false` (after a loud line on stderr) when Chromium
/// is missing; fails instead when `RIVULET_REQUIRE_BROWSER=1`.
fn browser_present(test: &str) -> bool {
    if find_chromium().is_some() {
        return true;
    }
    let install = "Chromium is missing: install it with `bash scripts/install-test-tools.sh` \
                   (or `apt-get install -y chromium`), or set RIVULET_CHROMIUM to its path";
    if std::env::var_os("RIVULET_REQUIRE_BROWSER").is_some_and(|v| v == "1") {
        panic!("{install} (RIVULET_REQUIRE_BROWSER=1: the browser test must run).");
    }
    // Written to stderr directly: the test harness captures `eprintln!` of passing tests.
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {install}. ***\n");
    false
}

fn chromium() -> PathBuf {
    find_chromium().expect("checked by browser_present")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The widths the page is checked at (Spark's readable range: a laptop to a 1440p screen).
const WIDTHS: [u32; 2] = [1000, 2560];

/// Runs headless Chromium with `args` then `url` in a window `width` px wide, killing it
/// after [`BROWSER_TIMEOUT`].
fn browse_at(profile: &Path, width: u32, args: &[&str], url: &str) -> Output {
    let mut child = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--virtual-time-budget=4000",
        ])
        .arg(format!("--window-size={width},2200"))
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", chromium().display()));
    let deadline = Instant::now() + BROWSER_TIMEOUT;
    loop {
        match child.try_wait().expect("the browser's status") {
            Some(_) => return child.wait_with_output().expect("the browser's output"),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("headless Chromium did not finish within {BROWSER_TIMEOUT:?}");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Runs headless Chromium at 1,400 px wide.
fn browse(profile: &Path, args: &[&str], url: &str) -> Output {
    browse_at(profile, 1400, args, url)
}

/// The DOM of `url` at `width` px, once the page's script has refreshed it.
fn dom_at(profile: &Path, width: u32, url: &str) -> String {
    let out = browse_at(profile, width, &["--dump-dom"], url);
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("data-refreshed"),
        "the page's script did not refresh it at {width} px; stderr: {}\nDOM: {dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The values of attribute `name` in `dom`, in order.
fn attr_values<'a>(dom: &'a str, name: &str) -> Vec<&'a str> {
    let needle = format!(" {name}=\"");
    dom.match_indices(&needle)
        .map(|(i, _)| {
            let rest = &dom[i + needle.len()..];
            &rest[..rest.find('"').expect("a closed attribute")]
        })
        .collect()
}

/// The element with `id` (its opening tag up to the end of `dom`'s text after it).
fn element<'a>(dom: &'a str, id: &str) -> &'a str {
    let at = dom
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no element #{id}: {dom}"));
    &dom[dom[..at].rfind('<').expect("a tag")..]
}

/// Checks the charts of `dom` drawn at `width` px: a timeline and a histogram for each of the
/// four series and the receivers' rates, each on a canvas as wide as its box, and x-axis
/// labels that neither overlap nor stick out of their chart (the page measures them after
/// each draw).
fn check_charts(dom: &str, width: u32) {
    for series in [
        "input-rate",
        "scheduling-delay",
        "processing-time",
        "total-delay",
    ] {
        for kind in ["chart", "hist"] {
            let chart = element(dom, &format!("{kind}-{series}"));
            let chart = &chart[..chart.find("</canvas>").unwrap_or(chart.len())];
            assert!(
                chart.contains("<canvas"),
                "{kind}-{series} draws on a canvas at {width} px: {chart}"
            );
        }
    }
    let rates = element(dom, "chart-receiver-rates");
    assert!(
        rates[..rates.find("</canvas>").unwrap_or(rates.len())].contains("<canvas"),
        "the receivers' rates draw on a canvas at {width} px: {rates}"
    );
    let gaps = attr_values(dom, "data-x-label-gap");
    assert_eq!(
        gaps.len(),
        9,
        "nine charts (four timelines, four histograms, the receivers' rates) measured their labels: {dom}"
    );
    for gap in gaps {
        if gap != "none" {
            let gap: f64 = gap.parse().expect("a number");
            assert!(
                gap >= 4.0,
                "x labels overlap at {width} px (gap {gap}): {dom}"
            );
        }
    }
    for (at, _) in dom.match_indices(" data-x-labels=\"") {
        let tag = &dom[dom[..at].rfind('<').expect("a tag")..];
        let tag = &tag[..tag.find('>').expect("a tag's end")];
        let n: u32 = attr_values(tag, "data-x-labels")[0]
            .parse()
            .expect("a count");
        assert!(n >= 2, "each x axis is labelled at {width} px: {tag}");
    }
    for clipped in attr_values(dom, "data-x-labels-clipped") {
        assert_eq!(clipped, "0", "no x label is cut off at {width} px: {dom}");
    }
    // The charts fill their boxes: the timelines take most of the width.
    let widths: Vec<u32> = attr_values(dom, "data-width")
        .iter()
        .map(|w| w.parse().expect("a width"))
        .collect();
    let widest = widths.iter().copied().max().unwrap_or(0);
    assert!(
        widest > width / 2 && widest < width,
        "the timelines are sized to the window at {width} px: {widths:?}"
    );
    assert!(
        dom.contains("Times in local time: "),
        "the time zone is named: {dom}"
    );
}

/// Saves a screenshot of `url` at each of [`WIDTHS`] as `target/ui-screenshots/<name>-<width>.png`.
fn screenshots(profile: &Path, name: &str, url: &str) {
    let shots = target_dir().join("ui-screenshots");
    std::fs::create_dir_all(&shots).expect("the screenshot directory");
    for width in WIDTHS {
        let shot = shots.join(format!("{name}-{width}.png"));
        let _ = std::fs::remove_file(&shot);
        let out = browse_at(
            profile,
            width,
            &[&format!("--screenshot={}", shot.display())],
            url,
        );
        let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 10_000,
            "a screenshot at {} ({size} bytes); stderr: {}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[actix::test]
async fn the_status_page_draws_in_headless_chromium() {
    if !browser_present("the_status_page_draws_in_headless_chromium") {
        return;
    }
    let checkpoints = tempfile::tempdir().expect("a checkpoint directory");
    let ssc = run_with_failure_in(Some(checkpoints.path()), 5, 4).await;
    let url = ssc.ui_url().expect("the UI is on");
    let api = format!("{url}api/v1/streaming");
    let stats = poll_json(&format!("{api}/statistics"), |s| {
        s["numTotalCompletedBatches"] == 4
    });
    let batches = get_json(&format!("{api}/batches"), 200);
    let profile = tempfile::tempdir().expect("a browser profile directory");

    let out = browse(profile.path(), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        dom.contains("data-refreshed"),
        "the page's script did not refresh it; stderr: {}\nDOM: {dom}",
        String::from_utf8_lossy(&out.stderr)
    );
    let canvases = dom.matches("<canvas").count();
    assert!(
        canvases >= 8,
        "four timelines and four histograms draw on canvases, found {canvases}: {dom}"
    );
    let completed = element(&dom, "batches");
    let completed = &completed[..completed.find("</table>").expect("the table's end")];
    for b in batches.as_array().expect("a list") {
        let row = format!(
            "data-batch-time=\"{}\" data-records=\"{}\"",
            b["batchTime"], b["inputSize"]
        );
        assert!(
            completed.contains(&row),
            "a row {row} in the completed batches' table: {dom}"
        );
    }
    assert!(
        dom.contains("data-records=\"5\""),
        "batch 1's 5 records: {dom}"
    );
    let failed = dom
        .find("class=\"batch failed")
        .unwrap_or_else(|| panic!("the failed batch is marked: {dom}"));
    let row_end = dom[failed..]
        .find("</tr>")
        .map_or(dom.len(), |i| failed + i);
    let row = &dom[failed..row_end];
    assert!(row.contains("data-batch-time=\"200\""), "{row}");
    assert!(
        row.contains("href=\"#/batch/200\""),
        "the row links to the batch's page: {row}"
    );
    assert!(
        row.contains("FAILED") && row.contains("fails on purpose"),
        "{row}"
    );
    assert!(
        dom.contains(">fixed<"),
        "the receivers table names the receiver: {dom}"
    );
    assert!(
        dom.contains("receiver_stream #0") && dom.contains("tests/ui_support/mod.rs:"),
        "the DAG names operators with call sites: {dom}"
    );
    // The checkpoint store's line, with the numbers of the API (fixed since the last batch).
    let store = &stats["checkpointStore"];
    for (attr, key) in [
        ("data-size-bytes", "sizeBytes"),
        ("data-live-bytes", "liveBytes"),
    ] {
        let n = store[key].as_u64().expect("a byte count");
        assert!(
            dom.contains(&format!("{attr}=\"{n}\"")),
            "the checkpoint store's {key} {n}: {dom}"
        );
    }
    assert!(dom.contains("Checkpoint store: "), "{dom}");
    assert!(
        dom.contains("data-edges-through-nodes=\"0\""),
        "no DAG edge passes through a node: {dom}"
    );
    let active = element(&dom, "active-batches");
    let active = &active[..active.find("</table>").expect("the table's end")];
    assert!(
        !active.contains("data-batch-time"),
        "no batch is active: {active}"
    );
    // Nothing changed since the first refresh: the later ones fetched only the statistics
    // and the receivers, and added no element.
    assert!(
        dom.contains("data-fetched=\"statistics receivers\"")
            && dom.contains("data-nodes-added=\"0\""),
        "an idle refresh fetches and rebuilds nothing: {}",
        &dom[..dom.find("<h1>").unwrap_or(dom.len())]
    );
    for width in WIDTHS {
        check_charts(&dom_at(profile.path(), width, &url), width);
    }

    // The failed batch's page, opened by its URL.
    let page = dom_at(profile.path(), 1400, &format!("{url}#/batch/200"));
    let main = element(&page, "main-view");
    assert!(
        main[..main.find('>').expect("a tag")].contains("hidden"),
        "the overview is hidden on a batch's page: {main}"
    );
    let view = element(&page, "batch-view");
    let head = &view[..view.find('>').expect("a tag")];
    assert!(
        !head.contains("hidden")
            && head.contains("data-batch-time=\"200\"")
            && head.contains("data-status=\"FAILED\""),
        "the batch's page shows batch 200: {head}"
    );
    let outputs = element(&page, "outputs");
    let outputs = &outputs[..outputs.find("</table>").expect("the table's end")];
    assert_eq!(
        outputs.matches("data-output-op=").count(),
        2,
        "both output operations: {outputs}"
    );
    assert!(
        outputs.contains("fails on purpose"),
        "the failed output operation with its reason: {outputs}"
    );
    let jobs = element(&page, "jobs");
    assert!(
        jobs[..jobs.find("</table>").expect("the table's end")].contains("<td>"),
        "the batch's jobs and stages: {jobs}"
    );
    let gone = dom_at(profile.path(), 1400, &format!("{url}#/batch/123456"));
    let missing = element(&gone, "batch-missing");
    assert!(
        missing.starts_with("<div id=\"batch-missing\" class=\"error\">")
            && missing.contains("no retained batch")
            && missing.contains("123456"),
        "a batch that is not retained is named as such: {missing}"
    );

    screenshots(profile.path(), "streaming", &url);
    screenshots(profile.path(), "batch", &format!("{url}#/batch/200"));
    ssc.stop(StopMode::Graceful).await.expect("stops");
}

/// Kills the child when dropped (the test may fail half way).
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_example_run_with_ui_serves_the_page_to_a_browser() {
    if !browser_present("an_example_run_with_ui_serves_the_page_to_a_browser") {
        return;
    }
    // The main job with --ui on a free port, slowly enough to be running while we look.
    let out = tempfile::tempdir().expect("a directory for its output");
    let log = out.path().join("stdout.txt");
    let child = Command::new(example_binary("wordcount"))
        .args(["--ui", "127.0.0.1:0", "--rate", "2000", "--batch-ms", "200"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::fs::File::create(&log).expect("a log file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start the wordcount example");
    let _running = Running(child);
    // It prints `UI: http://127.0.0.1:PORT/` once it serves the page.
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| l.starts_with("UI: http://")) {
            break line.trim_start_matches("UI: ").trim().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the example printed no UI address: {text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let api = format!("{url}api/v1/streaming");
    poll_json(&format!("{api}/statistics"), |s| {
        s["numTotalCompletedBatches"].as_u64().unwrap_or(0) >= 2
    });
    let profile = tempfile::tempdir().expect("a browser profile directory");
    let page = browse(profile.path(), &["--dump-dom"], &url);
    let dom = String::from_utf8_lossy(&page.stdout).to_string();
    assert!(
        dom.contains("data-refreshed"),
        "the page refreshed itself: {dom}"
    );
    assert!(dom.matches("<canvas").count() >= 4, "charts: {dom}");
    assert!(dom.contains("data-batch-time="), "batch rows: {dom}");
    assert!(
        dom.contains("socket 127.0.0.1:"),
        "the receivers table names the socket receiver: {dom}"
    );
    assert!(
        dom.contains("examples/wordcount.rs:"),
        "the DAG shows the example's call sites: {dom}"
    );
    assert!(
        !dom.contains("data-size-bytes"),
        "no checkpoint store line without a checkpoint directory: {dom}"
    );
}

#[test]
fn an_example_run_with_ui_linger_keeps_its_final_page() {
    if !browser_present("an_example_run_with_ui_linger_keeps_its_final_page") {
        return;
    }
    // The whole input (40,000 lines) in about a second of 100 ms batches, then the linger.
    let out = tempfile::tempdir().expect("a directory for its output");
    let log = out.path().join("stdout.txt");
    let child = Command::new(example_binary("wordcount"))
        .args(["--ui", "127.0.0.1:0", "--ui-linger", "120"])
        .args(["--rate", "40000", "--batch-ms", "100"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::fs::File::create(&log).expect("a log file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start the wordcount example");
    let mut running = Running(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    let text = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("[ui] the run is over") {
            break text;
        }
        assert!(
            Instant::now() < deadline,
            "the example did not end its run: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let url = text
        .lines()
        .find_map(|l| l.strip_prefix("UI: "))
        .expect("the UI address")
        .trim()
        .to_string();
    let api = format!("{url}api/v1/streaming");
    let stats = get_json(&format!("{api}/statistics"), 200);
    assert_eq!(stats["numProcessedRecords"], 40_000, "{stats}");
    assert_eq!(stats["numActiveReceivers"], 0, "{stats}");
    assert_eq!(stats["numActiveBatches"], 0, "{stats}");
    let profile = tempfile::tempdir().expect("a browser profile directory");
    for width in WIDTHS {
        let dom = dom_at(profile.path(), width, &url);
        check_charts(&dom, width);
        assert!(
            dom.contains("records 40000"),
            "the final record count: {dom}"
        );
        let receivers = element(&dom, "receivers");
        let receivers = &receivers[..receivers.find("</table>").expect("the table's end")];
        assert!(
            receivers.contains("data-active=\"false\"") && receivers.contains("no (stopped)"),
            "the receiver shows as stopped: {receivers}"
        );
        assert!(
            dom.contains("data-edges-through-nodes=\"0\"")
                && dom.contains("examples/wordcount.rs:"),
            "the DAG, its edges clear of its nodes: {dom}"
        );
    }
    screenshots(profile.path(), "wordcount-final", &url);
    assert!(
        running
            .0
            .try_wait()
            .expect("the example's status")
            .is_none(),
        "the example lingers (120 s) while the page is read"
    );
}
