//! What the NATS tests share: a `nats-server -js` of the test's own on a free 127.0.0.1
//! port, with JetStream's file storage in a temporary directory (so a restart keeps the
//! streams), killed on drop and restartable; `None` (after a loud `SKIPPED` line) when
//! nats-server is not installed, a failure under `RIVULET_REQUIRE_BROKERS=1`. Also a client
//! for the test's own publishing, contexts on the manual clock, and the bundled text.
//! [`server_with_password`] starts one that admits a single user with a password
//! (`--user`, `--pass`).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use rivulet::prelude::*;

/// A nats-server of the test's own, killed on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
    extra: Vec<String>,
}

/// nats-server's path: on `PATH`, or where Debian puts it (`/usr/sbin`, not on a user's
/// `PATH`); `None` after a loud line naming `test` when missing (a failure under
/// `RIVULET_REQUIRE_BROKERS=1`).
pub fn binary(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .map(|dir| dir.join("nats-server"))
        .chain([PathBuf::from("/usr/sbin/nats-server")])
        .find(|p| p.is_file());
    if found.is_some() {
        return found;
    }
    let install = "nats-server is missing: install it with `bash scripts/install-test-tools.sh` (Debian's `nats-server` package)";
    if std::env::var_os("RIVULET_REQUIRE_BROKERS").is_some_and(|v| v == "1") {
        panic!("{install} (RIVULET_REQUIRE_BROKERS=1: the test must run).");
    }
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "\n*** SKIPPED {test}: {install}. ***\n");
    None
}

/// A free port on 127.0.0.1 (free when asked).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// The server, started, or `None` when nats-server is missing (see [`binary`]).
pub fn server(test: &str) -> Option<Server> {
    let mut server = stopped_server(test)?;
    server.start();
    Some(server)
}

/// A server that admits only `user` with `password`, started, or `None` as [`server`].
pub fn server_with_password(test: &str, user: &str, password: &str) -> Option<Server> {
    let mut server = stopped_server(test)?;
    server.extra_args(&[
        "--user".into(),
        user.into(),
        "--pass".into(),
        password.into(),
    ]);
    server.start();
    Some(server)
}

/// The server, not started yet.
pub fn stopped_server(test: &str) -> Option<Server> {
    Some(Server {
        child: None,
        port: free_port(),
        dir: tempfile::tempdir().expect("a temporary directory"),
        binary: binary(test)?,
        extra: Vec::new(),
    })
}

impl Server {
    /// Starts (or restarts) the server on its port, JetStream's store in its directory, and
    /// waits until it greets a client with JetStream on.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string()])
            .arg("-sd")
            .arg(self.dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.greets() {
            assert!(Instant::now() < deadline, "nats-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Adds arguments to the server's command line (from the next start).
    pub fn extra_args(&mut self, args: &[String]) {
        self.extra.extend_from_slice(args);
    }

    /// Whether the server sends its `INFO` line with JetStream on.
    fn greets(&self) -> bool {
        let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok()
            && line.starts_with("INFO")
            && line.contains("\"jetstream\":true")
    }

    /// SIGKILLs the server.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's URL with `user` and `password` in it.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("nats://{user}:{password}@127.0.0.1:{}", self.port)
    }

    pub fn store_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A JetStream context of the test's own on `url`, logged in as the URL's user and
/// password when it has them (async-nats ignores a URL's user information).
pub async fn js(url: &str) -> jetstream::Context {
    let addr: async_nats::ServerAddr = url.parse().expect("a NATS URL");
    let options = match (addr.username(), addr.password()) {
        (Some(user), Some(password)) => {
            async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        }
        _ => async_nats::ConnectOptions::new(),
    };
    let client = options.connect(url).await.expect("connect to nats-server");
    jetstream::new(client)
}

/// Makes stream `name` on subject `name` (file storage), with at most `max_messages`
/// messages when given (older ones removed).
pub async fn make_stream(js: &jetstream::Context, name: &str, max_messages: Option<i64>) {
    js.create_stream(stream::Config {
        name: name.to_string(),
        subjects: vec![name.to_string()],
        storage: stream::StorageType::File,
        max_messages: max_messages.unwrap_or(-1),
        ..Default::default()
    })
    .await
    .expect("create the stream");
}

/// Publishes `lines` to subject `subject`, each acknowledged by the server.
pub async fn publish(js: &jetstream::Context, subject: &str, lines: &[String]) {
    for chunk in lines.chunks(1_000) {
        let mut acks = Vec::with_capacity(chunk.len());
        for line in chunk {
            acks.push(
                js.publish(subject.to_string(), line.clone().into())
                    .await
                    .expect("publish"),
            );
        }
        for ack in acks {
            ack.await.expect("the server's ack");
        }
    }
}

/// The first `n` lines of the bundled text, cycled.
pub fn lines(n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/data/shakespeare.txt"
    ))
    .expect("the bundled text");
    text.lines().cycle().take(n).map(str::to_string).collect()
}

/// The words of `line`: maximal runs of ASCII letters and digits, lowercased, found with a
/// character loop (independently of the pipelines under test).
pub fn words_of(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for c in line.chars() {
        if c.is_ascii_alphanumeric() {
            current.push(c.to_ascii_lowercase());
        } else if !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// The words of `lines`, counted.
pub fn independent_count(lines: &[String]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for w in lines.iter().flat_map(|l| words_of(l)) {
        *counts.entry(w).or_insert(0) += 1;
    }
    counts
}

/// The words of a line as the pipelines split them.
pub fn split_words(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// A context on the manual clock: 100 ms batches, `executors` executors, `parallelism`
/// default partitions.
pub fn context(executors: usize, parallelism: usize) -> StreamingContext {
    StreamingContext::new(config(executors, parallelism)).expect("valid config")
}

/// The config of [`context`].
pub fn config(executors: usize, parallelism: usize) -> StreamingConfig {
    StreamingConfig::new()
        .batch_interval(Duration::from_millis(100))
        .executors(executors)
        .default_parallelism(parallelism)
        .manual_clock(true)
}

/// Runs `f`, failing the test after `secs` seconds instead of hanging.
pub async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("the test did not finish within its timeout")
}
