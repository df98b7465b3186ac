//! `pg-prewarm`: reads the compute document on stdin, offloads the cache state of its
//! Postgres or prewarms it, writes the resulting state on stdout (README.md).

use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Parser;
use compute_spec::{exit_code, ErrorKind, StageError};
use pg_prewarm::{cli::Cli, STAGE};
use stage_kit::stage::{fail, read_input, write_json, StageInput};

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    let cancel = Arc::new(AtomicBool::new(false));
    if let Err(error) = cli.command.cancel_on_signals(&cancel) {
        return fail(StageError::new(
            STAGE,
            ErrorKind::Internal,
            format!("installing the signal handlers: {error}"),
        ));
    }
    let document = match read_input(STAGE) {
        Ok(StageInput::Document(document)) => document,
        Ok(StageInput::Failed(envelope)) => {
            tracing::error!("an earlier stage failed; passing its error through");
            write_json(&envelope);
            return ExitCode::from(exit_code::RUNTIME);
        }
        Err(error) => return fail(error),
    };
    match cli.command.run(&document, &cancel) {
        Ok(outcome) if write_json(&outcome) => ExitCode::from(outcome.exit_code()),
        Ok(_) => ExitCode::from(exit_code::RUNTIME),
        Err(error) => fail(StageError::new(STAGE, error.kind(), error.to_string())),
    }
}
