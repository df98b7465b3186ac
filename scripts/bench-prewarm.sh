#!/usr/bin/env bash
# Benchmark of LFC prewarm on vanilla Postgres (pg_buffercache → endpoint storage → pg_prewarm):
# pgbench select-only throughput in the first seconds after a restart, without and with a
# prewarm, in the same run.
#
# Usage: scripts/bench-prewarm.sh [SCALE]   (pgbench scale; 68 ≈ 1 GiB, the default)
# Env:   DURATION (seconds of pgbench after each restart, default 10), CLIENTS (default 4),
#        RUNS (restart triples, default 3), BENCH_DIR (default /var/tmp/compute-tools-bench-prewarm,
#        on disk: the data must be evictable from the page cache),
#        PGBIN (default the newest /usr/lib/postgresql/*/bin), PROFILE (debug|release, default
#        debug: the time is Postgres's), CARGO_TARGET_DIR.
#
# What runs: a local primary (initdb, pgbench -i); compute-ctl with the real stages and a spec
# cloning it as a writable Primary (`upstream_connstring`) with shared_buffers large enough for
# the whole database; an endpoint-storage stand-in (python, in memory, checking the bearer
# token). First start: pgbench -S warms the cache, then POST /lfc/offload. Then RUNS times, each
# after a restart (a fresh clone: empty shared buffers) whose data files are then synced and
# evicted from the OS page cache (POSIX_FADV_DONTNEED), so a buffer miss is a disk read:
#   cold:       pgbench -S for DURATION s at once;
#   concurrent: POST /lfc/prewarm and pgbench -S for DURATION s at once (the prewarm runs
#               during the measurement: the first DURATION s after the restart, prewarm on);
#   after:      POST /lfc/prewarm, wait for `completed`, then pgbench -S for DURATION s.
# Prints every run, the medians, the ratios to cold and the prewarm's own time.
set -euo pipefail

SCALE=${1:-68}
DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-4}
RUNS=${RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/compute-tools-bench-prewarm}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
PROFILE=${PROFILE:-debug}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=$TARGET/$PROFILE
TOKEN=bench-token
TENANT=0123456789abcdef0123456789abcdef
TIMELINE=fedcba9876543210fedcba9876543210

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"; }

echo "building compute-ctl and the stages ($PROFILE) ..." >&2
release=()
[ "$PROFILE" = release ] && release=(--release)
(cd "$ROOT" && cargo build "${release[@]}" -q -p compute-ctl -p compute-spec-cli \
    -p pg-sync-safekeepers -p pg-basebackup-fetch -p pg-supervise -p pg-reconcile)

rm -rf "$BENCH_DIR"
mkdir -p "$BENCH_DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$BENCH_DIR"
PRIMARY=$BENCH_DIR/primary
PGDATA=$BENCH_DIR/compute
PRIMARY_PORT=$(free_port)
PORT=$(free_port)
HTTP=$(free_port)
STORAGE_PID=
COMPUTE_PID=
stop_compute() {
    if [ -n "$COMPUTE_PID" ]; then
        kill -TERM "$COMPUTE_PID" 2>/dev/null || true
        wait "$COMPUTE_PID" 2>/dev/null || true
        COMPUTE_PID=
    fi
}
cleanup() {
    stop_compute
    [ -n "$STORAGE_PID" ] && kill "$STORAGE_PID" 2>/dev/null || true
    [ -f "$PRIMARY/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$PRIMARY" stop -m immediate >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$BENCH_DIR"
}
trap cleanup EXIT

echo "primary: initdb + pgbench -i -s $SCALE ..." >&2
as_pg "$PGBIN/initdb" -D "$PRIMARY" -U cloud_admin -A trust --no-sync >/dev/null
cat >>"$PRIMARY/postgresql.conf" <<CONF
listen_addresses = ''
port = $PRIMARY_PORT
unix_socket_directories = '$BENCH_DIR'
wal_level = replica
max_wal_senders = 4
fsync = off
CONF
echo "local replication all trust" >>"$PRIMARY/pg_hba.conf"
as_pg "$PGBIN/pg_ctl" -D "$PRIMARY" -l "$BENCH_DIR/primary.log" -w start >/dev/null
as_pg "$PGBIN/pgbench" -h "$BENCH_DIR" -p "$PRIMARY_PORT" -U cloud_admin -i -q -s "$SCALE" postgres >/dev/null 2>&1
as_pg psql -h "$BENCH_DIR" -p "$PRIMARY_PORT" -U cloud_admin -XAtqc "CHECKPOINT" postgres
SIZE=$(as_pg psql -h "$BENCH_DIR" -p "$PRIMARY_PORT" -U cloud_admin -XAtqc \
    "SELECT pg_size_pretty(pg_database_size('postgres'))" postgres)
echo "database size: $SIZE" >&2

# Endpoint storage: objects in memory; the bearer token is checked on every request.
python3 - "$TOKEN" >"$BENCH_DIR/storage.port" 2>"$BENCH_DIR/storage.log" <<'PY' &
import http.server, sys, threading
token, objects = sys.argv[1], {}
class Handler(http.server.BaseHTTPRequestHandler):
    def authorized(self):
        if self.headers.get("Authorization") != "Bearer " + token:
            self.send_response(401); self.send_header("Content-Length", "0"); self.end_headers()
            return False
        return True
    def do_GET(self):
        if not self.authorized(): return
        body = objects.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Length", str(len(body or b""))); self.end_headers()
        self.wfile.write(body or b"")
    def do_PUT(self):
        if not self.authorized(): return
        objects[self.path] = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.send_header("Content-Length", "0"); self.end_headers()
server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
PY
STORAGE_PID=$!
for _ in $(seq 100); do [ -s "$BENCH_DIR/storage.port" ] && break; sleep 0.1; done
STORAGE_PORT=$(cat "$BENCH_DIR/storage.port")

cat >"$BENCH_DIR/spec.json" <<JSON
{
  "format_version": 1.0,
  "suspend_timeout_seconds": 0,
  "cluster": {"roles": [], "databases": [], "settings": [
    {"name": "port", "value": "$PORT", "vartype": "integer"},
    {"name": "listen_addresses", "value": "", "vartype": "string"},
    {"name": "shared_buffers", "value": "2GB", "vartype": "string"},
    {"name": "max_connections", "value": "50", "vartype": "integer"},
    {"name": "fsync", "value": "off", "vartype": "bool"}
  ]},
  "upstream_connstring": "host=$BENCH_DIR port=$PRIMARY_PORT user=cloud_admin",
  "tenant_id": "$TENANT", "timeline_id": "$TIMELINE", "endpoint_id": "ep-bench",
  "endpoint_storage_addr": "127.0.0.1:$STORAGE_PORT", "endpoint_storage_token": "$TOKEN"
}
JSON

api() { curl -sS -X "$1" "http://127.0.0.1:$HTTP$2"; }
start_compute() {
    COMPUTE_CTL_STAGE_COMPUTE_SPEC=$BIN/compute-spec \
        "$BIN/compute-ctl" -S "$BENCH_DIR/spec.json" -D "$PGDATA" -b "$PGBIN/postgres" \
        --external-http-port "$HTTP" --internal-http-port 0 \
        </dev/null >/dev/null 2>>"$BENCH_DIR/compute-ctl.log" &
    COMPUTE_PID=$!
    for _ in $(seq 1200); do
        status=$(api GET /status 2>/dev/null | json_field status 2>/dev/null || true)
        [ "$status" = running ] && return 0
        [ "$status" = failed ] && { echo "compute failed; see $BENCH_DIR/compute-ctl.log" >&2; KEEP=1; exit 1; }
        sleep 0.1
    done
    echo "compute did not reach running; see $BENCH_DIR/compute-ctl.log" >&2
    KEEP=1
    exit 1
}
# Polls GET $1 until its status is none of the running ones; prints the JSON.
settle() {
    local body
    for _ in $(seq 6000); do
        body=$(api GET "$1")
        case $(echo "$body" | json_field status) in
        prewarming | offloading) sleep 0.1 ;;
        *) echo "$body"; return 0 ;;
        esac
    done
    echo "$1 never settled" >&2
    exit 1
}
tps() {
    as_pg "$PGBIN/pgbench" -h "$PGDATA" -p "$PORT" -U cloud_admin -S -n -c "$CLIENTS" -j "$CLIENTS" \
        -T "$DURATION" postgres 2>/dev/null | awk '/^tps = / {print $3; exit}'
}

echo "first start: warm the cache, offload it ..." >&2
start_compute
tps >/dev/null
DURATION=20 tps >/dev/null
api POST /lfc/offload >/dev/null
offload=$(settle /lfc/offload)
echo "offload: $offload"
stop_compute

# Syncs the compute's files and drops them from the page cache.
evict() {
    sync
    python3 - "$PGDATA" <<'PY'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for name in files:
        try:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
PY
}

cold=()
concurrent=()
after=()
prewarm_ms=()
for run in $(seq "$RUNS"); do
    start_compute
    evict
    cold+=("$(tps)")
    stop_compute
    echo "run $run cold:       ${cold[-1]} tps"

    start_compute
    evict
    api POST /lfc/prewarm >/dev/null
    concurrent+=("$(tps)")
    prewarm=$(settle /lfc/prewarm)
    stop_compute
    echo "run $run concurrent: ${concurrent[-1]} tps ($prewarm)"

    start_compute
    evict
    started=$(date +%s%3N)
    api POST /lfc/prewarm >/dev/null
    prewarm=$(settle /lfc/prewarm)
    prewarm_ms+=("$(($(date +%s%3N) - started))")
    after+=("$(tps)")
    stop_compute
    echo "run $run after:      ${after[-1]} tps (prewarm ${prewarm_ms[-1]} ms: $prewarm)"
done

cold_median=$(printf '%s\n' "${cold[@]}" | median)
concurrent_median=$(printf '%s\n' "${concurrent[@]}" | median)
after_median=$(printf '%s\n' "${after[@]}" | median)
prewarm_median=$(printf '%s\n' "${prewarm_ms[@]}" | median)
echo
echo "database $SIZE, pgbench -S -c $CLIENTS, $DURATION s after a restart (page cache evicted), median of $RUNS:"
printf '  cold (no prewarm):           %10.0f tps\n' "$cold_median"
printf '  prewarm running meanwhile:   %10.0f tps  (%s)\n' "$concurrent_median" \
    "$(python3 -c "print('%.2fx' % ($concurrent_median / $cold_median))")"
printf '  after the prewarm completed: %10.0f tps  (%s; the prewarm itself took %s ms)\n' \
    "$after_median" "$(python3 -c "print('%.2fx' % ($after_median / $cold_median))")" "$prewarm_median"
