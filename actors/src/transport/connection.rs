//! One framed connection: the handshake, then messages both ways.

use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio_util::bytes::Buf;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

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

/// The length prefix of every frame: 4 bytes, big-endian (`LengthDelimitedCodec`'s default,
/// which reads them).
const PREFIX: usize = 4;

/// The capacity an idle send buffer keeps (larger ones shrink back after their frame went
/// out): enough for every control message, so they never allocate.
const KEPT_SEND_CAPACITY: usize = 1 << 20;

/// A connection to a peer that passed the handshake: messages of any serde type, one per
/// frame, in order.
#[derive(Debug)]
pub struct Connection {
    sender: ConnectionSender,
    receiver: ConnectionReceiver,
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
            .length_field_length(PREFIX)
            .max_frame_length(options.max_frame_bytes)
            .new_codec();
        let (read, write) = stream.into_split();
        let mut connection = Connection {
            sender: ConnectionSender {
                write,
                buf: Vec::new(),
                max_frame_bytes: options.max_frame_bytes,
                peer,
            },
            receiver: ConnectionReceiver {
                frames: FramedRead::new(read, codec),
                max_frame_bytes: options.max_frame_bytes,
                peer,
            },
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
        self.sender.peer
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
        self.sender.send(message).await.map(|_| ())
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
        let peer = self.receiver.peer;
        let frame = next_frame(&mut self.receiver.frames, peer).await?;
        decode_frame(&frame, peer, what)
    }

    /// Splits the connection into a sending and a receiving half, for a writer task and a
    /// reader task that run at once.
    pub fn split(self) -> (ConnectionSender, ConnectionReceiver) {
        (self.sender, self.receiver)
    }
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

/// The error of a frame of `len` bytes, over the limit `max`.
fn too_long(peer: SocketAddr, len: usize, max: usize) -> TransportError {
    TransportError::Io {
        peer,
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("a frame of {len} bytes is longer than the limit of {max} bytes"),
        ),
    }
}

/// The sending half of a [`Connection`].
///
/// Each message is encoded straight into one buffer that the sender keeps from frame to
/// frame (length prefix, then the message), and written from there: no allocation and no
/// copy per frame besides the socket's own. A raw payload
/// ([`send_with_payload`](ConnectionSender::send_with_payload)) is written from the caller's
/// bytes, never copied into the buffer.
#[derive(Debug)]
pub struct ConnectionSender {
    write: OwnedWriteHalf,
    buf: Vec<u8>,
    max_frame_bytes: usize,
    peer: SocketAddr,
}

impl ConnectionSender {
    /// Sends `message` as one frame, as [`Connection::send`] does; returns the frame's
    /// length in bytes (without the 4-byte length prefix).
    ///
    /// # Errors
    /// As [`Connection::send`].
    pub async fn send<T: Serialize>(&mut self, message: &T) -> Result<usize, TransportError> {
        self.send_with_payload(message, None).await
    }

    /// Sends `message` as one frame and, when `payload` is given, its bytes as the next
    /// frame, as they are (the receiver reads them with
    /// [`ConnectionReceiver::recv_payload`]). Returns the bytes of both frames (without
    /// their 4-byte length prefixes).
    ///
    /// # Errors
    /// As [`Connection::send`]; a payload longer than the frame limit is refused before
    /// anything is sent.
    pub async fn send_with_payload<T: Serialize>(
        &mut self,
        message: &T,
        payload: Option<&[u8]>,
    ) -> Result<usize, TransportError> {
        let peer = self.peer;
        let max = self.max_frame_bytes;
        self.buf.clear();
        self.buf.extend_from_slice(&[0; PREFIX]);
        rmp_serde::encode::write_named(&mut self.buf, message).map_err(|e| TransportError::Io {
            peer,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let len = self.buf.len() - PREFIX;
        if len > max {
            return Err(too_long(peer, len, max));
        }
        self.buf[..PREFIX].copy_from_slice(&prefix(len));
        let mut sent = len;
        if let Some(payload) = payload {
            if payload.len() > max {
                return Err(too_long(peer, payload.len(), max));
            }
            self.buf.extend_from_slice(&prefix(payload.len()));
            sent += payload.len();
        }
        let written = async {
            self.write.write_all(&self.buf).await?;
            if let Some(payload) = payload {
                self.write.write_all(payload).await?;
            }
            self.write.flush().await
        }
        .await;
        if self.buf.capacity() > KEPT_SEND_CAPACITY {
            self.buf = Vec::with_capacity(KEPT_SEND_CAPACITY);
        }
        written.map_err(|source| TransportError::Io { peer, source })?;
        Ok(sent)
    }
}

/// The 4-byte length prefix of a frame of `len` bytes (at most the frame limit, checked
/// before, which is below 4 GiB).
fn prefix(len: usize) -> [u8; PREFIX] {
    u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes()
}

/// The receiving half of a [`Connection`].
#[derive(Debug)]
pub struct ConnectionReceiver {
    frames: FramedRead<OwnedReadHalf, LengthDelimitedCodec>,
    max_frame_bytes: usize,
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
        let frame = next_frame(&mut self.frames, self.peer).await?;
        let message = decode_frame(&frame, self.peer, std::any::type_name::<T>())?;
        Ok((message, frame.len()))
    }

    /// The raw payload that the peer sent after the message just read
    /// ([`ConnectionSender::send_with_payload`]), which must be `len` bytes long: read
    /// into a buffer of exactly that size, straight from the socket past what was already
    /// buffered, so its bytes are copied once.
    ///
    /// Not cancel-safe: a caller that drops it midway must drop the connection too.
    ///
    /// # Errors
    /// [`TransportError::Closed`] when the peer closed the connection before the payload
    /// ended; [`TransportError::Decode`] when the next frame is not `len` bytes long;
    /// [`TransportError::Io`] for a broken connection or a payload longer than the limit.
    pub async fn recv_payload(&mut self, len: usize) -> Result<Vec<u8>, TransportError> {
        let peer = self.peer;
        let io = |source| TransportError::Io { peer, source };
        // The prefix, from the bytes the frame reader buffered, then from the socket.
        let mut head = [0u8; PREFIX];
        let buffered = self.frames.read_buffer_mut();
        let from_buffer = buffered.len().min(PREFIX);
        head[..from_buffer].copy_from_slice(&buffered[..from_buffer]);
        buffered.advance(from_buffer);
        if from_buffer < PREFIX {
            read_exact(self.frames.get_mut(), &mut head[from_buffer..], peer).await?;
        }
        let frame_len = u32::from_be_bytes(head) as usize;
        if frame_len > self.max_frame_bytes {
            return Err(too_long(peer, frame_len, self.max_frame_bytes));
        }
        if frame_len != len {
            return Err(TransportError::Decode {
                peer,
                what: "payload".into(),
                bytes: frame_len,
                reason: format!("the message announced a payload of {len} bytes"),
            });
        }
        let mut payload = Vec::with_capacity(len);
        let buffered = self.frames.read_buffer_mut();
        let from_buffer = buffered.len().min(len);
        payload.extend_from_slice(&buffered[..from_buffer]);
        buffered.advance(from_buffer);
        let rest = (len - from_buffer) as u64;
        let mut socket = self.frames.get_mut().take(rest);
        while payload.len() < len {
            if socket.read_buf(&mut payload).await.map_err(io)? == 0 {
                return Err(TransportError::Closed { peer });
            }
        }
        Ok(payload)
    }
}

/// Fills `out` from `read`.
async fn read_exact(
    read: &mut OwnedReadHalf,
    out: &mut [u8],
    peer: SocketAddr,
) -> Result<(), TransportError> {
    match read.read_exact(out).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Err(TransportError::Closed { peer })
        }
        Err(source) => Err(TransportError::Io { peer, source }),
    }
}
