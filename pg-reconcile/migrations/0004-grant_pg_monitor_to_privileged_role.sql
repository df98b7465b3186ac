-- The privileged role may monitor the server, and grant that on.
GRANT pg_monitor TO {privileged_role} WITH ADMIN OPTION;
