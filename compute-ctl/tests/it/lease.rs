//! LSN leases against a page-service stand-in (the kit's `fake_pg::page_service`, answering
//! `lease lsn` with a `valid_until`, NULL, an error, or slowly, as a script says): every
//! shard × pageserver with the token as password, renewals on upstream's schedule, a
//! refusal ending renewals, errors backing off and recovering, a slow server timing out, a
//! pageserver change ending the wait early, a stop; and compute-ctl itself leasing a Static
//! spec's LSN.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use compute_ctl::lease::{LeaseKeeper, LeaseSettings};
use compute_ctl::state::Shared;
use compute_spec::ComputeDocument;
use pg_test_support::fake_pg::page_service::{Behaviour, Pageserver};
use pg_test_support::probe::eventually;
use serde_json::{json, Value};

const TENANT: &str = "0123456789abcdef0123456789abcdef";
const TIMELINE: &str = "fedcba9876543210fedcba9876543210";
const LSN: &str = "0/16B3748";
const TOKEN: &str = "storage-token";

/// A Static spec on these pageserver settings.
fn static_spec(pageservers: Value) -> Value {
    let mut spec = json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {"roles": [], "databases": []},
        "tenant_id": TENANT, "timeline_id": TIMELINE,
        "mode": {"Static": LSN},
        "storage_auth_token": TOKEN,
    });
    spec.as_object_mut()
        .unwrap()
        .extend(pageservers.as_object().unwrap().clone());
    spec
}

fn shared_with(spec: Value) -> Arc<Shared> {
    let shared = Arc::new(Shared::new());
    let document: ComputeDocument = serde_json::from_value(json!({
        "document_version": 1, "spec": spec, "pgdata": "/nonexistent",
        "pgbin": "/nonexistent/postgres", "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/nonexistent"},
    }))
    .unwrap();
    shared.update(|inner| inner.document = Some(document));
    shared
}

fn fast_settings() -> LeaseSettings {
    LeaseSettings {
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        retry_initial: Duration::from_millis(200),
        ..LeaseSettings::default()
    }
}

fn command(shard: &str) -> String {
    format!("lease lsn {shard} {TIMELINE} {LSN} ")
}

#[test]
fn every_shard_and_pageserver_is_leased_and_renewed_on_schedule() {
    // valid 2 s → renewed after max(2 s − 60 s, 1 s) = 1 s.
    let a = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(2))]);
    let b = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(2))]);
    let spec = static_spec(json!({
        "shard_stripe_size": 2048,
        "pageserver_connection_info": {"shard_count": 2, "shards": {
            "0002": {"pageservers": [{"libpq_url": a.connstr()}]},
            "0102": {"pageservers": [{"libpq_url": a.connstr()}, {"libpq_url": b.connstr()}]},
        }},
    }));
    let shared = shared_with(spec);
    let started = Instant::now();
    let keeper = LeaseKeeper::start(shared, fast_settings()).unwrap();
    eventually(Duration::from_secs(20), "three attempts", || {
        keeper.stats().attempts >= 3
    });
    let seen_a = a.seen();
    let seen_b = b.seen();
    assert!(seen_a
        .iter()
        .chain(&seen_b)
        .all(|seen| seen.password == TOKEN));
    let shard0 = command(&format!("{TENANT}-0002"));
    let shard1 = command(&format!("{TENANT}-0102"));
    assert_eq!(seen_a[0].query, shard0);
    assert_eq!(seen_a[1].query, shard1);
    assert_eq!(seen_b[0].query, shard1);
    // Each attempt asks A twice (both shards) and B once; attempts ~1 s apart, not sooner.
    for pair in seen_b.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(800), "renewed after {gap:?}");
    }
    assert!(started.elapsed() >= Duration::from_millis(1800));
    let stats = keeper.stats();
    assert!(stats.attempts >= 3 && stats.failures == 0, "{stats:?}");
    assert!(stats.valid_until.unwrap() > SystemTime::now());
}

#[test]
fn a_refusal_ends_renewals_and_wins_over_leases() {
    let a = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(1))]);
    let b = Pageserver::start(
        TOKEN,
        vec![
            Behaviour::ValidFor(Duration::from_secs(1)),
            Behaviour::Refuse,
        ],
    );
    let spec = static_spec(json!({
        "pageserver_connstring": format!("{},{}", a.connstr(), b.connstr()),
        "shard_stripe_size": 2048,
    }));
    let keeper = LeaseKeeper::start(shared_with(spec), fast_settings()).unwrap();
    eventually(Duration::from_secs(20), "the thread to end", || {
        keeper.is_finished()
    });
    let stats = keeper.stats();
    assert!(stats.refused, "{stats:?}");
    assert_eq!(stats.attempts, 2);
    assert!(stats
        .last_error
        .unwrap()
        .contains("refused to lease 0/16B3748"));
    assert_eq!(b.seen().len(), 2);
    assert_eq!(b.seen()[1].query, command(&format!("{TENANT}-0102")));
}

#[test]
fn errors_back_off_and_a_lease_resets_them() {
    let a = Pageserver::start(
        TOKEN,
        vec![
            Behaviour::Fail,
            Behaviour::Fail,
            Behaviour::Fail,
            Behaviour::ValidFor(Duration::from_secs(3600)),
        ],
    );
    let keeper = LeaseKeeper::start(
        shared_with(static_spec(json!({"pageserver_connstring": a.connstr()}))),
        fast_settings(),
    )
    .unwrap();
    eventually(Duration::from_secs(20), "a lease after the errors", || {
        keeper.stats().valid_until.is_some()
    });
    let stats = keeper.stats();
    assert_eq!((stats.attempts, stats.failures), (4, 3), "{stats:?}");
    assert!(stats.last_error.is_none());
    let seen = a.seen();
    assert_eq!(seen[0].query, command(TENANT));
    // 200 ms, 300 ms, 450 ms.
    let gaps: Vec<Duration> = seen
        .windows(2)
        .map(|pair| pair[1].at - pair[0].at)
        .collect();
    for (gap, least) in gaps.iter().zip([200, 300, 450]) {
        assert!(*gap >= Duration::from_millis(least), "{gaps:?}");
    }
    assert!(gaps[2] > gaps[0], "{gaps:?}");
}

#[test]
fn a_slow_pageserver_times_out_and_is_retried() {
    let a = Pageserver::start(
        TOKEN,
        vec![
            Behaviour::Slow(Duration::from_secs(3)),
            Behaviour::ValidFor(Duration::from_secs(3600)),
        ],
    );
    let settings = LeaseSettings {
        request_timeout: Duration::from_millis(300),
        ..fast_settings()
    };
    let started = Instant::now();
    let keeper = LeaseKeeper::start(
        shared_with(static_spec(json!({"pageserver_connstring": a.connstr()}))),
        settings,
    )
    .unwrap();
    eventually(Duration::from_secs(20), "a failed attempt", || {
        keeper.stats().failures == 1
    });
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the timeout did not apply"
    );
    let error = keeper.stats().last_error.unwrap();
    assert!(
        error.starts_with(&format!("{TENANT}: lease lsn on pageserver: ")),
        "{error}"
    );
    eventually(Duration::from_secs(20), "the retry's lease", || {
        keeper.stats().valid_until.is_some()
    });
}

#[test]
fn a_pageserver_change_ends_the_wait_and_a_stop_ends_the_thread() {
    let a = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(3600))]);
    let b = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(3600))]);
    let shared = shared_with(static_spec(json!({"pageserver_connstring": a.connstr()})));
    let mut keeper = LeaseKeeper::start(shared.clone(), fast_settings()).unwrap();
    eventually(Duration::from_secs(20), "the first lease", || {
        keeper.stats().attempts == 1
    });
    // The next renewal is 59 minutes away; a new pageserver is asked at once.
    shared.update(|inner| {
        let spec = inner.document.as_mut().unwrap().spec.as_mut().unwrap();
        spec.pageserver_connstring = Some(b.connstr());
    });
    eventually(
        Duration::from_secs(20),
        "the new pageserver's lease",
        || b.seen().len() == 1,
    );
    assert_eq!(a.seen().len(), 1);
    keeper.stop();
    eventually(Duration::from_secs(20), "the thread to end", || {
        keeper.is_finished()
    });
    b.set(vec![Behaviour::ValidFor(Duration::from_secs(1))]);
    assert_eq!(b.seen().len(), 1);
}

#[test]
fn compute_ctl_leases_a_static_computes_lsn() {
    let pageserver = Pageserver::start(TOKEN, vec![Behaviour::ValidFor(Duration::from_secs(3600))]);
    let mut harness = common::Harness::new();
    let spec = static_spec(json!({"pageserver_connstring": pageserver.connstr()}));
    let mut compute = harness.start(&["-s", &spec.to_string()]);
    compute.wait_status("running");
    eventually(Duration::from_secs(20), "a lease", || {
        !pageserver.seen().is_empty()
    });
    let seen = pageserver.seen();
    assert_eq!(seen[0].query, command(TENANT));
    assert_eq!(seen[0].password, TOKEN);
    compute.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(compute.wait_exit(Duration::from_secs(20)), 0);
}
