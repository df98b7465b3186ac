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

/// Ignores SIGPIPE, as every Rust binary's `main` does before the code under test runs (the
/// libFuzzer driver's `main` does not): a peer or pipe closing early is then an `EPIPE`
/// error, as in production, instead of killing the process.
pub fn ignore_sigpipe() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: setting a signal's disposition to "ignore" installs no handler code; it
        // is what the Rust runtime does at start-up.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        }
    });
}
