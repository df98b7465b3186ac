//! `GET /database_schema?database=<name>`: the database's `pg_dump --schema-only`, streamed
//! ([`super::dump`]).

use std::process::Command;
use std::time::Duration;

use compute_spec::ComputeDocument;

use super::dump::{self, Head, Limits};
use crate::extract::query;
use crate::http::{Api, ApiRequest, Rejection, Reply};
use hyper::StatusCode;

/// pg_dump is killed when its output stays silent this long (before the first byte, between
/// chunks, or before it exits).
pub const PG_DUMP_IDLE: Duration = Duration::from_secs(60);

/// pg_dump is killed when the whole dump runs longer than this.
pub const PG_DUMP_DEADLINE: Duration = Duration::from_secs(30 * 60);

/// The limits of a dump started by the route.
pub const PG_DUMP_LIMITS: Limits = Limits {
    idle: PG_DUMP_IDLE,
    total: PG_DUMP_DEADLINE,
};

/// `GET /database_schema?database=<name>` (external, authenticated, any status): the
/// database's `pg_dump --schema-only`, 200 with upstream's `Content-Type: application/json`
/// (sic) as soon as pg_dump writes, the SQL streamed; 404 when the database does not exist;
/// The query of `GET /database_schema`.
#[derive(Debug, serde::Deserialize)]
struct SchemaQuery {
    database: String,
}

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
    let command = pg_dump_command(document, database);
    match dump::start(command, limits, database.to_string()) {
        // As upstream, the 200 goes out with the first chunk. Unlike upstream, a pg_dump
        // failing later ends the chunked body without its terminating chunk, so the client
        // sees an incomplete body, never a complete 200 (README, compatibility table).
        Head::Output { first, rest } => {
            Reply::streaming(StatusCode::OK, "application/json".into(), first, rest)
        }
        Head::Ended { status, stderr } => {
            let stderr = String::from_utf8_lossy(&stderr);
            let missing = format!("FATAL:  database \"{database}\" does not exist");
            if stderr.contains(&missing) {
                return Reply::error(StatusCode::NOT_FOUND, "database does not exist");
            }
            tracing::error!(
                database,
                %status,
                stderr = %stderr.trim_end(),
                "pg_dump failed"
            );
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "failed to execute pg_dump",
            )
        }
        Head::Failed(error) => {
            tracing::error!(database, %error, "pg_dump failed");
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("failed to execute pg_dump: {error}"),
            )
        }
    }
}

fn pg_dump_command(document: &ComputeDocument, database: &str) -> Command {
    let mut command = Command::new(document.sibling_binary("pg_dump"));
    command
        .arg("--host")
        .arg(&document.instance.socket_dir)
        .arg("--port")
        .arg(document.instance.port.to_string())
        .arg("--username")
        .arg(stage_kit::local::admin_user(document))
        .arg("--schema-only")
        .env("PGDATABASE", database)
        .env("PGAPPNAME", "compute_ctl:database_schema")
        .env("PGCONNECT_TIMEOUT", "10");
    // Nothing from compute-ctl's own environment may redirect the connection.
    for variable in [
        "PGSERVICE",
        "PGSERVICEFILE",
        "PGOPTIONS",
        "PGHOSTADDR",
        "PGPASSFILE",
    ] {
        command.env_remove(variable);
    }
    if let Some(password) = document
        .connstr
        .parse::<postgres::Config>()
        .ok()
        .and_then(|config| config.get_password().map(<[u8]>::to_vec))
    {
        command.env(
            "PGPASSWORD",
            String::from_utf8_lossy(&password).into_owned(),
        );
    }
    command
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
