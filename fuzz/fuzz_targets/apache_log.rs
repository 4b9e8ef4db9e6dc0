//! The Apache combined-log parser of `examples/log_analytics` never panics on any line, and
//! parsing is deterministic.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../examples/log_analytics/parse.rs"]
#[allow(dead_code)]
mod parse;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let first = parse::parse(&line).is_ok();
    assert_eq!(parse::parse(&line).is_ok(), first);
});
