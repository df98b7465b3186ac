//! The AUTOSCALING integration point: when the `AUTOSCALING` environment variable is set,
//! compute-ctl starts a `vm-monitor` binary (found like a stage: `$COMPUTE_CTL_STAGE_VM_MONITOR`
//! or beside this executable) with `--cgroup`, `--pgconnstr` and `--addr`, once the compute is
//! running, and stops it (SIGTERM, then wait) when Postgres stops. compute-ctl does not link
//! the vm-monitor package; the binary's flags are the whole interface.

use std::process::{Child, Command, Stdio};

use crate::cli::VmMonitorParams;
use crate::stages::{locate, name};

/// A running vm-monitor.
#[derive(Debug)]
pub struct VmMonitor {
    child: Child,
}

/// Whether autoscaling is requested (`AUTOSCALING` present in the environment).
pub fn requested() -> bool {
    std::env::var_os("AUTOSCALING").is_some()
}

impl VmMonitor {
    /// Starts vm-monitor; a failure is logged and autoscaling stays off (as upstream, it is
    /// not fatal to the compute).
    pub fn start(params: &VmMonitorParams, default_connstr: &str) -> Option<VmMonitor> {
        let path = locate(name::VM_MONITOR);
        let connstr = params.pgconnstr.as_deref().unwrap_or(default_connstr);
        let mut command = Command::new(&path);
        crate::stages::guard(&mut command);
        let spawned = command
            .arg("--cgroup")
            .arg(&params.cgroup)
            .arg("--pgconnstr")
            .arg(connstr)
            .arg("--addr")
            .arg(&params.addr)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn();
        match spawned {
            Ok(child) => {
                tracing::info!(pid = child.id(), "vm-monitor started");
                Some(VmMonitor { child })
            }
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot start vm-monitor; autoscaling is off");
                None
            }
        }
    }

    /// Stops vm-monitor and reaps it.
    pub fn stop(mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let _ = self.child.wait();
    }
}
