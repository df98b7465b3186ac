//! `GET /database_schema`, `POST /grants` and `POST /extensions` (upstream's `catalog.rs`,
//! `set_role_grants` and `install_extension`), plus the request helpers they share with the
//! other new routes: the query string and upstream's JSON body rejections.
//!
//! Every name and literal that reaches SQL goes through [`compute_spec::quote`]; values are
//! read back with bind parameters; `pg_dump` gets the database through `PGDATABASE`, which
//! libpq never expands as a connection string.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use compute_spec::quote::{Ident, Literal};
use compute_spec::ComputeDocument;
use serde_json::{json, Map, Value};

use crate::http::{Api, ApiRequest, Reply};
use crate::routes::wrong_status;
use crate::state::ComputeStatus;

/// `pg_dump` is killed when it runs longer than this.
pub const PG_DUMP_DEADLINE: Duration = Duration::from_secs(300);

/// The largest schema dump returned (256 MiB); a larger one is a 500 naming the limit.
pub const PG_DUMP_CAP: usize = 256 * 1024 * 1024;

/// Upstream's closed set of schema/database/function privileges (`compute_api::privilege`).
pub const PRIVILEGES: [&str; 12] = [
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "TRUNCATE",
    "REFERENCES",
    "TRIGGER",
    "USAGE",
    "CREATE",
    "CONNECT",
    "TEMPORARY",
    "EXECUTE",
];

// ---------------------------------------------------------------------------------------
// Request helpers

/// The value of `name` in a query string (`a=1&b=x%20y`), form-decoded (`+` is a space);
/// the first occurrence wins.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .find(|(key, _)| percent_decode(key) == name)
        .map(|(_, value)| percent_decode(value))
}

/// Form decoding: `+` → space, `%XX` → the byte; a malformed escape stays as written and
/// invalid UTF-8 becomes U+FFFD (as the `form_urlencoded` parser upstream uses).
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                match (hex(bytes[index + 1]), hex(bytes[index + 2])) {
                    (Some(high), Some(low)) => {
                        out.push(high << 4 | low);
                        index += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// A JSON object body, or upstream's rejection: 400 for a syntax error, 422 for a value
/// that is not an object.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, Reply> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        Reply::error(
            400,
            format!("failed to parse the request body as json: {error}"),
        )
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(unprocessable(format!(
            "invalid type: {}, expected a JSON object",
            kind(&other)
        ))),
    }
}

/// 422 `failed to deserialize the json body into the target type: <detail>`.
pub fn unprocessable(detail: impl std::fmt::Display) -> Reply {
    Reply::error(
        422,
        format!("failed to deserialize the json body into the target type: {detail}"),
    )
}

/// A required string field, or the 422 naming it.
pub fn string_field(map: &Map<String, Value>, name: &str) -> Result<String, Reply> {
    match map.get(name) {
        Some(Value::String(text)) => Ok(text.clone()),
        Some(other) => Err(unprocessable(format!(
            "{name}: invalid type: {}, expected a string",
            kind(other)
        ))),
        None => Err(unprocessable(format!("missing field `{name}`"))),
    }
}

/// How serde names a JSON value in its type errors.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => format!("boolean `{flag}`"),
        Value::Number(number) if number.is_f64() => format!("floating point `{number}`"),
        Value::Number(number) => format!("integer `{number}`"),
        Value::String(text) => format!("string {text:?}"),
        Value::Array(_) => "sequence".to_string(),
        Value::Object(_) => "map".to_string(),
    }
}

/// The compute's document when it is `running`; upstream's 412 otherwise.
pub fn running_document(api: &Api) -> Result<ComputeDocument, Reply> {
    let inner = api.shared.lock();
    let status = inner.status();
    if status != ComputeStatus::Running {
        return Err(wrong_status(status));
    }
    inner
        .document
        .clone()
        .ok_or_else(|| Reply::error(500, "the compute is running without a document"))
}

/// A Postgres error as its server message (`ERROR: …` with detail and hint), else the
/// client's text.
pub fn pg_error_text(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.to_string(),
        None => error.to_string(),
    }
}

fn connect(
    document: &ComputeDocument,
    application_name: &str,
    database: &str,
) -> Result<postgres::Client, String> {
    let config =
        compute_spec::local::admin_config(document, crate::STAGE, application_name, Some(database))
            .map_err(|error| error.message)?;
    config.connect(postgres::NoTls).map_err(|error| {
        format!(
            "connecting to database {database:?}: {}",
            pg_error_text(&error)
        )
    })
}

// ---------------------------------------------------------------------------------------
// GET /database_schema

/// `GET /database_schema?database=<name>` (external, authenticated, any status): the
/// database's `pg_dump --schema-only`, 200 with upstream's `Content-Type: application/json`
/// (sic); 404 when the database does not exist; 500 otherwise.
pub fn database_schema(api: &Api, request: &ApiRequest) -> Reply {
    let Some(database) = query_value(&request.query, "database") else {
        return Reply::error(
            400,
            "failed to deserialize query string: missing field `database`",
        );
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
        Ok(output) if output.status.success() && !output.stdout.is_empty() => Reply {
            status: 200,
            body: output.stdout,
            content_type: "application/json",
        },
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
        .arg(compute_spec::local::admin_user(document))
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

// ---------------------------------------------------------------------------------------
// POST /grants

/// A validated `/grants` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GrantsRequest {
    /// The database to connect to.
    pub database: String,
    /// The schema the privileges are on.
    pub schema: String,
    /// Upper-case privileges from [`PRIVILEGES`], as given.
    pub privileges: Vec<String>,
    /// The role that receives them.
    pub role: String,
}

impl GrantsRequest {
    /// Reads a body; the reply is upstream's rejection.
    pub fn parse(body: &[u8]) -> Result<GrantsRequest, Reply> {
        let map = json_object(body)?;
        let database = string_field(&map, "database")?;
        let schema = string_field(&map, "schema")?;
        let privileges = match map.get("privileges") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(index, item)| privilege(index, item))
                .collect::<Result<Vec<_>, _>>()?,
            Some(other) => {
                return Err(unprocessable(format!(
                    "privileges: invalid type: {}, expected a sequence",
                    kind(other)
                )))
            }
            None => return Err(unprocessable("missing field `privileges`")),
        };
        let role = string_field(&map, "role")?;
        Ok(GrantsRequest {
            database,
            schema,
            privileges,
            role,
        })
    }

    /// The request as upstream echoes it.
    pub fn to_json(&self) -> Value {
        json!({
            "database": self.database,
            "schema": self.schema,
            "privileges": self.privileges,
            "role": self.role,
        })
    }
}

fn privilege(index: usize, item: &Value) -> Result<String, Reply> {
    match item {
        Value::String(name) if PRIVILEGES.contains(&name.as_str()) => Ok(name.clone()),
        Value::String(name) => Err(unprocessable(format!(
            "privileges[{index}]: unknown variant `{name}`, expected one of {}",
            PRIVILEGES
                .iter()
                .map(|name| format!("`{name}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        other => Err(unprocessable(format!(
            "privileges[{index}]: invalid type: {}, expected a privilege name",
            kind(other)
        ))),
    }
}

/// `POST /grants` (internal): grants the role the privileges it lacks on the schema, in one
/// statement; 201 echoing the request.
pub fn grants(api: &Api, request: &ApiRequest) -> Reply {
    let grants = match GrantsRequest::parse(&request.body) {
        Ok(grants) => grants,
        Err(reply) => return reply,
    };
    let document = match running_document(api) {
        Ok(document) => document,
        Err(reply) => return reply,
    };
    match set_role_grants(&document, &grants) {
        Ok(_) => Reply::json(201, &grants.to_json()),
        Err(message) => Reply::error(
            500,
            format!("failed to grant role privileges to the schema: {message}"),
        ),
    }
}

/// Grants what `grants.role` lacks of `grants.privileges` on the schema; returns the
/// statement it ran, if any.
pub fn set_role_grants(
    document: &ComputeDocument,
    grants: &GrantsRequest,
) -> Result<Option<String>, String> {
    let mut client = connect(document, "compute_ctl:set_role_grants", &grants.database)?;
    // As upstream: the ACL joined to pg_user, so a NOLOGIN role looks ungranted.
    let held: BTreeSet<String> = client
        .query(
            "SELECT acl.privilege_type::text \
             FROM pg_catalog.pg_namespace AS n, pg_catalog.aclexplode(n.nspacl) AS acl \
             JOIN pg_catalog.pg_user AS u ON u.usesysid = acl.grantee \
             WHERE n.nspname = $1 AND u.usename = $2",
            &[&grants.schema, &grants.role],
        )
        .map_err(|error| {
            format!(
                "reading the privileges of role {:?}: {}",
                grants.role,
                pg_error_text(&error)
            )
        })?
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect();
    let mut missing: Vec<&str> = Vec::new();
    for privilege in &grants.privileges {
        if !held.contains(privilege) && !missing.contains(&privilege.as_str()) {
            missing.push(privilege);
        }
    }
    if missing.is_empty() {
        return Ok(None);
    }
    // The privileges are keywords from the closed set checked at parse time.
    let statement = format!(
        "GRANT {} ON SCHEMA {} TO {}",
        missing.join(", "),
        Ident(&grants.schema),
        Ident(&grants.role)
    );
    client
        .batch_execute(&statement)
        .map_err(|error| pg_error_text(&error))?;
    Ok(Some(statement))
}

// ---------------------------------------------------------------------------------------
// POST /extensions

/// A validated `/extensions` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtensionRequest {
    /// The extension's name.
    pub extension: String,
    /// The database to install it in.
    pub database: String,
    /// The version to install or update to.
    pub version: String,
}

impl ExtensionRequest {
    /// Reads a body; the reply is upstream's rejection.
    pub fn parse(body: &[u8]) -> Result<ExtensionRequest, Reply> {
        let map = json_object(body)?;
        Ok(ExtensionRequest {
            extension: string_field(&map, "extension")?,
            database: string_field(&map, "database")?,
            version: string_field(&map, "version")?,
        })
    }
}

/// `POST /extensions` (internal): creates the extension in `public` at the version, or
/// updates it to the version; 201 `{"extension","version"}`.
pub fn extensions(api: &Api, request: &ApiRequest) -> Reply {
    let extension = match ExtensionRequest::parse(&request.body) {
        Ok(extension) => extension,
        Err(reply) => return reply,
    };
    let document = match running_document(api) {
        Ok(document) => document,
        Err(reply) => return reply,
    };
    match install_extension(&document, &extension) {
        Ok(_) => Reply::json(
            201,
            &json!({"extension": extension.extension, "version": extension.version}),
        ),
        Err(message) => Reply::error(500, format!("failed to install extension: {message}")),
    }
}

/// Installs or updates the extension; returns the statement it ran, if any.
pub fn install_extension(
    document: &ComputeDocument,
    request: &ExtensionRequest,
) -> Result<Option<String>, String> {
    let mut client = connect(document, "compute_ctl:install_extension", &request.database)?;
    let installed: Option<String> = client
        .query_opt(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = $1",
            &[&request.extension],
        )
        .map_err(|error| {
            format!(
                "reading the installed version of {:?}: {}",
                request.extension,
                pg_error_text(&error)
            )
        })?
        .map(|row| row.get(0));
    let statement = match installed {
        Some(version) if version == request.version => return Ok(None),
        Some(_) => format!(
            "ALTER EXTENSION {} UPDATE TO {}",
            Ident(&request.extension),
            Literal(&request.version)
        ),
        None => format!(
            "CREATE EXTENSION IF NOT EXISTS {} WITH SCHEMA public VERSION {}",
            Ident(&request.extension),
            Literal(&request.version)
        ),
    };
    client
        .batch_execute(&statement)
        .map_err(|error| pg_error_text(&error))?;
    Ok(Some(statement))
}
