//! `GET /database_schema`, `POST /grants` and `POST /extensions` (upstream's `catalog.rs`,
//! `set_role_grants` and `install_extension`): the HTTP adapters of [`pg_catalog`], one
//! module per route. Each decodes the request, calls the crate, and maps its result or
//! error to upstream's status and body.
//!
//! Request bodies are decoded by [`compute_http::parse_json_in`] into the crate's typed
//! requests ([`GrantsRequest`], [`ExtensionRequest`]; [`ParseBody::parse`]), with serde's
//! messages in their original case (see [`compute_http::Rejection::AsWritten`]).

mod extensions;
mod grants;
mod schema;

use std::fmt::Display;

use compute_spec::ComputeDocument;
use serde::de::DeserializeOwned;

use crate::api::wrong_status;
use crate::api::Api;
use crate::state::ComputeStatus;
use compute_http::{parse_json_in, ApiRequest, Rejection, Reply};
use hyper::StatusCode;

pub use extensions::extensions;
pub use grants::grants;
pub use pg_catalog::dump::Limits;
pub use pg_catalog::schema::{PG_DUMP_DEADLINE, PG_DUMP_IDLE, PG_DUMP_LIMITS};
pub use pg_catalog::{
    install_extension, set_role_grants, ExtensionRequest, GrantsRequest, Privilege,
};
pub use schema::database_schema;

/// A request body of the catalog routes, read as upstream's extractor reads it.
pub trait ParseBody: DeserializeOwned {
    /// Reads a body; the reply is upstream's rejection (400 syntax, 422 shape).
    fn parse(body: &[u8]) -> Result<Self, Reply> {
        parse_json_in(body, Rejection::AsWritten)
    }
}

impl ParseBody for GrantsRequest {}
impl ParseBody for ExtensionRequest {}

/// The compute's document when it is `running`; upstream's 412 otherwise.
pub fn running_document(api: &Api) -> Result<ComputeDocument, Reply> {
    let inner = api.shared.lock();
    let status = inner.status();
    if status != ComputeStatus::Running {
        return Err(wrong_status(status));
    }
    inner.document.clone().ok_or_else(|| {
        Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the compute is running without a document",
        )
    })
}

/// The shape of `POST /grants` and `POST /extensions`: the body decoded first (as upstream's
/// extractor runs before the handler checks the status), then 412 unless `running`, then
/// `apply`; `created`'s 201 on success, else 500 `<failure>: <message>`.
fn apply_request<R: DeserializeOwned, E: Display>(
    api: &Api,
    request: &ApiRequest,
    apply: impl FnOnce(&ComputeDocument, &R) -> Result<Option<String>, E>,
    created: impl FnOnce(&R) -> Reply,
    failure: &str,
) -> Reply {
    let parsed: R = match parse_json_in(&request.body, Rejection::AsWritten) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let document = match running_document(api) {
        Ok(document) => document,
        Err(reply) => return reply,
    };
    match apply(&document, &parsed) {
        Ok(_) => created(&parsed),
        Err(message) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{failure}: {message}"),
        ),
    }
}

/// Fixtures of the route modules' tests.
#[cfg(test)]
mod fixtures {
    use pg_test_support::TestPostgres;

    /// A name that would break out of any unquoted or badly quoted context.
    pub const NASTY: &str = "x\"; DROP TABLE public.canary; --\n' ; SELECT 1; \\";

    /// Whether `public.canary` (which [`NASTY`] would drop) still exists.
    pub fn canary_present(server: &TestPostgres, database: &str) -> bool {
        server
            .client_for(database)
            .query_one("SELECT to_regclass('public.canary') IS NOT NULL", &[])
            .unwrap()
            .get(0)
    }
}
