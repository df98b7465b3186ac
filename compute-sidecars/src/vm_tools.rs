//! The NeonVM tools run before Postgres starts (upstream's §12), each at most once per start
//! and never on a reconfiguration:
//!
//! * swap: with `--resize-swap-on-bind` and the spec's `swap_size_bytes`,
//!   `<sudo> <resize-swap> --once <swap_size_bytes>`. A non-zero exit is tolerated only when
//!   the tool is gone afterwards (it deletes itself on success), as upstream; otherwise the
//!   start fails with the exit status.
//! * disk quota: with `--set-disk-quota-for-fs <mountpoint>` and the spec's
//!   `disk_quota_bytes`, `<sudo> <set-disk-quota> <disk_quota_bytes / 1024> <mountpoint>`
//!   (KiB; 0 disables the quota). A non-zero exit fails the start.
//!
//! The tool paths are flags (`--resize-swap-tool`, `--set-disk-quota-tool`, `--vm-tools-sudo`;
//! an empty sudo runs the tool directly) with upstream's paths as defaults. Each run is bounded
//! by [`TOOL_TIMEOUT`]: a tool still running then is killed with its whole process group
//! (sudo, the tool and anything it started) and the start fails.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use compute_spec::spec::ComputeSpec;
use stage_kit::child::RunError;

/// Upstream's swap tool.
pub const RESIZE_SWAP: &str = "/neonvm/bin/resize-swap";
/// Upstream's disk-quota tool.
pub const SET_DISK_QUOTA: &str = "/neonvm/bin/set-disk-quota";
/// Upstream's sudo.
pub const SUDO: &str = "/usr/bin/sudo";
/// The longest one tool may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// The flags of the pre-start tools.
#[derive(Clone, Debug)]
pub struct VmToolParams {
    /// `--resize-swap-on-bind`.
    pub resize_swap_on_bind: bool,
    /// `--set-disk-quota-for-fs`.
    pub disk_quota_mountpoint: Option<String>,
    /// The swap tool.
    pub resize_swap: PathBuf,
    /// The disk-quota tool.
    pub set_disk_quota: PathBuf,
    /// sudo; empty: run the tools directly.
    pub sudo: PathBuf,
}

/// Runs the tools `spec` and the flags ask for; the error says which tool failed and how.
pub fn before_start(params: &VmToolParams, spec: &ComputeSpec) -> Result<(), String> {
    if let (true, Some(bytes)) = (params.resize_swap_on_bind, spec.swap_size_bytes) {
        let outcome = run(
            &params.sudo,
            &params.resize_swap,
            &["--once".into(), bytes.to_string()],
        );
        match outcome {
            Ok(()) => tracing::info!(bytes, "swap resized"),
            Err(_) if !params.resize_swap.exists() => {
                tracing::info!(bytes, "swap resized (the tool removed itself)")
            }
            Err(error) => return Err(format!("resizing swap to {bytes} bytes: {error}")),
        }
    }
    if let (Some(mountpoint), Some(bytes)) = (&params.disk_quota_mountpoint, spec.disk_quota_bytes)
    {
        let kib = bytes / 1024;
        run(
            &params.sudo,
            &params.set_disk_quota,
            &[kib.to_string(), mountpoint.clone()],
        )
        .map_err(|error| format!("setting the disk quota of {mountpoint} to {kib} KiB: {error}"))?;
        tracing::info!(kib, %mountpoint, "disk quota set");
    }
    Ok(())
}

fn run(sudo: &std::path::Path, tool: &std::path::Path, args: &[String]) -> Result<(), String> {
    run_within(sudo, tool, args, TOOL_TIMEOUT)
}

/// One tool run (through `stage_kit::child::run`): in its own process group, so at the
/// deadline the tool dies with sudo, not only sudo.
fn run_within(
    sudo: &std::path::Path,
    tool: &std::path::Path,
    args: &[String],
    timeout: Duration,
) -> Result<(), String> {
    let mut command = if sudo.as_os_str().is_empty() {
        Command::new(tool)
    } else {
        let mut command = Command::new(sudo);
        command.arg(tool);
        command
    };
    command.args(args);
    crate::stages::hide_notify_socket(&mut command);
    match stage_kit::child::run(&mut command, timeout, OUTPUT_CAP) {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "{} exited with {}; stderr: {}",
            tool.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(RunError::TimedOut { .. }) => Err(format!(
            "{} still ran after {} s and was killed",
            tool.display(),
            timeout.as_secs_f64()
        )),
        Err(RunError::Spawn { source, .. }) => {
            Err(format!("cannot run {}: {source}", tool.display()))
        }
        Err(error) => Err(format!("{}: {error}", tool.display())),
    }
}

/// Output kept from a tool (for the error message).
const OUTPUT_CAP: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// At the deadline the tool's whole group dies, not only the process compute-ctl
    /// started (sudo): here the tool's own child, which would otherwise keep running.
    #[test]
    fn the_deadline_kills_the_tool_not_only_sudo() {
        let dir = tempfile::tempdir().unwrap();
        let sudo = dir.path().join("sudo");
        std::fs::write(&sudo, "#!/bin/sh\n\"$@\"\n").unwrap();
        let tool = dir.path().join("tool");
        let pid_file = dir.path().join("helper.pid");
        std::fs::write(
            &tool,
            format!(
                "#!/bin/sh\nsleep 300 &\necho $! > '{}'\nwait\n",
                pid_file.display()
            ),
        )
        .unwrap();
        for script in [&sudo, &tool] {
            std::fs::set_permissions(script, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let error = run_within(&sudo, &tool, &[], Duration::from_millis(500)).unwrap_err();
        assert!(error.contains("still ran after 0.5 s"), "{error}");
        let helper: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert!(
            pg_test_support::probe::wait_dead(helper, Duration::from_secs(2)),
            "the tool's child outlived the deadline"
        );
    }
}
