//! [`ClusterManager`]: what starts, watches and ends a context's executor processes (Spark:
//! the scheduler backend of a cluster manager, such as `KubernetesClusterSchedulerBackend`).
//!
//! The coordinator owns everything else: it listens, waits for each process to register,
//! sends tasks, watches heartbeats and decides when a process is lost and must be replaced.
//! A manager only places processes: rivulet's own local processes
//! ([`local_cluster`](crate::config::StreamingConfig::local_cluster)) are one, and the
//! `rivulet-kubernetes` crate's pods are another
//! ([`cluster_manager`](crate::config::StreamingConfig::cluster_manager) installs any).

use std::time::Duration;

use crate::error::Result;

/// The environment variable that makes a process an executor process: the coordinator's
/// address (`host:port`) it registers with.
pub const ENV_COORDINATOR: &str = "RIVULET_EXECUTOR_OF";
/// The environment variable naming the slot (0-based) an executor process fills.
pub const ENV_SLOT: &str = "RIVULET_EXECUTOR_SLOT";

/// Starts, watches and ends executor processes for one coordinator. Each process is the
/// program itself (the same binary, image or arguments) with two environment variables set:
/// [`ENV_COORDINATOR`] = the `coordinator` address passed to
/// [`start_executor`](ClusterManager::start_executor) and [`ENV_SLOT`] = its slot.
///
/// The methods are called from the coordinator's threads and must not block for long
/// (a few hundred ms at most): [`ended`](ClusterManager::ended) is polled every 50 ms while
/// processes register, and on every heartbeat check after.
pub trait ClusterManager: Send + Sync + 'static {
    /// A short name for logs and errors (`"local processes"`, `"kubernetes"`).
    fn name(&self) -> &str;

    /// Starts slot `slot`'s executor process, told to connect to `coordinator`
    /// (`host:port`). A slot that already has a process (a lost one: cut off, not dead) has
    /// it ended first: two processes never hold one slot.
    ///
    /// # Errors
    /// When the process (pod) cannot be created; the coordinator logs it and leaves the
    /// slot empty (at start: the context does not start).
    fn start_executor(&self, slot: usize, coordinator: &str) -> Result<()>;

    /// Of `slots`, those whose process has ended (exited, failed, deleted) since it was
    /// started, each with what is known of why (`"exit status: 1"`, `"pod phase Failed"`).
    /// A process that ended is reported again on every call until it is started anew.
    fn ended(&self, slots: &[usize]) -> Vec<(usize, String)>;

    /// Ends slot `slot`'s process at once (SIGKILL; a pod deleted without grace): fault
    /// injection, detected by the coordinator as any other loss.
    ///
    /// # Errors
    /// When the slot has no process this manager started, or it cannot be ended.
    fn kill_executor(&self, slot: usize) -> Result<()>;

    /// Ends every process at the context's stop: they were told to stop and closed their
    /// connections; waits up to `grace` for them to exit, then forces the rest. No process
    /// outlives the context.
    fn stop_all(&self, grace: Duration);
}
