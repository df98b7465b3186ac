//! Fixtures of the unit tests: documents with a spec, a [`Compute`] stand-in, and waits for a
//! run to settle.

use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use compute_spec::ComputeDocument;
use serde_json::{json, Value};

use crate::{Compute, Lfc, OffloadState, PrewarmState};

pub const TENANT: &str = "0123456789abcdef0123456789abcdef";
pub const TIMELINE: &str = "fedcba9876543210fedcba9876543210";

/// A minimal valid spec with the `extra` fields.
pub fn spec(extra: Value) -> Value {
    let mut spec = json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {"roles": [], "databases": []},
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    spec
}

/// A document whose spec has the `extra` fields, for a Postgres that is not there.
pub fn document(extra: Value) -> ComputeDocument {
    serde_json::from_value(json!({
        "document_version": 1,
        "spec": spec(extra),
        "pgdata": "/nonexistent",
        "pgbin": "/usr/bin/postgres",
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 5432, "socket_dir": "/tmp"},
    }))
    .unwrap()
}

/// Every field endpoint storage needs; `storage:9000` does not resolve.
pub fn complete() -> Value {
    json!({
        "tenant_id": TENANT,
        "timeline_id": TIMELINE,
        "endpoint_id": "ep-1",
        "endpoint_storage_addr": "storage:9000",
        "endpoint_storage_token": "secret-token",
    })
}

/// A compute: a document, and whether it is stopping.
#[derive(Default)]
pub struct FakeCompute {
    document: Option<ComputeDocument>,
    stopping: Mutex<bool>,
    changed: Condvar,
}

impl FakeCompute {
    /// A running compute with `document`.
    pub fn with(document: Option<ComputeDocument>) -> FakeCompute {
        FakeCompute {
            document,
            ..FakeCompute::default()
        }
    }

    /// The compute starts to stop.
    pub fn stop(&self) {
        *self.stopping.lock().unwrap() = true;
        self.changed.notify_all();
    }
}

impl Compute for FakeCompute {
    fn document(&self) -> Option<ComputeDocument> {
        self.document.clone()
    }

    fn wait_stopping(&self, timeout: Duration) -> bool {
        let stopping = self.stopping.lock().unwrap();
        *self
            .changed
            .wait_timeout_while(stopping, timeout, |stopping| !*stopping)
            .unwrap()
            .0
    }
}

/// The state once the running job of its kind has ended (polled, at most 10 s: a job still
/// running then is returned as is and fails the test's assertion).
fn settled<S: PartialEq>(state: impl Fn() -> S, running: &S) -> S {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let state = state();
        if state != *running || Instant::now() > deadline {
            return state;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The prewarm state once no prewarm runs.
pub fn settled_prewarm(lfc: &Lfc) -> PrewarmState {
    settled(|| lfc.prewarm_state(), &PrewarmState::Prewarming)
}

/// The offload state once no offload runs.
pub fn settled_offload(lfc: &Lfc) -> OffloadState {
    settled(|| lfc.offload_state(), &OffloadState::Offloading)
}

pub fn error_of(state: &PrewarmState) -> &str {
    match state {
        PrewarmState::Failed { error } => error,
        other => panic!("not failed: {other:?}"),
    }
}
