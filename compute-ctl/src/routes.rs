//! Routing and the handlers of the HTTP API (upstream's paths and status codes).

use tiny_http::Method;

use crate::http::{Api, ApiRequest, Port, Reply};
use crate::state::ComputeStatus;

/// The methods a known path accepts; `None` for an unknown path.
fn allowed(path: &str) -> Option<&'static [Method]> {
    Some(match path {
        "/status" | "/metrics" | "/metrics.json" | "/healthz" | "/readyz" | "/dbs_and_roles"
        | "/insights" => &[Method::Get],
        "/configure" | "/terminate" | "/check_writability" => &[Method::Post],
        _ => return None,
    })
}

/// Routes on the internal port (no authentication).
const INTERNAL: &[&str] = &[
    "/status",
    "/metrics",
    "/metrics.json",
    "/healthz",
    "/readyz",
];

/// Routes that never need a token.
const UNAUTHENTICATED: &[&str] = &["/metrics", "/healthz", "/readyz"];

/// Answers one request.
pub fn route(api: &Api, which: Port, request: &ApiRequest) -> Reply {
    let path = request.path.as_str();
    let Some(methods) = allowed(path) else {
        return Reply::empty(404);
    };
    if which == Port::Internal && !INTERNAL.contains(&path) {
        return Reply::empty(404);
    }
    if !methods.contains(&request.method) {
        return Reply::error(
            405,
            format!("method {} not allowed for {path}", request.method),
        );
    }
    if which == Port::External && !UNAUTHENTICATED.contains(&path) {
        let keys = api.shared.lock().compute_ctl_config.jwks.keys.clone();
        if let Err(reply) = crate::auth::check(&keys, api.compute_id.as_deref(), request) {
            return reply;
        }
    }
    match path {
        "/status" => Reply::json(200, &api.shared.lock().status_body()),
        "/metrics.json" => match serde_json::to_value(&api.shared.lock().metrics) {
            Ok(value) => Reply::json(200, &value),
            Err(error) => Reply::error(500, format!("serialising metrics: {error}")),
        },
        "/metrics" => Reply::text(200, crate::metrics::render(&api.shared.lock())),
        "/healthz" => Reply::json(200, &serde_json::json!({"status": "ok"})),
        "/readyz" => crate::sql::readyz(api),
        "/configure" => crate::control::configure(api, &request.body),
        "/terminate" => crate::control::terminate(api, &request.query),
        "/dbs_and_roles" => crate::sql::dbs_and_roles(api),
        "/check_writability" => crate::sql::check_writability(api),
        "/insights" => crate::sql::insights(api),
        _ => Reply::empty(404),
    }
}

/// 412 with upstream's message.
pub fn wrong_status(status: ComputeStatus) -> Reply {
    Reply::error(412, format!("invalid compute status: {status}"))
}
