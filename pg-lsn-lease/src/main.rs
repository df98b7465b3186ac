//! `pg-lsn-lease`: reads the compute document on stdin, leases its LSN on every shard of
//! its pageservers (once, or renewed with `--keep`), writes the leases on stdout
//! (README.md).

use std::process::ExitCode;

use clap::Parser;
use pg_lsn_lease::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    cli::run(&cli)
}
