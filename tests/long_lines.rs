//! A 5 MB line through a running context under each long-line policy of the socket
//! receiver: nothing is lost without being counted in `ReceiverMetrics` and reported to
//! listeners, and `fail` stops the context with an error naming the receiver, the byte
//! offset and the limit.

mod common;

use std::sync::Arc;

use common::*;
use parking_lot::Mutex;
use rivulet::prelude::*;
use rivulet::receivers::{LongLinePolicy, SocketTextReceiver};

const FIVE_MB: usize = 5 * 1024 * 1024;
const LIMIT: usize = 1 << 20;

/// "before\n", a 5 MB line of `w`, then "\nafter\n".
fn payload() -> Vec<u8> {
    let mut data = b"before\n".to_vec();
    data.extend(std::iter::repeat_n(b'w', FIVE_MB));
    data.extend(b"\nafter\n");
    data
}

/// The metrics of each `on_receiver_input_lost` event.
#[derive(Clone, Default)]
struct Losses(Arc<Mutex<Vec<ReceiverInfo>>>);

impl StreamingListener for Losses {
    fn on_receiver_input_lost(&mut self, r: &ReceiverInfo) {
        self.0.lock().push(r.clone());
    }
}

/// Runs the payload through a context with `policy`; returns the record lengths, the
/// receiver's final metrics and the input-lost events.
async fn run(policy: LongLinePolicy) -> (Vec<usize>, ReceiverInfo, Vec<ReceiverInfo>) {
    let listener = listen(0);
    let port = listener.local_addr().unwrap().port();
    let (more, server) = serve_and_hold(listener, payload());
    let ssc = context(2, 2);
    let events = Events::attach(&ssc);
    let losses = Losses::default();
    ssc.add_listener(losses.clone());
    let receiver = SocketTextReceiver::new("127.0.0.1", port)
        .max_line_bytes(LIMIT)
        .on_long_line(policy);
    let lines = ssc.receiver_stream(receiver).collect_batches();
    ssc.start().await.unwrap();
    let expected = match policy {
        LongLinePolicy::Skip => 2,
        LongLinePolicy::Split => 7,
        _ => 3,
    };
    advance_until(&ssc, || lines.records().len() >= expected).await;
    ssc.stop(StopMode::Graceful).await.unwrap();
    drop(more);
    server.await.unwrap();
    let lens = lines.records().iter().map(String::len).collect();
    let stopped = events.receiver_stopped().pop().expect("a stopped event");
    let lost = losses.0.lock().clone();
    (lens, stopped, lost)
}

#[actix::test]
async fn truncate_counts_and_reports_the_lost_bytes() {
    within(async {
        let (lens, stopped, lost) = run(LongLinePolicy::Truncate).await;
        assert_eq!(lens, [6, LIMIT, 5]);
        let m = stopped.metrics;
        assert_eq!(
            (m.truncated, m.dropped_bytes),
            (1, (FIVE_MB - LIMIT) as u64)
        );
        assert!(m.lost_input());
        assert_eq!(lost.len(), 1, "one input-lost event");
        assert_eq!(lost[0].metrics.truncated, 1);
    })
    .await
}

#[actix::test]
async fn skip_counts_and_reports_the_dropped_line() {
    within(async {
        let (lens, stopped, lost) = run(LongLinePolicy::Skip).await;
        assert_eq!(lens, [6, 5]);
        let m = stopped.metrics;
        assert_eq!((m.dropped, m.dropped_bytes), (1, FIVE_MB as u64));
        assert_eq!(lost.len(), 1);
    })
    .await
}

#[actix::test]
async fn split_loses_nothing() {
    within(async {
        let (lens, stopped, lost) = run(LongLinePolicy::Split).await;
        assert_eq!(lens, [6, LIMIT, LIMIT, LIMIT, LIMIT, LIMIT, 5]);
        let m = stopped.metrics;
        assert_eq!((m.split, m.dropped_bytes, m.records_stored), (1, 0, 7));
        assert!(!m.lost_input());
        assert!(lost.is_empty());
    })
    .await
}

#[actix::test]
async fn fail_stops_the_context_naming_the_receiver_offset_and_limit() {
    within(async {
        let listener = listen(0);
        let port = listener.local_addr().unwrap().port();
        let (_more, _server) = serve_and_hold(listener, payload());
        let ssc = context(2, 2);
        let receiver = SocketTextReceiver::new("127.0.0.1", port)
            .max_line_bytes(LIMIT)
            .on_long_line(LongLinePolicy::Fail);
        let _lines = ssc.receiver_stream(receiver).collect_batches();
        ssc.start().await.unwrap();
        let error = ssc
            .await_termination()
            .await
            .expect_err("the context must fail");
        let message = error.to_string();
        for needle in [
            format!("socket 127.0.0.1:{port}"),
            "byte offset 7".to_string(),
            format!("{LIMIT} bytes"),
        ] {
            assert!(message.contains(&needle), "`{needle}` not in: {message}");
        }
    })
    .await
}

/// The bytes a receiver must have dropped for `sent` (ASCII): all bytes, minus the `\n`
/// terminators, minus the bytes of the records delivered. From the input and the records
/// alone, independent of the receiver's counts.
fn true_dropped_bytes(sent: &[u8], records: &[String]) -> u64 {
    let newlines = sent.iter().filter(|&&b| b == b'\n').count();
    let delivered: usize = records.iter().map(String::len).sum();
    (sent.len() - newlines - delivered) as u64
}

/// The case: the input ends in a long line. Its head (or nothing) is the last
/// record, so a count read once the records were in would miss the rest of the line; a
/// receiver that finishes at the end of a finite feed reports, in its stopped event, the
/// true number of bytes dropped, for each policy.
#[actix::test]
async fn bytes_dropped_are_exact_when_the_input_ends_in_a_long_line() {
    within(async {
        let mut sent = b"before\n".to_vec();
        sent.extend(std::iter::repeat_n(b'w', FIVE_MB));
        sent.push(b'\n');
        for policy in [
            LongLinePolicy::Truncate,
            LongLinePolicy::Skip,
            LongLinePolicy::Split,
        ] {
            let listener = listen(0);
            let port = listener.local_addr().unwrap().port();
            let data = sent.clone();
            // Writes everything, then closes: a finite feed.
            let server = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let (mut conn, _) = listener.accept().await.expect("accept");
                conn.write_all(&data).await.expect("write");
            });
            let ssc = context(2, 2);
            let events = Events::attach(&ssc);
            let receiver = SocketTextReceiver::new("127.0.0.1", port)
                .max_line_bytes(LIMIT)
                .on_long_line(policy)
                .finish_on_close(true);
            let lines = ssc.receiver_stream(receiver).collect_batches();
            ssc.start().await.unwrap();
            advance_until(&ssc, || !events.receiver_stopped().is_empty()).await;
            let stopped = events.receiver_stopped().pop().expect("a stopped event");
            let stored = stopped.metrics.records_stored as usize;
            advance_until(&ssc, || lines.records().len() >= stored).await;
            ssc.stop(StopMode::Graceful).await.unwrap();
            server.await.unwrap();
            let records = lines.records();
            let m = stopped.metrics;
            let truth = true_dropped_bytes(&sent, &records);
            assert_eq!(m.dropped_bytes, truth, "{policy}: {m:?}");
            let expected = match policy {
                LongLinePolicy::Truncate => FIVE_MB - LIMIT,
                LongLinePolicy::Skip => FIVE_MB,
                _ => 0,
            };
            assert_eq!(truth, expected as u64, "{policy}");
            assert_eq!(
                (m.incomplete, m.lost_input()),
                (0, policy != LongLinePolicy::Split)
            );
        }
    })
    .await
}
