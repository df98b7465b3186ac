//! Command-line flags of the `pg-sync-safekeepers` binary.

use std::process::ExitCode;
use std::time::Duration;

use stage_kit::logging::LogFormat;

use crate::signals::SignalForwarding;
use crate::SyncOptions;

/// Decide the LSN a compute starts from; reads the compute document on stdin, writes it with
/// the `sync_safekeepers` section on stdout. Exit codes: 0 ok, 1 run-time failure, 2 bad input.
#[derive(Debug, clap::Parser)]
#[command(name = "pg-sync-safekeepers", version = stage_kit::VERSION)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Deadline for `postgres --sync-safekeepers` (all attempts) or the upstream query, e.g.
    /// `60s`, `500ms`; at the deadline the child is killed.
    #[arg(long, default_value = "60s", value_parser = stage_kit::deadline::parse_flag)]
    pub timeout: Duration,
    /// Time allowed to one connection to a vanilla upstream primary (connect, startup,
    /// authentication, IDENTIFY_SYSTEM); a refused, cut or silent one is tried again while
    /// --timeout lasts.
    #[arg(long, default_value = "30s", value_parser = stage_kit::deadline::parse_flag)]
    pub startup_timeout: Duration,
    /// Retries after a failed `postgres --sync-safekeepers` (backoff min(1.1^n, 3) s).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Time allowed to each safekeeper for TIMELINE_STATUS on the fast path.
    #[arg(long, default_value = "100ms", value_parser = stage_kit::deadline::parse_flag)]
    pub fast_path_timeout: Duration,
    /// Sync once more after Postgres exited: no fast path, PGDATA and its postgresql.conf are
    /// used as they are.
    #[arg(long)]
    pub after_shutdown: bool,
    /// `--export-trace`.
    #[command(flatten)]
    pub trace: stage_kit::stage::TraceArgs,
}

impl Cli {
    /// The library options these flags mean (with signal forwarding when `signals` is given).
    pub fn options(&self, signals: Option<SignalForwarding>) -> SyncOptions {
        SyncOptions {
            timeout: self.timeout,
            startup_timeout: self.startup_timeout,
            retries: self.retries,
            fast_path_timeout: self.fast_path_timeout,
            after_shutdown: self.after_shutdown,
            signals,
        }
    }

    /// Runs the stage with these flags, forwarding SIGTERM/SIGINT to the child.
    pub fn run(&self) -> ExitCode {
        let signals = match SignalForwarding::install() {
            Ok(signals) => Some(signals),
            Err(error) => {
                tracing::warn!("cannot catch SIGTERM/SIGINT to forward them: {error}");
                None
            }
        };
        let options = self.options(signals);
        stage_kit::stage::begin_trace(crate::STAGE, self.trace);
        stage_kit::stage::run(crate::STAGE, |doc| crate::run(doc, &options))
    }
}
