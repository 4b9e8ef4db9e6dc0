use std::pin::pin;
use std::time::Duration;

use rivulet_framework::receiver::{BufferControl, Flow, Receiver, ReceiverCounters};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::SocketTextReceiver;
use crate::testing::{capture, Harness, DEADLINE};
use crate::LongLinePolicy;

/// A receiver for `port` on 127.0.0.1 with quick reconnects.
fn receiver(port: u16) -> SocketTextReceiver {
    SocketTextReceiver::new("127.0.0.1", port)
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(50))
}

async fn listen() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Accepts one connection, writes `data`, then closes it and stops listening.
fn serve_once(listener: TcpListener, data: &'static [u8]) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        conn.write_all(data).await.unwrap();
    })
}

/// Reads until the client goes away, keeping the connection open meanwhile.
async fn hold_open(mut conn: TcpStream) {
    let mut rest = Vec::new();
    let _ = conn.read_to_end(&mut rest).await;
}

#[tokio::test]
async fn splits_lines_with_crlf_and_keeps_an_unterminated_last_line() {
    let (listener, port) = listen().await;
    serve_once(listener, b"one\r\ntwo\n\nthree");
    let mut h = Harness::start(receiver(port), 100).await;
    h.drive_until("4 lines", |m| m.records_stored == 4).await;
    assert_eq!(h.take_records(), ["one", "two", "", "three"]);
    assert_eq!(h.metrics().malformed, 0);
    // The server closed before a newline after "three": kept, but counted as incomplete.
    assert_eq!(h.metrics().incomplete, 1);
}

#[tokio::test]
async fn replaces_invalid_utf8_and_counts_the_line() {
    let (listener, port) = listen().await;
    serve_once(listener, b"ok\n\xff\xfebad\nfine\n");
    let mut h = Harness::start(receiver(port), 100).await;
    h.drive_until("3 lines", |m| m.records_stored == 3).await;
    assert_eq!(h.take_records(), ["ok", "\u{fffd}\u{fffd}bad", "fine"]);
    assert_eq!(h.metrics().malformed, 1);
}

#[tokio::test]
async fn truncates_an_overlong_line_and_skips_its_rest() {
    let (listener, port) = listen().await;
    let mut data = b"short\n".to_vec();
    data.extend(std::iter::repeat_n(b'x', 100_000));
    data.extend(b"\nafter\n");
    let data: &'static [u8] = data.leak();
    serve_once(listener, data);
    let mut h = Harness::start(receiver(port).max_line_bytes(8), 100).await;
    h.drive_until("3 lines", |m| m.records_stored == 3).await;
    assert_eq!(h.take_records(), ["short", "xxxxxxxx", "after"]);
    let m = h.metrics();
    assert_eq!(m.malformed, 0);
    assert_eq!((m.truncated, m.dropped_bytes), (1, 100_000 - 8));
    assert!(m.lost_input());
}

/// Serves "before\n", a 5 MB line of `w`, then "\nafter\n", and keeps the connection open.
fn serve_5_mb_line(listener: TcpListener) {
    let mut data = b"before\n".to_vec();
    data.extend(std::iter::repeat_n(b'w', FIVE_MB));
    data.extend(b"\nafter\n");
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        conn.write_all(&data).await.unwrap();
        hold_open(conn).await;
    });
}

const FIVE_MB: usize = 5 * 1024 * 1024;
const ONE_MIB: usize = 1 << 20;

/// Lengths of the records, as the 5 MB line's records are too big to compare in messages.
fn lens(records: Vec<String>) -> Vec<usize> {
    records.iter().map(String::len).collect()
}

#[tokio::test]
async fn a_5_mb_line_is_truncated_by_default_and_counted() {
    let (listener, port) = listen().await;
    serve_5_mb_line(listener);
    let mut h = Harness::start(receiver(port), 100).await;
    h.drive_until("3 lines", |m| m.records_stored == 3).await;
    assert_eq!(lens(h.take_records()), [6, ONE_MIB, 5]);
    let m = h.metrics();
    assert_eq!((m.truncated, m.dropped, m.split), (1, 0, 0));
    assert_eq!(m.dropped_bytes, (FIVE_MB - ONE_MIB) as u64);
}

#[tokio::test]
async fn a_5_mb_line_is_skipped_and_counted() {
    let (listener, port) = listen().await;
    serve_5_mb_line(listener);
    let mut h = Harness::start(receiver(port).on_long_line(LongLinePolicy::Skip), 100).await;
    h.drive_until("2 lines", |m| m.records_stored == 2 && m.dropped == 1)
        .await;
    assert_eq!(h.take_records(), ["before", "after"]);
    let m = h.metrics();
    assert_eq!(
        (m.truncated, m.dropped, m.dropped_bytes),
        (0, 1, FIVE_MB as u64)
    );
}

#[tokio::test]
async fn a_5_mb_line_is_split_without_loss() {
    let (listener, port) = listen().await;
    serve_5_mb_line(listener);
    let mut h = Harness::start(receiver(port).on_long_line(LongLinePolicy::Split), 100).await;
    h.drive_until("7 records", |m| m.records_stored == 7).await;
    let records = h.take_records();
    assert_eq!(
        lens(records.clone()),
        [6, ONE_MIB, ONE_MIB, ONE_MIB, ONE_MIB, ONE_MIB, 5]
    );
    assert_eq!(records[1..6].concat(), "w".repeat(FIVE_MB));
    let m = h.metrics();
    assert_eq!((m.split, m.dropped_bytes), (1, 0));
    assert!(!m.lost_input());
}

#[tokio::test]
async fn a_5_mb_line_fails_the_receiver_naming_the_offset_and_limit() {
    let (listener, port) = listen().await;
    serve_5_mb_line(listener);
    let mut h = Harness::start(receiver(port).on_long_line(LongLinePolicy::Fail), 100).await;
    let error = timeout(DEADLINE, async {
        loop {
            if let Err(e) = h.receiver.receive(&mut h.sink).await {
                break e;
            }
        }
    })
    .await
    .expect("the receiver did not fail");
    assert!(!error.is_retryable());
    let message = error.to_string();
    assert!(
        message.contains("byte offset 7") && message.contains(&format!("{ONE_MIB} bytes")),
        "{message}"
    );
    // The line before the long one was stored.
    assert_eq!(h.take_records(), ["before"]);
}

#[tokio::test]
async fn reconnects_when_the_server_comes_back_and_loses_or_repeats_nothing() {
    let (listener, port) = listen().await;
    serve_once(listener, b"1\n2\n");
    let mut h = Harness::start(receiver(port), 100).await;
    // The close, then at least one refused attempt while nobody listens.
    h.drive_until("2 lines and 2 errors", |m| {
        m.records_stored == 2 && m.errors >= 2
    })
    .await;

    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    serve_once(listener, b"3\n4");
    h.drive_until("4 lines", |m| m.records_stored == 4).await;
    assert_eq!(h.take_records(), ["1", "2", "3", "4"]);
    assert_eq!(h.metrics().malformed, 0);
}

#[tokio::test]
async fn a_refused_connection_is_counted_and_retried_until_the_server_listens() {
    let (listener, port) = listen().await;
    drop(listener);
    let mut h = Harness::start(receiver(port), 100).await;
    h.drive_until("2 refused attempts", |m| m.errors >= 2).await;
    assert_eq!(h.metrics().records_stored, 0);

    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    serve_once(listener, b"hello\n");
    h.drive_until("1 line", |m| m.records_stored == 1).await;
    assert_eq!(h.take_records(), ["hello"]);
}

#[tokio::test]
async fn an_unresolvable_host_is_counted_and_retried() {
    let receiver = SocketTextReceiver::new("no-such-host.invalid", 9)
        .reconnect_backoff(Duration::from_millis(5), Duration::from_millis(5));
    let mut h = Harness::start(receiver, 100).await;
    h.drive_until("a failed resolution", |m| m.errors >= 1)
        .await;
    assert_eq!(h.metrics().records_stored, 0);
}

#[tokio::test]
async fn a_full_buffer_makes_receive_wait_until_room_is_released() {
    let (listener, port) = listen().await;
    let (written_tx, written_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        conn.write_all(b"a\nb\nc\n").await.unwrap();
        let _ = written_tx.send(());
        hold_open(conn).await;
    });
    let mut h = Harness::start(receiver(port), 2).await;
    // Fill the buffer first, so every line the receiver reads must wait for room.
    h.buffer
        .store_many(vec!["x".into(), "y".into()])
        .await
        .unwrap();
    let Harness {
        receiver,
        sink,
        buffer,
    } = &mut h;
    let waited = timeout(DEADLINE, async {
        let mut call = pin!(receiver.receive(sink));
        // The call connects (so the server can accept and write) while we wait.
        tokio::select! {
            flow = &mut call => panic!("receive returned with a full buffer: {flow:?}"),
            written = written_rx => written.unwrap(),
        }
        // The lines are sent; the call must hold them, neither returning nor dropping them.
        assert!(
            timeout(Duration::from_millis(200), &mut call)
                .await
                .is_err(),
            "receive must wait"
        );
        assert_eq!(buffer.metrics().records_stored, 2);
        // Room for two lines: "a" and "b" are stored, "c" still waits.
        buffer.release(2);
        match timeout(Duration::from_millis(200), &mut call).await {
            Err(_) => {
                assert_eq!(buffer.metrics().records_stored, 4);
                buffer.release(2);
                assert_eq!(call.await.unwrap(), Flow::Continue);
            }
            // The lines came in two reads, and this call had only the first ones.
            Ok(flow) => assert_eq!(flow.unwrap(), Flow::Continue),
        }
    })
    .await;
    assert!(waited.is_ok(), "receive did not resume after release");
    buffer.release(2);
    h.drive_until("all lines", |m| m.records_stored == 5).await;
    assert_eq!(h.take_records(), ["x", "y", "a", "b", "c"]);
}

#[tokio::test]
async fn a_closed_sink_finishes_the_receiver() {
    let (listener, port) = listen().await;
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        conn.write_all(b"late\n").await.unwrap();
        hold_open(conn).await;
    });
    let mut h = Harness::start(receiver(port), 10).await;
    h.buffer.close();
    let flow = timeout(DEADLINE, async {
        loop {
            if h.receiver.receive(&mut h.sink).await.unwrap() == Flow::Finished {
                break;
            }
        }
    })
    .await;
    assert!(
        flow.is_ok(),
        "receiver did not finish after the sink closed"
    );
    h.receiver.on_stop().await;
}

#[test]
fn names_its_address() {
    assert_eq!(
        SocketTextReceiver::new("localhost", 9999).name(),
        "socket localhost:9999"
    );
    assert_eq!(
        SocketTextReceiver::new("::1", 9999).name(),
        "socket [::1]:9999"
    );
    let debug = format!("{:?}", SocketTextReceiver::new("localhost", 1));
    assert!(debug.contains("localhost:1"), "{debug}");
}

/// Calls `receive` until it returns `Flow::Finished`; panics after [`DEADLINE`].
async fn drive_to_end(h: &mut Harness<SocketTextReceiver>) {
    let ended = timeout(DEADLINE, async {
        while h.receiver.receive(&mut h.sink).await.unwrap() == Flow::Continue {}
    })
    .await;
    assert!(ended.is_ok(), "not finished; metrics: {:?}", h.metrics());
}

#[tokio::test]
async fn a_line_cut_by_a_closed_connection_is_stored_counted_incomplete_and_warned_about() {
    let (logs, _guard) = capture();
    let (listener, port) = listen().await;
    serve_once(listener, b"done\npartial li");
    let mut h = Harness::start(receiver(port).finish_on_close(true), 100).await;
    drive_to_end(&mut h).await;
    // Stored as received, as Spark does, but counted and reported as a loss.
    assert_eq!(h.take_records(), ["done", "partial li"]);
    let m = h.metrics();
    assert_eq!((m.records_stored, m.incomplete, m.errors), (2, 1, 0));
    assert!(m.lost_input());
    let warnings = logs.take_warnings();
    let addr = format!("127.0.0.1:{port}");
    assert!(
        warnings.iter().any(|w| w.contains(&addr)
            && w.contains("bytes_received=10")
            && w.contains("incomplete")),
        "{warnings:?}"
    );
}

#[tokio::test]
async fn a_connection_closed_after_a_newline_leaves_nothing_incomplete() {
    let (listener, port) = listen().await;
    serve_once(listener, b"one\r\ntwo\n");
    let mut h = Harness::start(receiver(port).finish_on_close(true), 100).await;
    drive_to_end(&mut h).await;
    assert_eq!(h.take_records(), ["one", "two"]);
    let m = h.metrics();
    assert_eq!((m.incomplete, m.errors), (0, 0));
    assert!(!m.lost_input());
}

#[tokio::test]
async fn a_line_unfinished_at_stop_is_counted_incomplete_and_its_bytes_dropped() {
    let (listener, port) = listen().await;
    tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.unwrap();
        // One write: "x\n" and the unfinished "abc" arrive together.
        conn.write_all(b"x\nabc").await.unwrap();
        hold_open(conn).await;
    });
    let mut h = Harness::start(receiver(port), 100).await;
    h.drive_until("1 line", |m| m.records_stored == 1).await;
    h.receiver.on_stop().await;
    let m = h.metrics();
    assert_eq!((m.incomplete, m.dropped_bytes), (1, 3));
    assert_eq!(h.take_records(), ["x"]);
}

/// The bytes a receiver must have dropped: all sent, minus the line terminators (`\n` and a
/// `\r` before it), minus the bytes of the records delivered (ASCII input, so a record's
/// bytes are input bytes). Computed from the input and the records alone, not from counts.
fn true_dropped_bytes(sent: &[u8], records: &[String]) -> u64 {
    let newlines = sent.iter().filter(|&&b| b == b'\n').count();
    let crlf = sent.windows(2).filter(|w| w == b"\r\n").count();
    let delivered: usize = records.iter().map(String::len).sum();
    (sent.len() - newlines - crlf - delivered) as u64
}

#[tokio::test]
async fn dropped_bytes_are_exact_to_the_byte_when_the_input_ends_in_long_lines() {
    // A 3 MiB + 12345 B run without whitespace, then a 3.5 MB line of words as the last
    // line: the run's rest and the whole last line are dropped after the last record was
    // delivered, so only a receiver that reads to the end reports them.
    let mut data = b"first line\r\n".to_vec();
    data.extend(std::iter::repeat_n(b'w', 3 * ONE_MIB + 12_345));
    data.extend(b"\r\n");
    data.extend(b"word ".repeat(700_000));
    data.push(b'\n');
    let data: &'static [u8] = data.leak();
    for policy in [
        LongLinePolicy::Truncate,
        LongLinePolicy::Skip,
        LongLinePolicy::Split,
    ] {
        let (listener, port) = listen().await;
        serve_once(listener, data);
        let r = receiver(port)
            .max_line_bytes(ONE_MIB)
            .on_long_line(policy)
            .finish_on_close(true);
        let mut h = Harness::start(r, 100).await;
        drive_to_end(&mut h).await;
        let records = h.take_records();
        let m = h.metrics();
        let truth = true_dropped_bytes(data, &records);
        assert_eq!(m.dropped_bytes, truth, "{policy}: {m:?}");
        assert_eq!(m.incomplete, 0, "{policy}");
        match policy {
            LongLinePolicy::Truncate => {
                assert_eq!(truth, (2 * ONE_MIB + 12_345 + 3_500_000 - ONE_MIB) as u64);
                assert_eq!(m.truncated, 2);
            }
            LongLinePolicy::Skip => {
                assert_eq!(truth, (3 * ONE_MIB + 12_345 + 3_500_000) as u64);
                assert_eq!((m.dropped, records.len()), (2, 1));
            }
            _ => {
                assert_eq!(truth, 0);
                // Three cuts in the run of `w`, none among the words.
                assert_eq!((m.split, m.words_cut), (2, 3));
                assert!(records.iter().all(|r| r.len() <= ONE_MIB));
                let last: String = records[5..].concat();
                assert_eq!(last, "word ".repeat(700_000));
                assert!(records[5..].iter().all(|r| r.ends_with("word ")));
            }
        }
    }
}
