//! Hostile specs against a real Postgres: lines injected into `postgresql.conf` through
//! settings, SQL injected through role and database options, and password hashes in the
//! server log when a batch fails. Each attack is refused before anything changes, and what
//! is legitimate still works.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;
use crate::common::{apply_ok, column, spec, user_databases, user_roles};
use compute_spec::error::ErrorKind;
use compute_spec::spec::{ComputeSpec, GenericOption};
use pg_reconcile::{startup, Options};
use pg_test_support::TestPostgres;
use serde_json::json;

fn setting(name: &str, value: &str, vartype: &str) -> GenericOption {
    GenericOption {
        name: name.to_string(),
        value: Some(value.to_string()),
        vartype: vartype.into(),
    }
}

fn with_settings(settings: Vec<GenericOption>) -> ComputeSpec {
    let mut wanted = spec(json!([]), json!([]), json!([]));
    wanted.cluster.settings = Some(settings);
    wanted
}

/// Reconciles and returns the set-up error (the test fails if there is none).
fn refused(pg: &TestPostgres, wanted: &ComputeSpec) -> compute_spec::StageError {
    let mut doc = common::empty_document(pg);
    doc.spec = Some(wanted.clone());
    match startup(&doc, &Options::default()) {
        Ok(section) => panic!("reconciled a hostile spec: {section:#?}"),
        Err(error) => error,
    }
}

fn show(pg: &TestPostgres, name: &str) -> String {
    column(pg, "postgres", &format!("SHOW {name}")).remove(0)
}

#[test]
fn settings_cannot_inject_lines_into_postgresql_conf() {
    let pg = TestPostgres::start();
    let conf = pg.data_dir().join("postgresql.conf");
    let before = std::fs::read_to_string(&conf).unwrap();
    let attacks = [
        (
            setting("work_mem", "5\nstatement_timeout = 4321", "integer"),
            "cluster.settings[0].value",
        ),
        (
            setting("statement_timeout = 4321\nwork_mem", "64MB", "integer"),
            "cluster.settings[0].name",
        ),
        (
            setting("application_name", "x\nstatement_timeout = 4321", "string"),
            "cluster.settings[0].value",
        ),
        (
            setting("include_if_exists", "/etc/passwd", "string"),
            "cluster.settings[0].name",
        ),
        (
            setting("work_mem", "5 # and more", "integer"),
            "cluster.settings[0].value",
        ),
    ];
    for (attack, field) in attacks {
        let wanted = with_settings(vec![attack.clone()]);
        let error = refused(&pg, &wanted);
        assert_eq!(error.kind, ErrorKind::InvalidSpec, "{}", error.message);
        assert_eq!(error.kind.exit_code(), 2);
        assert!(
            error.message.contains(field),
            "{attack:?}: {}",
            error.message
        );
        // compute-spec's validation refuses it too, naming the same field.
        let errors = wanted.validate().unwrap_err();
        assert_eq!(errors.0[0].field, field, "{attack:?}");
    }
    assert_eq!(std::fs::read_to_string(&conf).unwrap(), before);
    pg.client()
        .batch_execute("SELECT pg_reload_conf()")
        .unwrap();
    assert_eq!(show(&pg, "statement_timeout"), "0");
}

#[test]
fn every_accepted_value_form_loads_in_a_real_postgres() {
    let pg = TestPostgres::start();
    let wanted = with_settings(vec![
        setting("work_mem", "64 MB", "integer"),
        setting("maintenance_work_mem", "0x10000", "integer"),
        setting("temp_buffers", "1.5MB", "integer"),
        setting("statement_timeout", "10s", "integer"),
        setting("lock_timeout", "+2min", "integer"),
        setting("log_min_duration_statement", "-1", "integer"),
        setting("random_page_cost", "1.5", "real"),
        setting("seq_page_cost", ".5", "real"),
        setting("cpu_tuple_cost", "2e-2", "real"),
        setting("default_transaction_isolation", "repeatable read", "enum"),
        setting("password_encryption", "scram-sha-256", "enum"),
        setting("jit", "of", "bool"),
        setting("enable_seqscan", "No", "bool"),
        setting("application_name", "it's a \\ test", "string"),
        setting("search_path", "\"$user\", public", "string"),
    ]);
    let section = apply_ok(&pg, &wanted);
    assert!(section.conf_errors.is_empty(), "{:?}", section.conf_errors);
    let errors = column(
        &pg,
        "postgres",
        "SELECT name || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let expected = [
        ("work_mem", "64MB"),
        ("maintenance_work_mem", "64MB"),
        ("temp_buffers", "1536kB"),
        ("statement_timeout", "10s"),
        ("lock_timeout", "2min"),
        ("log_min_duration_statement", "-1"),
        ("random_page_cost", "1.5"),
        ("seq_page_cost", "0.5"),
        ("cpu_tuple_cost", "0.02"),
        ("default_transaction_isolation", "repeatable read"),
        ("password_encryption", "scram-sha-256"),
        ("jit", "off"),
        ("enable_seqscan", "off"),
        ("search_path", "\"$user\", public"),
    ];
    for (name, value) in expected {
        assert_eq!(show(&pg, name), value, "{name}");
    }
    let application_name = column(
        &pg,
        "postgres",
        "SELECT setting FROM pg_file_settings WHERE name = 'application_name' AND applied",
    );
    assert_eq!(application_name, ["it's a \\ test"]);
}

#[test]
fn role_and_database_options_cannot_inject_sql() {
    let pg = TestPostgres::start();
    let role_attacks = [
        (
            json!({"name": "CONNECTION LIMIT 3; CREATE ROLE x; --", "value": null, "vartype": "integer"}),
            "cluster.roles[0].options[0].name",
        ),
        (
            json!({"name": "CONNECTION LIMIT", "value": "3; CREATE ROLE x; --", "vartype": "integer"}),
            "cluster.roles[0].options[0].value",
        ),
        (
            json!({"name": "LOGIN; CREATE ROLE x; --", "value": null, "vartype": "bool"}),
            "cluster.roles[0].options[0].name",
        ),
        (
            json!({"name": "IN ROLE pg_monitor; CREATE ROLE x; --", "value": null, "vartype": "string"}),
            "cluster.roles[0].options[0].name",
        ),
        (
            json!({"name": "PASSWORD", "value": "plain text", "vartype": "string"}),
            "cluster.roles[0].options[0].name",
        ),
    ];
    for (option, field) in role_attacks {
        let roles = json!([{"name": "victim", "encrypted_password": null, "options": [option]}]);
        let wanted = spec(roles, json!([]), json!([]));
        let error = refused(&pg, &wanted);
        assert_eq!(error.kind, ErrorKind::InvalidSpec);
        assert!(error.message.contains(field), "{option}: {}", error.message);
        assert!(error.message.contains("victim"), "{}", error.message);
        let errors = wanted.validate().unwrap_err();
        assert_eq!(errors.0[0].field, field, "{option}");
        assert!(errors.0[0].message.contains("\"victim\""), "{errors}");
    }
    let database_attacks = [
        (
            json!({"name": "CONNECTION LIMIT 1 OWNER x; --", "value": null, "vartype": "integer"}),
            "cluster.databases[0].options[0].name",
        ),
        (
            json!({"name": "OWNER", "value": "x", "vartype": "string"}),
            "cluster.databases[0].options[0].name",
        ),
    ];
    for (option, field) in database_attacks {
        let databases = json!([{"name": "d", "owner": "cloud_admin", "options": [option]}]);
        let wanted = spec(json!([]), databases, json!([]));
        let error = refused(&pg, &wanted);
        assert!(error.message.contains(field), "{option}: {}", error.message);
        assert_eq!(wanted.validate().unwrap_err().0[0].field, field);
    }
    // A text argument is a quoted literal: accepted, and it names a template that does not
    // exist, so only that database fails.
    let databases = json!([{"name": "d", "owner": "cloud_admin", "options": [
        {"name": "TEMPLATE", "value": "template0; CREATE ROLE x; --", "vartype": "enum"}]}]);
    let wanted = spec(json!([]), databases, json!([]));
    wanted.validate().unwrap();
    let section = common::apply(&pg, &wanted);
    assert_eq!(section.failures.len(), 1, "{:#?}", section.failures);
    assert!(
        section.failures[0]
            .sql
            .contains("TEMPLATE 'template0; CREATE ROLE x; --'"),
        "{:#?}",
        section.failures
    );
    assert!(user_roles(&pg).is_empty(), "{:?}", user_roles(&pg));
    assert!(user_databases(&pg).is_empty(), "{:?}", user_databases(&pg));
}

#[test]
fn legitimate_options_apply_and_alter_leaves_out_create_only_ones() {
    let pg = TestPostgres::start();
    let roles = |password: &str| {
        json!([{"name": "r", "encrypted_password": password, "options": [
            {"name": "connection limit", "value": "3", "vartype": "integer"},
            {"name": "VALID UNTIL", "value": "infinity", "vartype": "string"},
            {"name": "ADMIN cloud_admin", "value": null, "vartype": "string"}]}])
    };
    let databases = json!([{"name": "d", "owner": "r", "options": [
        {"name": "TEMPLATE", "value": "template0", "vartype": "enum"},
        {"name": "ENCODING", "value": "UTF8", "vartype": "string"},
        {"name": "LC_COLLATE", "value": "C", "vartype": "string"},
        {"name": "LC_CTYPE", "value": "C", "vartype": "string"},
        {"name": "CONNECTION LIMIT", "value": "5", "vartype": "integer"},
        {"name": "ALLOW_CONNECTIONS", "value": "on", "vartype": "bool"},
        {"name": "IS_TEMPLATE", "value": "false", "vartype": "bool"}]}]);
    let first = spec(
        roles("6b1d16b78004bbd51fa06af9eda75972"),
        databases.clone(),
        json!([]),
    );
    first.validate().unwrap();
    apply_ok(&pg, &first);
    let role = column(
        &pg,
        "postgres",
        "SELECT rolconnlimit || ' ' || coalesce(rolvaliduntil::text, '') || ' ' || \
         (SELECT count(*) FROM pg_auth_members WHERE roleid = 'r'::regrole \
          AND member = 'cloud_admin'::regrole AND admin_option) FROM pg_roles WHERE rolname = 'r'",
    );
    assert_eq!(role, ["3 infinity 1"]);
    let database = column(
        &pg,
        "postgres",
        "SELECT datconnlimit || ' ' || datcollate || ' ' || pg_encoding_to_char(encoding) \
         FROM pg_database WHERE datname = 'd'",
    );
    assert_eq!(database, ["5 C UTF8"]);
    // A new password alters the existing role: `ADMIN` is not an ALTER ROLE option and is
    // left out, the rest applies.
    let second = spec(roles(common::SCRAM), databases, json!([]));
    let section = apply_ok(&pg, &second);
    let altered: Vec<&str> = section.plan.iter().map(|p| p.sql.as_str()).collect();
    assert_eq!(
        altered,
        ["ALTER ROLE \"r\" CONNECTION LIMIT 3 VALID UNTIL 'infinity' LOGIN PASSWORD '********'"]
    );
}

#[test]
fn password_hashes_never_reach_the_server_log_when_a_batch_fails() {
    // Statement logging on, so the sessions' own settings must silence it.
    let pg = TestPostgres::builder()
        .setting("log_statement", "all")
        .setting("log_min_duration_statement", "0")
        .setting("log_min_messages", "info")
        .start();
    let md5 = "0123456789abcdef0123456789abcdef";
    let roles = json!([
        {"name": "a", "encrypted_password": common::SCRAM},
        {"name": "member_missing", "encrypted_password": md5, "options": [
            {"name": "ROLE", "value": "no_such_role", "vartype": "string"}]},
        {"name": "b", "encrypted_password": md5},
    ]);
    let section = common::apply(&pg, &spec(roles, json!([]), json!([])));
    // The batch failed on the missing member and was rerun one by one.
    assert_eq!(section.failures.len(), 1, "{:#?}", section.failures);
    assert_eq!(user_roles(&pg), ["a", "b"]);
    let log = std::fs::read_to_string(pg.dir().join("postgres.log")).unwrap();
    assert!(
        log.contains("no_such_role"),
        "the failure is not logged:\n{log}"
    );
    let salt = common::SCRAM.split('$').nth(1).unwrap();
    for secret in [md5, salt, "SCRAM-SHA-256$"] {
        assert!(
            !log.contains(secret),
            "{secret} is in the server log:\n{log}"
        );
    }
    assert!(
        !log.contains("PASSWORD"),
        "a statement is in the log:\n{log}"
    );
}
