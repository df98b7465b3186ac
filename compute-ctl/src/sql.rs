//! Handlers that talk SQL to the compute's own Postgres (through its socket, with the
//! admin connection of [`stage_kit::local::admin_config`]): `/readyz`, `/dbs_and_roles`
//! (the snapshot is [`pg_catalog::listing`]'s), `/check_writability` and `/insights` (the SQL
//! is [`pg_catalog::health`]'s).

use compute_spec::ComputeDocument;
use serde_json::{json, Value};

use crate::api::wrong_status;
use crate::api::Api;
use crate::state::ComputeStatus;
use compute_http::Reply;
use hyper::StatusCode;

const APPLICATION_NAME: &str = "compute_ctl:http";

/// A client for the running compute, or the reply to send instead.
fn client(api: &Api) -> Result<postgres::Client, Reply> {
    let (status, document) = {
        let inner = api.shared.lock();
        (inner.status(), inner.document.clone())
    };
    if status != ComputeStatus::Running {
        return Err(wrong_status(status));
    }
    connect(document.as_ref())
        .map_err(|error| Reply::error(StatusCode::INTERNAL_SERVER_ERROR, error))
}

fn connect(document: Option<&ComputeDocument>) -> Result<postgres::Client, String> {
    let document = document.ok_or("the compute has no document yet")?;
    let config =
        stage_kit::local::admin_config(document, crate::stages::STAGE, APPLICATION_NAME, None)
            .map_err(|error| error.message)?;
    config
        .connect(postgres::NoTls)
        .map_err(|error| format!("connecting to postgres: {error}"))
}

/// `GET /readyz`: 200 when running and Postgres accepts a connection, else 503.
pub fn readyz(api: &Api) -> Reply {
    let (status, document) = {
        let inner = api.shared.lock();
        (inner.status(), inner.document.clone())
    };
    if status != ComputeStatus::Running {
        return Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: compute status is {status}"),
        );
    }
    match connect(document.as_ref()).and_then(|mut client| {
        client
            .simple_query("SELECT 1")
            .map_err(|error| format!("postgres did not answer: {error}"))
    }) {
        Ok(_) => Reply::json(StatusCode::OK, &json!({"status": "ready"})),
        Err(error) => Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {error}"),
        ),
    }
}

/// `GET /dbs_and_roles`: the roles and databases as upstream's catalog snapshot, in any
/// status (500 when Postgres cannot be reached).
pub fn dbs_and_roles(api: &Api) -> Reply {
    let document = api.shared.lock().document.clone();
    let mut client = match connect(document.as_ref()) {
        Ok(client) => client,
        Err(error) => return Reply::error(StatusCode::INTERNAL_SERVER_ERROR, error),
    };
    match pg_catalog::read_dbs_and_roles(&mut client) {
        Ok(listing) => Reply::json(StatusCode::OK, &listing),
        Err(error) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reading roles and databases: {error}"),
        ),
    }
}

/// `POST /check_writability`: upserts `public.health_check` row 1; 200 `true`. The table
/// is pg-reconcile's (its `create_availability_check` phase, at every catalog apply of a
/// primary); when it is missing the answer is 500, as upstream.
pub fn check_writability(api: &Api) -> Reply {
    match client(api).map(|mut client| pg_catalog::health::check_writability(&mut client)) {
        Ok(Ok(())) => Reply::json(StatusCode::OK, &json!(true)),
        Ok(Err(error)) => Reply::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("check_writability failed: {error}"),
        ),
        Err(reply) => reply,
    }
}

/// `GET /insights`: [`pg_catalog::health::insights`]. Like upstream, the body is a JSON
/// **string** holding `{"pg_stat_statements": [...]}`.
pub fn insights(api: &Api) -> Reply {
    match client(api) {
        Ok(mut client) => {
            let text = pg_catalog::health::insights(&mut client);
            Reply::json(StatusCode::OK, &Value::String(text))
        }
        Err(reply) => reply,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::api_for;
    use pg_test_support::TestPostgres;

    #[test]
    fn dbs_and_roles_bytes_are_upstreams_shape() {
        let server = TestPostgres::start();
        server.psql("CREATE ROLE reader LOGIN");
        server.psql("CREATE ROLE writer LOGIN PASSWORD 'md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'");
        server.psql("CREATE DATABASE shop OWNER reader");
        server.psql("CREATE DATABASE closed ALLOW_CONNECTIONS false");
        let reply = dbs_and_roles(&api_for(&server, false));
        assert_eq!(reply.status, 200);
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        let text = String::from_utf8(reply.body).unwrap();
        // Key order, nulls and flags exactly as the `json!` objects built them before.
        assert!(text.starts_with(r#"{"roles":[{"name":"#), "{text}");
        for exact in [
            r#"{"name":"reader","encrypted_password":null,"options":null}"#,
            r#"{"name":"writer","encrypted_password":"md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa","options":null}"#,
            r#"{"name":"shop","owner":"reader","options":null,"restrict_conn":false,"invalid":false}"#,
            r#""restrict_conn":true,"invalid":false}"#,
            r#"],"databases":[{"name":"#,
        ] {
            assert!(text.contains(exact), "{exact} not in {text}");
        }
    }
}
