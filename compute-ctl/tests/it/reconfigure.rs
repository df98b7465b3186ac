//! Live reconfiguration end to end: compute-ctl with the real pg-reconcile on a real
//! Postgres (a test server stands in for the compute's; the stand-in pg-supervise reports it
//! ready). `/configure` changes `postgresql.conf` lines, the pageserver connection, a
//! restart-only setting, roles and settings together, and a value Postgres refuses;
//! `/refresh_configuration` re-reads a `-c` file or asks a control-plane stand-in.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::*;
use compute_spec::parse::parse_any;
use compute_spec::pgconf;
use compute_spec_cli::begin::{start_document, DocumentParams};
use pg_test_support::probe::eventually;
use pg_test_support::TestPostgres;
use serde_json::{json, Value};

const TENANT: &str = "00000000000000000000000000000001";
const TIMELINE: &str = "00000000000000000000000000000002";

/// A Neon-style spec (pageserver `pageserver`, two safekeepers) with `conf` after the
/// server's lines, and `roles`.
fn spec(server: &TestPostgres, conf: &str, pageserver: &str, roles: Value) -> Value {
    json!({
        "format_version": 1.0,
        "tenant_id": TENANT, "timeline_id": TIMELINE,
        "pageserver_connstring": pageserver,
        "safekeeper_connstrings": ["127.0.0.1:5454", "127.0.0.1:5455"],
        "cluster": {"roles": roles, "databases": [],
                    "postgresql_conf": format!("{}{conf}", server.server_conf())},
    })
}

fn show(server: &TestPostgres, name: &str) -> String {
    server
        .client()
        .query_one("SELECT current_setting($1)", &[&name])
        .unwrap()
        .get(0)
}

/// What a fresh start renders for `spec` on `server`.
fn fresh_start(server: &TestPostgres, spec: &Value) -> String {
    let params = DocumentParams {
        pgdata: server.data_dir().to_path_buf(),
        pgbin: server.bin_dir().join("postgres"),
        connstr: "postgresql://cloud_admin@localhost/postgres".to_string(),
        compute_id: None,
        privileged_role_name: "neon_superuser".to_string(),
        socket_dir: Some(server.socket_dir().to_path_buf()),
    };
    let loaded = parse_any(&spec.to_string(), "test").unwrap();
    let parsed = loaded.spec.clone().unwrap();
    let mut doc = start_document("test", &params, loaded, "test", 0).unwrap();
    doc.instance.port = server.port();
    doc.instance.socket_dir = server.socket_dir().to_path_buf();
    pgconf::render(&parsed, &pgconf::params_for_start(&doc, &parsed)).unwrap()
}

fn conf_text(server: &TestPostgres) -> String {
    std::fs::read_to_string(server.data_dir().join("postgresql.conf")).unwrap()
}

fn configure(compute: &Compute, spec: &Value) -> Answer {
    compute.post_json(
        "/configure",
        &json!({"spec": spec, "compute_ctl_config": {}}),
    )
}

#[test]
fn configure_applies_the_whole_spec_live() {
    let server = TestPostgres::start();
    let mut harness = harness_on(&server);
    let first = spec(&server, "", "host=ps1 port=6400", json!([]));
    let mut compute = harness.start(&["-s", &first.to_string()]);
    compute.wait_status("running");

    // A new postgresql_conf line: visible at once, no restart.
    let timeout = spec(
        &server,
        "statement_timeout = 12345\n",
        "host=ps1 port=6400",
        json!([]),
    );
    let answer = configure(&compute, &timeout);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(show(&server, "statement_timeout"), "12345ms");
    assert_eq!(conf_text(&server), fresh_start(&server, &timeout));

    // A new pageserver connection string: the GUC changes.
    let moved = spec(
        &server,
        "statement_timeout = 12345\n",
        "host=ps2 port=6401",
        json!([]),
    );
    let answer = configure(&compute, &moved);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        show(&server, "neon.pageserver_connstring"),
        "host=ps2 port=6401"
    );
    assert_eq!(
        show(&server, "neon.safekeepers"),
        "127.0.0.1:5454,127.0.0.1:5455"
    );
    assert_eq!(conf_text(&server), fresh_start(&server, &moved));

    // A restart-only setting: accepted, in the file, the old value kept.
    let restart = spec(
        &server,
        "statement_timeout = 12345\nmax_connections = 61\n",
        "host=ps2 port=6401",
        json!([]),
    );
    let answer = configure(&compute, &restart);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(show(&server, "max_connections"), "50");
    let pending: bool = server
        .client()
        .query_one(
            "SELECT pending_restart FROM pg_settings WHERE name = 'max_connections'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(pending);
    assert_eq!(conf_text(&server), fresh_start(&server, &restart));

    // Roles and settings together.
    let mut both = spec(
        &server,
        "statement_timeout = 23456\n",
        "host=ps2 port=6401",
        json!([{"name": "carol", "encrypted_password": null}]),
    );
    both["cluster"]["settings"] =
        json!([{"name": "work_mem", "value": "6MB", "vartype": "string"}]);
    let answer = configure(&compute, &both);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(show(&server, "statement_timeout"), "23456ms");
    assert_eq!(show(&server, "work_mem"), "6MB");
    assert_eq!(
        server
            .psql("SELECT count(*) FROM pg_roles WHERE rolname = 'carol'")
            .trim(),
        "1"
    );
    assert_eq!(conf_text(&server), fresh_start(&server, &both));
    let override_file = server.data_dir().join(pgconf::TEMP_OVERRIDE_FILE);
    assert_eq!(std::fs::read_to_string(override_file).unwrap(), "");

    // A value Postgres refuses: 500 with its message, the previous file back and live.
    let before = conf_text(&server);
    let bad = spec(
        &server,
        "statement_timeout = 'abc'\n",
        "host=ps2 port=6401",
        json!([]),
    );
    let answer = configure(&compute, &bad);
    assert_eq!(answer.status, 500, "{}", answer.body);
    let error = answer.json()["error"].as_str().unwrap().to_string();
    assert!(
        error.contains("invalid value for parameter")
            && error.contains("statement_timeout")
            && error.contains("previous file was restored"),
        "{error}"
    );
    assert_eq!(conf_text(&server), before);
    assert_eq!(show(&server, "statement_timeout"), "23456ms");
    assert_eq!(compute.status(), "failed");

    compute.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 0);
}

fn refresh(harness: &Harness) -> Answer {
    http(
        harness.internal_port,
        "POST",
        "/refresh_configuration",
        &[],
        b"",
    )
}

fn metric(compute: &Compute, needle: &str) -> bool {
    compute.get("/metrics").body.contains(needle)
}

fn wait_for_metric(compute: &Compute, needle: &str) {
    eventually(Duration::from_secs(20), needle, || metric(compute, needle));
}

fn reconciles(compute: &Compute) -> String {
    let body = compute.get("/metrics").body;
    body.lines()
        .find(|line| line.starts_with("compute_ctl_reconciles_total"))
        .unwrap_or_default()
        .to_string()
}

fn write_config(path: &Path, spec: &Value) {
    let text = json!({"spec": spec, "compute_ctl_config": {}}).to_string();
    std::fs::write(path, text).unwrap();
}

#[test]
fn refresh_configuration_rereads_the_c_file() {
    let server = TestPostgres::start();
    let mut harness = harness_on(&server);
    let path = harness.path().join("config.json");
    let first = spec(
        &server,
        "statement_timeout = 1000\n",
        "host=ps1 port=6400",
        json!([]),
    );
    write_config(&path, &first);
    let path_text = path.to_string_lossy().into_owned();
    let compute = harness.start(&["-c", &path_text, "-i", "compute-1"]);
    compute.wait_status("running");

    // A refused /configure leaves the compute failed; a refresh brings it back to running.
    let bad = spec(
        &server,
        "statement_timeout = 'abc'\n",
        "host=ps1 port=6400",
        json!([]),
    );
    assert_eq!(configure(&compute, &bad).status, 500);
    assert_eq!(compute.status(), "failed");
    assert_eq!(refresh(&harness).status, 200);
    compute.wait_status("running");
    let runs = reconciles(&compute);
    // The stand-in start leaves the server's own file: the spec's line is not live yet.
    let started_with = show(&server, "statement_timeout");

    // The same pageserver connection: straight back to running, nothing applied.
    let same = spec(
        &server,
        "statement_timeout = 2000\n",
        "host=ps1 port=6400",
        json!([]),
    );
    write_config(&path, &same);
    assert_eq!(refresh(&harness).status, 200);
    compute.wait_status("running");
    assert_eq!(reconciles(&compute), runs);
    assert_eq!(show(&server, "statement_timeout"), started_with);

    // An unreadable file: back to refresh_configuration_pending, retried at the next call.
    std::fs::write(&path, "{ not json").unwrap();
    assert_eq!(refresh(&harness).status, 200);
    wait_for_metric(&compute, "status=\"refresh-configuration-pending\"} 1");
    assert_eq!(compute.status(), "refresh_configuration_pending");

    // Another pageserver: the whole spec is applied, running again.
    let moved = spec(
        &server,
        "statement_timeout = 3000\n",
        "host=ps9 port=6409",
        json!([]),
    );
    write_config(&path, &moved);
    assert_eq!(refresh(&harness).status, 200);
    compute.wait_status("running");
    assert_eq!(
        show(&server, "neon.pageserver_connstring"),
        "host=ps9 port=6409"
    );
    assert_eq!(show(&server, "statement_timeout"), "3s");
    assert_eq!(conf_text(&server), fresh_start(&server, &moved));
    assert_ne!(reconciles(&compute), runs);
}

#[test]
fn refresh_configuration_asks_the_control_plane_and_exits_when_it_is_empty() {
    let server = TestPostgres::start();
    let mut harness = harness_on(&server);
    let first = spec(&server, "", "host=ps1 port=6400", json!([]));
    let answer = Arc::new(Mutex::new(
        json!({"status": "attached", "spec": first, "compute_ctl_config": {}}),
    ));
    let plane = control_plane(answer.clone());
    let mut compute = harness.start(&["-p", &plane.url(), "-i", "compute-7"]);
    compute.wait_status("running");
    // Every spec fetch is counted (upstream's compute_ctl_cplane_requests_total).
    let fetches = |compute: &Compute| {
        let metrics = compute.get("/metrics").body;
        let series = "compute_ctl_cplane_requests_total{http_status=\"200 OK\",rpc=\"GetConfig\"} ";
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(series))
            .unwrap_or_else(|| panic!("no {series}in\n{metrics}"))
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(fetches(&compute), 1);

    let moved = spec(&server, "", "host=ps3 port=6403", json!([]));
    *answer.lock().unwrap() =
        json!({"status": "attached", "spec": moved, "compute_ctl_config": {}});
    assert_eq!(refresh(&harness).status, 200);
    compute.wait_status("running");
    assert_eq!(
        show(&server, "neon.pageserver_connstring"),
        "host=ps3 port=6403"
    );
    assert_eq!(fetches(&compute), 2);

    *answer.lock().unwrap() = json!({"status": "empty", "spec": null, "compute_ctl_config": {}});
    assert_eq!(refresh(&harness).status, 200);
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 1);
}
