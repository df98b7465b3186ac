//! Fuzz target `wire`: see `compute_tools_fuzz::wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_tools_fuzz::wire::run(data));
