//! The `pg-promote` command line: the replica's compute document on stdin, the promotion's
//! answer on stdout (`{"status":"completed",…}`, the shape of compute-ctl's `/promote`), or
//! the error envelope and [`compute_spec::exit_code`]'s code.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use compute_spec::error::{exit_code, ErrorEnvelope, ErrorKind, StageError};
use compute_spec::reserved::Reserved;
use compute_spec::spec::{ComputeMode, ComputeSpec};
use compute_spec::validate::SpecErrors;
use compute_spec::{ComputeDocument, Lsn};
use pg_prewarm::PrewarmState;
use stage_kit::logging::LogFormat;
use stage_kit::stage::{fail, read_input, write_json, StageInput};

use crate::{Error, Host, PromoteRequest, PromoteState, Promotion, Status, STAGE};

/// Promote a streaming replica to a primary: reads the replica's compute document on stdin
/// (its `connstr`, `instance.socket_dir` and `instance.port` say where Postgres is; its
/// spec's `mode` must be `Replica`, with `upstream_connstring` for a vanilla replica), waits
/// until replay reaches the target LSN, runs `pg_promote()`, checks that the server takes
/// writes, and writes {"status":"completed","lsn_wait_time_ms",…,"reconfigure_time_ms"}.
///
/// Exit status: 0 promoted; 1 run-time failure (Postgres or the primary unreachable, replay
/// not caught up within 20 s, pg_promote() failing, --reconfigure failing after the
/// promotion); 2 bad input or usage (the document, the new spec, a compute that is not a
/// replica, a server that is not in recovery). On failure stdout carries the error envelope
/// {"error": {"stage", "kind", "message", "retryable"}}.
#[derive(Debug, clap::Parser)]
#[command(name = "pg-promote", version = stage_kit::VERSION)]
pub struct Cli {
    /// The new primary's spec, a JSON file (default: the document's spec, as `Primary`).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// The LSN replay must reach first, e.g. 0/3000060. Without it a vanilla replica catches
    /// up with its primary's current WAL insert position (read over `upstream_connstring`);
    /// a Neon replica needs it.
    #[arg(long, value_name = "LSN")]
    pub wal_flush_lsn: Option<Lsn>,
    /// Once promoted, apply the new spec as compute-ctl does: `pg-reconcile --reconfigure`
    /// on the document with the new spec (`postgresql.conf` rendered whole from the spec,
    /// reloaded; roles, databases and the rest applied). Without it the configuration is left
    /// as it is.
    #[arg(long)]
    pub reconfigure: bool,
    /// The `pg-reconcile` that --reconfigure runs (default: the one beside this program, else
    /// `pg-reconcile` on PATH).
    #[arg(long, value_name = "PATH", requires = "reconfigure")]
    pub pg_reconcile: Option<PathBuf>,
    /// How long --reconfigure's `pg-reconcile` may run before it is killed (humantime, or
    /// seconds).
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = stage_kit::deadline::parse_flag)]
    pub reconfigure_timeout: Duration,
    /// Log line format on stderr (also passed to `pg-reconcile`).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

/// The most of `pg-reconcile`'s stdout kept (the document it writes back).
const RECONCILE_STDOUT_CAP: usize = 16 * 1024 * 1024;

/// Reads the document, promotes its compute, writes the answer; the exit code.
pub fn run(cli: &Cli) -> ExitCode {
    let document = match read_input(STAGE) {
        Ok(StageInput::Document(document)) => *document,
        Ok(StageInput::Failed(envelope)) => {
            tracing::error!("an earlier stage failed; passing its error through");
            write_json(&envelope);
            return ExitCode::from(exit_code::RUNTIME);
        }
        Err(error) => return fail(error),
    };
    match promote(cli, &document) {
        Ok(state) if write_json(&state) => ExitCode::from(exit_code::OK),
        Ok(_) => ExitCode::from(exit_code::RUNTIME),
        Err(error) => fail(error),
    }
}

/// Promotes the compute of `document` as the flags say: the `completed` answer, or the error
/// to put in the envelope.
pub fn promote(cli: &Cli, document: &ComputeDocument) -> Result<PromoteState, StageError> {
    let request = PromoteRequest {
        spec: new_spec(cli.spec.as_deref(), document)?,
        wal_flush_lsn: cli.wal_flush_lsn,
    };
    let host = ByHand {
        document,
        reconcile: cli.reconfigure.then(|| Reconcile {
            program: cli
                .pg_reconcile
                .clone()
                .unwrap_or_else(|| beside_this_program("pg-reconcile")),
            timeout: cli.reconfigure_timeout,
            log_format: cli.log_format,
        }),
    };
    let promotion = Promotion::new();
    match promotion.promote(&host, &request) {
        Err(invalid) => Err(StageError::new(
            STAGE,
            ErrorKind::InvalidSpec,
            invalid.to_string(),
        )),
        Ok(PromoteState::Failed { error }) => {
            Err(StageError::new(STAGE, error.kind(), error.to_string()))
        }
        Ok(completed) => Ok(completed.clone()),
    }
}

/// The spec of the new primary: `--spec`'s file, else the document's spec as `Primary`.
fn new_spec(path: Option<&Path>, document: &ComputeDocument) -> Result<ComputeSpec, StageError> {
    let Some(path) = path else {
        let error = Error::NoSpec;
        let mut spec = document
            .spec
            .clone()
            .ok_or_else(|| StageError::new(STAGE, error.kind(), error.to_string()))?;
        spec.mode = ComputeMode::Primary;
        return Ok(spec);
    };
    let text = std::fs::read_to_string(path).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Io,
            format!("reading the new spec {}: {error}", path.display()),
        )
    })?;
    compute_spec::parse::decode(&text).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::InvalidSpec,
            format!(
                "the new spec {} is not a valid spec: {error}",
                path.display()
            ),
        )
    })
}

/// `name` in the directory of this program when it is there, else the bare name (looked up
/// on PATH).
fn beside_this_program(name: &str) -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join(name)));
    match beside {
        Some(path) if path.exists() => path,
        _ => PathBuf::from(name),
    }
}

/// A promotion by hand: the compute is the document's, taken as running; no prewarm job.
struct ByHand<'a> {
    document: &'a ComputeDocument,
    /// The reconfiguration (`--reconfigure`), if asked for.
    reconcile: Option<Reconcile>,
}

impl Host for ByHand<'_> {
    fn current(&self) -> (Option<ComputeDocument>, Status) {
        (Some(self.document.clone()), Status::Running)
    }

    fn prewarm_state(&self) -> Option<PrewarmState> {
        None
    }

    fn validate(&self, spec: &ComputeSpec) -> Result<(), SpecErrors> {
        let admin = stage_kit::local::admin_user(self.document);
        let reserved = Reserved {
            admin: &admin,
            privileged: &self.document.privileged_role_name,
        };
        spec.validate_for(&reserved).map(|_| ())
    }

    fn reconfigure(&self, spec: ComputeSpec) -> Result<(), String> {
        match &self.reconcile {
            None => {
                tracing::info!("promoted; the configuration is left as it is (no --reconfigure)");
                Ok(())
            }
            Some(reconcile) => reconcile.run(self.document, spec),
        }
    }
}

/// `pg-reconcile --reconfigure`, as compute-ctl runs it for `/configure` and `/promote`.
struct Reconcile {
    program: PathBuf,
    timeout: Duration,
    log_format: LogFormat,
}

impl Reconcile {
    /// Runs it on `document` with `spec`; the error says what failed (a promotion reports it
    /// after `promoted, but `).
    fn run(&self, document: &ComputeDocument, spec: ComputeSpec) -> Result<(), String> {
        let failed = |why: String| format!("reconfiguring as primary failed: {why}");
        let mut document = document.clone();
        document.spec = Some(spec);
        let input = serde_json::to_vec(&document)
            .map_err(|error| failed(format!("encoding the document: {error}")))?;
        let log_format = match self.log_format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        let mut command = Command::new(&self.program);
        command.args(["--reconfigure", "--log-format", log_format]);
        let output = stage_kit::child::run_with_input(
            &mut command,
            &input,
            self.timeout,
            RECONCILE_STDOUT_CAP,
        )
        .map_err(|error| failed(error.to_string()))?;
        // Its log, after ours (kept by the runner up to its cap).
        let _ = std::io::stderr().write_all(&output.stderr);
        if output.status.success() {
            return Ok(());
        }
        Err(failed(
            match serde_json::from_slice::<ErrorEnvelope>(&output.stdout) {
                Ok(envelope) => envelope.error.message,
                Err(_) => format!(
                    "{} ended with {} and no error envelope; see its log above",
                    self.program.display(),
                    output.status
                ),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn flags_parse() {
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from(["pg-promote"]).unwrap();
        assert!(!cli.reconfigure && cli.spec.is_none() && cli.wal_flush_lsn.is_none());
        assert_eq!(cli.reconfigure_timeout, Duration::from_secs(600));
        let cli = Cli::try_parse_from([
            "pg-promote",
            "--wal-flush-lsn",
            "0/3000060",
            "--reconfigure",
            "--pg-reconcile",
            "/x/pg-reconcile",
            "--reconfigure-timeout",
            "90",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(cli.wal_flush_lsn, Some(Lsn(0x300_0060)));
        assert_eq!(cli.reconfigure_timeout, Duration::from_secs(90));
        assert_eq!(cli.log_format, LogFormat::Json);
        for bad in [
            &["pg-promote", "--wal-flush-lsn", "nonsense"][..],
            &["pg-promote", "--pg-reconcile", "/x"],
            &["pg-promote", "--reconfigure-timeout", "soon"],
        ] {
            let error = Cli::try_parse_from(bad).unwrap_err();
            assert_eq!(error.exit_code(), i32::from(exit_code::USAGE), "{bad:?}");
        }
    }
}
