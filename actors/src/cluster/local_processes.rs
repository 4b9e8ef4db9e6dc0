//! The executor processes of a local cluster (Spark's `local-cluster[n, ...]`): this
//! program started again in the executor role, one per slot, on this host.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rivulet_framework::cluster_manager::{ClusterManager, ENV_COORDINATOR, ENV_SLOT};

/// The coordinator's process id, for the executor processes it starts: one whose parent is
/// another process (it was adopted: the coordinator died, perhaps before the executor
/// even started to connect) exits at once instead of retrying for a minute.
pub(crate) const ENV_PARENT: &str = "RIVULET_EXECUTOR_PARENT";
use rivulet_framework::{Error, Result};
use tracing::{info, warn};

/// Child processes of this program, one per slot.
pub(super) struct LocalProcesses {
    children: Mutex<Vec<Option<Child>>>,
}

impl LocalProcesses {
    pub(super) fn new(n: usize) -> LocalProcesses {
        LocalProcesses {
            children: Mutex::new((0..n).map(|_| None).collect()),
        }
    }
}

impl ClusterManager for LocalProcesses {
    fn name(&self) -> &str {
        "local processes"
    }

    /// Starts this program with the same arguments, in the executor role. Its stdout is
    /// discarded (the program's own output is the coordinator's); its log (stderr) is kept.
    fn start_executor(&self, slot: usize, coordinator: &str) -> Result<()> {
        let program = std::env::current_exe().map_err(|e| {
            Error::Config(format!(
                "local_cluster: cannot find this program to start it again: {e}"
            ))
        })?;
        if let Some(Some(mut old)) = self.children.lock().get_mut(slot).map(Option::take) {
            let _ = old.kill();
            let _ = old.wait();
        }
        let child = Command::new(&program)
            .args(std::env::args_os().skip(1))
            .env(ENV_COORDINATOR, coordinator)
            .env(ENV_SLOT, slot.to_string())
            .env(ENV_PARENT, std::process::id().to_string())
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
            *place = Some(child);
        }
        Ok(())
    }

    fn ended(&self, slots: &[usize]) -> Vec<(usize, String)> {
        let mut children = self.children.lock();
        slots
            .iter()
            .filter_map(|&s| {
                let child = children.get_mut(s)?.as_mut()?;
                match child.try_wait() {
                    Ok(Some(status)) => Some((s, status.to_string())),
                    _ => None,
                }
            })
            .collect()
    }

    fn kill_executor(&self, slot: usize) -> Result<()> {
        let mut children = self.children.lock();
        let Some(child) = children.get_mut(slot).and_then(Option::as_mut) else {
            return Err(Error::Config(format!(
                "kill_executor: executor process slot {slot} runs no process this coordinator started"
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

    fn stop_all(&self, grace: Duration) {
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
