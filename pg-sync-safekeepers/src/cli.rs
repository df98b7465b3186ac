//! Command-line flags of the `pg-sync-safekeepers` binary.

use std::process::ExitCode;

use compute_spec::logging::LogFormat;

/// Decide the LSN a compute starts from; reads the compute document on stdin, writes it with
/// the `sync_safekeepers` section on stdout. Exit codes: 0 ok, 1 run-time failure, 2 bad input.
#[derive(Debug, clap::Parser)]
#[command(name = "pg-sync-safekeepers", version)]
pub struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Cli {
    /// Runs the stage with these flags.
    pub fn run(&self) -> ExitCode {
        compute_spec::stage::run(crate::STAGE, crate::run)
    }
}
