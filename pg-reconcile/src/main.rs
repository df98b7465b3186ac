//! `pg-reconcile`: reads the compute document on stdin, reconciles the running instance
//! with its spec, writes the document with its `reconcile` section on stdout.

use std::process::ExitCode;

use clap::Parser;
use pg_reconcile::{cli::Cli, run, STAGE};

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    stage_kit::stage::begin_trace(STAGE, cli.trace);
    let options = cli.options();
    let reconcile = cli.reconcile();
    stage_kit::stage::run(STAGE, |document| run(document, &options, reconcile))
}
