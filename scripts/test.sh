#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL, stopping any postmaster a killed earlier
# run left behind (before and after).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cleanup() { cargo run -q -p pg-test-support --bin pg-test-cleanup || true; }
cleanup
trap cleanup EXIT
cargo test --workspace "$@"
