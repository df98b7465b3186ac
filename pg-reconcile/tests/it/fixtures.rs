//! Every Neon fixture applied to a fresh instance, checked with catalog queries, then
//! applied again: the second run plans nothing.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common::{apply_ok, assert_noop, column, fixture, sorted, user_databases, user_roles};
use compute_spec::parse::parse_any;
use compute_spec::spec::ComputeSpec;
use pg_test_support::TestPostgres;

const MD5: &str = "6b1d16b78004bbd51fa06af9eda75972";

/// Settings a vanilla server cannot take: `synchronous_standby_names = 'walproposer'` would
/// make every commit wait forever; the others are Neon-only parameters without a prefix,
/// which make Postgres reject the whole file (tested in `settings.rs`).
const NEON_ONLY: [&str; 4] = [
    "synchronous_standby_names",
    "autoprewarm",
    "offload_lfc_interval_seconds",
    "prewarm_lfc_on_startup",
];

/// The fixture's spec, without the [`NEON_ONLY`] settings.
fn fixture_spec(name: &str) -> ComputeSpec {
    let mut spec = parse_any(&fixture(name), name).unwrap().spec.unwrap();
    if let Some(settings) = spec.cluster.settings.as_mut() {
        settings.retain(|s| !NEON_ONLY.contains(&s.name.as_str()));
    }
    spec
}

fn check_cluster_spec(name: &str) {
    let pg = TestPostgres::start();
    let spec = fixture_spec(name);
    let section = apply_ok(&pg, &spec);
    assert!(section.conf_changed);
    assert!(section.conf_errors.is_empty(), "{:?}", section.conf_errors);
    for setting in ["shared_preload_libraries", "port", "wal_level"] {
        assert!(
            section.pending_restart.iter().any(|s| s == setting),
            "{:?}",
            section.pending_restart
        );
    }
    let roles = [
        "\"name\";\\n select 1;",
        "MyRole",
        "alexk",
        "postgres",
        "zen",
        "zenith \"new\"",
    ];
    assert_eq!(user_roles(&pg), sorted(&roles));
    assert_eq!(user_databases(&pg), sorted(&["DB2", "zen", "zenith"]));
    // Upstream's attributes and membership, and the md5 prefix on stored passwords.
    let attributes = column(
        &pg,
        "postgres",
        "SELECT r.rolname || ':' || r.rolinherit || r.rolcreaterole || r.rolcreatedb \
         || r.rolbypassrls || r.rolreplication || r.rolcanlogin || ':' \
         || pg_has_role(r.oid, 'neon_superuser', 'MEMBER') || ':' || coalesce(r.rolpassword, 'null') \
         FROM pg_authid r WHERE rolname IN ('postgres', 'alexk') ORDER BY 1",
    );
    assert_eq!(
        attributes,
        [
            "alexk:truetruetruetruetruetrue:true:null".to_string(),
            format!("postgres:truetruetruetruetruetrue:true:md5{MD5}"),
        ]
    );
    let privileged = column(
        &pg,
        "postgres",
        "SELECT rolcanlogin || ':' || rolcreatedb || rolcreaterole || rolreplication || rolbypassrls \
         || ':' || pg_has_role(oid, 'pg_read_all_data', 'MEMBER') \
         || pg_has_role(oid, 'pg_write_all_data', 'MEMBER') \
         FROM pg_authid WHERE rolname = 'neon_superuser'",
    );
    assert_eq!(privileged, ["false:truetruetruetrue:truetrue"]);
    let databases = column(
        &pg,
        "postgres",
        "SELECT datname || ':' || pg_get_userbyid(datdba) || ':' || datcollate || ':' \
         || has_database_privilege('neon_superuser', oid, 'CREATE') \
         FROM pg_database WHERE datname IN ('DB2', 'zen', 'zenith') ORDER BY 1",
    );
    assert_eq!(databases.len(), 3);
    assert_eq!(databases[0], "DB2:alexk:C:true");
    assert!(databases[1].starts_with("zen:zen:"), "{databases:?}");
    assert!(databases[2].starts_with("zenith:MyRole:"), "{databases:?}");
    assert_noop(&pg, &spec);
}

#[test]
fn compute_api_cluster_spec() {
    check_cluster_spec("compute_api-cluster_spec.json");
}

/// This fixture has duplicate safekeepers, so the spec is invalid for starting a compute;
/// the reconciler does not validate storage settings and applies its catalog part.
#[test]
fn compute_tools_cluster_spec_catalog_part() {
    assert!(fixture_spec("compute_tools-cluster_spec.json")
        .validate()
        .is_err());
    check_cluster_spec("compute_tools-cluster_spec.json");
}

fn check_admin_only_spec(name: &str) {
    let pg = TestPostgres::start();
    let spec = fixture_spec(name);
    apply_ok(&pg, &spec);
    // The only role is the admin itself: its password is set (md5-prefixed), nothing else.
    let password = column(
        &pg,
        "postgres",
        "SELECT rolpassword FROM pg_authid WHERE rolname = 'cloud_admin'",
    );
    assert!(password[0].starts_with("md5b093c0d3b281ba"), "{password:?}");
    assert!(user_roles(&pg).is_empty());
    assert!(user_databases(&pg).is_empty());
    assert_noop(&pg, &spec);
}

#[test]
fn spec_json() {
    check_admin_only_spec("spec.json");
}

#[test]
fn config_json_envelope() {
    check_admin_only_spec("config.json");
}

/// The fixture's deltas act on an instance that has the objects they name, and replaying
/// them (twice) does nothing.
#[test]
fn fixture_deltas_take_effect_once() {
    let pg = TestPostgres::start();
    for sql in [
        "CREATE ROLE \"zenith new\" PASSWORD 'md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'",
        "CREATE ROLE zenith2",
        "CREATE DATABASE \"DB\"",
        "CREATE DATABASE zenith_test OWNER zenith2",
    ] {
        pg.psql(sql);
    }
    let mut owned = pg.client_for("DB");
    owned
        .batch_execute("CREATE TABLE t (); ALTER TABLE t OWNER TO zenith2")
        .unwrap();
    drop(owned);
    let spec = fixture_spec("compute_api-cluster_spec.json");
    let section = apply_ok(&pg, &spec);
    let phases: Vec<&str> = section.plan.iter().map(|p| p.phase.as_str()).collect();
    assert!(
        phases.contains(&"rename_roles") && phases.contains(&"drop_roles"),
        "{phases:?}"
    );
    assert!(!user_roles(&pg).contains(&"zenith2".to_string()));
    assert!(!user_roles(&pg).contains(&"zenith new".to_string()));
    assert_eq!(user_databases(&pg), sorted(&["DB2", "zen", "zenith"]));
    // DB was renamed to DB2 and given to its spec owner; zenith2's table there went to that
    // owner before zenith2 was dropped.
    let tables = column(
        &pg,
        "DB2",
        "SELECT tablename || ':' || tableowner FROM pg_tables WHERE tablename = 't'",
    );
    assert_eq!(tables, ["t:alexk"]);
    assert_noop(&pg, &spec);
    assert_noop(&pg, &spec);
}
