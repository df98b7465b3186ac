#!/usr/bin/env bash
# A compute by hand: the stages piped in a shell, exactly what compute-ctl does.
#
#   PATH=$PWD/target/debug:$PATH docs/examples/pipeline.sh /tmp/pg1 [spec.json]
#
# Without a spec file it uses the embedded sample (initdb, roles app_owner and app_reader,
# databases app and analytics, port 55432). It brings Postgres up, applies the spec once
# Postgres is ready, prints the roles, then stops Postgres with a fast shutdown.
# tests/tests/it/contracts.rs runs this file as written.
set -euo pipefail
work=${1:?usage: pipeline.sh WORKDIR [SPEC]}
mkdir -p "$work"
if [ -n "${2:-}" ]; then spec=(-S "$2"); else spec=(--embedded-default); fi

# 1. Load and validate the spec, decide the start LSN, build PGDATA: one document flows through.
compute-spec "${spec[@]}" -D "$work/pgdata" -C postgresql://cloud_admin@localhost/postgres \
    | pg-sync-safekeepers \
    | pg-basebackup-fetch > "$work/doc.json"

# 2. Start Postgres under the supervisor; its stdout is one JSON event per line.
pg-supervise < "$work/doc.json" > "$work/events.jsonl" &
supervisor=$!
until grep -q '"event":"ready"' "$work/events.jsonl"; do
    kill -0 "$supervisor" 2>/dev/null || { cat "$work/events.jsonl"; exit 1; }
    sleep 0.05
done

# 3. Make the running Postgres match the spec: --dry-run prints the plan, then apply.
pg-reconcile --dry-run < "$work/doc.json" > "$work/plan.json"
pg-reconcile < "$work/doc.json" > "$work/reconciled.json"

# 4. Look at the result through the instance's socket directory (from the document).
socket_dir=$(sed -E 's/.*"socket_dir":"([^"]*)".*/\1/' "$work/doc.json")
port=$(sed -E 's/.*"instance":\{"port":([0-9]+).*/\1/' "$work/doc.json")
psql -XAt -h "$socket_dir" -p "$port" -U cloud_admin -d postgres \
    -c "select rolname from pg_roles where rolname like 'app%' order by 1"

# 5. Stop: SIGTERM is a fast shutdown; the supervisor exits with Postgres's exit code.
kill -TERM "$supervisor"
wait "$supervisor"
