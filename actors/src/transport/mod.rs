//! The transport between rivulet processes (issue 18's remote executors): TCP connections
//! that carry length-delimited frames (`tokio-util`'s `LengthDelimitedCodec`: a 4-byte
//! big-endian length, then the frame) of named-field rmp-serde messages, opened by a
//! handshake that refuses a peer of another build.
//!
//! A message may be followed by a raw payload frame, its bytes as they are
//! ([`ConnectionSender::send_with_payload`], [`ConnectionReceiver::recv_payload`]): how
//! blocks travel, written from their encoder's buffer and read into one of their size,
//! never copied into or out of MessagePack. Each sender encodes its messages into one
//! buffer it keeps, so a message costs no allocation.
//!
//! This module owns framing and the handshake; nothing else knows whether a peer is local
//! or remote. Messages are any `Serialize`/`Deserialize` type the caller chooses (tasks,
//! task results, blocks, heartbeats); closures are never sent.
//!
//! # The handshake
//! Each side sends its [`Hello`] (the wire protocol version, its [`BuildId`] and its
//! [`Role`]) as the connection's first frame, then reads the peer's. Each side checks the
//! peer on its own, so both refuse a mismatch with the same error: another protocol version
//! or another build ([`TransportError::Mismatch`], naming both builds and the peer's
//! address), or a peer in the wrong role (two coordinators). A first frame that is not a
//! `Hello` is [`TransportError::Decode`]; a peer that sends nothing within the handshake
//! timeout is [`TransportError::Timeout`].
//!
//! # Users
//! The [`cluster`](crate::cluster) module runs executor processes over these connections:
//! tasks, task outcomes, blocks and heartbeats.

mod connection;
mod hello;

#[cfg(test)]
mod tests;

pub use connection::{Connection, ConnectionReceiver, ConnectionSender, TransportOptions};
pub use hello::{BuildId, Hello, Role, PROTOCOL_VERSION};

use std::net::SocketAddr;
use std::time::Duration;

/// Why a connection could not be opened or used. Every variant names the peer's address.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The peer could not be reached (refused, unreachable, no such host).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// The socket error.
        source: std::io::Error,
    },
    /// The peer runs another protocol version or another build, or plays the wrong role.
    #[error("peer {peer} refused: {reason} (this process: {ours}; peer: {theirs})")]
    Mismatch {
        /// The peer's address.
        peer: SocketAddr,
        /// What differs.
        reason: String,
        /// This process's protocol, build and role.
        ours: String,
        /// The peer's.
        theirs: String,
    },
    /// A frame that does not decode as the message expected.
    #[error("peer {peer}: a {what} frame of {bytes} bytes does not decode: {reason}")]
    Decode {
        /// The peer's address.
        peer: SocketAddr,
        /// The message expected (`handshake`, or the message type's name).
        what: String,
        /// The frame's length.
        bytes: usize,
        /// The decoder's error.
        reason: String,
    },
    /// The peer sent nothing within the time allowed.
    #[error("peer {peer}: nothing received within {after:?} ({what})")]
    Timeout {
        /// The peer's address.
        peer: SocketAddr,
        /// How long this side waited.
        after: Duration,
        /// What was awaited.
        what: String,
    },
    /// The peer closed the connection.
    #[error("peer {peer} closed the connection")]
    Closed {
        /// The peer's address.
        peer: SocketAddr,
    },
    /// Reading or writing failed (reset, a frame longer than the limit).
    #[error("peer {peer}: {source}")]
    Io {
        /// The peer's address.
        peer: SocketAddr,
        /// The socket or codec error.
        source: std::io::Error,
    },
}

/// A connection's fault as the engine's error: [`Error::Io`](rivulet_framework::Error::Io)
/// with the whole message (it names the peer), since a refused, reset or silent peer, an
/// undecodable frame or another build is the network's or the deployment's fault, not a bug.
impl From<TransportError> for rivulet_framework::Error {
    fn from(e: TransportError) -> rivulet_framework::Error {
        use std::io::ErrorKind;
        let kind = match &e {
            TransportError::Connect { source, .. } | TransportError::Io { source, .. } => {
                source.kind()
            }
            TransportError::Mismatch { .. } | TransportError::Decode { .. } => {
                ErrorKind::InvalidData
            }
            TransportError::Timeout { .. } => ErrorKind::TimedOut,
            TransportError::Closed { .. } => ErrorKind::ConnectionAborted,
        };
        rivulet_framework::Error::io(
            "executor processes' connection",
            std::io::Error::new(kind, e.to_string()),
        )
    }
}
