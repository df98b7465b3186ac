//! `compute-sidecars`: renders the sidecar files of the compute document on stdin (pgbouncer
//! settings, local_proxy's configuration, the rsyslog files) as JSON on stdout, checked as
//! compute-ctl checks them at a start, writing nothing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use compute_sidecars::audit::{self, AuditParams};
use compute_sidecars::render::render;
use compute_spec::error::{exit_code, ErrorKind, StageError};
use stage_kit::logging::LogFormat;
use stage_kit::stage::{read_input, StageInput};

/// The name in error envelopes.
const STAGE: &str = "compute-sidecars";

/// The files compute-ctl writes for the programs beside Postgres, from a compute document.
///
/// Exit status: 0 success; 1 an earlier stage's error envelope on stdin (passed through);
/// 2 bad input or usage. On failure stdout carries the error envelope
/// {"error": {"stage", "kind", "message", "retryable"}}.
#[derive(Debug, Parser)]
#[command(name = "compute-sidecars", version = stage_kit::VERSION)]
struct Cli {
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Reads the compute document on stdin and writes
    /// {"pgbouncer_settings", "local_proxy_config", "rsyslog": {"audit", "export"}} on stdout
    /// (null where the spec asks for none). The audit endpoint comes from
    /// AUDIT_LOGGING_TLS_ENDPOINT or AUDIT_LOGGING_ENDPOINT, as for compute-ctl.
    Render {
        /// rsyslog's work directory, written into the audit configuration.
        #[arg(long, env = "COMPUTE_CTL_RSYSLOG_WORK_DIR", default_value = audit::WORK_DIR)]
        rsyslog_work_dir: PathBuf,
        /// The CA bundle of the TLS audit endpoint.
        #[arg(long, env = "COMPUTE_CTL_RSYSLOG_CA_FILE", default_value = audit::CA_FILE)]
        rsyslog_ca_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stage_kit::logging::init(cli.log_format);
    let Command::Render {
        rsyslog_work_dir,
        rsyslog_ca_file,
    } = cli.command;
    let params = AuditParams {
        rsyslog_dir: PathBuf::from(audit::RSYSLOG_DIR),
        work_dir: rsyslog_work_dir,
        ca_file: rsyslog_ca_file,
        restart: None,
        cleanup_interval: Duration::ZERO,
    };
    let document = match read_input(STAGE) {
        Ok(StageInput::Document(document)) => document,
        Ok(StageInput::Failed(envelope)) => {
            tracing::error!("an earlier stage failed; passing its error through");
            stage_kit::stage::write_json(&envelope);
            return ExitCode::from(exit_code::RUNTIME);
        }
        Err(error) => return stage_kit::stage::fail(error),
    };
    match render(&document, &params, |name| std::env::var_os(name)) {
        Ok(rendered) => match stage_kit::stage::write_json(&rendered) {
            true => ExitCode::from(exit_code::OK),
            false => ExitCode::from(exit_code::RUNTIME),
        },
        Err(error) => stage_kit::stage::fail(StageError::new(
            STAGE,
            ErrorKind::InvalidSpec,
            error.to_string(),
        )),
    }
}
