//! `POST /promote` (replica → primary): the route adapter over the `pg-promote` crate, which
//! owns upstream's steps, the vanilla variant, the single flight and the answers. Here: the
//! compute a promotion sees (`Api`, through [`pg_promote::Host`]: the shared state's document
//! and status, the LFC prewarm state, `api::validate`, and the reconfiguration through
//! the controller), and the codes — 400/422 plain text for a body that does not fit (as
//! axum's raw extractor), 400 `{"error"}` for a spec that fails validation, 200 `completed`,
//! 500 `failed`.

use std::time::Duration;

use compute_spec::spec::ComputeSpec;
use compute_spec::validate::SpecErrors;
use compute_spec::ComputeDocument;
use hyper::StatusCode;
use pg_prewarm::PrewarmState;
use pg_promote::{PromoteState, Status};

use crate::api::Api;
use crate::state::{ComputeStatus, PendingConfig};
use compute_http::{parse_json_in, ApiRequest, Rejection, Reply};
pub use pg_promote::{PromoteRequest, Promotion};

/// How long a blocked promotion waits between checks of the reconfiguration.
const POLL: Duration = Duration::from_secs(1);

/// `POST /promote` (external, authenticated): 200 `{"status":"completed",…}` or 500
/// `{"status":"failed","error"}`; the first result is kept for the process lifetime.
pub fn promote(api: &Api, request: &ApiRequest) -> Reply {
    let parsed: PromoteRequest = match parse_json_in(&request.body, Rejection::PlainText) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    match api.promotion.promote(api, &parsed) {
        Err(invalid) => Reply::error(StatusCode::BAD_REQUEST, invalid.to_string()),
        Ok(state @ PromoteState::Completed(_)) => Reply::json(StatusCode::OK, state),
        Ok(state @ PromoteState::Failed { .. }) => {
            Reply::json(StatusCode::INTERNAL_SERVER_ERROR, state)
        }
    }
}

/// The compute a promotion sees.
impl pg_promote::Host for Api {
    fn current(&self) -> (Option<ComputeDocument>, Status) {
        let inner = self.shared.lock();
        let status = match inner.status() {
            ComputeStatus::Running => Status::Running,
            other => Status::Other(other.to_string()),
        };
        (inner.document.clone(), status)
    }

    fn prewarm_state(&self) -> Option<PrewarmState> {
        Some(self.lfc.prewarm_state())
    }

    /// The compute's admin and privileged roles (the crate checks PostgreSQL's own names).
    fn validate(&self, spec: &ComputeSpec) -> Result<(), SpecErrors> {
        crate::api::validate(self, spec).map(|_| ())
    }

    /// Store the new spec and reconfigure, through the controller (as `/configure`),
    /// waiting for the outcome.
    fn reconfigure(&self, spec: ComputeSpec) -> Result<(), String> {
        self.shared
            .update(|inner| {
                if inner.status() != ComputeStatus::Running {
                    return Err(inner.status());
                }
                inner.pending = Some(PendingConfig { spec });
                compute_trace::process::hand_off();
                inner.error = None;
                inner
                    .transition(ComputeStatus::ConfigurationPending)
                    .map_err(|error| error.from)
            })
            .map_err(|status| format!("the compute became {status} before its reconfiguration"))?;
        self.wake();
        loop {
            let inner = self.shared.wait_until(POLL, |inner| {
                !matches!(
                    inner.status(),
                    ComputeStatus::ConfigurationPending | ComputeStatus::Configuration
                )
            });
            match inner.status() {
                ComputeStatus::Running => return Ok(()),
                ComputeStatus::ConfigurationPending | ComputeStatus::Configuration => {}
                ComputeStatus::Failed => {
                    let error = inner.error.as_deref().unwrap_or("unknown error");
                    return Err(format!("reconfiguring as primary failed: {error}"));
                }
                status => return Err(format!("the compute became {status} while reconfiguring")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{api as test_api, body, document, request, spec};
    use hyper::Method;
    use pg_prewarm::PrewarmState;
    use serde_json::{json, Value};
    use std::path::Path;
    use std::sync::Arc;

    /// A running compute whose spec has `extra`, on a Postgres that does not exist.
    fn api_in(extra: Value) -> Api {
        let document = document(
            Path::new("/usr/bin"),
            Path::new("/nonexistent"),
            Path::new("/nonexistent"),
            5432,
            spec(extra),
        );
        let api = test_api(Some(document), true);
        // A prewarm has run (and failed, which only warns).
        api.lfc.set_prewarm_state(PrewarmState::Failed {
            error: "no storage".to_string(),
        });
        api
    }

    fn promote_body(spec_value: Value, lsn: Option<&str>) -> Vec<u8> {
        json!({ "spec": spec_value, "wal_flush_lsn": lsn })
            .to_string()
            .into_bytes()
    }

    fn post(api: &Api, body_bytes: &[u8]) -> Reply {
        promote(api, &request(Method::POST, "/promote", "", body_bytes))
    }

    fn error_of(reply: &Reply) -> String {
        assert_eq!(reply.status, 500);
        let body = body(reply);
        assert_eq!(body["status"], "failed");
        body["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn bad_bodies_are_rejected_before_anything_runs() {
        let api = api_in(json!({"mode": "Primary"}));
        let reply = post(&api, b"{");
        assert_eq!(reply.status, 400);
        assert!(reply.content_type.unwrap().starts_with("text/plain"));
        assert!(String::from_utf8_lossy(&reply.body)
            .starts_with("Failed to parse the request body as JSON: "));
        let reply = post(&api, br#"{"wal_flush_lsn":"0/1"}"#);
        assert_eq!(reply.status, 422);
        assert_eq!(
            String::from_utf8_lossy(&reply.body),
            "Failed to deserialize the JSON body into the target type: missing field `spec` at line 1 column 23"
        );
        let reply = post(&api, &promote_body(spec(json!({})), Some("nonsense")));
        assert_eq!(reply.status, 422);
        let text = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(
            text.starts_with(
                "Failed to deserialize the JSON body into the target type: wal_flush_lsn: "
            ),
            "{text}"
        );
        // A spec that parses but fails validation: 400 JSON.
        let invalid = spec(json!({"cluster": {"roles": [{"name": ""}], "databases": []}}));
        let reply = post(&api, &promote_body(invalid, Some("0/1")));
        assert_eq!(
            reply.status,
            400,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(body(&reply)["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid spec: "));
        assert!(api.promotion.result().is_none(), "nothing ran");
        // A delta on the compute's admin role (the user of its connstr): 400 naming the path.
        let deltas = json!([{"action": "rename_role", "name": "cloud_admin", "new_name": "x"}]);
        let reply = post(
            &api,
            &promote_body(spec(json!({ "delta_operations": deltas })), Some("0/1")),
        );
        assert_eq!(reply.status, 400);
        let error = body(&reply)["error"].as_str().unwrap().to_string();
        assert!(
            error.starts_with("invalid spec: delta_operations[0].name: "),
            "{error}"
        );
        assert!(api.promotion.result().is_none(), "nothing ran");
    }

    #[test]
    fn a_primary_is_not_promoted_and_the_answer_sticks() {
        let mut api = api_in(json!({"mode": "Primary"}));
        let reply = post(&api, &promote_body(spec(json!({})), Some("0/3000060")));
        assert_eq!(
            body(&reply),
            json!({"status": "failed", "error": "compute mode \"primary\" is not replica"})
        );
        // Even after the compute became a replica, the first answer stands.
        let replica = api_in(json!({"mode": "Replica"}));
        api.shared = replica.shared.clone();
        let reply = post(&api, &promote_body(spec(json!({})), Some("0/1")));
        assert_eq!(error_of(&reply), "compute mode \"primary\" is not replica");
        let stat = api_in(json!({"mode": {"Static": "0/16B3748"}}));
        let reply = post(&stat, &promote_body(spec(json!({})), Some("0/1")));
        assert_eq!(error_of(&reply), "compute mode \"static\" is not replica");
        let nothing = test_api(None, false);
        let reply = post(&nothing, &promote_body(spec(json!({})), Some("0/1")));
        assert!(error_of(&reply).contains("no spec yet"));
    }

    #[test]
    fn concurrent_calls_share_one_run() {
        let api = Arc::new(api_in(json!({"mode": "Replica"})));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let api = api.clone();
                std::thread::spawn(move || post(&api, &promote_body(spec(json!({})), None)))
            })
            .collect();
        let answers: Vec<String> = threads
            .into_iter()
            .map(|thread| error_of(&thread.join().unwrap()))
            .collect();
        // Not a vanilla replica: the new spec needs safekeepers (checked before anything
        // touches Postgres).
        for answer in &answers {
            assert_eq!(answer, &answers[0]);
        }
        assert!(
            answers[0].starts_with("spec.safekeeper_connstrings: "),
            "{answers:?}"
        );
    }

    #[test]
    fn a_neon_replica_needs_a_prewarm_lsn_and_a_primary_spec() {
        let body_bytes = promote_body(spec(json!({})), Some("0/1"));
        let replica = || api_in(json!({"mode": "Replica"}));
        let api = replica();
        api.lfc.set_prewarm_state(PrewarmState::NotPrewarmed);
        assert_eq!(error_of(&post(&api, &body_bytes)), "compute NotPrewarmed");
        let api = replica();
        api.lfc.set_prewarm_state(PrewarmState::Prewarming);
        assert_eq!(error_of(&post(&api, &body_bytes)), "compute Prewarming");
        let with_safekeepers = spec(json!({"safekeeper_connstrings": ["127.0.0.1:5454"]}));
        let api = replica();
        let reply = post(&api, &promote_body(with_safekeepers.clone(), None));
        assert_eq!(
            error_of(&reply),
            "wal_flush_lsn is required to promote a Neon replica"
        );
        let mut as_replica = with_safekeepers.clone();
        as_replica["mode"] = json!("Replica");
        let reply = post(&replica(), &promote_body(as_replica, Some("0/1")));
        assert_eq!(
            error_of(&reply),
            "spec.mode: the new spec must be Primary, not \"replica\""
        );
        // Past every check, a compute whose Postgres is not there fails connecting.
        for state in [PrewarmState::Skipped, PrewarmState::Cancelled] {
            let api = replica();
            api.lfc.set_prewarm_state(state);
            let reply = post(&api, &promote_body(with_safekeepers.clone(), Some("0/1")));
            assert!(error_of(&reply).starts_with("connecting to the compute's postgres"));
        }
    }

    #[test]
    fn a_vanilla_replica_needs_no_prewarm() {
        let api = api_in(json!({
            "mode": "Replica",
            "upstream_connstring": "host=/nonexistent port=1 user=cloud_admin",
        }));
        api.lfc.set_prewarm_state(PrewarmState::NotPrewarmed);
        let new_spec = spec(json!({"upstream_connstring": "host=/nonexistent port=1"}));
        // No wal_flush_lsn: the primary is asked for its LSN, and it is not there.
        let reply = post(&api, &promote_body(new_spec, None));
        let error = error_of(&reply);
        assert!(
            error.starts_with("connecting to the primary (upstream_connstring): "),
            "{error}"
        );
    }

    #[test]
    fn a_replica_that_is_not_running_is_not_promoted() {
        let document = document(
            Path::new("/usr/bin"),
            Path::new("/nonexistent"),
            Path::new("/nonexistent"),
            5432,
            spec(json!({"mode": "Replica", "upstream_connstring": "host=/x"})),
        );
        let api = test_api(Some(document), false);
        let reply = post(&api, &promote_body(spec(json!({})), Some("0/1")));
        assert_eq!(
            error_of(&reply),
            "the compute is empty, not running: only a running replica is promoted"
        );
    }
}
