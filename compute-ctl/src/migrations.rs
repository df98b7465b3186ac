//! The catalog migrations (upstream's `neon_migration`, §4.2), run in the background after
//! the start-up apply of a primary whose spec does not say `skip_pg_catalog_updates`; never
//! on `/configure`. They run as `pg-reconcile --migrate` (the SQL files are pg-reconcile's
//! data): each migration in its own transaction, a failed one rolled back and retried at
//! the next start. The run's report (`reconcile.migrations` of the document it writes) names
//! a failed migration's id, which is counted in
//! `compute_ctl_db_migration_failed_total{migration_id}`; start-up is never affected.

use std::ffi::OsString;
use std::sync::Arc;

use compute_spec::section::MigrationReport;
use compute_spec::spec::ComputeMode;
use compute_spec::ComputeDocument;

use crate::stages::{self, name, ChildPid};
use crate::state::Shared;

/// The flag that makes pg-reconcile run only the migrations.
pub const MIGRATE_FLAG: &str = "--migrate";

/// Whether the start-up of `document` runs the migrations: a primary without
/// `skip_pg_catalog_updates` (the same rule as the start-up apply).
pub fn wanted(document: &ComputeDocument) -> bool {
    document
        .spec
        .as_ref()
        .is_some_and(|spec| spec.mode == ComputeMode::Primary && !spec.skip_pg_catalog_updates)
}

/// The report in a document pg-reconcile `--migrate` wrote (`None` when it has none).
pub fn report_of(document: &ComputeDocument) -> Option<&MigrationReport> {
    document.reconcile.as_ref()?.migrations.as_ref()
}

/// Counts a failed migration in `shared` (the metric's series for its id).
pub fn count_failure(shared: &Shared, id: i64) {
    shared.update(|inner| {
        *inner.counters.migration_failures.entry(id).or_insert(0) += 1;
    });
}

/// Starts the migrations in a background thread when [`wanted`]; `log_args` are the
/// stages' logging flags.
pub fn spawn(document: &ComputeDocument, shared: &Arc<Shared>, log_args: Vec<OsString>) {
    if !wanted(document) {
        return;
    }
    let bytes = match stages::document_bytes(document) {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::error!(%error, "migrations not started");
            return;
        }
    };
    let shared = shared.clone();
    let started = std::thread::Builder::new()
        .name("migrations".into())
        .spawn(move || run(&bytes, &shared, log_args));
    if let Err(error) = started {
        tracing::error!(%error, "cannot start the migrations thread");
    }
}

/// One `pg-reconcile --migrate` run, its outcome logged and a failure counted.
fn run(document: &[u8], shared: &Shared, mut args: Vec<OsString>) {
    args.push(MIGRATE_FLAG.into());
    let started = std::time::Instant::now();
    let result = stages::run(name::RECONCILE, &args, document, &ChildPid::default());
    let ms = started.elapsed().as_millis() as u64;
    let written = match result {
        Ok(written) => written,
        Err(error) => {
            // The bookkeeping itself failed (or the instance went away): no migration ran.
            tracing::error!(%error, ms, "migrations failed before any ran; retried at the next start");
            return;
        }
    };
    match report_of(&written) {
        None => tracing::warn!(ms, "pg-reconcile --migrate wrote no migration report"),
        Some(MigrationReport {
            failed: Some(failed),
            from,
            to,
            ..
        }) => {
            tracing::error!(
                migration_id = failed.id,
                name = %failed.name,
                error = %failed.error,
                from,
                to,
                ms,
                "migration failed (rolled back; retried at the next start)"
            );
            count_failure(shared, failed.id);
        }
        Some(report) => tracing::info!(from = report.from, to = report.to, ms, "migrations done"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn document(extra: serde_json::Value, reconcile: serde_json::Value) -> ComputeDocument {
        serde_json::from_value(json!({
            "document_version": 1,
            "spec": crate::testing::spec(extra),
            "pgdata": "/data",
            "pgbin": "/usr/bin/postgres",
            "connstr": "postgresql://cloud_admin@localhost/postgres",
            "instance": {"port": 5432, "socket_dir": "/data"},
            "reconcile": reconcile,
        }))
        .unwrap()
    }

    #[test]
    fn only_primaries_without_the_skip_flag_migrate() {
        assert!(wanted(&document(json!({}), json!(null))));
        assert!(!wanted(&document(
            json!({"skip_pg_catalog_updates": true}),
            json!(null)
        )));
        assert!(!wanted(&document(json!({"mode": "Replica"}), json!(null))));
    }

    #[test]
    fn the_failed_id_is_read_from_the_report() {
        let doc = document(
            json!({}),
            json!({"migrations": {"from": 10, "to": 11, "pending": [], "applied": [],
                   "failed": {"id": 12, "name": "0012-x", "error": "boom"}}}),
        );
        let report = report_of(&doc).unwrap();
        assert_eq!((report.from, report.to), (10, 11));
        assert_eq!(report.failed.as_ref().map(|f| f.id), Some(12));
        assert!(report_of(&document(json!({}), json!({}))).is_none());
        let shared = Shared::new();
        count_failure(&shared, 12);
        count_failure(&shared, 12);
        let text = crate::metrics::render(&shared.lock());
        assert!(
            text.contains("compute_ctl_db_migration_failed_total{migration_id=\"12\"} 2"),
            "{text}"
        );
    }
}
