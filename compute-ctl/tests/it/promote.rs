//! `/promote` end to end on real PostgreSQL: a vanilla primary, compute-ctl with the real
//! stages started as its Replica from `upstream_connstring`, rows written on the primary after
//! the clone, then two concurrent `/promote` calls: both get the one run's answer, the compute
//! takes writes, holds every row, and was reconfigured as a Primary (the spec's roles and
//! databases, which a replica never gets, exist).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use pg_test_support::probe::{eventually, wait_for_status};
use pg_test_support::TestPostgres;
use serde_json::{json, Value};

/// `psql -XAt` as the admin role on the compute's socket (its PGDATA).
fn psql(pgdata: &Path, port: u16, database: &str, sql: &str) -> Result<String, String> {
    let output = Command::new(pg_test_support::pg_bin("psql"))
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg(pgdata)
        .args(["-p", &port.to_string(), "-U", "cloud_admin", "-d", database])
        .args(["-c", sql])
        .output()
        .unwrap();
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).to_string())
    }
}

/// The embedded sample spec on `port` (Unix socket only), as `mode`, cloned from `primary`.
fn spec(primary: &TestPostgres, port: u16, mode: &str) -> Value {
    let mut spec: Value = serde_json::from_str(compute_spec::parse::EMBEDDED_SAMPLE_SPEC).unwrap();
    for setting in spec["cluster"]["settings"].as_array_mut().unwrap() {
        match setting["name"].as_str() {
            Some("port") => setting["value"] = json!(port.to_string()),
            Some("listen_addresses") => setting["value"] = json!(""),
            _ => {}
        }
    }
    spec["mode"] = json!(mode);
    spec["upstream_connstring"] = json!(format!(
        "host={} port={} user=cloud_admin",
        primary.socket_dir().display(),
        primary.port()
    ));
    spec
}

#[test]
fn a_vanilla_replica_is_promoted_to_a_writable_primary() {
    let primary = TestPostgres::builder()
        .setting("wal_level", "replica")
        .setting("max_wal_senders", "5")
        .hba_line("local replication all trust")
        .start();
    primary.psql(
        "create table accounts (id int primary key); \
         insert into accounts select generate_series(1, 42)",
    );
    let mut harness = Harness::new();
    // The real stages, as the postgres user can reach the directory.
    for stage in [
        "pg-sync-safekeepers",
        "pg-basebackup-fetch",
        "pg-supervise",
        "pg-reconcile",
    ] {
        let variable = format!(
            "COMPUTE_CTL_STAGE_{}",
            stage.to_ascii_uppercase().replace('-', "_")
        );
        harness.command.env(variable, workspace_bin(stage));
    }
    std::fs::set_permissions(harness.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = pg_test_support::free_tcp_port();
    let spec_path = harness.path().join("spec.json");
    std::fs::write(&spec_path, spec(&primary, port, "Replica").to_string()).unwrap();
    let pgdata = harness.path().join("pgdata");
    let compute = harness.start(&["-S", spec_path.to_str().unwrap()]);
    wait_for_status(Duration::from_secs(90), "running", || {
        Some(compute.get("/status").json())
    })
    .unwrap_or_else(|last| panic!("the replica never ran: {last}"));
    let sql = |statement: &str| psql(&pgdata, port, "postgres", statement);
    assert_eq!(sql("select pg_is_in_recovery()").unwrap(), "t");
    let refused = sql("insert into accounts values (1000)").unwrap_err();
    assert!(refused.contains("read-only transaction"), "{refused}");
    // Rows the clone did not have: they reach the replica only by streaming.
    primary.psql("insert into accounts select generate_series(43, 100)");
    assert!(sql("select 1 from pg_roles where rolname = 'app_owner'")
        .unwrap()
        .is_empty());

    // Two concurrent promotions, wal_flush_lsn null: the primary's current WAL position is the target.
    let mut promoted = spec(&primary, port, "Primary");
    promoted.as_object_mut().unwrap().remove("mode");
    let body = json!({ "spec": promoted, "wal_flush_lsn": null }).to_string();
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (port, body) = (compute.port, body.clone());
            std::thread::spawn(move || {
                http(
                    port,
                    "POST",
                    "/promote",
                    &[("Content-Type", "application/json")],
                    body.as_bytes(),
                )
            })
        })
        .collect();
    let answers: Vec<Answer> = calls.into_iter().map(|call| call.join().unwrap()).collect();
    assert_eq!(answers[0].status, 200, "{}", answers[0].body);
    assert_eq!(answers[0].json()["status"], "completed");
    for field in [
        "lsn_wait_time_ms",
        "pg_promote_time_ms",
        "reconfigure_time_ms",
    ] {
        assert!(
            answers[0].json()[field].is_u64(),
            "{field}: {}",
            answers[0].body
        );
    }
    assert_eq!(answers[1].status, 200);
    assert_eq!(answers[1].json(), answers[0].json(), "one run, one answer");

    // A primary now: writable, every row there, the catalog part of the spec applied.
    assert_eq!(compute.status(), "running");
    assert_eq!(sql("select pg_is_in_recovery()").unwrap(), "f");
    sql("insert into accounts select generate_series(101, 110)").unwrap();
    assert_eq!(
        sql("select count(*), sum(id) from accounts").unwrap(),
        format!("110|{}", (1..=110).sum::<i32>())
    );
    assert_eq!(primary.psql("select count(*) from accounts"), "100");
    eventually(Duration::from_secs(30), "the spec's roles", || {
        sql("select count(*) from pg_roles where rolname in ('app_owner', 'app_reader')")
            .is_ok_and(|count| count == "2")
    });
    assert_eq!(
        sql("select count(*) from pg_database where datname in ('app', 'analytics')").unwrap(),
        "2"
    );
    let conf = std::fs::read_to_string(pgdata.join("postgresql.conf")).unwrap();
    assert!(!conf.contains("primary_conninfo"), "{conf}");

    // Later calls get the cached answer, even with another body.
    let again = compute.post_json(
        "/promote",
        &json!({"spec": spec(&primary, port, "Primary"), "wal_flush_lsn": "FF/0"}),
    );
    assert_eq!(again.status, 200);
    assert_eq!(again.json(), answers[0].json());
}

#[test]
fn a_primary_is_not_promoted() {
    let mut harness = Harness::new();
    let compute = harness.start(&["-s", &empty_spec(None).to_string()]);
    compute.wait_status("running");
    let answer = compute.post_json(
        "/promote",
        &json!({"spec": empty_spec(None), "wal_flush_lsn": "0/1"}),
    );
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert_eq!(
        answer.json(),
        json!({"status": "failed", "error": "compute mode \"primary\" is not replica"})
    );
    assert_eq!(compute.status(), "running");
    assert!(
        !harness.log().contains("--reconfigure"),
        "nothing was reconfigured"
    );
}
