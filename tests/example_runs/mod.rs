//! Running the example binaries as a user would, for the CLI and loss tests: stdout and
//! stderr to files (so neither is a terminal), `RUST_LOG` unset, stdin closed, every wait
//! bounded by [`RUN_LIMIT`] (past it the run is killed and the test fails).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::example_binary;

/// How long one run of an example may take (debug builds, 2 shared cores).
pub const RUN_LIMIT: Duration = Duration::from_secs(120);

/// What a finished run left: its exit code and its output.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// The exit code and the ends of stdout and stderr, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }

    /// The stdout line of the per-input loss report.
    pub fn input_line(&self) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with("Input from "))
            .unwrap_or_else(|| panic!("no input report\n{}", self.describe()))
    }
}

/// The last 4000 bytes of `s` (at a character boundary), for failure messages.
fn tail(s: &str) -> &str {
    let mut start = s.len().saturating_sub(4000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

fn read_lossy(p: &Path) -> String {
    String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned()
}

/// Example `name` with `args`, in the repository root, with `RUST_LOG` unset.
pub fn example(name: &str, args: &[&str]) -> Command {
    let mut command = Command::new(example_binary(name));
    command
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG");
    command
}

/// A running example (or a shell running one), its output going to files.
pub struct Running {
    name: String,
    child: Child,
    _logs: TempDir,
    out_path: PathBuf,
    err_path: PathBuf,
}

impl Running {
    /// Spawns `command` (named `name` in messages) with stdin closed and stdout and stderr
    /// to files.
    pub fn spawn(name: &str, mut command: Command) -> Running {
        let logs = TempDir::new().expect("a temporary directory");
        let (out_path, err_path) = (logs.path().join("stdout"), logs.path().join("stderr"));
        let child = command
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out_path).expect("a stdout file"))
            .stderr(fs::File::create(&err_path).expect("a stderr file"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Running {
            name: name.to_string(),
            child,
            _logs: logs,
            out_path,
            err_path,
        }
    }

    /// What it printed to stdout so far.
    pub fn stdout(&self) -> String {
        read_lossy(&self.out_path)
    }

    /// The process id (to send it a signal).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls until `ready` holds for the stdout so far; fails if the run exits first or
    /// after [`RUN_LIMIT`].
    pub fn wait_for_stdout(&mut self, what: &str, ready: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + RUN_LIMIT;
        while !ready(&read_lossy(&self.out_path)) {
            if let Some(status) = self.child.try_wait().expect("poll the example") {
                panic!(
                    "{} exited ({status}) before {what}; stdout:\n{}\nstderr:\n{}",
                    self.name,
                    read_lossy(&self.out_path),
                    read_lossy(&self.err_path)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not print {what}",
                self.name
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the exit (killing it and failing after [`RUN_LIMIT`]) and collects the
    /// output.
    pub fn finish(mut self) -> Run {
        let deadline = Instant::now() + RUN_LIMIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the example") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "{} did not exit within {RUN_LIMIT:?}; stderr:\n{}",
                    self.name,
                    read_lossy(&self.err_path)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        Run {
            code: status.code(),
            stdout: read_lossy(&self.out_path),
            stderr: read_lossy(&self.err_path),
        }
    }
}

/// Starts example `name` with `args` (see [`example`]).
pub fn start(name: &str, args: &[&str]) -> Running {
    Running::spawn(name, example(name, args))
}

/// Runs example `name` with `args` to its end (see [`example`]).
pub fn run(name: &str, args: &[&str]) -> Run {
    start(name, args).finish()
}

/// `path` as a string (temporary paths are UTF-8).
pub fn as_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}
