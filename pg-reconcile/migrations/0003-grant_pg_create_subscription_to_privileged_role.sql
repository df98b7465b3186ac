-- PostgreSQL 16 and later: the privileged role may create subscriptions.
DO $migration$
BEGIN
    IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 160000 THEN
        EXECUTE pg_catalog.format('GRANT pg_create_subscription TO %I',
            pg_catalog.current_setting('neon_migration.privileged_role'));
    END IF;
END
$migration$;
