//! The socket and file receivers' incremental line splitter, fed arbitrary bytes in arbitrary
//! chunks under every long-line policy, must give exactly the records, counts and error of
//! the whole-input reference split (`rivulet_receivers::split_text`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rivulet_receivers::fuzzing::{split_all, split_chunked};
use rivulet_receivers::LongLinePolicy;

fuzz_target!(|data: &[u8]| {
    // Header: max_line_bytes (1..=64), policy, then up to 4 chunk sizes; the rest is input.
    let [max, policy, c0, c1, c2, c3, input @ ..] = data else {
        return;
    };
    let max = usize::from(*max % 64) + 1;
    let policy = LongLinePolicy::ALL[usize::from(*policy) % LongLinePolicy::ALL.len()];
    let chunks: Vec<usize> = [c0, c1, c2, c3].iter().map(|c| usize::from(**c) + 1).collect();
    assert_eq!(
        split_chunked(input, &chunks, max, policy),
        split_all(input, max, policy)
    );
});
