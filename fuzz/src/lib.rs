//! The bodies of compute-tools' fuzz targets, one module per untrusted input surface.
//!
//! Each module has `run(data: &[u8])`: it feeds `data` to the code under test and panics
//! when an invariant breaks (a panic inside the code under test counts too). The same
//! bodies run two ways:
//!
//! - under libFuzzer, coverage-guided: `fuzz_targets/<name>.rs` (`cargo +nightly fuzz run
//!   <name>`, see `scripts/fuzz.sh`);
//! - on a stable compiler, as property tests (`tests/bodies.rs`: every committed seed under
//!   `corpus/<name>/`, mutations of the seeds and random inputs, through proptest).
//!
//! Structure-aware targets read their input through [`arbitrary::Unstructured`], so a byte
//! string from either driver means the same thing.

pub mod document;
pub mod http;
pub mod logs;
pub mod pgconf;
pub mod spec;
pub mod tar;
pub mod vm_monitor;
pub mod wire;

/// A target's body.
pub type Body = fn(&[u8]);

/// Every target: its name (the directory of its seeds, the fuzz binary) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("spec", spec::run),
    ("document", document::run),
    ("pgconf", pgconf::run),
    ("tar", tar::run),
    ("wire", wire::run),
    ("http", http::run),
    ("vm_monitor", vm_monitor::run),
    ("logs", logs::run),
];

/// The input as text: UTF-8 as it is, anything else with replacement characters (the
/// parsers under test take `&str`; their callers decode bytes the same way or refuse them).
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
