//! `POST /promote` (replica → primary): the request checks and upstream's step (1).
//!
//! Upstream's steps: (1) the compute's mode must be `Replica`; (2) prewarm state not
//! `not_prewarmed`/`prewarming`; (3) wait for replay to reach `wal_flush_lsn`; (4) point
//! `neon.safekeepers` at the new safekeepers; (5) `pg_promote()`; (6) check writability;
//! (7) store the new spec and reconfigure. (1) and (2) are implemented: a Replica past them
//! gets `{"status":"failed","error":"… not supported yet …"}` until the rest lands.
//!
//! As upstream, the first promotion's result (failures included) is the answer to every
//! later or concurrent call for the life of the process; concurrent callers wait for it.

use std::sync::OnceLock;

use compute_spec::ids::Lsn;
use compute_spec::spec::{ComputeMode, ComputeSpec};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::http::{parse_json_in, ApiRequest, Rejection, Reply};
use crate::lfc::{Lfc, PrewarmState};
use crate::state::Shared;

/// The single-flight, process-lifetime promotion result. One per process: the lead keeps it
/// as `Api::promotion: Arc<Promotion>`.
#[derive(Debug, Default)]
pub struct Promotion {
    result: OnceLock<(u16, Value)>,
}

/// A `/promote` body.
#[derive(Clone, Debug, Deserialize)]
pub struct PromoteRequest {
    /// The spec of the new primary.
    pub spec: ComputeSpec,
    /// The LSN replay must reach first.
    pub wal_flush_lsn: Lsn,
}

impl Promotion {
    /// No promotion yet.
    pub fn new() -> Promotion {
        Promotion::default()
    }

    /// The cached result, if a promotion ran.
    pub fn result(&self) -> Option<&(u16, Value)> {
        self.result.get()
    }
}

/// Upstream's raw framework rejection: plain text, original case.
fn plain(status: u16, text: String) -> Reply {
    Reply::text(status, "text/plain; charset=utf-8", text)
}

/// Upstream's 415 for `/promote` (axum's raw extractor: plain text, original case); for
/// the lead to call once the request carries its `Content-Type`.
pub fn require_json_content_type(content_type: Option<&str>) -> Result<(), Reply> {
    if crate::extract::is_json_content_type(content_type) {
        Ok(())
    } else {
        Err(plain(
            415,
            "Expected request with `Content-Type: application/json`".to_string(),
        ))
    }
}

/// Reads the body: 400/422 plain text for JSON that does not fit (as axum's raw
/// extractor), 400 `{"error"}` for a spec that fails validation.
pub fn parse(body: &[u8]) -> Result<PromoteRequest, Reply> {
    let request: PromoteRequest = parse_json_in(body, Rejection::PlainText)?;
    if let Err(errors) = request.spec.validate() {
        return Err(Reply::error(400, format!("invalid spec: {errors}")));
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
pub fn promote(promotion: &Promotion, lfc: &Lfc, shared: &Shared, request: &ApiRequest) -> Reply {
    let parsed = match parse(&request.body) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let (status, body) = promotion.result.get_or_init(|| run(lfc, shared, &parsed));
    Reply::json(*status, body)
}

fn run(lfc: &Lfc, shared: &Shared, request: &PromoteRequest) -> (u16, Value) {
    let mode = shared
        .lock()
        .document
        .as_ref()
        .and_then(|document| document.spec.as_ref())
        .map(|spec| spec.mode);
    let error = match mode {
        None => "the compute has no spec yet: nothing to promote".to_string(),
        // (2) As upstream: a replica must have been prewarmed first; a failed prewarm only
        // warns.
        Some(ComputeMode::Replica) if lfc.prewarm_state() == PrewarmState::NotPrewarmed => {
            "compute NotPrewarmed".to_string()
        }
        Some(ComputeMode::Replica) if lfc.prewarm_state() == PrewarmState::Prewarming => {
            "compute Prewarming".to_string()
        }
        Some(ComputeMode::Replica) => format!(
            "promoting a replica to primary (wait for replay to reach {}, switch safekeepers, \
             pg_promote) is not supported yet by this compute-ctl",
            request.wal_flush_lsn
        ),
        Some(mode) => format!("compute mode \"{}\" is not replica", mode_name(mode)),
    };
    tracing::error!(%error, "promotion failed");
    (500, json!({"status": "failed", "error": error}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{body, request, shared_with, spec};
    use hyper::Method;
    use std::sync::Arc;

    fn shared_in(mode: Option<Value>) -> Arc<Shared> {
        shared_with(mode.map(|mode| json!({"mode": mode})))
    }

    fn promote_body(spec_value: Value, lsn: &str) -> Vec<u8> {
        json!({"spec": spec_value, "wal_flush_lsn": lsn})
            .to_string()
            .into_bytes()
    }

    /// An LFC whose prewarm has run (and failed, which only warns).
    fn prewarmed() -> Lfc {
        let lfc = Lfc::new();
        lfc.set_prewarm_state(PrewarmState::Failed {
            error: "no storage".to_string(),
        });
        lfc
    }

    fn post(promotion: &Promotion, shared: &Shared, body_bytes: &[u8]) -> Reply {
        post_with(promotion, &prewarmed(), shared, body_bytes)
    }

    fn post_with(promotion: &Promotion, lfc: &Lfc, shared: &Shared, body_bytes: &[u8]) -> Reply {
        promote(
            promotion,
            lfc,
            shared,
            &request(Method::POST, "/promote", "", body_bytes),
        )
    }

    #[test]
    fn bad_bodies_are_rejected_before_anything_runs() {
        let promotion = Promotion::new();
        let shared = shared_in(Some(json!("Primary")));
        let reply = post(&promotion, &shared, b"{");
        assert_eq!(reply.status, 400);
        assert!(reply.content_type.unwrap().starts_with("text/plain"));
        assert!(String::from_utf8_lossy(&reply.body)
            .starts_with("Failed to parse the request body as JSON: "));
        let reply = post(&promotion, &shared, br#"{"wal_flush_lsn":"0/1"}"#);
        assert_eq!(reply.status, 422);
        assert_eq!(
            String::from_utf8_lossy(&reply.body),
            "Failed to deserialize the JSON body into the target type: missing field `spec` at line 1 column 23"
        );
        let reply = post(
            &promotion,
            &shared,
            &promote_body(spec(json!({})), "nonsense"),
        );
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
        let reply = post(&promotion, &shared, &promote_body(invalid, "0/1"));
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
        assert!(promotion.result().is_none(), "nothing ran");
    }

    #[test]
    fn content_type_is_checked_in_plain_text() {
        assert!(require_json_content_type(Some("application/json")).is_ok());
        let reply = require_json_content_type(Some("text/json")).unwrap_err();
        assert_eq!(reply.status, 415);
        assert_eq!(
            String::from_utf8_lossy(&reply.body),
            "Expected request with `Content-Type: application/json`"
        );
    }

    #[test]
    fn a_primary_is_not_promoted_and_the_answer_sticks() {
        let promotion = Promotion::new();
        let shared = shared_in(Some(json!("Primary")));
        let reply = post(
            &promotion,
            &shared,
            &promote_body(spec(json!({})), "0/3000060"),
        );
        assert_eq!(reply.status, 500);
        assert_eq!(
            body(&reply),
            json!({"status": "failed", "error": "compute mode \"Primary\" is not replica"})
        );
        // Even after the compute became a replica, the first answer stands.
        let replica = shared_in(Some(json!("Replica")));
        let reply = post(&promotion, &replica, &promote_body(spec(json!({})), "0/1"));
        assert_eq!(
            body(&reply)["error"],
            "compute mode \"Primary\" is not replica"
        );
        let stat = shared_in(Some(json!({"Static": "0/16B3748"})));
        let reply = post(
            &Promotion::new(),
            &stat,
            &promote_body(spec(json!({})), "0/1"),
        );
        assert_eq!(
            body(&reply)["error"],
            "compute mode \"Static(0/16B3748)\" is not replica"
        );
    }

    #[test]
    fn a_replica_is_refused_as_not_supported_yet() {
        let promotion = Arc::new(Promotion::new());
        let shared = shared_in(Some(json!("Replica")));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (promotion, shared) = (promotion.clone(), shared.clone());
                std::thread::spawn(move || {
                    post(
                        &promotion,
                        &shared,
                        &promote_body(spec(json!({})), "0/3000060"),
                    )
                })
            })
            .collect();
        for thread in threads {
            let reply = thread.join().unwrap();
            assert_eq!(reply.status, 500);
            let reply = body(&reply);
            assert_eq!(reply["status"], "failed");
            assert!(reply["error"]
                .as_str()
                .unwrap()
                .contains("not supported yet"));
            assert!(reply["error"].as_str().unwrap().contains("0/3000060"));
        }
        let reply = post(
            &Promotion::new(),
            &shared_in(None),
            &promote_body(spec(json!({})), "0/1"),
        );
        assert_eq!(reply.status, 500);
        assert_eq!(body(&reply)["status"], "failed");
    }

    #[test]
    fn a_replica_must_be_prewarmed_first() {
        let replica = shared_in(Some(json!("Replica")));
        let lfc = Lfc::new();
        let body_bytes = promote_body(spec(json!({})), "0/1");
        let reply = post_with(&Promotion::new(), &lfc, &replica, &body_bytes);
        assert_eq!(
            body(&reply),
            json!({"status": "failed", "error": "compute NotPrewarmed"})
        );
        lfc.set_prewarm_state(PrewarmState::Prewarming);
        let reply = post_with(&Promotion::new(), &lfc, &replica, &body_bytes);
        assert_eq!(body(&reply)["error"], "compute Prewarming");
        for state in [PrewarmState::Skipped, PrewarmState::Cancelled] {
            lfc.set_prewarm_state(state);
            let reply = post_with(&Promotion::new(), &lfc, &replica, &body_bytes);
            assert!(body(&reply)["error"]
                .as_str()
                .unwrap()
                .contains("not supported yet"));
        }
    }
}
