//! The `pg-catalog` binary against a real PostgreSQL: each subcommand as a user runs it
//! (the document on stdin or in a file, the request as an argument or a file), bad input
//! (exit 2 naming what is wrong), run-time failures (exit 1), and the dump's deadline.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use std::path::Path;
use std::time::{Duration, Instant};

use pg_test_support::probe::{process_alive, wait_for};
use pg_test_support::stage_run::{run_stage, run_stage_within, StageRun};
use pg_test_support::{TestDir, TestPostgres};
use serde_json::{json, Value};

const BINARY: &str = env!("CARGO_BIN_EXE_pg-catalog");

/// The compute document of `server`, its binaries taken from `bin_dir`.
fn document_with_bin(server: &TestPostgres, bin_dir: &Path) -> Value {
    json!({
        "document_version": 1,
        "pgdata": server.data_dir(),
        "pgbin": bin_dir.join("postgres"),
        "connstr": format!("postgresql://{}@localhost/postgres", server.superuser()),
        "instance": {"port": server.port(), "socket_dir": server.socket_dir()},
    })
}

fn document(server: &TestPostgres) -> String {
    document_with_bin(server, server.bin_dir()).to_string()
}

/// Runs `pg-catalog args…` with the document of `server` on stdin; stdout must be JSON.
fn run(server: &TestPostgres, args: &[&str]) -> StageRun {
    run_stage(BINARY, args, &document(server)).expect_json()
}

fn has_schema_privilege(server: &TestPostgres, role: &str, schema: &str, what: &str) -> bool {
    server
        .client_for("app")
        .query_one(
            "SELECT has_schema_privilege($1, $2, $3)",
            &[&role, &schema, &what],
        )
        .unwrap()
        .get(0)
}

#[test]
fn grants_grant_what_is_missing_and_say_what_they_ran() {
    let server = TestPostgres::start();
    server.psql("CREATE DATABASE app");
    server.psql("CREATE ROLE r1 LOGIN");
    server
        .client_for("app")
        .batch_execute("CREATE SCHEMA s; GRANT USAGE ON SCHEMA s TO r1")
        .unwrap();
    let request = json!({"database": "app", "schema": "s", "privileges": ["USAGE", "CREATE", "CREATE"], "role": "r1"}).to_string();

    let first = run(&server, &["grants", &request]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(
        first.json,
        json!({"statement": "GRANT CREATE ON SCHEMA \"s\" TO \"r1\""})
    );
    assert!(has_schema_privilege(&server, "r1", "s", "CREATE"));

    let again = run(&server, &["grants", &request]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json, json!({"statement": null}));

    // A role that does not exist: Postgres's error, exit 1.
    let missing =
        json!({"database": "app", "schema": "s", "privileges": ["USAGE"], "role": "nobody"})
            .to_string();
    let failed = run(&server, &["grants", &missing]);
    let error = failed.failed_with(1, "postgres");
    assert!(
        error["message"].as_str().unwrap().contains("nobody"),
        "{error}"
    );
}

#[test]
fn extensions_create_update_and_keep_from_files() {
    let server = TestPostgres::start();
    server.psql("CREATE DATABASE app");
    let dir = TestDir::new("pg-catalog-ext");
    let document_file = dir.path().join("document.json");
    std::fs::write(&document_file, document(&server)).unwrap();
    let request_file = dir.path().join("request.json");
    let document_flag = document_file.to_str().unwrap();
    let request_arg = format!("@{}", request_file.display());
    let install = |version: &str| {
        let request = json!({"extension": "pg_trgm", "database": "app", "version": version});
        std::fs::write(&request_file, request.to_string()).unwrap();
        // Nothing on stdin: both inputs are files.
        run_stage(
            BINARY,
            &["extensions", &request_arg, "--document", document_flag],
            "",
        )
        .expect_json()
    };
    let created = install("1.5");
    assert_eq!(created.code, 0, "{}", created.stderr);
    assert_eq!(
        created.json,
        json!({"statement": "CREATE EXTENSION IF NOT EXISTS \"pg_trgm\" WITH SCHEMA public VERSION '1.5'"})
    );
    let updated = install("1.6");
    assert_eq!(
        updated.json,
        json!({"statement": "ALTER EXTENSION \"pg_trgm\" UPDATE TO '1.6'"})
    );
    assert_eq!(install("1.6").json, json!({"statement": null}));
    let version: String = server
        .client_for("app")
        .query_one(
            "SELECT extversion FROM pg_extension WHERE extname = 'pg_trgm'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, "1.6");
    let failed = install("9.9");
    failed.failed_with(1, "postgres");
}

#[test]
fn schema_writes_the_dump_to_stdout_and_names_a_missing_database() {
    let server = TestPostgres::start();
    server.psql("CREATE DATABASE shop");
    server
        .client_for("shop")
        .batch_execute("CREATE TABLE public.items (id int PRIMARY KEY, name text)")
        .unwrap();
    let dump = run_stage(
        BINARY,
        &["schema", "--database", "shop"],
        &document(&server),
    );
    assert_eq!(dump.code, 0, "{}", dump.stderr);
    assert!(
        dump.stdout.contains("CREATE TABLE public.items"),
        "{}",
        dump.stdout
    );
    assert!(dump.stdout.contains("PostgreSQL database dump complete"));

    // PGDATABASE is never read as a connection string.
    for database in ["nosuch", "host=/tmp dbname=shop"] {
        let missing = run(&server, &["schema", "--database", database]);
        let error = missing.failed_with(2, "usage");
        assert_eq!(
            error["message"],
            format!("database {database:?} does not exist"),
            "{error}"
        );
    }
}

#[test]
fn installed_extensions_count_versions_over_the_databases() {
    let server = TestPostgres::start();
    server.psql("CREATE DATABASE userdb");
    server
        .client_for("userdb")
        .batch_execute("CREATE EXTENSION pg_trgm")
        .unwrap();
    let scan = run(&server, &["installed-extensions"]);
    assert_eq!(scan.code, 0, "{}", scan.stderr);
    let extensions = scan.json["extensions"].as_array().unwrap();
    let find = |name: &str| {
        extensions
            .iter()
            .find(|entry| entry["extname"] == name)
            .unwrap_or_else(|| panic!("{name} missing: {}", scan.json))
            .clone()
    };
    let trgm = find("pg_trgm");
    assert_eq!(trgm["n_databases"], 1, "{trgm}");
    assert_eq!(trgm["owned_by_superuser"], "1", "{trgm}");
    // postgres, template1 and userdb; template0 does not accept connections.
    assert_eq!(find("plpgsql")["n_databases"], 3);
    // Upstream's field order.
    let keys: Vec<&String> = trgm.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        ["extname", "version", "n_databases", "owned_by_superuser"]
    );
}

#[test]
fn dbs_and_roles_list_every_role_and_database() {
    let server = TestPostgres::start();
    server.psql("CREATE ROLE reader LOGIN PASSWORD 'secret'");
    server.psql("CREATE DATABASE shop OWNER reader");
    let listing = run(&server, &["dbs-and-roles"]);
    assert_eq!(listing.code, 0, "{}", listing.stderr);
    let roles = listing.json["roles"].as_array().unwrap();
    let reader = roles.iter().find(|role| role["name"] == "reader").unwrap();
    assert!(reader["encrypted_password"]
        .as_str()
        .unwrap()
        .starts_with("SCRAM-SHA-256$"));
    let databases = listing.json["databases"].as_array().unwrap();
    let shop = databases
        .iter()
        .find(|database| database["name"] == "shop")
        .unwrap();
    assert_eq!(
        *shop,
        json!({"name": "shop", "owner": "reader", "options": null, "restrict_conn": false, "invalid": false})
    );
    let template0 = databases
        .iter()
        .find(|database| database["name"] == "template0")
        .unwrap();
    assert_eq!(template0["restrict_conn"], true);
}

#[test]
fn bad_input_is_a_usage_error_that_names_what_is_wrong() {
    let server = TestPostgres::start();
    server.psql("CREATE DATABASE app");
    server.psql("CREATE ROLE r1 LOGIN");
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &[
                "grants",
                r#"{"database":"app","schema":"public","role":"r1","privileges":["CREATE","create"]}"#,
            ],
            "usage",
            "privileges[1]: unknown variant `create`",
        ),
        (
            &[
                "grants",
                r#"{"database":"app","schema":"public","privileges":[]}"#,
            ],
            "usage",
            "missing field `role`",
        ),
        (
            &[
                "extensions",
                r#"{"extension":1,"database":"app","version":"1"}"#,
            ],
            "usage",
            "extension: invalid type: integer `1`, expected a string",
        ),
        (
            &["extensions", "{"],
            "usage",
            "the request argument is not a valid request",
        ),
        (
            &["grants", "@-"],
            "usage",
            "the request (@-) and the document cannot both come from stdin",
        ),
        (
            &["grants", "@/nonexistent/request.json"],
            "usage",
            "cannot read the request /nonexistent/request.json",
        ),
        (
            &[
                "installed-extensions",
                "--document",
                "/nonexistent/doc.json",
            ],
            "usage",
            "cannot read the document (--document) /nonexistent/doc.json",
        ),
    ];
    for (args, kind, needle) in cases {
        let failed = run(&server, args);
        let error = failed.failed_with(2, kind);
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(needle), "{args:?}: {message}");
        assert!(!failed.stderr.contains("panicked"), "{}", failed.stderr);
    }
    // The refused request granted nothing (PUBLIC has no CREATE on public since 15).
    assert!(!has_schema_privilege(&server, "r1", "public", "CREATE"));
    let not_a_document = run_stage(BINARY, &["dbs-and-roles"], "{\"spec\": null}").expect_json();
    let error = not_a_document.failed_with(2, "invalid_document");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("no document_version"),
        "{error}"
    );
}

#[test]
fn an_unreachable_postgres_is_a_run_time_failure() {
    let mut server = TestPostgres::start();
    let document = document(&server);
    server.stop_fast();
    let failed = run_stage(BINARY, &["installed-extensions"], &document).expect_json();
    let error = failed.failed_with(1, "postgres");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("connecting to database \"postgres\": "),
        "{message}"
    );
}

/// A directory whose `pg_dump` is a shell script writing its pid to `pid` in the same
/// directory, then running `body`.
fn fake_pg_dump(dir: &TestDir, body: &str) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.path().join("pg_dump");
    let pidfile = dir.path().join("pid");
    std::fs::write(
        &script,
        format!("#!/bin/sh\necho $$ > '{}'\n{body}\n", pidfile.display()),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_pg_dump_that_falls_silent_is_killed_and_the_output_is_marked_incomplete() {
    let server = TestPostgres::start();
    let dir = TestDir::new("pg-catalog-dump");
    fake_pg_dump(&dir, "echo 'CREATE TABLE a ();'\nexec sleep 1000");
    let document = document_with_bin(&server, dir.path()).to_string();
    let (stalled, took) = run_stage_within(
        BINARY,
        &[
            "schema",
            "--database",
            "postgres",
            "--idle-timeout",
            "300ms",
        ],
        &document,
        Duration::from_secs(30),
    );
    assert_eq!(stalled.code, 1, "{}", stalled.stderr);
    assert_eq!(stalled.stdout, "CREATE TABLE a ();\n");
    assert!(
        stalled.stderr.contains("incomplete") && stalled.stderr.contains("wrote nothing for 0.3 s"),
        "{}",
        stalled.stderr
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let pid: i32 = std::fs::read_to_string(dir.path().join("pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let gone = Instant::now();
    assert!(
        wait_for(Duration::from_secs(5), || (!process_alive(pid))
            .then_some(()))
        .is_some(),
        "the silent pg_dump {pid} still runs {:?} after pg-catalog exited",
        gone.elapsed()
    );

    // Silent from the start: no output, the error envelope, exit 1.
    fake_pg_dump(&dir, "exec sleep 1000");
    let (silent, _) = run_stage_within(
        BINARY,
        &[
            "schema",
            "--database",
            "postgres",
            "--idle-timeout",
            "300ms",
        ],
        &document,
        Duration::from_secs(30),
    );
    let error = silent.failed_with(1, "child");
    assert_eq!(
        error["message"],
        "pg_dump wrote nothing for 0.3 s and was killed"
    );
}
