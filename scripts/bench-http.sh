#!/usr/bin/env bash
# /status latency of compute-ctl under wrk at a fixed request rate, first on an idle running
# compute (baseline), then while a /configure is running a (stand-in, slow) pg-reconcile.
# Prints p50/p99 for both. The goal (issue 7): p99 < 2 ms at 2,000 req/s during a reconcile.
#
#   scripts/bench-http.sh                      # release build, 2000 req/s, 10 s per phase
#   RATE=1000 DURATION=5 PROFILE=debug scripts/bench-http.sh
#
# wrk 4 has no fixed-rate flag, so the rate is set with a per-request delay in a Lua script:
# CONNECTIONS connections each waiting CONNECTIONS*1000/RATE ms between requests.
set -euo pipefail

RATE=${RATE:-2000}
DURATION=${DURATION:-10}
PROFILE=${PROFILE:-release}
CONNECTIONS=${CONNECTIONS:-20}
cd "$(dirname "$0")/.."

command -v wrk >/dev/null || { apt-get install -y wrk >/dev/null; }
command -v python3 >/dev/null || { echo "python3 is needed for the stand-in stages" >&2; exit 1; }

if [ "$PROFILE" = release ]; then
    cargo build --release -q -p compute-ctl -p compute-spec-cli
    bin="${CARGO_TARGET_DIR:-target}/release"
else
    cargo build -q -p compute-ctl -p compute-spec-cli
    bin="${CARGO_TARGET_DIR:-target}/debug"
fi

work=$(mktemp -d /dev/shm/bench-http.XXXXXX)
ctl_pid=
cleanup() {
    if [ -n "$ctl_pid" ]; then kill -TERM "$ctl_pid" 2>/dev/null || true; wait "$ctl_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

stage() { printf '#!/usr/bin/env python3\n%s\n' "$2" >"$work/$1"; chmod +x "$work/$1"; }
stage sync 'import sys, json
d = json.load(sys.stdin); d["sync_safekeepers"] = {"lsn": "0/0", "method": "none"}; print(json.dumps(d))'
stage basebackup 'import sys, json
d = json.load(sys.stdin); d["basebackup"] = {"source": "initdb", "basebackup_ms": 1, "basebackup_bytes": 0}; print(json.dumps(d))'
stage reconcile 'import sys, json, os, time
d = json.load(sys.stdin)
if "--reconfigure" in sys.argv: time.sleep(float(os.environ["BENCH_RECONCILE_SECONDS"]))
d["reconcile"] = {"applied": 0}; print(json.dumps(d))'
stage supervise 'import sys, json, signal, time
json.load(sys.stdin)
def stop(s, f):
    print(json.dumps({"event": "exited", "code": 0, "signal": None}), flush=True); sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print(json.dumps({"event": "ready", "pid": 0, "start_postgres_ms": 1}), flush=True)
while True: time.sleep(1)'

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
spec='{"format_version": 1.0, "cluster": {"roles": [], "databases": []}}'
COMPUTE_CTL_STAGE_COMPUTE_SPEC="$bin/compute-spec" \
COMPUTE_CTL_STAGE_PG_SYNC_SAFEKEEPERS="$work/sync" \
COMPUTE_CTL_STAGE_PG_BASEBACKUP_FETCH="$work/basebackup" \
COMPUTE_CTL_STAGE_PG_RECONCILE="$work/reconcile" \
COMPUTE_CTL_STAGE_PG_SUPERVISE="$work/supervise" \
BENCH_RECONCILE_SECONDS=$((DURATION + 5)) \
RUST_LOG=warn \
    "$bin/compute-ctl" -D "$work/pgdata" -b /usr/lib/postgresql/15/bin/postgres -s "$spec" \
    --external-http-port "$port" --internal-http-port 0 2>"$work/compute-ctl.log" &
ctl_pid=$!

status() { curl -s "http://127.0.0.1:$port/status" 2>/dev/null | python3 -c 'import sys, json; print(json.load(sys.stdin)["status"])' 2>/dev/null || true; }
wait_status() { for _ in $(seq 1 500); do [ "$(status)" = "$1" ] && return 0; sleep 0.02; done; echo "compute never reached $1" >&2; exit 1; }
wait_status running

delay_ms=$(python3 -c "print($CONNECTIONS * 1000 / $RATE)")
cat >"$work/rate.lua" <<LUA
function delay() return $delay_ms end
LUA

run_wrk() {
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/rate.lua" "http://127.0.0.1:$port/status" >"$work/wrk.out"
    local p50 p99 rps
    p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
    p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
    rps=$(awk '/Requests\/sec/ {print $2}' "$work/wrk.out")
    printf '%-28s %10s %10s %10s\n' "$1" "$rps" "$p50" "$p99"
}

printf 'compute-ctl /status under wrk (%s build, target %s req/s, %s s, %s connections)\n' "$PROFILE" "$RATE" "$DURATION" "$CONNECTIONS"
printf '%-28s %10s %10s %10s\n' phase "req/s" p50 p99
run_wrk "idle (running)"

# A /configure whose reconcile runs longer than the measurement.
reconcile_seconds=$((DURATION + 5))
curl -s -o /dev/null -X POST "http://127.0.0.1:$port/configure" \
    -H 'Content-Type: application/json' \
    -d "{\"spec\": $spec, \"compute_ctl_config\": {}}" --max-time $((reconcile_seconds + 30)) &
configure_pid=$!
wait_status configuration
run_wrk "during reconcile"
[ "$(status)" = configuration ] || echo "warning: the reconcile ended before the measurement did" >&2
kill "$configure_pid" 2>/dev/null || true
