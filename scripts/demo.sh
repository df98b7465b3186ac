#!/usr/bin/env bash
# Runs a compute on the embedded default: initdb, the sample spec (roles app_owner and
# app_reader, databases app and analytics), Postgres on 127.0.0.1:55432 and the HTTP API on
# 127.0.0.1:3080 (COMPUTE_DEMO_HTTP_PORT). Ctrl-C stops it cleanly. Data lives in
# ${COMPUTE_DEMO_DIR:-/tmp/compute-tools-demo}.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo build -q --bins
dir=${COMPUTE_DEMO_DIR:-/tmp/compute-tools-demo}
http_port=${COMPUTE_DEMO_HTTP_PORT:-3080}
internal_port=${COMPUTE_DEMO_INTERNAL_PORT:-3081}
mkdir -p "$dir"
echo "compute-tools demo: psql 'host=$dir/pgdata port=55432 user=cloud_admin dbname=app'; curl http://127.0.0.1:$http_port/status" >&2
exec "${CARGO_TARGET_DIR:-target}/debug/compute-ctl" --embedded-default -D "$dir/pgdata" \
    -C postgresql://cloud_admin@localhost:55432/postgres --external-http-port "$http_port" \
    --internal-http-port "$internal_port" "$@"
