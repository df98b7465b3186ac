//! HTTP request handling of compute-ctl without a socket: the route table
//! (`routes::lookup`, the entry the router picks), JWT checking (`compute_http::auth::Auth::check`
//! with a real Ed25519 key set, tokens signed with fuzz-chosen claims, mutated tokens and raw
//! headers), the query-string and `Content-Type` readers (`extract`: axum's extractors), and
//! the JSON body decoding every POST route uses (`compute_http::parse_json_in`), in the server's order
//! of checks
//! (route, auth, 415, body), structure-aware. The 404 and 405 answers are axum's router's.
//!
//! Then the handlers themselves (`routes::route`) on an `api::Api` built from its public
//! parts: a compute in `empty` without a document, or `running` with a document whose
//! Postgres, socket and binaries do not exist (so a handler that connects or spawns fails
//! fast). Not dispatched: the routes that wait for the controller (`/configure`,
//! `/terminate`, `/refresh_configuration`), run a promotion once per process (`/promote`),
//! start background work (`POST /lfc/*`) or call the vm-monitor (`/autoscaling_metrics`).
//! Invariants there: no panic; the status is a valid code; a JSON reply's body is JSON, and
//! an error reply is `{"error": <string>}`.
//!
//! Invariants: no panic; a token is accepted only if it was signed by the configured key,
//! is not expired, and its claims pass the rules (admin scope with audience `compute`, or
//! this compute's id); a refused token is a 400/401/403; a refused body is a 400/422.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use arbitrary::{Arbitrary, Result, Unstructured};
use base64::Engine as _;
use compute_ctl::api::Api;
use compute_ctl::catalog::{ExtensionRequest, GrantsRequest};
use compute_ctl::promote::PromoteRequest;
use compute_ctl::routes;
use compute_http::auth::Auth;
use compute_http::extract;
use compute_http::{parse_json_in, ApiRequest, Deadlines, Port, Rejection, Reply};
use compute_ctl::state::{ComputeStatus, Shared};
use compute_spec::ComputeDocument;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use hyper::Method;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const COMPUTE_ID: &str = "compute-1";

const PATHS: &[&str] = &[
    "/status",
    "/metrics",
    "/metrics.json",
    "/healthz",
    "/readyz",
    "/configure",
    "/terminate",
    "/check_writability",
    "/dbs_and_roles",
    "/insights",
    "/database_schema",
    "/grants",
    "/extensions",
    "/hadron_liveness_probe",
    "/autoscaling_metrics",
    "/promote",
    "/lfc/prewarm",
    "/lfc/offload",
    "/refresh_configuration",
    "/extension_server/",
    "/extension_server/x.so",
];
const METHODS: &[&str] = &["GET", "POST", "HEAD", "DELETE", "PUT", "PATCH", "OPTIONS"];
const STRINGS: &[&str] = &[
    "compute-1",
    "compute",
    "compute_ctl:admin",
    "other",
    "",
    "COMPUTE-1",
];

struct Keys {
    auth: Auth,
    encoding: EncodingKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let key = SigningKey::from_bytes(&[7; 32]);
        let x =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": x, "use": "sig", "kid": "fuzz"});
        let auth = Auth::load(Some(&[jwk])).expect("a valid key set");
        let der = key.to_pkcs8_der().expect("the key encodes");
        let encoding = EncodingKey::from_ed_der(der.as_bytes());
        Keys { auth, encoding }
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0)
}

fn text(u: &mut Unstructured<'_>, known: &[&str]) -> Result<String> {
    if u.ratio(3, 4)? {
        Ok(u.choose(known)?.to_string())
    } else {
        String::arbitrary(u)
    }
}

/// Fuzz-chosen claims; `exp` is in the past, in the future, absent or anything.
fn claims(u: &mut Unstructured<'_>) -> Result<Value> {
    let mut claims = serde_json::Map::new();
    if u.arbitrary()? {
        claims.insert("compute_id".into(), text(u, STRINGS)?.into());
    }
    if u.arbitrary()? {
        claims.insert("scope".into(), text(u, STRINGS)?.into());
    }
    match u.int_in_range(0..=3u8)? {
        0 => {}
        1 => {
            let list: Vec<String> = (0..u.int_in_range(0..=2u8)?)
                .map(|_| text(u, STRINGS))
                .collect::<Result<_>>()?;
            claims.insert("aud".into(), list.into());
        }
        2 => {
            claims.insert("aud".into(), text(u, STRINGS)?.into());
        }
        _ => {
            claims.insert("aud".into(), u64::arbitrary(u)?.into());
        }
    }
    let exp = match u.int_in_range(0..=4u8)? {
        0 => None,
        1 => Some(json!(now() + 3600)),
        2 => Some(json!(now().saturating_sub(3600))),
        3 => Some(json!(u64::arbitrary(u)?)),
        _ => Some(json!(text(u, STRINGS)?)),
    };
    if let Some(exp) = exp {
        claims.insert("exp".into(), exp);
    }
    Ok(Value::Object(claims))
}

/// The `Authorization` header, and the claims when it carries a token we signed.
fn authorization(u: &mut Unstructured<'_>) -> Result<(Option<String>, Option<Value>)> {
    Ok(match u.int_in_range(0..=3u8)? {
        0 => (None, None),
        1 => (Some(String::arbitrary(u)?), None),
        kind => {
            let claims = claims(u)?;
            let mut header = Header::new(Algorithm::EdDSA);
            if u.arbitrary()? {
                header.kid = Some(text(u, &["fuzz", "other"])?);
            }
            let token =
                jsonwebtoken::encode(&header, &claims, &keys().encoding).expect("signing a token");
            let mut token = token.into_bytes();
            if kind == 3 {
                // A few byte edits: what is left must still be refused unless it verifies.
                for _ in 0..u.int_in_range(1..=3u8)? {
                    if token.is_empty() {
                        break;
                    }
                    let at = u.choose_index(token.len())?;
                    token[at] = u.arbitrary()?;
                }
            }
            let scheme = text(u, &["Bearer ", "bearer ", "BEARER  ", "Basic "])?;
            let token = String::from_utf8_lossy(&token).into_owned();
            (Some(format!("{scheme}{token}")), Some(claims))
        }
    })
}

fn passes_rules(claims: &Value) -> bool {
    let admin = claims.get("scope") == Some(&json!("compute_ctl:admin"));
    if admin {
        return claims
            .get("aud")
            .and_then(Value::as_array)
            .is_some_and(|aud| aud.iter().any(|aud| aud == "compute"));
    }
    claims.get("compute_id") == Some(&json!(COMPUTE_ID))
}

fn check_auth(authorization: Option<&str>, signed: Option<&Value>) {
    match keys().auth.check(authorization, Some(COMPUTE_ID)) {
        Ok(()) => {
            let claims = signed.unwrap_or_else(|| {
                panic!("a header we did not sign was accepted: {authorization:?}")
            });
            assert!(
                passes_rules(claims),
                "claims that fail the rules were accepted: {claims}"
            );
            if let Some(exp) = claims.get("exp").and_then(Value::as_u64) {
                assert!(
                    exp + compute_http::auth::LEEWAY_SECONDS >= now(),
                    "an expired token was accepted: {claims}"
                );
            }
        }
        Err(refused) => assert!(
            matches!(refused.status().as_u16(), 400 | 401 | 403),
            "a refused token answered {}",
            refused.status()
        ),
    }
}

fn check_body(path: &str, body: &[u8]) {
    let status = match path {
        "/promote" => parse_json_in::<PromoteRequest>(body, Rejection::PlainText).err(),
        "/grants" => parse_json_in::<GrantsRequest>(body, Rejection::AsWritten).err(),
        "/extensions" => parse_json_in::<ExtensionRequest>(body, Rejection::AsWritten).err(),
        _ => parse_json_in::<Value>(body, Rejection::Lower).err(),
    }
    .map(|reply| reply.status.as_u16());
    if let Some(status) = status {
        assert!(
            matches!(status, 400 | 422),
            "a refused body answered {status}"
        );
    }
}

fn one(u: &mut Unstructured<'_>) -> Result<()> {
    let which = if u.arbitrary()? {
        Port::External
    } else {
        Port::Internal
    };
    let method = text(u, METHODS)?;
    let path = text(u, PATHS)?;
    let query: Option<String> = u.arbitrary()?;
    let content_type = if u.arbitrary()? {
        Some(text(
            u,
            &[
                "application/json",
                "application/json; charset=utf-8",
                "text/plain",
            ],
        )?)
    } else {
        None
    };
    let (authorization, signed) = authorization(u)?;
    let running: bool = u.arbitrary()?;
    let body = u.bytes(u.len())?;

    let _ = extract::query::<std::collections::HashMap<String, String>>(
        query.as_deref(),
        Rejection::Lower,
    );
    check_auth(authorization.as_deref(), signed.as_ref());

    let _ = compute_ctl::remote_ext::extension_file(&path);
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Ok(());
    };
    let Some(route) = routes::lookup(which, &method, &path) else {
        return Ok(());
    };
    if route.body != compute_http::routes::BodyKind::Any {
        let mut headers = hyper::HeaderMap::new();
        if let Some(value) = content_type
            .as_deref()
            .and_then(|value| hyper::header::HeaderValue::from_str(value).ok())
        {
            headers.insert(hyper::header::CONTENT_TYPE, value);
        }
        // axum's check on an empty probe body completes at its first poll.
        let check = std::pin::pin!(extract::json_content_type(&headers, Rejection::Lower));
        let mut context = std::task::Context::from_waker(std::task::Waker::noop());
        match check.poll(&mut context) {
            std::task::Poll::Ready(Ok(())) => {}
            std::task::Poll::Ready(Err(reply)) => {
                assert_eq!(reply.status, 415);
                return Ok(());
            }
            std::task::Poll::Pending => panic!("the Content-Type check waited"),
        }
        check_body(&path, body);
    }
    if dispatched(&method, &path) {
        let request = ApiRequest {
            method,
            path,
            query,
            authorization,
            traceparent: None,
            body: body.to_vec(),
        };
        check_reply(&routes::route(api(running), which, &request));
    }
    Ok(())
}

/// Whether the handler of `method path` answers by itself (see the module doc).
fn dispatched(method: &Method, path: &str) -> bool {
    match path {
        "/configure"
        | "/terminate"
        | "/refresh_configuration"
        | "/promote"
        | "/autoscaling_metrics" => false,
        "/lfc/prewarm" | "/lfc/offload" => *method != Method::POST,
        _ => true,
    }
}

/// An API over a compute in `empty` without a document, or `running` on a document that
/// points at nothing (one of each, made once).
fn api(running: bool) -> &'static Api {
    static APIS: OnceLock<[Api; 2]> = OnceLock::new();
    let apis = APIS.get_or_init(|| {
        let make = |document: Option<ComputeDocument>| {
            let shared = Arc::new(Shared::new());
            let running = document.is_some();
            shared.update(|inner| inner.document = document);
            if running {
                for next in [ComputeStatus::Init, ComputeStatus::Running] {
                    shared.transition(next).expect("empty → init → running");
                }
            }
            Api {
                shared,
                wake: std::sync::mpsc::channel().0,
                compute_id: Some(COMPUTE_ID.to_string()),
                auth: Arc::new(Auth::Open),
                deadlines: Deadlines::default(),
                lfc: Arc::default(),
                ext_stats: Arc::default(),
                promotion: Arc::default(),
                remote_ext: Arc::default(),
                ready: Arc::default(),
            }
        };
        let document = serde_json::from_value(json!({
            "document_version": 1,
            "spec": {"format_version": 1.0, "cluster": {"roles": [], "databases": []}},
            "pgdata": "/nonexistent/compute-tools-fuzz/pgdata",
            "pgbin": "/nonexistent/compute-tools-fuzz/bin/postgres",
            "connstr": "postgresql://cloud_admin@localhost/postgres",
            "instance": {"port": 1, "socket_dir": "/nonexistent/compute-tools-fuzz"},
        }))
        .expect("a valid document");
        [make(None), make(Some(document))]
    });
    &apis[usize::from(running)]
}

fn check_reply(reply: &Reply) {
    assert!(
        (100..600).contains(&reply.status.as_u16()),
        "status {}",
        reply.status
    );
    let json = reply
        .content_type
        .as_deref()
        .is_some_and(|kind| kind.starts_with("application/json"));
    if !json || reply.body.is_empty() {
        return;
    }
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or_else(|error| {
        panic!(
            "a JSON reply ({}) that is not JSON: {error}: {:?}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        )
    });
    if reply.status.as_u16() >= 400 {
        assert!(
            body.get("error").is_some_and(Value::is_string),
            "an error reply without an error string: {body}"
        );
    }
}

/// The body.
pub fn run(data: &[u8]) {
    let _ = one(&mut Unstructured::new(data));
}
