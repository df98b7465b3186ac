//! Work across databases and connections: `delete_role` of a role that owns objects and
//! holds grants in several databases (and a database of its own), per-database work in
//! parallel, and large role/database sets spread over several connections.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common;
use crate::common::{apply_ok, assert_noop, column, spec, user_roles};
use pg_reconcile::Options;
use pg_test_support::TestPostgres;
use serde_json::json;

#[test]
fn delete_role_cleans_every_database_then_drops_it() {
    let pg = TestPostgres::start();
    let setup = spec(
        json!([{"name": "app owner", "encrypted_password": null},
               {"name": "doomed", "encrypted_password": common::SCRAM},
               {"name": "bystander", "encrypted_password": null}]),
        json!([{"name": "one", "owner": "app owner"},
               {"name": "two", "owner": "app owner"},
               {"name": "mine", "owner": "doomed"}]),
        json!([]),
    );
    apply_ok(&pg, &setup);
    for db in ["one", "two", "mine"] {
        pg.client_for(db)
            .batch_execute(
                "CREATE TABLE owned (); ALTER TABLE owned OWNER TO doomed; \
                 CREATE TABLE shared (); GRANT SELECT ON shared TO doomed; \
                 CREATE SCHEMA s AUTHORIZATION doomed; CREATE SEQUENCE s.seq; ALTER SEQUENCE s.seq OWNER TO doomed; \
                 ALTER DEFAULT PRIVILEGES FOR ROLE doomed GRANT SELECT ON TABLES TO bystander",
            )
            .unwrap();
    }
    pg.psql("GRANT CONNECT ON DATABASE one TO doomed");
    let deltas = json!([{"action": "delete_role", "name": "doomed"}]);
    let delete = spec(json!([]), json!([]), deltas);
    let section = apply_ok(&pg, &delete);
    let mut touched: Vec<&str> = section
        .plan
        .iter()
        .filter(|p| p.phase.as_str().starts_with("delete_role_"))
        .map(|p| p.database.as_str())
        .collect();
    touched.dedup();
    assert_eq!(touched, ["postgres", "mine", "one", "two"]);
    assert!(section
        .plan
        .iter()
        .filter(|p| p.phase.as_str().starts_with("delete_role_"))
        .all(|p| p.destructive));
    assert_eq!(user_roles(&pg), ["app owner", "bystander"]);
    // Objects went to the database owner (the admin where the role owned the database).
    for (db, owner) in [
        ("one", "app owner"),
        ("two", "app owner"),
        ("mine", "cloud_admin"),
    ] {
        let owners = column(
            &pg,
            db,
            "SELECT c.relname || ':' || pg_get_userbyid(c.relowner) FROM pg_class c \
             WHERE c.relname IN ('owned', 'seq') ORDER BY 1",
        );
        assert_eq!(
            owners,
            [format!("owned:{owner}"), format!("seq:{owner}")],
            "in {db}"
        );
    }
    let mine = column(
        &pg,
        "postgres",
        "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = 'mine'",
    );
    assert_eq!(mine, ["cloud_admin"]);
    // Replayed after a restart of the control loop: nothing to do, twice.
    assert_noop(&pg, &delete);
    assert_noop(&pg, &delete);
}

#[test]
fn per_database_work_runs_in_parallel_and_with_reconfigure_concurrency() {
    let pg = TestPostgres::start();
    let databases: Vec<_> = (0..6)
        .map(|i| json!({"name": format!("db{i}"), "owner": "o"}))
        .collect();
    let setup = spec(
        json!([{"name": "o", "encrypted_password": null}, {"name": "r", "encrypted_password": null}]),
        json!(databases),
        json!([]),
    );
    apply_ok(&pg, &setup);
    for i in 0..6 {
        pg.client_for(&format!("db{i}"))
            .batch_execute("CREATE TABLE t (); ALTER TABLE t OWNER TO r")
            .unwrap();
    }
    let delete = spec(
        json!([]),
        json!([]),
        json!([{"action": "delete_role", "name": "r"}]),
    );
    let options = Options {
        concurrency: Some(4),
        ..Default::default()
    };
    let section = common::apply_with(&pg, &delete, &options);
    assert!(section.failures.is_empty(), "{:?}", section.failures);
    let per_database = section
        .plan
        .iter()
        .filter(|p| p.phase == "delete_role_references");
    // Reassign, the pre-drop revoke (settings, block), drop owned: in each of 6 databases.
    assert_eq!(per_database.count(), 24);
    assert_eq!(user_roles(&pg), ["o"]);
    let at_startup =
        |options: &Options| pg_reconcile::concurrency_at_startup(&delete, options, Some(100));
    let on_reconfigure =
        |options: &Options| pg_reconcile::concurrency_on_reconfigure(&delete, options);
    assert_eq!(at_startup(&Options::default()), 33);
    assert_eq!(on_reconfigure(&Options::default()), 1);
    assert_eq!(
        on_reconfigure(&Options {
            concurrency: Some(7),
            ..Default::default()
        }),
        7
    );
}

/// SCRAM roles and new databases spread over several connections (the slow-step split),
/// with a failing role among them.
#[test]
fn large_sets_spread_over_connections() {
    let pg = TestPostgres::start();
    let mut roles: Vec<_> = (0..40)
        .map(|i| json!({"name": format!("r{i}"), "encrypted_password": common::SCRAM}))
        .collect();
    roles.push(
        json!({"name": "bad", "encrypted_password": common::SCRAM, "options": [
        {"name": "ROLE", "value": "no_such_role", "vartype": "string"}]}),
    );
    let databases: Vec<_> = (0..24)
        .map(|i| json!({"name": format!("d{i}"), "owner": format!("r{i}")}))
        .collect();
    let wanted = spec(json!(roles), json!(databases), json!([]));
    let options = Options {
        concurrency: Some(4),
        ..Default::default()
    };
    let section = common::apply_with(&pg, &wanted, &options);
    let failed: Vec<&str> = section.failures.iter().map(|f| f.object.as_str()).collect();
    assert_eq!(failed, ["role \"bad\""]);
    assert_eq!(user_roles(&pg).len(), 40);
    assert_eq!(common::user_databases(&pg).len(), 24);
    let section = common::apply_with(&pg, &wanted, &options);
    let planned: Vec<&str> = section.plan.iter().map(|p| p.sql.as_str()).collect();
    assert_eq!(planned.len(), 1, "only the failing role again: {planned:?}");
}

/// More databases than the server has connections (`max_connections = 20`, 60 databases):
/// the first apply and a no-op apply succeed, with the default concurrency and with
/// `--concurrency` far above what the server allows (capped by the server's limit).
#[test]
fn more_databases_than_connections() {
    let pg = TestPostgres::builder()
        .setting("max_connections", 20)
        .start();
    let databases: Vec<_> = (0..60)
        .map(|i| json!({"name": format!("db{i}"), "owner": "o"}))
        .collect();
    let wanted = spec(
        json!([{"name": "o", "encrypted_password": common::SCRAM}]),
        json!(databases),
        json!([]),
    );
    let section = apply_ok(&pg, &wanted);
    assert_eq!(common::user_databases(&pg).len(), 60);
    assert!(section.plan.len() > 120, "{}", section.plan.len());
    // One connection per database per run: the first creates and then fills each one...
    assert_eq!(sessions_per_database(&pg, 1), [1]);
    assert_noop(&pg, &wanted);
    // ... the no-op reads each one.
    assert_eq!(sessions_per_database(&pg, 2), [2]);
    let greedy = Options {
        concurrency: Some(200),
        ..Default::default()
    };
    let section = common::apply_with(&pg, &wanted, &greedy);
    assert!(section.failures.is_empty(), "{:#?}", section.failures);
    assert!(section.plan.is_empty(), "{:#?}", section.plan);
    // The same databases created again by a greedy first apply.
    let pg = TestPostgres::builder()
        .setting("max_connections", 20)
        .start();
    let section = common::apply_with(&pg, &wanted, &greedy);
    assert!(section.failures.is_empty(), "{:#?}", section.failures);
    assert_noop(&pg, &wanted);
}

/// The distinct session counts (`pg_stat_database.sessions`) of the `db…` databases, once
/// every one of them has at least `least` (a session is counted when it ends).
fn sessions_per_database(pg: &TestPostgres, least: i64) -> Vec<i64> {
    let query =
        "SELECT DISTINCT sessions FROM pg_stat_database WHERE datname LIKE 'db%' ORDER BY 1";
    let counts = || -> Vec<i64> {
        pg.client()
            .query(query, &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    let settled = std::time::Duration::from_secs(10);
    pg_test_support::probe::wait_until(settled, || counts().first() >= Some(&least));
    counts()
}
