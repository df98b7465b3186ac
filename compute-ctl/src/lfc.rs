//! LFC prewarm and offload (`GET`/`POST`/`DELETE /lfc/prewarm`, `GET`/`POST /lfc/offload`):
//! upstream's state machines, JSON shapes, 202/429 answers, cancellation token and the four
//! counters.
//!
//! The transfer itself (endpoint storage GET/PUT of the zstd LFC state, and the `neon`
//! extension's `prewarm_local_cache`/`get_local_cache_state`) is not implemented yet: a run
//! whose spec lacks what the transfer needs fails naming the missing fields (as upstream),
//! and a run with everything present fails saying the transfer is not supported yet. Either
//! way it counts as an error; there is never a fake success.
//!
//! The work runs on a background thread; the handlers only change the state and return.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::http::{ApiRequest, Reply};
use crate::state::{ComputeStatus, Shared};

/// Prewarm state (`GET /lfc/prewarm`), e.g. `{"status":"not_prewarmed"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum PrewarmState {
    /// Initial.
    #[default]
    NotPrewarmed,
    /// A prewarm is running.
    Prewarming,
    /// Done.
    Completed {
        /// Pages in the state.
        total: i32,
        /// Pages loaded.
        prewarmed: i32,
        /// Pages skipped.
        skipped: i32,
        /// Download time.
        state_download_time_ms: u32,
        /// Decompression time.
        uncompress_time_ms: u32,
        /// Load time.
        prewarm_time_ms: u32,
    },
    /// Failed.
    Failed {
        /// What failed.
        error: String,
    },
    /// No state was stored for the endpoint.
    Skipped,
    /// Cancelled by `DELETE /lfc/prewarm`.
    Cancelled,
}

/// Offload state (`GET /lfc/offload`), e.g. `{"status":"not_offloaded"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum OffloadState {
    /// Initial.
    #[default]
    NotOffloaded,
    /// An offload is running.
    Offloading,
    /// Done.
    Completed {
        /// Time to read the LFC state.
        state_query_time_ms: u32,
        /// Compression time.
        compress_time_ms: u32,
        /// Upload time.
        state_upload_time_ms: u32,
    },
    /// Failed.
    Failed {
        /// What failed.
        error: String,
    },
    /// The LFC had no state to offload.
    Skipped,
}

/// The LFC prewarm/offload state of a compute, and its counters. One per process: the lead
/// keeps it as `Api::lfc: Arc<Lfc>`.
#[derive(Debug, Default)]
pub struct Lfc {
    prewarm: Mutex<PrewarmState>,
    offload: Mutex<OffloadState>,
    /// The cancellation token of prewarms; tripped by `DELETE`, replaced when a prewarm ends
    /// `cancelled`.
    cancel: Mutex<Arc<AtomicBool>>,
    /// `compute_ctl_lfc_prewarms_total`.
    pub prewarms_total: AtomicU64,
    /// `compute_ctl_lfc_prewarm_errors_total`.
    pub prewarm_errors_total: AtomicU64,
    /// `compute_ctl_lfc_offloads_total`.
    pub offloads_total: AtomicU64,
    /// `compute_ctl_lfc_offload_errors_total`.
    pub offload_errors_total: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the LFC state lives in endpoint storage, and the token for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageTarget {
    /// `http://{addr}/{tenant_id}/{timeline_id}/{endpoint_id}/lfc_state`.
    pub url: String,
    /// The bearer token.
    pub token: String,
}

impl Lfc {
    /// A fresh state: `not_prewarmed`, `not_offloaded`, counters at 0.
    pub fn new() -> Lfc {
        Lfc::default()
    }

    /// The prewarm state.
    pub fn prewarm_state(&self) -> PrewarmState {
        lock(&self.prewarm).clone()
    }

    /// Sets the prewarm state (tests of other modules).
    #[cfg(test)]
    pub(crate) fn set_prewarm_state(&self, state: PrewarmState) {
        *lock(&self.prewarm) = state;
    }

    /// The offload state.
    pub fn offload_state(&self) -> OffloadState {
        lock(&self.offload).clone()
    }

    /// Starts a prewarm on a background thread, unless one is running (`false`). Used by
    /// `POST /lfc/prewarm` and by `autoprewarm` when the compute reaches `running`.
    pub fn start_prewarm(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        from_endpoint: Option<String>,
    ) -> bool {
        {
            let mut state = lock(&self.prewarm);
            if *state == PrewarmState::Prewarming {
                return false;
            }
            *state = PrewarmState::Prewarming;
        }
        self.prewarms_total.fetch_add(1, Ordering::SeqCst);
        let (lfc, shared) = (self.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name("lfc-prewarm".to_string())
            .spawn(move || {
                let outcome = lfc.prewarm_work(&shared, from_endpoint.as_deref());
                lfc.finish_prewarm(outcome);
            });
        if let Err(error) = spawned {
            self.finish_prewarm(PrewarmState::Failed {
                error: format!("starting the prewarm thread: {error}"),
            });
        }
        true
    }

    fn prewarm_work(&self, shared: &Shared, from_endpoint: Option<&str>) -> PrewarmState {
        let target = match storage_target(shared, from_endpoint) {
            Ok(target) => target,
            Err(error) => return PrewarmState::Failed { error },
        };
        let token = lock(&self.cancel).clone();
        if token.load(Ordering::SeqCst) {
            return PrewarmState::Cancelled;
        }
        PrewarmState::Failed {
            error: format!(
                "prewarming the LFC from endpoint storage ({}) is not supported by this \
                 compute-ctl yet",
                target.url
            ),
        }
    }

    fn finish_prewarm(&self, outcome: PrewarmState) {
        match &outcome {
            PrewarmState::Failed { error } => {
                self.prewarm_errors_total.fetch_add(1, Ordering::SeqCst);
                tracing::error!(%error, "LFC prewarm failed");
            }
            PrewarmState::Cancelled => {
                *lock(&self.cancel) = Arc::new(AtomicBool::new(false));
                tracing::info!("LFC prewarm cancelled");
            }
            other => tracing::info!(state = ?other, "LFC prewarm finished"),
        }
        *lock(&self.prewarm) = outcome;
    }

    /// Trips the cancellation token: the running prewarm, or else the next one, ends
    /// `cancelled`.
    pub fn cancel_prewarm(&self) {
        lock(&self.cancel).store(true, Ordering::SeqCst);
    }

    /// Starts an offload on a background thread, unless one is running (`false`). Used by
    /// `POST /lfc/offload` and the periodic offload.
    pub fn start_offload(self: &Arc<Self>, shared: &Arc<Shared>) -> bool {
        {
            let mut state = lock(&self.offload);
            if *state == OffloadState::Offloading {
                return false;
            }
            *state = OffloadState::Offloading;
        }
        self.offloads_total.fetch_add(1, Ordering::SeqCst);
        let (lfc, shared) = (self.clone(), shared.clone());
        let spawned = std::thread::Builder::new()
            .name("lfc-offload".to_string())
            .spawn(move || {
                let outcome = match storage_target(&shared, None) {
                    Ok(target) => OffloadState::Failed {
                        error: format!(
                            "offloading the LFC to endpoint storage ({}) is not supported by \
                             this compute-ctl yet",
                            target.url
                        ),
                    },
                    Err(error) => OffloadState::Failed { error },
                };
                lfc.finish_offload(outcome);
            });
        if let Err(error) = spawned {
            self.finish_offload(OffloadState::Failed {
                error: format!("starting the offload thread: {error}"),
            });
        }
        true
    }

    fn finish_offload(&self, outcome: OffloadState) {
        if let OffloadState::Failed { error } = &outcome {
            self.offload_errors_total.fetch_add(1, Ordering::SeqCst);
            tracing::error!(%error, "LFC offload failed");
        }
        *lock(&self.offload) = outcome;
    }

    /// Whether the periodic offload may run now (as upstream: after a completed, skipped or
    /// absent prewarm, never during one or after a failed or cancelled one).
    pub fn periodic_offload_allowed(&self) -> bool {
        matches!(
            self.prewarm_state(),
            PrewarmState::Completed { .. } | PrewarmState::NotPrewarmed | PrewarmState::Skipped
        )
    }

    /// Starts the periodic offload (`offload_lfc_interval_seconds`): every `interval`, the
    /// first after one interval, while the compute is not terminating.
    pub fn spawn_periodic_offload(
        self: &Arc<Self>,
        shared: &Arc<Shared>,
        interval: Duration,
    ) -> std::io::Result<()> {
        let (lfc, shared) = (self.clone(), shared.clone());
        std::thread::Builder::new()
            .name("lfc-offload-periodic".to_string())
            .spawn(move || loop {
                let stopping = shared.wait_until(interval, |inner| {
                    inner.status().is_terminating() || inner.status() == ComputeStatus::Terminated
                });
                let status = stopping.status();
                drop(stopping);
                if status.is_terminating() || status == ComputeStatus::Terminated {
                    return;
                }
                if lfc.periodic_offload_allowed() {
                    lfc.start_offload(&shared);
                }
            })
            .map(|_| ())
    }

    /// The four counters in Prometheus text format (HELP and TYPE as upstream), for
    /// `/metrics`.
    pub fn render_metrics(&self) -> String {
        let mut out = String::new();
        for (name, help, value) in [
            (
                "compute_ctl_lfc_prewarms_total",
                "Total number of LFC prewarms requested by compute_ctl or autoprewarm option",
                &self.prewarms_total,
            ),
            (
                "compute_ctl_lfc_prewarm_errors_total",
                "Total number of LFC prewarm errors",
                &self.prewarm_errors_total,
            ),
            (
                "compute_ctl_lfc_offloads_total",
                "Total number of LFC offloads requested by compute_ctl or lfc_offload_period_seconds option",
                &self.offloads_total,
            ),
            (
                "compute_ctl_lfc_offload_errors_total",
                "Total number of LFC offload errors",
                &self.offload_errors_total,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                value.load(Ordering::SeqCst)
            ));
        }
        out
    }
}

/// The endpoint-storage location of the LFC state, from the compute's spec; the error names
/// every missing piece.
pub fn storage_target(
    shared: &Shared,
    from_endpoint: Option<&str>,
) -> Result<StorageTarget, String> {
    let inner = shared.lock();
    let Some(spec) = inner
        .document
        .as_ref()
        .and_then(|document| document.spec.as_ref())
    else {
        return Err("the compute has no spec yet".to_string());
    };
    let address = spec
        .endpoint_storage_addr
        .clone()
        .or_else(|| {
            spec.setting("neon.endpoint_storage_addr")
                .map(str::to_string)
        })
        .filter(|value| !value.is_empty());
    let token = spec
        .endpoint_storage_token
        .as_ref()
        .map(|secret| secret.expose().to_string())
        .or_else(|| {
            spec.setting("neon.endpoint_storage_token")
                .map(str::to_string)
        })
        .filter(|value| !value.is_empty());
    let endpoint = from_endpoint
        .map(str::to_string)
        .or_else(|| spec.endpoint_id.clone())
        .filter(|value| !value.is_empty());
    let tenant = spec
        .tenant_id
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| spec.setting("neon.tenant_id").map(str::to_string));
    let timeline = spec
        .timeline_id
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| spec.setting("neon.timeline_id").map(str::to_string));
    let mut missing = Vec::new();
    if address.is_none() {
        missing.push("endpoint_storage_addr (or neon.endpoint_storage_addr in cluster.settings)");
    }
    if token.is_none() {
        missing.push("endpoint_storage_token (or neon.endpoint_storage_token in cluster.settings)");
    }
    if endpoint.is_none() {
        missing.push("endpoint_id (and no from_endpoint was given)");
    }
    if tenant.is_none() {
        missing.push("tenant_id");
    }
    if timeline.is_none() {
        missing.push("timeline_id");
    }
    match (address, token, endpoint, tenant, timeline) {
        (Some(address), Some(token), Some(endpoint), Some(tenant), Some(timeline)) => {
            Ok(StorageTarget {
                url: format!("http://{address}/{tenant}/{timeline}/{endpoint}/lfc_state"),
                token,
            })
        }
        _ => Err(format!(
            "the spec lacks what endpoint storage needs: {}",
            missing.join(", ")
        )),
    }
}

fn state_reply<T: Serialize>(state: &T) -> Reply {
    match serde_json::to_value(state) {
        Ok(value) => Reply::json(200, &value),
        Err(error) => Reply::error(500, format!("serialising the LFC state: {error}")),
    }
}

/// `GET /lfc/prewarm` (external): 200 with the prewarm state.
pub fn get_prewarm(lfc: &Lfc) -> Reply {
    state_reply(&lfc.prewarm_state())
}

/// `POST /lfc/prewarm[?from_endpoint=<id>]` (external): 202, or 429 while one runs.
pub fn post_prewarm(lfc: &Arc<Lfc>, shared: &Arc<Shared>, request: &ApiRequest) -> Reply {
    let from_endpoint = match crate::catalog::query_single(
        request.query.as_deref().unwrap_or_default(),
        "from_endpoint",
    ) {
        Ok(from_endpoint) => from_endpoint,
        Err(error) => {
            return Reply::text(
                400,
                "text/plain; charset=utf-8",
                format!("Failed to deserialize query string: {error}"),
            )
        }
    };
    if lfc.start_prewarm(shared, from_endpoint) {
        Reply::empty(202)
    } else {
        Reply::json(
            429,
            &json!({"error": "Multiple requests for prewarm are not allowed"}),
        )
    }
}

/// `DELETE /lfc/prewarm` (external): always 202.
pub fn delete_prewarm(lfc: &Lfc) -> Reply {
    lfc.cancel_prewarm();
    Reply::empty(202)
}

/// `GET /lfc/offload` (external): 200 with the offload state.
pub fn get_offload(lfc: &Lfc) -> Reply {
    state_reply(&lfc.offload_state())
}

/// `POST /lfc/offload` (external): 202, or 429 while one runs.
pub fn post_offload(lfc: &Arc<Lfc>, shared: &Arc<Shared>) -> Reply {
    if lfc.start_offload(shared) {
        Reply::empty(202)
    } else {
        Reply::json(
            429,
            &json!({"error": "Multiple requests for prewarm offload are not allowed"}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{api, body, document, request, spec};
    use hyper::Method;
    use serde_json::Value;
    use std::path::Path;
    use std::time::Instant;

    const TENANT: &str = "0123456789abcdef0123456789abcdef";
    const TIMELINE: &str = "fedcba9876543210fedcba9876543210";

    fn shared_with(extra: Option<Value>) -> Arc<Shared> {
        let document = extra.map(|extra| {
            document(
                Path::new("/usr/bin"),
                Path::new("/nonexistent"),
                Path::new("/tmp"),
                5432,
                spec(extra),
            )
        });
        api(document, true).shared
    }

    fn complete() -> Value {
        json!({
            "tenant_id": TENANT,
            "timeline_id": TIMELINE,
            "endpoint_id": "ep-1",
            "endpoint_storage_addr": "storage:9000",
            "endpoint_storage_token": "secret-token",
        })
    }

    fn settled_prewarm(lfc: &Lfc) -> PrewarmState {
        let started = Instant::now();
        loop {
            let state = lfc.prewarm_state();
            if state != PrewarmState::Prewarming || started.elapsed() > Duration::from_secs(10) {
                return state;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn settled_offload(lfc: &Lfc) -> OffloadState {
        let started = Instant::now();
        loop {
            let state = lfc.offload_state();
            if state != OffloadState::Offloading || started.elapsed() > Duration::from_secs(10) {
                return state;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn error_of(state: &PrewarmState) -> &str {
        match state {
            PrewarmState::Failed { error } => error,
            other => panic!("not failed: {other:?}"),
        }
    }

    #[test]
    fn states_serialise_as_upstream() {
        assert_eq!(
            serde_json::to_value(PrewarmState::NotPrewarmed).unwrap(),
            json!({"status": "not_prewarmed"})
        );
        assert_eq!(
            serde_json::to_value(PrewarmState::Completed {
                total: 3,
                prewarmed: 2,
                skipped: 1,
                state_download_time_ms: 4,
                uncompress_time_ms: 5,
                prewarm_time_ms: 6
            })
            .unwrap(),
            json!({"status": "completed", "total": 3, "prewarmed": 2, "skipped": 1,
                   "state_download_time_ms": 4, "uncompress_time_ms": 5, "prewarm_time_ms": 6})
        );
        assert_eq!(
            serde_json::to_value(PrewarmState::Failed { error: "e".into() }).unwrap(),
            json!({"status": "failed", "error": "e"})
        );
        assert_eq!(
            serde_json::to_value(PrewarmState::Cancelled).unwrap(),
            json!({"status": "cancelled"})
        );
        assert_eq!(
            serde_json::to_value(OffloadState::NotOffloaded).unwrap(),
            json!({"status": "not_offloaded"})
        );
        assert_eq!(
            serde_json::to_value(OffloadState::Completed {
                state_query_time_ms: 1,
                compress_time_ms: 2,
                state_upload_time_ms: 3
            })
            .unwrap(),
            json!({"status": "completed", "state_query_time_ms": 1, "compress_time_ms": 2, "state_upload_time_ms": 3})
        );
        assert_eq!(
            serde_json::to_value(OffloadState::Skipped).unwrap(),
            json!({"status": "skipped"})
        );
    }

    #[test]
    fn prewarm_without_storage_settings_fails_naming_them() {
        let lfc = Arc::new(Lfc::new());
        let reply = get_prewarm(&lfc);
        assert_eq!(
            (reply.status, body(&reply)),
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
        assert_eq!(lfc.prewarms_total.load(Ordering::SeqCst), 1);
        assert_eq!(lfc.prewarm_errors_total.load(Ordering::SeqCst), 1);

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
            storage_target(&shared, Some("ep-other")).unwrap(),
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
        assert!(
            error.contains("/ep-other/lfc_state") && error.contains("not supported"),
            "{error}"
        );
        assert_eq!(lfc.prewarm_errors_total.load(Ordering::SeqCst), 2);

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
        assert_eq!(lfc.prewarms_total.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn a_second_prewarm_or_offload_is_refused() {
        let lfc = Arc::new(Lfc::new());
        let shared = shared_with(Some(complete()));
        *lock(&lfc.prewarm) = PrewarmState::Prewarming;
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
        *lock(&lfc.offload) = OffloadState::Offloading;
        let reply = post_offload(&lfc, &shared);
        assert_eq!(reply.status, 429);
        assert_eq!(
            body(&reply),
            json!({"error": "Multiple requests for prewarm offload are not allowed"})
        );
        assert_eq!(lfc.prewarms_total.load(Ordering::SeqCst), 0);
        assert_eq!(lfc.offloads_total.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_cancel_while_idle_cancels_the_next_prewarm() {
        let lfc = Arc::new(Lfc::new());
        let shared = shared_with(Some(complete()));
        assert_eq!(delete_prewarm(&lfc).status, 202);
        assert!(lfc.start_prewarm(&shared, None));
        assert_eq!(settled_prewarm(&lfc), PrewarmState::Cancelled);
        assert_eq!(body(&get_prewarm(&lfc)), json!({"status": "cancelled"}));
        assert_eq!(lfc.prewarm_errors_total.load(Ordering::SeqCst), 0);
        // The token was replaced: the next one runs (and fails: no transfer yet).
        assert!(lfc.start_prewarm(&shared, None));
        assert!(error_of(&settled_prewarm(&lfc)).contains("not supported"));
        assert_eq!(lfc.prewarm_errors_total.load(Ordering::SeqCst), 1);
        assert!(!lfc.periodic_offload_allowed());
    }

    #[test]
    fn offload_fails_without_a_transfer() {
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
            OffloadState::Failed { error } => assert!(error.contains("not supported"), "{error}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(lfc.offloads_total.load(Ordering::SeqCst), 2);
        assert_eq!(lfc.offload_errors_total.load(Ordering::SeqCst), 2);
        let metrics = lfc.render_metrics();
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
    fn periodic_offload_runs_and_stops_with_the_compute() {
        let lfc = Arc::new(Lfc::new());
        let shared = shared_with(Some(complete()));
        lfc.spawn_periodic_offload(&shared, Duration::from_millis(20))
            .unwrap();
        let started = Instant::now();
        while lfc.offloads_total.load(Ordering::SeqCst) < 2 {
            assert!(started.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        shared
            .transition(ComputeStatus::TerminationPendingFast)
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let count = lfc.offloads_total.load(Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(lfc.offloads_total.load(Ordering::SeqCst), count);
    }
}
