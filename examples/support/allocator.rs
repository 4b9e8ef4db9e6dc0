//! The global allocator of the examples and the throughput harnesses: mimalloc, with
//! transparent huge pages off.
//!
//! Word count and Nexmark allocate a `String` per word and free most of them on another
//! thread (a receiver allocates a record, an executor frees it); with glibc's allocator
//! `malloc`/`free` took 35 % of `bench_wordcount`'s 3.0 G instructions, with mimalloc 17 % of
//! 2.4 G (callgrind, 200,000 lines; BENCHMARKS.md "Where the time goes"). The main job
//! (`wordcount --rate 0` over 2 M lines) ran at 1.17x glibc's rate in 0.81x its wall time
//! and 0.77x its CPU time with mimalloc and huge pages off (medians of 5 alternating pairs,
//! BENCHMARKS.md "The allocator of the examples"); with mimalloc's huge pages on, its system
//! time doubled and the wall time was 1.05x glibc's.
//! rivulet, a library, sets no allocator; a program chooses one, and these programs choose
//! mimalloc (the harnesses for the plain loops they compare against too: same binary, so
//! ratios stay fair).
//!
//! Included with `#[path = ".../examples/support/allocator.rs"] mod allocator;` (a global
//! allocator is the binary's choice, so it is not part of any library).

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
/// The examples call it through [`init`]; of the harnesses only `bench_wordcount` calls it
/// (at the start of `main`, for the plain loop, in-process and `--local-cluster` runs alike,
/// unless `--transparent-huge-pages`); the other harnesses keep the allocator's defaults
/// their published figures were measured with.
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

/// What an example does first (after its logging is set up): turns transparent huge pages
/// off ([`disable_transparent_huge_pages`]), logging a warning where the kernel refuses.
#[allow(dead_code)] // the harnesses call `disable_transparent_huge_pages` themselves
pub fn init() {
    if let Err(e) = disable_transparent_huge_pages() {
        tracing::warn!(error = %e, "Cannot turn transparent huge pages off; the allocator may zero 2 MiB pages.");
    }
}
