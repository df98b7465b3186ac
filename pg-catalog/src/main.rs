//! The `pg-catalog` binary: parse flags, set up logging, run one catalog job.

use std::process::ExitCode;

use clap::Parser;
use pg_catalog::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    pg_catalog::cli::run(cli.command)
}
