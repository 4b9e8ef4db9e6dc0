//! What the Redis tests share (with `mod common;` beside it): a `redis-server` of the test's
//! own on a free 127.0.0.1 port, in a temporary directory, killed on drop; `None` (after a
//! loud `SKIPPED` line) when redis-server is not installed, a failure under
//! `RIVULET_REQUIRE_BROKERS=1`. [`server_with_password`] starts one that requires a
//! password (`--requirepass`).

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A redis-server of the test's own, killed on drop.
pub struct Server {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
    binary: PathBuf,
    /// The password the server requires, if any.
    password: Option<String>,
}

/// The server, or `None` after a loud line when redis-server is missing (a failure under
/// `RIVULET_REQUIRE_BROKERS=1`).
pub fn server(test: &str) -> Option<Server> {
    start_server(test, None)
}

/// A server that requires `password` (`--requirepass`), or `None` as [`server`].
pub fn server_with_password(test: &str, password: &str) -> Option<Server> {
    start_server(test, Some(password))
}

fn start_server(test: &str, password: Option<&str>) -> Option<Server> {
    let binary = crate::common::installed_tool(
        "redis-server",
        "redis-server",
        "RIVULET_REQUIRE_BROKERS",
        test,
    )?;
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let mut server = Server {
        child: None,
        port,
        dir: tempfile::tempdir().expect("a temporary directory"),
        binary,
        password: password.map(str::to_string),
    };
    server.start();
    Some(server)
}

impl Server {
    /// Starts (or restarts) the server; every write is in its append-only file before it is
    /// acknowledged, so a restart keeps the streams.
    pub fn start(&mut self) {
        let child = Command::new(&self.binary)
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(
                self.password
                    .iter()
                    .flat_map(|p| ["--requirepass".to_string(), p.clone()]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]).trim() != "PONG" {
            assert!(Instant::now() < deadline, "redis-server did not answer");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's URL, with its password when it requires one.
    pub fn url(&self) -> String {
        self.url_with_password(self.password.as_deref())
    }

    /// The server's URL with `password` (none: without one).
    pub fn url_with_password(&self, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/", self.port),
            None => format!("redis://127.0.0.1:{}/", self.port),
        }
    }

    /// redis-cli's arguments for this server: its port, and its password if any.
    fn cli_args(&self) -> Vec<String> {
        let mut args = vec!["-p".to_string(), self.port.to_string()];
        if let Some(p) = &self.password {
            args.extend(["-a".to_string(), p.clone(), "--no-auth-warning".to_string()]);
        }
        args
    }

    /// `redis-cli` on the server: its output (empty when it cannot connect).
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new("redis-cli")
            .args(self.cli_args())
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// `XADD stream * line <line>` for each line (see [`add_lines_at`]).
    pub fn add_lines(&self, stream: &str, lines: &[String]) {
        add_lines_with(&self.cli_args(), stream, lines);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `XADD stream * line <line>` for each line, pipelined through one redis-cli, to the server
/// on `port`.
pub fn add_lines_at(port: u16, stream: &str, lines: &[String]) {
    add_lines_with(&["-p".to_string(), port.to_string()], stream, lines);
}

/// `XADD stream * line <line>` for each line, through one `redis-cli <cli> --pipe`.
fn add_lines_with(cli: &[String], stream: &str, lines: &[String]) {
    let mut cli = Command::new("redis-cli")
        .args(cli)
        .arg("--pipe")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-cli runs");
    let mut input = std::io::BufWriter::new(cli.stdin.take().expect("a stdin"));
    for line in lines {
        // The RESP protocol: an array of bulk strings.
        let args: [&[u8]; 5] = [b"XADD", stream.as_bytes(), b"*", b"line", line.as_bytes()];
        write!(input, "*{}\r\n", args.len()).unwrap();
        for a in args {
            write!(input, "${}\r\n", a.len()).unwrap();
            input.write_all(a).unwrap();
            input.write_all(b"\r\n").unwrap();
        }
    }
    drop(input);
    assert!(cli.wait().expect("redis-cli ends").success());
}
