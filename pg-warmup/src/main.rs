//! The `pg-warmup` binary: the compute document on stdin, upstream's VM memory prewarm on a
//! throwaway cluster beside its PGDATA, the [`pg_warmup::Report`] as one JSON line on stdout;
//! the error envelope and [`compute_spec::exit_code`]'s code on failure.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use compute_spec::error::{ErrorKind, StageError};
use pg_warmup::{warm_up, Params, WarmupError};
use stage_kit::logging::LogFormat;
use stage_kit::runas::PostgresUser;
use stage_kit::stage::{fail, read_input, write_json, StageInput};

/// The stage name in logs and error envelopes.
const STAGE: &str = "pg-warmup";

/// Warm a pooled compute's VM up before it has a spec (upstream's "prewarm VM memory"):
/// reads the compute document on stdin (`pgdata`, `pgbin`, `instance.host.neon_library`),
/// makes a throwaway cluster in `<pgdata>.warmup` with `initdb`, starts it with
/// shared_buffers of 512 MiB listening nowhere, stops it once ready (SIGQUIT) and removes it.
/// Writes {"dir", "shared_buffers_pages", "neon_preloaded", "initdb_ms", "start_ms",
/// "total_ms"} on stdout.
///
/// Exit status: 0 warmed up; 1 a step failed (the directory is removed all the same), or
/// `<pgdata>.warmup` exists and is not ours (it is left alone); 2 bad input. On failure
/// stdout carries the error envelope {"error": {"stage", "kind", "message", "retryable"}}.
#[derive(Debug, Parser)]
#[command(name = "pg-warmup", version = stage_kit::VERSION)]
struct Cli {
    /// The deadline of initdb, and separately of the server's start and of its stop.
    #[arg(long, default_value = "60s", value_parser = stage_kit::deadline::parse_flag)]
    step_timeout: Duration,
    /// The OS user to run as when started as root.
    #[arg(long, default_value = stage_kit::runas::DEFAULT_OS_USER)]
    postgres_user: String,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    let document = match read_input(STAGE) {
        Ok(StageInput::Document(document)) => *document,
        Ok(StageInput::Failed(envelope)) => {
            tracing::error!("an earlier stage failed; passing its error through");
            write_json(&envelope);
            return ExitCode::from(compute_spec::exit_code::RUNTIME);
        }
        Err(error) => return fail(error),
    };
    let user = match PostgresUser::for_current_process(Some(&cli.postgres_user)) {
        Ok(user) => user,
        Err(error) => {
            return fail(StageError::new(
                STAGE,
                ErrorKind::Usage,
                format!("--postgres-user {}: {error}", cli.postgres_user),
            ))
        }
    };
    let params = Params {
        pgbin: document.pgbin.clone(),
        pgdata: document.pgdata.clone(),
        user,
        neon_library: document.instance.host.neon_library,
        step_deadline: cli.step_timeout,
    };
    match warm_up(&params) {
        Ok(report) if write_json(&report) => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(compute_spec::exit_code::RUNTIME),
        Err(error) => {
            let kind = match &error {
                WarmupError::Foreign { .. } => ErrorKind::Refused,
                WarmupError::Io { .. } => ErrorKind::Io,
                WarmupError::Initdb(_) | WarmupError::Server(_) => ErrorKind::Child,
            };
            fail(StageError::new(STAGE, kind, error.to_string()))
        }
    }
}
