//! `stable_hash` is on the path of every shuffled record: it must not allocate for a key
//! (the encoding goes straight into the hash state). Counted with an allocator that counts
//! this thread's allocations (the test harness's own threads allocate meanwhile).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rivulet_framework::partitioner::{stable_hash, HashPartitioner};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `alloc` above, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_in(f: impl FnOnce()) -> u64 {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn hashing_a_key_allocates_nothing() {
    let word = "streaming".to_string();
    let long = "x".repeat(70_000);
    let pair = (("user".to_string(), 42u64), vec![1i32, -7, 300]);
    let p = HashPartitioner::new(16);
    let n = allocations_in(|| {
        let mut acc = 0u64;
        for _ in 0..100 {
            acc ^= stable_hash(&word);
            acc ^= stable_hash(long.as_str());
            acc ^= stable_hash(&pair);
            acc ^= stable_hash(&-5i64);
            acc ^= p.partition(&word) as u64;
        }
        std::hint::black_box(acc);
    });
    assert_eq!(n, 0, "stable_hash allocated {n} times");
    // The counter does count: a Vec allocates.
    assert!(
        allocations_in(|| {
            std::hint::black_box(vec![1u8]);
        }) > 0
    );
}
