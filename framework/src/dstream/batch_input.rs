//! What the coordinator decided one batch reads ([`BatchInput`]), sent with each map task
//! to an executor process, and what the task read of it ([`InputReads`]), sent back.
//!
//! An executor process generates the batch itself with its own graph, so it must see the
//! batch's input exactly as the coordinator cut it: the received blocks allocated to it and
//! each polled input's splits (a direct stream's offset ranges, a file stream's files).
//! Nothing is polled in an executor process. What its tasks read and skipped is counted
//! there (records per partition read to the end, splits skipped with why) and merged into
//! the coordinator's report of the batch before the task's outcome is delivered, so that
//! the batch's `PolledInputInfo` and the unreadable-input policy do not depend on where a
//! split was read.

use serde::{Deserialize, Serialize};

use crate::block::BlockInfo;
use crate::dstream::{DStreamGraph, DStreamId};
use crate::error::Result;
use crate::listener::SkippedSplit;
use crate::time::Time;

/// One batch's input as the coordinator cut it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchInput {
    /// The blocks allocated to the batch, all receiver streams.
    pub blocks: Vec<BlockInfo>,
    /// Each polled input's splits of the batch, encoded by the input (MessagePack of its
    /// split type), by input stream.
    pub splits: Vec<(DStreamId, Vec<u8>)>,
}

/// What the tasks of one process read of one polled input in one batch.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputReads {
    /// The polled input stream.
    pub stream: DStreamId,
    /// Records read, per partition whose read ran to its end: `(partition, records)`.
    pub records: Vec<(usize, usize)>,
    /// Splits not read, with why.
    pub skipped: Vec<SkippedSplit>,
    /// What the source noted reading a partition's split beyond its records
    /// ([`PolledSource::read_note`](crate::dstream::PolledSource::read_note)), per
    /// partition.
    #[serde(default)]
    pub notes: Vec<(usize, Vec<u8>)>,
}

impl DStreamGraph {
    /// Batch `t`'s input as this (the coordinator's) graph cut it: its allocated blocks and
    /// its polled inputs' splits (inputs that do not know `t` are left out).
    ///
    /// # Errors
    /// [`Error::Internal`](crate::Error::Internal) when a polled input's splits cannot be
    /// serialized: the task must not run without them.
    pub fn batch_input(&self, t: Time) -> Result<BatchInput> {
        let mut splits = Vec::new();
        for input in self.shared().inputs() {
            if let Some(encoded) = input.batch_splits(t)? {
                splits.push((input.stream(), encoded));
            }
        }
        Ok(BatchInput {
            blocks: self.allocated(t),
            splits,
        })
    }

    /// For an executor process: puts batch `t`'s input as the coordinator cut it in place,
    /// before the batch is generated here.
    ///
    /// # Errors
    /// [`Error::Checkpoint`](crate::Error::Checkpoint) naming the input when its splits do
    /// not decode (the coordinator runs another program).
    pub(crate) fn install_batch_input(&self, t: Time, input: BatchInput) -> Result<()> {
        self.restore_allocations([(t, input.blocks)]);
        let inputs = self.shared().inputs();
        for i in &inputs {
            let encoded = input.splits.iter().find(|(s, _)| *s == i.stream());
            i.install_batch_splits(t, encoded.map(|(_, e)| e.as_slice()))?;
        }
        Ok(())
    }

    /// For an executor process: what its tasks read of batch `t`'s polled inputs since the
    /// last call (inputs that read nothing are left out).
    pub fn take_input_reads(&self, t: Time) -> Vec<InputReads> {
        self.shared()
            .inputs()
            .iter()
            .filter_map(|i| i.take_reads(t))
            .filter(|r| !r.records.is_empty() || !r.skipped.is_empty())
            .collect()
    }

    /// On the coordinator: adds what an executor process's task read of batch `t` to the
    /// batch's input reports, as if it had been read here (a partition read twice counts
    /// once; a skipped split is handled by its input's unreadable-input policy).
    pub fn merge_input_reads(&self, t: Time, reads: Vec<InputReads>) {
        let inputs = self.shared().inputs();
        for r in reads {
            if let Some(i) = inputs.iter().find(|i| i.stream() == r.stream) {
                i.merge_reads(t, r);
            }
        }
    }
}
