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
//! The tool paths are compute-ctl's flags (`--resize-swap-tool`, `--set-disk-quota-tool`, `--vm-tools-sudo`;
//! an empty sudo runs the tool directly) with upstream's paths as defaults. Each run is bounded
//! by [`TOOL_TIMEOUT`]: a tool still running then is killed with its whole process group
//! (sudo, the tool and anything it started) and the start fails.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use compute_spec::spec::ComputeSpec;
use stage_kit::child::RunError;
use thiserror::Error;

/// Upstream's swap tool.
pub const RESIZE_SWAP: &str = "/neonvm/bin/resize-swap";
/// Upstream's disk-quota tool.
pub const SET_DISK_QUOTA: &str = "/neonvm/bin/set-disk-quota";
/// Upstream's sudo.
pub const SUDO: &str = "/usr/bin/sudo";
/// The longest one tool may run.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(60);

/// Why one tool run failed.
#[derive(Debug, Error)]
pub enum ToolError {
    /// It exited unsuccessfully.
    #[error("{} exited with {status}; stderr: {stderr}", tool.display())]
    Failed {
        /// The tool.
        tool: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// It ran past its deadline; its process group was killed.
    #[error("{} still ran after {} s and was killed", tool.display(), timeout.as_secs_f64())]
    TimedOut {
        /// The tool.
        tool: PathBuf,
        /// The deadline.
        timeout: Duration,
    },
    /// It (or sudo) could not be started.
    #[error("cannot run {}: {source}", tool.display())]
    Spawn {
        /// The tool.
        tool: PathBuf,
        /// The error of `spawn`.
        source: std::io::Error,
    },
    /// Running it failed otherwise (its output past the cap, the wait).
    #[error("{}: {source}", tool.display())]
    Run {
        /// The tool.
        tool: PathBuf,
        /// The failure.
        source: RunError,
    },
}

/// Why the start cannot go on: the tool that failed, and how.
#[derive(Debug, Error)]
pub enum VmToolError {
    /// The swap tool failed (and is still there).
    #[error("resizing swap to {bytes} bytes: {source}")]
    Swap {
        /// `swap_size_bytes`.
        bytes: u64,
        /// How it failed.
        source: ToolError,
    },
    /// The disk-quota tool failed.
    #[error("setting the disk quota of {mountpoint} to {kib} KiB: {source}")]
    DiskQuota {
        /// `--set-disk-quota-for-fs`.
        mountpoint: String,
        /// The quota in KiB.
        kib: u64,
        /// How it failed.
        source: ToolError,
    },
}

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
pub fn before_start(params: &VmToolParams, spec: &ComputeSpec) -> Result<(), VmToolError> {
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
            Err(source) => return Err(VmToolError::Swap { bytes, source }),
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
        .map_err(|source| VmToolError::DiskQuota {
            mountpoint: mountpoint.clone(),
            kib,
            source,
        })?;
        tracing::info!(kib, %mountpoint, "disk quota set");
    }
    Ok(())
}

fn run(sudo: &Path, tool: &Path, args: &[String]) -> Result<(), ToolError> {
    run_within(sudo, tool, args, TOOL_TIMEOUT)
}

/// One tool run (through `stage_kit::child::run`): in its own process group, so at the
/// deadline the tool dies with sudo, not only sudo.
fn run_within(
    sudo: &Path,
    tool: &Path,
    args: &[String],
    timeout: Duration,
) -> Result<(), ToolError> {
    let mut command = if sudo.as_os_str().is_empty() {
        Command::new(tool)
    } else {
        let mut command = Command::new(sudo);
        command.arg(tool);
        command
    };
    command.args(args);
    stage_kit::notify::hide_from(&mut command);
    let tool = tool.to_path_buf();
    match stage_kit::child::run(&mut command, timeout, OUTPUT_CAP) {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(ToolError::Failed {
            tool,
            status: output.status,
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }),
        Err(RunError::TimedOut { .. }) => Err(ToolError::TimedOut { tool, timeout }),
        Err(RunError::Spawn { source, .. }) => Err(ToolError::Spawn { tool, source }),
        Err(source) => Err(ToolError::Run { tool, source }),
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
        let error = run_within(&sudo, &tool, &[], Duration::from_millis(500))
            .unwrap_err()
            .to_string();
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
