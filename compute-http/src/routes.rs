//! The route table machinery: a table is a list of [`Route`]s (path, method, servers, who
//! may call it, what it reads from the body, and its [`Handler`]), and [`router`] builds a
//! server's axum router from it, so a path cannot be served without a handler or a handler
//! left without a path. Unknown paths (404, empty) and methods (405 with `Allow`, before
//! authentication) are axum's routing answers, as upstream.
//!
//! Each entry's handler sits behind the layers its entry asks for, in upstream's order
//! ([`crate::checks`]): authentication (a [`Access::Token`] route on the external server),
//! the `Content-Type` of a JSON body (415), the body (limit 413, deadline 408); then it runs
//! as its [`Handler`] kind says: at once, on the runtime's bounded blocking pool (a handler
//! that talks to Postgres only while one of the server's [`SQL_HANDLERS`] slots is free), or
//! as a task that waits on I/O. The handlers share one state `S`, a [`Context`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::handler::Handler as _;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::Router;
use http_body_util::BodyExt;
use hyper::header::AUTHORIZATION;
use hyper::{Method, StatusCode};
use tokio::sync::Semaphore;
use tower::ServiceBuilder;

use crate::auth::Auth;
use crate::checks;
use crate::reply::{ApiRequest, Rejection, Reply};
use crate::server::{Port, SQL_HANDLERS};

/// What the checks in front of a table's handlers need from the handlers' shared state.
pub trait Context: Clone + Send + Sync + 'static {
    /// The external server's authentication, fixed at start.
    fn auth(&self) -> &Auth;
    /// The compute's id (`-i`), which a token's `compute_id` claim must name.
    fn compute_id(&self) -> Option<&str>;
    /// The deadline for a whole request body.
    fn body_deadline(&self) -> Duration;
}

/// An answer still to come.
pub type Pending = Pin<Box<dyn Future<Output = Reply> + Send>>;

/// A handler: the request, read whole, to the answer, by how it waits.
pub enum Handler<S> {
    /// Answers at once (state, counters): runs on the server's thread.
    Quick(fn(&S, &ApiRequest) -> Reply),
    /// May block (child processes, waits on the controller): runs on the runtime's bounded
    /// blocking pool ([`crate::server`]).
    Blocking(fn(&S, &ApiRequest) -> Reply),
    /// Talks to Postgres (SQL sessions, `pg_dump`, `pg_isready`): on the blocking pool too,
    /// but at most [`SQL_HANDLERS`] at once per server — one more is answered 503 at once —
    /// so a stuck or lock-blocked Postgres holds at most that many of the pool's threads, and
    /// the [`Handler::Blocking`] routes (`/terminate`, `/configure`) always find one.
    Sql(fn(&S, &ApiRequest) -> Reply),
    /// Waits on I/O without a thread (a relay over a socket): a task on the runtime.
    Waits(fn(S, ApiRequest) -> Pending),
}

impl<S> Clone for Handler<S> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<S> Copy for Handler<S> {}

impl<S> fmt::Debug for Handler<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Handler::Quick(_) => "Quick",
            Handler::Blocking(_) => "Blocking",
            Handler::Sql(_) => "Sql",
            Handler::Waits(_) => "Waits",
        })
    }
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
pub struct Route<S> {
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
    pub handler: Handler<S>,
}

/// A table entry: `path` and `method` on `servers`, called with `access`, reading `body`,
/// answered by `handler`.
pub const fn at<S>(
    path: &'static str,
    method: Method,
    servers: Servers,
    access: Access,
    body: BodyKind,
    handler: Handler<S>,
) -> Route<S> {
    Route {
        path,
        method,
        servers,
        access,
        body,
        handler,
    }
}

/// The router of `which` server: every entry of `routes` it serves, each method of a path
/// on that path's one method router (so axum answers 405 with their `Allow`), each handler
/// behind the layers its entry asks for ([`crate::checks`]), all sharing `state`.
pub fn router<S: Context>(routes: &'static [Route<S>], state: &S, which: Port) -> Router {
    let sql = Arc::new(Semaphore::new(SQL_HANDLERS));
    let mut paths: Vec<(&'static str, MethodRouter<S>)> = Vec::new();
    for entry in routes.iter().filter(|entry| entry.servers.serves(which)) {
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
                (state.clone(), token),
                checks::authenticate::<S>,
            ))
            .layer(from_fn_with_state(json, checks::json_content_type))
            .layer(from_fn_with_state(
                state.body_deadline(),
                checks::buffer_body,
            ));
        let sql = sql.clone();
        let handler =
            move |State(state): State<S>, request: Request| answer(state, entry, sql, request);
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
        .with_state(state.clone())
}

/// Runs `entry`'s handler on a request that passed its checks (its body buffered); a
/// [`Handler::Sql`] one only with one of `sql`'s permits.
async fn answer<S: Context>(
    state: S,
    entry: &'static Route<S>,
    sql: Arc<Semaphore>,
    request: Request,
) -> Response {
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
        traceparent: parts
            .headers
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
        body,
    };
    match entry.handler {
        Handler::Quick(handler) => handler(&state, &request).into_response(),
        Handler::Waits(handler) => handler(state, request).await.into_response(),
        Handler::Blocking(handler) => blocking(move || handler(&state, &request)).await,
        Handler::Sql(handler) => {
            let Ok(permit) = sql.try_acquire_owned() else {
                return Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{SQL_HANDLERS} requests to Postgres are in flight already; try again later"
                    ),
                )
                .into_response();
            };
            blocking(move || {
                let reply = handler(&state, &request);
                drop(permit);
                reply
            })
            .await
        }
    }
}

/// Runs `handler` on the runtime's blocking pool.
async fn blocking(handler: impl FnOnce() -> Reply + Send + 'static) -> Response {
    match tokio::task::spawn_blocking(handler).await {
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

/// The entry of `routes` that `which` server's router picks for `method` on `path` (`None`
/// where it answers 404 or 405).
pub fn lookup<S>(
    routes: &'static [Route<S>],
    which: Port,
    method: &Method,
    path: &str,
) -> Option<&'static Route<S>> {
    routes.iter().find(|entry| {
        entry.servers.serves(which)
            && (entry.method == *method || (*method == Method::HEAD && entry.method == Method::GET))
            && match entry.path.split_once("{*") {
                Some((prefix, _)) => path
                    .strip_prefix(prefix)
                    .is_some_and(|rest| !rest.is_empty()),
                None => entry.path == path,
            }
    })
}

/// Answers one request that passed the method, authentication and body checks, by its
/// [`lookup`] entry (404 when none; for tests that call handlers without a server).
pub fn route<S>(
    routes: &'static [Route<S>],
    state: &S,
    which: Port,
    request: &ApiRequest,
) -> Reply {
    match lookup(routes, which, &request.method, &request.path).map(|entry| entry.handler) {
        Some(Handler::Quick(handler) | Handler::Blocking(handler) | Handler::Sql(handler)) => {
            handler(state, request)
        }
        Some(Handler::Waits(_)) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "this route waits on I/O: call it through the server (or its handler in a runtime)",
        ),
        None => Reply::empty(StatusCode::NOT_FOUND),
    }
}
