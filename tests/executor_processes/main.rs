//! Executor processes (`--local-cluster`), one test binary: which stages may leave the
//! coordinator (`placement`), the `wordcount` example with a process or the coordinator
//! SIGKILLed (`example_kills`), a directory read by the processes with its losses reported
//! (`polled_inputs`), the recovery job over a tailed file and a directory with
//! coordinator and processes SIGKILLed again and again (`recovery_kill`), and over MQTT
//! with its receiver in a process that is SIGKILLed, with the write-ahead log and without
//! it (the blocks' replicas on the other process; `mqtt_receiver_kills`). The tests that run this binary itself as an
//! executor process have binaries of their own (`tests/local_cluster.rs`,
//! `tests/cluster_hosts.rs`).
#![cfg(unix)]

#[path = "../common/mod.rs"]
mod common;
#[path = "../crash_support/mod.rs"]
mod crash_support;
#[path = "../example_runs/mod.rs"]
mod example_runs;
#[path = "../mqtt_support/mod.rs"]
mod mqtt_support;

mod example_kills;
mod mqtt_receiver_kills;
mod placement;
mod polled_inputs;
mod recovery_kill;

/// The tasks of `kind` (`map` or `cache`) the executor processes ran, summed over the
/// `Executor process N: M map tasks, C cache tasks, ...` lines an example prints at its end.
fn tasks_run(out: &str, kind: &str) -> u64 {
    let suffix = format!(" {kind} tasks");
    out.lines()
        .filter_map(|l| l.strip_prefix("Executor process "))
        .filter_map(|l| l.split_once(": ").map(|(_, rest)| rest))
        .flat_map(|rest| rest.split(", "))
        .filter_map(|field| field.strip_suffix(suffix.as_str()))
        .filter_map(|n| n.parse::<u64>().ok())
        .sum()
}

/// The running processes whose working directory is `dir` (a job's coordinators and their
/// executor processes start there).
fn processes_in(dir: &std::path::Path) -> Vec<u32> {
    let Ok(dir) = dir.canonicalize() else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
                && running(pid)
        })
        .collect()
}

/// Whether process `pid` runs (a zombie waiting for its reaper does not).
fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z'))
    })
}
