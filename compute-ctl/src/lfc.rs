//! LFC prewarm and offload (`GET`/`POST`/`DELETE /lfc/prewarm`, `GET`/`POST /lfc/offload`):
//! the route adapters over the `pg-prewarm` crate, which owns the jobs, their states and
//! counters, the cache, endpoint storage and zstd. Here: the compute the jobs see (the
//! shared state, through [`pg_prewarm::Compute`]), the handlers (202, 429 while one runs,
//! upstream's bodies) and the four counters on `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;
use serde_json::json;
use stage_kit::prom::{Kind, Text};

use crate::state::{ComputeStatus, Inner, Shared};
use compute_http::{ApiRequest, Reply};
pub use pg_prewarm::{
    Lfc, OffloadState, PrewarmState, StorageTarget, VanillaState, VANILLA_FORMAT,
};

/// The jobs see the current document, and stop with the compute.
impl pg_prewarm::Compute for Shared {
    fn document(&self) -> Option<compute_spec::ComputeDocument> {
        self.lock().document.clone()
    }

    fn wait_stopping(&self, timeout: Duration) -> bool {
        let stopping = |inner: &Inner| {
            inner.status().is_terminating() || inner.status() == ComputeStatus::Terminated
        };
        stopping(&self.wait_until(timeout, stopping))
    }
}

/// `GET /lfc/prewarm` (external): 200 with the prewarm state.
pub fn get_prewarm(lfc: &Lfc) -> Reply {
    Reply::json(StatusCode::OK, &lfc.prewarm_state())
}

/// `POST /lfc/prewarm[?from_endpoint=<id>]` (external): 202, or 429 while one runs.
pub fn post_prewarm(lfc: &Arc<Lfc>, shared: &Arc<Shared>, request: &ApiRequest) -> Reply {
    /// The query of `POST /lfc/prewarm`.
    #[derive(serde::Deserialize)]
    struct PrewarmQuery {
        from_endpoint: Option<String>,
    }
    let from_endpoint = match compute_http::extract::query::<PrewarmQuery>(
        request.query.as_deref(),
        compute_http::Rejection::PlainText,
    ) {
        Ok(PrewarmQuery { from_endpoint }) => from_endpoint,
        Err(reply) => return reply,
    };
    if lfc.start_prewarm(shared, from_endpoint) {
        Reply::empty(StatusCode::ACCEPTED)
    } else {
        Reply::json(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "Multiple requests for prewarm are not allowed"}),
        )
    }
}

/// `DELETE /lfc/prewarm` (external): always 202.
pub fn delete_prewarm(lfc: &Lfc) -> Reply {
    lfc.cancel_prewarm();
    Reply::empty(StatusCode::ACCEPTED)
}

/// `GET /lfc/offload` (external): 200 with the offload state.
pub fn get_offload(lfc: &Lfc) -> Reply {
    Reply::json(StatusCode::OK, &lfc.offload_state())
}

/// `POST /lfc/offload` (external): 202, or 429 while one runs.
pub fn post_offload(lfc: &Arc<Lfc>, shared: &Arc<Shared>) -> Reply {
    if lfc.start_offload(shared) {
        Reply::empty(StatusCode::ACCEPTED)
    } else {
        Reply::json(
            StatusCode::TOO_MANY_REQUESTS,
            &json!({"error": "Multiple requests for prewarm offload are not allowed"}),
        )
    }
}

/// The four counters in Prometheus text format (HELP and TYPE as upstream), for `/metrics`.
pub fn render_metrics(lfc: &Lfc) -> String {
    let counters = lfc.counters();
    let mut text = Text::new();
    for (name, help, value) in [
        (
            "compute_ctl_lfc_prewarms_total",
            "Total number of LFC prewarms requested by compute_ctl or autoprewarm option",
            counters.prewarms,
        ),
        (
            "compute_ctl_lfc_prewarm_errors_total",
            "Total number of LFC prewarm errors",
            counters.prewarm_errors,
        ),
        (
            "compute_ctl_lfc_offloads_total",
            "Total number of LFC offloads requested by compute_ctl or lfc_offload_period_seconds option",
            counters.offloads,
        ),
        (
            "compute_ctl_lfc_offload_errors_total",
            "Total number of LFC offload errors",
            counters.offload_errors,
        ),
    ] {
        text.single(name, Kind::Counter, help, value);
    }
    text.finish()
}

#[cfg(test)]
#[path = "lfc_tests.rs"]
mod tests;
