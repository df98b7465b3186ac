//! The one route table ([`ROUTES`]: upstream's paths, methods, servers and authentication,
//! plus our `/healthz` and `/readyz`), each entry with its handler. Both servers' axum
//! routers are built from it ([`router`]), so a path cannot be served without a handler or
//! a handler left without a path; unknown paths (404, empty) and methods (405 with `Allow`,
//! before authentication) are axum's routing answers, as upstream.
//!
//! Each entry's handler sits behind the layers its entry asks for, in upstream's order
//! ([`crate::http::checks`]): authentication (a `Token` route on the external server), the
//! `Content-Type` of a JSON body (415), the body (limit 413, deadline 408); then it runs as
//! its [`Handler`] kind says: at once, on the runtime's bounded blocking pool, or as a task
//! that waits on I/O.

use std::future::Future;
use std::pin::Pin;

use axum::extract::{Request, State};
use axum::handler::Handler as _;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use http_body_util::BodyExt;
use hyper::header::AUTHORIZATION;
use hyper::Method;
use tower::ServiceBuilder;

use crate::http::{checks, Api, ApiRequest, Port, Rejection, Reply};
use crate::state::ComputeStatus;
use hyper::StatusCode;

/// An answer still to come.
pub type Pending = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// A handler: the request, read whole, to the answer, by how it waits.
#[derive(Clone, Copy, Debug)]
pub enum Handler {
    /// Answers at once (state, counters): runs on the server's thread.
    Quick(fn(&Api, &ApiRequest) -> Reply),
    /// May block (SQL, child processes, waits on the controller): runs on the runtime's
    /// bounded blocking pool ([`crate::http`]).
    Blocking(fn(&Api, &ApiRequest) -> Reply),
    /// Waits on I/O without a thread (a relay over a socket): a task on the runtime.
    Waits(fn(Api, ApiRequest) -> Pending),
}

/// Which servers serve a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Servers {
    /// The external server only.
    External,
    /// The internal server only.
    Internal,
    /// Both.
    Both,
}

impl Servers {
    fn serves(self, which: Port) -> bool {
        matches!(
            (self, which),
            (Servers::Both, _)
                | (Servers::External, Port::External)
                | (Servers::Internal, Port::Internal)
        )
    }
}

/// What a route asks of the caller on the external server (the internal one never
/// authenticates).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: probes, scrapers and `/autoscaling_metrics`.
    Open,
    /// A valid JWT (see [`crate::auth`]).
    Token,
}

/// What a route reads from the body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyKind {
    /// Nothing asked: whatever comes is read (within the limits) and ignored.
    Any,
    /// JSON: 415 `{"error"}` without `Content-Type: application/json`.
    Json,
    /// JSON, the 415 in plain text (`/promote`, as upstream's raw extractor).
    JsonPlainText,
}

/// One method on one path.
#[derive(Debug)]
pub struct Route {
    /// The path, in axum's syntax (`{*name}` for the rest of the path).
    pub path: &'static str,
    /// The method (HEAD is implied by GET).
    pub method: Method,
    /// The servers that serve it.
    pub servers: Servers,
    /// Who may call it on the external server.
    pub access: Access,
    /// What it reads from the body.
    pub body: BodyKind,
    /// The handler.
    pub handler: Handler,
}

const fn at(
    path: &'static str,
    method: Method,
    servers: Servers,
    access: Access,
    body: BodyKind,
    handler: Handler,
) -> Route {
    Route {
        path,
        method,
        servers,
        access,
        body,
        handler,
    }
}

use Access::{Open, Token};
use BodyKind::{Any, Json, JsonPlainText};
use Servers::{Both, External, Internal};

/// Every route of both servers. The methods of one path are listed in the order of their
/// `Allow` header (GET brings HEAD right after it).
pub const ROUTES: &[Route] = &[
    // Ours on both servers, never authenticated: probes and scrapers.
    at(
        "/healthz",
        Method::GET,
        Both,
        Open,
        Any,
        Handler::Quick(healthz),
    ),
    at(
        "/readyz",
        Method::GET,
        Both,
        Open,
        Any,
        Handler::Blocking(|api, _| crate::sql::readyz(api)),
    ),
    at(
        "/metrics",
        Method::GET,
        Both,
        Open,
        Any,
        Handler::Quick(metrics),
    ),
    // Authenticated on the external server; open on the internal one (loopback).
    at(
        "/status",
        Method::GET,
        Both,
        Token,
        Any,
        Handler::Quick(|api, _| Reply::json(StatusCode::OK, &api.shared.lock().status_body())),
    ),
    at(
        "/metrics.json",
        Method::GET,
        Both,
        Token,
        Any,
        Handler::Quick(|api, _| Reply::json(StatusCode::OK, &api.shared.lock().metrics_json())),
    ),
    at(
        "/autoscaling_metrics",
        Method::GET,
        External,
        Open,
        Any,
        Handler::Waits(|api, _| Box::pin(crate::probes::autoscaling_metrics(api))),
    ),
    at(
        "/configure",
        Method::POST,
        External,
        Token,
        Json,
        Handler::Blocking(|api, request| crate::control::configure(api, &request.body)),
    ),
    at(
        "/terminate",
        Method::POST,
        External,
        Token,
        Any,
        Handler::Blocking(|api, request| crate::control::terminate(api, request.query.as_deref())),
    ),
    at(
        "/check_writability",
        Method::POST,
        External,
        Token,
        Any,
        Handler::Blocking(|api, _| crate::sql::check_writability(api)),
    ),
    at(
        "/dbs_and_roles",
        Method::GET,
        External,
        Token,
        Any,
        Handler::Blocking(|api, _| crate::sql::dbs_and_roles(api)),
    ),
    at(
        "/insights",
        Method::GET,
        External,
        Token,
        Any,
        Handler::Blocking(|api, _| crate::sql::insights(api)),
    ),
    at(
        "/database_schema",
        Method::GET,
        External,
        Token,
        Any,
        Handler::Blocking(crate::catalog::database_schema),
    ),
    at(
        "/hadron_liveness_probe",
        Method::GET,
        External,
        Token,
        Any,
        Handler::Blocking(|api, _| crate::probes::hadron_liveness_probe(api)),
    ),
    at(
        "/promote",
        Method::POST,
        External,
        Token,
        JsonPlainText,
        Handler::Blocking(crate::promote::promote),
    ),
    at(
        "/lfc/prewarm",
        Method::GET,
        External,
        Token,
        Any,
        Handler::Blocking(|api, _| crate::lfc::get_prewarm(&api.lfc)),
    ),
    at(
        "/lfc/prewarm",
        Method::POST,
        External,
        Token,
        Any,
        Handler::Blocking(|api, request| crate::lfc::post_prewarm(&api.lfc, &api.shared, request)),
    ),
    at(
        "/lfc/prewarm",
        Method::DELETE,
        External,
        Token,
        Any,
        Handler::Blocking(|api, _| crate::lfc::delete_prewarm(&api.lfc)),
    ),
    at(
        "/lfc/offload",
        Method::GET,
        External,
        Token,
        Any,
        Handler::Blocking(|api, _| crate::lfc::get_offload(&api.lfc)),
    ),
    at(
        "/lfc/offload",
        Method::POST,
        External,
        Token,
        Any,
        Handler::Blocking(|api, _| crate::lfc::post_offload(&api.lfc, &api.shared)),
    ),
    // Postgres's own callers, on the internal server.
    at(
        "/extensions",
        Method::POST,
        Internal,
        Open,
        Json,
        Handler::Blocking(crate::catalog::extensions),
    ),
    at(
        "/grants",
        Method::POST,
        Internal,
        Open,
        Json,
        Handler::Blocking(crate::catalog::grants),
    ),
    at(
        "/refresh_configuration",
        Method::POST,
        Internal,
        Open,
        Any,
        Handler::Quick(|api, _| crate::control::refresh_configuration(api)),
    ),
    at(
        "/extension_server/{*filename}",
        Method::POST,
        Internal,
        Open,
        Any,
        Handler::Blocking(|api, request| {
            crate::control::extension_server(
                api,
                extension_file(&request.path).unwrap_or_default(),
                request.query.as_deref(),
            )
        }),
    ),
];

fn healthz(_: &Api, _: &ApiRequest) -> Reply {
    Reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

fn metrics(api: &Api, _: &ApiRequest) -> Reply {
    let mut text = crate::metrics::render(&api.shared.lock());
    text.push_str(&crate::ext_stats::render_metrics(&api.ext_stats));
    text.push_str(&crate::lfc::render_metrics(&api.lfc));
    text.push_str(&api.remote_ext.render_metrics());
    Reply::text(StatusCode::OK, "text/plain; version=0.0.4", text)
}

/// The file name of `/extension_server/{*filename}`.
pub fn extension_file(path: &str) -> Option<&str> {
    path.strip_prefix("/extension_server/")
        .filter(|name| !name.is_empty())
}

/// The router of `which` server: every [`ROUTES`] entry it serves, each method of a path
/// on that path's one method router (so axum answers 405 with their `Allow`), each handler
/// behind the layers its entry asks for ([`crate::http::checks`]).
pub fn router(api: &Api, which: Port) -> Router {
    let mut paths: Vec<(&'static str, MethodRouter<Api>)> = Vec::new();
    for entry in ROUTES.iter().filter(|entry| entry.servers.serves(which)) {
        let Ok(filter) = MethodFilter::try_from(entry.method.clone()) else {
            tracing::error!(method = %entry.method, path = entry.path, "a route's method cannot be routed");
            continue;
        };
        let token = which == Port::External && entry.access == Access::Token;
        let json = match entry.body {
            BodyKind::Any => None,
            BodyKind::Json => Some(Rejection::Lower),
            BodyKind::JsonPlainText => Some(Rejection::PlainText),
        };
        let checks = ServiceBuilder::new()
            .layer(from_fn_with_state(
                (api.clone(), token),
                checks::authenticate,
            ))
            .layer(from_fn_with_state(json, checks::json_content_type))
            .layer(from_fn_with_state(api.deadlines.body, checks::buffer_body));
        let handler = move |State(api): State<Api>, request: Request| answer(api, entry, request);
        let handler = handler.layer(checks);
        match paths.iter_mut().find(|(path, _)| *path == entry.path) {
            Some((_, methods)) => *methods = std::mem::take(methods).on(filter, handler),
            None => paths.push((entry.path, MethodRouter::new().on(filter, handler))),
        }
    }
    paths
        .into_iter()
        .fold(Router::new(), |router, (path, methods)| {
            router.route(path, methods)
        })
        .with_state(api.clone())
}

/// Runs `entry`'s handler on a request that passed its checks (its body buffered).
async fn answer(api: Api, entry: &'static Route, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes().to_vec(),
        Err(error) => {
            return Reply::error(
                StatusCode::BAD_REQUEST,
                format!("failed to read the request body: {error}"),
            )
            .into_response()
        }
    };
    let request = ApiRequest {
        method: parts.method,
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        authorization: parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
        body,
    };
    match entry.handler {
        Handler::Quick(handler) => handler(&api, &request).into_response(),
        Handler::Waits(handler) => handler(api, request).await.into_response(),
        Handler::Blocking(handler) => {
            match tokio::task::spawn_blocking(move || handler(&api, &request)).await {
                Ok(reply) => reply.into_response(),
                Err(error) => {
                    tracing::error!(%error, "an HTTP handler failed");
                    Reply::error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal error while handling the request",
                    )
                    .into_response()
                }
            }
        }
    }
}

/// The [`ROUTES`] entry of `which` server for `method` on `path` (what the server's router
/// picks; `None` where it answers 404 or 405).
pub fn lookup(which: Port, method: &Method, path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|entry| {
        entry.servers.serves(which)
            && (entry.method == *method || (*method == Method::HEAD && entry.method == Method::GET))
            && match entry.path.strip_suffix("{*filename}") {
                Some(prefix) => path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| !rest.is_empty()),
                None => entry.path == path,
            }
    })
}

/// Answers one request that passed the method, authentication and body checks, by its
/// [`lookup`] entry (404 when none; for tests that call handlers without a server).
pub fn route(api: &Api, which: Port, request: &ApiRequest) -> Reply {
    match lookup(which, &request.method, &request.path).map(|entry| entry.handler) {
        Some(Handler::Quick(handler) | Handler::Blocking(handler)) => handler(api, request),
        Some(Handler::Waits(_)) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "this route waits on I/O: call it through the server (or its handler in a runtime)",
        ),
        None => Reply::empty(StatusCode::NOT_FOUND),
    }
}

/// 412 with upstream's message.
pub fn wrong_status(status: ComputeStatus) -> Reply {
    Reply::error(
        StatusCode::PRECONDITION_FAILED,
        format!("invalid compute status: {}", status.label()),
    )
}
