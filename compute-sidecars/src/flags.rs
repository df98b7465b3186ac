//! The sidecars' command-line flags as compute-ctl takes them ([`SidecarArgs`], flattened into
//! its command line; upstream's names, defaults and environment variables) and the
//! parameters built from them once ([`SidecarParams`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::audit::AuditParams;
use crate::local_proxy::LocalProxyParams;
use crate::pgbouncer::PgbouncerParams;
use crate::vm_monitor::VmMonitorParams;
use crate::vm_tools::VmToolParams;

/// The flags of the programs beside Postgres.
#[derive(Debug, clap::Args)]
pub struct SidecarArgs {
    /// Resize swap to the spec's swap_size_bytes before start.
    #[arg(long)]
    pub resize_swap_on_bind: bool,
    /// Set a disk quota of the spec's disk_quota_bytes on this mountpoint before start.
    #[arg(long)]
    pub set_disk_quota_for_fs: Option<String>,
    /// vm-monitor cgroup (AUTOSCALING only).
    #[arg(long, env = "COMPUTE_CTL_CGROUP", default_value = "neon-postgres")]
    pub cgroup: String,
    /// vm-monitor's Postgres connection (AUTOSCALING only).
    #[arg(long)]
    pub filecache_connstr: Option<String>,
    /// vm-monitor websocket listen address (AUTOSCALING only).
    #[arg(long, default_value = "0.0.0.0:10301")]
    pub vm_monitor_addr: String,
    /// pgbouncer's INI file, where `pgbouncer_settings` are written (default: upstream's,
    /// `/etc/pgbouncer.ini` with AUTOSCALING set, else
    /// `/var/db/postgres/pgbouncer/pgbouncer.ini`).
    #[arg(long, env = "PGBOUNCER_CONFIG")]
    pub pgbouncer_config: Option<PathBuf>,
    /// pgbouncer's admin console, a libpq key=value string (default: upstream's,
    /// `host=/tmp port=6432 dbname=pgbouncer user=pgbouncer` with AUTOSCALING set, else
    /// `host=localhost port=6432 dbname=pgbouncer user=postgres sslmode=disable`).
    #[arg(long, env = "PGBOUNCER_ADMIN")]
    pub pgbouncer_admin: Option<String>,
    /// pgbouncer's pid file: that process gets SIGKILL on termination.
    #[arg(long, env = "PGBOUNCER_PID_FILE", default_value = crate::pgbouncer::PID_FILE)]
    pub pgbouncer_pid_file: PathBuf,
    /// local_proxy's configuration file, written from `local_proxy_config`.
    #[arg(long, env = "LOCAL_PROXY_CONFIG", default_value = crate::local_proxy::CONFIG)]
    pub local_proxy_config: PathBuf,
    /// local_proxy's pid file: SIGHUP after a new configuration, SIGTERM on termination, each
    /// only while the file is flock-held.
    #[arg(long, env = "LOCAL_PROXY_PID_FILE", default_value = crate::local_proxy::PID_FILE)]
    pub local_proxy_pid_file: PathBuf,
    /// The swap tool `--resize-swap-on-bind` runs (through `--vm-tools-sudo`).
    #[arg(long, default_value = crate::vm_tools::RESIZE_SWAP)]
    pub resize_swap_tool: PathBuf,
    /// The disk-quota tool `--set-disk-quota-for-fs` runs (through `--vm-tools-sudo`).
    #[arg(long, default_value = crate::vm_tools::SET_DISK_QUOTA)]
    pub set_disk_quota_tool: PathBuf,
    /// sudo for the swap and disk-quota tools; an empty value runs them directly.
    #[arg(long, default_value = crate::vm_tools::SUDO)]
    pub vm_tools_sudo: PathBuf,
    /// Where the audit and log-export rsyslog files are written (rsyslog must include it).
    #[arg(long, env = "COMPUTE_CTL_RSYSLOG_DIR", default_value = crate::audit::RSYSLOG_DIR)]
    pub rsyslog_dir: PathBuf,
    /// rsyslog's work directory (imfile's state), written into the audit configuration.
    #[arg(long, env = "COMPUTE_CTL_RSYSLOG_WORK_DIR", default_value = crate::audit::WORK_DIR)]
    pub rsyslog_work_dir: PathBuf,
    /// CA bundle rsyslog checks the AUDIT_LOGGING_TLS_ENDPOINT receiver's certificate with.
    #[arg(long, env = "COMPUTE_CTL_RSYSLOG_CA_FILE", default_value = crate::audit::CA_FILE)]
    pub rsyslog_ca_file: PathBuf,
    /// Shell command that restarts rsyslog after its files changed (default: upstream's
    /// `pkill rsyslogd`, which stops every rsyslogd on the machine, and a wait of at most 5 s
    /// for a supervisor to start it again).
    #[arg(long, env = "COMPUTE_CTL_RSYSLOG_RESTART")]
    pub rsyslog_restart: Option<String>,
    /// How often old audit log files (`<PGDATA>/log/audit*.log`, over 15 min) are deleted
    /// and `compute_audit_log_dir_size` is measured.
    #[arg(long, env = "COMPUTE_CTL_AUDIT_LOG_CLEANUP_INTERVAL", default_value = "60s", value_parser = stage_kit::deadline::parse_flag)]
    pub audit_log_cleanup_interval: Duration,
}

/// What the sidecars are run with, from [`SidecarArgs`].
#[derive(Clone, Debug)]
pub struct SidecarParams {
    /// vm-monitor (used only with AUTOSCALING).
    pub vm_monitor: VmMonitorParams,
    /// pgbouncer's files and admin console.
    pub pgbouncer: PgbouncerParams,
    /// local_proxy's files.
    pub local_proxy: LocalProxyParams,
    /// The pre-start swap and disk-quota tools.
    pub vm_tools: VmToolParams,
    /// rsyslog's files and restart, the audit log upkeep.
    pub audit: AuditParams,
}

impl SidecarArgs {
    /// The parameters (upstream's defaults where a flag was not given).
    pub fn into_params(self) -> SidecarParams {
        SidecarParams {
            vm_monitor: VmMonitorParams {
                cgroup: self.cgroup,
                pgconnstr: self.filecache_connstr,
                addr: self.vm_monitor_addr,
            },
            pgbouncer: PgbouncerParams::new(
                self.pgbouncer_config,
                self.pgbouncer_admin,
                self.pgbouncer_pid_file,
            ),
            local_proxy: LocalProxyParams {
                config: self.local_proxy_config,
                pid_file: self.local_proxy_pid_file,
            },
            vm_tools: VmToolParams {
                resize_swap_on_bind: self.resize_swap_on_bind,
                disk_quota_mountpoint: self.set_disk_quota_for_fs,
                resize_swap: self.resize_swap_tool,
                set_disk_quota: self.set_disk_quota_tool,
                sudo: self.vm_tools_sudo,
            },
            audit: AuditParams {
                rsyslog_dir: self.rsyslog_dir,
                work_dir: self.rsyslog_work_dir,
                ca_file: self.rsyslog_ca_file,
                restart: self
                    .rsyslog_restart
                    .filter(|command| !command.trim().is_empty()),
                cleanup_interval: self.audit_log_cleanup_interval,
            },
        }
    }
}
