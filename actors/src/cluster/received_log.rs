//! The coordinator's journal of what its executor processes' receivers do, in the order it
//! arrived: a block stored (with its replica), blocks reported, a process lost, a receiver
//! to start. One thread of its own takes them in that order; it adds every block waiting
//! to the receiver write-ahead log with one flush (when the log is on: a group commit over
//! all receivers), and only then applies each entry (`Cluster::apply_receiver_entry`):
//! confirms a block to its process (whose receiver may then acknowledge its source),
//! forwards a report to the coordinator, counts a lost process's unreported blocks, starts
//! a receiver in a replacement. So a block is in the log before it is confirmed or counted,
//! as the coordinator's own batch builders do it, and a lost process's blocks are counted
//! before its replacement numbers new ones.

use std::sync::mpsc;
use std::sync::Weak;

use actix::Recipient;
use rivulet_framework::block::{BlockId, BlockInfo, StreamId};
use rivulet_framework::checkpoint::{self, BlockLog, LoggedBlock};
use tracing::{debug, error};

use super::Cluster;
use crate::messages::{SealedBlock, WalFailed};

/// What happened to the processes' receivers, in the order the coordinator heard of it.
#[derive(Debug)]
pub(super) enum ReceiverEntry {
    /// A receiver in incarnation `generation` of slot `slot` stored block `info`, whose
    /// replica the coordinator holds or sent to another process (`continues`: a reliable
    /// store goes on in a later block).
    Stored {
        slot: usize,
        generation: u64,
        info: BlockInfo,
        continues: bool,
    },
    /// Receiver `stream` reported `sealed` on its own timer (`req: None`), or in answer to
    /// seal request `req`.
    Reported {
        stream: StreamId,
        sealed: SealedBlock,
        req: Option<u64>,
    },
    /// The process in `slot` was lost.
    Lost { slot: usize },
    /// A process took `slot`: start the receivers placed there.
    Start { slot: usize },
}

/// The journal's sending side; its thread ends when this is dropped.
pub(super) struct ReceivedLog {
    tx: mpsc::Sender<(ReceiverEntry, Option<LoggedBlock>)>,
    logs: bool,
}

impl ReceivedLog {
    /// Starts the journal's thread for `cluster`, logging blocks to `wal` when given and
    /// reporting a log that cannot be written to `failed` (the coordinator, which stops).
    ///
    /// # Errors
    /// The thread cannot be started.
    pub(super) fn start(
        cluster: Weak<Cluster>,
        wal: Option<BlockLog>,
        failed: Recipient<WalFailed>,
    ) -> std::io::Result<ReceivedLog> {
        let (tx, rx) = mpsc::channel();
        let logs = wal.is_some();
        std::thread::Builder::new()
            .name("rivulet-received-log".into())
            .spawn(move || run(&cluster, wal.as_ref(), &failed, &rx))?;
        Ok(ReceivedLog { tx, logs })
    }

    /// Whether it adds blocks to the receiver write-ahead log.
    pub(super) fn logs(&self) -> bool {
        self.logs
    }

    /// Adds `entry`; for a block stored, with its replica's `bytes` (the stream's block
    /// encoder's), logged before the entry is applied when the log is on.
    pub(super) fn add(&self, entry: ReceiverEntry, bytes: Option<&[u8]>) {
        let logged = match (&entry, bytes, self.logs) {
            (
                ReceiverEntry::Stored {
                    info, continues, ..
                },
                Some(bytes),
                true,
            ) => input_seq(info).map(|seq| LoggedBlock {
                stream: info.stream,
                seq,
                num_records: info.num_records,
                offset: info.offset.clone(),
                continues: *continues,
                data: checkpoint::frame(bytes),
            }),
            _ => None,
        };
        // Fails only once the thread ended, with the cluster.
        let _ = self.tx.send((entry, logged));
    }
}

/// The journal's thread: takes every entry waiting, logs their blocks with one flush, then
/// applies them in order. Once the log failed, no block is confirmed any more (the
/// coordinator stops); reports and losses still apply.
fn run(
    cluster: &Weak<Cluster>,
    wal: Option<&BlockLog>,
    failed: &Recipient<WalFailed>,
    rx: &mpsc::Receiver<(ReceiverEntry, Option<LoggedBlock>)>,
) {
    let mut log_failed = false;
    while let Ok(first) = rx.recv() {
        let mut entries = vec![first];
        entries.extend(rx.try_iter());
        let blocks: Vec<LoggedBlock> = entries.iter_mut().filter_map(|(_, b)| b.take()).collect();
        if let (Some(wal), false, false) = (wal, blocks.is_empty(), log_failed) {
            match wal.add(&blocks) {
                Ok(()) => debug!(blocks = blocks.len(), "Executor processes' blocks logged."),
                Err(e) => {
                    error!(error = %e, "Cannot write the receiver write-ahead log for the executor processes' blocks; stopping.");
                    failed.do_send(WalFailed(e));
                    log_failed = true;
                }
            }
        }
        let Some(cluster) = cluster.upgrade() else {
            return;
        };
        for (entry, _) in entries {
            cluster.apply_receiver_entry(entry, !log_failed);
        }
    }
}

/// The sequence number of received block `info` (`None` for a block no receiver makes).
pub(super) fn input_seq(info: &BlockInfo) -> Option<u64> {
    match info.id {
        BlockId::Input { seq, .. } => Some(seq),
        _ => None,
    }
}
