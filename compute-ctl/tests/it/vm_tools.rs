//! The pre-start NeonVM tools (swap, disk quota) with stand-in scripts that record their
//! arguments: the commands upstream runs (through a stand-in sudo), the swap tool's non-zero
//! exit tolerated once it removed itself, and a failing tool failing the start by name.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::Path;

use crate::common::*;

/// A shell script at `dir/name` that appends `name` and its arguments to `dir/record`, then
/// runs `body`.
fn tool(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    let record = dir.join("record");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"{name} $*\" >> '{}'\n{body}\n",
            record.display()
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&path)
        .status()
        .unwrap();
    path.to_string_lossy().into_owned()
}

fn record(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("record"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn start_with_tools(harness: &mut Harness, swap_body: &str, quota_body: &str) -> Compute {
    let dir = harness.path().to_path_buf();
    let sudo = tool(&dir, "sudo", "exec \"$@\"");
    let swap = tool(&dir, "resize-swap", swap_body);
    let quota = tool(&dir, "set-disk-quota", quota_body);
    let mut spec = empty_spec(None);
    spec["swap_size_bytes"] = serde_json::json!(1_048_576u64);
    spec["disk_quota_bytes"] = serde_json::json!(2_048_000u64);
    let spec_path = dir.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    harness.start(&[
        "-S",
        spec_path.to_str().unwrap(),
        "--resize-swap-on-bind",
        "--set-disk-quota-for-fs",
        "/mnt/test-fs",
        "--resize-swap-tool",
        &swap,
        "--set-disk-quota-tool",
        &quota,
        "--vm-tools-sudo",
        &sudo,
    ])
}

#[test]
fn swap_and_quota_run_through_sudo_before_the_stages() {
    let mut harness = Harness::new();
    // The swap tool removes itself and exits 1, which upstream tolerates.
    let compute = start_with_tools(&mut harness, "rm -f \"$0\"\nexit 1", "exit 0");
    compute.wait_status("running");
    let dir = harness.path();
    let swap = dir.join("resize-swap");
    let quota = dir.join("set-disk-quota");
    assert_eq!(
        record(dir),
        vec![
            format!("sudo {} --once 1048576", swap.display()),
            "resize-swap --once 1048576".to_string(),
            format!("sudo {} 2000 /mnt/test-fs", quota.display()),
            "set-disk-quota 2000 /mnt/test-fs".to_string(),
        ]
    );
    assert!(!swap.exists());
}

#[test]
fn a_failing_tool_fails_the_start_naming_it() {
    let mut harness = Harness::new();
    let compute = start_with_tools(&mut harness, "exit 0", "exit 3");
    let status = compute.wait_status("failed");
    let error = status["error"].as_str().unwrap();
    assert!(
        error.contains("setting the disk quota of /mnt/test-fs to 2000 KiB: "),
        "{error}"
    );
    assert!(error.contains("exit status: 3"), "{error}");
    assert!(
        !harness.log().contains("sync "),
        "a stage ran after the failure"
    );

    // A swap tool that fails and stays is a failure too.
    let mut harness = Harness::new();
    let compute = start_with_tools(&mut harness, "exit 2", "exit 0");
    let error = compute.wait_status("failed")["error"].to_string();
    assert!(
        error.contains("resizing swap to 1048576 bytes: "),
        "{error}"
    );
    assert!(error.contains("exit status: 2"), "{error}");
}
