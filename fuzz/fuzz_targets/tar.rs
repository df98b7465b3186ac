//! Fuzz target `tar`: see `compute_tools_fuzz::tar`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_tools_fuzz::tar::run(data));
