//! Wire compatibility with Neon's `compute_ctl` (`neon-compute-ctl-2.md` §2, §14): a real
//! compute (compute-ctl, the real stage binaries, real PostgreSQL from initdb) started with
//! an Ed25519 key set and `-i compute-1`, then a TABLE of upstream requests replayed in
//! order — one row per route × case, each with the status and body shape upstream answers.
//! A second, smaller table runs against a compute whose start failed.
//!
//! Rows that change the compute's state (refresh, configure, terminate) come last. Every row
//! runs even when an earlier one fails; the failure message lists all mismatching rows.
//!
//! Markers in the tables:
//! * `deliberate difference`: our documented behaviour differs from upstream's on purpose
//!   (see the doc comments in `compute-ctl/src/*.rs`); the row asserts ours.
//! * rows without a note assert upstream's behaviour.

#![allow(clippy::unwrap_used, missing_docs)] // Test code: a panic is the test failing; its items are internal.

mod checks;
mod compute;
mod http;
mod rows_internal;
mod rows_jwt;
mod rows_read_only;
mod rows_routing;
mod rows_state;
mod table;
mod tokens;
mod vocab;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use compute_tools_tests::{binary, wait_until, write_sample_spec, PostgresChild};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use pg_test_support::{free_tcp_port, TestDir};
use serde_json::{json, Value};

use checks::*;
use compute::*;
use http::*;
use table::*;
use tokens::*;
use vocab::*;

pub const COMPUTE_ID: &str = "compute-1";
pub const TENANT: &str = "3aa8fcc61f6d357410b7de754b1d9001";
pub const TIMELINE: &str = "de200bd42b49cc1814412c7e592dd6e9";
pub const JSON: &str = "application/json";
pub const PLAIN: &str = "text/plain; charset=utf-8";
pub const METRICS_TYPE: &str = "text/plain; version=0.0.4";
pub const E415: &str = "expected request with `content-type: application/json`";
pub const UNPARSABLE: &str = "failed to parse the request body as json: ";
pub const UNDESERIALIZABLE: &str = "failed to deserialize the json body into the target type: ";
/// A request id longer than compute-ctl keeps (250 visible ASCII bytes).
pub const LONG_REQUEST_ID: &str = concat!(
    "req-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "req-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "req-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab",
);
/// How many requests the two tables send (the running compute's and the failed one's): a
/// change to the tables must change this number knowingly.
pub const REQUESTS: usize = 181;
/// Upstream's 2 MiB body limit.
pub const MAX_BODY: usize = 2 * 1024 * 1024;

#[test]
fn upstream_requests_get_upstream_answers() {
    let mut compute = Compute::start("compat", Some("127.0.0.1"), |_| {});
    if let Err(error) = compute.wait_for_status("running", Duration::from_secs(120)) {
        panic!("the compute did not start: {error}");
    }
    let rows = table(&compute.spec);
    let outcomes = compute.replay(&rows, 0);
    report(&outcomes);
}

#[test]
fn a_failed_compute_gets_upstream_answers() {
    // Postgres refuses the value, so the start fails after initdb.
    // Started without --http-listen: the external server's default address is checked too.
    let mut compute = Compute::start("compatf", None, |spec| {
        spec["cluster"]["settings"]
            .as_array_mut()
            .expect("the sample spec has settings")
            .push(json!({"name": "shared_buffers", "value": "lots", "vartype": "string"}));
    });
    if let Err(error) = compute.wait_for_status("failed", Duration::from_secs(120)) {
        panic!("the compute did not fail: {error}");
    }
    let mut spec = compute.spec.clone();
    spec["cluster"]["settings"]
        .as_array_mut()
        .expect("settings")
        .pop();
    let rows = failed_table(&spec);
    // A failed start exits 1 (cli.rs), also after a /terminate.
    let outcomes = compute.replay(&rows, 1);
    report(&outcomes);
}

/// Guards against a table that silently shrinks.
#[test]
fn the_table_covers_every_route() {
    let spec = json!({"format_version": 1.0, "cluster": {"roles": [], "databases": []}});
    let rows = table(&spec);
    for route in [
        "/status",
        "/metrics.json",
        "/metrics",
        "/autoscaling_metrics",
        "/configure",
        "/terminate",
        "/insights",
        "/check_writability",
        "/dbs_and_roles",
        "/database_schema",
        "/hadron_liveness_probe",
        "/promote",
        "/lfc/prewarm",
        "/lfc/offload",
        "/extension_server/",
        "/extensions",
        "/grants",
        "/refresh_configuration",
    ] {
        assert!(
            rows.iter().any(|row| row.target.starts_with(route)),
            "no row for {route}"
        );
    }
    assert!(rows.len() >= 140, "{} rows", rows.len());
    assert!(failed_table(&spec).len() >= 10);
    let requests = rows.len() + failed_table(&spec).len();
    println!("the compatibility tables send {requests} requests");
    assert_eq!(requests, REQUESTS, "the tables' request count changed");
}
