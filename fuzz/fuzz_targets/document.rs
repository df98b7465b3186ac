//! Fuzz target `document`: see `compute_tools_fuzz::document`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_tools_fuzz::document::run(data));
