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
//! by [`TOOL_TIMEOUT`]: a tool still running then is killed and the start fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use compute_spec::spec::ComputeSpec;

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
    let mut command = if sudo.as_os_str().is_empty() {
        Command::new(tool)
    } else {
        let mut command = Command::new(sudo);
        command.arg(tool);
        command
    };
    command.args(args).stdin(Stdio::null());
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    let deadline = stage_kit::deadline::after(TOOL_TIMEOUT);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("{} exited with {status}", tool.display())),
            Ok(None) if std::time::Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "{} still ran after {} s and was killed",
                    tool.display(),
                    TOOL_TIMEOUT.as_secs()
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("waiting for {}: {e}", tool.display())),
        }
    }
}
