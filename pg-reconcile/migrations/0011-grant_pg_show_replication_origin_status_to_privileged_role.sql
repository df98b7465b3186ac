-- The privileged role may read the replication origins' progress.
GRANT EXECUTE ON FUNCTION pg_catalog.pg_show_replication_origin_status() TO {privileged_role};
