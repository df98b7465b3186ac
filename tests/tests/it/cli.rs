//! The command lines, consistent across the binaries: `--version` with the git commit,
//! `--log-format` everywhere, and compute-ctl's completions and man page.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::process::Command;

use compute_tools_tests::binary;

const BINARIES: &[&str] = &[
    "compute-spec",
    "pg-sync-safekeepers",
    "pg-basebackup-fetch",
    "pg-extensions-fetch",
    "pg-supervise",
    "pg-reconcile",
    "pg-prewarm",
    "pg-catalog",
    "pg-lsn-lease",
    "pg-promote",
    "compute-ctl",
    "compute_ctl",
    "compute-sidecars",
    "vm-monitor",
];

fn stdout_of(name: &str, args: &[&str]) -> String {
    let output = Command::new(binary(name)).args(args).output().unwrap();
    assert!(output.status.success(), "{name} {args:?} failed");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn every_binary_reports_its_commit_and_takes_log_format() {
    for name in BINARIES {
        let version = stdout_of(name, &["--version"]);
        assert!(version.contains("(git "), "{name} --version: {version}");
        let help = stdout_of(name, &["--help"]);
        assert!(
            help.contains("--log-format"),
            "{name} --help lacks --log-format"
        );
    }
}

#[test]
fn compute_ctl_generates_completions_and_a_man_page() {
    for shell in ["bash", "zsh", "fish"] {
        let script = stdout_of("compute-ctl", &["completions", shell]);
        assert!(script.contains("pgdata"), "{shell} completions lack pgdata");
    }
    let bash = stdout_of("compute-ctl", &["completions", "bash"]);
    let syntax = Command::new("bash")
        .args(["-n", "-c", &bash])
        .status()
        .unwrap();
    assert!(
        syntax.success(),
        "the bash completion script does not parse"
    );
    let man = stdout_of("compute-ctl", &["man"]);
    assert!(man.contains(".TH compute-ctl 1"), "{man}");
    assert!(man.contains("pgdata"));
    let bad = Command::new(binary("compute-ctl"))
        .args(["completions", "nosuchshell"])
        .output()
        .unwrap();
    assert_eq!(
        bad.status.code(),
        Some(compute_spec::exit_code::USAGE as i32)
    );
}

#[test]
fn every_binary_rejects_a_non_utf8_argument_with_a_usage_error() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    for name in BINARIES {
        let output = Command::new(binary(name))
            .arg("--log-format")
            .arg(OsStr::from_bytes(b"te\xffxt"))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(i32::from(compute_spec::exit_code::USAGE)),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("--log-format"), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
}
