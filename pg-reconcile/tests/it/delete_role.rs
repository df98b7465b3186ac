//! `delete_role` of a role that other roles (not the objects' owners) granted privileges:
//! the pre-drop revoke (`pg_reconcile::revoke`, upstream's neon#10299 fix, extended beyond
//! the tables of schema `public`).

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

use crate::common::{apply, apply_ok, assert_noop, column, spec, user_roles};
use compute_spec::quote::quote_ident;
use pg_test_support::TestPostgres;
use serde_json::json;

/// The owner of the objects grants `WITH GRANT OPTION` to a second role, which grants to the
/// doomed role (tables in `public` and in another schema, a column, a sequence, a schema, the
/// database itself); the doomed role granted on to a third. The delta drops the role, keeps
/// every object and the second role's own privileges, and the cascade takes the third
/// role's. Without the revoke, `DROP ROLE` fails ("privileges for table t").
#[test]
fn delete_role_revokes_what_other_grantors_granted() {
    let pg = TestPostgres::start();
    let (owner, grantor, doomed, heir) = ("app owner", "gr\"antor", "do'omed", "heir");
    let roles = json!([{"name": owner, "encrypted_password": null},
                       {"name": grantor, "encrypted_password": null},
                       {"name": doomed, "encrypted_password": null},
                       {"name": heir, "encrypted_password": null}]);
    let databases = json!([{"name": "app", "owner": owner}]);
    apply_ok(&pg, &spec(roles, databases.clone(), json!([])));
    let (o, g, d, h) = (
        quote_ident(owner),
        quote_ident(grantor),
        quote_ident(doomed),
        quote_ident(heir),
    );
    for db in ["app", "postgres"] {
        pg.client_for(db)
            .batch_execute(&format!(
                "GRANT CREATE ON SCHEMA public TO {o}; GRANT CREATE ON DATABASE {db} TO {o};
                 SET ROLE {o};
                 CREATE TABLE public.t (a int, b int); CREATE SCHEMA other;
                 CREATE TABLE other.u (); CREATE SEQUENCE public.s;
                 GRANT ALL ON public.t, other.u, public.s TO {g} WITH GRANT OPTION;
                 GRANT UPDATE (b) ON public.t TO {g} WITH GRANT OPTION;
                 GRANT USAGE ON SCHEMA other TO {g} WITH GRANT OPTION;
                 SET ROLE {g};
                 GRANT SELECT ON public.t TO {d} WITH GRANT OPTION;
                 GRANT UPDATE (b) ON public.t TO {d};
                 GRANT SELECT ON other.u TO {d};
                 GRANT USAGE ON SEQUENCE public.s TO {d};
                 GRANT USAGE ON SCHEMA other TO {d};
                 SET ROLE {d};
                 GRANT SELECT ON public.t TO {h};
                 RESET ROLE"
            ))
            .unwrap();
    }
    pg.psql(&format!(
        "SET ROLE {o}; GRANT CONNECT ON DATABASE app TO {g} WITH GRANT OPTION; \
         SET ROLE {g}; GRANT CONNECT ON DATABASE app TO {d}; RESET ROLE"
    ));
    let delete = spec(
        json!([]),
        databases,
        json!([{"action": "delete_role", "name": doomed}]),
    );
    let section = apply(&pg, &delete);
    assert!(section.failures.is_empty(), "{:#?}", section.failures);
    assert_eq!(user_roles(&pg), [owner, grantor, heir]);
    for db in ["app", "postgres"] {
        // Objects and the grantor's own privileges stay; the heir's went with the cascade.
        let left = column(
            &pg,
            db,
            &format!(
                "SELECT concat_ws(' ', c.relname, \
                   (SELECT string_agg(DISTINCT a.grantee::regrole::text, ',') \
                    FROM aclexplode(c.relacl) a WHERE a.grantee <> c.relowner), \
                   has_table_privilege({lg}, c.oid, 'SELECT WITH GRANT OPTION')) \
                 FROM pg_class c WHERE c.relname IN ('t', 'u', 's') ORDER BY 1",
                lg = compute_spec::quote::quote_literal(grantor),
            ),
        );
        let only = format!("{} t", quote_ident(grantor));
        assert_eq!(
            left,
            [
                format!("s {only}"),
                format!("t {only}"),
                format!("u {only}")
            ],
            "in {db}"
        );
    }
    // Replayed after a restart of the control loop: nothing to do.
    assert_noop(&pg, &delete);
    assert_noop(&pg, &delete);
}
