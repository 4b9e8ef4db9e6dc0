use std::pin::pin;
use std::time::Duration;

use rivulet_framework::receiver::{BlockSource, Flow, Receiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::timeout;

use super::SocketTextReceiver;
use crate::testing::{Harness, DEADLINE};
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
