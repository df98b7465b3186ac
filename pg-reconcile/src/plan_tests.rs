//! Planner unit tests: each case is (spec, snapshot) → the expected plan, through `check`.

use serde_json::{json, Value};

use super::*;
use crate::schema_perms::SchemaState;
use crate::snapshot::{AvailableExtension, ExistingRole, RoleDependencies};

const MD5: &str = "6b1d16b78004bbd51fa06af9eda75972";
const SCRAM: &str = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy";

fn context() -> PlanContext {
    PlanContext {
        privileged_role: "neon_superuser".into(),
        admin_user: "cloud_admin".into(),
        system_db: "postgres".into(),
        reload: false,
        drop_subscriptions_for: None,
    }
}

fn spec(cluster: Value, deltas: Value) -> ComputeSpec {
    let mut value = json!({"format_version": 1.0, "cluster": cluster});
    if !deltas.is_null() {
        value["delta_operations"] = deltas;
    }
    serde_json::from_value(value).unwrap()
}

/// A snapshot with `neon_superuser`, `cloud_admin`, `postgres`, plus the given roles
/// (name, stored password) and databases (name, owner), PostgreSQL 15, with the phases that
/// do not depend on the spec already done (`public.health_check` exists, every database's
/// schema `public` in the state `change_schema_perms` leaves).
fn snapshot(roles: &[(&str, Option<&str>)], databases: &[(&str, &str)]) -> Snapshot {
    let mut snapshot = Snapshot {
        health_check: true,
        server_version: 150000,
        ..Default::default()
    };
    for (name, password) in [("neon_superuser", None), ("cloud_admin", None)]
        .iter()
        .chain(roles)
    {
        let password = password.map(str::to_string);
        snapshot
            .roles
            .insert(name.to_string(), ExistingRole { password });
    }
    for (name, owner) in [("postgres", "cloud_admin")].iter().chain(databases) {
        let database = ExistingDatabase {
            owner: owner.to_string(),
            allow_conn: true,
            ..Default::default()
        };
        snapshot.databases.insert(name.to_string(), database);
        snapshot.schemas.insert(name.to_string(), schema_done());
    }
    snapshot
}

/// Schema `public` as `change_schema_perms` leaves it (no `web_access`).
fn schema_done() -> SchemaState {
    SchemaState {
        default_tables: true,
        default_sequences: true,
        ..Default::default()
    }
}

/// The `change_schema_perms` statements of a new database, shown as planned.
fn new_database_perms(db: &'static str) -> [(&'static str, &'static str, &'static str); 2] {
    [
        ("change_schema_perms", db, "ALTER DEFAULT PRIVILEGES FOR ROLE \"cloud_admin\" IN SCHEMA public GRANT ALL ON TABLES TO \"neon_superuser\" WITH GRANT OPTION"),
        ("change_schema_perms", db, "ALTER DEFAULT PRIVILEGES FOR ROLE \"cloud_admin\" IN SCHEMA public GRANT ALL ON SEQUENCES TO \"neon_superuser\" WITH GRANT OPTION"),
    ]
}

/// Plans and compares (phase, database, shown SQL) with `expected`.
fn check(spec: &ComputeSpec, snapshot: &Snapshot, expected: &[(&str, &str, &str)]) {
    check_with(spec, &context(), snapshot, expected);
}

fn check_with(
    spec: &ComputeSpec,
    context: &PlanContext,
    snapshot: &Snapshot,
    expected: &[(&str, &str, &str)],
) {
    let steps = plan(spec, context, snapshot).unwrap();
    let actual: Vec<(&str, &str, &str)> = steps
        .iter()
        .flat_map(|step| {
            step.statements.iter().map(|sql| {
                (
                    step.phase.name(),
                    step.database.as_str(),
                    sql.shown.as_str(),
                )
            })
        })
        .collect();
    let expected = with_revokes(expected);
    let expected: Vec<(&str, &str, &str)> = expected
        .iter()
        .map(|(phase, db, sql)| (*phase, *db, sql.as_str()))
        .collect();
    assert_eq!(actual, expected);
}

/// `expected` with the pre-drop revoke (`crate::revoke`, shared objects in the system
/// database's phase) before each `DROP OWNED BY "role"`, as the planner puts it.
fn with_revokes<'a>(expected: &[(&'a str, &'a str, &'a str)]) -> Vec<(&'a str, &'a str, String)> {
    let mut out = Vec::new();
    for &(phase, db, sql) in expected {
        if let Some(role) = sql.strip_prefix("DROP OWNED BY \"") {
            let role = role.trim_end_matches('"');
            let shared = phase == "delete_role_shared_references";
            for revoke in crate::revoke::statements(role, shared) {
                out.push((phase, db, revoke.shown));
            }
        }
        out.push((phase, db, sql.to_string()));
    }
    out
}

#[test]
fn empty_instance_gets_privileged_role_roles_and_databases() {
    let spec = spec(
        json!({"roles": [{"name": "alice", "encrypted_password": MD5},
                         {"name": "bob", "encrypted_password": null,
                          "options": [{"name": "CONNECTION LIMIT", "value": "5", "vartype": "integer"}]}],
               "databases": [{"name": "db", "owner": "alice", "options": [
                   {"name": "LC_COLLATE", "value": "C", "vartype": "string"},
                   {"name": "TEMPLATE", "value": "template0", "vartype": "enum"}]}]}),
        Value::Null,
    );
    let mut empty = snapshot(&[], &[]);
    empty.roles.remove("neon_superuser");
    check(
        &spec,
        &empty,
        &[
            ("create_privileged_role", "postgres", "CREATE ROLE \"neon_superuser\" CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS IN ROLE pg_read_all_data, pg_write_all_data"),
            ("create_and_alter_roles", "postgres", "CREATE ROLE \"alice\" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE \"neon_superuser\" LOGIN PASSWORD '********'"),
            ("create_and_alter_roles", "postgres", "CREATE ROLE \"bob\" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION IN ROLE \"neon_superuser\" CONNECTION LIMIT 5 LOGIN PASSWORD NULL"),
            ("create_and_alter_databases", "postgres", "CREATE DATABASE \"db\" LC_COLLATE 'C' TEMPLATE template0 OWNER \"alice\""),
            ("create_and_alter_databases", "postgres", "GRANT ALL PRIVILEGES ON DATABASE \"db\" TO \"neon_superuser\""),
            ("change_schema_perms", "db", "ALTER DEFAULT PRIVILEGES FOR ROLE \"cloud_admin\" IN SCHEMA public GRANT ALL ON TABLES TO \"neon_superuser\" WITH GRANT OPTION"),
            ("change_schema_perms", "db", "ALTER DEFAULT PRIVILEGES FOR ROLE \"cloud_admin\" IN SCHEMA public GRANT ALL ON SEQUENCES TO \"neon_superuser\" WITH GRANT OPTION"),
        ],
    );
}

#[test]
fn passwords_compare_with_pg_authid() {
    let roles = json!([
        {"name": "md5same", "encrypted_password": MD5},
        {"name": "scramsame", "encrypted_password": SCRAM},
        {"name": "nullsame", "encrypted_password": null},
        {"name": "md5changed", "encrypted_password": MD5},
        {"name": "scramchanged", "encrypted_password": SCRAM},
        {"name": "nowset", "encrypted_password": SCRAM},
        {"name": "nowunset", "encrypted_password": null}
    ]);
    let stored_md5 = format!("md5{MD5}");
    let other = "SCRAM-SHA-256$4096:b3RoZXI=$x:y";
    let snap = snapshot(
        &[
            ("md5same", Some(&stored_md5)),
            ("scramsame", Some(SCRAM)),
            ("nullsame", None),
            ("md5changed", Some("md500000000000000000000000000000000")),
            ("scramchanged", Some(other)),
            ("nowset", None),
            ("nowunset", Some(SCRAM)),
        ],
        &[],
    );
    let spec = spec(json!({"roles": roles, "databases": []}), Value::Null);
    check(
        &spec,
        &snap,
        &[
            (
                "create_and_alter_roles",
                "postgres",
                "ALTER ROLE \"md5changed\" LOGIN PASSWORD '********'",
            ),
            (
                "create_and_alter_roles",
                "postgres",
                "ALTER ROLE \"scramchanged\" LOGIN PASSWORD '********'",
            ),
            (
                "create_and_alter_roles",
                "postgres",
                "ALTER ROLE \"nowset\" LOGIN PASSWORD '********'",
            ),
            (
                "create_and_alter_roles",
                "postgres",
                "ALTER ROLE \"nowunset\" LOGIN PASSWORD NULL",
            ),
        ],
    );
    // The real statement carries the hash, escaped as a literal.
    let steps = plan(&spec, &context(), &snap).unwrap();
    assert_eq!(
        steps[0].statements[0].text,
        "ALTER ROLE \"md5changed\" LOGIN PASSWORD 'md56b1d16b78004bbd51fa06af9eda75972'"
    );
    let hostile = spec_with_password("x'y\\z");
    let steps = plan(&hostile, &context(), &snapshot(&[], &[])).unwrap();
    assert!(steps[0].statements[0]
        .text
        .ends_with("PASSWORD E'md5x''y\\\\z'"));
}

fn spec_with_password(password: &str) -> ComputeSpec {
    spec(
        json!({"roles": [{"name": "r", "encrypted_password": password}], "databases": []}),
        Value::Null,
    )
}

#[test]
fn rename_role_only_when_old_exists_and_new_does_not() {
    let deltas = json!([
        {"action": "rename_role", "name": "old", "new_name": "new"},
        {"action": "rename_role", "name": "missing", "new_name": "other"},
        {"action": "rename_role", "name": "a", "new_name": "b"}
    ]);
    let spec = spec(json!({"roles": [], "databases": []}), deltas);
    let snap = snapshot(&[("old", None), ("a", None), ("b", None)], &[]);
    check(
        &spec,
        &snap,
        &[(
            "rename_roles",
            "postgres",
            "ALTER ROLE \"old\" RENAME TO \"new\"",
        )],
    );
    // Replayed after it took effect: nothing.
    let after = snapshot(&[("new", None), ("a", None), ("b", None)], &[]);
    check(&spec, &after, &[]);
}

#[test]
fn rename_clears_md5_but_keeps_scram() {
    let deltas = json!([
        {"action": "rename_role", "name": "m", "new_name": "m2"},
        {"action": "rename_role", "name": "s", "new_name": "s2"}
    ]);
    let roles = json!([{"name": "m2", "encrypted_password": MD5},
                       {"name": "s2", "encrypted_password": SCRAM}]);
    let spec = spec(json!({"roles": roles, "databases": []}), deltas);
    let stored = format!("md5{MD5}");
    let snap = snapshot(&[("m", Some(&stored)), ("s", Some(SCRAM))], &[]);
    check(
        &spec,
        &snap,
        &[
            (
                "rename_roles",
                "postgres",
                "ALTER ROLE \"m\" RENAME TO \"m2\"",
            ),
            (
                "rename_roles",
                "postgres",
                "ALTER ROLE \"s\" RENAME TO \"s2\"",
            ),
            (
                "create_and_alter_roles",
                "postgres",
                "ALTER ROLE \"m2\" LOGIN PASSWORD '********'",
            ),
        ],
    );
}

#[test]
fn privileged_role_is_never_altered_renamed_or_dropped() {
    let deltas = json!([
        {"action": "rename_role", "name": "neon_superuser", "new_name": "x"},
        {"action": "delete_role", "name": "neon_superuser"}
    ]);
    let roles = json!([{"name": "neon_superuser", "encrypted_password": MD5}]);
    let spec = spec(json!({"roles": roles, "databases": []}), deltas);
    check(&spec, &snapshot(&[], &[]), &[]);
}

#[test]
fn database_deltas_are_idempotent() {
    let deltas = json!([
        {"action": "delete_db", "name": "gone"},
        {"action": "rename_db", "name": "before", "new_name": "after"},
        {"action": "rename_db", "name": "a", "new_name": "taken"},
        {"action": "delete_db", "name": "postgres"}
    ]);
    let spec = spec(json!({"roles": [], "databases": []}), deltas);
    let snap = snapshot(
        &[],
        &[("gone", "x"), ("before", "x"), ("a", "x"), ("taken", "x")],
    );
    check(
        &spec,
        &snap,
        &[
            (
                "rename_and_delete_databases",
                "postgres",
                "DROP DATABASE IF EXISTS \"gone\" WITH (FORCE)",
            ),
            (
                "rename_and_delete_databases",
                "postgres",
                "ALTER DATABASE \"before\" RENAME TO \"after\"",
            ),
        ],
    );
    let after = snapshot(&[], &[("after", "x"), ("a", "x"), ("taken", "x")]);
    check(&spec, &after, &[]);
}

#[test]
fn delete_db_clears_template_flag_and_drops_subscriptions() {
    let deltas = json!([{"action": "delete_db", "name": "t"}]);
    let spec = spec(json!({"roles": [], "databases": []}), deltas);
    let mut snap = snapshot(&[], &[("t", "x")]);
    snap.databases.get_mut("t").unwrap().is_template = true;
    snap.subscriptions.push(("t".into(), "sub".into()));
    snap.subscriptions.push(("other".into(), "keep".into()));
    check(
        &spec,
        &snap,
        &[
            ("drop_subscriptions", "t", crate::subscriptions::LOCK),
            (
                "drop_subscriptions",
                "t",
                "ALTER SUBSCRIPTION \"sub\" DISABLE",
            ),
            (
                "drop_subscriptions",
                "t",
                "ALTER SUBSCRIPTION \"sub\" SET (slot_name = NONE)",
            ),
            ("drop_subscriptions", "t", "DROP SUBSCRIPTION \"sub\""),
            (
                "rename_and_delete_databases",
                "postgres",
                "ALTER DATABASE \"t\" IS_TEMPLATE false",
            ),
            (
                "rename_and_delete_databases",
                "postgres",
                "DROP DATABASE IF EXISTS \"t\" WITH (FORCE)",
            ),
        ],
    );
}

#[test]
fn invalid_databases_are_dropped_then_recreated() {
    let databases = json!([{"name": "half", "owner": "o"}]);
    let spec = spec(json!({"roles": [], "databases": databases}), Value::Null);
    let mut snap = snapshot(&[("o", None)], &[("half", "o")]);
    snap.databases.get_mut("half").unwrap().invalid = true;
    check(
        &spec,
        &snap,
        &[
            (
                "drop_invalid_databases",
                "postgres",
                "DROP DATABASE IF EXISTS \"half\"",
            ),
            (
                "create_and_alter_databases",
                "postgres",
                "CREATE DATABASE \"half\" OWNER \"o\"",
            ),
            (
                "create_and_alter_databases",
                "postgres",
                "GRANT ALL PRIVILEGES ON DATABASE \"half\" TO \"neon_superuser\"",
            ),
        ],
    );
}

#[test]
fn owner_changes_when_different() {
    let databases = json!([{"name": "d", "owner": "new"}, {"name": "same", "owner": "o"}]);
    let spec = spec(json!({"roles": [], "databases": databases}), Value::Null);
    let snap = snapshot(&[], &[("d", "old"), ("same", "o")]);
    check(
        &spec,
        &snap,
        &[(
            "create_and_alter_databases",
            "postgres",
            "ALTER DATABASE \"d\" OWNER TO \"new\"",
        )],
    );
}

#[test]
fn delete_role_reassigns_in_every_database_it_touches() {
    let deltas = json!([{"action": "delete_role", "name": "r"},
                        {"action": "delete_role", "name": "ghost"}]);
    let roles = json!([{"name": "r", "encrypted_password": null}]);
    let spec = spec(json!({"roles": roles, "databases": []}), deltas);
    let mut snap = snapshot(
        &[("r", None), ("o", None)],
        &[("a", "o"), ("b", "r"), ("c", "o")],
    );
    snap.role_dependencies.insert(
        "r".into(),
        RoleDependencies {
            databases: ["a".to_string(), "b".to_string(), "nolonger".to_string()].into(),
            shared: false,
        },
    );
    check(
        &spec,
        &snap,
        &[
            (
                "delete_role_shared_references",
                "postgres",
                "REASSIGN OWNED BY \"r\" TO \"cloud_admin\"",
            ),
            (
                "delete_role_shared_references",
                "postgres",
                "DROP OWNED BY \"r\"",
            ),
            (
                "delete_role_references",
                "a",
                "REASSIGN OWNED BY \"r\" TO \"o\"",
            ),
            ("delete_role_references", "a", "DROP OWNED BY \"r\""),
            (
                "delete_role_references",
                "b",
                "REASSIGN OWNED BY \"r\" TO \"cloud_admin\"",
            ),
            ("delete_role_references", "b", "DROP OWNED BY \"r\""),
            ("drop_roles", "postgres", "DROP ROLE IF EXISTS \"r\""),
        ],
    );
    assert!(plan(&spec, &context(), &snap)
        .unwrap()
        .iter()
        .filter(|step| step.phase >= Phase::DeleteRoleSharedReferences)
        .all(|step| step.statements.iter().all(|sql| sql.destructive)));
    // Replayed after the role is gone: nothing.
    check(&spec, &snapshot(&[("o", None)], &[("a", "o")]), &[]);
}

#[test]
fn extensions_only_when_available_and_preloaded() {
    let spec = spec(json!({"roles": [], "databases": []}), Value::Null);
    let mut snap = snapshot(&[], &[]);
    let available = AvailableExtension {
        default_version: "1.10".into(),
        installed_version: None,
        ..Default::default()
    };
    snap.extensions
        .insert("pg_stat_statements".into(), available.clone());
    check(&spec, &snap, &[]);
    snap.preloaded = vec!["pg_stat_statements".into()];
    snap.extensions.insert("neon".into(), available);
    check(
        &spec,
        &snap,
        &[
            (
                "handle_other_extensions",
                "postgres",
                "CREATE EXTENSION IF NOT EXISTS pg_stat_statements WITH SCHEMA public",
            ),
            (
                "handle_neon_extension",
                "postgres",
                "CREATE SCHEMA IF NOT EXISTS neon",
            ),
            (
                "handle_neon_extension",
                "postgres",
                "CREATE EXTENSION IF NOT EXISTS neon WITH SCHEMA neon",
            ),
        ],
    );
    snap.neon_schema = true;
    for ext in snap.extensions.values_mut() {
        ext.installed_version = Some("1.9".into());
    }
    check(
        &spec,
        &snap,
        &[(
            "handle_neon_extension",
            "postgres",
            "ALTER EXTENSION neon UPDATE",
        )],
    );
}

#[test]
fn skip_flag_and_replicas_plan_only_the_reload() {
    let roles = json!([{"name": "r", "encrypted_password": null}]);
    let mut skipped = spec(json!({"roles": roles, "databases": []}), Value::Null);
    skipped.skip_pg_catalog_updates = true;
    let reload = [("settings", "postgres", "SELECT pg_catalog.pg_reload_conf()")];
    let changed = PlanContext {
        reload: true,
        ..context()
    };
    check_with(&skipped, &changed, &snapshot(&[], &[]), &reload);
    let mut replica = skipped.clone();
    replica.skip_pg_catalog_updates = false;
    replica.mode = ComputeMode::Replica;
    check_with(&replica, &changed, &snapshot(&[], &[]), &reload);
}

#[test]
fn jwks_roles_are_created_without_privileges() {
    let mut spec = spec(
        json!({"roles": [{"name": "jwt", "encrypted_password": null}], "databases": []}),
        Value::Null,
    );
    spec.local_proxy_config = serde_json::from_value(json!({"jwks": [{"id": "1",
        "role_names": ["jwt"], "jwks_url": "http://x", "provider_name": "p"}]}))
    .unwrap();
    check(
        &spec,
        &snapshot(&[], &[]),
        &[(
            "create_and_alter_roles",
            "postgres",
            "CREATE ROLE \"jwt\" LOGIN PASSWORD NULL",
        )],
    );
}

#[test]
fn a_role_also_deleted_is_not_created() {
    let deltas = json!([{"action": "delete_role", "name": "r"}]);
    let roles = json!([{"name": "r", "encrypted_password": null}]);
    let spec = spec(json!({"roles": roles, "databases": []}), deltas);
    check(&spec, &snapshot(&[], &[]), &[]);
}

#[test]
fn delete_role_follows_renamed_databases() {
    let deltas = json!([{"action": "rename_db", "name": "DB", "new_name": "DB2"},
                        {"action": "delete_role", "name": "r"}]);
    let spec = spec(json!({"roles": [], "databases": []}), deltas);
    let mut snap = snapshot(&[("r", None)], &[("DB", "o")]);
    snap.role_dependencies.insert(
        "r".into(),
        RoleDependencies {
            databases: ["DB".to_string()].into(),
            shared: false,
        },
    );
    check(
        &spec,
        &snap,
        &[
            (
                "rename_and_delete_databases",
                "postgres",
                "ALTER DATABASE \"DB\" RENAME TO \"DB2\"",
            ),
            (
                "delete_role_references",
                "DB2",
                "REASSIGN OWNED BY \"r\" TO \"o\"",
            ),
            ("delete_role_references", "DB2", "DROP OWNED BY \"r\""),
            ("drop_roles", "postgres", "DROP ROLE IF EXISTS \"r\""),
        ],
    );
}

#[path = "phases_tests.rs"]
mod phases;
