//! Remote extensions in compute-ctl: the `POST /extension_server/{filename}` adapter (Postgres
//! asks for a missing file) and `compute_ctl_remote_ext_requests_total`. The work is
//! [`pg_extensions_fetch::on_demand`]'s (`Api::remote_ext`), the library the
//! `pg-extensions-fetch` stage runs before Postgres starts; `POST /extensions` downloads
//! through it too (`catalog::extensions`).

use compute_http::extract::query;
use compute_http::{ApiRequest, Rejection, Reply};
use hyper::StatusCode;
use pg_extensions_fetch::on_demand::{OnDemand, OnDemandError};
use stage_kit::prom::{Kind, Text};

use crate::api::Api;

/// `POST /extension_server/{filename}[?is_library=true]`: 412 without `-r`, 409 without
/// `remote_extensions` in the current spec, 404 for a name the spec does not allow
/// (upstream's text), 500 for a failed download or unpack, 200 (empty) once the files are in
/// place.
pub fn extension_server(api: &Api, request: &ApiRequest) -> Reply {
    /// The query of `POST /extension_server/{*filename}`.
    #[derive(serde::Deserialize)]
    struct ExtensionQuery {
        #[serde(default)]
        is_library: bool,
    }
    let is_library = match query::<ExtensionQuery>(request.query.as_deref(), Rejection::Lower) {
        Ok(ExtensionQuery { is_library }) => is_library,
        Err(reply) => return reply,
    };
    let filename = extension_file(&request.path).unwrap_or_default();
    let document = api.shared.lock().document.clone();
    match api
        .remote_ext
        .serve(document.as_ref(), filename, is_library)
    {
        Ok(_) => Reply::empty(StatusCode::OK),
        Err(error @ OnDemandError::NotConfigured) => {
            Reply::error(StatusCode::PRECONDITION_FAILED, error)
        }
        Err(error @ OnDemandError::Unavailable) => Reply::error(StatusCode::CONFLICT, error),
        Err(OnDemandError::NotAllowed(error)) => Reply::error(StatusCode::NOT_FOUND, error),
        Err(OnDemandError::Fetch { extension, error }) => {
            tracing::error!(%filename, %extension, %error, "extension download failed");
            let status = StatusCode::from_u16(error.http_status())
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Reply::error(status, error)
        }
    }
}

/// The file name of `/extension_server/{*filename}`.
pub fn extension_file(path: &str) -> Option<&str> {
    path.strip_prefix("/extension_server/")
        .filter(|name| !name.is_empty())
}

/// `compute_ctl_remote_ext_requests_total{filename, http_status}` (absent until a download
/// was tried, as upstream drops empty families).
pub fn render_metrics(remote_ext: &OnDemand) -> String {
    let requests = remote_ext.requests();
    let mut text = Text::new();
    if requests.is_empty() {
        return text.finish();
    }
    let mut family = text.family(
        "compute_ctl_remote_ext_requests_total",
        Kind::Counter,
        "Total number of requests made by compute_ctl to download extensions from S3 proxy \
         by status",
    );
    for (filename, status, count) in requests {
        family.sample(&[("filename", &filename), ("http_status", &status)], count);
    }
    text.finish()
}
