//! One framed connection: the handshake, then messages both ways.

use std::net::SocketAddr;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use super::{Hello, TransportError};

/// Limits of a connection.
#[derive(Clone, Copy, Debug)]
pub struct TransportOptions {
    /// The longest frame accepted or sent, in bytes (default 256 MiB): a longer one is an
    /// [`TransportError::Io`] naming the limit, never an allocation of that size.
    pub max_frame_bytes: usize,
    /// How long the handshake may take (default 10 s).
    pub handshake_timeout: Duration,
}

impl Default for TransportOptions {
    fn default() -> TransportOptions {
        TransportOptions {
            max_frame_bytes: 256 << 20,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A connection to a peer that passed the handshake: messages of any serde type, one per
/// frame, in order.
#[derive(Debug)]
pub struct Connection {
    framed: Framed<TcpStream, LengthDelimitedCodec>,
    peer: SocketAddr,
    peer_hello: Hello,
}

impl Connection {
    /// Dials `addr` (`host:port`) and runs the handshake as `hello`.
    ///
    /// # Errors
    /// [`TransportError::Connect`] naming `addr` when it cannot be reached; as
    /// [`accept`](Connection::accept) for the handshake.
    pub async fn connect(
        addr: &str,
        hello: &Hello,
        options: TransportOptions,
    ) -> Result<Connection, TransportError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| TransportError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        Connection::handshake(stream, hello, options).await
    }

    /// Runs the handshake as `hello` on a connection a listener accepted.
    ///
    /// # Errors
    /// [`TransportError::Mismatch`] for a peer of another protocol, build or role (the
    /// peer refuses this side too); [`TransportError::Decode`] for a first frame that is
    /// not a [`Hello`]; [`TransportError::Timeout`] when the peer's `Hello` does not come
    /// within `options.handshake_timeout`; [`TransportError::Closed`] or
    /// [`TransportError::Io`] when the connection breaks.
    pub async fn accept(
        stream: TcpStream,
        hello: &Hello,
        options: TransportOptions,
    ) -> Result<Connection, TransportError> {
        Connection::handshake(stream, hello, options).await
    }

    async fn handshake(
        stream: TcpStream,
        hello: &Hello,
        options: TransportOptions,
    ) -> Result<Connection, TransportError> {
        let peer = stream.peer_addr().map_err(|source| TransportError::Io {
            peer: SocketAddr::from(([0, 0, 0, 0], 0)),
            source,
        })?;
        // Messages are small and latency matters more than packet count.
        let _ = stream.set_nodelay(true);
        let codec = LengthDelimitedCodec::builder()
            .max_frame_length(options.max_frame_bytes)
            .new_codec();
        let mut connection = Connection {
            framed: Framed::new(stream, codec),
            peer,
            peer_hello: hello.clone(),
        };
        let exchange = async {
            connection.send(hello).await?;
            connection.recv_as::<Hello>("handshake").await
        };
        let theirs = tokio::time::timeout(options.handshake_timeout, exchange)
            .await
            .map_err(|_| TransportError::Timeout {
                peer,
                after: options.handshake_timeout,
                what: "the peer's handshake".to_string(),
            })??;
        if let Some(reason) = hello.refusal(&theirs) {
            return Err(TransportError::Mismatch {
                peer,
                reason,
                ours: hello.to_string(),
                theirs: theirs.to_string(),
            });
        }
        tracing::debug!(peer = %peer, hello = %theirs, "Connection open.");
        connection.peer_hello = theirs;
        Ok(connection)
    }

    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The peer's handshake.
    pub fn peer_hello(&self) -> &Hello {
        &self.peer_hello
    }

    /// Sends `message` as one frame (named-field rmp-serde) and flushes it.
    ///
    /// # Errors
    /// [`TransportError::Io`] when it cannot be encoded, is longer than the frame limit, or
    /// the connection breaks.
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<(), TransportError> {
        let peer = self.peer;
        let bytes = rmp_serde::to_vec_named(message).map_err(|e| TransportError::Io {
            peer,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        self.framed
            .send(tokio_util::bytes::Bytes::from(bytes))
            .await
            .map_err(|source| TransportError::Io { peer, source })
    }

    /// The next message, which must be a `T`.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the peer closed the connection;
    /// [`TransportError::Decode`] for a frame that is not a `T`; [`TransportError::Io`] for
    /// a broken connection or a frame longer than the limit.
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<T, TransportError> {
        self.recv_as(std::any::type_name::<T>()).await
    }

    async fn recv_as<T: DeserializeOwned>(&mut self, what: &str) -> Result<T, TransportError> {
        read_frame(&mut self.framed, self.peer, what).await
    }

    /// Splits the connection into a sending and a receiving half, for a writer task and a
    /// reader task that run at once.
    pub fn split(self) -> (ConnectionSender, ConnectionReceiver) {
        let (sink, stream) = self.framed.split();
        (
            ConnectionSender {
                sink,
                peer: self.peer,
            },
            ConnectionReceiver {
                stream,
                peer: self.peer,
            },
        )
    }
}

type Frames = Framed<TcpStream, LengthDelimitedCodec>;

async fn read_frame<T: DeserializeOwned>(
    frames: &mut (impl futures::Stream<Item = std::io::Result<tokio_util::bytes::BytesMut>> + Unpin),
    peer: SocketAddr,
    what: &str,
) -> Result<T, TransportError> {
    let frame = next_frame(frames, peer).await?;
    decode_frame(&frame, peer, what)
}

async fn next_frame(
    frames: &mut (impl futures::Stream<Item = std::io::Result<tokio_util::bytes::BytesMut>> + Unpin),
    peer: SocketAddr,
) -> Result<tokio_util::bytes::BytesMut, TransportError> {
    match frames.next().await {
        None => Err(TransportError::Closed { peer }),
        Some(Err(source)) => Err(TransportError::Io { peer, source }),
        Some(Ok(frame)) => Ok(frame),
    }
}

fn decode_frame<T: DeserializeOwned>(
    frame: &[u8],
    peer: SocketAddr,
    what: &str,
) -> Result<T, TransportError> {
    rmp_serde::from_slice(frame).map_err(|e| TransportError::Decode {
        peer,
        what: what.to_string(),
        bytes: frame.len(),
        reason: e.to_string(),
    })
}

/// The sending half of a [`Connection`].
#[derive(Debug)]
pub struct ConnectionSender {
    sink: futures::stream::SplitSink<Frames, tokio_util::bytes::Bytes>,
    peer: SocketAddr,
}

impl ConnectionSender {
    /// Sends `message` as one frame, as [`Connection::send`] does; returns the frame's
    /// length in bytes (without the 4-byte length prefix).
    ///
    /// # Errors
    /// As [`Connection::send`].
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<usize, TransportError> {
        let peer = self.peer;
        let bytes = rmp_serde::to_vec_named(message).map_err(|e| TransportError::Io {
            peer,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let len = bytes.len();
        self.sink
            .send(tokio_util::bytes::Bytes::from(bytes))
            .await
            .map_err(|source| TransportError::Io { peer, source })?;
        Ok(len)
    }
}

/// The receiving half of a [`Connection`].
#[derive(Debug)]
pub struct ConnectionReceiver {
    stream: futures::stream::SplitStream<Frames>,
    peer: SocketAddr,
}

impl ConnectionReceiver {
    /// The peer's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The next message, as [`Connection::recv`] reads it, and its frame's length in bytes
    /// (without the 4-byte length prefix).
    ///
    /// # Errors
    /// As [`Connection::recv`].
    pub async fn recv<T: DeserializeOwned>(&mut self) -> Result<(T, usize), TransportError> {
        let frame = next_frame(&mut self.stream, self.peer).await?;
        let message = decode_frame(&frame, self.peer, std::any::type_name::<T>())?;
        Ok((message, frame.len()))
    }
}
