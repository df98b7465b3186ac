//! Scenario 2: a pageserver stand-in (the kit's fake backend serving a real data directory as
//! `basebackup … --gzip`) behind a proxy in a namespace, the first connection stalled in the
//! middle of the stream.

use std::process::Command;
use std::time::Duration;

use compute_spec::exit_code;
use pg_test_support::netns::{netns_or_skip, Proxy};
use pg_test_support::{pg_bin, Answer, FakeBackend, Script, TestPostgres};
use serde_json::{json, Value};

use crate::common::{self, Running, Supervised, Watchdog};

const TENANT: &str = "3aa8fcc61f6d357410b7de754b1d9001";
const TIMELINE: &str = "de5a2f3ab7e1d7cd4e0e6a1c1a5d2f0b";
const LSN: &str = "0/16B5A50";
const TOKEN: &str = "storage-token-netfault";
/// Rows of the served cluster's table `t`.
const ROWS: u32 = 5_000;

/// A gzip tar (made by the system's `tar`) of a cleanly shut down data directory holding
/// table `t`, with the `zenith.signal` a pageserver's archive carries.
fn archive() -> Vec<u8> {
    let mut postgres = TestPostgres::start();
    postgres.psql(&format!(
        "CREATE TABLE t AS SELECT generate_series(1, {ROWS}) AS v"
    ));
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
        "tar failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

#[test]
fn a_pageserver_stalled_mid_stream_hits_the_idle_deadline_and_the_retry_succeeds() {
    let watchdog = Watchdog::new("pageserver_stalled", Duration::from_secs(60));
    let Some(ns) = netns_or_skip("a_pageserver_stalled_mid_stream") else {
        return;
    };
    let archive = archive();
    let size = archive.len() as u64;
    let standin = FakeBackend::start(Script {
        password: TOKEN.to_string(),
        command: format!("basebackup {TENANT} {TIMELINE} {LSN} --gzip"),
        answer: Answer::Copy {
            bytes: archive,
            replication: false,
        },
        ..Script::default()
    });
    let upstream = standin.address().parse().unwrap();
    let proxy = Proxy::start(ns.listen(0), upstream);
    // The first connection goes silent halfway through the archive.
    proxy.stall_first_after(1, size / 2);

    let (dir, port) = common::compute_dir("nf-ps");
    let url = format!("postgresql://no_user@{}:{}", ns.peer_addr(), proxy.port());
    let spec = common::spec_file(dir.path(), port, |spec| {
        spec["tenant_id"] = json!(TENANT);
        spec["timeline_id"] = json!(TIMELINE);
        spec["pageserver_connstring"] = json!(url);
        spec["safekeeper_connstrings"] = json!(["127.0.0.1:1"]);
        spec["storage_auth_token"] = json!(TOKEN);
    });
    let document = common::document(&spec, &dir.path().join("pgdata"), &pg_bin("postgres"));
    // The LSN pg-sync-safekeepers would have decided.
    let mut document: Value = serde_json::from_str(&document).unwrap();
    document["sync_safekeepers"] = json!({"lsn": LSN, "method": "netfault-test"});
    let stage = Running::start(
        "pg-basebackup-fetch",
        &[
            "--idle-timeout",
            "1s",
            "--retries",
            "2",
            "--retry-initial-ms",
            "50",
        ],
        &document.to_string(),
    );
    let (outcome, took) = stage.finish(Duration::from_secs(30));
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    assert_eq!(
        outcome.json["basebackup"]["attempts"], 2,
        "{}",
        outcome.json["basebackup"]
    );
    assert_eq!(standin.connections(), 2);
    assert_eq!(proxy.accepted(), 2);
    assert!(
        outcome.stderr.contains("said nothing for 1s"),
        "the first attempt did not end on the idle deadline: {}",
        outcome.stderr
    );
    // The stall cost the idle deadline, not more.
    assert!(took >= Duration::from_secs(1), "took only {took:?}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    eprintln!("measured: pageserver stalled mid-stream, retried: {took:?}");
    let clone = Supervised::start(&outcome.stdout);
    assert_eq!(clone.rows(), u64::from(ROWS));
    eprintln!("measured: scenario 2 took {:?}", watchdog.elapsed());
}
