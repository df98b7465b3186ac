#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a bounded time and fails on the first crash found.
#
# Usage: scripts/fuzz.sh [SECONDS]        (per target; default 30)
#        scripts/fuzz.sh [SECONDS] TARGET…  (only these targets)
# Env:   FUZZ_SANITIZER (cargo fuzz --sanitizer: none, the default, or address),
#        FUZZ_JOBS (libFuzzer -fork=N worker processes per target; unset: one process),
#        FUZZ_MODE=props (force the stable fallback below), FUZZ_CASES (fallback cases).
#
# With a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`): each target runs under
# libFuzzer for SECONDS, starting from its committed seeds (fuzz/corpus/<target>/, read only;
# new inputs go to fuzz/target/corpus/<target>/), with debug assertions (integer overflow
# checks) on. A crash leaves its input in fuzz/artifacts/<target>/ and the script prints the
# command that reproduces it; it exits 1 when any target crashed.
#
# Without them it says so on stderr and runs the SAME target bodies as property tests on the
# stable compiler (fuzz/tests/bodies.rs: every seed, then seed mutations and random inputs),
# about 40 cases per second asked — never silently nothing.
#
# Longer runs: `scripts/fuzz.sh 3600` (an hour per target), or one target in the background
# with several workers: `FUZZ_JOBS=2 scripts/fuzz.sh 86400 tar`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_INCREMENTAL=0
seconds="${1:-30}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=()
    for file in fuzz_targets/*.rs; do targets+=("$(basename "$file" .rs)"); done
fi
case "$seconds" in '' | *[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, not $seconds" >&2; exit 2 ;; esac

missing=""
if [ "${FUZZ_MODE:-}" = props ]; then
    missing="FUZZ_MODE=props"
elif ! cargo +nightly --version > /dev/null 2>&1; then
    missing="no nightly toolchain (rustup toolchain install nightly)"
elif ! cargo +nightly fuzz --version > /dev/null 2>&1; then
    missing="no cargo-fuzz (cargo install cargo-fuzz)"
fi

if [ -n "$missing" ]; then
    cases=$((seconds * 40))
    [ "$cases" -ge 64 ] || cases=64
    {
        echo "################################################################################"
        echo "fuzz.sh: NOT FUZZING: $missing."
        echo "fuzz.sh: running the same target bodies as property tests on stable instead"
        echo "fuzz.sh: (${FUZZ_CASES:-$cases} cases per target; no coverage guidance)."
        echo "################################################################################"
    } >&2
    filters=()
    if [ "$#" -gt 0 ]; then filters=("${targets[@]}"); fi
    FUZZ_CASES="${FUZZ_CASES:-$cases}" cargo test --no-default-features --test bodies -- \
        --test-threads=1 "${filters[@]}"
    exit
fi

sanitizer="${FUZZ_SANITIZER:-none}"
echo "fuzz.sh: building ${#targets[@]} targets (sanitizer $sanitizer)" >&2
cargo +nightly fuzz build --sanitizer "$sanitizer" --debug-assertions
failed=()
for target in "${targets[@]}"; do
    work="target/corpus/$target"
    mkdir -p "$work" "artifacts/$target"
    echo "fuzz.sh: $target for ${seconds}s" >&2
    log="target/fuzz-$target.log"
    if cargo +nightly fuzz run --sanitizer "$sanitizer" --debug-assertions "$target" \
        "$work" "corpus/$target" -- -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 \
        -print_final_stats=1 ${FUZZ_JOBS:+-fork="$FUZZ_JOBS"} \
        > "$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
        echo "fuzz.sh: $target ok: ${execs:-?} executions in ${seconds}s" >&2
    else
        tail -40 "$log" >&2
        crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        echo "fuzz.sh: $target FAILED; input: ${crash:-see $log}" >&2
        echo "fuzz.sh: reproduce: (cd fuzz && cargo +nightly fuzz run --sanitizer $sanitizer --debug-assertions $target ${crash:-ARTIFACT})" >&2
        failed+=("$target")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz.sh: crashes in: ${failed[*]}" >&2
    exit 1
fi
echo "fuzz.sh: all ${#targets[@]} targets ran ${seconds}s without a crash" >&2
