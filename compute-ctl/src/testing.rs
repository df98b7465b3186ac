//! Test helpers shared by the route modules' unit tests: an [`Api`] around a document
//! that points at a test server, requests and reply bodies.

use std::path::Path;
use std::sync::Arc;

use compute_spec::ComputeDocument;
use serde_json::{json, Value};

use crate::api::Api;
use crate::state::{ComputeStatus, Shared};
use compute_http::ApiRequest;

/// A document for a Postgres on `socket_dir`/`port` run from `bin_dir`.
pub fn document(
    bin_dir: &Path,
    pgdata: &Path,
    socket_dir: &Path,
    port: u16,
    spec: Value,
) -> ComputeDocument {
    serde_json::from_value(json!({
        "document_version": 1,
        "spec": spec,
        "pgdata": pgdata,
        "pgbin": bin_dir.join("postgres"),
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": port, "socket_dir": socket_dir},
    }))
    .unwrap()
}

/// A minimal valid spec.
pub fn spec(extra: Value) -> Value {
    let mut spec = json!({
        "format_version": 1.0,
        "suspend_timeout_seconds": 0,
        "cluster": {"roles": [], "databases": []},
    });
    if let (Some(spec), Value::Object(extra)) = (spec.as_object_mut(), extra) {
        spec.extend(extra);
    }
    spec
}

/// An API whose compute has `document` and is `running` when `running`.
pub fn api(document: Option<ComputeDocument>, running: bool) -> Api {
    let shared = Arc::new(Shared::new());
    shared.update(|inner| inner.document = document);
    if running {
        shared.transition(ComputeStatus::Init).unwrap();
        shared.transition(ComputeStatus::Running).unwrap();
    }
    let (wake, _) = std::sync::mpsc::channel();
    Api {
        shared,
        wake,
        compute_id: None,
        auth: Arc::new(compute_http::auth::Auth::Open),
        deadlines: compute_http::Deadlines::default(),
        lfc: Arc::default(),
        ext_stats: Arc::default(),
        promotion: Arc::default(),
        remote_ext: Arc::default(),
        ready: Arc::default(),
    }
}

/// An API for a test server.
pub fn api_for(server: &pg_test_support::TestPostgres, running: bool) -> Api {
    api(
        Some(document(
            server.bin_dir(),
            server.data_dir(),
            server.socket_dir(),
            server.port(),
            spec(json!({})),
        )),
        running,
    )
}

/// A request.
pub fn request(method: hyper::Method, path: &str, query: &str, body: &[u8]) -> ApiRequest {
    ApiRequest {
        method,
        path: path.to_string(),
        query: Some(query.to_string()),
        authorization: None,
        traceparent: None,
        body: body.to_vec(),
    }
}

/// The reply's body as JSON.
pub fn body(reply: &compute_http::Reply) -> Value {
    serde_json::from_slice(&reply.body)
        .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&reply.body)))
}

/// An API whose compute has no document and is `empty`.
pub fn api_for_nothing() -> Api {
    api(None, false)
}

/// The shared state of a `running` compute whose spec has the `extra` fields (a compute
/// without a document for `None`); the document points at nothing real.
pub fn shared_with(extra: Option<Value>) -> Arc<Shared> {
    let document = extra.map(|extra| {
        document(
            Path::new("/usr/bin"),
            Path::new("/nonexistent"),
            Path::new("/tmp"),
            5432,
            spec(extra),
        )
    });
    api(document, true).shared
}
