//! pg-lsn-lease's integration tests as one binary: the `pg-lsn-lease` binary against
//! page-service stand-ins (the kit's `fake_pg::page_service`): a lease on two shards, a
//! refusal, a silent, down or confused pageserver, bad input, and `--keep` renewing until
//! SIGTERM. `cargo test -p pg-lsn-lease --test it <module>::` runs one module.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod grpc;
mod keep;
mod once;

use std::time::{Duration, SystemTime};

use pg_test_support::fake_pg::page_service::Pageserver;
use pg_test_support::{run_stage_within, StageRun};
use serde_json::{json, Value};

/// The binary under test.
const PG_LSN_LEASE: &str = env!("CARGO_BIN_EXE_pg-lsn-lease");

const TENANT: &str = "0123456789abcdef0123456789abcdef";
const TIMELINE: &str = "fedcba9876543210fedcba9876543210";
const LSN: &str = "0/16B3748";
const TOKEN: &str = "storage-token";

/// A compute document whose spec has `mode` and `pageservers`' fields.
fn document(mode: Value, pageservers: Value) -> String {
    let mut spec = json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {"roles": [], "databases": []},
        "tenant_id": TENANT, "timeline_id": TIMELINE,
        "mode": mode,
        "storage_auth_token": TOKEN,
    });
    spec.as_object_mut()
        .unwrap()
        .extend(pageservers.as_object().unwrap().clone());
    json!({
        "document_version": 1, "spec": spec, "pgdata": "/nonexistent",
        "pgbin": "/nonexistent/postgres", "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/nonexistent"},
    })
    .to_string()
}

/// A Static compute's document with two shards: shard 0 on `a`, shard 1 on `b`.
fn two_shards(a: &Pageserver, b: &Pageserver) -> String {
    document(
        json!({"Static": LSN}),
        json!({
            "shard_stripe_size": 2048,
            "pageserver_connection_info": {"shard_count": 2, "shards": {
                "0002": {"pageservers": [{"libpq_url": a.connstr()}]},
                "0102": {"pageservers": [{"libpq_url": b.connstr()}]},
            }},
        }),
    )
}

/// A Static compute's document on one unsharded pageserver.
fn one_shard(pageserver: &Pageserver) -> String {
    document(
        json!({"Static": LSN}),
        json!({"pageserver_connstring": pageserver.connstr()}),
    )
}

/// `lease lsn` for `shard`, as the pageserver must receive it.
fn command(shard: &str) -> String {
    format!("lease lsn {shard} {TIMELINE} {LSN} ")
}

/// `<tenant>-<index>`.
fn shard(index: &str) -> String {
    format!("{TENANT}-{index}")
}

/// `pg-lsn-lease <args>` on `document`, which must end within 30 s; the run and its time.
fn lease(args: &[&str], document: &str) -> (StageRun, Duration) {
    let (run, took) = run_stage_within(PG_LSN_LEASE, args, document, Duration::from_secs(30));
    (run.expect_json(), took)
}

/// The message of a failed run, asserting its exit code and kind.
fn failed(run: &StageRun, code: u8, kind: &str) -> String {
    let error = run.failed_with(code, kind);
    assert_eq!(error["stage"], "pg-lsn-lease");
    error["message"].as_str().unwrap().to_string()
}

/// An RFC 3339 time of the output, as the time from now.
fn from_now(value: &Value) -> Duration {
    let time = humantime::parse_rfc3339(value.as_str().unwrap()).unwrap();
    time.duration_since(SystemTime::now()).unwrap()
}
