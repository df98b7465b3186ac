//! The SQL-backed routes against a real PostgreSQL (a test server stands in for the compute's
//! Postgres; the stand-in pg-supervise reports it ready).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod common;

use std::time::Duration;

use common::*;
use pg_test_support::TestPostgres;
use serde_json::json;

#[test]
fn sql_routes_against_real_postgres() {
    let server = TestPostgres::start();
    server.psql("CREATE ROLE reader NOLOGIN");
    server.psql("CREATE DATABASE shop OWNER reader");
    let mut harness = Harness::new();
    harness
        .command
        .env("STANDIN_PG_PORT", server.port().to_string())
        .env("STANDIN_PG_SOCKET", server.socket_dir());
    let mut compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");

    let ready = compute.get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.body);

    let listing = compute.get("/dbs_and_roles");
    assert_eq!(listing.status, 200, "{}", listing.body);
    let listing = listing.json();
    let roles = listing["roles"].as_array().unwrap();
    assert!(roles
        .iter()
        .any(|role| role["name"] == "reader" && role["options"].is_null()));
    let shop = listing["databases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|db| db["name"] == "shop")
        .unwrap();
    assert_eq!(shop["owner"], "reader");
    assert_eq!(shop["restrict_conn"], false);
    assert_eq!(shop["invalid"], false);

    let writable = compute.post("/check_writability", b"");
    assert_eq!(writable.status, 200, "{}", writable.body);
    assert_eq!(writable.json(), json!(true));
    assert_eq!(
        server.psql("SELECT id FROM public.health_check").trim(),
        "1"
    );
    assert_eq!(compute.get("/check_writability").status, 405);

    let insights = compute.get("/insights");
    assert_eq!(insights.status, 200, "{}", insights.body);
    // As upstream: a JSON string holding the object (here without pg_stat_statements).
    let text = insights.json();
    let inner: serde_json::Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
    assert_eq!(inner, json!({"pg_stat_statements": []}));

    compute.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(10)), 0);
}

#[test]
fn readyz_fails_when_postgres_does_not_answer() {
    let mut harness = Harness::new();
    let socket_dir = harness.path().to_path_buf();
    harness
        .command
        .env(
            "STANDIN_PG_PORT",
            pg_test_support::free_tcp_port().to_string(),
        )
        .env("STANDIN_PG_SOCKET", socket_dir);
    let compute = harness.start(&["--embedded-default"]);
    compute.wait_status("running");
    let ready = compute.get("/readyz");
    assert_eq!(ready.status, 503);
    assert!(ready.json()["error"]
        .as_str()
        .unwrap()
        .contains("not ready"));
    assert_eq!(compute.get("/dbs_and_roles").status, 500);
}
