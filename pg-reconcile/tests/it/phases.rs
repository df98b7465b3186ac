//! The phases after roles and databases on a real Postgres: schema `public` of each spec
//! database (owner, `web_access`, default privileges, hostile names), the availability
//! check's table, the real `pgaudit` and `pgauditlogtofile` extensions, and the one log line
//! for the `neon` extension missing on vanilla Postgres; where a (stand-in) `neon` is
//! available, `handle_other_extensions` then `handle_neon_extension` create, move and update it.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;
use crate::common::{apply_ok, assert_noop, column, spec};
use compute_spec::quote::quote_ident;
use pg_test_support::TestPostgres;
use serde_json::json;

fn truth(pg: &TestPostgres, db: &str, sql: &str) -> bool {
    pg.client_for(db).query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn schema_public_is_given_to_the_owner_with_default_privileges() {
    let pg = TestPostgres::start();
    let names = [("d", "o"), ("we\"ird db'", "o'w\"ner")];
    for (db, owner) in names {
        // As an instance upstream left half-done: public still the admin's.
        pg.psql(&format!("CREATE ROLE {} LOGIN", quote_ident(owner)));
        pg.psql(&format!("CREATE DATABASE {}", quote_ident(db)));
        pg.client_for(db)
            .batch_execute("ALTER SCHEMA public OWNER TO cloud_admin")
            .unwrap();
    }
    pg.psql("CREATE ROLE web_access NOLOGIN");
    let roles = json!([{"name": "o", "encrypted_password": null},
                       {"name": "o'w\"ner", "encrypted_password": null},
                       {"name": "web_access", "encrypted_password": null}]);
    let databases = json!([{"name": "d", "owner": "o"},
                           {"name": "we\"ird db'", "owner": "o'w\"ner"}]);
    let wanted = spec(roles, databases, json!([]));
    let section = apply_ok(&pg, &wanted);
    let perms = section
        .plan
        .iter()
        .filter(|p| p.phase.as_str() == "change_schema_perms")
        .count();
    // Two per database fewer before PostgreSQL 15: no `web_access` grant (PUBLIC may create).
    let expected = if pg.major() >= 15 { 8 } else { 6 };
    assert_eq!(perms, expected, "{:#?}", section.plan);
    for (db, owner) in names {
        let public_owner = column(
            &pg,
            db,
            "SELECT pg_get_userbyid(nspowner)::text FROM pg_namespace WHERE nspname = 'public'",
        );
        assert_eq!(public_owner, [owner]);
        assert!(truth(
            &pg,
            db,
            "SELECT has_schema_privilege('web_access', 'public', 'CREATE')"
        ));
        // What the admin creates there is the privileged role's, grantable.
        pg.client_for(db)
            .batch_execute("CREATE TABLE public.t (id int); CREATE SEQUENCE public.s")
            .unwrap();
        for privilege in [
            "SELECT",
            "INSERT",
            "UPDATE",
            "DELETE",
            "TRUNCATE",
            "REFERENCES",
            "TRIGGER",
        ] {
            let sql = format!(
                "SELECT has_table_privilege('neon_superuser', 'public.t', '{privilege} WITH GRANT OPTION')"
            );
            assert!(truth(&pg, db, &sql), "{privilege} in {db}");
        }
        for privilege in ["USAGE", "SELECT", "UPDATE"] {
            let sql = format!(
                "SELECT has_sequence_privilege('neon_superuser', 'public.s', '{privilege} WITH GRANT OPTION')"
            );
            assert!(truth(&pg, db, &sql), "{privilege} on the sequence in {db}");
        }
    }
    assert_noop(&pg, &wanted);
}

#[test]
fn a_database_created_by_the_plan_gets_its_defaults_and_the_second_run_nothing() {
    let pg = TestPostgres::start();
    let wanted = spec(
        json!([{"name": "o", "encrypted_password": null}]),
        json!([{"name": "fresh", "owner": "o"}]),
        json!([]),
    );
    apply_ok(&pg, &wanted);
    // PostgreSQL 15's public belongs to pg_database_owner: left alone.
    let owner = column(
        &pg,
        "fresh",
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = 'public'",
    );
    assert_eq!(owner, ["pg_database_owner"]);
    pg.client_for("fresh")
        .batch_execute("CREATE TABLE public.t (id int)")
        .unwrap();
    assert!(truth(
        &pg,
        "fresh",
        "SELECT has_table_privilege('neon_superuser', 'public.t', 'DELETE WITH GRANT OPTION')"
    ));
    assert_noop(&pg, &wanted);
}

#[test]
fn the_availability_check_table_is_created_with_its_row_once() {
    let pg = TestPostgres::start();
    let empty = spec(json!([]), json!([]), json!([]));
    apply_ok(&pg, &empty);
    let rows = column(
        &pg,
        "postgres",
        "SELECT id::text FROM public.health_check ORDER BY id",
    );
    assert_eq!(rows, ["1"]);
    pg.psql("UPDATE public.health_check SET updated_at = '2001-01-01'");
    assert_noop(&pg, &empty);
    let kept = column(
        &pg,
        "postgres",
        "SELECT extract(year FROM updated_at)::text FROM public.health_check",
    );
    assert_eq!(kept, ["2001"], "the row is written only at creation");
}

fn audited(level: &str) -> compute_spec::spec::ComputeSpec {
    let mut wanted = spec(json!([]), json!([]), json!([]));
    wanted.audit_log_level = serde_json::from_value(json!(level)).unwrap();
    wanted
}

fn extensions(pg: &TestPostgres) -> Vec<String> {
    column(
        pg,
        "postgres",
        "SELECT e.extname::text || ' in ' || n.nspname::text FROM pg_extension e \
         JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname LIKE 'pgaudit%' ORDER BY 1",
    )
}

fn postgres_audit_setting(pg: &TestPostgres) -> Vec<String> {
    column(
        pg,
        "postgres",
        "SELECT array_to_string(s.setconfig, ',') FROM pg_db_role_setting s \
         JOIN pg_database d ON d.oid = s.setdatabase \
         WHERE d.datname = 'postgres' AND s.setrole = 0",
    )
}

#[test]
fn log_level_installs_pgaudit_and_silences_database_postgres() {
    let pg = TestPostgres::builder()
        .setting("shared_preload_libraries", "pgaudit")
        .start();
    let wanted = audited("Log");
    let section = apply_ok(&pg, &wanted);
    let last: Vec<&str> = section
        .plan
        .iter()
        .map(|p| p.phase.as_str())
        .rev()
        .take(2)
        .collect();
    assert_eq!(last, ["pgaudit", "pgaudit"], "the audit phase is last");
    assert_eq!(extensions(&pg), ["pgaudit in public"]);
    assert_eq!(postgres_audit_setting(&pg), ["pgaudit.log=none"]);
    assert_noop(&pg, &wanted);
}

#[test]
fn hipaa_level_adds_pgauditlogtofile() {
    let pg = TestPostgres::builder()
        .setting("shared_preload_libraries", "pgaudit,pgauditlogtofile")
        .start();
    let wanted = audited("Hipaa");
    apply_ok(&pg, &wanted);
    assert_eq!(
        extensions(&pg),
        ["pgaudit in public", "pgauditlogtofile in public"]
    );
    assert_eq!(postgres_audit_setting(&pg), ["pgaudit.log=none"]);
    assert_noop(&pg, &wanted);
    // Disabled: nothing planned, nothing removed.
    assert_noop(&pg, &audited("Disabled"));
}

#[test]
fn vanilla_postgres_skips_the_neon_extension_with_one_log_line() {
    let pg = TestPostgres::start();
    let mut doc = common::empty_document(&pg);
    doc.spec = Some(spec(json!([]), json!([]), json!([])));
    let stdin = serde_json::to_string(&doc).unwrap();
    let output =
        pg_test_support::run_with_stdin(env!("CARGO_BIN_EXE_pg-reconcile"), &["--dry-run"], &stdin);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr
            .matches("the neon extension is not available")
            .count(),
        1,
        "{stderr}"
    );
    // The dry run shows the phases it would run.
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let phases: Vec<&str> = out["reconcile"]["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"create_availability_check"), "{phases:?}");
}

#[test]
fn pgaudit_not_preloaded_fails_that_object_only() {
    let pg = TestPostgres::start();
    let mut doc = common::empty_document(&pg);
    doc.spec = Some(audited("Log"));
    let section = pg_reconcile::startup(&doc, &pg_reconcile::Options::default()).unwrap();
    let failed: Vec<(&str, &str)> = section
        .failures
        .iter()
        .map(|f| (f.object.as_str(), f.error.as_str()))
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0].0, "extension \"pgaudit\"");
    assert!(
        failed[0].1.contains("shared_preload_libraries"),
        "{failed:?}"
    );
    // The rest of the phase still ran.
    assert_eq!(postgres_audit_setting(&pg), ["pgaudit.log=none"]);
}

/// A server whose private extension directory has a stand-in `neon` (1.0 and 1.1, default
/// 1.1, not relocatable, as the real one), with `pg_stat_statements` preloaded.
fn with_neon() -> TestPostgres {
    TestPostgres::builder()
        .setting("shared_preload_libraries", "pg_stat_statements")
        .neon_stand_in(false)
        .start()
}

fn neon_state(pg: &TestPostgres) -> Vec<String> {
    column(
        pg,
        "postgres",
        "SELECT e.extname::text || ' ' || e.extversion || ' in ' || n.nspname::text \
         FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
         WHERE e.extname IN ('neon', 'pg_stat_statements') ORDER BY 1",
    )
}

/// The phases of a `--dry-run` of `spec` on `pg`, in plan order, without repeats.
fn dry_run_phases(pg: &TestPostgres, spec: &compute_spec::spec::ComputeSpec) -> Vec<String> {
    let mut doc = common::empty_document(pg);
    doc.spec = Some(spec.clone());
    let stdin = serde_json::to_string(&doc).unwrap();
    let output =
        pg_test_support::run_with_stdin(env!("CARGO_BIN_EXE_pg-reconcile"), &["--dry-run"], &stdin);
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("the neon extension is not available"),
        "{stderr}"
    );
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut phases: Vec<String> = out["reconcile"]["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap().to_string())
        .collect();
    phases.dedup();
    phases
}

#[test]
fn where_the_server_has_neon_it_is_created_in_schema_neon_after_the_other_extensions() {
    let pg = with_neon();
    let wanted = spec(json!([]), json!([]), json!([]));
    let later: Vec<String> = dry_run_phases(&pg, &wanted)
        .into_iter()
        .skip_while(|phase| phase != "handle_other_extensions")
        .collect();
    assert_eq!(
        later,
        [
            "handle_other_extensions",
            "handle_neon_extension",
            "create_availability_check"
        ],
        "upstream's order"
    );
    let section = apply_ok(&pg, &wanted);
    assert!(section
        .plan
        .iter()
        .all(|p| p.phase.is_known() && !p.phase.as_str().is_empty()));
    assert_eq!(
        neon_state(&pg),
        ["neon 1.1 in neon", "pg_stat_statements 1.10 in public"]
    );
    assert_noop(&pg, &wanted);
}

#[test]
fn an_older_neon_elsewhere_is_moved_to_schema_neon_and_updated() {
    let pg = with_neon();
    pg.psql("CREATE EXTENSION neon VERSION '1.0' SCHEMA public");
    let wanted = spec(json!([]), json!([]), json!([]));
    let section = apply_ok(&pg, &wanted);
    let neon_sql: Vec<&str> = section
        .plan
        .iter()
        .filter(|p| p.phase.as_str() == "handle_neon_extension")
        .map(|p| p.sql.as_str())
        .collect();
    assert_eq!(
        neon_sql,
        [
            "CREATE SCHEMA IF NOT EXISTS neon",
            "UPDATE pg_catalog.pg_extension SET extrelocatable = true \
             WHERE extname OPERATOR(pg_catalog.=) 'neon'",
            "ALTER EXTENSION neon SET SCHEMA neon",
            "ALTER EXTENSION neon UPDATE",
        ]
    );
    assert_eq!(
        neon_state(&pg),
        ["neon 1.1 in neon", "pg_stat_statements 1.10 in public"]
    );
    assert_eq!(
        column(&pg, "postgres", "SELECT neon.neon_stand_in()"),
        ["1.1"]
    );
    assert_noop(&pg, &wanted);
}
