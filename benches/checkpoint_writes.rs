//! Criterion micro-benches of what a batch writes to a sled checkpoint directory on its job
//! thread: the input cut before its outputs run (one put, one flush, and the removal of the
//! previous cut) beside the metadata checkpoint after them (two flushes, the record, the
//! purge). Both on a `SledCheckpointStore` in a temporary directory, with the input state of
//! a direct stream over 10 partitions (about 400 bytes); the ratio is what the input cut
//! adds to a batch's checkpoint cost.
//!
//! ```text
//! cargo bench -p rivulet-benches --bench checkpoint_writes
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use rivulet::actors::SledCheckpointStore;
use rivulet::framework::checkpoint::{
    CheckpointStore, Checkpointer, InputCut, InputState, MetadataCheckpoint,
};

/// A direct stream's saved state: 10 partitions' ranges and positions.
fn input_state() -> Vec<InputState> {
    vec![InputState {
        stream: 0,
        state: vec![7; 400],
    }]
}

fn checkpoint_writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn CheckpointStore> =
        Arc::new(SledCheckpointStore::open(dir.path().join("ckpt")).expect("a sled store"));
    let mut group = c.benchmark_group("per_batch");
    let mut batch_ms = 0i64;
    group.bench_function("input_cut", |b| {
        b.iter(|| {
            batch_ms += 100;
            let cut = InputCut {
                zero_time_ms: 0,
                batch_time_ms: batch_ms,
                inputs: input_state(),
            };
            cut.write(&*store).expect("the cut is written");
        })
    });
    let checkpointer = Checkpointer::new();
    group.bench_function("metadata_checkpoint", |b| {
        b.iter(|| {
            batch_ms += 100;
            let record = MetadataCheckpoint {
                graph: Vec::new(),
                batch_interval_ms: 100,
                zero_time_ms: 0,
                batch_time_ms: batch_ms,
                input_horizon_ms: batch_ms,
                data: Vec::new(),
                inputs: input_state(),
                allocations: Vec::new(),
                receivers: Vec::new(),
            };
            black_box(
                checkpointer
                    .write(&store, &record)
                    .expect("the checkpoint is written"),
            );
        })
    });
    group.finish();
}

criterion_group!(benches, checkpoint_writes);
criterion_main!(benches);
