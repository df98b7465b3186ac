//! Fuzz target `http`: see `compute_tools_fuzz::http`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_tools_fuzz::http::run(data));
