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

/// The decoded `(name, value)` pairs of a query string (`a=1&b=x%20y`).
pub fn query_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
        .map(|(key, value)| (percent_decode(key), percent_decode(value)))
}

/// The value of `name` in a query string, form-decoded (`+` is a space); the first
/// occurrence wins.
pub fn query_value(query: &str, name: &str) -> Option<String> {
    query_pairs(query)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value)
}

/// The value of `name` in a query string, or the serde_urlencoded error text for a field
/// given twice (`duplicate field `name``), which upstream's extractor rejects.
pub fn query_single(query: &str, name: &str) -> Result<Option<String>, String> {
    let mut values = query_pairs(query)
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value);
    let first = values.next();
    if values.next().is_some() {
        return Err(format!("duplicate field `{name}`"));
    }
    Ok(first)
}

/// Whether a `Content-Type` is one upstream's JSON extractor accepts: `application/json` or
/// `application/*+json`, parameters allowed (`text/json` is not).
pub fn is_json_content_type(content_type: Option<&str>) -> bool {
    let essence = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    essence.as_deref().is_some_and(|essence| {
        essence == "application/json"
            || essence
                .strip_prefix("application/")
                .is_some_and(|subtype| subtype.ends_with("+json") && !subtype.contains('/'))
    })
}

/// Upstream's 415 for a JSON body route whose `Content-Type` is missing or not JSON (see
/// [`is_json_content_type`]); for the lead to call once the request carries its
/// `Content-Type`.
pub fn require_json_content_type(content_type: Option<&str>) -> Result<(), Reply> {
    if is_json_content_type(content_type) {
        Ok(())
    } else {
        Err(Reply::error(
            415,
            "expected request with `content-type: application/json`",
        ))
    }
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
        stage_kit::local::admin_config(document, crate::STAGE, application_name, Some(database))
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

/// Test helpers shared by the route modules' tests: an [`Api`] around a document that points
/// at a test server.
#[cfg(test)]
pub(crate) mod testing {
    use std::path::Path;
    use std::sync::Arc;

    use compute_spec::ComputeDocument;
    use serde_json::{json, Value};

    use crate::http::{Api, ApiRequest};
    use crate::state::{ComputeStatus, Shared};

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
            auth: Arc::new(crate::auth::Auth::Open),
            deadlines: crate::http::Deadlines::default(),
            lfc: Arc::default(),
            promotion: Arc::default(),
            remote_ext_base_url: None,
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
            body: body.to_vec(),
        }
    }

    /// The reply's body as JSON.
    pub fn body(reply: &crate::http::Reply) -> Value {
        serde_json::from_slice(&reply.body)
            .unwrap_or_else(|error| panic!("{error}: {}", String::from_utf8_lossy(&reply.body)))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use hyper::Method;
    use pg_test_support::TestPostgres;

    /// A name that would break out of any unquoted or badly quoted context.
    const NASTY: &str = "x\"; DROP TABLE public.canary; --\n' ; SELECT 1; \\";

    fn canary_present(server: &TestPostgres, database: &str) -> bool {
        server
            .client_for(database)
            .query_one("SELECT to_regclass('public.canary') IS NOT NULL", &[])
            .unwrap()
            .get(0)
    }

    #[test]
    fn query_strings_decode_like_forms() {
        assert_eq!(
            query_value("database=a%20b+c", "database").as_deref(),
            Some("a b c")
        );
        assert_eq!(
            query_value("x=1&database=", "database").as_deref(),
            Some("")
        );
        assert_eq!(query_value("database", "database").as_deref(), Some(""));
        assert_eq!(query_value("a=1", "database"), None);
        assert_eq!(query_value("", "database"), None);
        assert_eq!(percent_decode("%22%3B%0A%zz%4"), "\";\n%zz%4");
        assert_eq!(percent_decode("%C3%A9%FF"), "é\u{FFFD}");
    }

    #[test]
    fn duplicate_fields_and_content_types() {
        assert_eq!(
            query_single("database=a", "database"),
            Ok(Some("a".to_string()))
        );
        assert_eq!(query_single("x=1", "database"), Ok(None));
        assert_eq!(
            query_single("database=a&database=b", "database"),
            Err("duplicate field `database`".to_string())
        );
        for good in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(require_json_content_type(Some(good)).is_ok(), "{good}");
        }
        for bad in [
            None,
            Some("text/json"),
            Some("text/plain"),
            Some("application/jsonx"),
            Some(""),
        ] {
            let reply = require_json_content_type(bad).unwrap_err();
            assert_eq!(reply.status, 415);
            assert_eq!(
                body(&reply),
                json!({"error": "expected request with `content-type: application/json`"})
            );
        }
    }

    #[test]
    fn body_rejections_as_upstream() {
        let reply = GrantsRequest::parse(b"{").unwrap_err();
        assert_eq!(reply.status, 400);
        assert!(body(&reply)["error"]
            .as_str()
            .unwrap()
            .starts_with("failed to parse the request body as json: "));
        let reply = GrantsRequest::parse(
            br#"{"database":"d","schema":"s","role":"r","privileges":["USAGE","usage"]}"#,
        )
        .unwrap_err();
        assert_eq!(reply.status, 422);
        let message = body(&reply)["error"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("failed to deserialize the json body into the target type: privileges[1]: unknown variant `usage`, expected one of `SELECT`"),
            "{message}"
        );
        let reply =
            GrantsRequest::parse(br#"{"database":"d","schema":"s","privileges":[]}"#).unwrap_err();
        assert_eq!(reply.status, 422);
        assert!(body(&reply)["error"]
            .as_str()
            .unwrap()
            .ends_with("missing field `role`"));
        let reply = ExtensionRequest::parse(br#"{"extension":1,"database":"d","version":"1"}"#)
            .unwrap_err();
        assert_eq!(
            body(&reply)["error"],
            "failed to deserialize the json body into the target type: extension: invalid type: integer `1`, expected a string"
        );
        assert_eq!(ExtensionRequest::parse(b"[]").unwrap_err().status, 422);
    }

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

    fn api_for_nothing() -> Api {
        api(None, false)
    }

    fn grant_body(database: &str, schema: &str, role: &str, privileges: &[&str]) -> Vec<u8> {
        json!({"database": database, "schema": schema, "privileges": privileges, "role": role})
            .to_string()
            .into_bytes()
    }

    fn has_privilege(
        server: &TestPostgres,
        database: &str,
        role: &str,
        schema: &str,
        privilege: &str,
    ) -> bool {
        server
            .client_for(database)
            .query_one(
                "SELECT has_schema_privilege($1, $2, $3)",
                &[&role, &schema, &privilege],
            )
            .unwrap()
            .get(0)
    }

    #[test]
    fn grants_grant_what_is_missing() {
        let server = TestPostgres::start();
        server.psql("CREATE DATABASE app");
        server.psql("CREATE ROLE r1 LOGIN");
        server
            .client_for("app")
            .batch_execute(
                "CREATE SCHEMA s; CREATE TABLE public.canary (); GRANT USAGE ON SCHEMA s TO r1",
            )
            .unwrap();
        let api = api_for(&server, true);
        let body_bytes = grant_body("app", "s", "r1", &["USAGE", "CREATE", "CREATE"]);
        let reply = grants(&api, &request(Method::POST, "/grants", "", &body_bytes));
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            body(&reply),
            json!({"database": "app", "schema": "s", "privileges": ["USAGE", "CREATE", "CREATE"], "role": "r1"})
        );
        assert!(has_privilege(&server, "app", "r1", "s", "CREATE"));

        let document = api.shared.lock().document.clone().unwrap();
        let request_again = GrantsRequest::parse(&body_bytes).unwrap();
        assert_eq!(set_role_grants(&document, &request_again).unwrap(), None);

        let only_missing =
            GrantsRequest::parse(&grant_body("app", "public", "r1", &["USAGE", "CREATE"])).unwrap();
        server
            .client_for("app")
            .batch_execute(
                "REVOKE ALL ON SCHEMA public FROM PUBLIC; GRANT USAGE ON SCHEMA public TO r1",
            )
            .unwrap();
        assert_eq!(
            set_role_grants(&document, &only_missing)
                .unwrap()
                .as_deref(),
            Some("GRANT CREATE ON SCHEMA \"public\" TO \"r1\"")
        );

        // A role or schema that does not exist, a privilege the schema does not have.
        for (schema, role, privileges) in [
            ("s", "nobody", &["USAGE"][..]),
            ("nosuch", "r1", &["USAGE"][..]),
            ("s", "r1", &["SELECT"][..]),
        ] {
            let reply = grants(
                &api,
                &request(
                    Method::POST,
                    "/grants",
                    "",
                    &grant_body("app", schema, role, privileges),
                ),
            );
            assert_eq!(reply.status, 500, "{schema} {role}");
            let message = body(&reply)["error"].as_str().unwrap().to_string();
            assert!(
                message.starts_with("failed to grant role privileges to the schema: "),
                "{message}"
            );
        }
        let reply = grants(
            &api,
            &request(
                Method::POST,
                "/grants",
                "",
                &grant_body("nosuchdb", "s", "r1", &["USAGE"]),
            ),
        );
        assert_eq!(reply.status, 500);
        assert!(body(&reply)["error"].as_str().unwrap().contains("nosuchdb"));
        assert!(canary_present(&server, "app"));
    }

    #[test]
    fn grants_quote_hostile_names() {
        let server = TestPostgres::start();
        server.psql("CREATE DATABASE app");
        server.psql(&format!("CREATE ROLE {} LOGIN", Ident(NASTY)));
        server
            .client_for("app")
            .batch_execute(&format!(
                "CREATE SCHEMA {}; CREATE TABLE public.canary ()",
                Ident(NASTY)
            ))
            .unwrap();
        let api = api_for(&server, true);
        let reply = grants(
            &api,
            &request(
                Method::POST,
                "/grants",
                "",
                &grant_body("app", NASTY, NASTY, &["USAGE", "CREATE"]),
            ),
        );
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert!(has_privilege(&server, "app", NASTY, NASTY, "USAGE"));
        assert!(has_privilege(&server, "app", NASTY, NASTY, "CREATE"));
        assert!(canary_present(&server, "app"));
        // Unknown hostile names fail in Postgres, never as SQL syntax.
        let reply = grants(
            &api,
            &request(
                Method::POST,
                "/grants",
                "",
                &grant_body("app", "public", &format!("{NASTY}2"), &["USAGE"]),
            ),
        );
        assert_eq!(reply.status, 500);
        let message = body(&reply)["error"].as_str().unwrap().to_string();
        assert!(message.contains("does not exist"), "{message}");
        assert!(canary_present(&server, "app"));
    }

    #[test]
    fn grants_and_extensions_need_running() {
        let api = api_for_nothing();
        let reply = grants(
            &api,
            &request(
                Method::POST,
                "/grants",
                "",
                &grant_body("d", "s", "r", &["USAGE"]),
            ),
        );
        assert_eq!(reply.status, 412);
        assert_eq!(
            body(&reply),
            json!({"error": "invalid compute status: empty"})
        );
        let reply = extensions(
            &api,
            &request(
                Method::POST,
                "/extensions",
                "",
                br#"{"extension":"e","database":"d","version":"1"}"#,
            ),
        );
        assert_eq!(reply.status, 412);
        // The body is checked before the status, as upstream's extractor runs first.
        let reply = extensions(&api, &request(Method::POST, "/extensions", "", b"{}"));
        assert_eq!(reply.status, 422);
    }

    fn extension_body(extension: &str, database: &str, version: &str) -> Vec<u8> {
        json!({"extension": extension, "database": database, "version": version})
            .to_string()
            .into_bytes()
    }

    fn installed_version(server: &TestPostgres, database: &str, extension: &str) -> Option<String> {
        server
            .client_for(database)
            .query_opt(
                "SELECT extversion FROM pg_extension WHERE extname = $1",
                &[&extension],
            )
            .unwrap()
            .map(|row| row.get(0))
    }

    #[test]
    fn extensions_create_update_and_keep() {
        let server = TestPostgres::start();
        server.psql("CREATE DATABASE app");
        server
            .client_for("app")
            .batch_execute("CREATE TABLE public.canary ()")
            .unwrap();
        let api = api_for(&server, true);
        let post =
            |body: Vec<u8>| extensions(&api, &request(Method::POST, "/extensions", "", &body));

        let reply = post(extension_body("pg_trgm", "app", "1.5"));
        assert_eq!(
            reply.status,
            201,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            body(&reply),
            json!({"extension": "pg_trgm", "version": "1.5"})
        );
        assert_eq!(
            installed_version(&server, "app", "pg_trgm").as_deref(),
            Some("1.5")
        );
        let schema: String = server
            .client_for("app")
            .query_one("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'", &[])
            .unwrap()
            .get(0);
        assert_eq!(schema, "public");

        assert_eq!(post(extension_body("pg_trgm", "app", "1.6")).status, 201);
        assert_eq!(
            installed_version(&server, "app", "pg_trgm").as_deref(),
            Some("1.6")
        );
        let document = api.shared.lock().document.clone().unwrap();
        let same = ExtensionRequest::parse(&extension_body("pg_trgm", "app", "1.6")).unwrap();
        assert_eq!(install_extension(&document, &same).unwrap(), None);

        let reply = post(extension_body("pg_trgm", "app", "9.9"));
        assert_eq!(reply.status, 500);
        let message = body(&reply)["error"].as_str().unwrap().to_string();
        assert!(
            message.starts_with("failed to install extension: "),
            "{message}"
        );

        // Hostile names and versions reach Postgres as one quoted name and one literal.
        for (extension, version) in [(NASTY, "1.0"), ("seg", NASTY)] {
            let reply = post(extension_body(extension, "app", version));
            assert_eq!(reply.status, 500, "{extension:?} {version:?}");
            let message = body(&reply)["error"].as_str().unwrap().to_string();
            assert!(!message.contains("syntax error"), "{message}");
        }
        assert_eq!(installed_version(&server, "app", "seg"), None);
        assert!(canary_present(&server, "app"));
    }
}
