//! Criterion micro-benches of what moving a block between processes costs besides the
//! network: serializing a received block of lines with its `BlockEncoder` (the coordinator's
//! side of an input block, an executor's side of a shuffle bucket) and reading it back with
//! `decode_block` (the side that fetched it). A block of 10,000 lines of the bundled
//! Shakespeare text (about 279 KB of text; a 10 ms block at 1 M lines/s) and a shuffle
//! bucket of 5,000 `(word, count)` pairs. The throughputs are the per-byte costs of the
//! scaling model in BENCHMARKS.md.
//!
//! ```text
//! cargo bench -p rivulet-benches --bench block_transfer
//! ```

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rivulet::framework::block::{decode_block, encoder_of, BlockData, BlockId};

fn lines() -> Vec<String> {
    let text = include_str!("../examples/data/shakespeare.txt");
    text.lines().take(10_000).map(str::to_string).collect()
}

fn pairs() -> Vec<(String, u64)> {
    lines()
        .iter()
        .flat_map(|l| l.split_whitespace().map(str::to_lowercase))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .take(5_000)
        .zip(1u64..)
        .collect()
}

fn block_transfer(c: &mut Criterion) {
    let id = BlockId::Input { stream: 0, seq: 0 };
    let mut group = c.benchmark_group("block_transfer");
    let block: BlockData = Arc::new(lines());
    let encode = encoder_of::<String>();
    let bytes = encode(&id, &block).expect("encodes");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode_10k_lines", |b| {
        b.iter(|| black_box(encode(&id, &block).expect("encodes")))
    });
    group.bench_function("decode_10k_lines", |b| {
        b.iter(|| black_box(decode_block::<String>(&id, &bytes).expect("decodes")))
    });
    let bucket: BlockData = Arc::new(pairs());
    let encode = encoder_of::<(String, u64)>();
    let bytes = encode(&id, &bucket).expect("encodes");
    group.throughput(Throughput::Bytes(bytes.len() as u64));
    group.bench_function("encode_5k_pairs", |b| {
        b.iter(|| black_box(encode(&id, &bucket).expect("encodes")))
    });
    group.bench_function("decode_5k_pairs", |b| {
        b.iter(|| black_box(decode_block::<(String, u64)>(&id, &bytes).expect("decodes")))
    });
    group.finish();
}

criterion_group!(benches, block_transfer);
criterion_main!(benches);
