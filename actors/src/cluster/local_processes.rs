//! The executor processes of a local cluster: this program started again in the executor
//! role, one per slot, replaced when lost, stopped with the context. In a static cluster
//! the processes are started elsewhere, and this holds none.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rivulet_framework::{Error, Result};
use tracing::{error, info, warn};

use super::executor_process::{ENV_COORDINATOR, ENV_SLOT};

/// How many times one slot's process may be replaced: past that the slot stays empty (the
/// others and the in-process executors carry on).
const MAX_REPLACEMENTS: u32 = 10;

pub(super) struct LocalProcesses {
    /// Whether this coordinator starts the processes (a local cluster) or waits for them
    /// (a static cluster: every operation below is then a no-op, `kill` an error).
    starts: bool,
    coordinator: SocketAddr,
    children: Mutex<Vec<Option<Child>>>,
    replacements: Mutex<Vec<u32>>,
}

impl LocalProcesses {
    pub(super) fn new(n: usize, coordinator: SocketAddr, starts: bool) -> LocalProcesses {
        LocalProcesses {
            starts,
            coordinator,
            children: Mutex::new((0..n).map(|_| None).collect()),
            replacements: Mutex::new(vec![0; n]),
        }
    }

    /// The address the coordinator listens on.
    #[cfg(test)]
    pub(super) fn coordinator(&self) -> SocketAddr {
        self.coordinator
    }

    /// Starts slot `slot`'s process: this program with the same arguments, in the executor
    /// role. Its stdout is discarded (the program's own output is the coordinator's); its
    /// log (stderr) is kept.
    pub(super) fn spawn(&self, slot: usize) -> Result<()> {
        if !self.starts {
            return Ok(());
        }
        let program = std::env::current_exe().map_err(|e| {
            Error::Config(format!(
                "local_cluster: cannot find this program to start it again: {e}"
            ))
        })?;
        let child = Command::new(&program)
            .args(std::env::args_os().skip(1))
            .env(ENV_COORDINATOR, self.coordinator.to_string())
            .env(ENV_SLOT, slot.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                Error::Config(format!(
                    "local_cluster: cannot start executor process {slot} ({}): {e}",
                    program.display()
                ))
            })?;
        info!(slot, pid = child.id(), "Executor process started.");
        if let Some(place) = self.children.lock().get_mut(slot) {
            if let Some(mut old) = place.replace(child) {
                let _ = old.kill();
                let _ = old.wait();
            }
        }
        Ok(())
    }

    /// Of `slots`, those whose process has exited, each as `slot N: <exit status>`.
    pub(super) fn exited(&self, slots: &[usize]) -> Vec<String> {
        self.exited_slots(slots)
            .into_iter()
            .map(|(s, status)| format!("slot {s}: {status}"))
            .collect()
    }

    /// Of `slots`, those whose process has exited, with its exit status.
    pub(super) fn exited_slots(&self, slots: &[usize]) -> Vec<(usize, std::process::ExitStatus)> {
        let mut children = self.children.lock();
        slots
            .iter()
            .filter_map(|&s| {
                let child = children.get_mut(s)?.as_mut()?;
                match child.try_wait() {
                    Ok(Some(status)) => Some((s, status)),
                    _ => None,
                }
            })
            .collect()
    }

    /// Kills slot `slot`'s process (SIGKILL) and reaps it.
    ///
    /// # Errors
    /// [`Error::Config`] when the slot runs no process.
    pub(super) fn kill(&self, slot: usize) -> Result<()> {
        let mut children = self.children.lock();
        let Some(child) = children.get_mut(slot).and_then(Option::as_mut) else {
            return Err(Error::Config(format!(
                "kill_executor: executor process slot {slot} runs no process this coordinator started (a static cluster's processes are started elsewhere)"
            )));
        };
        warn!(
            slot,
            pid = child.id(),
            "Killing executor process (SIGKILL, fault injection)."
        );
        let _ = child.kill();
        let _ = child.wait();
        Ok(())
    }

    /// Replaces slot `slot`'s lost process: kills it if it still runs (cut off, not dead),
    /// then starts a new one, up to the replacement limit.
    pub(super) fn replace(&self, slot: usize) {
        if !self.starts {
            return;
        }
        if let Some(Some(mut old)) = self.children.lock().get_mut(slot).map(Option::take) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let count = {
            let mut replacements = self.replacements.lock();
            replacements[slot] += 1;
            replacements[slot]
        };
        if count > MAX_REPLACEMENTS {
            error!(slot, "Executor process lost too often ({MAX_REPLACEMENTS} replacements); running without it.");
            return;
        }
        if let Err(e) = self.spawn(slot) {
            error!(slot, error = %e, "Cannot replace a lost executor process.");
        }
    }

    /// Waits up to `grace` for every process to exit (they were told to stop), then kills
    /// the rest: no process outlives the context.
    pub(super) fn stop_all(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        let mut children = self.children.lock();
        for child in children.iter_mut().filter_map(Option::as_mut) {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    _ => {
                        warn!(
                            pid = child.id(),
                            "Executor process did not stop in time; killing it."
                        );
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        children.iter_mut().for_each(|c| *c = None);
    }
}
