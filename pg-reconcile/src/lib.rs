//! `pg-reconcile`: makes a running Postgres match the compute spec.
//!
//! Reads from the compute document the spec (roles, databases, deltas, settings), the admin
//! `connstr`, `privileged_role_name` and `instance` (socket directory and port), and writes
//! the `reconcile` section: the plan, how many statements ran, per-statement failures and
//! `config_ms`.
//!
//! Invariants: it plans before it acts (one catalog snapshot, then the pure
//! [`plan::plan`]); a second run on the same spec plans nothing; all quoting goes through
//! `compute_spec::quote`; passwords never appear in the section or the logs.
//!
//! Tests: planner unit tests in `src/plan.rs`; tests against a real Postgres in `tests/`.
#![warn(missing_docs)]

pub mod apply;
pub mod plan;
pub mod snapshot;
pub mod sql;

use std::path::PathBuf;
use std::time::Instant;

use compute_spec::error::{ErrorKind, StageError};
use compute_spec::local::admin_config;
use compute_spec::section::{PlannedStatement, ReconcileSection};
use compute_spec::ComputeDocument;

/// The stage name.
pub const STAGE: &str = "pg-reconcile";
/// The `application_name` of the reconciler's connections (as upstream).
pub const APPLICATION_NAME: &str = "compute_ctl:apply_config";

/// Flags that change what the stage does.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Replaces the document's `connstr`.
    pub connstr: Option<String>,
    /// Replaces the document's spec with the one in this file.
    pub spec_file: Option<PathBuf>,
    /// Only plan.
    pub dry_run: bool,
    /// Parallel connections for per-database work (overrides the computed default).
    pub concurrency: Option<usize>,
    /// Live-compute mode: `reconfigure_concurrency` applies.
    pub reconfigure: bool,
}

/// Runs the stage on a document.
pub fn run(
    mut document: ComputeDocument,
    options: &Options,
) -> Result<ComputeDocument, StageError> {
    let started = Instant::now();
    if let Some(connstr) = &options.connstr {
        document.connstr = connstr.clone();
    }
    if let Some(path) = &options.spec_file {
        let text = std::fs::read_to_string(path).map_err(|error| {
            StageError::new(
                STAGE,
                ErrorKind::Io,
                format!("reading --spec {}: {error}", path.display()),
            )
        })?;
        let loaded = compute_spec::load::parse_any(&text, &path.display().to_string())?;
        document.spec = loaded.spec;
    }
    let spec = document.require_spec(STAGE)?.clone();
    let config = admin_config(&document, STAGE, APPLICATION_NAME, None)?;
    let system_db = config.get_dbname().unwrap_or("postgres").to_string();
    let mut client = config.connect(postgres::NoTls).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Network,
            format!(
                "connecting to postgres at {}: {error}; is the instance running?",
                document.instance.socket_dir.display()
            ),
        )
    })?;
    let snapshot = snapshot::take(&mut client)
        .map_err(|error| postgres_error("reading the catalog", &error))?;
    let context = plan::PlanContext {
        privileged_role: document.privileged_role_name.clone(),
        system_db,
    };
    let statements = plan::plan(&spec, &context, &snapshot);
    let mut section = ReconcileSection {
        dry_run: options.dry_run,
        plan: statements.iter().map(planned).collect(),
        ..Default::default()
    };
    if !options.dry_run {
        let outcome = apply::apply(&mut client, &statements);
        section.applied = outcome.applied;
        section.failures = outcome.failures;
    }
    section.config_ms = compute_spec::stage::elapsed_ms(started);
    let failed = section.failures.len();
    document.reconcile = Some(section);
    if failed > 0 {
        return Err(StageError::new(
            STAGE,
            ErrorKind::Postgres,
            format!("{failed} statement(s) failed; see the reconcile section"),
        ));
    }
    Ok(document)
}

fn planned(statement: &plan::Statement) -> PlannedStatement {
    PlannedStatement {
        sql: statement.shown.clone(),
        phase: statement.phase.name().to_string(),
        database: statement.database.clone(),
        destructive: statement.destructive,
    }
}

fn postgres_error(what: &str, error: &postgres::Error) -> StageError {
    let message = error
        .as_db_error()
        .map_or_else(|| error.to_string(), |db| db.message().to_string());
    StageError::new(STAGE, ErrorKind::Postgres, format!("{what}: {message}"))
}
