//! The client's own tokio runtime and its connection to the server.
//!
//! async-nats is asynchronous and spawns its connection task on the runtime it is called
//! from. The direct source's methods are synchronous: they run on a blocking thread of the
//! coordinator or on an executor's task thread, never on an actix or tokio worker. So each
//! source (and each receiver) owns a small multi-threaded runtime (one worker thread) that
//! the client lives on; a synchronous call spawns its future there and waits for the result
//! on a plain channel ([`ClientRuntime::block`]), an asynchronous caller awaits the spawned
//! task's handle ([`ClientRuntime::run`]). Nothing of the client ever runs on, or blocks, an
//! actix thread, and a panic inside the client (e.g. a TLS handshake without a crypto
//! provider) ends its task with an error instead of the caller's thread.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Client, ConnectErrorKind, ConnectOptions, ServerAddr};
use parking_lot::Mutex;

/// How long connecting to the server may take.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long one request to the server (stream info, consumer create, publish ack) may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// What a panic of the client's task is reported as.
#[cfg(not(feature = "tls"))]
const PANICKED: &str = "the NATS client's task panicked (see the log above); a server that requires TLS needs the `tls` feature of rivulet-nats";
#[cfg(feature = "tls")]
const PANICKED: &str = "the NATS client's task panicked (see the log above)";

/// A tokio runtime that shuts down in the background when dropped, so that dropping the last
/// handle on an actix thread (inside another runtime) does not panic.
struct Owned(Option<tokio::runtime::Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The runtime a NATS client lives on, shared by clones of a source.
#[derive(Clone)]
pub(crate) struct ClientRuntime {
    rt: Arc<Owned>,
}

impl fmt::Debug for ClientRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientRuntime")
    }
}

impl ClientRuntime {
    /// A runtime with one worker thread named `rivulet-nats`.
    pub(crate) fn new() -> std::io::Result<ClientRuntime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rivulet-nats")
            .enable_all()
            .build()?;
        Ok(ClientRuntime {
            rt: Arc::new(Owned(Some(rt))),
        })
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.rt.0.as_ref().map(tokio::runtime::Runtime::handle)
    }

    /// Runs `fut` on the runtime and waits for it on this (blocking) thread. Never call it
    /// on an async worker thread.
    pub(crate) fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let handle = self
            .handle()
            .ok_or("the NATS client's runtime is shut down")?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        // The sender is dropped without a value only when the future panicked.
        rx.recv().map_err(|_| PANICKED.to_string())
    }

    /// Runs `fut` on the runtime and awaits it from any async context.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let handle = self
            .handle()
            .ok_or("the NATS client's runtime is shut down")?
            .clone();
        handle.spawn(fut).await.map_err(|e| match e.is_panic() {
            true => PANICKED.to_string(),
            false => format!("the NATS client's task was cancelled: {e}"),
        })
    }
}

/// What a server URL's user information says: a user and password
/// (`nats://user:pass@host:port`) or a token (`nats://token@host:port`).
#[derive(Clone)]
enum Credentials {
    UserPassword(String, String),
    Token(String),
}

/// Why a connection could not be made.
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    /// The reason, without the server's address (the caller names it).
    pub(crate) message: String,
    /// Whether the server refused the credentials (a retry sends the same ones).
    pub(crate) auth: bool,
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ConnectFailure> for String {
    fn from(failure: ConnectFailure) -> String {
        failure.message
    }
}

/// `%XX` escapes of a URL's user information decoded (a `%` not followed by two hex digits
/// is kept as is).
fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The server's address without its user information (to connect to, and to show in
/// errors: no password or token ever reaches a log), and the credentials it carried. An
/// address that does not parse is returned as it is (connecting to it fails, naming it).
fn split_credentials(server: &str) -> (String, Option<Credentials>) {
    let Ok(addr) = server.parse::<ServerAddr>() else {
        return (server.to_string(), None);
    };
    let mut url = addr.into_inner();
    let user = percent_decoded(url.username());
    let credentials = match url.password() {
        Some(password) => Some(Credentials::UserPassword(user, percent_decoded(password))),
        None if !user.is_empty() => Some(Credentials::Token(user)),
        None => None,
    };
    if credentials.is_none() {
        return (server.to_string(), None);
    }
    // Both fail only for a URL that cannot have user information: not one that had some.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    (url.to_string(), credentials)
}

/// A connection to one server, made at first use and made again when the client is not
/// connected: a server that is down fails the call at once (connection refused) instead of
/// waiting for async-nats's own reconnection, and one that came back is met by the next call.
///
/// Credentials in the server's URL (`nats://user:pass@host:port`, or `nats://token@host:port`)
/// are sent as the user and password, or the token (async-nats itself ignores a URL's user
/// information); `server` is the URL without them.
#[derive(Clone)]
pub(crate) struct Connection {
    pub(crate) server: String,
    credentials: Option<Credentials>,
    client: Arc<Mutex<Option<Client>>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

impl Connection {
    pub(crate) fn new(server: &str) -> Connection {
        let (server, credentials) = split_credentials(server);
        Connection {
            server,
            credentials,
            client: Arc::default(),
        }
    }

    /// A connected client (async: call it on the client's runtime).
    ///
    /// # Errors
    /// The reason the server cannot be reached, without the server's address (the caller
    /// names it); an authorization violation (the server refused the URL's credentials, or
    /// requires some and got none) says `authentication failed` and is marked as such.
    pub(crate) async fn client(&self) -> Result<Client, ConnectFailure> {
        if let Some(client) = self.client.lock().clone() {
            if client.connection_state() == State::Connected {
                return Ok(client);
            }
        }
        let options = match self.credentials.clone() {
            Some(Credentials::UserPassword(user, password)) => {
                ConnectOptions::with_user_and_password(user, password)
            }
            Some(Credentials::Token(token)) => ConnectOptions::with_token(token),
            None => ConnectOptions::new(),
        };
        let client = options
            .connection_timeout(CONNECT_TIMEOUT)
            .request_timeout(Some(REQUEST_TIMEOUT))
            // Our own reconnection is the next call's; this client gives up on its own after
            // a few tries so that an abandoned one ends its task.
            .max_reconnects(Some(3))
            .ignore_discovered_servers()
            .connect(self.server.as_str())
            .await
            .map_err(|e| match e.kind() {
                ConnectErrorKind::AuthorizationViolation | ConnectErrorKind::Authentication => {
                    ConnectFailure {
                        message: format!(
                            "authentication failed (a wrong or missing user and password or token in the URL): {e}"
                        ),
                        auth: true,
                    }
                }
                _ => ConnectFailure {
                    message: format!("cannot connect: {e}"),
                    auth: false,
                },
            })?;
        // A dropped client ends its connection task once every clone of it is gone.
        *self.client.lock() = Some(client.clone());
        Ok(client)
    }

    /// Forgets the client after an error, so that the next call connects again.
    pub(crate) fn reset(&self) {
        self.client.lock().take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_call_returns_the_futures_output_and_a_panic_as_an_error() {
        let rt = ClientRuntime::new().unwrap();
        assert_eq!(rt.block(async { 6 * 7 }).unwrap(), 42);
        let panicked: Result<(), String> = rt.block(async { panic!("inside the client") });
        assert_eq!(panicked.unwrap_err(), PANICKED);
        // The runtime survives its task's panic.
        assert_eq!(rt.block(async { 1 }).unwrap(), 1);
    }

    #[test]
    fn an_async_caller_awaits_the_task_and_may_drop_the_last_handle_inside_its_runtime() {
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        caller.block_on(async {
            let rt = ClientRuntime::new().unwrap();
            assert_eq!(rt.run(async { 42 }).await.unwrap(), 42);
            let panicked: Result<(), String> = rt.run(async { panic!("inside the client") }).await;
            assert_eq!(panicked.unwrap_err(), PANICKED);
            // A plain tokio Runtime dropped here would panic ("Cannot drop a runtime in a
            // context where blocking is not allowed").
            drop(rt);
        });
    }

    #[test]
    fn a_server_that_is_not_there_fails_the_connection_at_once() {
        let rt = ClientRuntime::new().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let connection = Connection::new(&format!("nats://127.0.0.1:{port}"));
        let started = std::time::Instant::now();
        let c = connection.clone();
        let error = rt.block(async move { c.client().await.map(drop) }).unwrap();
        let error = error.unwrap_err();
        assert!(error.message.starts_with("cannot connect") && !error.auth);
        assert!(started.elapsed() < CONNECT_TIMEOUT);
    }

    #[test]
    fn credentials_in_the_url_are_taken_out_of_the_name() {
        let c = Connection::new("nats://alice:p%40ss@127.0.0.1:4222");
        assert_eq!(c.server, "nats://127.0.0.1:4222");
        assert!(
            matches!(&c.credentials, Some(Credentials::UserPassword(u, p)) if u == "alice" && p == "p@ss")
        );
        let c = Connection::new("nats://s3cret@127.0.0.1:4222");
        assert_eq!(c.server, "nats://127.0.0.1:4222");
        assert!(matches!(&c.credentials, Some(Credentials::Token(t)) if t == "s3cret"));
        for plain in ["nats://127.0.0.1:4222", "127.0.0.1:4222", "not a url::"] {
            let c = Connection::new(plain);
            assert_eq!(c.server, plain);
            assert!(c.credentials.is_none());
        }
        assert_eq!(percent_decoded("a%2Fb%zz%"), "a/b%zz%");
    }
}
