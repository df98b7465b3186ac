//! `GET /database_schema?database=<name>`: the database's `pg_dump --schema-only`.

use std::process::Command;
use std::time::Duration;

use compute_spec::ComputeDocument;

use crate::extract::query_single;
use crate::http::{Api, ApiRequest, Reply};

/// `pg_dump` is killed when it runs longer than this.
pub const PG_DUMP_DEADLINE: Duration = Duration::from_secs(300);

/// The largest schema dump returned (256 MiB); a larger one is a 500 naming the limit.
pub const PG_DUMP_CAP: usize = 256 * 1024 * 1024;

/// `GET /database_schema?database=<name>` (external, authenticated, any status): the
/// database's `pg_dump --schema-only`, 200 with upstream's `Content-Type: application/json`
/// (sic); 404 when the database does not exist; 500 otherwise.
pub fn database_schema(api: &Api, request: &ApiRequest) -> Reply {
    let database = match query_single(request.query.as_deref().unwrap_or_default(), "database") {
        Ok(Some(database)) => database,
        Ok(None) => {
            return Reply::error(
                400,
                "failed to deserialize query string: missing field `database`",
            )
        }
        Err(error) => {
            return Reply::error(400, format!("failed to deserialize query string: {error}"))
        }
    };
    let document = api.shared.lock().document.clone();
    let Some(document) = document else {
        return Reply::error(500, "unexpected I/O error: the compute has no document yet");
    };
    dump_schema(&document, &database, PG_DUMP_DEADLINE, PG_DUMP_CAP)
}

fn dump_schema(
    document: &ComputeDocument,
    database: &str,
    deadline: Duration,
    cap: usize,
) -> Reply {
    let mut command = pg_dump_command(document, database);
    match crate::tool::run(&mut command, deadline, cap) {
        // Upstream's 200 goes out with the first chunk, so a pg_dump failing half-way ends a
        // 200 body; ours is buffered and sent only when pg_dump succeeded: a truncated schema
        // is never a 200 (README, compatibility table).
        Ok(output) if output.status.success() && !output.stdout.is_empty() => {
            Reply::bytes(200, "application/json".into(), output.stdout)
        }
        Ok(output) => {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let missing = format!("FATAL:  database \"{database}\" does not exist");
            if output.stdout.is_empty() && stderr.contains(&missing) {
                return Reply::error(404, "database does not exist");
            }
            tracing::error!(
                database,
                status = %output.status,
                stderr = %stderr.trim_end(),
                "pg_dump failed"
            );
            Reply::error(500, "failed to execute pg_dump")
        }
        Err(error @ crate::tool::ToolError::TooLarge { .. }) => {
            tracing::error!(database, %error, "pg_dump output too large");
            Reply::error(
                500,
                format!(
                    "failed to execute pg_dump: the schema is larger than the {cap}-byte limit"
                ),
            )
        }
        Err(error) => {
            tracing::error!(database, %error, "pg_dump failed");
            Reply::error(500, format!("failed to execute pg_dump: {error}"))
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
mod tests {
    use super::*;
    use crate::testing::*;
    use compute_spec::quote::Ident;
    use hyper::Method;
    use pg_test_support::TestPostgres;
    use serde_json::json;

    #[test]
    fn database_schema_dumps_and_reports() {
        let server = TestPostgres::start();
        server.psql("CREATE DATABASE shop");
        server
            .client_for("shop")
            .batch_execute("CREATE TABLE public.items (id int PRIMARY KEY, name text)")
            .unwrap();
        server.psql(&format!("CREATE DATABASE {}", Ident("we\"ird; db\nname")));
        let api = api_for(&server, false);
        let get = |query: &str| {
            database_schema(&api, &request(Method::GET, "/database_schema", query, b""))
        };

        let reply = get("database=shop");
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(reply.content_type.as_deref(), Some("application/json"));
        let sql = String::from_utf8(reply.body).unwrap();
        assert!(sql.contains("CREATE TABLE public.items"), "{sql}");

        let reply = get("database=we%22ird%3B+db%0Aname");
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );

        let reply = get("database=nosuch");
        assert_eq!(reply.status, 404);
        assert_eq!(body(&reply), json!({"error": "database does not exist"}));

        // PGDATABASE is never expanded as a connection string.
        let reply = get("database=host%3D%2Ftmp+dbname%3Dshop");
        assert_eq!(
            reply.status,
            404,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );

        let reply = get("database=shop&database=other");
        assert_eq!(reply.status, 400);
        assert_eq!(
            body(&reply),
            json!({"error": "failed to deserialize query string: duplicate field `database`"})
        );

        let reply = get("");
        assert_eq!(reply.status, 400);
        assert_eq!(
            body(&reply),
            json!({"error": "failed to deserialize query string: missing field `database`"})
        );

        let document = api.shared.lock().document.clone().unwrap();
        let reply = dump_schema(&document, "shop", PG_DUMP_DEADLINE, 100);
        assert_eq!(reply.status, 500);
        assert!(body(&reply)["error"]
            .as_str()
            .unwrap()
            .contains("100-byte limit"));
        let mut elsewhere = document.clone();
        elsewhere.pgbin = "/nonexistent/bin/postgres".into();
        let reply = dump_schema(&elsewhere, "shop", PG_DUMP_DEADLINE, PG_DUMP_CAP);
        assert_eq!(reply.status, 500);
        assert!(body(&reply)["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to execute pg_dump"));
    }

    #[test]
    fn a_pg_dump_failing_after_output_is_a_500_never_a_truncated_200() {
        let server = TestPostgres::start();
        let api = api_for(&server, false);
        let mut document = api.shared.lock().document.clone().unwrap();
        let bin = tempfile::tempdir().unwrap();
        let fake = bin.path().join("pg_dump");
        std::fs::write(
            &fake,
            "#!/bin/sh\necho 'CREATE TABLE part (id int);'\nexit 1\n",
        )
        .unwrap();
        std::process::Command::new("chmod")
            .arg("+x")
            .arg(&fake)
            .status()
            .unwrap();
        document.pgbin = bin.path().join("postgres");
        let reply = dump_schema(&document, "shop", PG_DUMP_DEADLINE, PG_DUMP_CAP);
        assert_eq!(reply.status, 500);
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        assert!(body.contains("failed to execute pg_dump"), "{body}");
        assert!(!body.contains("CREATE TABLE part"), "{body}");
    }

    #[test]
    fn database_schema_failure_without_postgres_is_500() {
        let server = TestPostgres::start();
        let api = api_for(&server, false);
        api.shared.update(|inner| {
            if let Some(document) = inner.document.as_mut() {
                document.instance.port = pg_test_support::free_tcp_port();
            }
        });
        let reply = database_schema(
            &api,
            &request(Method::GET, "/database_schema", "database=postgres", b""),
        );
        assert_eq!(reply.status, 500);
        assert_eq!(body(&reply), json!({"error": "failed to execute pg_dump"}));
        let reply = database_schema(
            &api_for_nothing(),
            &request(Method::GET, "/", "database=x", b""),
        );
        assert_eq!(reply.status, 500);
    }
}
