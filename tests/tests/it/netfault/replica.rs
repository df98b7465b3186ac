//! Scenario 5: a Replica compute (compute-ctl, vanilla upstream source) whose primary, in its
//! own namespace, disappears (every packet dropped, both directions) and comes back.

use std::time::{Duration, Instant};

use compute_tools_tests::psql;
use pg_test_support::netns::netns_or_skip;
use pg_test_support::{pg_bin, wait_until};
use serde_json::json;

use super::common::{self, Compute, Watchdog};

/// How long the test watches the cut-off replica: it must keep serving and stay `running`.
const WATCH_CUT: Duration = Duration::from_secs(3);

#[test]
fn a_replica_whose_primary_disappears_keeps_serving_and_resumes_when_it_returns() {
    let watchdog = Watchdog::new("replica_primary_disappears", Duration::from_secs(60));
    let Some(ns) = netns_or_skip("a_replica_whose_primary_disappears") else {
        return;
    };
    let primary = common::primary_in(&ns, 10);
    let (dir, port) = common::compute_dir("nf-rep");
    let connstr = common::upstream_connstr(&ns, primary.port(), &primary);
    let spec = common::spec_file(dir.path(), port, |spec| {
        spec["upstream_connstring"] = json!(connstr);
        spec["mode"] = json!("Replica");
    });
    let pgdata = dir.path().join("pgdata");
    let compute = Compute::start(
        &[
            "-S",
            spec.to_str().unwrap(),
            "-b",
            pg_bin("postgres").to_str().unwrap(),
        ],
        &pgdata,
    );
    compute.wait_for_status("running", Duration::from_secs(45));
    let rows = || -> u64 {
        psql(&pgdata, port, "postgres", "SELECT count(*) FROM t")
            .parse()
            .unwrap()
    };
    assert_eq!(rows(), 10);
    primary.psql("INSERT INTO t VALUES (11)");
    assert!(
        wait_until(Duration::from_secs(15), || rows() == 11),
        "the replica does not stream from the primary"
    );

    ns.drop_all();
    // Written while the primary is unreachable: the replica cannot see it until the link is
    // back.
    primary.psql("INSERT INTO t VALUES (12)");
    let watch_until = Instant::now() + WATCH_CUT;
    let mut reads = 0;
    while Instant::now() < watch_until {
        // A fixed watch for what must not happen: the replica failing reads, leaving
        // `running`, or seeing a row it cannot have received.
        assert_eq!(rows(), 11, "the replica saw a row through a dropped link");
        let status = compute.status();
        assert_eq!(status["status"], "running", "{status}\n{}", compute.log());
        reads += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let dropped = ns.dropped_packets();
    assert!(dropped > 0, "the drop rules dropped nothing");
    eprintln!("measured: {reads} reads served and `running` throughout a {WATCH_CUT:?} cut ({dropped} packets dropped)");

    ns.restore();
    let restored = Instant::now();
    primary.psql("INSERT INTO t VALUES (13)");
    assert!(
        wait_until(Duration::from_secs(30), || rows() == 13),
        "replication did not resume within 30 s of the link's return"
    );
    eprintln!(
        "measured: replication resumed {:?} after the link returned",
        restored.elapsed()
    );
    assert_eq!(compute.status()["status"], "running");
    eprintln!("measured: scenario 5 took {:?}", watchdog.elapsed());
}
