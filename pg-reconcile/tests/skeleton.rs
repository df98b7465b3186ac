//! Walking skeleton: missing roles and databases are created, and a second run plans nothing.

mod common;

use pg_reconcile::{run, Options};
use pg_test_support::TestPostgres;

#[test]
fn creates_missing_roles_and_databases_then_plans_nothing() {
    let pg = TestPostgres::start();
    let doc = common::document(&pg, &common::fixture("compute_api-cluster_spec.json"));
    let out = run(doc.clone(), &Options::default()).unwrap();
    let section = out.reconcile.unwrap();
    assert!(section.failures.is_empty(), "{:?}", section.failures);
    assert!(section.applied > 0);
    let roles = common::names(
        &pg,
        "SELECT r.rolname::text FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member \
         WHERE m.roleid = 'neon_superuser'::regrole ORDER BY 1",
    );
    assert_eq!(
        roles,
        [
            "\"name\";\\n select 1;",
            "MyRole",
            "alexk",
            "postgres",
            "zen",
            "zenith \"new\""
        ]
    );
    let dbs = common::names(
        &pg,
        "SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database \
         WHERE datname IN ('DB2', 'zenith', 'zen') ORDER BY 1",
    );
    assert_eq!(dbs, ["DB2:alexk", "zen:zen", "zenith:MyRole"]);
    let again = run(doc, &Options::default()).unwrap().reconcile.unwrap();
    assert_eq!(again.plan, vec![], "second run must plan nothing");
}
