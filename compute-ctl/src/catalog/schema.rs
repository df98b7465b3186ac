//! `GET /database_schema?database=<name>`: the database's `pg_dump --schema-only`
//! ([`pg_catalog::schema`]), streamed as the response body.

use bytes::Bytes;
use compute_spec::ComputeDocument;
use pg_catalog::dump::{Gone, Limits, Sink, CHUNKS_IN_FLIGHT};
use pg_catalog::schema::SchemaError;

use super::PG_DUMP_LIMITS;
#[cfg(test)]
use super::{PG_DUMP_DEADLINE, PG_DUMP_IDLE};
use crate::api::Api;
use compute_http::body::{body_channel, BodySender};
use compute_http::extract::query;
use compute_http::{ApiRequest, Rejection, Reply};
use hyper::StatusCode;

/// The dump's output goes out as the response body: dropping the sender ends it with the
/// terminating chunk, a failure ends the connection without it (see [`compute_http::body`]).
struct BodySink(BodySender);

impl Sink for BodySink {
    fn send(&self, chunk: Vec<u8>) -> Result<(), Gone> {
        self.0.send(Bytes::from(chunk)).map_err(|_| Gone)
    }

    fn fail(&self, why: String) {
        self.0.fail(why);
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// The query of `GET /database_schema`.
#[derive(Debug, serde::Deserialize)]
struct SchemaQuery {
    database: String,
}

/// `GET /database_schema?database=<name>` (external, authenticated, any status): the
/// database's `pg_dump --schema-only`, 200 with upstream's `Content-Type: application/json`
/// (sic) as soon as pg_dump writes, the SQL streamed; 404 when the database does not exist;
/// 500 otherwise.
pub fn database_schema(api: &Api, request: &ApiRequest) -> Reply {
    let SchemaQuery { database } = match query(request.query.as_deref(), Rejection::Lower) {
        Ok(parsed) => parsed,
        Err(reply) => return reply,
    };
    let document = api.shared.lock().document.clone();
    let Some(document) = document else {
        return Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "unexpected I/O error: the compute has no document yet",
        );
    };
    dump_schema(&document, &database, PG_DUMP_LIMITS)
}

fn dump_schema(document: &ComputeDocument, database: &str, limits: Limits) -> Reply {
    let (sender, rest) = body_channel(CHUNKS_IN_FLIGHT);
    match pg_catalog::schema::dump_schema(document, database, limits, BodySink(sender)) {
        // As upstream, the 200 goes out with the first chunk. Unlike upstream, a pg_dump
        // failing later ends the chunked body without its terminating chunk, so the client
        // sees an incomplete body, never a complete 200 (README, compatibility table).
        Ok(first) => Reply::streaming(StatusCode::OK, "application/json".into(), first, rest),
        Err(SchemaError::NoSuchDatabase { .. }) => {
            Reply::error(StatusCode::NOT_FOUND, "database does not exist")
        }
        Err(SchemaError::Exited { status, stderr }) => {
            tracing::error!(database, %status, %stderr, "pg_dump failed");
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to execute pg_dump",
            )
        }
        Err(SchemaError::Failed(error)) => {
            tracing::error!(database, %error, "pg_dump failed");
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to execute pg_dump: {error}"),
            )
        }
    }
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
