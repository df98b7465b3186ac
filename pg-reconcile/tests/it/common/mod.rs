//! Shared helpers for the real-Postgres tests: documents pointing at a test server, specs
//! built from JSON, and catalog queries.
#![allow(dead_code)]

use compute_spec::parse::parse_any;
use compute_spec::section::ReconcileSection;
use compute_spec::spec::ComputeSpec;
use compute_spec::ComputeDocument;
use compute_spec_cli::begin::{start_document, DocumentParams};
use pg_reconcile::{startup, Options};
use pg_test_support::TestPostgres;
use serde_json::{json, Value};

/// A valid SCRAM-SHA-256 verifier (of `secret`): Postgres stores it verbatim. A malformed
/// one would be taken for a plain password and hashed.
pub const SCRAM: &str = "SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$bpSY5Ze9NUH+I35LC3gVq+DpBfK46iXBxvhAKqVu9pE=:VpYlBuxyzeCI1KnctrefdljpB1mk3Gp7sBI/t11+NkQ=";

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../../shared/fixtures/neon/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A document for `spec_json` (bare spec or envelope) whose instance is `pg`. The spec is
/// not validated: these tests are about the catalog.
pub fn document(pg: &TestPostgres, spec_json: &str) -> ComputeDocument {
    let mut doc = empty_document(pg);
    doc.spec = parse_any(spec_json, "test").unwrap().spec;
    doc
}

/// A document with an empty spec whose instance is `pg`.
pub fn empty_document(pg: &TestPostgres) -> ComputeDocument {
    let params = DocumentParams {
        pgdata: pg.data_dir().to_path_buf(),
        pgbin: pg.bin_dir().join("postgres"),
        connstr: "postgresql://cloud_admin@localhost/postgres".to_string(),
        compute_id: None,
        privileged_role_name: "neon_superuser".to_string(),
        socket_dir: Some(pg.socket_dir().to_path_buf()),
    };
    let empty = parse_any(
        r#"{"format_version":1.0,"cluster":{"roles":[],"databases":[]}}"#,
        "t",
    )
    .unwrap();
    let mut doc = start_document("test", &params, empty, "test", 0).unwrap();
    doc.instance.socket_dir = pg.socket_dir().to_path_buf();
    doc.instance.port = pg.port();
    doc
}

/// A spec from a cluster and deltas given as JSON.
pub fn spec(roles: Value, databases: Value, deltas: Value) -> ComputeSpec {
    serde_json::from_value(json!({
        "format_version": 1.0,
        "cluster": {"roles": roles, "databases": databases},
        "delta_operations": deltas,
    }))
    .unwrap()
}

/// Reconciles `spec` on `pg` and returns the section; panics on a set-up error.
pub fn apply(pg: &TestPostgres, spec: &ComputeSpec) -> ReconcileSection {
    apply_with(pg, spec, &Options::default())
}

/// As [`apply`], with options.
pub fn apply_with(pg: &TestPostgres, spec: &ComputeSpec, options: &Options) -> ReconcileSection {
    let mut doc = empty_document(pg);
    doc.spec = Some(spec.clone());
    startup(&doc, options).unwrap()
}

/// Applies `spec` and asserts that nothing failed; returns the section.
pub fn apply_ok(pg: &TestPostgres, spec: &ComputeSpec) -> ReconcileSection {
    let section = apply(pg, spec);
    assert!(
        section.failures.is_empty(),
        "failures: {:#?}",
        section.failures
    );
    section
}

/// Applies `spec` again and asserts that it planned nothing.
pub fn assert_noop(pg: &TestPostgres, spec: &ComputeSpec) {
    let section = apply(pg, spec);
    let sql: Vec<&str> = section.plan.iter().map(|p| p.sql.as_str()).collect();
    assert!(sql.is_empty(), "second apply planned {sql:#?}");
}

/// The values of a one-column text query, in order.
pub fn column(pg: &TestPostgres, db: &str, sql: &str) -> Vec<String> {
    pg.client_for(db)
        .query(sql, &[])
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

/// Role names that are not Postgres's own nor the test's.
pub fn user_roles(pg: &TestPostgres) -> Vec<String> {
    column(
        pg,
        "postgres",
        "SELECT rolname::text FROM pg_authid WHERE rolname !~ '^pg_' \
         AND rolname NOT IN ('cloud_admin', 'neon_superuser') ORDER BY rolname COLLATE \"C\"",
    )
}

/// Database names other than the initial ones.
pub fn user_databases(pg: &TestPostgres) -> Vec<String> {
    column(
        pg,
        "postgres",
        "SELECT datname::text FROM pg_database \
         WHERE datname NOT IN ('postgres', 'template0', 'template1') ORDER BY datname COLLATE \"C\"",
    )
}

/// Sorted copy.
pub fn sorted(names: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

/// `SHOW name` in a new session.
pub fn show(pg: &TestPostgres, name: &str) -> String {
    pg.client()
        .query_one("SELECT pg_catalog.current_setting($1)", &[&name])
        .unwrap()
        .get(0)
}

/// Another package's binary, from cargo (built when missing or stale).
pub fn workspace_bin(package: &str) -> std::path::PathBuf {
    pg_test_support::workspace_binary(package)
}
