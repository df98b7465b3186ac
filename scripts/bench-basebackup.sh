#!/usr/bin/env bash
# Benchmark of pg-basebackup-fetch's vanilla-primary source against pg_basebackup.
#
# Usage: scripts/bench-basebackup.sh [SCALE]   (pgbench scale; 68 ≈ 1 GiB, the default)
# Env:   BENCH_DIR (default /var/tmp/compute-tools-bench, on disk), RUNS (default 3),
#        PGBIN (default the newest /usr/lib/postgresql/*/bin), CARGO_TARGET_DIR.
#
# Measures, in the same run, on a local primary (unix socket):
#   1. from nothing to ready: ours (compute-spec | pg-basebackup-fetch | pg-supervise, until
#      its `ready` event) against pg_basebackup -Fp -X stream, then pg_ctl start -w;
#   2. fetch + unpack alone: ours (the stage) against pg_basebackup -Fp --no-sync;
#   3. the pageserver path: the primary is stopped cleanly and tarred with gzip; ours fetches
#      that archive from the pageserver stand-in (examples/pageserver_standin.rs, the tests'
#      libpq stand-in: COPY OUT in 16 KiB messages over TCP) against tar -xzf of the same
#      file (read from the page cache).
# Prints every run and a table of medians. Heavy: at the default RUNS=3, ~22 GiB of free disk
# (every finished tree is kept until the end, see below; with less, TRASH_BUDGET_MB, by default
# the free space less 4 GiB, makes it delete in batches, each followed by a 6-minute pause).
#
# Hygiene, the same for every tool measured: each measurement starts after a `sync` (no
# dirty pages or pending discards of an earlier run), with the page cache holding the source
# (the primary's files, or the gzip tar, read just before: this machine runs DAMON, which pages
# out whatever was not touched for a minute) and none of the finished trees (evicted with
# POSIX_FADV_DONTNEED), and without any inode freed within the last 6 minutes: on ext4 without
# a journal (this machine's root file system) the inode allocator skips, one buffer lookup
# each, every inode freed less than 60 s ago, or 360 s ago once the inode-table block holding
# it is dirty again (which the new files make it). Deleting the previous run's tree cost the
# next run ~0.3–0.8 s of CPU, whichever tool ran. Finished trees are moved aside and deleted
# at the end (the time of that deletion is kept in $BENCH_DIR.deleted, so a second benchmark
# right after the first waits too).
set -euo pipefail

SCALE=${1:-68}
RUNS=${RUNS:-3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/var/tmp/compute-tools-bench}
PGBIN=${PGBIN:-$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
now_ms() { date +%s%3N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "building release binaries ..." >&2
(cd "$ROOT" && cargo build --release -q -p compute-spec-cli -p pg-basebackup-fetch &&
    cargo build --release -q -p pg-supervise &&
    cargo build --release -q -p pg-basebackup-fetch --example pageserver_standin)

PURGED=0
[ -f "$BENCH_DIR.deleted" ] && PURGED=$(cat "$BENCH_DIR.deleted")
if [ -e "$BENCH_DIR" ]; then
    rm -rf "$BENCH_DIR"
    PURGED=$(date +%s)
fi
mkdir -p "$BENCH_DIR"
[ "$(id -u)" = 0 ] && chown postgres: "$BENCH_DIR"
PRIMARY=$BENCH_DIR/primary
PORT=$(free_port)
STANDIN_PID=
cleanup() {
    [ -n "$STANDIN_PID" ] && kill "$STANDIN_PID" 2>/dev/null || true
    for dir in "$PRIMARY" "$BENCH_DIR/ours" "$BENCH_DIR/pgbb" "$BENCH_DIR/ps"; do
        [ -f "$dir/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$dir" stop -m immediate >/dev/null 2>&1 || true
    done
    [ -n "${KEEP:-}" ] && return
    rm -rf "$BENCH_DIR"
    date +%s >"$BENCH_DIR.deleted"
}
trap cleanup EXIT

echo "primary: initdb + pgbench -i -s $SCALE ..." >&2
as_pg "$PGBIN/initdb" -D "$PRIMARY" -U cloud_admin -A trust --no-sync >/dev/null
cat >>"$PRIMARY/postgresql.conf" <<CONF
listen_addresses = ''
port = $PORT
unix_socket_directories = '$BENCH_DIR'
wal_level = replica
max_wal_senders = 4
CONF
as_pg "$PGBIN/pg_ctl" -D "$PRIMARY" -l "$BENCH_DIR/primary.log" start -w >/dev/null
as_pg "$PGBIN/pgbench" -h "$BENCH_DIR" -p "$PORT" -U cloud_admin -i -q -s "$SCALE" postgres >/dev/null 2>&1
as_pg "$PGBIN/psql" -h "$BENCH_DIR" -p "$PORT" -U cloud_admin -qc CHECKPOINT postgres
echo "primary data directory (with its WAL): $(($(du -sb "$PRIMARY" | cut -f1) / 1048576)) MiB" >&2

TRASH=$BENCH_DIR/trash
TRASH_BUDGET_MB=${TRASH_BUDGET_MB:-$(($(df -Pm "$BENCH_DIR" | awk 'NR == 2 {print $4}') - 4096))}
retire() { # a finished tree: moved aside now, deleted in a later batch (see the top)
    mkdir -p "$TRASH"
    mv "$1" "$TRASH/$(date +%s%N)"
}
settle() { # before every measurement (see the top)
    sync
    if [ -f "$PRIMARY/postmaster.pid" ]; then
        find "$PRIMARY" -type f -exec cat {} + >/dev/null 2>&1 || true
    fi
    [ -f "$BENCH_DIR/base.tar.gz" ] && cat "$BENCH_DIR/base.tar.gz" >/dev/null
    if [ -d "$TRASH" ] && [ "$(du -sm "$TRASH" | cut -f1)" -gt "$TRASH_BUDGET_MB" ]; then
        rm -rf "$TRASH"
        sync
        PURGED=$(date +%s)
    fi
    [ -d "$TRASH" ] && python3 - "$TRASH" <<'PY'
import os, stat, sys
for top, _, files in os.walk(sys.argv[1]):
    for name in files:
        path = os.path.join(top, name)
        if not stat.S_ISREG(os.lstat(path).st_mode):
            continue
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
PY
    local wait=$((PURGED + 361 - $(date +%s)))
    if [ "$wait" -gt 0 ]; then
        echo "  (waiting ${wait} s until no inode was freed within the last 6 minutes; see the top)" >&2
        sleep "$wait"
    fi
}

spec() { # $1: the source's fields. A spec for a compute on a free port, no TCP.
    printf '{"format_version":1.0,"cluster":{"roles":[],"databases":[],"settings":[{"name":"port","value":"%s","vartype":"integer"},{"name":"listen_addresses","value":"","vartype":"string"}]},%s}' "$(free_port)" "$1"
}
stage() { # $1: PGDATA, $2: spec, $3: log file. compute-spec | pg-basebackup-fetch, doc.json out.
    "$TARGET/release/compute-spec" -D "$1" -b "$PGBIN/postgres" \
        -C "postgresql://cloud_admin@localhost/postgres" -s "$2" 2>/dev/null |
        "$TARGET/release/pg-basebackup-fetch" --log-format json >"$BENCH_DIR/doc.json" 2>"$3"
}
fetch_ms() { # $1: the stage's log. Its fetch + unpack time.
    grep -o 'fetched [0-9]* bytes into [0-9]* files in [0-9]* ms' "$1" | awk '{print $(NF-1)}'
}

ours_once() { # prints: stage_ms total_ms fetch_ms (the fetch + unpack step alone)
    local dir=$BENCH_DIR/ours json t0 t1 t2
    json=$(spec "$(printf '"upstream_connstring":"host=%s port=%s user=cloud_admin"' "$BENCH_DIR" "$PORT")")
    settle
    t0=$(now_ms)
    stage "$dir" "$json" "$BENCH_DIR/fetch.log"
    t1=$(now_ms)
    # Our start: the supervisor, until it reports `ready` (as compute-ctl runs it).
    coproc SUPERVISE { exec "$TARGET/release/pg-supervise" <"$BENCH_DIR/doc.json" 2>"$BENCH_DIR/ours.log"; }
    local event
    while read -r event <&"${SUPERVISE[0]}"; do
        case $event in *'"event":"ready"'*) break ;; esac
    done
    t2=$(now_ms)
    kill -TERM "$SUPERVISE_PID"
    wait "$SUPERVISE_PID" || true
    retire "$dir"
    echo "$((t1 - t0)) $((t2 - t0)) $(fetch_ms "$BENCH_DIR/fetch.log")"
}

pgbb_once() { # $1: extra pg_basebackup flags; $2: start too (1/0). prints: copy_ms total_ms bytes
    local dir=$BENCH_DIR/pgbb t0 t1 t2
    settle
    t0=$(now_ms)
    # shellcheck disable=SC2086
    as_pg "$PGBIN/pg_basebackup" -h "$BENCH_DIR" -p "$PORT" -U cloud_admin -D "$dir" -Fp $1
    t1=$(now_ms)
    t2=$t1
    if [ "$2" = 1 ]; then
        printf "port = %s\n" "$(free_port)" >>"$dir/postgresql.conf"
        as_pg "$PGBIN/pg_ctl" -D "$dir" -l "$BENCH_DIR/pgbb.log" start -w >/dev/null
        t2=$(now_ms)
        as_pg "$PGBIN/pg_ctl" -D "$dir" stop -m fast >/dev/null
    fi
    bytes=$(du -sb "$dir" | cut -f1)
    retire "$dir"
    echo "$((t1 - t0)) $((t2 - t0)) $bytes"
}

TENANT=3aa8fcc61f6d357410b7de754b1d9001
TIMELINE=de5a2f3ab7e1d7cd4e0e6a1c1a5d2f0b
ps_once() { # $1: stand-in port. prints: stage_ms fetch_ms (fetch + gunzip + unpack alone)
    local dir=$BENCH_DIR/ps json t0 t1
    json=$(spec "$(printf '"tenant_id":"%s","timeline_id":"%s","pageserver_connstring":"postgresql://no_user@127.0.0.1:%s","safekeeper_connstrings":["127.0.0.1:1"],"storage_auth_token":"bench"' "$TENANT" "$TIMELINE" "$1")")
    settle
    t0=$(now_ms)
    stage "$dir" "$json" "$BENCH_DIR/ps.log"
    t1=$(now_ms)
    retire "$dir"
    echo "$((t1 - t0)) $(fetch_ms "$BENCH_DIR/ps.log")"
}

tarxz_once() { # prints: ms bytes
    local dir=$BENCH_DIR/tarxz t0 t1
    settle
    mkdir -p "$dir"
    t0=$(now_ms)
    tar -xzf "$BENCH_DIR/base.tar.gz" -C "$dir"
    t1=$(now_ms)
    bytes=$(du -sb "$dir" | cut -f1)
    retire "$dir"
    echo "$((t1 - t0)) $bytes"
}

: >"$BENCH_DIR/ours.txt"; : >"$BENCH_DIR/stream.txt"; : >"$BENCH_DIR/nosync.txt"
for run in $(seq "$RUNS"); do
    echo "run $run/$RUNS ..." >&2
    ours_once >>"$BENCH_DIR/ours.txt"
    pgbb_once "-X stream" 1 >>"$BENCH_DIR/stream.txt"
    pgbb_once "-X stream --no-sync" 0 >>"$BENCH_DIR/nosync.txt"
done

echo "pageserver stand-in: the primary stopped cleanly, tar -czf ..." >&2
as_pg "$PGBIN/pg_ctl" -D "$PRIMARY" stop -m fast >/dev/null
tar -C "$PRIMARY" -czf "$BENCH_DIR/base.tar.gz" .
GZ_BYTES=$(stat -c %s "$BENCH_DIR/base.tar.gz")
"$TARGET/release/examples/pageserver_standin" "$BENCH_DIR/base.tar.gz" "$TENANT" "$TIMELINE" bench \
    >"$BENCH_DIR/standin.port" &
STANDIN_PID=$!
for _ in $(seq 100); do [ -s "$BENCH_DIR/standin.port" ] && break; sleep 0.1; done
STANDIN_PORT=$(head -1 "$BENCH_DIR/standin.port")
: >"$BENCH_DIR/ps.txt"; : >"$BENCH_DIR/tarxz.txt"
for run in $(seq "$RUNS"); do
    echo "pageserver run $run/$RUNS ..." >&2
    ps_once "$STANDIN_PORT" >>"$BENCH_DIR/ps.txt"
    tarxz_once >>"$BENCH_DIR/tarxz.txt"
done

OURS_STAGE=$(cut -d' ' -f1 "$BENCH_DIR/ours.txt" | median)
OURS_FETCH=$(cut -d' ' -f3 "$BENCH_DIR/ours.txt" | median)
SIZE=$(cut -d' ' -f3 "$BENCH_DIR/nosync.txt" | median)
OURS_READY=$(cut -d' ' -f2 "$BENCH_DIR/ours.txt" | median)
PGBB_READY=$(cut -d' ' -f2 "$BENCH_DIR/stream.txt" | median)
PGBB_NOSYNC=$(cut -d' ' -f1 "$BENCH_DIR/nosync.txt" | median)
PS_STAGE=$(cut -d' ' -f1 "$BENCH_DIR/ps.txt" | median)
PS_FETCH=$(cut -d' ' -f2 "$BENCH_DIR/ps.txt" | median)
TARXZ=$(cut -d' ' -f1 "$BENCH_DIR/tarxz.txt" | median)
TAR_SIZE=$(cut -d' ' -f2 "$BENCH_DIR/tarxz.txt" | median)
mbps() { awk -v b="$SIZE" -v ms="$1" 'BEGIN {printf "%.0f", b / 1e6 / (ms / 1000)}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b / a}'; }

runs() { cut -d' ' -f"$2" "$BENCH_DIR/$1.txt" | tr '\n' ' '; }
echo
echo "every run (ms): ours ready: $(runs ours 2); theirs ready: $(runs stream 2)"
echo "  ours fetch + unpack: $(runs ours 3); pg_basebackup --no-sync: $(runs nosync 1)"
echo "  stand-in fetch + unpack: $(runs ps 2); tar -xzf: $(runs tarxz 1)"
echo
echo "pgbench scale $SCALE, cloned data directory $((SIZE / 1048576)) MiB, medians of $RUNS runs, $(nproc) cores"
printf '| %-62s | %10s | %10s | %8s |\n' "measurement" "ours ms" "theirs ms" "speed-up"
printf '|%s|%s|%s|%s|\n' "----------------------------------------------------------------" "------------" "------------" "----------"
printf '| %-62s | %10s | %10s | %7sx |\n' "nothing → ready (vs pg_basebackup -X stream + pg_ctl start -w)" \
    "$OURS_READY" "$PGBB_READY" "$(ratio "$OURS_READY" "$PGBB_READY")"
printf '| %-62s | %10s | %10s | %7sx |\n' "whole stage (vs pg_basebackup -Fp --no-sync)" \
    "$OURS_STAGE" "$PGBB_NOSYNC" "$(ratio "$OURS_STAGE" "$PGBB_NOSYNC")"
printf '| %-62s | %10s | %10s | %7sx |\n' "fetch + unpack alone (vs pg_basebackup -Fp --no-sync)" \
    "$OURS_FETCH" "$PGBB_NOSYNC" "$(ratio "$OURS_FETCH" "$PGBB_NOSYNC")"
printf '| %-62s | %10s | %10s | %7sx |\n' "pageserver stand-in, gzip: whole stage (vs tar -xzf local file)" \
    "$PS_STAGE" "$TARXZ" "$(ratio "$PS_STAGE" "$TARXZ")"
printf '| %-62s | %10s | %10s | %7sx |\n' "pageserver stand-in, gzip: fetch + unpack (vs tar -xzf)" \
    "$PS_FETCH" "$TARXZ" "$(ratio "$PS_FETCH" "$TARXZ")"
echo
echo "gzip tar: $((GZ_BYTES / 1048576)) MiB compressed, $((TAR_SIZE / 1048576)) MiB unpacked"
echo "unpack throughput: ours $(mbps "$OURS_FETCH") MB/s, pg_basebackup -Fp --no-sync $(mbps "$PGBB_NOSYNC") MB/s"
