//! `socket_text_stream` against local TCP servers on 127.0.0.1: a server that closes and
//! comes back on the same port, a port that refuses connections at first, bad bytes, and a
//! graceful stop with lines received but not yet in a batch. Every line must arrive exactly
//! once, in order.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use rivulet::prelude::*;
use tokio::io::AsyncWriteExt;

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix} line {i}")).collect()
}

/// Asserts that no record occurs twice.
fn assert_no_duplicates(records: &[String]) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for r in records {
        *seen.entry(r).or_default() += 1;
    }
    let twice: Vec<_> = seen.into_iter().filter(|(_, n)| *n > 1).collect();
    assert!(
        twice.is_empty(),
        "records received more than once: {twice:?}"
    );
}

#[actix::test]
async fn server_closes_and_comes_back_every_line_arrives_once() {
    within(async {
        let first = numbered("first", 300);
        let second = numbered("second", 200);
        let listener = listen(0);
        let port = listener.local_addr().unwrap().port();
        let server = serve_and_close(listener, text(&first));

        let ssc = context(2, 2);
        let lines = ssc.socket_text_stream("127.0.0.1", port).collect_batches();
        ssc.start().await.unwrap();
        advance_until(&ssc, || lines.records().len() >= first.len()).await;
        server.await.unwrap();
        assert_eq!(lines.records(), first);

        // The server comes back on the same port with more lines.
        let server = serve_and_close(listen(port), text(&second));
        advance_until(&ssc, || lines.records().len() >= first.len() + second.len()).await;
        server.await.unwrap();
        // A few more batches: nothing arrives twice.
        ssc.advance(3).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();

        let records = lines.records();
        assert_no_duplicates(&records);
        assert_eq!(records, [first, second].concat());
        let batches = lines.batches();
        assert!(batches.len() >= 5, "{} batches", batches.len());
        assert!(batches[batches.len() - 3..].iter().all(Vec::is_empty));
    })
    .await
}

#[actix::test]
async fn refused_at_first_then_the_stream_goes_on() {
    within(async {
        // Bound but not listening: connections to the port are refused.
        let socket = bind_socket(0);
        let port = socket.local_addr().unwrap().port();
        let ssc = context(2, 2);
        let events = Events::attach(&ssc);
        let lines = ssc.socket_text_stream("127.0.0.1", port).collect_batches();
        ssc.start().await.unwrap();
        events.wait_receiver_started().await;
        // Batches go on while the connection is refused (the receiver retries meanwhile).
        for _ in 0..3 {
            ssc.advance(1).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(lines.batches(), vec![Vec::<String>::new(); 3]);

        let expected = numbered("late", 100);
        let (_more, _server) = serve_and_hold(socket.listen(16).unwrap(), text(&expected));
        advance_until(&ssc, || lines.records().len() >= expected.len()).await;
        ssc.advance(1).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(lines.records(), expected);
        // No receiver error events: refusals are retried inside the receiver.
        assert!(!events
            .all()
            .iter()
            .any(|e| matches!(e, Event::ReceiverError(_))));
    })
    .await
}

#[actix::test]
async fn bad_bytes_are_replaced_and_the_stream_goes_on() {
    within(async {
        let listener = listen(0);
        let port = listener.local_addr().unwrap().port();
        let payload =
            b"before\n\xff\xfeoops\r\ncaf\xc3\xa9\n\nafter\r\nlast without newline".to_vec();
        let server = serve_and_close(listener, payload);
        let ssc = context(1, 1);
        let lines = ssc.socket_text_stream("127.0.0.1", port).collect_batches();
        ssc.start().await.unwrap();
        advance_until(&ssc, || lines.records().len() >= 6).await;
        server.await.unwrap();
        ssc.advance(2).await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();
        assert_eq!(
            lines.records(),
            strings(&[
                "before",
                "\u{FFFD}\u{FFFD}oops",
                "café",
                "",
                "after",
                "last without newline"
            ])
        );
    })
    .await
}

#[actix::test]
async fn graceful_stop_processes_lines_received_but_not_batched() {
    within(async {
        let first = numbered("first", 50);
        let second = numbered("second", 400);
        let listener = listen(0);
        let port = listener.local_addr().unwrap().port();
        let (go_tx, go_rx) = tokio::sync::oneshot::channel::<()>();
        let (reconnected_tx, reconnected_rx) = tokio::sync::oneshot::channel::<()>();
        let (first_text, second_text) = (text(&first), text(&second));
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            conn.write_all(&first_text).await.unwrap();
            go_rx.await.unwrap();
            conn.write_all(&second_text).await.unwrap();
            conn.shutdown().await.unwrap();
            drop(conn);
            // The receiver reconnects only after it read (and stored) everything up to the
            // end of the first connection.
            let (_conn, _) = listener.accept().await.unwrap();
            reconnected_tx.send(()).unwrap();
            std::future::pending::<()>().await;
        });

        let ssc = context(2, 2);
        let events = Events::attach(&ssc);
        let lines = ssc.socket_text_stream("127.0.0.1", port).collect_batches();
        ssc.start().await.unwrap();
        advance_until(&ssc, || lines.records().len() >= first.len()).await;
        let batches_before = lines.len();

        go_tx.send(()).unwrap();
        tokio::time::timeout(DATA_TIMEOUT, reconnected_rx)
            .await
            .expect("the receiver reconnects")
            .unwrap();
        // The second part is stored in the receiver's buffer, in no batch yet.
        assert_eq!(lines.records(), first);
        ssc.stop(StopMode::Graceful).await.unwrap();
        server.abort();

        assert_eq!(lines.records(), [first.clone(), second.clone()].concat());
        assert_eq!(lines.len(), batches_before + 1, "one last batch");
        assert_eq!(events.records_completed(), first.len() + second.len());
    })
    .await
}

/// A word count over received blocks (read by reference, keys looked up by `&str`)
/// equals the plain `flat_map` → `map` → `reduce_by_key` batch by batch, and the count by
/// hand over all batches, on the bundled Shakespeare text.
#[actix::test]
async fn a_word_count_by_reference_over_blocks_equals_the_plain_one() {
    within(async {
        let text = std::fs::read_to_string("examples/data/shakespeare.txt").unwrap();
        let lines: Vec<String> = text.lines().take(3000).map(String::from).collect();
        let listener = listen(0);
        let port = listener.local_addr().unwrap().port();
        let server = serve_and_close(listener, common::text(&lines));

        let ssc = context(2, 2);
        let input = ssc.socket_text_stream("127.0.0.1", port);
        let fast = input
            .flat_map_reduce_by_key(
                |line: &String, counts| {
                    for w in words_of(line) {
                        counts.add(w.as_str(), 1u64);
                    }
                },
                |a, b| a + b,
            )
            .collect_batches();
        let plain = input
            .flat_map(|l: String| words_of(&l))
            .map(|w| (w, 1u64))
            .reduce_by_key(|a, b| a + b)
            .collect_batches();
        let received = input.count().collect_batches();
        ssc.start().await.unwrap();
        advance_until(&ssc, || {
            received.records().iter().sum::<u64>() >= lines.len() as u64
        })
        .await;
        server.await.unwrap();
        ssc.stop(StopMode::Graceful).await.unwrap();

        let fast = sorted_batches(fast.batches());
        assert_eq!(fast, sorted_batches(plain.batches()));
        let mut total = std::collections::BTreeMap::new();
        for (w, n) in fast.into_iter().flatten() {
            *total.entry(w).or_insert(0) += n;
        }
        let by_hand = count_words(lines.iter().map(String::as_str));
        assert!(by_hand.len() > 1000, "{} distinct words", by_hand.len());
        assert_eq!(total, by_hand);
    })
    .await
}
