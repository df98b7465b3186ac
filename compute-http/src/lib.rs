//! compute-http: the compute's HTTP transport, which knows no handler and no feature.
//! compute-ctl builds its two servers' routers from its one route table with it and hands
//! them to [`serve`].
//!
//! * [`server`]: [`serve`] a router on hyper's HTTP/1.1 connections behind our accept loop:
//!   the connection cap, the header, body and write deadlines, request ids, the request log
//!   and the in-flight count; [`Port`] names the server (external or internal). `slots`:
//!   the cap's bookkeeping — at the cap the connection waiting longest without a request in
//!   flight is closed to make room (503 only when none is), so idle or stalled clients
//!   cannot starve the probes.
//! * [`routes`]: the route table machinery — a [`routes::Route`] per path and method (its
//!   servers, who may call it, what it reads from the body, its handler and how that waits)
//!   and [`routes::router`], which builds a server's axum router from a table.
//! * [`checks`]: the layers in front of each handler, in upstream's order: authentication,
//!   the JSON `Content-Type` (415), the body limit (413) and deadline (408).
//! * [`auth`]: the JWT key set and token rules; a refusal is a [`auth::Refused`] error (its
//!   status and upstream's text), which [`checks`] turns into the reply.
//! * [`reply`], [`extract`], [`body`]: what a handler reads and answers ([`ApiRequest`],
//!   [`Reply`]), JSON bodies and query strings decoded by axum's own extractors (so the
//!   rejection texts are upstream's, [`Rejection`]), streamed bodies.
//! * [`unix_client`]: one `GET` to a server on a Unix socket, with deadlines and a cap.
//! * [`shared_check`]: a probe's check shared by concurrent callers, its result cached.
//!
//! Invariants: every connection has deadlines and the connection count is capped, and a
//! connection with a request in flight is never closed to make room; the order
//! of checks is 404, 405 (both axum's, before authentication), authentication, 415, body;
//! handlers that may block run on the runtime's bounded blocking pool, so quick routes never
//! wait on them, and those that talk to Postgres hold at most half of it (503 beyond), so
//! the others (`/terminate`) never queue behind SQL. Depends on no other package of the workspace.

pub mod auth;
pub mod body;
pub mod checks;
pub mod extract;
pub mod reply;
pub mod routes;
pub mod server;
pub mod shared_check;
mod slots;
pub mod unix_client;
mod write_deadline;

pub use reply::{parse_json, parse_json_in, ApiRequest, Rejection, Reply};
pub use server::{
    serve, Deadlines, Port, ServeError, BODY_TIMEOUT, HEADER_TIMEOUT, MAX_BODY, MAX_CONNECTIONS,
    MAX_HEADERS, MAX_HEADER_BYTES, SQL_HANDLERS, WRITE_TIMEOUT,
};
