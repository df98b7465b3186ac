//! The AUTOSCALING integration point: when the `AUTOSCALING` environment variable is set,
//! compute-ctl starts a `vm-monitor` binary (found like a stage by compute-ctl:
//! `$COMPUTE_CTL_STAGE_VM_MONITOR` or beside its executable; [`VmMonitor::start`] is given the
//! path) with `--cgroup`, `--pgconnstr` and `--addr`, once the compute is running, and stops
//! it (SIGTERM, then wait) when Postgres stops. Nothing links the vm-monitor package; the
//! binary's flags are the whole interface.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use compute_spec::quote::quote_libpq_value;
use compute_spec::ComputeDocument;

/// What the vm-monitor integration point needs (compute-ctl's flags).
#[derive(Clone, Debug)]
pub struct VmMonitorParams {
    /// The cgroup to watch.
    pub cgroup: String,
    /// Postgres connection for file-cache sizing.
    pub pgconnstr: Option<String>,
    /// Websocket listen address.
    pub addr: String,
}

/// The monitor's file-cache connection: the compute's own instance through its socket
/// directory, as the admin user; none when the spec sets `disable_lfc_resizing`.
pub fn file_cache_connstr(document: &ComputeDocument) -> Option<String> {
    let disabled = document
        .spec
        .as_ref()
        .and_then(|spec| spec.disable_lfc_resizing)
        .unwrap_or(false);
    if disabled {
        return None;
    }
    Some(format!(
        "host={} port={} user={} dbname=postgres application_name=vm-monitor",
        quote_libpq_value(&document.instance.socket_dir.to_string_lossy()),
        document.instance.port,
        quote_libpq_value(&stage_kit::local::admin_user(document)),
    ))
}

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
    /// Starts the vm-monitor binary at `path`; a failure is logged and autoscaling stays off
    /// (as upstream, it is not fatal to the compute).
    /// `default_connstr` is used when `--filecache-connstr` is not given; with neither, the
    /// monitor does no file-cache sizing.
    pub fn start(
        path: &Path,
        params: &VmMonitorParams,
        default_connstr: Option<String>,
    ) -> Option<VmMonitor> {
        let mut command = Command::new(path);
        stage_kit::notify::hide_from(&mut command);
        if let Some(connstr) = params.pgconnstr.clone().or(default_connstr) {
            command.arg("--pgconnstr").arg(connstr);
        }
        command
            .arg("--cgroup")
            .arg(&params.cgroup)
            .arg("--addr")
            .arg(&params.addr)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // Long-lived: forked on the spawner thread, SIGTERM when compute-ctl dies.
        let spawned =
            stage_kit::child::spawn_long_lived(command, nix::sys::signal::Signal::SIGTERM);
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
