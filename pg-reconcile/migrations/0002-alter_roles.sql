-- Repair of upstream's INC-110: members of the privileged role inherit its privileges, and
-- no other role (Postgres's own `pg_` roles aside) keeps BYPASSRLS. A superuser is a member
-- of every role, so it is only made INHERIT.
DO $migration$
DECLARE
    privileged pg_catalog.text := pg_catalog.current_setting('neon_migration.privileged_role');
    member pg_catalog.text;
BEGIN
    FOR member IN
        SELECT r.rolname FROM pg_catalog.pg_roles r
        WHERE pg_catalog.pg_has_role(r.oid, privileged::pg_catalog.name, 'member')
    LOOP
        EXECUTE pg_catalog.format('ALTER ROLE %I INHERIT', member);
    END LOOP;
    FOR member IN
        SELECT r.rolname FROM pg_catalog.pg_roles r
        WHERE NOT pg_catalog.pg_has_role(r.oid, privileged::pg_catalog.name, 'member')
          AND NOT pg_catalog.starts_with(r.rolname, 'pg_')
    LOOP
        EXECUTE pg_catalog.format('ALTER ROLE %I NOBYPASSRLS', member);
    END LOOP;
END
$migration$;
