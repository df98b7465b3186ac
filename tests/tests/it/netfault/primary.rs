//! Scenario 1: a vanilla primary in its own namespace, reached through a slowed proxy there,
//! cut off (packets dropped) in the middle of `BASE_BACKUP`.

use std::time::Duration;

use compute_spec::exit_code;
use pg_test_support::netns::{netns_or_skip, NetNs, Proxy};
use pg_test_support::{pg_bin, wait_until, TestPostgres};
use serde_json::json;

use super::common::{self, Running, Supervised, Watchdog};

/// Rows in the primary's table: what a complete clone must hold.
const ROWS: u32 = 100_000;
/// The proxy's pace for the first attempt, so the cut lands mid-stream (a fresh cluster's
/// base backup with its WAL is some 40 MB).
const SLOW: u64 = 8 * 1024 * 1024;
/// Bytes received before the link is cut.
const CUT_AT: u64 = 4 * 1024 * 1024;

struct Setup {
    proxy: Proxy,
    primary: TestPostgres,
    ns: NetNs,
}

/// The primary in a namespace behind a slowed proxy listening there; `None` when skipped.
fn setup(test: &str) -> Option<Setup> {
    let ns = netns_or_skip(test)?;
    let primary = common::primary_in(&ns, ROWS);
    let proxy = Proxy::start(ns.listen(0), common::tcp_address(&ns, &primary));
    proxy.limit_rate(SLOW);
    Some(Setup { proxy, primary, ns })
}

/// The first document of a Primary clone of the primary behind `proxy`.
fn clone_document(dir: &std::path::Path, port: u16, setup: &Setup) -> String {
    let connstr = common::upstream_connstr(&setup.ns, setup.proxy.port(), &setup.primary);
    let spec = common::spec_file(dir, port, |spec| {
        spec["upstream_connstring"] = json!(connstr);
    });
    common::document(&spec, &dir.join("pgdata"), &pg_bin("postgres"))
}

/// Waits until the first attempt is well into the stream, then drops the proxy port's packets.
fn cut_mid_stream(setup: &Setup, stage: &Running) {
    assert!(
        wait_until(Duration::from_secs(20), || setup.proxy.bytes_to_clients()
            >= CUT_AT),
        "the base backup never got {CUT_AT} bytes through; stage log:\n{}",
        stage.stderr()
    );
    setup.ns.drop_ports(&[setup.proxy.port()]);
    eprintln!(
        "netfault: cut after {} bytes",
        setup.proxy.bytes_to_clients()
    );
}

#[test]
fn a_primary_cut_mid_base_backup_then_restored_is_retried_and_the_clone_is_complete() {
    let watchdog = Watchdog::new("primary_cut_then_restored", Duration::from_secs(60));
    let Some(setup) = setup("a_primary_cut_mid_base_backup_then_restored") else {
        return;
    };
    let (dir, port) = common::compute_dir("nf-cut");
    let document = clone_document(dir.path(), port, &setup);
    let stage = Running::start(
        "pg-basebackup-fetch",
        &[
            "--idle-timeout",
            "2s",
            "--startup-timeout",
            "2s",
            "--retries",
            "6",
            "--retry-initial-ms",
            "200",
        ],
        &document,
    );
    cut_mid_stream(&setup, &stage);
    // The idle deadline fires and the stage retries; the retry meets a dropped link too.
    stage.wait_for_log("retrying in", Duration::from_secs(10));
    let dropped = setup.ns.dropped_packets();
    assert!(dropped > 0, "the drop rules dropped nothing");
    setup.ns.restore();
    setup.proxy.limit_rate(0);
    let (outcome, took) = stage.finish(Duration::from_secs(40));
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    let attempts = outcome.json["basebackup"]["attempts"].as_u64().unwrap();
    assert!(attempts >= 2, "{}", outcome.json["basebackup"]);
    eprintln!(
        "measured: cut mid-BASE_BACKUP then restored: {attempts} attempts, {took:?} \
         ({dropped} packets dropped)"
    );
    let clone = Supervised::start(&outcome.stdout);
    assert_eq!(clone.rows(), u64::from(ROWS));
    eprintln!("measured: scenario 1a took {:?}", watchdog.elapsed());
}

#[test]
fn a_primary_cut_for_good_fails_within_the_deadline_and_pgdata_stays_wipeable() {
    let watchdog = Watchdog::new("primary_cut_for_good", Duration::from_secs(60));
    let Some(setup) = setup("a_primary_cut_for_good") else {
        return;
    };
    let (dir, port) = common::compute_dir("nf-gone");
    let document = clone_document(dir.path(), port, &setup);
    let quick = [
        "--idle-timeout",
        "1s",
        "--startup-timeout",
        "1s",
        "--retries",
        "2",
        "--retry-initial-ms",
        "100",
    ];
    let stage = Running::start("pg-basebackup-fetch", &quick, &document);
    cut_mid_stream(&setup, &stage);
    // Silence 1 s, then two attempts of at most 1 s each after 100 + 150 ms of pause.
    let (outcome, took) = stage.finish(Duration::from_secs(20));
    let error = outcome.failed_with(exit_code::RUNTIME, "network");
    assert_eq!(error["retryable"], true);
    let message = error["message"].as_str().unwrap();
    assert!(
        message.contains(&setup.proxy.port().to_string()),
        "the error does not name the server: {message}"
    );
    assert!(took < Duration::from_secs(8), "gave up only after {took:?}");
    eprintln!("measured: cut for good: failed after {took:?}: {message}");
    let pgdata = dir.path().join("pgdata");
    assert!(pgdata.exists(), "the failed run left no PGDATA to test");

    // The link is back: a next run over the half-built PGDATA wipes it and succeeds.
    setup.ns.restore();
    setup.proxy.limit_rate(0);
    let again = Running::start("pg-basebackup-fetch", &quick, &document);
    let (outcome, took) = again.finish(Duration::from_secs(30));
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    eprintln!("measured: the next run over the left PGDATA took {took:?}");
    let clone = Supervised::start(&outcome.stdout);
    assert_eq!(clone.rows(), u64::from(ROWS));
    eprintln!("measured: scenario 1b took {:?}", watchdog.elapsed());
}
