//! pg-reconcile run by hand on a real Postgres refuses a spec that would take the cluster's
//! own objects (`compute_spec::reserved`) with exit 2 naming the JSON path, before it changes
//! anything: the template database stays, the admin role stays a superuser.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;
use crate::common::{column, spec, user_databases, user_roles};
use pg_test_support::{run_stage, StageRun, TestDir, TestPostgres};
use serde_json::json;

fn run(args: &[&str], document: &compute_spec::ComputeDocument) -> StageRun {
    let input = serde_json::to_string(document).unwrap();
    run_stage(env!("CARGO_BIN_EXE_pg-reconcile"), args, &input).expect_json()
}

fn assert_refused(run: &StageRun, path: &str, name: &str) {
    let error = run.failed_with(compute_spec::exit_code::USAGE, "invalid_spec");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with("invalid spec, nothing was changed: "),
        "{message}"
    );
    assert!(message.contains(&format!("{path}: ")), "{message}");
    assert!(message.contains(&format!("{name:?}")), "{message}");
}

fn databases_named(pg: &TestPostgres, name: &str) -> Vec<String> {
    let sql = format!("SELECT datname::text FROM pg_database WHERE datname = '{name}'");
    column(pg, "postgres", &sql)
}

#[test]
fn delete_db_of_template1_exits_2_and_the_database_stays() {
    let pg = TestPostgres::start();
    let mut document = common::empty_document(&pg);
    document.spec = Some(spec(
        json!([{"name": "bystander", "encrypted_password": null}]),
        json!([{"name": "app", "owner": "bystander"}]),
        json!([{"action": "delete_db", "name": "template1"}]),
    ));
    for args in [&[][..], &["--reconfigure"][..]] {
        let refused = run(args, &document);
        assert_refused(&refused, "delta_operations[0].name", "template1");
        assert_eq!(databases_named(&pg, "template1"), ["template1"]);
        // Nothing else of the spec was applied either.
        assert_eq!(user_roles(&pg), Vec::<String>::new());
        assert_eq!(user_databases(&pg), Vec::<String>::new());
    }
    // A database can still be created from template1 afterwards.
    document.spec = Some(spec(
        json!([{"name": "bystander", "encrypted_password": null}]),
        json!([{"name": "app", "owner": "bystander"}]),
        json!([]),
    ));
    let applied = run(&[], &document);
    assert_eq!(applied.code, 0, "{}", applied.stderr);
    assert_eq!(user_databases(&pg), ["app"]);
}

#[test]
fn a_spec_file_renaming_postgres_is_refused_too() {
    let pg = TestPostgres::start();
    let document = common::empty_document(&pg);
    let dir = TestDir::new("reconcile-reserved");
    let file = dir.path().join("spec.json");
    let wanted = json!({"format_version": 1.0, "cluster": {"roles": [], "databases": []},
        "delta_operations": [{"action": "rename_db", "name": "postgres", "new_name": "gone"}]});
    std::fs::write(&file, wanted.to_string()).unwrap();
    let refused = run(&["--spec", file.to_str().unwrap()], &document);
    assert_refused(&refused, "delta_operations[0].name", "postgres");
    assert_eq!(databases_named(&pg, "postgres"), ["postgres"]);
    assert_eq!(databases_named(&pg, "gone"), Vec::<String>::new());
}

#[test]
fn the_admin_role_of_the_connstr_is_not_demoted() {
    let pg = TestPostgres::start();
    let mut document = common::empty_document(&pg);
    document.spec = Some(spec(
        json!([{"name": "cloud_admin", "encrypted_password": null, "options": [
            {"name": "NOSUPERUSER", "value": null, "vartype": "bool"},
            {"name": "NOLOGIN", "value": null, "vartype": "bool"}]}]),
        json!([]),
        json!([]),
    ));
    let refused = run(&[], &document);
    assert_refused(&refused, "cluster.roles[0].options", "cloud_admin");
    let sql =
        "SELECT rolsuper::text || rolcanlogin::text FROM pg_roles WHERE rolname = 'cloud_admin'";
    assert_eq!(column(&pg, "postgres", sql), ["truetrue"]);
    // The privileged role as a spec role, a builtin name, a rename to the admin.
    document.spec = Some(spec(
        json!([{"name": "neon_superuser"}, {"name": "pg_mine"}]),
        json!([]),
        json!([{"action": "rename_role", "name": "someone", "new_name": "cloud_admin"}]),
    ));
    let refused = run(&[], &document);
    assert_refused(&refused, "cluster.roles[0].name", "neon_superuser");
    assert_refused(&refused, "cluster.roles[1].name", "pg_mine");
    assert_refused(&refused, "delta_operations[0].new_name", "someone");
}
