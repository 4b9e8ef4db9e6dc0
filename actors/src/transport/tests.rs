//! The transport over loopback TCP: a round trip, and each way a connection is refused or
//! breaks, with the error naming the peer.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use super::*;

fn hello(role: Role, program: &str) -> Hello {
    Hello {
        protocol: PROTOCOL_VERSION,
        build: BuildId {
            rivulet: "0.1.0".into(),
            program: program.into(),
        },
        role,
        name: format!("{role:?} of {program}"),
    }
}

fn quick() -> TransportOptions {
    TransportOptions {
        max_frame_bytes: 1024,
        handshake_timeout: Duration::from_millis(300),
    }
}

/// A listener on a free loopback port and its address.
async fn listener() -> (TcpListener, String) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    (l, addr)
}

/// Accepts one connection on `l` as a coordinator of `program`.
async fn serve(l: TcpListener, program: &'static str) -> Result<Connection, TransportError> {
    let (stream, _) = l.accept().await.unwrap();
    Connection::accept(stream, &hello(Role::Coordinator, program), quick()).await
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
enum Message {
    Task {
        partition: u32,
        batch_ms: i64,
    },
    Result {
        partition: u32,
        records: Vec<String>,
    },
}

#[tokio::test]
async fn messages_cross_both_ways_after_the_handshake() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut c = serve(l, "b1").await.unwrap();
        assert_eq!(c.peer_hello(), &hello(Role::Executor, "b1"));
        c.send(&Message::Task {
            partition: 3,
            batch_ms: 1500,
        })
        .await
        .unwrap();
        c.recv::<Message>().await.unwrap()
    });
    let mut c = Connection::connect(&addr, &hello(Role::Executor, "b1"), quick())
        .await
        .unwrap();
    assert_eq!(c.peer_hello().role, Role::Coordinator);
    assert_eq!(c.peer().to_string(), addr);
    let task: Message = c.recv().await.unwrap();
    assert_eq!(
        task,
        Message::Task {
            partition: 3,
            batch_ms: 1500
        }
    );
    let result = Message::Result {
        partition: 3,
        records: vec!["a".into(), "b".into()],
    };
    c.send(&result).await.unwrap();
    assert_eq!(server.await.unwrap(), result);
}

#[tokio::test]
async fn payloads_follow_their_messages_in_order_and_a_wrong_length_is_a_decode_error() {
    let (l, addr) = listener().await;
    // Payloads up to the 1024-byte limit, each after a message; the small ones arrive in
    // the same read as their message, the last one partly from the socket.
    let payloads: Vec<Vec<u8>> = vec![vec![], b"bucket".to_vec(), vec![7; 1000]];
    let sent = payloads.clone();
    let server = tokio::spawn(async move {
        let c = serve(l, "b1").await.unwrap();
        let (mut tx, _rx) = c.split();
        for (i, p) in sent.iter().enumerate() {
            let message = Message::Task {
                partition: i as u32,
                batch_ms: p.len() as i64,
            };
            let n = tx.send_with_payload(&message, Some(p)).await.unwrap();
            assert!(n >= p.len());
        }
        // Over the limit: refused before anything is sent.
        let e = tx
            .send_with_payload(
                &Message::Task {
                    partition: 9,
                    batch_ms: 0,
                },
                Some(&[0; 2000]),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("longer than the limit"), "{e}");
        tx.send_with_payload(
            &Message::Task {
                partition: 3,
                batch_ms: 5,
            },
            Some(b"four"),
        )
        .await
        .unwrap();
        tx
    });
    let c = Connection::connect(&addr, &hello(Role::Executor, "b1"), quick())
        .await
        .unwrap();
    let (_tx, mut rx) = c.split();
    for (i, expected) in payloads.iter().enumerate() {
        let (message, _) = rx.recv::<Message>().await.unwrap();
        let Message::Task {
            partition,
            batch_ms,
        } = message
        else {
            panic!("{message:?}")
        };
        assert_eq!(partition, i as u32);
        let payload = rx.recv_payload(batch_ms as usize).await.unwrap();
        assert_eq!(&payload, expected);
    }
    let (message, _) = rx.recv::<Message>().await.unwrap();
    assert_eq!(
        message,
        Message::Task {
            partition: 3,
            batch_ms: 5
        }
    );
    let e = rx.recv_payload(5).await.unwrap_err();
    assert!(matches!(e, TransportError::Decode { bytes: 4, .. }), "{e}");
    drop(server.await.unwrap());
}

#[tokio::test]
async fn a_peer_of_another_build_is_refused_by_both_sides_naming_both_builds() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(serve(l, "0000aaaa"));
    let client = Connection::connect(&addr, &hello(Role::Executor, "1111bbbb"), quick()).await;
    for e in [client.unwrap_err(), server.await.unwrap().unwrap_err()] {
        let text = e.to_string();
        assert!(matches!(e, TransportError::Mismatch { .. }), "{text}");
        assert!(text.contains("another build"), "{text}");
        assert!(
            text.contains("program 0000aaaa") && text.contains("program 1111bbbb"),
            "{text}"
        );
        assert!(text.contains("127.0.0.1:"), "{text}");
    }
}

#[tokio::test]
async fn another_protocol_version_or_the_wrong_role_is_refused() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(serve(l, "b1"));
    let mut old = hello(Role::Executor, "b1");
    old.protocol = PROTOCOL_VERSION + 1;
    let e = Connection::connect(&addr, &old, quick()).await.unwrap_err();
    assert!(e.to_string().contains("is not"), "{e}");
    assert!(server.await.unwrap().is_err());

    let (l, addr) = listener().await;
    let server = tokio::spawn(serve(l, "b1"));
    let e = Connection::connect(&addr, &hello(Role::Coordinator, "b1"), quick())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("a Coordinator cannot talk to a Coordinator"),
        "{e}"
    );
    assert!(server.await.unwrap().is_err());
}

#[tokio::test]
async fn a_first_frame_that_is_not_a_handshake_is_a_decode_error_naming_the_peer() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(serve(l, "b1"));
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    let local = raw.local_addr().unwrap();
    raw.write_all(&[0, 0, 0, 3, 0xc1, 0xc1, 0xc1])
        .await
        .unwrap();
    let e = server.await.unwrap().unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, TransportError::Decode { bytes: 3, .. }),
        "{text}"
    );
    assert!(
        text.contains(&local.to_string()) && text.contains("handshake"),
        "{text}"
    );
}

#[tokio::test]
async fn a_silent_peer_times_out_and_a_refused_address_is_named() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(serve(l, "b1"));
    let _silent = TcpStream::connect(&addr).await.unwrap();
    let e = server.await.unwrap().unwrap_err();
    assert!(
        matches!(e, TransportError::Timeout { after, .. } if after == Duration::from_millis(300)),
        "{e}"
    );

    let (l, addr) = listener().await;
    drop(l);
    let e = Connection::connect(&addr, &hello(Role::Executor, "b1"), quick())
        .await
        .unwrap_err();
    assert!(matches!(e, TransportError::Connect { .. }), "{e}");
    assert!(e.to_string().contains(&addr), "{e}");
}

#[tokio::test]
async fn an_oversized_frame_and_a_closed_peer_are_errors_not_hangs() {
    let (l, addr) = listener().await;
    let server = tokio::spawn(async move {
        let mut c = serve(l, "b1").await.unwrap();
        let first = c.recv::<Message>().await;
        let second = c.recv::<Message>().await;
        (first, second)
    });
    let mut c = Connection::connect(&addr, &hello(Role::Executor, "b1"), quick())
        .await
        .unwrap();
    // Longer than the 1024-byte limit: refused before it is sent.
    let big = Message::Result {
        partition: 0,
        records: vec!["x".repeat(2000)],
    };
    let e = c.send(&big).await.unwrap_err();
    assert!(matches!(e, TransportError::Io { .. }), "{e}");
    // A frame of the wrong type, then the connection closes.
    c.send(&"not a message").await.unwrap();
    drop(c);
    let (first, second) = server.await.unwrap();
    assert!(
        matches!(first, Err(TransportError::Decode { ref what, .. }) if what.contains("Message")),
        "{first:?}"
    );
    assert!(
        matches!(second, Err(TransportError::Closed { .. })),
        "{second:?}"
    );
}

#[test]
fn this_build_is_named_by_version_and_a_checksum_of_the_executable() {
    let build = BuildId::current();
    assert_eq!(build.rivulet, env!("CARGO_PKG_VERSION"));
    assert_eq!(build.program.len(), 8, "{build}");
    assert!(
        build.program.chars().all(|c| c.is_ascii_hexdigit()),
        "{build}"
    );
    assert_eq!(BuildId::current(), build);
}

#[test]
fn a_connection_fault_is_an_io_error_naming_the_peer_not_a_bug() {
    let peer: std::net::SocketAddr = "127.0.0.1:4040".parse().expect("an address");
    let closed: rivulet_framework::Error = TransportError::Closed { peer }.into();
    let text = closed.to_string();
    assert!(
        matches!(closed, rivulet_framework::Error::Io { .. }),
        "{closed:?}"
    );
    assert!(text.contains("127.0.0.1:4040"), "{text}");
    assert!(!text.contains("bug"), "{text}");
    let timeout: rivulet_framework::Error = TransportError::Timeout {
        peer,
        after: std::time::Duration::from_secs(2),
        what: "heartbeat".into(),
    }
    .into();
    match timeout {
        rivulet_framework::Error::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut)
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
}
