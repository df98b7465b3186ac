//! Scenario 4: compute-ctl fetching its spec (`-p <uri> -i <id>`) from a control-plane
//! stand-in behind a proxy in a namespace that resets every other connection.

use std::sync::Arc;
use std::time::Duration;

use compute_tools_tests::psql;
use pg_test_support::fake_http::FakeHttp;
use pg_test_support::netns::{netns_or_skip, Proxy};
use pg_test_support::pg_bin;
use serde_json::{json, Value};

use super::common::{self, Compute, Watchdog};

/// A control-plane stand-in answering every request with `answer`.
fn control_plane(answer: Value) -> FakeHttp {
    pg_test_support::fake_http::json_server(Arc::new(std::sync::Mutex::new(answer)))
}

#[test]
fn a_control_plane_link_dropping_every_other_connection_still_starts_the_compute() {
    let watchdog = Watchdog::new("control_plane_every_other", Duration::from_secs(60));
    let Some(ns) = netns_or_skip("a_control_plane_link_dropping_every_other_connection") else {
        return;
    };
    let (dir, port) = common::compute_dir("nf-cp");
    let spec_path = common::spec_file(dir.path(), port, |_| {});
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(&spec_path).unwrap()).unwrap();
    let plane = control_plane(json!({"status": "attached", "spec": spec}));
    let proxy = Proxy::start(ns.listen(0), plane.address());
    proxy.drop_every_other(true);
    let uri = format!("http://{}:{}", ns.peer_addr(), proxy.port());
    let pgdata = dir.path().join("pgdata");
    let compute = Compute::start(
        &[
            "-p",
            &uri,
            "-i",
            "compute-netfault-1",
            "-b",
            pg_bin("postgres").to_str().unwrap(),
        ],
        &pgdata,
    );
    compute.wait_for_status("running", Duration::from_secs(45));
    assert_eq!(
        psql(
            &pgdata,
            port,
            "postgres",
            "SELECT count(*) FROM pg_roles WHERE rolname = 'app_owner'"
        ),
        "1",
        "the compute did not get the control plane's spec"
    );
    let (accepted, dropped, answered) = (
        proxy.accepted(),
        proxy.dropped(),
        plane
            .log()
            .iter()
            .filter(|(_, status)| *status == 200)
            .count(),
    );
    eprintln!(
        "measured: control plane behind a link dropping every other connection: \
         {accepted} connections, {dropped} reset, {answered} answered; running after {:?}",
        watchdog.elapsed()
    );
    assert!(dropped >= 1, "no connection was reset");
    assert!(answered >= 1, "no request got through");
    // Every fetch needed exactly one retry: reset, then answered.
    assert_eq!(dropped, answered, "{accepted} accepted");
    let failures = compute
        .log()
        .matches("control plane request failed")
        .count();
    assert_eq!(failures, dropped, "{}", compute.log());
}
