//! Fixtures of the LFC tests: a compute's shared state with a spec, and waits for a run to
//! settle.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{lock, JobState, Lfc, OffloadState, PrewarmState};
pub use crate::testing::shared_with;

pub const TENANT: &str = "0123456789abcdef0123456789abcdef";
pub const TIMELINE: &str = "fedcba9876543210fedcba9876543210";

pub fn complete() -> Value {
    json!({
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "endpoint_id": "ep-1",
        "endpoint_storage_addr": "storage:9000",
        "endpoint_storage_token": "secret-token",
    })
}

/// The state once the running job of its kind has ended (polled, at most 10 s: a job still
/// running then is returned as is and fails the test's assertion).
fn settled<S: JobState>(lfc: &Lfc) -> S {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = lock(&S::job(lfc).state).clone();
        if state != S::RUNNING || Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The prewarm state once no prewarm runs.
pub fn settled_prewarm(lfc: &Lfc) -> PrewarmState {
    settled(lfc)
}

/// The offload state once no offload runs.
pub fn settled_offload(lfc: &Lfc) -> OffloadState {
    settled(lfc)
}

pub fn error_of(state: &PrewarmState) -> &str {
    match state {
        PrewarmState::Failed { error } => error,
        other => panic!("not failed: {other:?}"),
    }
}
