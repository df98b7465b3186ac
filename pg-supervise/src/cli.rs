//! The `pg-supervise` command line: flags, parsed once into [`Options`].

use std::time::Duration;

use stage_kit::logging::LogFormat;

/// `pg-supervise`: run Postgres from the compute document on stdin and report its life as JSON
/// events on stdout (`ready`, `activity`, `downtime`, `exited`).
///
/// Exit status: Postgres's exit code; 1 if it died by a signal, stdout was closed, or it failed
/// to start (then with an error envelope on stdout); 2 for bad input or usage.
///
/// Signals: SIGTERM/SIGINT → fast shutdown, SIGQUIT → immediate; a further signal or
/// --shutdown-timeout escalates (fast → immediate → SIGKILL). SIGHUP is forwarded (reload).
#[derive(Clone, Debug, clap::Parser)]
#[command(name = "pg-supervise", version = stage_kit::VERSION)]
pub struct Cli {
    /// How long to wait for `postmaster.pid` to say `ready` (e.g. `60s`, `500ms`).
    #[arg(long, default_value = "60s", value_parser = stage_kit::deadline::parse_flag)]
    pub ready_timeout: Duration,
    /// How long each shutdown step may take before escalating (fast → immediate → SIGKILL).
    #[arg(long, default_value = "30s", value_parser = stage_kit::deadline::parse_flag)]
    pub shutdown_timeout: Duration,
    /// The OS user to run Postgres as when started as root (default `postgres`).
    #[arg(long)]
    pub user: Option<String>,
    /// Tell systemd `READY=1` and `STOPPING=1` through `$NOTIFY_SOCKET`.
    #[arg(long)]
    pub notify: bool,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Do not run the activity monitor (no `activity` or `downtime` events).
    #[arg(long)]
    pub no_monitor: bool,
    /// How long to wait for another process's lock on PGDATA (`<pgdata>.compute-tools.lock`)
    /// before failing naming it; run by compute-ctl, the stage uses the lock it hands down.
    #[arg(long, default_value = "10s", value_parser = stage_kit::deadline::parse_flag)]
    pub pgdata_lock_timeout: Duration,
}

/// What the supervisor needs from the flags.
#[derive(Clone, Debug)]
pub struct Options {
    /// See [`Cli::ready_timeout`].
    pub ready_timeout: Duration,
    /// See [`Cli::shutdown_timeout`].
    pub shutdown_timeout: Duration,
    /// See [`Cli::user`].
    pub user: Option<String>,
    /// See [`Cli::notify`].
    pub notify: bool,
    /// Whether to run the activity monitor.
    pub monitor: bool,
    /// See [`Cli::pgdata_lock_timeout`].
    pub pgdata_lock_timeout: Duration,
}

impl From<&Cli> for Options {
    fn from(cli: &Cli) -> Options {
        Options {
            ready_timeout: cli.ready_timeout,
            shutdown_timeout: cli.shutdown_timeout,
            user: cli.user.clone(),
            notify: cli.notify,
            monitor: !cli.no_monitor,
            pgdata_lock_timeout: cli.pgdata_lock_timeout,
        }
    }
}
