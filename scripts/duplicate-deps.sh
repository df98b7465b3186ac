#!/usr/bin/env bash
# Reports the crates the workspace compiles in more than one version (normal dependencies,
# proc macros included; build scripts' and tests' left out), each version with the crates
# that pull it in. A report, not a check: the list is not empty (RustCrypto's and
# rand's major versions move at different speeds in jsonwebtoken, ed25519-dalek, rsa and
# postgres-protocol), so CI shows it and a reviewer sees a new line appear. No tool to build:
# `cargo tree` reads Cargo.lock and the downloaded manifests (well under a second).
# Usage: scripts/duplicate-deps.sh
set -euo pipefail
cd "$(dirname "$0")/.."
tree=$(cargo tree --workspace --duplicates --edges normal --locked --offline --depth 1 --prefix none --no-dedupe)
# Blocks separated by blank lines: the duplicated crate first, then its direct dependents.
report=$(awk 'BEGIN { RS = ""; FS = "\n" }
    {
        by = ""
        for (i = 2; i <= NF; i++) by = by (i > 2 ? ", " : "") $i
        print "  " $1 "  <- " by
    }' <<<"$tree")
count=$(cut -d' ' -f3 <<<"$report" | sort -u | grep -c . || true)
if [ "$count" -eq 0 ]; then
    echo "duplicate-deps: every dependency is compiled in one version"
else
    echo "duplicate-deps: $count crates compiled in more than one version (a report, not a failure):"
    echo "$report"
fi
