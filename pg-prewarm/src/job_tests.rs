//! The jobs' state machine, on a stand-in compute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;

use super::*;
use crate::test_kit::*;

#[test]
fn runs_fail_naming_what_is_missing_and_are_counted() {
    let lfc = Arc::new(Lfc::new());
    assert!(lfc.start_prewarm(&Arc::new(FakeCompute::with(None)), None));
    assert_eq!(
        error_of(&settled_prewarm(&lfc)),
        "the compute has no spec yet"
    );
    let bare = Arc::new(FakeCompute::with(Some(document(json!({})))));
    assert!(lfc.start_prewarm(&bare, None));
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
    let complete = Arc::new(FakeCompute::with(Some(document(complete()))));
    assert!(lfc.start_prewarm(&complete, Some("ep-2".into())));
    let state = settled_prewarm(&lfc);
    let error = error_of(&state);
    // The storage address does not resolve: the error names the URL it asked, not the token.
    assert!(
        error.starts_with(&format!(
            "querying endpoint storage http://storage:9000/{TENANT}/{TIMELINE}/ep-2/lfc_state: "
        )),
        "{error}"
    );
    assert!(!error.contains("secret-token"), "{error}");
    assert!(lfc.start_offload(&bare));
    match settled_offload(&lfc) {
        OffloadState::Failed { error } => assert!(error.contains("tenant_id"), "{error}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        lfc.counters(),
        Counters {
            prewarms: 3,
            prewarm_errors: 3,
            offloads: 1,
            offload_errors: 1
        }
    );
}

#[test]
fn a_second_start_is_refused_while_one_runs() {
    let lfc = Arc::new(Lfc::new());
    let compute = Arc::new(FakeCompute::with(Some(document(complete()))));
    lfc.set_prewarm_state(PrewarmState::Prewarming);
    assert!(!lfc.start_prewarm(&compute, None));
    lfc.set_offload_state(OffloadState::Offloading);
    assert!(!lfc.start_offload(&compute));
    assert_eq!(lfc.counters(), Counters::default());
    assert_eq!(lfc.prewarm_state(), PrewarmState::Prewarming);
}

#[test]
fn a_cancel_while_idle_cancels_the_next_prewarm_only() {
    let lfc = Arc::new(Lfc::new());
    let compute = Arc::new(FakeCompute::with(Some(document(complete()))));
    lfc.cancel_prewarm();
    assert!(lfc.start_prewarm(&compute, None));
    assert_eq!(settled_prewarm(&lfc), PrewarmState::Cancelled);
    assert_eq!(lfc.counters().prewarm_errors, 0);
    assert!(!lfc.periodic_offload_allowed());
    // The token was replaced: the next one runs (and fails: storage:9000 is not there).
    assert!(lfc.start_prewarm(&compute, None));
    assert!(error_of(&settled_prewarm(&lfc)).starts_with("querying endpoint storage "));
    assert_eq!(lfc.counters().prewarm_errors, 1);
    assert!(!lfc.periodic_offload_allowed());
    lfc.set_prewarm_state(PrewarmState::Skipped);
    assert!(lfc.periodic_offload_allowed());
}

#[test]
fn the_periodic_offload_runs_until_the_compute_stops() {
    let lfc = Arc::new(Lfc::new());
    let compute = Arc::new(FakeCompute::with(Some(document(complete()))));
    let periodic = lfc
        .spawn_periodic_offload(&compute, Duration::from_millis(20))
        .unwrap();
    let started = Instant::now();
    while lfc.counters().offloads < 2 {
        assert!(started.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(5));
    }
    compute.stop();
    let stopping = Instant::now();
    while !periodic.is_finished() {
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "the periodic offload outlived the compute"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let count = lfc.counters().offloads;
    // Waits out an offload that must not happen (the thread has ended).
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(lfc.counters().offloads, count);
}

#[test]
fn a_panicking_job_settles_as_failed_and_a_new_run_may_start() {
    let lfc = Arc::new(Lfc::new());
    assert!(lfc.start::<PrewarmState>(|_| panic!("a bug in the work")));
    let state = settled_prewarm(&lfc);
    assert!(
        error_of(&state).contains("the prewarm job panicked: a bug in the work"),
        "{state:?}"
    );
    assert_eq!(lfc.counters().prewarm_errors, 1);
    // Not stuck `prewarming`: the next start is accepted.
    assert!(lfc.start::<PrewarmState>(|_| Ok(PrewarmState::NotPrewarmed)));
    assert_eq!(settled_prewarm(&lfc), PrewarmState::NotPrewarmed);
}
