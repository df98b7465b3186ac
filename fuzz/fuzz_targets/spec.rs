//! Fuzz target `spec`: see `compute_tools_fuzz::spec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_tools_fuzz::spec::run(data));
