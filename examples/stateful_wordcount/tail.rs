//! [`TailReceiver`]: the lines appended to a file, as a reliable receiver.
//!
//! Each read's complete lines are stored with `store_reliably_at`, whose offset is the byte
//! position just after them. With the write-ahead log on, the offset is logged with the
//! block, so after a crash the receiver resumes at `resume_offset()`: every line before it
//! is in a batch or replayed into one, every line after it is read again. Together they
//! count every line exactly once, however often the process is killed.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rivulet::prelude::*;

/// The most bytes read (and stored as one block's lines) at a time.
const READ_BYTES: usize = 256 << 10;
/// How long to wait when the file has no new complete line.
const IDLE: Duration = Duration::from_millis(20);

/// Lines appended to a file, from its start or from where a restart left off.
pub struct TailReceiver {
    path: PathBuf,
    file: Option<File>,
    /// The byte offset just after the last line stored.
    offset: u64,
    /// Bytes read after `offset` that do not end a line yet.
    partial: Vec<u8>,
}

impl TailReceiver {
    /// Tails `path` (which may not exist yet).
    pub fn new(path: &Path) -> TailReceiver {
        TailReceiver {
            path: path.to_path_buf(),
            file: None,
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// Opens the file at the offset to resume from; `None` while it does not exist.
    fn open(&mut self, sink: &BlockSink<String>) -> Result<Option<&mut File>, ReceiverError> {
        if self.file.is_none() {
            if let Some(bytes) = sink.resume_offset() {
                let bytes: [u8; 8] = bytes.try_into().map_err(|b: Vec<u8>| {
                    ReceiverError::fatal(format!(
                        "the logged offset of {} is {} bytes, not 8",
                        self.path.display(),
                        b.len()
                    ))
                })?;
                self.offset = self.offset.max(u64::from_le_bytes(bytes));
            }
            let mut file = match File::open(&self.path) {
                Ok(file) => file,
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
                Err(e) => {
                    return Err(ReceiverError::retryable(format!(
                        "cannot open {}: {e}",
                        self.path.display()
                    )))
                }
            };
            file.seek(SeekFrom::Start(self.offset)).map_err(|e| {
                ReceiverError::retryable(format!("cannot seek in {}: {e}", self.path.display()))
            })?;
            self.partial.clear();
            self.file = Some(file);
        }
        Ok(self.file.as_mut())
    }
}

impl Receiver for TailReceiver {
    type Item = String;

    fn name(&self) -> String {
        format!("tail {}", self.path.display())
    }

    async fn on_start(&mut self) -> Result<(), ReceiverError> {
        // Reopened at the offset of the last stored line (after a supervised restart too).
        self.file = None;
        Ok(())
    }

    async fn receive(&mut self, sink: &mut BlockSink<String>) -> Result<Flow, ReceiverError> {
        let path = self.path.display().to_string();
        let Some(file) = self.open(sink)? else {
            tokio::time::sleep(IDLE).await;
            return Ok(Flow::Continue);
        };
        let mut buf = vec![0u8; READ_BYTES];
        let n = file
            .read(&mut buf)
            .map_err(|e| ReceiverError::retryable(format!("cannot read {path}: {e}")))?;
        self.partial.extend_from_slice(&buf[..n]);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            if n == 0 {
                tokio::time::sleep(IDLE).await;
            }
            return Ok(Flow::Continue);
        };
        let rest = self.partial.split_off(end + 1);
        let complete = std::mem::replace(&mut self.partial, rest);
        // `complete` ends with a newline: the lines are what lies between them.
        let lines: Vec<String> = complete[..complete.len() - 1]
            .split(|&b| b == b'\n')
            .map(|l| String::from_utf8_lossy(l.strip_suffix(b"\r").unwrap_or(l)).into_owned())
            .collect();
        let next = self.offset + complete.len() as u64;
        if sink
            .store_reliably_at(lines, next.to_le_bytes().to_vec())
            .await
            .is_err()
        {
            // Stopping: these lines are read again after a restart.
            return Ok(Flow::Finished);
        }
        self.offset = next;
        Ok(Flow::Continue)
    }
}
