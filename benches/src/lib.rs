//! rivulet's benchmark harnesses and what they share.
//!
//! The harnesses are this package's binaries (`src/bin/`): end-to-end programs that time
//! rivulet on real input and check their results, e.g.
//!
//! ```text
//! cargo run --release -p rivulet-benches --bin bench_wordcount -- --runs 3
//! cargo run --release -p rivulet-benches --bin nexmark -- --query all
//! ```
//!
//! `operators.rs` holds the criterion micro-benchmarks (`cargo bench -p rivulet-benches`);
//! `results/` the measured outputs that `BENCHMARKS.md` summarizes. The package is not
//! published, and it keeps the harnesses' dependencies (criterion, mimalloc, nexmark) out of
//! the `rivulet` package, whose examples are for users.
//!
//! This library is what the harnesses share: [`support`] is the examples' own support module
//! (`examples/support/mod.rs`, included as is), [`harness`] what only the harnesses use.
//! Three harnesses (`bench_wordcount`, `bench_sustained`, `nexmark`) also include
//! `src/allocator.rs`, which makes mimalloc their global allocator.

#[path = "../../examples/support/mod.rs"]
pub mod support;

pub mod harness;
