#!/usr/bin/env bash
# Benchmark pg-reconcile against real PostgreSQL and print tables.
#
#   1. 1,000 roles + 100 databases from empty (md5 and SCRAM passwords), against the floor:
#      the same statements sent by psql (roles in one transaction, then the databases, which
#      cannot run in a transaction block), each on a fresh copy of the same cluster.
#   2. 10,000 roles + 1,000 databases from empty, ROUNDS times, on fresh copies of one
#      cluster, the order of the two first applies alternating from round to round: psql sending exactly the statements pg-reconcile plans (taken from
#      `pg-reconcile --dry-run`, the passwords put back from the spec; `\c` to each database
#      its statements run in, runs of statements in one database in one transaction), then
#      pg-reconcile's first apply, then NOOPS no-op applies (goal: 0 statements, <= 1 s).
#      Goal: the first apply <= 1.2x psql (median wall clock).
#
# Columns: wall ms = the whole process (start, read the document, work, write it);
# stage ms = the stage's own `config_ms`; planned = statements planned (psql: sent).
#
# Usage: scripts/bench-reconcile.sh [small|big|all]   (default all; builds release binaries
# of pg-reconcile and compute-spec-cli; needs python3 and psql; run as root or as a user that
# can run postgres). Env: PGBIN, CARGO_TARGET_DIR, ROUNDS (4), NOOPS (3), BENCH_DIR (work
# directories, default target/bench: on disk, ~8 GB per 1,000-database cluster), RECONCILE_ARGS
# (extra pg-reconcile flags, e.g. "--concurrency 4").
set -euo pipefail

WHAT=${1:-all}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
ROUNDS=${ROUNDS:-4}
NOOPS=${NOOPS:-3}
(cd "$ROOT" && cargo build --release -q -p pg-reconcile -p compute-spec-cli)
BIN=$CARGO_TARGET_DIR/release

mkdir -p "${BENCH_DIR:-$ROOT/target/bench}"
WORK=$(mktemp -d "${BENCH_DIR:-$ROOT/target/bench}/reconcile.XXXXXX")
SOCK=$(mktemp -d /dev/shm/bench-reconcile-sock.XXXXXX)   # a short path for the socket
chmod a+rwx "$SOCK"
RUNNING=""
cleanup() {
    [ -n "$RUNNING" ] && as_pg "$PGBIN/pg_ctl" -D "$RUNNING" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$WORK" "$SOCK"
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ]; then
    chown postgres "$WORK"
    chmod a+rx "$WORK" "$(dirname "$WORK")"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
PORT=$((20000 + RANDOM % 20000))

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# start DATADIR: start a cluster for the benchmark (no fsync, no TCP).
start() {
    as_pg "$PGBIN/pg_ctl" -D "$1" -w -l "$1.log" -o "-k $SOCK -p $PORT -c listen_addresses= \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=20GB \
        -c checkpoint_timeout=1h" start >/dev/null
    RUNNING=$1
}
stop() { as_pg "$PGBIN/pg_ctl" -D "$RUNNING" -m immediate stop >/dev/null; RUNNING=""; }
psql_run() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCK" -p "$PORT" -U cloud_admin "$@" postgres; }
# fresh: a new copy of the empty cluster at $WORK/run, started.
# Each timed run starts after a `sync`: the previous run's writes (gigabytes at 1,000
# databases) must not be written back while the next one is timed.
fresh() { rm -rf "$WORK/run"; as_pg cp -a "$WORK/template" "$WORK/run"; start "$WORK/run"; sync; }
drop_run() { stop; rm -rf "$WORK/run"; }

# document SPEC: the compute document for SPEC on the running cluster.
document() {
    "$BIN/compute-spec" -S "$1" -D "$WORK/run" -b "$PGBIN/postgres" --socket-dir "$SOCK" \
        -C "postgresql://cloud_admin@localhost:$PORT/postgres" 2>/dev/null
}

# reconcile DOC OUT [FLAGS]: run the stage; echo "wall_ms config_ms planned applied failures".
reconcile() {
    local doc=$1 out=$2 t0 t1
    shift 2
    t0=$(now_ms)
    # shellcheck disable=SC2086 # RECONCILE_ARGS: extra flags, word-split on purpose.
    "$BIN/pg-reconcile" ${RECONCILE_ARGS:-} "$@" <"$doc" >"$out" 2>"$out.log" || { tail -5 "$out.log" >&2; exit 1; }
    t1=$(now_ms)
    python3 - "$out" "$((t1 - t0))" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["reconcile"]
print(sys.argv[2], s["config_ms"], len(s["plan"]), s["applied"], len(s["failures"]))
PY
}

# backend_cpu: CPU ms the running cluster's exited backends used so far (the postmaster's
# cutime + cstime; a backend counts once reaped).
backend_cpu() {
    sleep 0.3
    awk -v tck="$(getconf CLK_TCK)" '{print int(($16 + $17) * 1000 / tck)}' \
        "/proc/$(head -n 1 "$RUNNING/postmaster.pid")/stat"
}

row() { printf '%-48s %10s %10s %9s %8s\n' "$@"; }

# Specs and the small floor's SQL.
python3 - "$WORK" <<'PY'
import hashlib, json, sys
work = sys.argv[1]
scram = ("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$bpSY5Ze9NUH+I35LC3gVq+DpBfK46iXBxvhAKqVu9pE="
         ":VpYlBuxyzeCI1KnctrefdljpB1mk3Gp7sBI/t11+NkQ=")
def spec(roles, dbs, kind):
    pw = lambda n: scram if kind == "scram" else hashlib.md5(("secret" + n).encode()).hexdigest()
    return {"format_version": 1.0, "cluster": {
        "roles": [{"name": f"role{i}", "encrypted_password": pw(f"role{i}")} for i in range(roles)],
        "databases": [{"name": f"db{i}", "owner": f"role{i}"} for i in range(dbs)]}}
def sql(s, out):
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
            f.write(f'CREATE DATABASE "{d["name"]}" OWNER "{d["owner"]}";\n'
                    f'GRANT ALL PRIVILEGES ON DATABASE "{d["name"]}" TO "neon_superuser";\n')
for kind in ("md5", "scram"):
    s = spec(1000, 100, kind)
    json.dump(s, open(f"{work}/spec-{kind}.json", "w"))
    sql(s, f"{work}/floor-{kind}")
json.dump(spec(10000, 1000, "md5"), open(f"{work}/spec-big.json", "w"))
PY
chmod -R a+rX "$WORK"
as_pg "$PGBIN/initdb" -D "$WORK/template" -U cloud_admin -A trust >/dev/null

if [ "$WHAT" = small ] || [ "$WHAT" = all ]; then
    row "scenario" "wall ms" "stage ms" "planned" "failed"
    for kind in md5 scram; do
        fresh
        t0=$(now_ms)
        psql_run -1 -f "$WORK/floor-$kind-roles.sql"
        psql_run -f "$WORK/floor-$kind-dbs.sql"
        t1=$(now_ms)
        drop_run
        statements=$(cat "$WORK/floor-$kind-roles.sql" "$WORK/floor-$kind-dbs.sql" | wc -l)
        row "floor: psql, 1000 roles ($kind) + 100 dbs" "$((t1 - t0))" "-" "$statements" 0
        fresh
        document "$WORK/spec-$kind.json" >"$WORK/doc-$kind.json"
        read -r wall config planned applied failed < <(reconcile "$WORK/doc-$kind.json" "$WORK/out-$kind.json")
        row "pg-reconcile, 1000 roles ($kind) + 100 dbs" "$wall" "$config" "$planned" "$failed"
        read -r wall config planned applied failed < <(reconcile "$WORK/doc-$kind.json" "$WORK/out2-$kind.json")
        row "pg-reconcile again (no-op), $kind" "$wall" "$config" "$planned" "$failed"
        drop_run
    done
    echo
fi

[ "$WHAT" = big ] || [ "$WHAT" = all ] || exit 0

# The big scenario. psql's statements: pg-reconcile's own plan on an empty cluster.
fresh
document "$WORK/spec-big.json" >"$WORK/doc-big.json"
reconcile "$WORK/doc-big.json" "$WORK/dry-big.json" --dry-run >/dev/null
drop_run
python3 - "$WORK/spec-big.json" "$WORK/dry-big.json" "$WORK/floor-big.sql" <<'PY'
import json, re, sys
spec = json.load(open(sys.argv[1]))
plan = json.load(open(sys.argv[2]))["reconcile"]["plan"]
hashes = {}
for r in spec["cluster"]["roles"]:
    p = r["encrypted_password"]
    hashes[r["name"]] = p if p.startswith(("SCRAM", "md5")) else "md5" + p
role = re.compile(r'^(?:CREATE|ALTER) ROLE "((?:[^"]|"")*)"')
def statement(sql):
    if "PASSWORD '********'" in sql:
        name = role.match(sql).group(1).replace('""', '"')
        sql = sql.replace("PASSWORD '********'", "PASSWORD '%s'" % hashes[name])
    return sql
# Runs of statements in one database; a run opens a transaction unless it has a statement
# that cannot run in one.
runs, db = [], None
for p in plan:
    if p["database"] != db or not runs:
        runs.append((p["database"], []))
        db = p["database"]
    runs[-1][1].append(statement(p["sql"]))
with open(sys.argv[3], "w") as f:
    current = "postgres"
    for database, sqls in runs:
        if database != current:
            f.write('\\c "%s"\n' % database.replace('"', '""'))
            current = database
        blocked = any(re.match(r"(CREATE|DROP) DATABASE", s) for s in sqls)
        if not blocked and len(sqls) > 1:
            f.write("BEGIN;\n")
        for s in sqls:
            f.write(s + ";\n")
        if not blocked and len(sqls) > 1:
            f.write("COMMIT;\n")
print(len(plan), "statements,", sum(1 for d, _ in runs if d != "postgres"), "runs outside postgres",
      file=sys.stderr)
PY
for i in $(seq 0 999); do printf '\\c db%s\nSELECT 1;\n' "$i"; done >"$WORK/connect-each.sql"
echo 'SELECT 1;' >"$WORK/select1.sql"
chmod a+r "$WORK/floor-big.sql" "$WORK/connect-each.sql" "$WORK/select1.sql"

RESULTS=$WORK/results.txt
: >"$RESULTS"
row "scenario (10000 roles + 1000 dbs)" "wall ms" "stage ms" "planned" "failed"
# The big floor: psql sending the same statements on a fresh copy.
psql_round() {
    local round=$1 t0 t1 sent
    fresh
    t0=$(now_ms)
    psql_run -f "$WORK/floor-big.sql" >/dev/null
    t1=$(now_ms)
    drop_run
    sent=$(grep -cv '^\\c\|^BEGIN;$\|^COMMIT;$' "$WORK/floor-big.sql")
    row "psql, same statements (round $round)" "$((t1 - t0))" "-" "$sent" 0
    echo "psql $((t1 - t0))" >>"$RESULTS"
}

# pg-reconcile's first apply on a fresh copy, then its no-ops and the session floors on it.
reconcile_round() {
    local round=$1 t0 t1 cpu0 cpu1 wall config planned applied failed
    fresh
    read -r wall config planned applied failed < <(reconcile "$WORK/doc-big.json" "$WORK/out-big.json")
    row "pg-reconcile first apply (round $round)" "$wall" "$config" "$planned" "$failed"
    echo "first $wall $failed" >>"$RESULTS"
    for i in $(seq 1 "$NOOPS"); do
        cpu0=$(backend_cpu)
        read -r wall config planned applied failed < <(reconcile "$WORK/doc-big.json" "$WORK/noop-big.json")
        cpu1=$(backend_cpu)
        row "pg-reconcile no-op (round $round, run $i)" "$wall" "$config" "$planned" "$failed"
        echo "noop $wall $planned $failed $((cpu1 - cpu0))" >>"$RESULTS"
    done
    # The floor of checking every database: a session each (psql, one after the other).
    cpu0=$(backend_cpu)
    t0=$(now_ms)
    psql_run -f "$WORK/connect-each.sql" >/dev/null
    t1=$(now_ms)
    cpu1=$(backend_cpu)
    row "psql: \\c to each db + SELECT 1 (round $round)" "$((t1 - t0))" "-" 1000 0
    echo "connect $((t1 - t0)) $((cpu1 - cpu0))" >>"$RESULTS"
    # The floor of any check that opens 1,000 sessions side by side: pgbench opening a new
    # session for each of 1,000 `SELECT 1`s, 4 clients at once (nothing of the catalog read).
    t0=$(now_ms)
    "$PGBIN/pgbench" -n -C -c 4 -t 250 -f "$WORK/select1.sql" -h "$SOCK" -p "$PORT" \
        -U cloud_admin postgres >/dev/null
    t1=$(now_ms)
    row "pgbench -C: 1000 sessions, 4 at once (round $round)" "$((t1 - t0))" "-" 1000 0
    echo "sessions $((t1 - t0))" >>"$RESULTS"
    python3 - "$WORK/noop-big.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))["reconcile"]
print("  last no-op: " + ", ".join(f"{k} {s[k]} ms" for k in ("connect_ms", "snapshot_ms", "plan_ms", "apply_ms", "config_ms")))
PY
    drop_run
}

# Rounds alternate which of the two first applies goes first: on these machines a run that
# follows another's gigabytes of writes is slower (the disk's write-back), whatever it is.
for round in $(seq 1 "$ROUNDS"); do
    if [ $((round % 2)) = 1 ]; then
        psql_round "$round"
        reconcile_round "$round"
    else
        reconcile_round "$round"
        psql_round "$round"
    fi
done
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
psql = [int(r[1]) for r in rows if r[0] == "psql"]
first = [int(r[1]) for r in rows if r[0] == "first"]
noop = [int(r[1]) for r in rows if r[0] == "noop"]
noop_cpu = [int(r[4]) for r in rows if r[0] == "noop"]
connect = [int(r[1]) for r in rows if r[0] == "connect"]
connect_cpu = [int(r[2]) for r in rows if r[0] == "connect"]
sessions = [int(r[1]) for r in rows if r[0] == "sessions"]
failed = sum(int(r[2]) for r in rows if r[0] == "first") + sum(int(r[3]) for r in rows if r[0] == "noop")
planned = max(int(r[2]) for r in rows if r[0] == "noop")
mp, mf, mn = statistics.median(psql), statistics.median(first), statistics.median(noop)
print()
print(f"{'median wall ms':<32} {'value':>10} {'ratio to psql':>14} {'goal':>12}")
print(f"{'psql, same statements':<32} {mp:>10.0f} {'1.00':>14} {'':>12}")
print(f"{'pg-reconcile first apply':<32} {mf:>10.0f} {mf / mp:>14.2f} {'<= 1.20':>12}")
print(f"{'pg-reconcile no-op':<32} {mn:>10.0f} {'-':>14} {'<= 1000 ms':>12}")
print(f"{'psql: a session per db, serial':<32} {statistics.median(connect):>10.0f} {'-':>14} {'':>12}")
ms = statistics.median(sessions)
print(f"{'pgbench -C: 1000 sessions, 4 at once':<32} {ms:>10.0f} {'-':>14} {'':>12}")
print(f"no-op / 1000 bare sessions side by side: {mn / ms:.2f}")
print(f"no-op statements planned (max): {planned}; failed statements in all runs: {failed}")
print(f"server CPU of the backends (median ms): no-op {statistics.median(noop_cpu):.0f}, "
      f"psql's session per db + SELECT 1 {statistics.median(connect_cpu):.0f}")
PY
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
