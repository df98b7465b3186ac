//! The activity monitor against a real Postgres: which sessions count as activity, and downtime.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use crate::common::{Fixture, Supervisor, SECOND};
use compute_spec::quote::quote_literal;
use compute_spec::spec::ComputeFeature;
use pg_test_support::wait_until;
use serde_json::Value;

fn last_active(event: &Value) -> SystemTime {
    humantime::parse_rfc3339(event["last_active"].as_str().unwrap()).unwrap()
}

/// Waits for an activity event at or after `since`, skipping older ones.
fn activity_since(supervisor: &Supervisor, since: SystemTime, timeout: Duration) -> SystemTime {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let event = supervisor.wait_event("activity", left);
        let at = last_active(&event);
        // The server's clock and ours are the same machine's; allow for millisecond rounding.
        if at + Duration::from_millis(2) >= since {
            return at;
        }
    }
}

#[test]
fn queries_and_idle_transactions_count_but_the_admin_does_not() {
    let fixture = Fixture::new("");
    let supervisor = fixture.supervise(&[]);
    supervisor.wait_event("ready", 30 * SECOND);

    // The admin role's own work is not user activity: last_active stays unset.
    let mut admin = fixture.client();
    admin.batch_execute("CREATE ROLE alice LOGIN").unwrap();
    admin.execute("SELECT pg_sleep(0.6)", &[]).unwrap();
    supervisor.assert_quiet(Duration::from_millis(100));

    // A query by a user.
    let mut alice = fixture.client_as("alice", "postgres");
    let before_query = SystemTime::now();
    alice.execute("SELECT pg_sleep(0.6)", &[]).unwrap();
    let seen = activity_since(&supervisor, before_query, 2 * SECOND);
    assert!(seen <= SystemTime::now());

    // Idle in transaction: active on every tick, so last_active keeps moving.
    alice.batch_execute("BEGIN; SELECT 1").unwrap();
    let in_transaction = SystemTime::now();
    let first = activity_since(&supervisor, in_transaction, 2 * SECOND);
    let second = activity_since(&supervisor, first + Duration::from_millis(100), 2 * SECOND);
    assert!(second > first);
}

/// A user's session left idle (as a pooler keeps them), once its state change was reported:
/// from then on it gives no news, and must hide no other signal.
fn idle_user_session(fixture: &Fixture, supervisor: &Supervisor) -> postgres::Client {
    fixture
        .client()
        .batch_execute("CREATE ROLE idler LOGIN")
        .unwrap();
    let before = SystemTime::now();
    let mut idle = fixture.client_as("idler", "postgres");
    idle.batch_execute("SELECT 1").unwrap();
    activity_since(supervisor, before, 3 * SECOND);
    supervisor.assert_quiet(Duration::from_millis(1200));
    idle
}

#[test]
fn a_walsender_counts() {
    let fixture = Fixture::new("");
    let supervisor = fixture.supervise(&[]);
    supervisor.wait_event("ready", 30 * SECOND);
    supervisor.assert_quiet(Duration::from_millis(600));
    let _idle = idle_user_session(&fixture, &supervisor);

    // A logical-replication connection as the admin: not a client backend, but a walsender.
    let psql = fixture.pg.program("psql");
    let mut walsender = Command::new(psql)
        .arg("-XAtq")
        .arg(fixture.connstr("replication=database"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = walsender.stdin.take().unwrap();
    stdin.write_all(b"IDENTIFY_SYSTEM;\n").unwrap();
    stdin.flush().unwrap();
    let started = SystemTime::now();
    let seen = activity_since(&supervisor, started, 3 * SECOND);
    assert!(seen >= started);
    // And on every tick while it runs, not only once.
    let again = activity_since(&supervisor, seen + Duration::from_millis(100), 3 * SECOND);
    assert!(again > seen);
    drop(stdin);
    walsender.wait().unwrap();
}

#[test]
fn short_sessions_count_with_the_experimental_feature() {
    let mut fixture = Fixture::new("");
    let spec = fixture.document.spec.as_mut().unwrap();
    spec.features
        .push(ComputeFeature::ActivityMonitorExperimental);
    let supervisor = fixture.supervise(&[]);
    supervisor.wait_event("ready", 30 * SECOND);
    fixture
        .client()
        .batch_execute("CREATE DATABASE appdb")
        .unwrap();
    // Let the monitor take its baseline of the counters (nothing outside can observe that);
    // meanwhile no activity may be reported: a wait for something that must NOT happen.
    supervisor.assert_quiet(Duration::from_millis(700));

    // An admin session far shorter than a tick, in a user database: only the counters see it.
    let connected = SystemTime::now();
    let mut short = fixture.client_as("cloud_admin", "appdb");
    short.batch_execute("SELECT 1").unwrap();
    drop(short);
    let seen = activity_since(&supervisor, connected, 3 * SECOND);
    assert!(seen >= connected);
}

#[test]
fn the_monitor_reconnects_and_reports_downtime() {
    let fixture = Fixture::new("");
    let supervisor = fixture.supervise(&[]);
    supervisor.wait_event("ready", 30 * SECOND);
    // The monitor connects after `ready`. Wait until it has finished a tick: its session was
    // seen idle after two different queries (the first may be its prepare; the second began
    // after that one ended, so at least one whole tick ran: the outage has a start).
    let mut admin = fixture.client();
    let mut idle_after = std::collections::BTreeSet::new();
    let ticked = wait_until(10 * SECOND, || {
        let rows = admin
            .query(
                "SELECT query_start::text FROM pg_stat_activity \
                 WHERE application_name = 'compute_ctl:compute_monitor' AND state = 'idle' \
                 AND query_start IS NOT NULL",
                &[],
            )
            .unwrap();
        idle_after.extend(rows.iter().map(|row| row.get::<_, String>(0)));
        idle_after.len() >= 2
    });
    assert!(ticked, "the monitor did not finish a tick: {idle_after:?}");
    let terminated: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'compute_ctl:compute_monitor'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        terminated, 1,
        "the monitor's connection is named as upstream's"
    );
    let down = supervisor.wait_event("downtime", 2 * SECOND);
    let down_ms = down["current_ms"].as_u64().unwrap();
    assert!(down_ms > 0, "{down}");
    assert_eq!(down["total_ms"].as_u64().unwrap(), down_ms);
    let up = supervisor.wait_event("downtime", 2 * SECOND);
    assert_eq!(up["current_ms"], 0, "{up}");
    assert!(up["total_ms"].as_u64().unwrap() >= down_ms, "{up}");
}

#[test]
fn a_running_subscription_counts() {
    let publisher = pg_test_support::TestPostgres::builder()
        .setting("wal_level", "logical")
        .start();
    publisher
        .client()
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY); CREATE PUBLICATION p FOR TABLE t")
        .unwrap();
    let fixture = Fixture::new("");
    let supervisor = fixture.supervise(&[]);
    supervisor.wait_event("ready", 30 * SECOND);
    let mut admin = fixture.client();
    admin
        .batch_execute("CREATE TABLE t (id int PRIMARY KEY)")
        .unwrap();
    supervisor.assert_quiet(Duration::from_millis(600));
    let _idle = idle_user_session(&fixture, &supervisor);

    // Created by the admin, but its apply worker is user activity.
    let created = SystemTime::now();
    let connection = format!(
        "host={} port={} user=cloud_admin dbname=postgres",
        publisher.socket_dir().display(),
        publisher.port()
    );
    admin
        .batch_execute(&format!(
            "CREATE SUBSCRIPTION s CONNECTION {} PUBLICATION p",
            quote_literal(&connection)
        ))
        .unwrap();
    let seen = activity_since(&supervisor, created, 5 * SECOND);
    assert!(seen >= created);
    admin.batch_execute("DROP SUBSCRIPTION s").unwrap();
}

#[test]
fn an_autovacuum_worker_counts() {
    let fixture = Fixture::new("");
    let supervisor = fixture.supervise(&[]);
    supervisor.wait_event("ready", 30 * SECOND);
    let _idle = idle_user_session(&fixture, &supervisor);
    // Only now (a worker checking each database every second is activity too): autovacuum
    // wakes every second; on table `dead` it starts at once and crawls (a 1-credit budget per
    // 100 ms), so its worker is seen by many ticks.
    let mut admin = fixture.client();
    admin
        .batch_execute("ALTER SYSTEM SET autovacuum_naptime = 1")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let started = SystemTime::now();
    admin
        .batch_execute(
            "CREATE TABLE dead WITH (autovacuum_vacuum_threshold = 1, \
               autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_cost_delay = 100, \
               autovacuum_vacuum_cost_limit = 1) \
             AS SELECT g AS id FROM generate_series(1, 100000) g; \
             DELETE FROM dead",
        )
        .unwrap();
    let seen = activity_since(&supervisor, started, 15 * SECOND);
    let working: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(working, 1, "the activity came from the autovacuum worker");
    // The worker crawls through `dead` for tens of seconds: activity on every tick.
    let again = activity_since(&supervisor, seen + Duration::from_millis(100), 10 * SECOND);
    assert!(again > seen);
}
