//! Planner cases for the phases after roles and databases (`change_schema_perms`,
//! `create_availability_check`, `pgaudit`), through the same `check` helper.

use serde_json::{json, Value};

use super::*;

const TABLES: &str = "ALTER DEFAULT PRIVILEGES FOR ROLE \"cloud_admin\" IN SCHEMA public GRANT ALL ON TABLES TO \"neon_superuser\" WITH GRANT OPTION";
const SEQUENCES: &str = "ALTER DEFAULT PRIVILEGES FOR ROLE \"cloud_admin\" IN SCHEMA public GRANT ALL ON SEQUENCES TO \"neon_superuser\" WITH GRANT OPTION";

fn with_databases(databases: Value) -> ComputeSpec {
    spec(json!({"roles": [], "databases": databases}), Value::Null)
}

#[test]
fn schema_perms_follow_the_state_of_public() {
    let spec = with_databases(json!([{"name": "d", "owner": "o"}]));
    let mut snap = snapshot(&[("o", None), ("web_access", None)], &[("d", "o")]);
    // Still the admin's, nothing granted: all four.
    snap.schemas.insert(
        "d".into(),
        SchemaState {
            owner: "cloud_admin".into(),
            ..Default::default()
        },
    );
    check(
        &spec,
        &snap,
        &[
            (
                "change_schema_perms",
                "d",
                "ALTER SCHEMA public OWNER TO \"o\"",
            ),
            (
                "change_schema_perms",
                "d",
                "GRANT CREATE ON SCHEMA public TO web_access",
            ),
            ("change_schema_perms", "d", TABLES),
            ("change_schema_perms", "d", SEQUENCES),
        ],
    );
    // zenith_admin's too; before PostgreSQL 15 no web_access grant.
    snap.schemas.get_mut("d").unwrap().owner = "zenith_admin".into();
    snap.server_version = 140009;
    check(
        &spec,
        &snap,
        &[
            (
                "change_schema_perms",
                "d",
                "ALTER SCHEMA public OWNER TO \"o\"",
            ),
            ("change_schema_perms", "d", TABLES),
            ("change_schema_perms", "d", SEQUENCES),
        ],
    );
    // Owned by someone else, defaults present: nothing.
    snap.schemas.insert(
        "d".into(),
        SchemaState {
            owner: "someone".into(),
            web_access_create: true,
            ..schema_done()
        },
    );
    check(&spec, &snap, &[]);
    // No schema public: nothing.
    snap.schemas.insert(
        "d".into(),
        SchemaState {
            public_exists: false,
            ..Default::default()
        },
    );
    check(&spec, &snap, &[]);
}

#[test]
fn schema_perms_skip_the_system_database_and_closed_or_invalid_ones() {
    let spec = with_databases(json!([
        {"name": "postgres", "owner": "cloud_admin"},
        {"name": "closed", "owner": "o"},
        {"name": "broken", "owner": "o"}
    ]));
    let mut snap = snapshot(&[("o", None)], &[("closed", "o"), ("broken", "o")]);
    for name in ["postgres", "closed", "broken"] {
        snap.schemas.insert(name.into(), SchemaState::default());
    }
    if let Some(db) = snap.databases.get_mut("closed") {
        db.allow_conn = false;
    }
    // An invalid database is dropped and created again: then it is a new one.
    if let Some(db) = snap.databases.get_mut("broken") {
        db.invalid = true;
    }
    let steps = plan(&spec, &context(), &snap).unwrap();
    let perms: Vec<&str> = steps
        .iter()
        .filter(|step| step.phase == Phase::ChangeSchemaPerms)
        .map(|step| step.database.as_str())
        .collect();
    assert_eq!(perms, ["broken"]);
}

#[test]
fn schema_perms_quote_names_and_follow_renames() {
    let spec = spec(
        json!({"roles": [], "databases": [{"name": "new\"db", "owner": "o'w\"ner"}]}),
        json!([{"action": "rename_db", "name": "old", "new_name": "new\"db"}]),
    );
    let mut snap = snapshot(&[("o'w\"ner", None)], &[("old", "o'w\"ner")]);
    snap.schemas.insert(
        "old".into(),
        SchemaState {
            owner: "cloud_admin".into(),
            ..schema_done()
        },
    );
    check(
        &spec,
        &snap,
        &[
            (
                "rename_and_delete_databases",
                "postgres",
                "ALTER DATABASE \"old\" RENAME TO \"new\"\"db\"",
            ),
            (
                "change_schema_perms",
                "new\"db",
                "ALTER SCHEMA public OWNER TO \"o'w\"\"ner\"",
            ),
        ],
    );
}

#[test]
fn a_new_database_gets_the_default_privileges() {
    let spec = with_databases(json!([{"name": "fresh", "owner": "o"}]));
    let snap = snapshot(&[("o", None)], &[]);
    let mut expected = vec![
        (
            "create_and_alter_databases",
            "postgres",
            "CREATE DATABASE \"fresh\" OWNER \"o\"",
        ),
        (
            "create_and_alter_databases",
            "postgres",
            "GRANT ALL PRIVILEGES ON DATABASE \"fresh\" TO \"neon_superuser\"",
        ),
    ];
    expected.extend(new_database_perms("fresh"));
    check(&spec, &snap, &expected);
}

/// Before PostgreSQL 15 a new database's `public` is the bootstrap superuser's: when that is
/// the admin user, the plan hands it to the owner at once (else a second apply would).
#[test]
fn a_new_database_before_15_has_its_public_handed_to_the_owner() {
    let spec = with_databases(json!([{"name": "fresh", "owner": "o"}]));
    let mut snap = snapshot(&[("o", None), ("web_access", None)], &[]);
    snap.server_version = 140013;
    snap.bootstrap_superuser = Some("cloud_admin".into());
    let steps = plan(&spec, &context(), &snap).unwrap();
    let perms: Vec<&str> = steps
        .iter()
        .filter(|step| step.phase == Phase::ChangeSchemaPerms)
        .flat_map(|step| step.statements.iter().map(|sql| sql.text.as_str()))
        .collect();
    assert_eq!(
        perms,
        ["ALTER SCHEMA public OWNER TO \"o\"", TABLES, SEQUENCES]
    );
    // Another bootstrap superuser is not the admin's: upstream leaves it.
    snap.bootstrap_superuser = Some("postgres".into());
    let steps = plan(&spec, &context(), &snap).unwrap();
    assert!(!steps
        .iter()
        .flat_map(|step| &step.statements)
        .any(|sql| sql.text.starts_with("ALTER SCHEMA")));
}

#[test]
fn the_availability_check_table_is_created_once() {
    let spec = with_databases(json!([]));
    let mut snap = snapshot(&[], &[]);
    check(&spec, &snap, &[]);
    snap.health_check = false;
    check(
        &spec,
        &snap,
        &[
            ("create_availability_check", "postgres", "CREATE TABLE IF NOT EXISTS public.health_check (id pg_catalog.int4 PRIMARY KEY GENERATED BY DEFAULT AS IDENTITY, updated_at pg_catalog.timestamptz DEFAULT pg_catalog.now())"),
            ("create_availability_check", "postgres", "INSERT INTO public.health_check VALUES (1, pg_catalog.now()) ON CONFLICT (id) DO NOTHING"),
        ],
    );
    // Not on replicas nor with skip_pg_catalog_updates.
    let mut skip = spec.clone();
    skip.skip_pg_catalog_updates = true;
    check(&skip, &snap, &[]);
}

fn audited(level: &str) -> ComputeSpec {
    let mut spec = with_databases(json!([]));
    spec.audit_log_level = serde_json::from_value(json!(level)).unwrap();
    spec
}

#[test]
fn pgaudit_phases_follow_the_audit_level() {
    let mut snap = snapshot(&[], &[]);
    check(&audited("Disabled"), &snap, &[]);
    let off = (
        "pgaudit",
        "postgres",
        "ALTER DATABASE postgres SET pgaudit.log TO 'none'",
    );
    let pgaudit = (
        "pgaudit",
        "postgres",
        "CREATE EXTENSION IF NOT EXISTS pgaudit WITH SCHEMA public",
    );
    let logtofile = (
        "pgaudit",
        "postgres",
        "CREATE EXTENSION IF NOT EXISTS pgauditlogtofile WITH SCHEMA public",
    );
    for level in ["Log", "Base"] {
        check(&audited(level), &snap, &[pgaudit, off]);
    }
    for level in ["Hipaa", "Extended", "Full"] {
        check(&audited(level), &snap, &[pgaudit, logtofile, off]);
    }
    // Installed and set: nothing.
    for name in ["pgaudit", "pgauditlogtofile"] {
        let installed = AvailableExtension {
            default_version: "1".into(),
            installed_version: Some("1".into()),
            ..Default::default()
        };
        snap.extensions.insert(name.into(), installed);
    }
    snap.postgres_audit_off = true;
    check(&audited("Full"), &snap, &[]);
}

#[test]
fn the_later_phases_run_in_upstreams_order() {
    let mut spec = spec(
        json!({"roles": [], "databases": [{"name": "d", "owner": "o"}]}),
        json!([{"action": "delete_role", "name": "gone"}]),
    );
    spec.audit_log_level = serde_json::from_value(json!("Log")).unwrap();
    let mut snap = snapshot(&[("o", None), ("gone", None)], &[("d", "o")]);
    snap.schemas.insert("d".into(), SchemaState::default());
    snap.health_check = false;
    snap.preloaded = vec!["pg_stat_statements".into()];
    snap.extensions
        .insert("pg_stat_statements".into(), AvailableExtension::default());
    snap.extensions
        .insert("neon".into(), AvailableExtension::default());
    let steps = plan(&spec, &context(), &snap).unwrap();
    let mut phases: Vec<&str> = steps.iter().map(|step| step.phase.name()).collect();
    phases.dedup();
    assert_eq!(
        phases,
        [
            "change_schema_perms",
            "handle_other_extensions",
            "handle_neon_extension",
            "create_availability_check",
            "drop_roles",
            "pgaudit"
        ]
    );
}

#[test]
fn neon_installed_elsewhere_is_made_relocatable_and_moved() {
    let spec = with_databases(json!([]));
    let mut snap = snapshot(&[], &[]);
    snap.neon_schema = true;
    let elsewhere = AvailableExtension {
        default_version: "1.6".into(),
        installed_version: Some("1.6".into()),
        schema: Some("public".into()),
        relocatable: false,
    };
    snap.extensions.insert("neon".into(), elsewhere);
    check(
        &spec,
        &snap,
        &[
            ("handle_neon_extension", "postgres", "UPDATE pg_catalog.pg_extension SET extrelocatable = true WHERE extname OPERATOR(pg_catalog.=) 'neon'"),
            ("handle_neon_extension", "postgres", "ALTER EXTENSION neon SET SCHEMA neon"),
        ],
    );
    if let Some(neon) = snap.extensions.get_mut("neon") {
        neon.relocatable = true;
        neon.default_version = "1.7".into();
    }
    check(
        &spec,
        &snap,
        &[
            (
                "handle_neon_extension",
                "postgres",
                "ALTER EXTENSION neon SET SCHEMA neon",
            ),
            (
                "handle_neon_extension",
                "postgres",
                "ALTER EXTENSION neon UPDATE",
            ),
        ],
    );
    if let Some(neon) = snap.extensions.get_mut("neon") {
        neon.schema = Some("neon".into());
        neon.installed_version = Some("1.7".into());
    }
    check(&spec, &snap, &[]);
}
