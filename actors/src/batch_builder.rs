//! [`BatchBuilder`]: seals a receiver's buffered records into a block every block interval,
//! stores it ([`ReceivedBlockStore`]: in the coordinator, on an executor and a replica on the
//! next one; in an executor process, there and a replica in the coordinator), and reports it
//! to the coordinator (Spark: `BlockGenerator` + `ReceivedBlockHandler`).

use std::sync::Arc;
use std::time::Duration;

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, MessageResult, Recipient, WrapFuture,
};
use rivulet_framework::block::{Block, BlockEncoder, BlockId, BlockInfo};
use rivulet_framework::checkpoint::{BlockLog, LoggedBlock};
use rivulet_framework::receiver::BlockSealer;
use rivulet_framework::Result;
use tracing::{debug, error, warn};

use crate::block_store::BlockManager;
use crate::messages::{BlocksStored, SealBlock, SealedBlock, WalFailed};

/// Where a [`BatchBuilder`] stores the blocks it seals (Spark: `ReceivedBlockHandler`).
pub trait ReceivedBlockStore: Send + Sync {
    /// Stores received `block` (and its replica), served to other processes by `encode`.
    /// Returns once the block and its replica are stored, or (when
    /// [`confirms_later`](ReceivedBlockStore::confirms_later)) once they are on their way.
    fn put_received(&self, block: Block, encode: BlockEncoder);

    /// Whether the blocks are stored for good only once someone else says so later, by
    /// `mark_stored` on the receiver's buffer (an executor process's blocks: once the
    /// coordinator holds their replicas, and logged them with the write-ahead log on), and
    /// not when [`put_received`](ReceivedBlockStore::put_received) returns. Default `false`.
    fn confirms_later(&self) -> bool {
        false
    }
}

/// In the coordinator: on an in-process executor and a replica on the next one
/// ([`BlockManager::put_replicated`]).
impl ReceivedBlockStore for BlockManager {
    fn put_received(&self, block: Block, encode: BlockEncoder) {
        self.put_replicated(block.id, block.data, encode);
    }
}

/// Seals one receiver's blocks.
pub struct BatchBuilder {
    source: Arc<dyn BlockSealer>,
    blocks: Arc<dyn ReceivedBlockStore>,
    coordinator: Recipient<BlocksStored>,
    /// `None` under the manual clock: blocks are sealed only when the coordinator asks.
    block_interval: Option<Duration>,
    sealed_total: u64,
    /// The receiver write-ahead log, and where to report that it cannot be written.
    wal: Option<(BlockLog, Recipient<WalFailed>)>,
    /// Set once the log could not be written: no block is acknowledged after that.
    wal_failed: bool,
}

impl BatchBuilder {
    /// A builder sealing `source` into `blocks` (in the coordinator the [`BlockManager`],
    /// which spreads them over the executors' stores).
    pub fn new(
        source: Arc<dyn BlockSealer>,
        blocks: Arc<dyn ReceivedBlockStore>,
        coordinator: Recipient<BlocksStored>,
        block_interval: Option<Duration>,
    ) -> BatchBuilder {
        BatchBuilder {
            source,
            blocks,
            coordinator,
            block_interval,
            sealed_total: 0,
            wal: None,
            wal_failed: false,
        }
    }

    /// Writes every block to `wal` (flushed) before storing and reporting it; a failure is
    /// reported to `on_failure` (the coordinator, which stops the context).
    pub fn with_wal(mut self, wal: BlockLog, on_failure: Recipient<WalFailed>) -> BatchBuilder {
        self.wal = Some((wal, on_failure));
        self
    }

    /// Adds `blocks` to the write-ahead log (flushed).
    fn log(&self, wal: &BlockLog, blocks: &[Block]) -> Result<()> {
        let mut logged = Vec::with_capacity(blocks.len());
        for block in blocks {
            let BlockId::Input { stream, seq } = block.id else {
                continue;
            };
            logged.push(LoggedBlock {
                stream,
                seq,
                num_records: block.num_records,
                offset: block.offset.clone(),
                continues: block.continues,
                data: self.source.encode_block(block)?,
            });
        }
        wal.add(&logged)?;
        debug!(blocks = logged.len(), "Blocks logged.");
        Ok(())
    }

    /// Seals and stores the buffered records as blocks (none if nothing was stored).
    fn seal(&mut self) -> Vec<BlockInfo> {
        let blocks = self.source.seal();
        self.sealed_total += blocks.len() as u64;
        if let Some((wal, on_failure)) = &self.wal {
            if let Err(e) = self.log(wal, &blocks) {
                error!(error = %e, "Cannot write the receiver write-ahead log; stopping.");
                on_failure.do_send(WalFailed(e));
                // Never acknowledged: `store_reliably` fails once the context closes the buffer.
                self.wal_failed = true;
            }
        }
        let next_seq = blocks.iter().filter_map(|b| match b.id {
            BlockId::Input { seq, .. } => Some(seq + 1),
            _ => None,
        });
        let next_seq = next_seq.max();
        let infos: Vec<BlockInfo> = blocks.into_iter().map(|block| self.store(block)).collect();
        let confirmed_now = !self.wal_failed && !self.blocks.confirms_later();
        if let Some(next) = next_seq.filter(|_| confirmed_now) {
            self.source.mark_stored(next);
        }
        infos
    }

    /// Stores `block` ([`ReceivedBlockStore::put_received`]).
    fn store(&self, block: Block) -> BlockInfo {
        let info = BlockInfo {
            id: block.id,
            stream: self.source.stream(),
            num_records: block.num_records,
            offset: block.offset.clone(),
        };
        debug!(block = %block.id, records = block.num_records, "Block stored.");
        self.blocks.put_received(block, self.source.block_encoder());
        info
    }
}

impl std::fmt::Debug for BatchBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchBuilder")
            .field("stream", &self.source.stream())
            .field("sealed", &self.sealed_total)
            .finish()
    }
}

impl Actor for BatchBuilder {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let Some(interval) = self.block_interval else {
            return;
        };
        ctx.run_interval(interval, |act, ctx| {
            let blocks = act.seal();
            if blocks.is_empty() {
                return;
            }
            let coordinator = act.coordinator.clone();
            let stored = BlocksStored {
                stream: act.source.stream(),
                sealed: SealedBlock {
                    blocks,
                    sealed_total: act.sealed_total,
                },
            };
            // Wait for the coordinator's mailbox: a full one holds the next seal back.
            let report = async move { coordinator.send(stored).await };
            ctx.wait(report.into_actor(act).map(|sent, _, _| {
                if let Err(e) = sent {
                    warn!(error = %e, "Coordinator gone; blocks not reported.");
                }
            }));
        });
    }
}

impl Handler<SealBlock> for BatchBuilder {
    type Result = MessageResult<SealBlock>;

    fn handle(&mut self, _: SealBlock, _: &mut Context<Self>) -> Self::Result {
        let blocks = self.seal();
        MessageResult(SealedBlock {
            blocks,
            sealed_total: self.sealed_total,
        })
    }
}
