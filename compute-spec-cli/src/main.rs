//! `compute-spec`: load a spec, validate it, write the compute document on stdout.

use std::process::ExitCode;

use clap::Parser;
use compute_spec_cli::cli::{run, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    run(&cli)
}
