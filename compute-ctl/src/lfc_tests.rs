//! The route adapters and the compute the jobs see: codes, bodies, counters, and the
//! adapter's stop signal following the compute's status.

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{json, Value};

use super::*;
use crate::testing::{body, request, shared_with};
use pg_prewarm::storage_target;
use pg_test_support::probe::settle;

const TENANT: &str = "0123456789abcdef0123456789abcdef";
const TIMELINE: &str = "fedcba9876543210fedcba9876543210";

fn complete() -> Value {
    json!({
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "endpoint_id": "ep-1",
        "endpoint_storage_addr": "storage:9000",
        "endpoint_storage_token": "secret-token",
    })
}

/// The prewarm state once no prewarm runs (polled, at most 10 s: a run still on then is
/// returned as is and fails the test's assertion).
fn settled_prewarm(lfc: &Lfc) -> PrewarmState {
    let prewarming = |state: &PrewarmState| *state == PrewarmState::Prewarming;
    settle(Duration::from_secs(10), || lfc.prewarm_state(), prewarming)
}

/// The offload state once no offload runs (as [`settled_prewarm`]).
fn settled_offload(lfc: &Lfc) -> OffloadState {
    let offloading = |state: &OffloadState| *state == OffloadState::Offloading;
    settle(Duration::from_secs(10), || lfc.offload_state(), offloading)
}

fn error_of(state: &PrewarmState) -> &str {
    match state {
        PrewarmState::Failed { error } => error,
        other => panic!("not failed: {other:?}"),
    }
}

#[test]
fn prewarm_without_storage_settings_fails_naming_them() {
    let lfc = Arc::new(Lfc::new());
    let reply = get_prewarm(&lfc);
    assert_eq!(
        (reply.status.as_u16(), body(&reply)),
        (200, json!({"status": "not_prewarmed"}))
    );

    let shared = shared_with(Some(json!({})));
    let reply = post_prewarm(
        &lfc,
        &shared,
        &request(Method::POST, "/lfc/prewarm", "", b""),
    );
    assert_eq!(reply.status, 202);
    let state = settled_prewarm(&lfc);
    let error = error_of(&state);
    for field in [
        "endpoint_storage_addr",
        "endpoint_storage_token",
        "endpoint_id",
        "tenant_id",
        "timeline_id",
    ] {
        assert!(error.contains(field), "{error}");
    }
    assert_eq!(body(&get_prewarm(&lfc))["status"], "failed");
    assert_eq!(lfc.counters().prewarms, 1);
    assert_eq!(lfc.counters().prewarm_errors, 1);

    // from_endpoint stands in for endpoint_id; the settings stand in for the fields.
    let shared = shared_with(Some(json!({
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "cluster": {"roles": [], "databases": [], "settings": [
            {"name": "neon.endpoint_storage_addr", "value": "s:1", "vartype": "string"},
            {"name": "neon.endpoint_storage_token", "value": "t", "vartype": "string"}
        ]}
    })));
    assert_eq!(
        storage_target(&shared.lock().document.clone().unwrap(), Some("ep-other")).unwrap(),
        StorageTarget {
            url: format!("http://s:1/{TENANT}/{TIMELINE}/ep-other/lfc_state"),
            token: "t".to_string()
        }
    );
    let reply = post_prewarm(
        &lfc,
        &shared,
        &request(
            Method::POST,
            "/lfc/prewarm",
            "from_endpoint=ep%2Dother",
            b"",
        ),
    );
    assert_eq!(reply.status, 202);
    let state = settled_prewarm(&lfc);
    let error = error_of(&state);
    // The storage address does not resolve: the error names the URL it asked.
    assert!(
        error.starts_with(&format!(
            "querying endpoint storage http://s:1/{TENANT}/{TIMELINE}/ep-other/lfc_state: "
        )),
        "{error}"
    );
    assert_eq!(lfc.counters().prewarm_errors, 2);

    let reply = post_prewarm(
        &lfc,
        &shared,
        &request(
            Method::POST,
            "/lfc/prewarm",
            "from_endpoint=a&from_endpoint=b",
            b"",
        ),
    );
    assert_eq!(reply.status, 400);
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        "Failed to deserialize query string: duplicate field `from_endpoint`"
    );

    let shared = shared_with(None);
    assert!(lfc.start_prewarm(&shared, None));
    assert_eq!(
        error_of(&settled_prewarm(&lfc)),
        "the compute has no spec yet"
    );
    assert_eq!(lfc.counters().prewarms, 3);
}

#[test]
fn a_second_prewarm_or_offload_is_refused() {
    let lfc = Arc::new(Lfc::new());
    let shared = shared_with(Some(complete()));
    lfc.set_prewarm_state(PrewarmState::Prewarming);
    let reply = post_prewarm(
        &lfc,
        &shared,
        &request(Method::POST, "/lfc/prewarm", "", b""),
    );
    assert_eq!(reply.status, 429);
    assert_eq!(
        body(&reply),
        json!({"error": "Multiple requests for prewarm are not allowed"})
    );
    lfc.set_offload_state(OffloadState::Offloading);
    let reply = post_offload(&lfc, &shared);
    assert_eq!(reply.status, 429);
    assert_eq!(
        body(&reply),
        json!({"error": "Multiple requests for prewarm offload are not allowed"})
    );
    assert_eq!(lfc.counters().prewarms, 0);
    assert_eq!(lfc.counters().offloads, 0);
}

#[test]
fn offload_failures_are_counted() {
    let lfc = Arc::new(Lfc::new());
    assert_eq!(body(&get_offload(&lfc)), json!({"status": "not_offloaded"}));
    assert!(lfc.periodic_offload_allowed());
    let shared = shared_with(Some(json!({"endpoint_id": "ep-1"})));
    assert_eq!(post_offload(&lfc, &shared).status, 202);
    match settled_offload(&lfc) {
        OffloadState::Failed { error } => assert!(
            error.contains("endpoint_storage_addr") && !error.contains("endpoint_id"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    let shared = shared_with(Some(complete()));
    assert_eq!(post_offload(&lfc, &shared).status, 202);
    match settled_offload(&lfc) {
        // The compute's Postgres is not there (the test document points at nothing).
        OffloadState::Failed { error } => assert!(
            error.starts_with("connecting to the compute's postgres"),
            "{error}"
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(lfc.counters().offloads, 2);
    assert_eq!(lfc.counters().offload_errors, 2);
    let metrics = render_metrics(&lfc);
    assert!(
        metrics.contains(
            "# TYPE compute_ctl_lfc_offloads_total counter\ncompute_ctl_lfc_offloads_total 2\n"
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("\ncompute_ctl_lfc_offload_errors_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("\ncompute_ctl_lfc_prewarms_total 0\n"),
        "{metrics}"
    );
    assert!(metrics.contains(
        "# HELP compute_ctl_lfc_prewarm_errors_total Total number of LFC prewarm errors\n"
    ));
}

#[test]
fn a_cancel_while_idle_cancels_the_next_prewarm() {
    let lfc = Arc::new(Lfc::new());
    let shared = shared_with(Some(complete()));
    assert_eq!(delete_prewarm(&lfc).status, 202);
    assert!(lfc.start_prewarm(&shared, None));
    assert_eq!(settled_prewarm(&lfc), PrewarmState::Cancelled);
    assert_eq!(body(&get_prewarm(&lfc)), json!({"status": "cancelled"}));
    assert_eq!(lfc.counters().prewarm_errors, 0);
    // The token was replaced: the next one runs (and fails: storage:9000 is not there).
    assert!(lfc.start_prewarm(&shared, None));
    assert!(error_of(&settled_prewarm(&lfc))
        .starts_with("querying endpoint storage http://storage:9000/"));
    assert_eq!(lfc.counters().prewarm_errors, 1);
    assert!(!lfc.periodic_offload_allowed());
}

/// The adapter the jobs see (the periodic offload itself is pg-prewarm's test): a running
/// compute waits out the timeout, a terminating one answers at once.
#[test]
fn the_compute_adapter_stops_with_the_status() {
    use pg_prewarm::Compute;
    let shared = shared_with(Some(complete()));
    assert!(shared.document().is_some());
    let started = Instant::now();
    assert!(!shared.wait_stopping(Duration::from_millis(50)));
    assert!(started.elapsed() >= Duration::from_millis(50));
    let waiter = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || shared.wait_stopping(Duration::from_secs(30)))
    };
    std::thread::sleep(Duration::from_millis(20));
    let transitioned = Instant::now();
    shared
        .transition(ComputeStatus::TerminationPendingFast)
        .unwrap();
    assert!(waiter.join().unwrap());
    assert!(transitioned.elapsed() < Duration::from_secs(5));
    assert!(shared.wait_stopping(Duration::from_secs(30)));
}
