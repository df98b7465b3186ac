//! Fuzz target `vm_monitor`: see `compute_tools_fuzz::vm_monitor`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| compute_tools_fuzz::vm_monitor::run(data));
