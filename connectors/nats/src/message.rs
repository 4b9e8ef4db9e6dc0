//! One JetStream message as a record.

use serde::{Deserialize, Serialize};

/// One message of a JetStream stream, as the direct source and the receiver give it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatsMessage {
    /// The stream it is stored in.
    pub stream: String,
    /// The subject it was published to.
    pub subject: String,
    /// Its stream sequence (from 1; the direct source's offset is `sequence - 1`).
    pub sequence: u64,
    /// Its payload.
    pub payload: Vec<u8>,
    /// When the server stored it, ns since the Unix epoch (`0` when the server gave no
    /// time).
    pub published_ns: i64,
}

impl NatsMessage {
    /// The payload as text; `None` when it is not UTF-8.
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.payload).ok()
    }
}
