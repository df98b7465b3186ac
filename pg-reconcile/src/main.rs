//! `pg-reconcile`: reads the compute document on stdin, reconciles the running instance
//! with its spec, writes the document with its `reconcile` section on stdout.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use compute_spec::logging::{self, LogFormat};

/// Make a running Postgres match the compute spec (exit 0 ok, 1 runtime, 2 usage).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Admin connection string (overrides the document's `connstr`).
    #[arg(long)]
    connstr: Option<String>,
    /// Spec file (bare spec or envelope) replacing the document's spec.
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Only plan: write `reconcile.plan` and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Parallel connections for per-database work.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Live-compute mode (uses the spec's `reconfigure_concurrency`).
    #[arg(long)]
    reconfigure: bool,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    let options = pg_reconcile::Options {
        connstr: cli.connstr,
        spec_file: cli.spec,
        dry_run: cli.dry_run,
        concurrency: cli.concurrency,
        reconfigure: cli.reconfigure,
    };
    compute_spec::stage::run(pg_reconcile::STAGE, |document| {
        pg_reconcile::run(document, &options)
    })
}
