//! Scenario 2: a pageserver stand-in (the kit's fake backend serving a real data directory as
//! `basebackup … --gzip`) behind a proxy in a namespace, the first connection stalled in the
//! middle of the stream; and the same stand-in trickling its archive just inside the idle
//! deadline (a slow-loris peer), which the minimum rate ends.

use std::process::Command;
use std::time::Duration;

use compute_spec::exit_code;
use pg_test_support::netns::{netns_or_skip, Proxy};
use pg_test_support::{pg_bin, Answer, FakeBackend, Script, TestPostgres};
use serde_json::{json, Value};

use super::common::{self, Running, Supervised, Watchdog};

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

/// The pageserver document for the stand-in behind `proxy` (the LSN decided beforehand).
fn document(
    ns: &pg_test_support::netns::NetNs,
    proxy: &Proxy,
    dir: &std::path::Path,
    port: u16,
) -> Value {
    let url = format!("postgresql://no_user@{}:{}", ns.peer_addr(), proxy.port());
    let spec = common::spec_file(dir, port, |spec| {
        spec["tenant_id"] = json!(TENANT);
        spec["timeline_id"] = json!(TIMELINE);
        spec["pageserver_connstring"] = json!(url);
        spec["safekeeper_connstrings"] = json!(["127.0.0.1:1"]);
        spec["storage_auth_token"] = json!(TOKEN);
    });
    let document = common::document(&spec, &dir.join("pgdata"), &pg_bin("postgres"));
    // The LSN pg-sync-safekeepers would have decided.
    let mut document: Value = serde_json::from_str(&document).unwrap();
    document["sync_safekeepers"] = json!({"lsn": LSN, "method": "netfault-test"});
    document
}

/// The stand-in serving `archive` (from [`archive`]).
fn standin(archive: Vec<u8>) -> FakeBackend {
    FakeBackend::start(Script {
        password: TOKEN.to_string(),
        command: format!("basebackup {TENANT} {TIMELINE} {LSN} --gzip"),
        answer: Answer::Copy {
            bytes: archive,
            replication: false,
        },
        ..Script::default()
    })
}

#[test]
fn a_pageserver_trickling_inside_the_idle_deadline_fails_its_minimum_rate() {
    let watchdog = Watchdog::new("pageserver_trickling", Duration::from_secs(60));
    let Some(ns) = netns_or_skip("a_pageserver_trickling") else {
        return;
    };
    let standin = standin(archive());
    let proxy = Proxy::start(ns.listen(0), standin.address().parse().unwrap());
    // 12 kB/s in the proxy's 16 KiB chunks: a chunk every ~1.4 s, inside the 3 s idle
    // deadline, far below the 64 KiB per 2 s asked for.
    proxy.limit_rate(12_000);
    let (dir, port) = common::compute_dir("nf-pst");
    let document = document(&ns, &proxy, dir.path(), port);
    let stage = Running::start(
        "pg-basebackup-fetch",
        &[
            "--idle-timeout",
            "3s",
            "--min-rate-bytes",
            "65536",
            "--min-rate-window",
            "2s",
            "--retries",
            "1",
            "--retry-initial-ms",
            "50",
        ],
        &document.to_string(),
    );
    let (outcome, took) = stage.finish(Duration::from_secs(30));
    let error = outcome.failed_with(exit_code::RUNTIME, "network");
    assert_eq!(error["retryable"], true);
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("--min-rate-bytes"), "{message}");
    assert!(message.contains(&proxy.port().to_string()), "{message}");
    assert_eq!(standin.connections(), 2, "one retry");
    // Each attempt ends after about one window, not after the archive or an idle deadline.
    assert!(took >= Duration::from_secs(4), "took only {took:?}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    eprintln!("measured: a trickling pageserver refused after {took:?} (2 attempts)");
    eprintln!(
        "measured: the trickle scenario took {:?}",
        watchdog.elapsed()
    );
}

#[test]
fn a_pageserver_stalled_mid_stream_hits_the_idle_deadline_and_the_retry_succeeds() {
    let watchdog = Watchdog::new("pageserver_stalled", Duration::from_secs(60));
    let Some(ns) = netns_or_skip("a_pageserver_stalled_mid_stream") else {
        return;
    };
    let archive = archive();
    let size = archive.len() as u64;
    let standin = standin(archive);
    let proxy = Proxy::start(ns.listen(0), standin.address().parse().unwrap());
    // The first connection goes silent halfway through the archive.
    proxy.stall_first_after(1, size / 2);

    let (dir, port) = common::compute_dir("nf-ps");
    let document = document(&ns, &proxy, dir.path(), port);
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
