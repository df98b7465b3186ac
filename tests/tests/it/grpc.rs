//! A compute moved to gRPC pageservers: compute-ctl, waiting in `empty`, is configured with a
//! Static spec whose `pageserver_connection_info` prefers gRPC and has only `grpc://` URLs
//! (upstream's control plane's shape; until issue 33 refused with 400). The real stages fetch
//! the basebackup from the gRPC stand-in (`pg_page_grpc::standin`), Postgres starts on it, and
//! the compute's LSN is leased over gRPC.

use std::process::Command;
use std::time::Duration;

use compute_tools_tests::{compute_ctl_command, post, psql, wait_running, PostgresChild};
use pg_page_grpc::standin::{Config, StandIn};
use pg_test_support::probe::eventually;
use pg_test_support::{free_tcp_port, TestDir, TestPostgres};
use serde_json::{json, Value};

const TENANT: &str = "3aa8fcc61f6d357410b7de754b1d9001";
const TIMELINE: &str = "de5a2f3ab7e1d7cd4e0e6a1c1a5d2f0b";
const LSN: &str = "0/16B5A50";
const TOKEN: &str = "storage-token-grpc";

/// A gzip tar (by the system's `tar`) of a cleanly shut down data directory holding table
/// `t` (3 rows), with the `zenith.signal` a pageserver's archive carries.
fn archive() -> Vec<u8> {
    let mut postgres = TestPostgres::start();
    postgres.psql("CREATE TABLE t AS SELECT generate_series(1, 3) AS v");
    postgres.stop_fast();
    std::fs::write(
        postgres.data_dir().join("zenith.signal"),
        "PREV LSN: none\n",
    )
    .unwrap();
    let output = Command::new("tar")
        .arg("-C")
        .arg(postgres.data_dir())
        .args(["-czf", "-", "."])
        .output()
        .expect("running tar");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// The embedded sample spec on `port`, Static at [`LSN`], on the gRPC pageserver at `url`.
fn static_grpc_spec(dir: &std::path::Path, port: u16, url: &str) -> Value {
    let path = compute_tools_tests::write_sample_spec(dir, port);
    let mut spec: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    spec["mode"] = json!({"Static": LSN});
    spec["skip_pg_catalog_updates"] = json!(true);
    spec["cluster"]["roles"] = json!([]);
    spec["cluster"]["databases"] = json!([]);
    spec["tenant_id"] = json!(TENANT);
    spec["timeline_id"] = json!(TIMELINE);
    spec["storage_auth_token"] = json!(TOKEN);
    spec["pageserver_connection_info"] = json!({
        "shard_count": 0, "prefer_protocol": "grpc",
        "shards": {"0000": {"pageservers": [{"id": 1, "grpc_url": url}]}},
    });
    spec
}

#[test]
fn a_static_compute_configured_on_grpc_pageservers_starts_and_leases_over_grpc() {
    let standin = StandIn::start(Config::new(TENANT, TIMELINE, Some(TOKEN), archive())).unwrap();
    let dir = TestDir::new("e2e-grpc");
    let pgdata = dir.path().join("pgdata");
    let (port, http_port) = (free_tcp_port(), free_tcp_port());
    let spec = static_grpc_spec(dir.path(), port, &standin.url());
    let child = compute_ctl_command(&pgdata, http_port, 0)
        .stdin(std::process::Stdio::null())
        .spawn()
        .expect("spawning compute-ctl");
    let _compute = PostgresChild::new(child, &pgdata);
    let configure = format!("http://127.0.0.1:{http_port}/configure");
    eventually(Duration::from_secs(20), "compute-ctl in empty", || {
        compute_tools_tests::status(http_port)["status"] == "empty"
    });
    let body = json!({"spec": spec, "compute_ctl_config": {}}).to_string();
    let (code, answer) = post(&configure, &body);
    assert_eq!(code, 200, "{answer}");
    wait_running(http_port, Duration::from_secs(60));

    // The basebackup came over gRPC, from shard 0, at the Static LSN, for a standby.
    let seen = standin.seen();
    let basebackup = seen
        .iter()
        .find(|request| request.method == "GetBaseBackup")
        .expect("a GetBaseBackup");
    assert_eq!(basebackup.lsn, 0x16B5A50);
    assert!(basebackup.replica);
    assert_eq!(basebackup.shard_id.as_deref(), Some("0000"));
    assert_eq!(
        basebackup.authorization.as_deref(),
        Some("Bearer storage-token-grpc")
    );
    assert_eq!(psql(&pgdata, port, "postgres", "SELECT sum(v) FROM t"), "6");
    // And the LSN is leased over gRPC.
    eventually(Duration::from_secs(20), "a LeaseLsn", || {
        standin
            .seen()
            .iter()
            .any(|request| request.method == "LeaseLsn")
    });
    let lease = standin
        .seen()
        .into_iter()
        .find(|request| request.method == "LeaseLsn")
        .unwrap();
    assert_eq!(lease.lsn, 0x16B5A50);
    assert_eq!(lease.tenant_id.as_deref(), Some(TENANT));
}
