//! The examples' line server sends exactly `--rate` lines per second (within 1 %), for rates
//! from 1 to 10,000 lines/s, measured on tokio's paused clock (deterministic, not the
//! machine's wall clock).

#[path = "../examples/support/mod.rs"]
#[allow(unreachable_pub, missing_docs)]
mod support;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::AsyncWrite;
use tokio::time::Instant;

/// Records, at each write, the paused clock's time since `start` and the lines written so far.
struct Recorder {
    start: Instant,
    lines: usize,
    writes: Vec<(Duration, usize)>,
}

impl AsyncWrite for Recorder {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.lines += buf.iter().filter(|&&b| b == b'\n').count();
        let at = (self.start.elapsed(), self.lines);
        self.writes.push(at);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Sends 20 s worth of lines at `rate` (after the initial burst of `rate / 100` lines, at
/// least 2) and checks the lines sent by each whole second from 1 to 20 s against `rate`
/// per second, within 1 %.
async fn check_rate(rate: u64) {
    let burst = (rate / 100).max(2) as usize;
    let total = burst + 20 * rate as usize;
    let lines = vec![b"x".to_vec(); total];
    let mut out = Recorder {
        start: Instant::now(),
        lines: 0,
        writes: Vec::new(),
    };
    support::send_lines(&mut out, &lines, rate).await.unwrap();
    assert_eq!(out.lines, total);
    for second in 1..=20u64 {
        let by = Duration::from_secs(second);
        // Lines written at or before `by` (a write at `by` holds the lines due then).
        let sent = out
            .writes
            .iter()
            .take_while(|(t, _)| *t <= by)
            .last()
            .map_or(0, |w| w.1);
        let expected = (burst as u64 + second * rate) as f64;
        let error = (sent as f64 - expected).abs() / expected;
        assert!(
            error <= 0.01,
            "rate {rate}: {sent} lines by {second} s, expected {expected} (+-1 %)"
        );
    }
    let (last, _) = out.writes.last().copied().unwrap();
    let expected = Duration::from_secs(20);
    assert!(
        last.abs_diff(expected) <= expected / 100,
        "rate {rate}: the last line went at {last:?}, expected {expected:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn rate_1() {
    check_rate(1).await;
}

#[tokio::test(start_paused = true)]
async fn rate_10() {
    check_rate(10).await;
}

#[tokio::test(start_paused = true)]
async fn rate_150() {
    check_rate(150).await;
}

#[tokio::test(start_paused = true)]
async fn rate_250() {
    check_rate(250).await;
}

#[tokio::test(start_paused = true)]
async fn rate_10_000() {
    check_rate(10_000).await;
}

#[test]
fn rate_options_are_bounded_and_name_the_range() {
    assert_eq!(support::parse_rate("0"), Ok(0));
    let negative = support::parse_rate("-5").unwrap_err();
    assert!(negative.contains("lines per second"), "{negative}");
    let huge = support::parse_rate("99999999999").unwrap_err();
    assert!(huge.contains("10000000"), "{huge}");
    let executors = support::parse_executors("100000").unwrap_err();
    assert!(
        executors.contains("4096") && executors.contains("open-file limit"),
        "{executors}"
    );
    let batch = support::parse_batch_ms("18446744073709551615").unwrap_err();
    assert!(batch.contains("86400000"), "{batch}");
}
