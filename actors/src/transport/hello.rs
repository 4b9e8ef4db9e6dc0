//! The handshake's first frame: who a peer is and which build it runs.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The wire protocol's version: peers of different versions refuse each other. 4: a
/// received block's report carries its block info, the coordinator confirms it
/// (`BlocksDurable`), and a receiver starts at a source offset.
pub const PROTOCOL_VERSION: u32 = 4;

/// A build of a program on rivulet: the rivulet version and a checksum of the program's
/// executable. Executors are the user's own binary started in another role, so both
/// processes of a cluster run the same file; a process rebuilt since is another build and
/// is refused, because its DStream graph and operator ids may differ.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildId {
    /// rivulet's crate version, e.g. `0.1.0`.
    pub rivulet: String,
    /// The CRC-32 of the program's executable, 8 hex digits (`unknown` if it could not be
    /// read).
    pub program: String,
}

impl BuildId {
    /// This process's build, computed once (reading the executable: a few ms per 100 MB).
    pub fn current() -> &'static BuildId {
        static CURRENT: OnceLock<BuildId> = OnceLock::new();
        CURRENT.get_or_init(|| BuildId {
            rivulet: env!("CARGO_PKG_VERSION").to_string(),
            program: program_checksum(),
        })
    }
}

/// The checksum of the running executable, or `unknown` (with a WARN) if it cannot be read.
fn program_checksum() -> String {
    let read = std::env::current_exe().and_then(std::fs::read);
    match read {
        Ok(bytes) => format!("{:08x}", crc32fast::hash(&bytes)),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot read this program's executable to identify its build; peers see build 'unknown'.");
            "unknown".to_string()
        }
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rivulet {}, program {}", self.rivulet, self.program)
    }
}

/// What a process is to its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The driver: cuts batches, schedules tasks (Spark's driver).
    Coordinator,
    /// Runs tasks and keeps blocks (Spark's `CoarseGrainedExecutorBackend`).
    Executor,
}

impl Role {
    /// The role a peer of this one must play.
    pub fn peer(self) -> Role {
        match self {
            Role::Coordinator => Role::Executor,
            Role::Executor => Role::Coordinator,
        }
    }
}

/// The first frame each side sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`PROTOCOL_VERSION`] of the sender.
    pub protocol: u32,
    /// The sender's build.
    pub build: BuildId,
    /// The sender's role.
    pub role: Role,
    /// The sender's name for logs (e.g. `executor 2 (pid 4242)`).
    pub name: String,
}

impl Hello {
    /// Why `peer` may not talk to `self`, if it may not.
    pub fn refusal(&self, peer: &Hello) -> Option<String> {
        if peer.protocol != self.protocol {
            return Some(format!(
                "protocol {} is not {}",
                peer.protocol, self.protocol
            ));
        }
        if peer.build != self.build {
            return Some("another build".to_string());
        }
        if peer.role != self.role.peer() {
            return Some(format!(
                "a {:?} cannot talk to a {:?}",
                self.role, peer.role
            ));
        }
        None
    }
}

impl fmt::Display for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {:?}, protocol {}, {}",
            self.name, self.role, self.protocol, self.build
        )
    }
}
