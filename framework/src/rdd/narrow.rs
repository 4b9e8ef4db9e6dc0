//! The narrow RDDs: one mechanism per shape. Every per-record operator (map, filter,
//! flat_map, glom, map_values, ...) is a [`MapPartitionsRdd`] with a different partition
//! function; unions are a [`UnionRdd`].

use std::sync::Arc;

use crate::block::ExecutorId;
use crate::data::Data;
use crate::error::{Error, OpInfo, Result};
use crate::rdd::{Dependency, PartitionIter, Rdd, RddBase, RddImpl, RddMeta};
use crate::scheduler::TaskContext;

type PartitionFn<T, U> = dyn Fn(usize, PartitionIter<T>) -> PartitionIter<U> + Send + Sync;

/// The same partition function over the parent's records by reference, when the parent
/// keeps them in a shared `Vec` (see [`Rdd::shared_partition`]).
type SharedPartitionFn<T, U> = dyn Fn(usize, Arc<Vec<T>>) -> PartitionIter<U> + Send + Sync;

/// Applies a function to each parent partition's iterator (Spark: `MapPartitionsRDD`).
struct MapPartitionsRdd<T, U> {
    meta: RddMeta,
    parent: Rdd<T>,
    f: Box<PartitionFn<T, U>>,
    /// Used instead of `f` when the parent's partition is shared: it must give the same
    /// records as `f` over the cloned records.
    by_ref: Option<Box<SharedPartitionFn<T, U>>>,
}

impl<T: Data, U: Data> RddBase for MapPartitionsRdd<T, U> {
    fn meta(&self) -> &RddMeta {
        &self.meta
    }
    fn preferred_locations(&self, partition: usize) -> Vec<ExecutorId> {
        self.parent.locations(partition)
    }
}

impl<T: Data, U: Data> RddImpl<U> for MapPartitionsRdd<T, U> {
    fn compute(&self, partition: usize, ctx: &TaskContext) -> Result<PartitionIter<U>> {
        if let Some(by_ref) = &self.by_ref {
            if let Some(shared) = self.parent.shared_partition(partition, ctx) {
                return Ok(by_ref(partition, shared?));
            }
        }
        Ok((self.f)(partition, self.parent.iterator(partition, ctx)?))
    }
}

/// A narrow child of `parent` whose partition `p` is `f(p, parent's partition p)`.
/// `preserves_partitioning` keeps the parent's partitioner (true only when `f` keeps keys).
pub(crate) fn map_partitions<T: Data, U: Data>(
    parent: &Rdd<T>,
    op: OpInfo,
    preserves_partitioning: bool,
    f: impl Fn(usize, PartitionIter<T>) -> PartitionIter<U> + Send + Sync + 'static,
) -> Rdd<U> {
    map_partitions_with_ref(parent, op, preserves_partitioning, f, None)
}

/// [`map_partitions`] that reads a shared parent partition by reference with `by_ref`,
/// which must give the same records as `f` over the cloned records (e.g. a filter that
/// clones only what it keeps).
pub(crate) fn map_partitions_with_ref<T: Data, U: Data>(
    parent: &Rdd<T>,
    op: OpInfo,
    preserves_partitioning: bool,
    f: impl Fn(usize, PartitionIter<T>) -> PartitionIter<U> + Send + Sync + 'static,
    by_ref: Option<Box<SharedPartitionFn<T, U>>>,
) -> Rdd<U> {
    let pm = parent.meta();
    let partitioner = if preserves_partitioning {
        pm.partitioner()
    } else {
        None
    };
    let meta = RddMeta::derived(
        pm,
        op,
        pm.num_partitions(),
        vec![Dependency::Narrow(parent.as_base())],
        partitioner,
    );
    Rdd::new(MapPartitionsRdd {
        meta,
        parent: parent.clone(),
        f: Box::new(f),
        by_ref,
    })
}

/// Concatenates parents (Spark: `UnionRDD`, and `PartitionerAwareUnionRDD` when all parents
/// share a partitioner: then partition `p` is every parent's partition `p`, and the
/// partitioner is kept, so a following by-key operator needs no shuffle).
struct UnionRdd<T> {
    meta: RddMeta,
    parents: Vec<Rdd<T>>,
    /// For each partition: the (parent, parent partition) pairs it concatenates.
    parts: Vec<Vec<(usize, usize)>>,
}

impl<T: Data> RddBase for UnionRdd<T> {
    fn meta(&self) -> &RddMeta {
        &self.meta
    }
    fn preferred_locations(&self, partition: usize) -> Vec<ExecutorId> {
        self.parts[partition]
            .first()
            .map(|&(i, p)| self.parents[i].locations(p))
            .unwrap_or_default()
    }
}

impl<T: Data> RddImpl<T> for UnionRdd<T> {
    fn compute(&self, partition: usize, ctx: &TaskContext) -> Result<PartitionIter<T>> {
        let mut iters = Vec::with_capacity(self.parts[partition].len());
        for &(i, p) in &self.parts[partition] {
            iters.push(self.parents[i].iterator(p, ctx)?);
        }
        Ok(Box::new(iters.into_iter().flatten()))
    }
}

/// The union of `parents` (at least one), in parent order.
pub(crate) fn union<T: Data>(parents: &[Rdd<T>], op: OpInfo) -> Rdd<T> {
    let first = parents.first().expect("union of at least one RDD").meta();
    let partitioner = first
        .partitioner()
        .filter(|p| parents.iter().all(|r| r.partitioner() == Some(*p)));
    let parts: Vec<Vec<(usize, usize)>> = match partitioner {
        Some(p) => (0..p.num_partitions())
            .map(|part| (0..parents.len()).map(|i| (i, part)).collect())
            .collect(),
        None => parents
            .iter()
            .enumerate()
            .flat_map(|(i, r)| (0..r.num_partitions()).map(move |p| vec![(i, p)]))
            .collect(),
    };
    let deps = parents
        .iter()
        .map(|r| Dependency::Narrow(r.as_base()))
        .collect();
    let meta = RddMeta::derived(first, op, parts.len(), deps, partitioner);
    Rdd::new(UnionRdd {
        meta,
        parents: parents.to_vec(),
        parts,
    })
}

type ZipFn<A, B, C> = dyn Fn(PartitionIter<A>, PartitionIter<B>) -> PartitionIter<C> + Send + Sync;

/// Partition `p` is `f(a's partition p, b's partition p)` (Spark: `ZippedPartitionsRDD2`).
struct ZippedPartitionsRdd<A, B, C> {
    meta: RddMeta,
    a: Rdd<A>,
    b: Rdd<B>,
    f: Box<ZipFn<A, B, C>>,
}

impl<A: Data, B: Data, C: Data> RddBase for ZippedPartitionsRdd<A, B, C> {
    fn meta(&self) -> &RddMeta {
        &self.meta
    }
    fn preferred_locations(&self, partition: usize) -> Vec<ExecutorId> {
        self.a.locations(partition)
    }
}

impl<A: Data, B: Data, C: Data> RddImpl<C> for ZippedPartitionsRdd<A, B, C> {
    fn compute(&self, partition: usize, ctx: &TaskContext) -> Result<PartitionIter<C>> {
        Ok((self.f)(
            self.a.iterator(partition, ctx)?,
            self.b.iterator(partition, ctx)?,
        ))
    }
}

/// Zips the partitions of `a` and `b`, which must have as many partitions; keeps `a`'s
/// partitioner when `preserves_partitioning`.
///
/// # Errors
/// [`Error::Internal`] naming `op` and both counts if the partition counts differ (the
/// caller partitions both sides alike: a bug, never a panic).
pub(crate) fn zip_partitions<A: Data, B: Data, C: Data>(
    a: &Rdd<A>,
    b: &Rdd<B>,
    op: OpInfo,
    preserves_partitioning: bool,
    f: impl Fn(PartitionIter<A>, PartitionIter<B>) -> PartitionIter<C> + Send + Sync + 'static,
) -> Result<Rdd<C>> {
    if a.num_partitions() != b.num_partitions() {
        return Err(Error::Internal(format!(
            "{op}: cannot zip RDD {} ({} partitions) with RDD {} ({} partitions)",
            a.id(),
            a.num_partitions(),
            b.id(),
            b.num_partitions()
        )));
    }
    let am = a.meta();
    let partitioner = if preserves_partitioning {
        am.partitioner()
    } else {
        None
    };
    let deps = vec![
        Dependency::Narrow(a.as_base()),
        Dependency::Narrow(b.as_base()),
    ];
    let meta = RddMeta::derived(am, op, am.num_partitions(), deps, partitioner);
    Ok(Rdd::new(ZippedPartitionsRdd {
        meta,
        a: a.clone(),
        b: b.clone(),
        f: Box::new(f),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::local_context;

    #[test]
    fn zipping_different_partition_counts_is_an_error_not_a_panic() {
        let ctx = local_context(1);
        let (a, b) = (ctx.parallelize(vec![1, 2], 2), ctx.parallelize(vec![3], 3));
        let op = OpInfo::caller("zip");
        let zip = |x: PartitionIter<i32>, y: PartitionIter<i32>| -> PartitionIter<i32> {
            Box::new(x.chain(y))
        };
        match zip_partitions(&a, &b, op, false, zip) {
            Err(Error::Internal(message)) => {
                assert!(message.contains("2 partitions") && message.contains("3 partitions"));
            }
            other => panic!("expected an internal error, got {:?}", other.map(|_| ())),
        }
        let same = zip_partitions(&a, &a, op, false, zip).unwrap();
        assert_eq!(same.collect().unwrap(), vec![1, 1, 2, 2]);
    }
}
