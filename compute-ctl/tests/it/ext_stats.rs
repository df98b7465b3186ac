//! Installed-extension statistics end to end on a real Postgres: the scan after start-up and
//! the loop at `--installed-extensions-collection-interval`, the
//! `compute_installed_extensions` series, and that the scan's sessions are not user
//! activity. pg-supervise is a stand-in that reports activity as the real monitor's
//! `activity_monitor_experimental` signal does: whenever the sum of
//! `pg_stat_database.sessions` over the user databases changes.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::time::Duration;

use crate::common::*;
use pg_test_support::probe::eventually;
use pg_test_support::TestPostgres;
use serde_json::json;

/// Stand-in pg-supervise: ready at once, then `activity` (now) whenever the sessions of the
/// user databases change, polled every 100 ms through psql; after each, a `downtime` event
/// whose `total_ms` counts the activity events so far (a marker the test reads in
/// `/metrics`: compute-ctl handles the events in order).
const SESSIONS_SUPERVISE: &str = r#"import sys, json, os, signal, time, subprocess, datetime
doc = json.load(sys.stdin)
d = os.environ["STANDIN_DIR"]
open(os.path.join(d, "supervise.pid"), "w").write(str(os.getpid()))
def out(o):
    print(json.dumps(o), flush=True)
def stop(sig, frame):
    out({"event": "exited", "code": 0, "signal": None})
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGQUIT, stop)
out({"event": "ready", "pid": os.getpid(), "start_postgres_ms": 1})
query = ("SELECT coalesce(sum(sessions), 0) FROM pg_stat_database "
         "WHERE datname NOT IN ('postgres', 'template0', 'template1')")
cmd = [os.environ["STANDIN_PSQL"], "-XAtq", "-h", os.environ["STANDIN_PG_SOCKET"],
       "-p", os.environ["STANDIN_PG_PORT"], "-U", "cloud_admin", "-d", "postgres", "-c", query]
previous = None
events = 0
while True:
    now = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    if previous is not None and now != previous:
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        out({"event": "activity", "last_active": stamp})
        events += 1
        out({"event": "downtime", "current_ms": 0, "total_ms": events})
    previous = now
    time.sleep(0.1)
"#;

#[test]
fn scans_export_the_metric_and_are_not_user_activity() {
    let server = TestPostgres::start();
    server.psql("CREATE DATABASE userdb");
    server
        .client_for("userdb")
        .batch_execute("CREATE EXTENSION pg_trgm")
        .unwrap();
    server.psql("CREATE ROLE visitor LOGIN");
    let mut harness = Harness::new();
    harness.stage("pg-supervise", SESSIONS_SUPERVISE);
    harness
        .command
        .env("STANDIN_PG_PORT", server.port().to_string())
        .env("STANDIN_PG_SOCKET", server.socket_dir())
        .env("STANDIN_PSQL", pg_test_support::pg_bin("psql"));
    let spec = json!({"format_version": 1.0, "suspend_timeout_seconds": 0,
                      "skip_pg_catalog_updates": true,
                      "cluster": {"roles": [], "databases": []}});
    let mut compute = harness.start(&[
        "-s",
        &spec.to_string(),
        "--installed-extensions-collection-interval",
        "1",
    ]);
    compute.wait_status("running");
    // The scan after start-up: plpgsql in postgres, template1 and userdb; pg_trgm in userdb.
    let plpgsql = "compute_installed_extensions{extension_name=\"plpgsql\",owned_by_superuser=\"1\",version=\"1.0\"} 3";
    eventually(Duration::from_secs(30), "the first scan", || {
        compute.get("/metrics").body.contains(plpgsql)
    });
    let metrics = compute.get("/metrics").body;
    assert!(
        metrics.contains("compute_installed_extensions{extension_name=\"pg_trgm\",owned_by_superuser=\"1\",version=\"1.6\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE compute_installed_extensions gauge"));
    // The loop's scan (after 2 × 1 s) sees a new database.
    server.psql("CREATE DATABASE later");
    eventually(Duration::from_secs(30), "the loop's scan", || {
        compute
            .get("/metrics")
            .body
            .contains(&plpgsql.replace("} 3", "} 4"))
    });
    // The loop's scan connected to userdb; once compute-ctl has handled the activity the
    // monitor reported for it (the marker after it), last_active is still unset.
    eventually(
        Duration::from_secs(30),
        "the scan's sessions reported",
        || {
            compute.get("/metrics").body.lines().any(|line| {
                line.starts_with("compute_pg_downtime_ms_total ") && !line.ends_with(" 0")
            })
        },
    );
    assert_eq!(compute.get("/status").json()["last_active"], json!(null));
    // A user's session is (once the scan's quiet margin has passed: sessions until then
    // are taken for the scan's).
    let url = format!(
        "host={} port={} user=visitor dbname=userdb",
        server.socket_dir().display(),
        server.port()
    );
    eventually(Duration::from_secs(30), "a user's session to count", || {
        postgres::Client::connect(&url, postgres::NoTls)
            .unwrap()
            .batch_execute("SELECT 1")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200)); // one poll of the stand-in
        !compute.get("/status").json()["last_active"].is_null()
    });
    compute.signal(nix::sys::signal::Signal::SIGTERM);
    compute.wait_exit(Duration::from_secs(20));
}
