#!/usr/bin/env bash
# How fast the test kit (pg-test-support) hands a test a private PostgreSQL, against the floor
# measured in the same run, and prints a table (p50 / p90 / max over RUNS runs, in ms).
#
#   kit start          TestPostgres::start(): copy of the cached template + postgres to ready
#                      (the first start of the whole run builds the template: see "cold")
#   kit drop           immediate shutdown + removal of the directory
#   floor initdb       what a test would do without the kit: initdb + postgres to ready
#   floor copy         the kit's own floor: cp -a of an initdb'd cluster + postgres to ready
#   floor stop         kill -QUIT + wait for the postmaster to go
# "ready" = postmaster.pid says `ready`, polled every 2 ms (pg_ctl -w polls every 100 ms, too
# coarse for a floor). All directories are on /dev/shm, as the kit's.
#
#   scripts/bench-test-postgres.sh [RUNS]     (default 10; run as root or the postgres user)
# Env: PG_BIN_DIR (default: the highest /usr/lib/postgresql/*/bin), PROFILE (debug|release,
# default debug: the kit is used from test builds).
set -euo pipefail

RUNS=${1:-10}
PROFILE=${PROFILE:-debug}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PGBIN=${PG_BIN_DIR:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)}
export PG_BIN_DIR=$PGBIN
cd "$ROOT"
if [ "$PROFILE" = release ]; then
    cargo build --release -q -p pg-test-support --example start_stop
else
    cargo build -q -p pg-test-support --example start_stop
fi
EXAMPLE=${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/examples/start_stop

WORK=$(mktemp -d /dev/shm/bench-test-postgres.XXXXXX)
PID=""
cleanup() {
    if [ -n "$PID" ]; then
        for pidfile in "$WORK"/*/postmaster.pid; do
            [ -f "$pidfile" ] && kill -KILL "$(head -n 1 "$pidfile")" 2>/dev/null || true
        done
        kill -KILL "$PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
if [ "$(id -u)" = 0 ]; then
    chown postgres "$WORK"
    as_pg() { runuser -u postgres -- "$@"; }
else
    as_pg() { "$@"; }
fi
now_us() { echo $(( $(date +%s%N) / 1000 )); }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# start DATADIR: postgres on DATADIR (no TCP, socket in DATADIR) until postmaster.pid says ready.
start() {
    as_pg "$PGBIN/postgres" -D "$1" -k "$1" -c listen_addresses= -c fsync=off \
        -c dynamic_shared_memory_type=mmap >"$1.log" 2>&1 &
    PID=$!
    until [ -f "$1/postmaster.pid" ] && [ "$(tail -n 1 "$1/postmaster.pid" | tr -d ' ')" = ready ]; do
        kill -0 "$PID" 2>/dev/null || { cat "$1.log" >&2; exit 1; }
        sleep 0.002
    done
}
# stop DATADIR: immediate shutdown of the postmaster (its pid from postmaster.pid: $PID may be
# runuser's, which does not pass SIGQUIT on) until it has exited.
stop() {
    kill -QUIT "$(head -n 1 "$1/postmaster.pid")"
    wait "$PID" 2>/dev/null || true
    PID=""
}
initdb() { as_pg "$PGBIN/initdb" -D "$1" -U cloud_admin -A trust --no-sync >/dev/null; }

: >"$WORK/floor"
initdb "$WORK/template"
for run in $(seq "$RUNS"); do
    t0=$(now_us); initdb "$WORK/i$run"; start "$WORK/i$run"; t1=$(now_us)
    stop "$WORK/i$run"; t2=$(now_us)
    as_pg cp -a "$WORK/template" "$WORK/c$run"; start "$WORK/c$run"; t3=$(now_us)
    stop "$WORK/c$run"
    echo "$(elapsed "$t0" "$t1") $(elapsed "$t2" "$t3") $(elapsed "$t1" "$t2")" >>"$WORK/floor"
    rm -rf "$WORK/i$run" "$WORK/c$run"
done
"$EXAMPLE" "$RUNS" >"$WORK/kit"

python3 - "$WORK/kit" "$WORK/floor" "$RUNS" "$PGBIN" <<'PY'
import statistics, sys
kit = [list(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
floor = [list(map(float, l.split())) for l in open(sys.argv[2]) if l.strip()]
def stats(values):
    values = sorted(values)
    p90 = values[min(len(values) - 1, int(round(0.9 * (len(values) - 1))))]
    return f"{statistics.median(values):>8.1f} {p90:>8.1f} {values[-1]:>8.1f}"
print(f"{sys.argv[3]} runs, {sys.argv[4]}")
print(f"{'':<36} {'p50':>8} {'p90':>8} {'max':>8}")
print(f"{'kit start (template copy + ready)':<36} {stats([r[1] for r in kit])}")
print(f"{'kit start, first of a pair':<36} {stats([r[0] for r in kit])}")
print(f"{'floor copy (cp -a + ready)':<36} {stats([r[1] for r in floor])}")
print(f"{'floor initdb (initdb + ready)':<36} {stats([r[0] for r in floor])}")
print(f"{'kit drop (SIGQUIT + rm -r)':<36} {stats([r[2] for r in kit])}")
print(f"{'floor stop (SIGQUIT + wait)':<36} {stats([r[2] for r in floor])}")
p50 = lambda rows, i: statistics.median(r[i] for r in rows)
print(f"kit start / floor copy: {p50(kit, 1) / p50(floor, 1):.2f}x; "
      f"kit start / floor initdb: {p50(kit, 1) / p50(floor, 0):.2f}x")
PY
