//! The catalog migrations on a real Postgres: a fresh database ends at id 12 with every
//! grant in place (each checked in the catalog), a database at id 7 runs only 8–12, a
//! failing migration rolls back and leaves the id, a hostile privileged-role name, and
//! `--dry-run` listing what is pending.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;
use crate::common::{apply_ok, apply_with, column, spec};
use pg_reconcile::migrate::{MigrationReport, MIGRATIONS};
use pg_reconcile::{migrations, Options};
use pg_test_support::TestPostgres;
use serde_json::json;

/// Runs the migrations (`dry` or not) for `privileged` and returns the report.
fn migrate(pg: &TestPostgres, privileged: &str, dry: bool) -> MigrationReport {
    let mut doc = common::empty_document(pg);
    doc.privileged_role_name = privileged.to_string();
    let options = Options {
        dry_run: dry,
        ..Default::default()
    };
    let section = migrations(&doc, &options).unwrap();
    // On the wire: the section's `migrations` member, read back as the model's type.
    let wire = serde_json::to_value(&section).unwrap();
    let report: MigrationReport = serde_json::from_value(wire["migrations"].clone()).unwrap();
    assert_eq!(section.migrations.as_ref(), Some(&report));
    report
}

fn names(range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    range
        .map(|id| MIGRATIONS[id - 1].name.to_string())
        .collect()
}

fn id(pg: &TestPostgres) -> i64 {
    pg.client()
        .query_one(
            "SELECT id FROM neon_migration.migration_id WHERE key = 0",
            &[],
        )
        .unwrap()
        .get(0)
}

fn server_version(pg: &TestPostgres) -> i32 {
    column(
        pg,
        "postgres",
        "SELECT current_setting('server_version_num')",
    )[0]
    .parse()
    .unwrap()
}

/// Whether `member` is a member of `role`, and with the admin option.
fn membership(pg: &TestPostgres, role: &str, member: &str) -> Option<bool> {
    pg.client()
        .query_opt(
            "SELECT m.admin_option FROM pg_auth_members m \
             JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member \
             WHERE r.rolname = $1 AND u.rolname = $2",
            &[&role, &member],
        )
        .unwrap()
        .map(|row| row.get(0))
}

/// Whether the function's ACL names `grantee` with EXECUTE (a grant, not PUBLIC's).
fn executes(pg: &TestPostgres, function: &str, grantee: &str) -> bool {
    pg.client()
        .query_one(
            "SELECT EXISTS (SELECT FROM pg_proc p, aclexplode(p.proacl) a \
             WHERE p.oid = $1::text::regprocedure AND a.privilege_type = 'EXECUTE' \
             AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = $2))",
            &[&function, &grantee],
        )
        .unwrap()
        .get(0)
}

fn role_flag(pg: &TestPostgres, role: &str, flag: &str) -> bool {
    pg.client()
        .query_one(
            &format!("SELECT {flag} FROM pg_roles WHERE rolname = $1"),
            &[&role],
        )
        .unwrap()
        .get(0)
}

/// Every effect of migrations 1–12 (the PostgreSQL 16 ones only there), checked in the
/// catalog.
fn assert_all_grants(pg: &TestPostgres, privileged: &str) {
    assert!(role_flag(pg, privileged, "rolbypassrls"), "1: BYPASSRLS");
    let v16 = server_version(pg) >= 160000;
    if v16 {
        assert!(membership(pg, "pg_create_subscription", privileged).is_some());
        assert!(executes(pg, "pg_export_snapshot()", privileged), "10");
        assert!(executes(pg, "pg_log_standby_snapshot()", privileged), "10");
    }
    assert_eq!(membership(pg, "pg_monitor", privileged), Some(true), "4");
    assert!(
        executes(pg, "pg_show_replication_origin_status()", privileged),
        "11"
    );
    assert_eq!(
        membership(pg, "pg_signal_backend", privileged),
        Some(true),
        "12"
    );
}

#[test]
fn a_fresh_database_ends_at_12_with_every_grant() {
    let pg = TestPostgres::start();
    // The start-up apply creates the privileged role; a member of it that does not inherit
    // and another role with BYPASSRLS are what migration 2 repairs.
    apply_ok(&pg, &spec(json!([]), json!([]), json!([])));
    pg.psql(
        "CREATE ROLE member NOINHERIT IN ROLE neon_superuser; \
         CREATE ROLE other BYPASSRLS",
    );
    let report = migrate(&pg, "neon_superuser", false);
    assert_eq!((report.from, report.to), (0, 12));
    assert_eq!(report.applied, names(1..=12));
    assert!(report.pending.is_empty() && report.failed.is_none());
    assert_eq!(id(&pg), 12);
    assert_all_grants(&pg, "neon_superuser");
    assert!(role_flag(&pg, "member", "rolinherit"), "2: INHERIT");
    assert!(!role_flag(&pg, "other", "rolbypassrls"), "2: NOBYPASSRLS");
    assert!(role_flag(&pg, "cloud_admin", "rolsuper"));
    // The bookkeeping schema: the admin's, nothing for PUBLIC.
    let schema = column(
        &pg,
        "postgres",
        "SELECT pg_get_userbyid(nspowner)::text || ' ' || \
         (SELECT count(*) FROM aclexplode(nspacl) WHERE grantee = 0)::text \
         FROM pg_namespace WHERE nspname = 'neon_migration'",
    );
    assert_eq!(schema, ["cloud_admin 0"]);
    // A second run has nothing to do.
    let again = migrate(&pg, "neon_superuser", false);
    assert_eq!((again.from, again.to), (12, 12));
    assert!(again.applied.is_empty());
}

#[test]
fn a_database_at_7_runs_only_8_to_12() {
    let pg = TestPostgres::start();
    apply_ok(&pg, &spec(json!([]), json!([]), json!([])));
    pg.psql(
        "CREATE SCHEMA neon_migration; \
         CREATE TABLE neon_migration.migration_id (key int4 PRIMARY KEY, id int8 NOT NULL DEFAULT 0); \
         INSERT INTO neon_migration.migration_id VALUES (0, 7)",
    );
    let report = migrate(&pg, "neon_superuser", false);
    assert_eq!((report.from, report.to), (7, 12));
    assert_eq!(report.applied, names(8..=12));
    // 4 did not run again (the database claims it did), 12 did.
    assert_eq!(membership(&pg, "pg_monitor", "neon_superuser"), None);
    assert_eq!(
        membership(&pg, "pg_signal_backend", "neon_superuser"),
        Some(true)
    );
}

#[test]
fn a_failing_migration_rolls_back_and_leaves_the_id() {
    let pg = TestPostgres::start();
    apply_ok(&pg, &spec(json!([]), json!([]), json!([])));
    let report = migrate(&pg, "neon_superuser", false);
    assert_eq!(report.to, 12);
    // Back to 10, with 12's grant gone and a trigger refusing to record 12.
    pg.psql(
        "UPDATE neon_migration.migration_id SET id = 10; \
         REVOKE pg_signal_backend FROM neon_superuser; \
         CREATE FUNCTION neon_migration.refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN IF NEW.id = 12 THEN RAISE EXCEPTION 'refusing id 12'; END IF; RETURN NEW; END$$; \
         CREATE TRIGGER refuse BEFORE UPDATE ON neon_migration.migration_id \
         FOR EACH ROW EXECUTE FUNCTION neon_migration.refuse()",
    );
    let report = migrate(&pg, "neon_superuser", false);
    assert_eq!((report.from, report.to), (10, 11));
    assert_eq!(report.applied, names(11..=11));
    let failed = report.failed.unwrap();
    assert_eq!((failed.id, failed.name.as_str()), (12, MIGRATIONS[11].name));
    assert!(failed.error.contains("refusing id 12"), "{}", failed.error);
    assert_eq!(report.pending, names(12..=12));
    assert_eq!(id(&pg), 11);
    // The GRANT of 12 ran before the refused update: rolled back with it.
    assert_eq!(membership(&pg, "pg_signal_backend", "neon_superuser"), None);
    // Retried at the next run.
    pg.psql("DROP TRIGGER refuse ON neon_migration.migration_id");
    let report = migrate(&pg, "neon_superuser", false);
    assert_eq!((report.from, report.to), (11, 12));
    assert_eq!(
        membership(&pg, "pg_signal_backend", "neon_superuser"),
        Some(true)
    );
}

#[test]
fn a_hostile_privileged_role_name_is_quoted_everywhere() {
    let pg = TestPostgres::start();
    let hostile = "su\"per'; DROP ROLE x; --$$ $migration$";
    let mut doc = common::empty_document(&pg);
    doc.privileged_role_name = hostile.to_string();
    doc.spec = Some(spec(json!([]), json!([]), json!([])));
    let section = pg_reconcile::startup(&doc, &Options::default()).unwrap();
    assert!(section.failures.is_empty(), "{:?}", section.failures);
    pg.psql(&format!(
        "CREATE ROLE member NOINHERIT IN ROLE {}",
        compute_spec::quote::quote_ident(hostile)
    ));
    let report = migrate(&pg, hostile, false);
    assert_eq!(report.to, 12, "{:?}", report.failed);
    assert_all_grants(&pg, hostile);
    assert!(role_flag(&pg, "member", "rolinherit"));
}

#[test]
fn a_missing_privileged_role_fails_migration_1() {
    let pg = TestPostgres::start();
    let report = migrate(&pg, "nobody_here", false);
    assert_eq!((report.from, report.to), (0, 0));
    let failed = report.failed.unwrap();
    assert_eq!(failed.id, 1);
    assert!(failed.error.contains("nobody_here"), "{}", failed.error);
    assert_eq!(report.pending.len(), 12);
    assert_eq!(id(&pg), 0);
}

#[test]
fn dry_run_lists_the_pending_migrations() {
    let pg = TestPostgres::start();
    let empty = spec(json!([]), json!([]), json!([]));
    let dry = Options {
        dry_run: true,
        ..Default::default()
    };
    // Start-up dry run: the plan, and the migrations that would follow it.
    let section = apply_with(&pg, &empty, &dry);
    let report = section.migrations.clone().unwrap();
    assert_eq!(report.pending, names(1..=12));
    // --migrate --dry-run: the same list, and nothing changed (no bookkeeping table).
    assert_eq!(migrate(&pg, "neon_superuser", true).pending, names(1..=12));
    let table = column(
        &pg,
        "postgres",
        "SELECT coalesce(to_regclass('neon_migration.migration_id')::text, 'none')",
    );
    assert_eq!(table, ["none"]);
    apply_ok(&pg, &empty);
    migrate(&pg, "neon_superuser", false);
    let section = serde_json::to_value(apply_with(&pg, &empty, &dry)).unwrap();
    assert_eq!(section["migrations"]["pending"], json!([]));
    assert_eq!(section["migrations"]["from"], json!(12));
}

#[test]
fn migrations_skip_replicas_and_skip_pg_catalog_updates() {
    let pg = TestPostgres::start();
    let mut doc = common::empty_document(&pg);
    let mut skip = spec(json!([]), json!([]), json!([]));
    skip.skip_pg_catalog_updates = true;
    doc.spec = Some(skip);
    let section = migrations(&doc, &Options::default()).unwrap();
    assert!(section.catalog_skipped);
    assert_eq!(section.migrations, None);
    assert!(serde_json::to_value(&section)
        .unwrap()
        .get("migrations")
        .is_none());
    let table = column(
        &pg,
        "postgres",
        "SELECT coalesce(to_regclass('neon_migration.migration_id')::text, 'none')",
    );
    assert_eq!(table, ["none"]);
}

#[test]
fn the_binary_runs_them_with_migrate() {
    let pg = TestPostgres::start();
    apply_ok(&pg, &spec(json!([]), json!([]), json!([])));
    let doc = common::empty_document(&pg);
    let stdin = serde_json::to_string(&doc).unwrap();
    let output =
        pg_test_support::run_with_stdin(env!("CARGO_BIN_EXE_pg-reconcile"), &["--migrate"], &stdin);
    assert!(output.status.success(), "{output:?}");
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["reconcile"]["migrations"]["to"], json!(12));
    assert_eq!(id(&pg), 12);
}
