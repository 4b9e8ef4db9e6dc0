//! Cutting a job's lineage into stages at shuffle dependencies (Spark:
//! `DAGScheduler.getMissingParentStages`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use crate::block::ExecutorId;
use crate::rdd::{Dependency, RddBase, RddId, RddMeta, ShuffleId, ShuffleMap};

/// What a stage's tasks do.
#[derive(Clone)]
pub enum StageKind {
    /// Write the buckets of this shuffle.
    ShuffleMap(Arc<dyn ShuffleMap>),
    /// Compute the job's RDD and run the action on it.
    Result,
}

/// A set of tasks, one per partition of `rdd`, that run the same fused pipeline.
#[derive(Clone)]
pub struct Stage {
    /// The stage's id within its job.
    pub id: u32,
    /// Map or result stage.
    pub kind: StageKind,
    /// The RDD whose partitions its tasks compute (a shuffle's parent, or the job's RDD).
    pub rdd: Arc<dyn RddBase>,
    /// Stages that must finish first.
    pub parents: Vec<u32>,
}

impl fmt::Debug for StageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StageKind::ShuffleMap(dep) => write!(f, "ShuffleMap({})", dep.shuffle_id()),
            StageKind::Result => f.write_str("Result"),
        }
    }
}

impl Stage {
    /// How many tasks (partitions).
    pub fn num_tasks(&self) -> usize {
        self.rdd.meta().num_partitions()
    }

    /// Executors where partition `p`'s input lives.
    pub fn preferred_locations(&self, partition: usize) -> Vec<ExecutorId> {
        self.rdd.preferred_locations(partition)
    }
}

impl fmt::Debug for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stage")
            .field("id", &self.id)
            .field("kind", &self.kind)
            .field("rdd", &self.rdd.meta().id())
            .field("parents", &self.parents)
            .finish()
    }
}

struct Planner<'a> {
    stages: Vec<Stage>,
    by_shuffle: HashMap<ShuffleId, u32>,
    next_id: u32,
    is_available: &'a dyn Fn(&dyn ShuffleMap) -> bool,
    is_cached: &'a dyn Fn(&RddMeta) -> bool,
}

impl Planner<'_> {
    /// The shuffles below `rdd` (through narrow dependencies) whose outputs must be made.
    /// Walking stops at fully cached RDDs: their lineage is not needed.
    fn missing_shuffles(&self, rdd: &Arc<dyn RddBase>) -> Vec<Arc<dyn ShuffleMap>> {
        let mut missing: Vec<Arc<dyn ShuffleMap>> = Vec::new();
        let mut seen: HashSet<RddId> = HashSet::new();
        let mut stack = vec![rdd.clone()];
        while let Some(r) = stack.pop() {
            let meta = r.meta();
            if !seen.insert(meta.id()) || (self.is_cached)(meta) {
                continue;
            }
            for dep in meta.dependencies() {
                match dep {
                    Dependency::Narrow(parent) => stack.push(parent.clone()),
                    Dependency::Shuffle(s) => {
                        let known = missing.iter().any(|m| m.shuffle_id() == s.shuffle_id());
                        if !known && !(self.is_available)(&**s) {
                            missing.push(s.clone());
                        }
                    }
                }
            }
        }
        missing
    }

    fn shuffle_stage(&mut self, dep: &Arc<dyn ShuffleMap>) -> u32 {
        if let Some(&id) = self.by_shuffle.get(&dep.shuffle_id()) {
            return id;
        }
        let rdd = dep.parent();
        let parents = self.parent_stages(&rdd);
        let id = self.push(Stage {
            id: 0,
            kind: StageKind::ShuffleMap(dep.clone()),
            rdd,
            parents,
        });
        self.by_shuffle.insert(dep.shuffle_id(), id);
        id
    }

    fn parent_stages(&mut self, rdd: &Arc<dyn RddBase>) -> Vec<u32> {
        self.missing_shuffles(rdd)
            .iter()
            .map(|dep| self.shuffle_stage(dep))
            .collect()
    }

    fn push(&mut self, mut stage: Stage) -> u32 {
        stage.id = self.next_id;
        self.next_id += 1;
        let id = stage.id;
        self.stages.push(stage);
        id
    }
}

/// The stages that must run to compute `rdd`, parents before children, the result stage
/// last; ids start at `first_id`. Shuffles for which `is_available` holds are not rerun, and
/// lineage below RDDs for which `is_cached` holds (all partitions cached) is not walked.
pub fn plan_stages(
    rdd: &Arc<dyn RddBase>,
    first_id: u32,
    is_available: &dyn Fn(&dyn ShuffleMap) -> bool,
    is_cached: &dyn Fn(&RddMeta) -> bool,
) -> Vec<Stage> {
    let mut planner = Planner {
        stages: Vec::new(),
        by_shuffle: HashMap::new(),
        next_id: first_id,
        is_available,
        is_cached,
    };
    let parents = planner.parent_stages(rdd);
    planner.push(Stage {
        id: 0,
        kind: StageKind::Result,
        rdd: rdd.clone(),
        parents,
    });
    planner.stages
}

/// The map stages of `rdd`'s job that can run before the batches ahead of `batch_time`
/// finish (the D-Streams paper's timestep pipelining): those with no missing parent
/// stage whose tasks compute only RDDs of `batch_time` (reading input blocks, parallelized
/// data and fully cached RDDs of any batch). Anything else, a window over a batch still
/// running or state from one, waits for the job. Shuffles for which `is_available` holds
/// are left out; `is_cached` as for [`plan_stages`].
pub fn independent_map_stages(
    rdd: &Arc<dyn RddBase>,
    batch_time: crate::time::Time,
    is_available: &dyn Fn(&dyn ShuffleMap) -> bool,
    is_cached: &dyn Fn(&RddMeta) -> bool,
) -> Vec<Stage> {
    plan_stages(rdd, 0, is_available, is_cached)
        .into_iter()
        .filter(|s| {
            matches!(s.kind, StageKind::ShuffleMap(_))
                && s.parents.is_empty()
                && computes_only_batch(&s.rdd, batch_time, is_cached)
        })
        .collect()
}

/// Whether a task of a stage over `rdd` computes only RDDs of `batch_time`: its narrow
/// lineage down to fully cached RDDs and shuffle outputs (which it reads, not computes).
fn computes_only_batch(
    rdd: &Arc<dyn RddBase>,
    batch_time: crate::time::Time,
    is_cached: &dyn Fn(&RddMeta) -> bool,
) -> bool {
    let mut seen: HashSet<RddId> = HashSet::new();
    let mut stack = vec![rdd.clone()];
    while let Some(r) = stack.pop() {
        let meta = r.meta();
        if !seen.insert(meta.id()) || is_cached(meta) {
            continue;
        }
        if meta.id().batch_time() != Some(batch_time) {
            return false;
        }
        for dep in meta.dependencies() {
            if let Dependency::Narrow(parent) = dep {
                stack.push(parent.clone());
            }
        }
    }
    true
}
