//! Limits the machine sets on a context: the open-file limit bounds the executors, since
//! each executor runs on its own arbiter (a thread with an event loop holding file
//! descriptors).

use rivulet_framework::{Error, Result};

/// File descriptors an executor's arbiter holds, rounded up (its event loop and waker).
const FILES_PER_EXECUTOR: u64 = 4;
/// File descriptors left for everything else: sockets, files, the checkpoint store.
const FILES_RESERVED: u64 = 64;

/// The soft limit on open files of this process, from `/proc/self/limits` (Linux); `None`
/// where it is unknown or unlimited.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Checks that `executors` executors fit the open-file limit.
///
/// # Errors
/// [`Error::Config`] naming `executors`, the limit and how to raise it.
pub(crate) fn check_executors(executors: usize) -> Result<()> {
    let Some(limit) = open_files_limit() else {
        return Ok(());
    };
    let most = limit.saturating_sub(FILES_RESERVED) / FILES_PER_EXECUTOR;
    if executors as u64 > most {
        return Err(Error::Config(format!(
            "executors = {executors}: the open-file limit ({limit}, `ulimit -n`) allows at \
             most {most}; use fewer executors or raise the limit"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_executors_fit_and_a_million_do_not() {
        assert!(check_executors(2).is_ok());
        if let Some(limit) = open_files_limit() {
            let too_many = usize::try_from(limit).unwrap_or(usize::MAX);
            let message = check_executors(too_many).unwrap_err().to_string();
            assert!(
                message.contains("executors") && message.contains("ulimit -n"),
                "{message}"
            );
        }
    }
}
