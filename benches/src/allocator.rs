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

/// Turns transparent huge pages off for this process and every process it starts
/// (`prctl(PR_SET_THP_DISABLE)`, inherited across `fork` and `exec`): what mimalloc's own
/// option `MIMALLOC_ALLOW_THP=0` does when it starts, set here because a program cannot set
/// that option in its own environment before the allocator reads it.
///
/// Why: mimalloc asks for huge pages on its memory (`madvise(MADV_HUGEPAGE)`, which Linux
/// honours in its default `madvise` mode), and returns freed memory to the kernel 10 ms
/// later; every fault on a 2 MiB region then has the kernel zero 2 MiB
/// (`do_huge_pmd_anonymous_page` → `clear_page_erms`). With executor processes a block is
/// a fresh buffer of 0.3-1 MB on both sides of the connection, and a `perf record` of
/// `bench_wordcount --local-cluster 2` put 18 % of all samples there (BENCHMARKS.md
/// "Executor processes"). With 4 KiB pages only the pages touched are zeroed.
///
/// Only `bench_wordcount` calls it (at the start of `main`, for the plain loop, in-process
/// and `--local-cluster` runs alike, unless `--transparent-huge-pages`); the other harnesses
/// keep the allocator's defaults their published figures were measured with.
///
/// # Errors
/// The `prctl` error (a kernel without the flag, before Linux 3.15).
#[allow(dead_code)] // included by harnesses that do not call it
pub fn disable_transparent_huge_pages() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes integers only and touches no memory of ours.
        let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
