//! `POST /promote` (replica → primary): the request, the single flight and the answer; the steps
//! themselves are [`steps`]'s.
//!
//! Upstream's steps: (1) the compute's mode must be `Replica`; (2) prewarm state not
//! `not_prewarmed`/`prewarming` (Neon replicas only: a vanilla replica needs no prewarm); (3) wait
//! for replay to reach `wal_flush_lsn` (`null` allowed for a vanilla replica: the primary's current WAL
//! insert position); (4) point `neon.safekeepers` at the new safekeepers (Neon only); (5)
//! `pg_promote()`; (6) check writability; (7) store the new spec and reconfigure.
//!
//! As upstream, the first promotion's result (failures included) is the answer to every later or
//! concurrent call for the life of the process; concurrent callers wait for it.

mod steps;

use std::sync::OnceLock;

use compute_spec::ids::Lsn;
use compute_spec::spec::{ComputeMode, ComputeSpec};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{parse_json_in, Api, ApiRequest, Rejection, Reply};
use hyper::StatusCode;

pub use steps::Timings;

/// The single-flight, process-lifetime promotion result. One per process: the lead keeps it
/// as `Api::promotion: Arc<Promotion>`.
#[derive(Debug, Default)]
pub struct Promotion {
    result: OnceLock<(StatusCode, Value)>,
}

/// A `/promote` body.
#[derive(Clone, Debug, Deserialize)]
pub struct PromoteRequest {
    /// The spec of the new primary.
    pub spec: ComputeSpec,
    /// The LSN replay must reach first. The field is required, as upstream (a body without
    /// it is a 422); `null` — only for a vanilla replica, beyond upstream — means the
    /// primary's current WAL position (`pg_current_wal_insert_lsn()`).
    #[serde(deserialize_with = "present_or_null")]
    pub wal_flush_lsn: Option<Lsn>,
}

/// Deserialises an `Option` whose field must be present (serde requires a field with
/// `deserialize_with` and no `default`), `null` giving `None`.
fn present_or_null<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Lsn>, D::Error> {
    Option::<Lsn>::deserialize(deserializer)
}

impl Promotion {
    /// No promotion yet.
    pub fn new() -> Promotion {
        Promotion::default()
    }

    /// The cached result, if a promotion ran.
    pub fn result(&self) -> Option<&(StatusCode, Value)> {
        self.result.get()
    }
}

/// Reads the body: 400/422 plain text for JSON that does not fit (as axum's raw
/// extractor), 400 `{"error"}` for a spec that fails validation.
pub fn parse(body: &[u8]) -> Result<PromoteRequest, Reply> {
    let request: PromoteRequest = parse_json_in(body, Rejection::PlainText)?;
    if let Err(errors) = request.spec.validate() {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            format!("invalid spec: {errors}"),
        ));
    }
    Ok(request)
}

/// How upstream names a mode in its error (`compute mode "Primary" is not replica`).
pub fn mode_name(mode: ComputeMode) -> String {
    match mode {
        ComputeMode::Primary => "Primary".to_string(),
        ComputeMode::Replica => "Replica".to_string(),
        ComputeMode::Static(lsn) => format!("Static({lsn})"),
    }
}

/// `POST /promote` (external, authenticated): 200 `{"status":"completed",…}` or 500
/// `{"status":"failed","error"}`; the first result is cached for the process lifetime.
pub fn promote(api: &Api, request: &ApiRequest) -> Reply {
    let parsed = match parse(&request.body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    // The compute's admin and privileged roles (`parse` knows only PostgreSQL's own names).
    if let Err(errors) = crate::control::validate(api, &parsed.spec) {
        return Reply::error(StatusCode::BAD_REQUEST, format!("invalid spec: {errors}"));
    }
    let (status, body) = api.promotion.result.get_or_init(|| answer(api, &parsed));
    Reply::json(*status, body)
}

/// Runs the promotion once and shapes its answer.
fn answer(api: &Api, request: &PromoteRequest) -> (StatusCode, Value) {
    match steps::run(api, request) {
        Ok(timings) => {
            tracing::info!(?timings, "promotion completed");
            (
                StatusCode::OK,
                json!({
                    "status": "completed",
                    "lsn_wait_time_ms": timings.lsn_wait_time_ms,
                    "pg_promote_time_ms": timings.pg_promote_time_ms,
                    "reconfigure_time_ms": timings.reconfigure_time_ms,
                }),
            )
        }
        Err(error) => {
            tracing::error!(%error, "promotion failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                json!({"status": "failed", "error": error}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{api as test_api, body, document, request, spec};
    use hyper::Method;
    use pg_prewarm::PrewarmState;
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
            json!({"status": "failed", "error": "compute mode \"Primary\" is not replica"})
        );
        // Even after the compute became a replica, the first answer stands.
        let replica = api_in(json!({"mode": "Replica"}));
        api.shared = replica.shared.clone();
        let reply = post(&api, &promote_body(spec(json!({})), Some("0/1")));
        assert_eq!(error_of(&reply), "compute mode \"Primary\" is not replica");
        let stat = api_in(json!({"mode": {"Static": "0/16B3748"}}));
        let reply = post(&stat, &promote_body(spec(json!({})), Some("0/1")));
        assert_eq!(
            error_of(&reply),
            "compute mode \"Static(0/16B3748)\" is not replica"
        );
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
            "spec.mode: the new spec must be Primary, not \"Replica\""
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
