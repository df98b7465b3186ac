//! Fuzz target `pgconf`: see `compute_tools_fuzz::pgconf`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_tools_fuzz::pgconf::run(data));
