#!/usr/bin/env bash
# Benchmark pg-reconcile against real PostgreSQL and print a table.
#
#   1. 1,000 roles + 100 databases from empty (md5 and SCRAM passwords), against the floor:
#      the same statements sent by psql (roles in one transaction, then the databases, which
#      cannot run in a transaction block), each on a fresh copy of the same cluster.
#   2. A no-op reconcile of 10,000 roles + 1,000 databases (goal: <= 50 ms, zero statements).
#
# Columns: wall ms = the whole process (start, read the document, work, write it);
# stage ms = the stage's own `config_ms`; planned = statements planned (floor: sent).
#
# Usage: scripts/bench-reconcile.sh   (builds release binaries; needs python3 and psql;
# run as root or as a user that can run postgres). Env: PGBIN, CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
(cd "$ROOT" && cargo build --release -q -p pg-reconcile -p compute-spec-cli)
BIN=$CARGO_TARGET_DIR/release

SMALL=$(mktemp -d /dev/shm/bench-reconcile.XXXXXX)   # small clusters, on tmpfs
BIG=$(mktemp -d /var/tmp/bench-reconcile.XXXXXX)     # the 1,000-database cluster, on disk
RUNNING=""
cleanup() {
    [ -n "$RUNNING" ] && as_pg "$PGBIN/pg_ctl" -D "$RUNNING" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$SMALL" "$BIG"
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ]; then
    chown postgres "$SMALL" "$BIG"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
PORT=$((20000 + RANDOM % 20000))

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# start DATADIR SOCKETDIR: start a cluster for the benchmark (no fsync, no TCP).
start() {
    as_pg "$PGBIN/pg_ctl" -D "$1" -w -l "$1/log" -o "-k $2 -p $PORT -c listen_addresses= \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=20GB \
        -c checkpoint_timeout=1h" start >/dev/null
    RUNNING=$1
}
stop() { as_pg "$PGBIN/pg_ctl" -D "$RUNNING" -m immediate stop >/dev/null; RUNNING=""; }
psql_run() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U cloud_admin "$@" postgres; }

# document SPEC DATADIR: the compute document for SPEC on the running cluster.
document() {
    "$BIN/compute-spec" -S "$1" -D "$2" -b "$PGBIN/postgres" --socket-dir "$SOCK" \
        -C "postgresql://cloud_admin@localhost:$PORT/postgres" 2>/dev/null
}

# reconcile DOC OUT: run the stage; echo "wall_ms config_ms planned applied failures".
reconcile() {
    local t0 t1
    t0=$(now_ms)
    "$BIN/pg-reconcile" <"$1" >"$2" 2>"$2.log" || { cat "$2.log" >&2; exit 1; }
    t1=$(now_ms)
    python3 - "$2" "$((t1 - t0))" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["reconcile"]
print(sys.argv[2], s["config_ms"], len(s["plan"]), s["applied"], len(s["failures"]))
PY
}

# Generate specs and the floor's SQL.
python3 - "$SMALL" "$BIG" <<'PY'
import hashlib, json, sys
small, big = sys.argv[1], sys.argv[2]
scram = ("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$bpSY5Ze9NUH+I35LC3gVq+DpBfK46iXBxvhAKqVu9pE="
         ":VpYlBuxyzeCI1KnctrefdljpB1mk3Gp7sBI/t11+NkQ=")
def spec(roles, dbs, kind):
    pw = lambda n: scram if kind == "scram" else hashlib.md5(("secret" + n).encode()).hexdigest()
    return {"format_version": 1.0, "cluster": {
        "roles": [{"name": f"role{i}", "encrypted_password": pw(f"role{i}")} for i in range(roles)],
        "databases": [{"name": f"db{i}", "owner": f"role{i}"} for i in range(dbs)]}}
def sql(s, out, strategy=""):
    su = ('CREATE ROLE "neon_superuser" CREATEDB CREATEROLE NOLOGIN REPLICATION BYPASSRLS '
          'IN ROLE pg_read_all_data, pg_write_all_data;\n')
    with open(out + "-roles.sql", "w") as f:
        f.write(su)
        for r in s["cluster"]["roles"]:
            p = r["encrypted_password"]
            p = p if p.startswith("SCRAM") else "md5" + p
            f.write(f'CREATE ROLE "{r["name"]}" INHERIT CREATEROLE CREATEDB BYPASSRLS REPLICATION '
                    f'IN ROLE "neon_superuser" LOGIN PASSWORD \'{p}\';\n')
    with open(out + "-dbs.sql", "w") as f:
        for d in s["cluster"]["databases"]:
            f.write(f'CREATE DATABASE "{d["name"]}" {strategy}OWNER "{d["owner"]}";\n'
                    f'GRANT ALL PRIVILEGES ON DATABASE "{d["name"]}" TO "neon_superuser";\n')
for kind in ("md5", "scram"):
    s = spec(1000, 100, kind)
    json.dump(s, open(f"{small}/spec-{kind}.json", "w"))
    sql(s, f"{small}/floor-{kind}")
s = spec(10000, 1000, "md5")
json.dump(s, open(f"{big}/spec.json", "w"))
sql(s, f"{big}/setup", "STRATEGY FILE_COPY ")
PY
chmod -R a+rX "$SMALL" "$BIG"

as_pg "$PGBIN/initdb" -D "$SMALL/template" -U cloud_admin -A trust >/dev/null
SOCK=$SMALL
fresh() { rm -rf "$SMALL/run"; as_pg cp -a "$SMALL/template" "$SMALL/run"; start "$SMALL/run" "$SOCK"; }

printf '%-44s %10s %10s %9s %8s\n' "scenario" "wall ms" "stage ms" "planned" "failed"
for kind in md5 scram; do
    fresh
    t0=$(now_ms)
    psql_run -1 -f "$SMALL/floor-$kind-roles.sql"
    psql_run -f "$SMALL/floor-$kind-dbs.sql"
    t1=$(now_ms)
    stop
    statements=$(cat "$SMALL/floor-$kind-roles.sql" "$SMALL/floor-$kind-dbs.sql" | wc -l)
    printf '%-44s %10s %10s %9s %8s\n' "floor: psql, 1000 roles ($kind) + 100 dbs" "$((t1 - t0))" "-" "$statements" 0
    fresh
    document "$SMALL/spec-$kind.json" "$SMALL/run" >"$SMALL/doc-$kind.json"
    read -r wall config planned applied failed < <(reconcile "$SMALL/doc-$kind.json" "$SMALL/out-$kind.json")
    printf '%-44s %10s %10s %9s %8s\n' "pg-reconcile, 1000 roles ($kind) + 100 dbs" "$wall" "$config" "$planned" "$failed"
    read -r wall config planned applied failed < <(reconcile "$SMALL/doc-$kind.json" "$SMALL/out2-$kind.json")
    printf '%-44s %10s %10s %9s %8s\n' "pg-reconcile again (no-op), $kind" "$wall" "$config" "$planned" "$failed"
    stop
done

# The big cluster: 10,000 roles + 1,000 databases, set up by psql (not timed).
as_pg "$PGBIN/initdb" -D "$BIG/data" -U cloud_admin -A trust >/dev/null
SOCK=$BIG
start "$BIG/data" "$SOCK"
psql_run -1 -f "$BIG/setup-roles.sql"
psql_run -f "$BIG/setup-dbs.sql"
document "$BIG/spec.json" "$BIG/data" >"$BIG/doc.json"
for i in 1 2 3; do
    t0=$(now_ms)
    psql_run -c "SELECT 1" >/dev/null
    t1=$(now_ms)
    printf '%-44s %10s %10s %9s %8s\n' "baseline: psql connect + SELECT 1 (run $i)" "$((t1 - t0))" "-" 1 0
done
for i in 1 2 3 4 5; do
    read -r wall config planned applied failed < <(reconcile "$BIG/doc.json" "$BIG/out.json")
    printf '%-44s %10s %10s %9s %8s\n' "no-op, 10000 roles + 1000 dbs (run $i)" "$wall" "$config" "$planned" "$failed"
done
python3 - "$BIG/out.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["reconcile"]
print("last no-op: " + ", ".join(f"{k} {s[k]} ms" for k in ("connect_ms", "snapshot_ms", "plan_ms", "apply_ms", "config_ms")))
PY
stop
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
