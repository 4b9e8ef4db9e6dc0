//! [`ClusterRunner`]: the [`JobRunner`] RDD actions use under the actor runtime. It blocks
//! the calling thread (an output operation's job thread) until the coordinator has run the
//! job on the executors.

use std::sync::Arc;

use actix::{Arbiter, Recipient};
use rivulet_framework::block::{BlockId, ExecutorId};
use rivulet_framework::scheduler::{JobRunner, JobSpec, TaskOutput};
use rivulet_framework::{Error, Result};

use crate::block_store::BlockManager;
use crate::messages::SubmitJob;

/// Submits jobs to the coordinator and waits for them.
pub(crate) struct ClusterRunner {
    pub(crate) coordinator: Recipient<SubmitJob>,
    /// The block stores: where blocks are now.
    pub(crate) blocks: Arc<BlockManager>,
}

impl JobRunner for ClusterRunner {
    fn run_job(&self, job: JobSpec) -> Result<Vec<TaskOutput>> {
        // Blocking an arbiter thread would stall the actors that must run the job.
        if Arbiter::try_current().is_some() {
            return Err(Error::BlockingAction(job.op.name));
        }
        futures::executor::block_on(self.coordinator.send(SubmitJob(job)))
            .map_err(|e| Error::NotRunning(format!("the coordinator is gone: {e}")))?
    }

    fn block_locations(&self, id: &BlockId) -> Option<Vec<ExecutorId>> {
        Some(self.blocks.locations(id))
    }
}
