//! The catalog migrations end to end: compute-ctl with the real pg-reconcile on a real
//! Postgres (the stand-in pg-supervise reports the test server ready). They run in the
//! background after the start-up apply, never on `/configure`; a failing one is counted in
//! `compute_ctl_db_migration_failed_total{migration_id}` and start-up still reaches
//! `running`.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::Duration;

use crate::common::*;
use pg_test_support::probe::eventually;
use pg_test_support::TestPostgres;
use serde_json::{json, Value};

fn spec(server: &TestPostgres, roles: Value) -> Value {
    json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {"roles": roles, "databases": [], "postgresql_conf": server.server_conf()},
    })
}

/// `neon_migration.migration_id.id`, or `None` before the table exists.
fn migration_id(server: &TestPostgres) -> Option<i64> {
    let mut client = server.client();
    let exists: bool = client
        .query_one(
            "SELECT to_regclass('neon_migration.migration_id') IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    if !exists {
        return None;
    }
    client
        .query_opt(
            "SELECT id FROM neon_migration.migration_id WHERE key = 0",
            &[],
        )
        .unwrap()
        .map(|row| row.get(0))
}

fn signal_backend_granted(server: &TestPostgres) -> bool {
    server
        .client()
        .query_one(
            "SELECT pg_has_role('neon_superuser', 'pg_signal_backend', 'USAGE WITH ADMIN OPTION')",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn start_up_migrates_in_the_background_and_configure_does_not() {
    let server = TestPostgres::start();
    let mut harness = harness_on(&server);
    let mut compute = harness.start(&["-s", &spec(&server, json!([])).to_string()]);
    compute.wait_status("running");
    eventually(Duration::from_secs(30), "migration id 12", || {
        migration_id(&server) == Some(12)
    });
    assert!(signal_backend_granted(&server));
    let metrics = compute.get("/metrics").body;
    assert!(
        !metrics.contains("compute_ctl_db_migration_failed_total"),
        "{metrics}"
    );
    // Back to 11: a /configure applies the spec but runs no migration.
    server.psql(
        "UPDATE neon_migration.migration_id SET id = 11; \
         REVOKE pg_signal_backend FROM neon_superuser",
    );
    let answer = compute.post_json(
        "/configure",
        &json!({"spec": spec(&server, json!([{"name": "alice", "encrypted_password": null}])),
                "compute_ctl_config": {}}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    compute.wait_status("running");
    let alice: i64 = server
        .client()
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = 'alice'", &[])
        .unwrap()
        .get(0);
    assert_eq!(alice, 1, "the /configure was applied");
    assert_eq!(migration_id(&server), Some(11));
    assert!(!signal_backend_granted(&server));
    compute.signal(nix::sys::signal::Signal::SIGTERM);
    compute.wait_exit(Duration::from_secs(20));
}

#[test]
fn a_failing_migration_is_counted_and_start_up_still_runs() {
    let server = TestPostgres::start();
    // At 11, with a trigger refusing to record 12.
    server.psql(
        "CREATE SCHEMA neon_migration; \
         CREATE TABLE neon_migration.migration_id (key int4 PRIMARY KEY, id int8 NOT NULL DEFAULT 0); \
         INSERT INTO neon_migration.migration_id VALUES (0, 11); \
         CREATE FUNCTION neon_migration.refuse() RETURNS trigger LANGUAGE plpgsql AS \
         $$BEGIN IF NEW.id = 12 THEN RAISE EXCEPTION 'refusing id 12'; END IF; RETURN NEW; END$$; \
         CREATE TRIGGER refuse BEFORE UPDATE ON neon_migration.migration_id \
         FOR EACH ROW EXECUTE FUNCTION neon_migration.refuse()",
    );
    let mut harness = harness_on(&server);
    let mut compute = harness.start(&["-s", &spec(&server, json!([])).to_string()]);
    compute.wait_status("running");
    let counted = "compute_ctl_db_migration_failed_total{migration_id=\"12\"} 1";
    eventually(Duration::from_secs(30), "the failure counted", || {
        compute.get("/metrics").body.contains(counted)
    });
    let metrics = compute.get("/metrics").body;
    assert!(
        metrics.contains("# TYPE compute_ctl_db_migration_failed_total counter"),
        "{metrics}"
    );
    assert_eq!(migration_id(&server), Some(11), "the id is left");
    assert!(!signal_backend_granted(&server), "12 was rolled back");
    assert_eq!(compute.status(), "running");
    compute.signal(nix::sys::signal::Signal::SIGTERM);
    compute.wait_exit(Duration::from_secs(20));
}
