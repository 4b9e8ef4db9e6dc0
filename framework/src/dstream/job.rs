//! [`OutputJob`]: one output operation's work for one batch (Spark: `Job`).

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::error::{panic_message, Error, OpInfo, Result};
use crate::rdd::RddBase;
use crate::time::Time;

type RunFn = Box<dyn FnOnce() -> Result<()> + Send>;

/// One output operation's work for one batch (Spark: `Job`): run it on a thread that may
/// block (it runs RDD actions). If the batch's RDD could not be generated for this output,
/// running it returns that error.
pub struct OutputJob {
    time: Time,
    id: usize,
    op: OpInfo,
    run: Result<RunFn, Error>,
    rdd: Option<Arc<dyn RddBase>>,
}

impl OutputJob {
    pub(crate) fn new(
        time: Time,
        op: OpInfo,
        run: impl FnOnce() -> Result<()> + Send + 'static,
    ) -> Self {
        OutputJob {
            time,
            id: 0,
            op,
            run: Ok(Box::new(run)),
            rdd: None,
        }
    }

    /// A job that fails with `error` when run (its RDD could not be generated).
    pub(crate) fn failed(time: Time, op: OpInfo, error: Error) -> Self {
        OutputJob {
            time,
            id: 0,
            op,
            run: Err(error),
            rdd: None,
        }
    }

    /// Gives the job its output operation's index.
    pub(crate) fn with_id(mut self, id: usize) -> Self {
        self.id = id;
        self
    }

    /// Names the RDD the output operation's function receives, so that the runtime can
    /// compute its batch's independent map stages ahead (see
    /// [`DagScheduler::run_map_stages_ahead`](crate::scheduler::DagScheduler::run_map_stages_ahead)).
    pub(crate) fn with_rdd(mut self, rdd: Arc<dyn RddBase>) -> Self {
        self.rdd = Some(rdd);
        self
    }

    /// The RDD the output operation's function receives, when it has one (a
    /// `foreach_rdd`-based output; not a checkpoint job).
    pub fn rdd(&self) -> Option<&Arc<dyn RddBase>> {
        self.rdd.as_ref()
    }

    /// The batch.
    pub fn time(&self) -> Time {
        self.time
    }

    /// The output operation's index, in registration order.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The output operation and its call site.
    pub fn op(&self) -> OpInfo {
        self.op
    }

    /// Runs the output operation: its actions and user function.
    ///
    /// # Errors
    /// The generation error, if the batch's RDD could not be generated; [`Error::Task`] from
    /// a failed job; [`Error::Output`] when the user function returned an error or panicked.
    pub fn run(self) -> Result<()> {
        let (time, op) = (self.time, self.op);
        let _output_op = crate::scheduler::OutputOpGuard::enter(self.id);
        match catch_unwind(AssertUnwindSafe(self.run?)) {
            Ok(result) => result,
            Err(payload) => Err(Error::Output {
                batch_time: time,
                operator: op.to_string(),
                message: format!("panicked: {}", panic_message(&*payload)),
            }),
        }
    }
}

impl fmt::Debug for OutputJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutputJob")
            .field("time", &self.time)
            .field("id", &self.id)
            .field("op", &self.op)
            .finish()
    }
}
