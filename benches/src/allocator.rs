//! The global allocator of the throughput harnesses: mimalloc.
//!
//! Word count and Nexmark allocate a `String` per word and free most of them on another
//! thread (a receiver allocates a record, an executor frees it); with glibc's allocator
//! `malloc`/`free` took 35 % of `bench_wordcount`'s 3.0 G instructions, with mimalloc 17 % of
//! 2.4 G (callgrind, 200,000 lines; BENCHMARKS.md "Where the time goes"). rivulet, a
//! library, sets no allocator; a program chooses one, and these harnesses choose mimalloc for
//! the plain loops they compare against too (same binary), so ratios stay fair.
//!
//! Included by those harnesses with `#[path = "../allocator.rs"] mod allocator;` (a global
//! allocator is the binary's choice, so it is not part of this package's library).

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
