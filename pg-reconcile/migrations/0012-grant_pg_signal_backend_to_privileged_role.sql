-- The privileged role may signal other backends (cancel, terminate), and grant that on.
GRANT pg_signal_backend TO {privileged_role} WITH ADMIN OPTION;
