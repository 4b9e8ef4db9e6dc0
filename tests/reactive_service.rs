//! The `reactive_service` example end to end, over real HTTP on 127.0.0.1: its service
//! and load generator together (a few hundred events, normal and overloaded), checked by the
//! example itself against independent counts; and the service alone, spoken to with raw
//! HTTP/1.1 requests (a malformed event gets 400, a valid one 200, `GET /stats` 200), then
//! stopped with SIGTERM.
//!
//! The example binary is built by `cargo test` (examples are compiled with the tests) next
//! to this test's binary, in `target/<profile>/examples/`.
#![cfg(unix)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::example_binary;

fn log_path() -> String {
    format!(
        "{}/examples/data/apache_access.log",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Starts the example with `args` (and a short batch and window), its stdout piped.
fn start(args: &[&str]) -> Child {
    Command::new(example_binary("reactive_service"))
        .args([
            "--input",
            &log_path(),
            "--batch-ms",
            "200",
            "--window-secs",
            "2",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the example")
}

/// The lines of `child`'s stdout, as they come (read on a thread, so waits can time out).
fn lines_of(child: &mut Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for `child` to exit within `limit` (killing it and failing past it); returns its
/// status and every line it printed.
fn finish(
    mut child: Child,
    lines: &mpsc::Receiver<String>,
    limit: Duration,
) -> (ExitStatus, String) {
    let deadline = Instant::now() + limit;
    let mut out = String::new();
    loop {
        while let Ok(line) = lines.try_recv() {
            out.push_str(&line);
            out.push('\n');
        }
        if let Some(status) = child.try_wait().expect("wait for the example") {
            // The rest of its output (the reader ends at EOF).
            while let Ok(line) = lines.recv_timeout(Duration::from_secs(5)) {
                out.push_str(&line);
                out.push('\n');
            }
            return (status, out);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the example did not exit within {limit:?}; its output:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The number before `label` in the line starting with `prefix`, e.g. `overloaded (503)`.
fn number_before(out: &str, prefix: &str, label: &str) -> u64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no `{prefix}` line in:\n{out}"));
    let before = &line[..line
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in {line}"))];
    before
        .split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number before `{label}` in {line}"))
}

#[test]
fn service_and_generator_count_every_accepted_event_once() {
    let mut child = start(&["--limit", "300", "--rate", "300", "--quiet"]);
    let lines = lines_of(&mut child);
    let (status, out) = finish(child, &lines, Duration::from_secs(60));
    assert!(status.success(), "exit {status}; output:\n{out}");
    assert!(!out.contains("FAILED"), "{out}");
    assert!(
        out.contains("Done: 300 events accepted, each counted exactly once."),
        "{out}"
    );
    assert_eq!(
        number_before(&out, "Service:", "malformed (400)"),
        3,
        "{out}"
    );
}

#[test]
fn overloaded_service_answers_503_and_still_counts_exactly() {
    // Analytics that take 5 ms per event (200 events/s), a 50-record buffer, a 50 ms
    // deadline and no retries: the generator, unpaced on 8 connections, must get 503s.
    let mut child = start(&[
        "--limit",
        "300",
        "--rate",
        "0",
        "--analytics-cost-us",
        "5000",
        "--buffer-records",
        "50",
        "--deadline-ms",
        "50",
        "--retries",
        "0",
        "--quiet",
    ]);
    let lines = lines_of(&mut child);
    let (status, out) = finish(child, &lines, Duration::from_secs(60));
    assert!(status.success(), "exit {status}; output:\n{out}");
    assert!(!out.contains("FAILED"), "{out}");
    let overloaded = number_before(&out, "Service:", "overloaded (503)");
    let accepted = number_before(&out, "Service:", "events accepted");
    assert!(overloaded > 0, "no 503 under overload:\n{out}");
    assert_eq!(accepted + overloaded, 300, "{out}");
    assert!(out.contains("each counted exactly once"), "{out}");
}

/// Stops the service with SIGTERM (its normal end: a clean stop, exit 0) and returns what
/// it printed.
fn stop_with_sigterm(child: Child, lines: &mpsc::Receiver<String>) -> String {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(killed.success());
    let (status, out) = finish(child, lines, Duration::from_secs(30));
    assert!(status.success(), "exit {status}; output:\n{out}");
    out
}

/// One HTTP/1.1 request with a JSON body on a new connection (`Connection: close`); the
/// status and body.
fn http(address: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    http_as(address, method, path, "application/json", body)
}

/// As [`http`], with the body's `content_type`.
fn http_as(
    address: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the service");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send the request");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read the answer");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer:?}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Starts the service alone with `args`; returns it, its stdout lines, its address and what
/// it printed up to the address.
fn serve(args: &[&str]) -> (Child, mpsc::Receiver<String>, SocketAddr, String) {
    let mut child = start(&[&["--serve-only", "--port", "0", "--quiet"], args].concat());
    let lines = lines_of(&mut child);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = String::new();
    let address: SocketAddr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the service never said where it listens:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if let Some(rest) = line.strip_prefix("Listening on http://") {
            let address = rest.split_whitespace().next().expect("an address");
            break address.parse().expect("ip:port");
        }
    };
    (child, lines, address, seen)
}

#[test]
fn malformed_event_gets_400_valid_one_200_and_sigterm_stops_cleanly() {
    let (child, lines, address, seen) = serve(&[]);
    assert!(address.ip().is_loopback(), "{address}");

    let (status, body) = http(address, "POST", "/events", r#"{"user": "ann", "page": "/""#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not an event"), "{body}");
    let (status, body) = http(address, "POST", "/events", r#"{"user": "ann", "time": 5}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("page"), "{body}");
    let (status, body) = http(
        address,
        "POST",
        "/events",
        r#"{"user": "ann", "page": "/", "time": 1431857103}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""events":1"#), "{body}");
    let (status, body) = http(address, "GET", "/stats", "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""malformed":2"#), "{body}");

    let out = stop_with_sigterm(child, &lines);
    assert!(
        out.contains("Done: 1 events accepted, each counted exactly once."),
        "{seen}{out}"
    );
    assert_eq!(
        number_before(&out, "Service:", "malformed (400)"),
        2,
        "{out}"
    );
}

/// Every field is checked before anything is stored: a time out of range (i64::MIN used to
/// panic the session actor after the event was stored, so a retry counted it twice), a JSON
/// array, a body that is not JSON by its content type (415) or too large (413, as JSON) are
/// refused and counted, and the stream holds only the one valid event.
#[test]
fn bad_requests_are_refused_before_anything_is_stored() {
    let (child, lines, address, _) = serve(&[]);
    for (body, why) in [
        (
            r#"{"user": "ann", "page": "/", "time": -9223372036854775808}"#.to_string(),
            "time",
        ),
        (
            r#"{"user": "ann", "page": "/", "time": -5}"#.to_string(),
            "time",
        ),
        (r#"["ann", "/", 1431857103]"#.to_string(), "JSON object"),
        (
            format!(
                r#"{{"user": "{}", "page": "/", "time": 1}}"#,
                "u".repeat(3000)
            ),
            "user",
        ),
    ] {
        let (status, answer) = http(address, "POST", "/events", &body);
        assert_eq!(status, 400, "{answer}");
        assert!(answer.contains(why), "{why}: {answer}");
    }
    let (status, answer) = http_as(
        address,
        "POST",
        "/events",
        "text/plain",
        r#"{"user": "ann", "page": "/", "time": 1}"#,
    );
    assert_eq!(status, 415, "{answer}");
    assert!(
        answer.starts_with('{') && answer.contains("application/json"),
        "{answer}"
    );
    let (status, answer) = http(address, "POST", "/events", &"x".repeat(20_000));
    assert_eq!(status, 413, "{answer}");
    assert!(
        answer.starts_with('{') && answer.contains("over"),
        "{answer}"
    );
    // Nothing of the above was stored: ann's first accepted event is this one.
    let (status, answer) = http(
        address,
        "POST",
        "/events",
        r#"{"user": "ann", "page": "/", "time": 1431857103}"#,
    );
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""events":1"#), "{answer}");
    assert!(answer.contains(r#""session_secs":0"#), "{answer}");

    let out = stop_with_sigterm(child, &lines);
    assert!(
        out.contains("Done: 1 events accepted, each counted exactly once."),
        "{out}"
    );
    assert_eq!(
        number_before(&out, "Service:", "malformed (400)"),
        4,
        "{out}"
    );
    assert_eq!(
        number_before(&out, "Service:", "too large (413)"),
        1,
        "{out}"
    );
    assert_eq!(
        number_before(&out, "Service:", "not JSON (415)"),
        1,
        "{out}"
    );
}

/// A user's session actor stops after the session timeout without an event (so memory
/// follows the active users): their next event starts a new session actor, whose count
/// starts again at 1, and the checks still hold.
#[test]
fn idle_sessions_are_evicted_and_come_back_counted() {
    let (child, lines, address, _) = serve(&["--session-timeout-secs", "1"]);
    let event = r#"{"user": "bo", "page": "/", "time": 1431857103}"#;
    let (status, answer) = http(address, "POST", "/events", event);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains(r#""events":1"#), "{answer}");
    // Past the timeout (1 s; checked every 250 ms), on a loaded machine maybe later.
    let mut posted = 1;
    loop {
        std::thread::sleep(Duration::from_millis(1500));
        let (status, answer) = http(address, "POST", "/events", event);
        assert_eq!(status, 200, "{answer}");
        posted += 1;
        if answer.contains(r#""events":1"#) {
            break;
        }
        assert!(posted < 10, "the session was never evicted: {answer}");
    }
    let out = stop_with_sigterm(child, &lines);
    assert!(
        out.contains(&format!(
            "Done: {posted} events accepted, each counted exactly once."
        )),
        "{out}"
    );
    assert!(
        number_before(&out, "Service:", "ended by the timeout") >= 1,
        "{out}"
    );
}
