//! `pg-sync-safekeepers`: decide the start LSN and add it to the compute document.

use std::process::ExitCode;

use clap::Parser;
use pg_sync_safekeepers::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    cli.run()
}
