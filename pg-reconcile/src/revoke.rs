//! The pre-drop revoke of `delete_role` (upstream's `pre_drop_role_revoke_privileges.sql`,
//! neon#10299): privileges that roles *other than* the doomed role granted to it.
//!
//! `DROP OWNED BY r`, run by a superuser, revokes as the owner of each object, so it removes
//! the owner's grants to `r` but not the grant a second role `b` made (`b` holding the
//! privilege `WITH GRANT OPTION`); `DROP ROLE r` then fails ("privileges for table t"). Each
//! such grant is revoked as its grantor: `SET LOCAL ROLE b; REVOKE ALL … FROM r CASCADE`
//! (`CASCADE`: what `r` granted on from it goes too), then `SET LOCAL ROLE NONE`.
//!
//! Upstream does this for the tables of schema `public` only; we do it for every object
//! with a privilege list in the database — tables, views, sequences and their columns in
//! every schema, schemas, routines, types, languages, large objects, foreign-data wrappers
//! and servers — and, in the system database's step, for the shared ones (databases,
//! tablespaces), because any of them blocks the drop in the same way.
//!
//! The block's body is constant: the role's name travels in the transaction-local setting
//! [`ROLE_SETTING`] (a literal made by `compute_spec::quote`), never pasted into the body.
//! Grants are found when the block runs, so a grant that an earlier revoke cascaded away is
//! not looked for; a revoke the grantor can no longer make ("permission denied": its grant
//! went with an earlier cascade) is skipped inside its own subtransaction. A grantor that is
//! a superuser *now* cannot be revoked as (Postgres acts as the owner for superusers): such a
//! grant survives and the later `DROP ROLE` names it.

use compute_spec::quote::Literal;

use crate::step::Sql;

/// The transaction-local setting holding the name of the role being dropped.
pub const ROLE_SETTING: &str = "pg_reconcile.doomed_role";
/// The transaction-local setting saying whether shared objects are revoked too (`on` in the
/// system database's step only: shared catalogs are changed once).
pub const SHARED_SETTING: &str = "pg_reconcile.doomed_shared";

/// Every object of the database (with `shared`, also the shared ones) whose privilege list
/// names the doomed role as grantee and another role as grantor: (grantor, what to revoke).
const GRANTS: &str = "\
SELECT DISTINCT pg_catalog.pg_get_userbyid(x.grantor) AS grantor, x.target
FROM (
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON %s %I.%I',
         CASE WHEN c.relkind OPERATOR(pg_catalog.=) 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
         n.nspname, c.relname) AS target
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    CROSS JOIN LATERAL pg_catalog.aclexplode(c.relacl) a
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL (%I) ON TABLE %I.%I',
         t.attname, n.nspname, c.relname)
    FROM pg_catalog.pg_attribute t
    JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.attrelid
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
    CROSS JOIN LATERAL pg_catalog.aclexplode(t.attacl) a
    WHERE t.attacl IS NOT NULL AND NOT t.attisdropped
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON SCHEMA %I', n.nspname)
    FROM pg_catalog.pg_namespace n CROSS JOIN LATERAL pg_catalog.aclexplode(n.nspacl) a
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON ROUTINE %I.%I(%s)', n.nspname,
         p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid))
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) p.pronamespace
    CROSS JOIN LATERAL pg_catalog.aclexplode(p.proacl) a
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON TYPE %I.%I', n.nspname, t.typname)
    FROM pg_catalog.pg_type t
    JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) t.typnamespace
    CROSS JOIN LATERAL pg_catalog.aclexplode(t.typacl) a
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON LANGUAGE %I', l.lanname)
    FROM pg_catalog.pg_language l CROSS JOIN LATERAL pg_catalog.aclexplode(l.lanacl) a
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON LARGE OBJECT %s', m.oid)
    FROM pg_catalog.pg_largeobject_metadata m
    CROSS JOIN LATERAL pg_catalog.aclexplode(m.lomacl) a
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON FOREIGN DATA WRAPPER %I', w.fdwname)
    FROM pg_catalog.pg_foreign_data_wrapper w
    CROSS JOIN LATERAL pg_catalog.aclexplode(w.fdwacl) a
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON FOREIGN SERVER %I', s.srvname)
    FROM pg_catalog.pg_foreign_server s CROSS JOIN LATERAL pg_catalog.aclexplode(s.srvacl) a
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON DATABASE %I', d.datname)
    FROM pg_catalog.pg_database d CROSS JOIN LATERAL pg_catalog.aclexplode(d.datacl) a
    WHERE shared
  UNION ALL
  SELECT a.grantor, a.grantee, pg_catalog.format('ALL ON TABLESPACE %I', s.spcname)
    FROM pg_catalog.pg_tablespace s CROSS JOIN LATERAL pg_catalog.aclexplode(s.spcacl) a
    WHERE shared
) x
WHERE x.grantee OPERATOR(pg_catalog.=) doomed AND x.grantor OPERATOR(pg_catalog.<>) doomed
ORDER BY 1, 2";

/// The two statements that revoke, as their grantors, the privileges other roles granted to
/// `role` in the database the step runs in (`shared`: also on databases and tablespaces):
/// the settings, then the block. They go between `REASSIGN OWNED` and `DROP OWNED`.
pub fn statements(role: &str, shared: bool) -> Vec<Sql> {
    let settings = format!(
        "SELECT pg_catalog.set_config({}, {}, true), pg_catalog.set_config({}, {}, true)",
        Literal(ROLE_SETTING),
        Literal(role),
        Literal(SHARED_SETTING),
        Literal(if shared { "on" } else { "off" }),
    );
    vec![Sql::destructive(settings), Sql::destructive(block())]
}

/// The constant `DO` block: for each (grantor, object) of [`GRANTS`], revoke as the grantor.
fn block() -> String {
    format!(
        "DO $pg_reconcile$
DECLARE
  doomed pg_catalog.oid;
  shared pg_catalog.bool := pg_catalog.current_setting('{SHARED_SETTING}')::pg_catalog.bool;
  item record;
BEGIN
  SELECT r.oid INTO doomed FROM pg_catalog.pg_roles r
    WHERE r.rolname OPERATOR(pg_catalog.=) pg_catalog.current_setting('{ROLE_SETTING}');
  IF doomed IS NULL THEN RETURN; END IF;
  FOR item IN {GRANTS} LOOP
    BEGIN
      EXECUTE pg_catalog.format('SET LOCAL ROLE %I', item.grantor);
      EXECUTE pg_catalog.format('REVOKE %s FROM %I CASCADE', item.target,
                                pg_catalog.current_setting('{ROLE_SETTING}'));
      SET LOCAL ROLE NONE;
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE NOTICE 'not revoked as %: % (%)', item.grantor, item.target, SQLERRM;
    END;
  END LOOP;
END
$pg_reconcile$"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_travels_as_a_literal_never_in_the_body() {
        let hostile = "r'); DROP TABLE x; --$pg_reconcile$";
        let sql = statements(hostile, false);
        assert_eq!(sql.len(), 2);
        assert!(sql[0]
            .text
            .contains("'r''); DROP TABLE x; --$pg_reconcile$'"));
        assert!(sql[0].text.ends_with("'off', true)"));
        assert_eq!(sql[1].text, statements("other", true)[1].text);
        assert!(!sql[1].text.contains("DROP TABLE"));
        assert!(sql.iter().all(|sql| sql.destructive));
        assert!(statements("r", true)[0].text.ends_with("'on', true)"));
    }
}
