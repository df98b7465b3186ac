//! Stage behaviour on a real Postgres: per-object failures, dry run, the settings block,
//! extensions, the skip flag, and the binary's contract.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;
use std::time::Duration;

use crate::common::{
    apply, apply_ok, apply_with, assert_noop, column, spec, user_databases, user_roles,
};
use compute_spec::pgconf::{MANAGED_BEGIN, MANAGED_END};
use pg_reconcile::Options;
use pg_test_support::{wait_until, TestPostgres};
use serde_json::{json, Value};

#[test]
fn one_failing_object_does_not_stop_the_others() {
    let pg = TestPostgres::start();
    let roles = json!([{"name": "ok1", "encrypted_password": null},
                       {"name": "member_missing", "encrypted_password": null, "options": [
                           {"name": "ROLE", "value": "no_such_role", "vartype": "string"}]},
                       {"name": "ok2", "encrypted_password": null}]);
    let databases = json!([{"name": "good", "owner": "ok1"},
                           {"name": "orphan", "owner": "nobody"},
                           {"name": "good2", "owner": "ok2"}]);
    let bad = spec(roles, databases, json!([]));
    let section = apply(&pg, &bad);
    let failed: Vec<&str> = section.failures.iter().map(|f| f.object.as_str()).collect();
    assert_eq!(failed, ["role \"member_missing\"", "database \"orphan\""]);
    assert!(
        section.failures[0].error.contains("does not exist"),
        "{:?}",
        section.failures
    );
    assert_eq!(user_roles(&pg), ["ok1", "ok2"]);
    assert_eq!(user_databases(&pg), ["good", "good2"]);
    // Through the stage entry point, the error names the objects.
    let mut doc = common::empty_document(&pg);
    doc.spec = Some(bad);
    let error = pg_reconcile::run(doc, &Options::default(), pg_reconcile::startup).unwrap_err();
    assert!(
        error.message.contains("role \"member_missing\""),
        "{}",
        error.message
    );
    assert!(
        error.message.contains("database \"orphan\""),
        "{}",
        error.message
    );
}

#[test]
fn dry_run_plans_without_changing_anything() {
    let pg = TestPostgres::start();
    let conf = pg.data_dir().join("postgresql.conf");
    let before = std::fs::read_to_string(&conf).unwrap();
    let mut wanted = spec(
        json!([{"name": "r", "encrypted_password": common::SCRAM}]),
        json!([{"name": "d", "owner": "r"}]),
        json!([]),
    );
    wanted.cluster.settings = Some(vec![serde_json::from_value(
        json!({"name": "work_mem", "value": "5MB", "vartype": "string"}),
    )
    .unwrap()]);
    let options = Options {
        dry_run: true,
        ..Default::default()
    };
    let section = apply_with(&pg, &wanted, &options);
    assert!(section.dry_run && section.conf_changed);
    assert_eq!(section.applied, 0);
    let plan: Vec<(&str, &str, bool)> = section
        .plan
        .iter()
        .map(|p| (p.phase.as_str(), p.sql.as_str(), p.destructive))
        .collect();
    assert_eq!(
        plan[0],
        ("settings", "SELECT pg_catalog.pg_reload_conf()", false)
    );
    assert!(plan
        .iter()
        .any(|(_, sql, _)| sql.ends_with("LOGIN PASSWORD '********'")));
    let json = serde_json::to_string(&section).unwrap();
    assert!(
        !json.contains("SCRAM-SHA-256$"),
        "a password hash leaked: {json}"
    );
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), before);
    assert!(user_roles(&pg).is_empty());
    assert!(user_databases(&pg).is_empty());
}

/// Waits until a new connection sees `work_mem` as `value` (reload is asynchronous).
fn wait_for_work_mem(pg: &TestPostgres, value: &str) {
    let mut now = Vec::new();
    let reached = wait_until(Duration::from_secs(5), || {
        now = column(pg, "postgres", "SELECT current_setting('work_mem')");
        now == [value]
    });
    assert!(reached, "work_mem is {now:?}, not {value}");
}

fn with_settings(settings: Value) -> compute_spec::spec::ComputeSpec {
    let mut wanted = spec(json!([]), json!([]), json!([]));
    wanted.cluster.settings = Some(serde_json::from_value(settings).unwrap());
    wanted
}

#[test]
fn settings_block_is_rewritten_reloaded_and_restart_needs_reported() {
    let pg = TestPostgres::start();
    let conf = pg.data_dir().join("postgresql.conf");
    let first = with_settings(json!([
        {"name": "work_mem", "value": "5MB", "vartype": "string"},
        {"name": "max_connections", "value": "77", "vartype": "integer"}
    ]));
    let section = apply_ok(&pg, &first);
    assert!(section.conf_changed);
    assert_eq!(section.pending_restart, ["max_connections"]);
    wait_for_work_mem(&pg, "5MB");
    assert_noop(&pg, &first);
    // A changed value replaces the block in place, once.
    let second = with_settings(json!([{"name": "work_mem", "value": "6MB", "vartype": "string"}]));
    let section = apply_ok(&pg, &second);
    assert!(section.conf_changed && section.pending_restart.is_empty());
    wait_for_work_mem(&pg, "6MB");
    let text = std::fs::read_to_string(&conf).unwrap();
    assert_eq!(text.matches(MANAGED_BEGIN).count(), 1);
    assert!(text.contains(&format!(
        "{MANAGED_BEGIN}\nwork_mem = '6MB'\n{MANAGED_END}\n"
    )));
    assert_noop(&pg, &second);
    // A parameter the server does not know is reported: Postgres then ignores the file.
    let unknown =
        with_settings(json!([{"name": "autoprewarm", "value": "off", "vartype": "bool"}]));
    let section = apply_ok(&pg, &unknown);
    assert!(
        section
            .conf_errors
            .iter()
            .any(|e| e.starts_with("autoprewarm:")),
        "{:?}",
        section.conf_errors
    );
    assert!(
        section.conf_changed && section.plan.is_empty(),
        "no reload: {:?}",
        section.plan
    );
    assert_noop(&pg, &unknown);
    // Fixed: the block is rewritten and the file reloaded.
    let section = apply_ok(&pg, &second);
    assert!(section.conf_errors.is_empty() && section.plan.len() == 1);
    assert_noop(&pg, &second);
}

#[test]
fn pg_stat_statements_is_created_when_preloaded() {
    let pg = TestPostgres::builder()
        .setting("shared_preload_libraries", "pg_stat_statements")
        .start();
    let empty = spec(json!([]), json!([]), json!([]));
    let section = apply_ok(&pg, &empty);
    let sql: Vec<&str> = section.plan.iter().map(|p| p.sql.as_str()).collect();
    assert!(sql.contains(&"CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public"));
    assert!(
        !sql.iter().any(|s| s.contains(" neon")),
        "neon is not available here: {sql:?}"
    );
    let installed = column(
        &pg,
        "postgres",
        "SELECT extname::text FROM pg_extension WHERE extname = 'pg_stat_statements'",
    );
    assert_eq!(installed, ["pg_stat_statements"]);
    assert_noop(&pg, &empty);
}

#[test]
fn skip_pg_catalog_updates_touches_no_catalog() {
    let pg = TestPostgres::start();
    let mut skipped = spec(
        json!([{"name": "r", "encrypted_password": null}]),
        json!([]),
        json!([]),
    );
    skipped.skip_pg_catalog_updates = true;
    let section = apply_ok(&pg, &skipped);
    assert!(section.catalog_skipped);
    assert!(section.plan.is_empty());
    assert!(user_roles(&pg).is_empty());
    let privileged = column(
        &pg,
        "postgres",
        "SELECT rolname::text FROM pg_authid WHERE rolname = 'neon_superuser'",
    );
    assert!(privileged.is_empty());
}

fn run_binary(args: &[&str], stdin: &str) -> (i32, Value) {
    let run = pg_test_support::run_stage(env!("CARGO_BIN_EXE_pg-reconcile"), args, stdin);
    assert!(
        !run.stderr.contains("SCRAM-SHA-256$"),
        "a hash leaked to the log: {}",
        run.stderr
    );
    let run = run.expect_json();
    (run.code, run.json)
}

#[test]
fn binary_speaks_the_contract() {
    let pg = TestPostgres::start();
    let doc = common::empty_document(&pg);
    let dir = pg_test_support::TestDir::new("reconcile-spec");
    let spec_file = dir.path().join("spec.json");
    let wanted = json!({"format_version": 1.0, "cluster": {
        "roles": [{"name": "cli role", "encrypted_password": common::SCRAM}],
        "databases": [{"name": "cli db", "owner": "cli role"}]}});
    std::fs::write(&spec_file, wanted.to_string()).unwrap();
    let input = serde_json::to_string(&doc).unwrap();
    let spec_arg = spec_file.to_str().unwrap();
    // --dry-run with --spec and --connstr overrides: the plan, nothing applied.
    let connstr = "postgresql://cloud_admin@localhost/postgres";
    let args = [
        "--dry-run",
        "--spec",
        spec_arg,
        "--connstr",
        connstr,
        "--log-format",
        "json",
    ];
    let (code, out) = run_binary(&args, &input);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["reconcile"]["dry_run"], true);
    let plan = out["reconcile"]["plan"].as_array().unwrap();
    assert_eq!(plan[0]["phase"], "create_privileged_role");
    assert!(user_roles(&pg).is_empty());
    // Applied.
    let (code, out) = run_binary(&["--spec", spec_arg, "--concurrency", "2"], &input);
    assert_eq!(code, 0, "{out}");
    assert_eq!(user_roles(&pg), ["cli role"]);
    assert_eq!(user_databases(&pg), ["cli db"]);
    // A failure: exit 1 with the error envelope naming the object.
    let bad = json!({"format_version": 1.0, "cluster": {"roles": [],
        "databases": [{"name": "x", "owner": "missing owner"}]}});
    std::fs::write(&spec_file, bad.to_string()).unwrap();
    let (code, out) = run_binary(&["--spec", spec_arg], &input);
    assert_eq!(code, 1, "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(message.contains("database \"x\""), "{message}");
    // An earlier stage's error passes through.
    let envelope = r#"{"error":{"stage":"x","kind":"Io","message":"m","retryable":false}}"#;
    let (code, out) = run_binary(&[], envelope);
    assert_eq!((code, out["error"]["stage"].as_str()), (1, Some("x")));
}

/// Postgres clears a password whose md5 is that of the empty string; the reconciler must
/// not try to set it again on every run.
#[test]
fn md5_of_the_empty_password_converges() {
    let pg = TestPostgres::start();
    let empty_md5 =
        json!([{"name": "role0", "encrypted_password": "7018e40b9d81af30a8b22e3cb93d9930"}]);
    let wanted = spec(empty_md5, json!([]), json!([]));
    apply_ok(&pg, &wanted);
    assert_eq!(user_roles(&pg), ["role0"]);
    assert_noop(&pg, &wanted);
}

/// Users' `ALTER DATABASE … SET` (read-only, a tiny statement timeout, a search path) cannot
/// break the reconciler: its connections force their own session options.
#[test]
fn user_database_settings_do_not_break_it() {
    let pg = TestPostgres::start();
    pg.psql("CREATE SCHEMA evil");
    for setting in [
        "statement_timeout = 1",
        "search_path = evil",
        "default_transaction_read_only = on",
    ] {
        pg.psql(&format!("ALTER DATABASE postgres SET {setting}"));
    }
    let wanted = spec(
        json!([{"name": "r", "encrypted_password": null}]),
        json!([{"name": "d", "owner": "r"}]),
        json!([]),
    );
    apply_ok(&pg, &wanted);
    let connstr = format!(
        "{} options='-c statement_timeout=0'",
        pg.connstr("postgres")
    );
    let mut client = postgres::Client::connect(&connstr, postgres::NoTls).unwrap();
    let row = client
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_database WHERE datname = 'd'",
            &[],
        )
        .unwrap();
    assert_eq!(row.get::<_, i64>(0), 1);
    assert_noop(&pg, &wanted);
}

/// A database left invalid by an interrupted `DROP DATABASE` is dropped and, when the spec
/// lists it, created again; objects the spec does not list are never dropped.
#[test]
fn invalid_database_is_recreated_and_unlisted_objects_stay() {
    let pg = TestPostgres::start();
    let wanted = spec(
        json!([{"name": "o", "encrypted_password": null}]),
        json!([{"name": "half", "owner": "o"}]),
        json!([]),
    );
    apply_ok(&pg, &wanted);
    pg.psql("CREATE ROLE unlisted");
    pg.psql("CREATE DATABASE unlisted_db");
    pg.psql("UPDATE pg_database SET datconnlimit = -2 WHERE datname = 'half'");
    let section = apply_ok(&pg, &wanted);
    let phases: Vec<&str> = section.plan.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(
        phases,
        [
            "drop_invalid_databases",
            "create_and_alter_databases",
            "create_and_alter_databases",
            // A recreated database is a new one: its schema public gets the defaults.
            "change_schema_perms",
            "change_schema_perms"
        ]
    );
    let limit = column(
        &pg,
        "postgres",
        "SELECT datconnlimit::text FROM pg_database WHERE datname = 'half'",
    );
    assert_eq!(limit, ["-1"]);
    assert_eq!(user_roles(&pg), ["o", "unlisted"]);
    assert_eq!(user_databases(&pg), ["half", "unlisted_db"]);
    assert_noop(&pg, &spec(json!([]), json!([]), json!([])));
}

/// A run that wrote the file but died before reloading is caught up by the next run: the
/// file is newer than the server's last load.
#[test]
fn a_missed_reload_is_caught_up() {
    let pg = TestPostgres::start();
    let conf = pg.data_dir().join("postgresql.conf");
    let mut text = std::fs::read_to_string(&conf).unwrap();
    text.push_str("work_mem = '9MB'\n");
    // The write must be seen as newer than the server's last load (the file's clock is
    // coarse): write it until its modification time is after `pg_conf_load_time()`.
    let loaded_at: f64 = pg
        .client()
        .query_one("SELECT date_part('epoch', pg_conf_load_time())", &[])
        .unwrap()
        .get(0);
    let newer = wait_until(Duration::from_secs(5), || {
        std::fs::write(&conf, &text).unwrap();
        let modified = std::fs::metadata(&conf).unwrap().modified().unwrap();
        let modified = modified.duration_since(std::time::UNIX_EPOCH).unwrap();
        modified.as_secs_f64() > loaded_at
    });
    assert!(
        newer,
        "postgresql.conf stayed older than the server's last load"
    );
    let empty = spec(json!([]), json!([]), json!([]));
    let section = apply_ok(&pg, &empty);
    let reloads = section
        .plan
        .iter()
        .filter(|p| p.phase == "settings")
        .count();
    assert_eq!(reloads, 1, "{:?}", section.plan);
    wait_for_work_mem(&pg, "9MB");
    assert_noop(&pg, &empty);
}

/// A newer stage's values (a sync `method`, a basebackup `source`, a delta `action` this
/// version does not know) pass through the stage untouched; the unknown delta is ignored.
#[test]
fn a_newer_stages_values_pass_through_untouched() {
    let pg = TestPostgres::start();
    let doc = common::empty_document(&pg);
    let mut input = serde_json::to_value(&doc).unwrap();
    let deltas = json!([{"action": "archive_db", "name": "postgres", "new_name": null}]);
    input["spec"]["delta_operations"] = deltas.clone();
    let sync = json!({"lsn": "0/0", "method": "safekeepers-grpc", "quorum": 3});
    let basebackup = json!({"source": "s3-snapshot", "basebackup_ms": 1, "basebackup_bytes": 2,
                            "attempts": 1, "files": 3, "unpacked_bytes": 4, "layers": 5});
    input["sync_safekeepers"] = sync.clone();
    input["basebackup"] = basebackup.clone();
    let (code, out) = run_binary(&[], &input.to_string());
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["spec"]["delta_operations"], deltas);
    assert_eq!(out["sync_safekeepers"], sync);
    assert_eq!(out["basebackup"], basebackup);
    let plan = out["reconcile"]["plan"].as_array().unwrap();
    assert!(
        plan.iter().all(|step| step["destructive"] == false),
        "{plan:#?}"
    );
    assert_eq!(user_databases(&pg), Vec::<String>::new());
    let databases = column(
        &pg,
        "postgres",
        "SELECT datname::text FROM pg_database WHERE datname = 'postgres'",
    );
    assert_eq!(databases, ["postgres"]);
}
