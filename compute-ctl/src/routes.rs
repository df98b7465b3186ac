//! The top of the wiring: the one route table ([`ROUTES`]: upstream's paths, methods,
//! servers and authentication, plus our `/healthz` and `/readyz`), each entry with its
//! handler and how it waits. Both servers' axum routers are built from it ([`router`], by
//! [`compute_http::routes::router`]), so a path cannot be served without a handler or a
//! handler left without a path; unknown paths (404, empty) and methods (405 with `Allow`,
//! before authentication) are axum's routing answers, as upstream.

use compute_http::routes::{self, at, Access, BodyKind, Handler, Route, Servers};
use compute_http::{ApiRequest, Port, Reply};
use hyper::{Method, StatusCode};

use crate::api::Api;
use crate::{catalog, control, lfc, probes, promote, remote_ext, sql};

use Access::{Open, Token};
use BodyKind::{Any, Json, JsonPlainText};
use Handler::{Blocking, Quick, Sql, Waits};
use Servers::{Both, External, Internal};

const GET: Method = Method::GET;
const POST: Method = Method::POST;
const DELETE: Method = Method::DELETE;

/// Every route of both servers. The methods of one path are listed in the order of their
/// `Allow` header (GET brings HEAD right after it).
#[rustfmt::skip]
pub const ROUTES: &[Route<Api>] = &[
    // Ours on both servers, never authenticated: probes and scrapers.
    at("/healthz", GET, Both, Open, Any, Quick(healthz)),
    at("/readyz", GET, Both, Open, Any, Waits(|api, _| Box::pin(sql::readyz(api)))),
    at("/metrics", GET, Both, Open, Any, Quick(metrics)),
    // Authenticated on the external server; open on the internal one (loopback).
    at("/status", GET, Both, Token, Any, Quick(status)),
    at("/metrics.json", GET, Both, Token, Any, Quick(metrics_json)),
    at("/autoscaling_metrics", GET, External, Open, Any,
        Waits(|api, _| Box::pin(probes::autoscaling_metrics(api)))),
    at("/configure", POST, External, Token, Json,
        Blocking(|api, request| traced("POST /configure", request, || control::configure(api, &request.body)))),
    at("/terminate", POST, External, Token, Any,
        Blocking(|api, request| traced("POST /terminate", request, || control::terminate(api, request.query.as_deref())))),
    at("/check_writability", POST, External, Token, Any,
        Sql(|api, _| sql::check_writability(api))),
    at("/dbs_and_roles", GET, External, Token, Any, Sql(|api, _| sql::dbs_and_roles(api))),
    at("/insights", GET, External, Token, Any, Sql(|api, _| sql::insights(api))),
    at("/database_schema", GET, External, Token, Any, Sql(catalog::database_schema)),
    at("/hadron_liveness_probe", GET, External, Token, Any,
        Sql(|api, _| probes::hadron_liveness_probe(api))),
    at("/promote", POST, External, Token, JsonPlainText,
        Sql(|api, request| traced("POST /promote", request, || promote::promote(api, request)))),
    at("/lfc/prewarm", GET, External, Token, Any, Blocking(|api, _| lfc::get_prewarm(&api.lfc))),
    at("/lfc/prewarm", POST, External, Token, Any,
        Blocking(|api, request| lfc::post_prewarm(&api.lfc, &api.shared, request))),
    at("/lfc/prewarm", DELETE, External, Token, Any,
        Blocking(|api, _| lfc::delete_prewarm(&api.lfc))),
    at("/lfc/offload", GET, External, Token, Any, Blocking(|api, _| lfc::get_offload(&api.lfc))),
    at("/lfc/offload", POST, External, Token, Any,
        Blocking(|api, _| lfc::post_offload(&api.lfc, &api.shared))),
    // Postgres's own callers, on the internal server.
    at("/extensions", POST, Internal, Open, Json, Sql(catalog::extensions)),
    at("/grants", POST, Internal, Open, Json, Sql(catalog::grants)),
    at("/refresh_configuration", POST, Internal, Open, Any,
        Quick(|api, _| control::refresh_configuration(api))),
    at("/extension_server/{*filename}", POST, Internal, Open, Any,
        Blocking(remote_ext::extension_server)),
];

/// `handler`'s answer inside a server span (`compute_trace::process::serve`).
fn traced(name: &str, request: &ApiRequest, handler: impl FnOnce() -> Reply) -> Reply {
    let status = |reply: &Reply| reply.status.as_u16();
    compute_trace::process::serve(name, request.traceparent.as_deref(), handler, status)
}

fn healthz(_: &Api, _: &ApiRequest) -> Reply {
    Reply::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))
}

fn status(api: &Api, _: &ApiRequest) -> Reply {
    Reply::json(StatusCode::OK, &api.shared.lock().status_body())
}

fn metrics_json(api: &Api, _: &ApiRequest) -> Reply {
    Reply::json(StatusCode::OK, &api.shared.lock().metrics_json())
}

fn metrics(api: &Api, _: &ApiRequest) -> Reply {
    let mut text = crate::metrics::render(&api.shared.lock());
    text.push_str(&crate::ext_stats::render_metrics(&api.ext_stats));
    text.push_str(&crate::lfc::render_metrics(&api.lfc));
    text.push_str(&crate::remote_ext::render_metrics(&api.remote_ext));
    text.push_str(&compute_trace::process::render_metrics("compute_ctl"));
    Reply::text(StatusCode::OK, "text/plain; version=0.0.4", text)
}

/// The router of `which` server, from [`ROUTES`].
pub fn router(api: &Api, which: Port) -> axum::Router {
    routes::router(ROUTES, api, which)
}

/// The [`ROUTES`] entry of `which` server for `method` on `path` (what the server's router
/// picks; `None` where it answers 404 or 405).
pub fn lookup(which: Port, method: &Method, path: &str) -> Option<&'static Route<Api>> {
    routes::lookup(ROUTES, which, method, path)
}

/// Answers one request that passed the method, authentication and body checks, by its
/// [`lookup`] entry (404 when none; for tests that call handlers without a server).
pub fn route(api: &Api, which: Port, request: &ApiRequest) -> Reply {
    routes::route(ROUTES, api, which, request)
}
