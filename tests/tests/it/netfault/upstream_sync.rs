//! Scenario 1, the sync stage's half: `pg-sync-safekeepers` asking a vanilla primary in its
//! own namespace for its WAL position (`IDENTIFY_SYSTEM`) while every packet to it is dropped.

use std::time::Duration;

use compute_spec::exit_code;
use pg_test_support::netns::netns_or_skip;
use pg_test_support::pg_bin;
use serde_json::json;

use super::common::{self, Running, Watchdog};

#[test]
fn the_wal_position_of_a_dropped_primary_is_retried_until_the_link_returns_or_the_deadline() {
    let watchdog = Watchdog::new("upstream_sync_dropped", Duration::from_secs(60));
    let Some(ns) = netns_or_skip("the_wal_position_of_a_dropped_primary") else {
        return;
    };
    let primary = common::primary_in(&ns, 1);
    let (dir, port) = common::compute_dir("nf-ids");
    let connstr = common::upstream_connstr(&ns, primary.port(), &primary);
    let spec = common::spec_file(dir.path(), port, |spec| {
        spec["upstream_connstring"] = json!(connstr);
    });
    let document = common::document(&spec, &dir.path().join("pgdata"), &pg_bin("postgres"));
    let before: compute_spec::Lsn = primary.psql("SELECT pg_current_wal_lsn()").parse().unwrap();
    ns.drop_all();

    // Gone for good: a clear failure at the deadline.
    let flags = ["--startup-timeout", "1s", "--timeout", "3s"];
    let (outcome, took) =
        Running::start("pg-sync-safekeepers", &flags, &document).finish(Duration::from_secs(20));
    assert_eq!(
        outcome.code,
        i32::from(exit_code::RUNTIME),
        "{}",
        outcome.stderr
    );
    let message = outcome.json["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&ns.peer_addr().to_string()),
        "the error does not name the primary: {message}"
    );
    assert_eq!(outcome.json["error"]["kind"], "timeout", "{}", outcome.json);
    // It says the whole --timeout passed, and does not blame pg_hba.conf for a silent server.
    assert!(message.contains("--timeout 3s"), "{message}");
    assert!(!message.contains("pg_hba"), "{message}");
    assert!(took >= Duration::from_secs(2), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(6), "gave up only after {took:?}");
    eprintln!("measured: IDENTIFY_SYSTEM to a dropped primary: failed after {took:?}: {message}");

    // Back after the first round: the next round answers.
    let flags = ["--startup-timeout", "1s", "--timeout", "20s"];
    let stage = Running::start("pg-sync-safekeepers", &flags, &document);
    stage.wait_for_log("trying again", Duration::from_secs(10));
    ns.restore();
    let (outcome, took) = stage.finish(Duration::from_secs(25));
    assert_eq!(outcome.code, i32::from(exit_code::OK), "{}", outcome.stderr);
    let lsn: compute_spec::Lsn = outcome.json["sync_safekeepers"]["lsn"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let after: compute_spec::Lsn = primary.psql("SELECT pg_current_wal_lsn()").parse().unwrap();
    assert!(
        before <= lsn && lsn <= after,
        "{lsn} is not the primary's position ({before} before the cut, {after} now)"
    );
    eprintln!(
        "measured: IDENTIFY_SYSTEM answered {took:?} after the start, link back after round 1"
    );
    eprintln!(
        "measured: upstream sync scenario took {:?}",
        watchdog.elapsed()
    );
}
