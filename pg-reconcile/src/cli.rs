//! The `pg-reconcile` command line.

use std::path::PathBuf;

use stage_kit::logging::LogFormat;

use crate::{migrations, reconfigure, startup, Options, Reconcile};

/// Make a running Postgres match the compute spec: reads the compute document on stdin and
/// writes it on stdout with its `reconcile` section.
///
/// Exit status: 0 success; 1 run-time failure (the instance unreachable, or statements
/// failed: the message names the objects); 2 bad input or usage. On failure stdout carries
/// the error envelope {"error": {"stage", "kind", "message", "retryable"}}.
#[derive(Debug, clap::Parser)]
#[command(name = "pg-reconcile", version = stage_kit::VERSION)]
pub struct Cli {
    /// Admin connection string (overrides the document's `connstr`).
    #[arg(long)]
    pub connstr: Option<String>,
    /// Spec file (bare spec or `{spec, compute_ctl_config}`) replacing the document's spec.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    /// Only plan: write `reconcile.plan` and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Most connections open at once, for all the run's work (default: from
    /// `max_connections` at start-up, the spec's `reconfigure_concurrency` with
    /// --reconfigure); never more than the server's `max_connections` less its reserved
    /// connections and a tenth.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Live-compute mode (a reconfiguration rather than a start-up): the whole
    /// postgresql.conf is rendered from the spec, reloaded and read back; a value Postgres
    /// refuses restores the previous file and fails with exit 2.
    #[arg(long, conflicts_with = "migrate")]
    pub reconfigure: bool,
    /// Only the catalog migrations (schema neon_migration), as after a start-up: the ones
    /// not applied yet run in order, each in its own transaction. The report is
    /// `reconcile.migrations` ({from, to, pending, applied, failed}); a failed migration is
    /// rolled back and reported there (exit 0). With --dry-run: only list the pending ones.
    #[arg(long)]
    pub migrate: bool,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// `--export-trace`.
    #[command(flatten)]
    pub trace: stage_kit::stage::TraceArgs,
}

impl Cli {
    /// The library options these flags ask for.
    pub fn options(&self) -> Options {
        Options {
            connstr: self.connstr.clone(),
            spec_file: self.spec.clone(),
            dry_run: self.dry_run,
            concurrency: self.concurrency,
        }
    }

    /// How to reconcile: [`reconfigure`] a running compute with `--reconfigure`,
    /// [`migrations`] with `--migrate`, else [`startup`].
    pub fn reconcile(&self) -> Reconcile {
        if self.reconfigure {
            reconfigure
        } else if self.migrate {
            migrations
        } else {
            startup
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn flags_parse() {
        Cli::command().debug_assert();
        let cli = Cli::parse_from([
            "pg-reconcile",
            "--dry-run",
            "--concurrency",
            "3",
            "--reconfigure",
        ]);
        let options = cli.options();
        assert!(options.dry_run && cli.reconfigure);
        assert_eq!(options.concurrency, Some(3));
        assert!(!Cli::parse_from(["pg-reconcile"]).reconfigure);
        assert!(Cli::parse_from(["pg-reconcile", "--migrate"]).migrate);
        assert!(Cli::try_parse_from(["pg-reconcile", "--migrate", "--reconfigure"]).is_err());
    }
}
