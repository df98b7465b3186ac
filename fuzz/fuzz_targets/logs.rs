//! Fuzz target `logs`: see `compute_tools_fuzz::logs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_tools_fuzz::logs::run(data));
