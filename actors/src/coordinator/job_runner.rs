//! [`ClusterRunner`]: the [`JobRunner`] RDD actions use under the actor runtime. It blocks
//! the calling thread (an output operation's job thread) until the coordinator has run the
//! job on the executors.

use actix::{Arbiter, Recipient};
use rivulet_framework::scheduler::{JobRunner, JobSpec, TaskOutput};
use rivulet_framework::{Error, Result};

use crate::messages::SubmitJob;

/// Submits jobs to the coordinator and waits for them.
pub(crate) struct ClusterRunner {
    pub(crate) coordinator: Recipient<SubmitJob>,
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
}
