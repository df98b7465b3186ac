//! `/configure` refuses a spec that would take the cluster's own objects
//! (`compute_spec::reserved`) with 400 naming the JSON path, before anything is applied: a
//! running compute stays `running`, the template database and the admin role stay as they
//! were, and a later valid `/configure` still works (compute-ctl with the real pg-reconcile
//! on a real Postgres, as `reconfigure.rs`).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common::*;
use pg_test_support::TestPostgres;
use serde_json::{json, Value};

/// A Neon-style spec for the stand-in stages, its `postgresql.conf` the server's own.
fn spec(server: &TestPostgres, roles: Value, deltas: Value) -> Value {
    json!({
        "format_version": 1.0,
        "tenant_id": "00000000000000000000000000000001",
        "timeline_id": "00000000000000000000000000000002",
        "pageserver_connstring": "host=ps1 port=6400",
        "safekeeper_connstrings": ["127.0.0.1:5454"],
        "cluster": {"roles": roles, "databases": [], "postgresql_conf": server.server_conf()},
        "delta_operations": deltas,
    })
}

fn configure(compute: &Compute, spec: &Value) -> Answer {
    compute.post_json(
        "/configure",
        &json!({"spec": spec, "compute_ctl_config": {}}),
    )
}

fn query(server: &TestPostgres, sql: &str) -> Vec<String> {
    let rows = server.client().query(sql, &[]).unwrap();
    rows.iter().map(|row| row.get(0)).collect()
}

fn assert_refused(answer: &Answer, path: &str, name: &str) {
    assert_eq!(answer.status, 400, "{}", answer.body);
    let message = answer.json()["error"].as_str().unwrap().to_string();
    assert!(message.contains(&format!("{path}: ")), "{message}");
    assert!(message.contains(&format!("{name:?}")), "{message}");
}

#[test]
fn configure_refuses_the_clusters_own_objects_and_the_compute_keeps_running() {
    let server = TestPostgres::start();
    let mut harness = harness_on(&server);
    let first = spec(&server, json!([]), json!([]));
    let compute = harness.start(&["-s", &first.to_string()]);
    compute.wait_status("running");

    // Dropping template1: every later CREATE DATABASE would fail.
    let drop_template = spec(
        &server,
        json!([{"name": "bystander", "encrypted_password": null}]),
        json!([{"action": "delete_db", "name": "template1"}]),
    );
    let answer = configure(&compute, &drop_template);
    assert_refused(&answer, "delta_operations[0].name", "template1");
    assert_eq!(compute.status(), "running");
    let template = "SELECT datname::text FROM pg_database WHERE datname = 'template1'";
    assert_eq!(query(&server, template), ["template1"]);

    // The admin role (the user of -C, cloud_admin by default) demoted: the tools locked out.
    let demote = spec(
        &server,
        json!([{"name": "cloud_admin", "encrypted_password": null, "options": [
            {"name": "NOSUPERUSER", "value": null, "vartype": "bool"},
            {"name": "NOCREATEROLE", "value": null, "vartype": "bool"}]}]),
        json!([]),
    );
    let answer = configure(&compute, &demote);
    assert_refused(&answer, "cluster.roles[0].options", "cloud_admin");
    assert_eq!(compute.status(), "running");
    let admin = "SELECT rolsuper::text FROM pg_roles WHERE rolname = 'cloud_admin'";
    assert_eq!(query(&server, admin), ["true"]);

    // Nothing of either was applied; a valid spec still is.
    let roles = "SELECT rolname::text FROM pg_roles WHERE rolname IN ('bystander', 'carol')";
    assert_eq!(query(&server, roles), Vec::<String>::new());
    let valid = spec(
        &server,
        json!([{"name": "carol", "encrypted_password": null}]),
        json!([]),
    );
    let answer = configure(&compute, &valid);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["status"], "running");
    assert_eq!(query(&server, roles), ["carol"]);
}

#[test]
fn configure_in_empty_refuses_the_admin_and_privileged_roles() {
    let server = TestPostgres::start();
    let mut harness = harness_on(&server);
    // No spec yet: the document compute-spec started names the admin (-C) and privileged roles.
    let mut compute = harness.start(&["--privileged-role-name", "owners"]);
    compute.wait_status("empty");
    for (roles, path, name) in [
        (
            json!([{"name": "cloud_admin", "encrypted_password": null, "options": [
                {"name": "NOSUPERUSER", "value": null, "vartype": "bool"}]}]),
            "cluster.roles[0].options",
            "cloud_admin",
        ),
        (
            json!([{"name": "owners", "encrypted_password": null}]),
            "cluster.roles[0].name",
            "owners",
        ),
    ] {
        let answer = configure(&compute, &spec(&server, roles, json!([])));
        assert_refused(&answer, path, name);
        assert_eq!(compute.status(), "empty");
    }
    let answer = compute.post("/terminate?mode=immediate", b"");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(compute.wait_exit(std::time::Duration::from_secs(10)), 0);
}
