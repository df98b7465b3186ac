//! The route table (upstream's paths, methods, ports and authentication, plus our
//! `/healthz` and `/readyz`) and the dispatch to the handlers.

use hyper::Method;

use crate::http::{Api, ApiRequest, Port, Reply};
use crate::state::ComputeStatus;

/// One path on one server.
#[derive(Clone, Copy, Debug)]
pub struct Route {
    /// Accepted methods (HEAD is implied by GET).
    pub methods: &'static [Method],
    /// Needs a token on the external server.
    pub authenticated: bool,
    /// The body is JSON (415 without `Content-Type: application/json`).
    pub json_body: bool,
    /// The handler may block (SQL, child processes, waits): run it on the blocking pool.
    pub blocking: bool,
}

impl Route {
    /// Whether `method` is accepted (HEAD wherever GET is).
    pub fn accepts(&self, method: &Method) -> bool {
        self.methods.contains(method)
            || (method == Method::HEAD && self.methods.contains(&Method::GET))
    }

    /// The `Allow` header of a 405 (`GET,HEAD,POST`).
    pub fn allow(&self) -> String {
        let mut names = Vec::new();
        for method in self.methods {
            names.push(method.as_str());
            if method == Method::GET {
                names.push("HEAD");
            }
        }
        names.join(",")
    }
}

const GET: &[Method] = &[Method::GET];
const POST: &[Method] = &[Method::POST];

const fn entry(
    methods: &'static [Method],
    authenticated: bool,
    json_body: bool,
    blocking: bool,
) -> Route {
    Route {
        methods,
        authenticated,
        json_body,
        blocking,
    }
}

/// The route for `path` on `which` server; `None` answers 404.
pub fn lookup(which: Port, path: &str) -> Option<Route> {
    const LFC_PREWARM: &[Method] = &[Method::GET, Method::POST, Method::DELETE];
    const LFC_OFFLOAD: &[Method] = &[Method::GET, Method::POST];
    let found = match (which, path) {
        // Ours on both servers, never authenticated: probes and scrapers.
        (_, "/healthz") => entry(GET, false, false, false),
        (_, "/readyz") => entry(GET, false, false, true),
        (_, "/metrics") => entry(GET, false, false, false),
        // Ours on the internal server (loopback): the status without a token.
        (Port::Internal, "/status" | "/metrics.json") => entry(GET, false, false, false),
        (Port::External, "/status" | "/metrics.json") => entry(GET, true, false, false),
        (Port::External, "/autoscaling_metrics") => entry(GET, false, false, true),
        (Port::External, "/configure") => entry(POST, true, true, true),
        (Port::External, "/terminate") => entry(POST, true, false, true),
        (Port::External, "/check_writability") => entry(POST, true, false, true),
        (Port::External, "/dbs_and_roles" | "/insights" | "/database_schema") => {
            entry(GET, true, false, true)
        }
        (Port::External, "/hadron_liveness_probe") => entry(GET, true, false, true),
        (Port::External, "/promote") => entry(POST, true, true, true),
        (Port::External, "/lfc/prewarm") => entry(LFC_PREWARM, true, false, true),
        (Port::External, "/lfc/offload") => entry(LFC_OFFLOAD, true, false, true),
        (Port::Internal, "/extensions" | "/grants") => entry(POST, false, true, true),
        (Port::Internal, "/refresh_configuration") => entry(POST, false, false, false),
        (Port::Internal, path) if extension_file(path).is_some() => entry(POST, false, false, true),
        _ => return None,
    };
    Some(found)
}

/// The file name of `/extension_server/{*filename}`.
pub fn extension_file(path: &str) -> Option<&str> {
    path.strip_prefix("/extension_server/")
        .filter(|name| !name.is_empty())
}

/// Answers one request that passed the method, authentication and body checks.
pub fn route(api: &Api, which: Port, request: &ApiRequest) -> Reply {
    let path = request.path.as_str();
    let method = &request.method;
    match path {
        "/status" => Reply::json(200, &api.shared.lock().status_body()),
        "/metrics.json" => Reply::json(200, &api.shared.lock().metrics_json()),
        "/metrics" => {
            let mut text = crate::metrics::render(&api.shared.lock());
            text.push_str(&api.lfc.render_metrics());
            text.push_str(&api.remote_ext.render_metrics());
            Reply::text(200, "text/plain; version=0.0.4", text)
        }
        "/healthz" => Reply::json(200, &serde_json::json!({"status": "ok"})),
        "/readyz" => crate::sql::readyz(api),
        "/configure" => crate::control::configure(api, &request.body),
        "/terminate" => crate::control::terminate(api, request.query.as_deref()),
        "/refresh_configuration" => crate::control::refresh_configuration(api),
        "/dbs_and_roles" => crate::sql::dbs_and_roles(api),
        "/check_writability" => crate::sql::check_writability(api),
        "/insights" => crate::sql::insights(api),
        "/database_schema" => crate::catalog::database_schema(api, request),
        "/grants" => crate::catalog::grants(api, request),
        "/extensions" => crate::catalog::extensions(api, request),
        "/hadron_liveness_probe" => crate::probes::hadron_liveness_probe(api),
        "/autoscaling_metrics" => crate::probes::autoscaling_metrics(api),
        "/lfc/prewarm" => match *method {
            Method::POST => crate::lfc::post_prewarm(&api.lfc, &api.shared, request),
            Method::DELETE => crate::lfc::delete_prewarm(&api.lfc),
            _ => crate::lfc::get_prewarm(&api.lfc),
        },
        "/lfc/offload" => match *method {
            Method::POST => crate::lfc::post_offload(&api.lfc, &api.shared),
            _ => crate::lfc::get_offload(&api.lfc),
        },
        "/promote" => crate::promote::promote(api, request),
        _ if which == Port::Internal && extension_file(path).is_some() => {
            crate::control::extension_server(
                api,
                extension_file(path).unwrap_or_default(),
                request.query.as_deref(),
            )
        }
        _ => Reply::empty(404),
    }
}

/// 412 with upstream's message.
pub fn wrong_status(status: ComputeStatus) -> Reply {
    Reply::error(412, format!("invalid compute status: {}", status.label()))
}
