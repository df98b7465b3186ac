//! The `pg-supervise` binary: parse flags, set up logging, supervise Postgres, exit with its code.

use std::process::ExitCode;

use clap::Parser;
use pg_supervise::{Cli, Options};

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    pg_supervise::run(&Options::from(&cli))
}
