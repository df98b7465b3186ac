-- PostgreSQL 16 and later: the privileged role may export snapshots and log the standby
-- snapshot (for snapshot synchronisation).
DO $migration$
DECLARE
    privileged pg_catalog.text := pg_catalog.current_setting('neon_migration.privileged_role');
BEGIN
    IF pg_catalog.current_setting('server_version_num')::pg_catalog.int4 >= 160000 THEN
        EXECUTE pg_catalog.format(
            'GRANT EXECUTE ON FUNCTION pg_catalog.pg_export_snapshot() TO %I', privileged);
        EXECUTE pg_catalog.format(
            'GRANT EXECUTE ON FUNCTION pg_catalog.pg_log_standby_snapshot() TO %I', privileged);
    END IF;
END
$migration$;
