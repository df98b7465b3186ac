//! The `pg-basebackup-fetch` binary: reads the compute document on stdin, prepares PGDATA,
//! writes the document with its `basebackup` section on stdout.

use std::process::ExitCode;

use clap::Parser;
use compute_spec::logging::{self, LogFormat};

/// Prepare PGDATA (initdb, a Neon pageserver, or a vanilla primary) from the compute document
/// on stdin. Exit codes: 0 ok, 1 run-time failure, 2 bad input.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format);
    compute_spec::stage::run(pg_basebackup_fetch::STAGE, pg_basebackup_fetch::run)
}
