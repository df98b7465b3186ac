//! `pg-reconcile`: makes a running Postgres match the compute spec.
//!
//! **Reads** from the compute document: the spec (roles, databases, `delta_operations`,
//! `cluster.settings`, `skip_pg_catalog_updates`, `reconfigure_concurrency`, `mode`), the
//! admin `connstr`, `privileged_role_name`, `pgdata` and `instance` (socket directory and
//! port). **Writes** the `reconcile` section: the plan (`sql` with passwords shown as
//! `'********'`, `phase`, `database`, `destructive`), how many statements ran, per-object
//! failures, settings pending a restart, and timings.
//!
//! How: connect; at start-up rewrite the managed block of `postgresql.conf` ([`settings`]),
//! on a reconfiguration render the whole file from the spec, replace it atomically, reload
//! and read every changed setting back ([`conf`]: a value Postgres refuses restores the
//! previous file and fails the run before any catalog work); take one catalog snapshot in one
//! round trip ([`snapshot`]); compute the ordered plan with the pure [`plan::plan`]; apply
//! it ([`apply`]) under the temporary override ([`override_file`]), batching statements and
//! spreading slow or per-database work over several connections; every fan-out takes its
//! connections from one pool ([`connections`]) that never holds more than
//! [`connection_limit`] open (the concurrency, capped well under the server's
//! `max_connections`), reusing a database's connection from phase to phase; with
//! `drop_subscriptions_before_start`, drop the subscriptions once per timeline and enable the
//! subscribers again ([`subscriptions`]). The configuration is reloaded (and the reload
//! awaited) when the file is newer than the server's last load, so a run that died between
//! writing and reloading is caught up; a file the server rejects at start-up is reported in
//! `conf_errors` instead of reloaded, and settings needing a restart in `pending_restart`.
//!
//! The plan's phases after roles and databases follow upstream's order: schema `public` of
//! each spec database ([`schema_perms`]), the extensions, `public.health_check` for
//! `/check_writability`, the role drops, and last the pgaudit extensions ([`plan::phases`]).
//! `--migrate` runs only the catalog migrations ([`migrate`]: numbered SQL files embedded at
//! build time, one transaction each, bookkeeping in `neon_migration.migration_id`), which
//! compute-ctl starts in the background after the start-up run of a primary; a start-up
//! `--dry-run` also lists the pending ones (`reconcile.migrations`).
//!
//! **Invariants**: plans before it acts; a second run on the same spec plans nothing; only
//! explicit deltas drop anything; the privileged role is created once and never altered;
//! every name and string value reaches SQL through `compute_spec::quote`, and role and
//! database options are rendered from `compute_spec::sqlopt`'s keyword table (a spec with an
//! option outside it, a setting that cannot be written safely, or a name of the cluster's own
//! objects (`compute_spec::reserved`), is refused with exit 2 before anything changes); passwords never appear in the section or the logs, nor in the
//! server's log (the sessions run with [`SILENT_STATEMENTS`]); a failing object does not
//! stop independent ones, and the stage then exits 1 naming them.
//!
//! ```
//! use pg_reconcile::startup_concurrency;
//! assert_eq!(startup_concurrency(Some(100)), 33);
//! ```
//!
//! Tests: planner cases in `src/plan_tests.rs`; real-Postgres tests in `tests/` (fixtures,
//! hostile names, deltas, delete_role across databases and grantors, more databases than
//! the server has connections, quoting round trips).
#![warn(missing_docs)]

pub mod apply;
pub mod cli;
pub mod concurrency;
pub mod conf;
pub mod connections;
pub mod migrate;
pub mod override_file;
pub mod plan;
pub mod revoke;
pub mod roles;
pub mod schema_perms;
pub mod settings;
pub mod snapshot;
pub mod sql;
pub mod step;
pub mod subscriptions;
pub mod tls;

use std::path::{Path, PathBuf};
use std::time::Instant;

use compute_spec::error::{ErrorKind, StageError};
use compute_spec::section::{PlannedStatement, ReconcileSection};
use compute_spec::spec::ComputeSpec;
use compute_spec::ComputeDocument;
pub use concurrency::{
    concurrency_at_startup, concurrency_on_reconfigure, connection_limit, startup_concurrency,
};
use connections::{Connections, Lease};
use stage_kit::local::{admin_config, admin_user};
use stage_kit::stage::elapsed_ms;

/// The stage name.
pub const STAGE: &str = "pg-reconcile";
/// The `application_name` of the reconciler's connections (as upstream).
pub const APPLICATION_NAME: &str = "compute_ctl:apply_config";

/// Session options that keep Postgres from logging the text of the reconciler's statements
/// (they carry password hashes): no `STATEMENT:` line after an error, no statement logging
/// by kind, duration, sampling or transaction sampling, and no pgaudit. All are superuser
/// settings; the admin role is a superuser.
pub const SILENT_STATEMENTS: &str = "-c log_min_error_statement=panic -c log_statement=none \
     -c log_min_duration_statement=-1 -c log_min_duration_sample=-1 \
     -c log_transaction_sample_rate=0 -c pgaudit.log=none";

/// The `application_name` of the migration connection (as upstream).
pub const MIGRATIONS_APPLICATION_NAME: &str = "compute_ctl:migrations";

/// Flags that change what the stage does.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Replaces the document's `connstr`.
    pub connstr: Option<String>,
    /// Replaces the document's spec with the one in this file.
    pub spec_file: Option<PathBuf>,
    /// Only plan.
    pub dry_run: bool,
    /// Most connections open at once (overrides the computed default; still capped by
    /// [`connection_limit`]).
    pub concurrency: Option<usize>,
}

/// One way of reconciling: [`startup`] or [`reconfigure`].
pub type Reconcile = fn(&ComputeDocument, &Options) -> Result<ReconcileSection, StageError>;

/// Runs the stage on a document: `reconcile` ([`startup`] or [`reconfigure`]), then the
/// section goes into the document; any failed object makes this an error naming them.
pub fn run(
    mut document: ComputeDocument,
    options: &Options,
    reconcile: Reconcile,
) -> Result<ComputeDocument, StageError> {
    apply_overrides(&mut document, options)?;
    let section = reconcile(&document, options)?;
    let failures = failure_summary(&section);
    document.reconcile = Some(section);
    match failures {
        Some(message) => Err(StageError::new(STAGE, ErrorKind::Postgres, message)),
        None => Ok(document),
    }
}

/// Reconciles a compute that is starting up with the document's spec: per-database work
/// runs on as many connections as [`concurrency_at_startup`] says. Errors are set-up
/// failures (no spec, no connection, unreadable catalog or configuration); failures of
/// single objects are in the returned section.
pub fn startup(
    document: &ComputeDocument,
    options: &Options,
) -> Result<ReconcileSection, StageError> {
    reconcile_with(document, options, Mode::Startup, &|spec, server_max| {
        concurrency_at_startup(spec, options, server_max)
    })
}

/// Reconciles a running compute with a new spec (`/configure`): the whole `postgresql.conf`
/// is rendered from the spec as a start renders it, replaced atomically, reloaded and read
/// back ([`conf::replace`]: a value Postgres refuses restores the previous file and fails);
/// then the catalog as [`startup`], with the spec's `reconfigure_concurrency`
/// ([`concurrency_on_reconfigure`]) instead of the start-up rule.
pub fn reconfigure(
    document: &ComputeDocument,
    options: &Options,
) -> Result<ReconcileSection, StageError> {
    reconcile_with(document, options, Mode::Reconfigure, &|spec, _| {
        concurrency_on_reconfigure(spec, options)
    })
}

/// Which of the two entry points runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// [`startup`]: `postgresql.conf` was just rendered by the start; only the managed block
    /// is brought up to date.
    Startup,
    /// [`reconfigure`]: the whole file is rendered again.
    Reconfigure,
}

/// Applies the pending catalog migrations ([`migrate`]) on a primary whose spec does not
/// say `skip_pg_catalog_updates` (otherwise nothing: `catalog_skipped`); with `--dry-run`
/// only lists them. The report is the section's `migrations` member; a failed migration
/// (rolled back, retried at the next run) is reported there, not as a failed run, so the
/// caller can count it by id: only set-up failures (no connection, no bookkeeping) are
/// errors.
pub fn migrations(
    document: &ComputeDocument,
    options: &Options,
) -> Result<ReconcileSection, StageError> {
    let started = Instant::now();
    let spec = document.require_spec(STAGE)?;
    let mut section = ReconcileSection {
        dry_run: options.dry_run,
        catalog_skipped: !plan::catalog_enabled(spec),
        ..Default::default()
    };
    if section.catalog_skipped {
        tracing::info!("no migrations: not a primary, or skip_pg_catalog_updates");
        return Ok(section);
    }
    let config = admin_config(document, STAGE, MIGRATIONS_APPLICATION_NAME, None)?;
    let mut client = config.connect(postgres::NoTls).map_err(|error| {
        StageError::new(
            STAGE,
            ErrorKind::Network,
            format!(
                "connecting for the migrations through {} port {}: {}; is the instance running?",
                document.instance.socket_dir.display(),
                document.instance.port,
                apply::message(&error)
            ),
        )
    })?;
    section.connect_ms = elapsed_ms(started);
    let report = if options.dry_run {
        migrate::dry_run(&mut client)
    } else {
        migrate::run(
            &mut client,
            &admin_user(document),
            &document.privileged_role_name,
        )
    }
    .map_err(|error| postgres_error("migrations (neon_migration bookkeeping)", &error))?;
    section.applied = report.applied.len();
    tracing::info!(
        from = report.from,
        to = report.to,
        pending = report.pending.len(),
        failed = report.failed.as_ref().map(|f| f.id),
        dry_run = options.dry_run,
        "migrations finished"
    );
    section.migrations = Some(report);
    section.config_ms = elapsed_ms(started);
    Ok(section)
}

/// What [`startup`] and [`reconfigure`] share; `concurrency` gives the number of connections
/// from the spec and the server's `max_connections`.
fn reconcile_with(
    document: &ComputeDocument,
    options: &Options,
    mode: Mode,
    concurrency: &dyn Fn(&ComputeSpec, Option<u32>) -> usize,
) -> Result<ReconcileSection, StageError> {
    let started = Instant::now();
    let spec = document.require_spec(STAGE)?;
    let mut section = ReconcileSection {
        dry_run: options.dry_run,
        catalog_skipped: !plan::catalog_enabled(spec),
        ..Default::default()
    };
    // A bad option or setting, or a spec that would take the cluster's own objects (a
    // hand-run stage too), is refused before anything changes.
    let admin = admin_user(document);
    let privileged = &document.privileged_role_name;
    spec.check_reserved(&compute_spec::reserved::Reserved {
        admin: &admin,
        privileged,
    })
    .map_err(invalid_spec)?;
    plan::check_options(spec).map_err(invalid_spec)?;
    let config = admin_config(document, STAGE, APPLICATION_NAME, None)?;
    let system_db = config.get_dbname().unwrap_or("postgres").to_string();
    // Connect first: when the instance is down, nothing changes.
    let mut client = connect(document, None)?;
    section.connect_ms = elapsed_ms(started);
    let conf = document.pgdata.join("postgresql.conf");
    let drop_due = drop_subscriptions_due(&mut client, spec)?;
    let dropped_before = !section.catalog_skipped && drop_due.is_none();
    match mode {
        Mode::Startup => {
            section.conf_changed = rewrite_settings(&conf, spec, options.dry_run)?;
        }
        Mode::Reconfigure => {
            // The certificate first: the file may turn `ssl` on, and the reload needs it.
            let tls_changed = tls::refresh(document, spec, options.dry_run)?;
            let text = conf::render(document, spec, dropped_before)?;
            let replaced = conf::replace(&mut client, &conf, &text, options.dry_run)?;
            section.conf_changed = replaced.changed;
            section.settings = replaced.settings;
            if tls_changed && !section.conf_changed {
                client
                    .batch_execute("SELECT pg_reload_conf()")
                    .map_err(|error| postgres_error("reloading the TLS certificate", &error))?;
            }
        }
    }
    let snapshot_started = Instant::now();
    let deleted = if section.catalog_skipped {
        Vec::new()
    } else {
        plan::deleted_roles(spec)
    };
    let mut snapshot = snapshot::take(&mut client, &deleted)
        .map_err(|error| postgres_error("reading the catalog snapshot", &error))?;
    // Every fan-out from here on takes its connections from `pool`, bounded by `limit`.
    let limit = connection_limit(concurrency(spec, snapshot.max_connections), &snapshot);
    let connector = |database: &str| connect(document, Some(database)).map_err(|e| e.message);
    let pool = Connections::new(&connector, limit);
    pool.adopt(&system_db, client);
    let admin = admin_user(document);
    if !section.catalog_skipped {
        let names = schema_perms::Names {
            system_db: &system_db,
            admin_user: &admin,
            privileged_role: &document.privileged_role_name,
        };
        schema_perms::read_all(&pool, &names, spec, &mut snapshot);
        if !snapshot.extensions.contains_key("neon") {
            tracing::info!(
                "the neon extension is not available (vanilla Postgres): its phase is skipped"
            );
        }
    }
    section.snapshot_ms = elapsed_ms(snapshot_started);
    section.pending_restart = snapshot.pending_restart.clone();
    section.conf_errors = snapshot.conf_errors.clone();
    let context = plan::PlanContext {
        privileged_role: document.privileged_role_name.clone(),
        admin_user: admin.clone(),
        system_db: system_db.clone(),
        // A file with errors is ignored whole by a reload: then only report them.
        reload: snapshot.conf_errors.is_empty()
            && ((mode == Mode::Startup && section.conf_changed)
                || settings::modified_after(&conf, snapshot.conf_loaded_at)),
        drop_subscriptions_for: drop_due.clone(),
    };
    let plan_started = Instant::now();
    let steps = plan::plan(spec, &context, &snapshot).map_err(invalid_spec)?;
    section.plan = planned(&steps);
    section.plan_ms = elapsed_ms(plan_started);
    if options.dry_run && mode == Mode::Startup && !section.catalog_skipped {
        // The start-up run is followed by the migrations: show which are pending.
        let report = migrate::dry_run(&mut *take(&pool, &system_db)?)
            .map_err(|error| postgres_error("reading neon_migration.migration_id", &error))?;
        section.migrations = Some(report);
    }
    if !options.dry_run {
        let apply_started = Instant::now();
        let catalog_work = steps.iter().any(|step| step.phase != plan::Phase::Settings);
        if catalog_work {
            override_file::set(&document.pgdata, &mut *take(&pool, &system_db)?)?;
        }
        let outcome = apply::apply(&steps, &pool, &system_db);
        section.applied = outcome.applied;
        section.failures = outcome.failures;
        let system = || {
            take(&pool, &system_db)?
                .keep()
                .ok_or_else(|| lost(&system_db))
        };
        after_apply(
            spec,
            catalog_work,
            drop_due.as_deref(),
            &conf,
            &document.pgdata,
            &system,
        )?;
        section.apply_ms = elapsed_ms(apply_started);
    }
    tracing::info!(
        limit = pool.limit(),
        opened = pool.opened(),
        "connections: at most `limit` open at once, `opened` in all"
    );
    section.config_ms = elapsed_ms(started);
    log_summary(&section);
    Ok(section)
}

/// After the catalog apply (failed or not): the temporary override emptied and reloaded when
/// it was set; the subscribers enabled once `drop_subscriptions_before_start` is recorded for
/// the timeline (`drop_due`: the timeline this run was to record, if any).
fn after_apply(
    spec: &ComputeSpec,
    catalog_work: bool,
    drop_due: Option<&str>,
    conf: &Path,
    pgdata: &Path,
    system: &dyn Fn() -> Result<postgres::Client, StageError>,
) -> Result<(), StageError> {
    if catalog_work {
        // Also after failures: `-1` must not stay live.
        override_file::clear(pgdata, system)?;
    }
    if !spec.drop_subscriptions_before_start || !plan::catalog_enabled(spec) {
        return Ok(());
    }
    let mut client = system()?;
    let done = match drop_due {
        None => true,
        Some(timeline) => subscriptions::done_for(&mut client, timeline)
            .map_err(|error| postgres_error("reading the subscription drop record", &error))?,
    };
    if done {
        conf::enable_subscribers(&mut client, conf)?;
    }
    Ok(())
}

/// The timeline whose `drop_subscriptions_before_start` is still to be done (the spec asks,
/// catalog work is on, and the timeline is not recorded yet).
fn drop_subscriptions_due(
    client: &mut postgres::Client,
    spec: &ComputeSpec,
) -> Result<Option<String>, StageError> {
    if !spec.drop_subscriptions_before_start || !plan::catalog_enabled(spec) {
        return Ok(None);
    }
    let timeline = subscriptions::timeline_of(spec).ok_or_else(|| {
        StageError::new(
            STAGE,
            ErrorKind::InvalidSpec,
            "drop_subscriptions_before_start needs the timeline: give timeline_id (or the \
             neon.timeline_id setting); nothing was changed",
        )
    })?;
    let done = subscriptions::done_for(client, &timeline)
        .map_err(|error| postgres_error("reading the subscription drop record", &error))?;
    Ok((!done).then_some(timeline))
}

fn apply_overrides(document: &mut ComputeDocument, options: &Options) -> Result<(), StageError> {
    if let Some(connstr) = &options.connstr {
        document.connstr = connstr.clone();
    }
    if let Some(path) = &options.spec_file {
        let text = stage_kit::bounded::read_file_string(path, stage_kit::bounded::SPEC_MAX_BYTES)
            .map_err(|error| {
            StageError::new(
                STAGE,
                ErrorKind::Usage,
                format!("reading --spec {error}; give a readable spec file"),
            )
        })?;
        document.spec = compute_spec::parse::parse_any(&text, &path.display().to_string())?.spec;
    }
    Ok(())
}

/// Rewrites the managed block of `path` (unless dry); true when it changed or would change.
fn rewrite_settings(path: &Path, spec: &ComputeSpec, dry_run: bool) -> Result<bool, StageError> {
    let io = |error: settings::SettingsError| {
        let kind = match error {
            settings::SettingsError::Refused(_) => ErrorKind::InvalidSpec,
            _ => ErrorKind::Io,
        };
        StageError::new(STAGE, kind, error.to_string())
    };
    let text = settings::read(path).map_err(io)?;
    let wanted = spec.cluster.settings.as_deref().unwrap_or_default();
    let Some(new_text) =
        settings::rewrite(&text, wanted, &path.display().to_string()).map_err(io)?
    else {
        return Ok(false);
    };
    if !dry_run {
        settings::write(path, &new_text).map_err(io)?;
        tracing::info!(file = %path.display(), "rewrote the managed settings block");
    }
    Ok(true)
}

/// A connection to `database` from `pool`, or the stage error saying why there is none.
fn take<'p, 'a>(pool: &'p Connections<'a>, database: &str) -> Result<Lease<'p, 'a>, StageError> {
    pool.take(database)
        .map_err(|message| StageError::new(STAGE, ErrorKind::Network, message))
}

fn lost(database: &str) -> StageError {
    StageError::new(
        STAGE,
        ErrorKind::Network,
        format!("the connection to {database:?} was lost"),
    )
}

/// An admin connection to `database` (the system database when `None`).
fn connect(
    document: &ComputeDocument,
    database: Option<&str>,
) -> Result<postgres::Client, StageError> {
    let mut config = admin_config(document, STAGE, APPLICATION_NAME, database)?;
    // As upstream: the neon extension must not echo our DDL back to the control plane.
    // Then: these sessions send password hashes, so Postgres must never log their statement
    // text, neither as the `STATEMENT:` of a failed batch nor through statement logging.
    let options = format!(
        "{} -c neon.forward_ddl=false {SILENT_STATEMENTS}",
        config.get_options().unwrap_or_default()
    );
    config.options(&options);
    config.connect(postgres::NoTls).map_err(|error| {
        let target = database.unwrap_or("the system database");
        StageError::new(
            STAGE,
            ErrorKind::Network,
            format!(
                "connecting to {target:?} through {} port {}: {}; is the instance running?",
                document.instance.socket_dir.display(),
                document.instance.port,
                apply::message(&error)
            ),
        )
    })
}

fn planned(steps: &[plan::Step]) -> Vec<PlannedStatement> {
    steps
        .iter()
        .flat_map(|step| {
            step.statements.iter().map(|sql| PlannedStatement {
                sql: sql.shown.clone(),
                phase: step.phase.reported(),
                database: step.database.clone(),
                destructive: sql.destructive,
            })
        })
        .collect()
}

fn log_summary(section: &ReconcileSection) {
    tracing::info!(
        planned = section.plan.len(),
        applied = section.applied,
        failed = section.failures.len(),
        dry_run = section.dry_run,
        conf_changed = section.conf_changed,
        config_ms = section.config_ms,
        "reconcile finished"
    );
    if !section.pending_restart.is_empty() {
        tracing::warn!(settings = ?section.pending_restart, "settings need a restart to apply");
    }
    if !section.conf_errors.is_empty() {
        tracing::warn!(errors = ?section.conf_errors, "postgresql.conf has settings the server rejects; it ignores the file on reload until they are fixed");
    }
    for failure in &section.failures {
        tracing::error!(object = %failure.object, database = %failure.database, sql = %failure.sql, error = %failure.error, "statement failed");
    }
}

/// The error message naming what failed, or `None` when everything applied.
fn failure_summary(section: &ReconcileSection) -> Option<String> {
    let first = section.failures.first()?;
    let mut objects: Vec<String> = Vec::new();
    for failure in &section.failures {
        let name = format!(
            "{} in {:?} ({})",
            failure.object, failure.database, failure.error
        );
        if !objects.contains(&name) {
            objects.push(name);
        }
    }
    let shown: Vec<String> = objects.iter().take(5).cloned().collect();
    let more = objects.len().saturating_sub(shown.len());
    let tail = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(format!(
        "{} of {} statement(s) failed, first in phase {}: {}{tail}; fix them and run pg-reconcile again \
         (the others were applied)",
        section.failures.len(),
        section.plan.len(),
        first.phase,
        shown.join("; "),
    ))
}

/// A spec refused before anything changed.
fn invalid_spec(error: impl std::fmt::Display) -> StageError {
    let message = format!("invalid spec, nothing was changed: {error}");
    StageError::new(STAGE, ErrorKind::InvalidSpec, message)
}

fn postgres_error(what: &str, error: &postgres::Error) -> StageError {
    StageError::new(
        STAGE,
        ErrorKind::Postgres,
        format!("{what}: {}", apply::message(error)),
    )
}
