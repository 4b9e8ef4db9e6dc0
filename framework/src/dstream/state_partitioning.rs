//! How many partitions a stateful stream keeps its state in (DESIGN, "Persistence": the
//! number belongs to the state, not to the executor count), shared by `map_with_state`,
//! `update_state_by_key` and the inverse `reduce_by_key_and_window`.
//!
//! The count is resolved once, by the first of:
//!
//! 1. **Restore.** When the stream is restored from a data checkpoint, the checkpoint's
//!    count: the restored state RDD has it, so the batch data zipped or co-grouped with it
//!    must be partitioned by the same partitioner (Spark restores the partitioner with the
//!    checkpointed graph). A count the program gave explicitly that differs from the
//!    checkpoint's is refused ([`CheckpointError::PartitionsChanged`]).
//! 2. **First use.** Otherwise, when a batch first asks for it: the count the program gave,
//!    else the context's state parallelism (by default the executor count; with the state
//!    on executor processes, every task thread of the run).
//!
//! An executor process reads no checkpoint: it adopts the coordinator's resolved counts when
//! it registers ([`StatePartitioning::adopt`]), so that its map tasks cut the batch data
//! into as many buckets as the coordinator's state has partitions.
//!
//! Every RDD of the stream's chain (the state, the batch data partitioned for it, an inverse
//! window's per-batch reductions) asks the same [`StatePartitioning`], so they always agree.

use std::sync::OnceLock;

use crate::checkpoint::{key_text, DataCheckpoint, Key, Tree};
use crate::error::{CheckpointError, Error, OpInfo, Result};
use crate::partitioner::HashPartitioner;

/// The partitioner of one stateful stream's state, resolved once (see the module doc).
#[derive(Debug)]
pub(crate) struct StatePartitioning {
    /// The count the program gave (`StateSpec::num_partitions`, ...), if it gave one.
    requested: Option<usize>,
    /// The default parallelism, used when nothing else decides.
    default_parallelism: usize,
    resolved: OnceLock<HashPartitioner>,
}

impl StatePartitioning {
    /// A stream's state partitioning: `requested` partitions when given, else whatever the
    /// checkpoint it is restored from has, else `default_parallelism`.
    ///
    /// # Panics
    /// If `requested` is `Some(0)` (the builders that take a count refuse zero first).
    pub(crate) fn new(requested: Option<usize>, default_parallelism: usize) -> StatePartitioning {
        assert_ne!(requested, Some(0), "state needs at least one partition");
        StatePartitioning {
            requested,
            default_parallelism: default_parallelism.max(1),
            resolved: OnceLock::new(),
        }
    }

    /// The partitioner of the state, resolved at the first call unless a restore resolved it.
    pub(crate) fn partitioner(&self) -> HashPartitioner {
        *self.resolved.get_or_init(|| {
            HashPartitioner::new(self.requested.unwrap_or(self.default_parallelism))
        })
    }

    /// The resolved partition count (resolving it now if nothing did).
    pub(crate) fn partitions(&self) -> usize {
        self.partitioner().num_partitions()
    }

    /// In an executor process: adopts `n`, the count the coordinator resolved.
    ///
    /// # Errors
    /// [`Error::Internal`] if this process already partitioned the state otherwise (a batch
    /// was generated before it registered), or `n` is 0.
    pub(crate) fn adopt(&self, n: usize, stream: OpInfo, id: u32) -> Result<()> {
        if n == 0 {
            return Err(Error::Internal(format!(
                "{stream} (stream {id}): the coordinator's state has no partitions"
            )));
        }
        let resolved = *self.resolved.get_or_init(|| HashPartitioner::new(n));
        if resolved.num_partitions() != n {
            return Err(Error::Internal(format!(
                "{stream} (stream {id}): state partitioned into {} here, into {n} by the \
                 coordinator",
                resolved.num_partitions()
            )));
        }
        Ok(())
    }

    /// Adopts the partition count of `checkpoint`, the data checkpoint stream `stream`
    /// (`id`) is restored from, in the store at `dir`.
    ///
    /// # Errors
    /// [`CheckpointError::PartitionsChanged`] when the program asked for another count
    /// explicitly; [`CheckpointError::Corrupt`] for a checkpoint without partitions or whose
    /// partitioner disagrees with its partition count; [`Error::Internal`] if the state was
    /// already partitioned otherwise (a batch ran before the restore).
    pub(crate) fn restore(
        &self,
        checkpoint: &DataCheckpoint,
        stream: OpInfo,
        id: u32,
        dir: &str,
    ) -> Result<()> {
        let found = checkpoint.partitions as usize;
        let corrupt = |reason: String| {
            let key = key_text(
                Tree::State,
                &Key::data_prefix(checkpoint.stream, checkpoint.time_ms),
            );
            Error::from(CheckpointError::Corrupt {
                dir: dir.to_string(),
                key,
                reason,
            })
        };
        if found == 0 {
            return Err(corrupt("the data checkpoint has no partitions".into()));
        }
        if let Some(p) = checkpoint.partitioner.filter(|&p| p != found) {
            return Err(corrupt(format!(
                "{found} partitions written, but partitioned by key into {p}"
            )));
        }
        if let Some(program) = self.requested.filter(|&n| n != found) {
            return Err(CheckpointError::PartitionsChanged {
                dir: dir.to_string(),
                stream: format!("{stream} (stream {id})"),
                checkpoint: found,
                program,
            }
            .into());
        }
        let resolved = *self.resolved.get_or_init(|| HashPartitioner::new(found));
        if resolved.num_partitions() != found {
            return Err(Error::Internal(format!(
                "{stream} (stream {id}): state partitioned into {} before its restore from a \
                 checkpoint with {found} partitions",
                resolved.num_partitions()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rdd::RddId;

    fn checkpoint(partitions: u32, partitioner: Option<usize>) -> DataCheckpoint {
        DataCheckpoint {
            stream: 3,
            time_ms: 5000,
            rdd: RddId {
                scope: 3,
                time_ms: 5000,
                seq: 0,
            },
            partitions,
            partitioner,
            keys: None,
        }
    }

    #[track_caller]
    fn op() -> OpInfo {
        OpInfo::caller("map_with_state")
    }

    #[test]
    fn unset_counts_adopt_the_checkpoint_and_otherwise_the_default() {
        let fresh = StatePartitioning::new(None, 2);
        assert_eq!(fresh.partitioner().num_partitions(), 2);

        let restored = StatePartitioning::new(None, 2);
        restored
            .restore(&checkpoint(5, Some(5)), op(), 3, "/ckpt")
            .unwrap();
        assert_eq!(restored.partitioner().num_partitions(), 5);
        // Without a partitioner recorded (map_with_state's records), the count is used.
        let restored = StatePartitioning::new(None, 7);
        restored
            .restore(&checkpoint(3, None), op(), 3, "/ckpt")
            .unwrap();
        assert_eq!(restored.partitioner(), HashPartitioner::new(3));
    }

    #[test]
    fn an_explicit_count_must_match_the_checkpoint() {
        let same = StatePartitioning::new(Some(4), 2);
        same.restore(&checkpoint(4, Some(4)), op(), 3, "/ckpt")
            .unwrap();
        assert_eq!(same.partitioner().num_partitions(), 4);

        let other = StatePartitioning::new(Some(3), 2);
        let e = other
            .restore(&checkpoint(4, Some(4)), op(), 3, "/ckpt")
            .unwrap_err();
        let Error::Checkpoint(CheckpointError::PartitionsChanged {
            dir,
            stream,
            checkpoint,
            program,
        }) = &e
        else {
            panic!("expected PartitionsChanged, got {e:?}");
        };
        assert_eq!((dir.as_str(), *checkpoint, *program), ("/ckpt", 4, 3));
        assert!(stream.starts_with("map_with_state at ") && stream.ends_with("(stream 3)"));
        let text = e.to_string();
        assert!(
            text.contains("4 partitions") && text.contains("asks for 3"),
            "{text}"
        );
    }

    #[test]
    fn damaged_checkpoints_and_late_restores_are_errors_not_panics() {
        let p = StatePartitioning::new(None, 2);
        for bad in [
            checkpoint(0, None),
            checkpoint(0, Some(0)),
            checkpoint(2, Some(0)),
        ] {
            let e = p.restore(&bad, op(), 3, "/ckpt").unwrap_err();
            assert!(
                matches!(e, Error::Checkpoint(CheckpointError::Corrupt { .. })),
                "{e}"
            );
        }
        // Resolved by a batch before the restore: a bug, reported as one.
        assert_eq!(p.partitioner().num_partitions(), 2);
        let e = p
            .restore(&checkpoint(3, Some(3)), op(), 3, "/ckpt")
            .unwrap_err();
        assert!(matches!(e, Error::Internal(_)), "{e}");
    }
}
