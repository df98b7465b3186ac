//! The `/lfc/prewarm` and `/lfc/offload` handlers: they only change the state and answer.

use std::sync::Arc;

use serde_json::json;

use super::Lfc;
use crate::http::{ApiRequest, Reply};
use crate::state::Shared;
use hyper::StatusCode;

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
    let from_endpoint = match crate::extract::query::<PrewarmQuery>(
        request.query.as_deref(),
        crate::http::Rejection::PlainText,
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

#[cfg(test)]
mod tests {
    use super::super::test_kit::*;
    use super::super::{lock, storage_target, OffloadState, PrewarmState, StorageTarget};
    use super::*;
    use crate::testing::{body, request};
    use hyper::Method;

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
        *lock(&lfc.prewarm.state) = PrewarmState::Prewarming;
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
        *lock(&lfc.offload.state) = OffloadState::Offloading;
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
}
