#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL, stopping any postmaster a killed earlier
# run left behind (before and after).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# The README's demo runs Postgres on the fixed port 55432, inside the kernel's ephemeral range:
# as root, reserve it so no test's outgoing connection (or free-port pick) is given it.
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
if [ -w "$reserved" ] && ! grep -qw 55432 "$reserved"; then
    current=$(cat "$reserved")
    echo "${current:+$current,}55432" >"$reserved" || true
fi
cleanup() { cargo run -q -p pg-test-support --bin pg-test-cleanup || true; }
cleanup
trap cleanup EXIT
cargo test --workspace "$@"
