//! `pg-promote`: reads a replica's compute document on stdin, promotes its Postgres to a
//! primary, writes the answer on stdout (README.md).

use std::process::ExitCode;

use clap::Parser;
use pg_promote::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    pg_promote::cli::run(&cli)
}
