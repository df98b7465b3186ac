//! `GET /database_schema`, `POST /grants` and `POST /extensions` (upstream's `catalog.rs`,
//! `set_role_grants` and `install_extension`): one module per route, and the connection and
//! status helpers they share.
//!
//! Every name and literal that reaches SQL goes through [`compute_spec::quote`]; values are
//! read back with bind parameters; `pg_dump` gets the database through `PGDATABASE`, which
//! libpq never expands as a connection string. Request bodies are decoded by
//! [`crate::http::parse_json_in`] into the typed requests ([`GrantsRequest`],
//! [`ExtensionRequest`]), with serde's messages in their original case (see
//! [`crate::http::Rejection::AsWritten`]).

mod dump;
mod extensions;
mod grants;
mod schema;

use compute_spec::ComputeDocument;
use serde::de::DeserializeOwned;
use stage_kit::local::pg_error_text;

use crate::http::{parse_json_in, Api, ApiRequest, Rejection, Reply};
use crate::routes::wrong_status;
use crate::state::ComputeStatus;
use hyper::StatusCode;

pub use dump::Limits;
pub use extensions::{extensions, install_extension, ExtensionRequest};
pub use grants::{grants, set_role_grants, GrantsRequest, Privilege};
pub use schema::{database_schema, PG_DUMP_DEADLINE, PG_DUMP_IDLE, PG_DUMP_LIMITS};

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
fn apply_request<R: DeserializeOwned>(
    api: &Api,
    request: &ApiRequest,
    apply: impl FnOnce(&ComputeDocument, &R) -> Result<Option<String>, String>,
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

/// Runs one statement; returns it (what the change functions report having run).
fn execute(client: &mut postgres::Client, statement: String) -> Result<Option<String>, String> {
    client
        .batch_execute(&statement)
        .map_err(|error| pg_error_text(&error))?;
    Ok(Some(statement))
}

/// An admin connection to `database` of the compute's Postgres.
fn connect(
    document: &ComputeDocument,
    application_name: &str,
    database: &str,
) -> Result<postgres::Client, String> {
    let config =
        stage_kit::local::admin_config(document, crate::STAGE, application_name, Some(database))
            .map_err(|error| error.message)?;
    config.connect(postgres::NoTls).map_err(|error| {
        format!(
            "connecting to database {database:?}: {}",
            pg_error_text(&error)
        )
    })
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
