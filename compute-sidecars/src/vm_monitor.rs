//! The AUTOSCALING integration point: when the `AUTOSCALING` environment variable is set,
//! compute-ctl starts a `vm-monitor` binary (found like a stage by compute-ctl:
//! `$COMPUTE_CTL_STAGE_VM_MONITOR` or beside its executable; [`VmMonitor::start`] is given the
//! path) with `--cgroup`, `--pgconnstr` and `--addr`, once the compute is running, and stops
//! it (SIGTERM, then SIGKILL to its process group after [`STOP_GRACE`]) when Postgres stops. Nothing links the vm-monitor package; the
//! binary's flags are the whole interface.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// The monitor's file-cache connection: none at all when the spec sets
/// `disable_lfc_resizing` (as upstream, whatever `--filecache-connstr` says); else
/// `--filecache-connstr` (`flag`) when given, else the compute's own instance through its
/// socket directory, as the admin user (upstream's default is a fixed TCP string on port 5432,
/// which is not where this compute listens).
pub fn file_cache_connstr(document: &ComputeDocument, flag: Option<&str>) -> Option<String> {
    let disabled = document
        .spec
        .as_ref()
        .and_then(|spec| spec.disable_lfc_resizing)
        .unwrap_or(false);
    if disabled {
        return None;
    }
    if let Some(flag) = flag {
        return Some(flag.to_string());
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
    /// `file_cache` ([`file_cache_connstr`]) is passed as `--pgconnstr`; without it the
    /// monitor does no file-cache sizing.
    pub fn start(
        path: &Path,
        params: &VmMonitorParams,
        file_cache: Option<String>,
    ) -> Option<VmMonitor> {
        let mut command = Command::new(path);
        stage_kit::notify::hide_from(&mut command);
        if let Some(connstr) = file_cache {
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

    /// Stops vm-monitor: SIGTERM, at most [`STOP_GRACE`] to exit, then SIGKILL to its whole
    /// process group (itself if still running, and anything it left there); always reaped.
    pub fn stop(self) {
        self.stop_within(STOP_GRACE);
    }

    fn stop_within(mut self, grace: Duration) {
        // Not reaped before `kill_group`: its pid (and group id) cannot be another's.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = stage_kit::deadline::after(grace);
        loop {
            match stage_kit::child::exited_unreaped(&self.child, false) {
                Ok(false) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                Ok(false) => {
                    tracing::warn!(
                        "vm-monitor did not exit within {} s of SIGTERM; killing its group",
                        grace.as_secs_f64()
                    );
                    break;
                }
                _ => break,
            }
        }
        stage_kit::child::kill_group(&mut self.child);
    }
}

/// How long vm-monitor gets to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

#[cfg(test)]
mod tests {
    use super::*;

    /// A vm-monitor that ignores SIGTERM and left a helper in its group: `stop` returns
    /// after the grace, and neither survives.
    #[test]
    fn stop_kills_a_monitor_that_ignores_sigterm_and_its_group() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("vm-monitor");
        let pid_file = dir.path().join("helper.pid");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ntrap '' TERM\nsleep 300 &\necho $! > '{}'\nwhile :; do sleep 1; done\n",
                pid_file.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let params = VmMonitorParams {
            cgroup: "neon-postgres".into(),
            pgconnstr: None,
            addr: "127.0.0.1:0".into(),
        };
        let monitor = VmMonitor::start(&script, &params, None).unwrap();
        let monitor_pid = monitor.child.id() as i32;
        assert!(pg_test_support::probe::wait_until(
            Duration::from_secs(5),
            || { std::fs::read_to_string(&pid_file).is_ok_and(|text| text.ends_with('\n')) }
        ));
        let helper: i32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // On a thread: a stop without a deadline would never return.
        let (done, stopped) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            monitor.stop_within(Duration::from_millis(500));
            let _ = done.send(());
        });
        if stopped.recv_timeout(Duration::from_secs(5)).is_err() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(monitor_pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            panic!("stop still waited for the monitor after 5 s");
        }
        assert!(pg_test_support::probe::wait_dead(
            monitor_pid,
            Duration::from_secs(2)
        ));
        assert!(
            pg_test_support::probe::wait_dead(helper, Duration::from_secs(2)),
            "the monitor's helper outlived stop"
        );
    }

    fn document(disable_lfc_resizing: Option<bool>) -> ComputeDocument {
        serde_json::from_value(serde_json::json!({
            "document_version": 1,
            "spec": {
                "format_version": 1.0,
                "cluster": {"roles": [], "databases": []},
                "disable_lfc_resizing": disable_lfc_resizing,
            },
            "pgdata": "/pgdata",
            "pgbin": "/usr/lib/postgresql/15/bin/postgres",
            "connstr": "postgresql://cloud_admin@localhost/postgres",
            "instance": {"port": 55432, "socket_dir": "/run/pg"},
        }))
        .unwrap()
    }

    #[test]
    fn the_file_cache_connection_follows_the_spec_then_the_flag() {
        let flag = Some("host=10.0.0.1 user=monitor");
        // disable_lfc_resizing: no connection at all, whatever the flag says (as upstream).
        assert_eq!(file_cache_connstr(&document(Some(true)), flag), None);
        assert_eq!(file_cache_connstr(&document(Some(true)), None), None);
        for enabled in [None, Some(false)] {
            assert_eq!(
                file_cache_connstr(&document(enabled), flag).as_deref(),
                flag
            );
            assert_eq!(
                file_cache_connstr(&document(enabled), None).as_deref(),
                Some(
                    "host='/run/pg' port=55432 user='cloud_admin' dbname=postgres \
                     application_name=vm-monitor"
                )
            );
        }
    }
}
