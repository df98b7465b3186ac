//! A command line that is not UTF-8 is a usage error (exit 2 and a message), never a panic,
//! under both binary names.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Output};

const BINARIES: [&str; 2] = [
    env!("CARGO_BIN_EXE_compute-ctl"),
    env!("CARGO_BIN_EXE_compute_ctl"),
];

fn run(binary: &str, args: &[&OsStr]) -> Output {
    Command::new(binary).args(args).output().unwrap()
}

fn assert_usage_error(output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(i32::from(compute_spec::exit_code::USAGE)),
        "{what}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stderr.trim().is_empty(), "{what}: no message");
}

#[test]
fn a_non_utf8_argument_is_a_usage_error() {
    let bad = OsStr::from_bytes(b"r\xffle");
    for binary in BINARIES {
        let value = run(binary, &[OsStr::new("--privileged-role-name"), bad]);
        assert_usage_error(&value, "a flag's value");
        let stderr = String::from_utf8_lossy(&value.stderr);
        assert!(stderr.contains("UTF-8"), "{stderr}");
        assert_usage_error(&run(binary, &[bad]), "a word");
        assert_usage_error(
            &run(binary, &[OsStr::new("completions"), bad]),
            "a shell name",
        );
    }
}
