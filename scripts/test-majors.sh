#!/usr/bin/env bash
# Runs a focused subset of the tests on every installed PostgreSQL major other than the
# default one (Debian's 15, on which scripts/test.sh runs the whole suite): each scenario's
# existing tests with PG_TEST_MAJOR=<major> (pg-test-support then starts that major's
# servers, and the stages run its binaries as -b). Prints a table scenario × major and
# exits non-zero when a scenario failed, matched no test, or passed where it is listed as an
# expected failure (remove it from EXPECTED then); on CI (CI set) a missing major fails too.
#
# Usage: scripts/test-majors.sh [MAJOR…]    (default: 14 16 17 18)
# Logs:  target/test-majors/<major>.log
# Binaries: Debian's /usr/lib/postgresql/<major>/bin, else the cache install-pg-majors.sh
# fills ($COMPUTE_TOOLS_PG_CACHE, default /var/cache/compute-tools/pg).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never

majors=("$@")
[ "${#majors[@]}" -gt 0 ] || majors=(14 16 17 18)
cache="${COMPUTE_TOOLS_PG_CACHE:-/var/cache/compute-tools/pg}"
logs=target/test-majors
mkdir -p "$logs"

# id | scenario | test binary | test name filters (substrings, space-separated)
# Each major runs as one `cargo test --workspace --test it -- <every scenario's filters>`: the workspace's
# feature set is the one scripts/test.sh built, so nothing is compiled again (with `-p <pkg>`
# cargo resolves features for that package alone and rebuilt ~2 minutes of dependencies). Every
# crate's integration tests are one binary named `it`; the filters are module paths that match
# in one crate only (a scenario that matches nothing fails).
SCENARIOS=(
    "initdb|initdb start, embedded spec, SIGTERM → 0|it|compute_ctl::compute_ctl_runs_the_spec_and_exits_with_postgres_code_on_sigterm"
    "clone|clone of a vanilla primary (Primary, Replica)|it|upstream::a_primary_clone_is_writable_and_gets_the_admin_role upstream::a_replica_clone_streams_from_the_primary"
    "ctl-clone|compute-ctl clones a vanilla primary|it|compute_ctl::compute_ctl_clones_a_vanilla_primary"
    "deltas|reconcile: upstream's deltas|it|fixtures::fixture_deltas_take_effect_once"
    "public|reconcile: a spec database's public schema|it|phases::schema_public_is_given_to_the_owner_with_default_privileges"
    "migrations|migrations (pg-reconcile)|it|migrations::a_fresh_database_ends_at_12_with_every_grant"
    "ctl-migrations|migrations in the background of a compute-ctl start|it|migrations::start_up_migrates_in_the_background_and_configure_does_not"
    "configure|/configure then /terminate|it|compute_ctl::empty_then_configure_then_reconfigure_then_terminate"
    "promote|/promote of a vanilla replica|it|promote::a_vanilla_replica_is_promoted_to_a_writable_primary"
    "pg-promote|pg-promote of a streaming replica, then the new spec|it|a_streaming_replica_catches_up_with_its_primary_and_is_promoted with_reconfigure_the_new_spec_is_applied_after_the_promotion"
    "lfc|LFC offload and prewarm (vanilla)|it|prewarm::a_restarted_vanilla_compute_is_prewarmed_from_its_offload"
    "catalog|catalog: /grants, /extensions, dbs and roles|it|grants_grant_what_is_missing_and_say_what_they_ran extensions_create_update_and_keep_from_files dbs_and_roles_list_every_role_and_database"
    "schema|catalog: /database_schema (pg_dump)|it|schema_writes_the_dump_to_stdout_and_names_a_missing_database"
    "compat|upstream's requests on every route, against a running compute|it|compat::upstream_requests_get_upstream_answers"
)

# Known failures, each with the work that fixes it: "scenario id|majors|reason". Only these
# may fail; once fixed, their pass fails the run until the line is removed.
EXPECTED=(
)

installed() {
    [ -x "/usr/lib/postgresql/$1/bin/postgres" ] ||
        { [ -f "$cache/$1/.installed" ] && [ -x "$cache/$1/bin/postgres" ]; }
}

expected_reason() { # scenario id, major
    local line
    for line in "${EXPECTED[@]}"; do
        IFS='|' read -r id list reason <<<"$line"
        if [ "$id" = "$1" ] && [[ " $list " == *" $2 "* ]]; then
            echo "$reason"
            return 0
        fi
    done
    return 1
}

started=$(date +%s)
declare -A result
failed=0
notes=()
for major in "${majors[@]}"; do
    if ! installed "$major"; then
        for index in "${!SCENARIOS[@]}"; do result["$major,$index"]=skip; done
        if [ -n "${CI:-}" ]; then
            notes+=("PostgreSQL $major is not installed (CI: a failure); run scripts/install-deps.sh")
            failed=1
        else
            notes+=("!!!!!!!! SKIPPED PostgreSQL $major: not installed; run scripts/install-deps.sh !!!!!!!!")
        fi
        continue
    fi
    # One run per major with every scenario's filters (one cargo invocation, not one per
    # scenario: ~45 s less), then each scenario judged by its own tests' result lines.
    all=()
    for index in "${!SCENARIOS[@]}"; do
        IFS='|' read -r _ _ _ filters <<<"${SCENARIOS[$index]}"
        read -r -a names <<<"$filters"
        all+=("${names[@]}")
    done
    log="$logs/$major.log"
    t0=$(date +%s)
    PG_TEST_MAJOR="$major" cargo test --workspace --no-fail-fast --test it -- "${all[@]}" \
        >"$log" 2>&1 || true
    notes+=("PostgreSQL $major: $(($(date +%s) - t0)) s ($log)")
    for index in "${!SCENARIOS[@]}"; do
        IFS='|' read -r id name _ filters <<<"${SCENARIOS[$index]}"
        read -r -a names <<<"$filters"
        ok=0
        bad=0
        for filter in "${names[@]}"; do
            ok=$((ok + $(grep -cE "^test [^ ]*${filter}[^ ]* \.\.\. ok$" "$log" || true)))
            bad=$((bad + $(grep -cE "^test [^ ]*${filter}[^ ]* \.\.\. FAILED$" "$log" || true)))
        done
        reason=$(expected_reason "$id" "$major" || true)
        if [ $((ok + bad)) -eq 0 ]; then
            cell="FAIL (no test)"
            failed=1
            notes+=("$major $id: no test ran for \"$filters\" (renamed? or the build failed); see $log")
        elif [ "$bad" -eq 0 ] && [ -n "$reason" ]; then
            cell="XPASS"
            failed=1
            notes+=("$major $id passed but is listed as an expected failure: remove it from EXPECTED")
        elif [ "$bad" -eq 0 ]; then
            cell="pass"
        elif [ -n "$reason" ]; then
            cell="xfail"
            notes+=("$major $id: expected failure: $reason")
        else
            cell="FAIL"
            failed=1
            notes+=("$major $id failed: see $log")
        fi
        result["$major,$index"]="$cell"
        echo "PostgreSQL $major, $id ($name): $cell" >&2
    done
done

printf '\n| id | scenario |'
for major in "${majors[@]}"; do printf ' %s |' "$major"; done
printf '\n|---|---|'
for _ in "${majors[@]}"; do printf -- '---|'; done
printf '\n'
for index in "${!SCENARIOS[@]}"; do
    IFS='|' read -r id name _ <<<"${SCENARIOS[$index]}"
    printf '| %s | %s |' "$id" "$name"
    for major in "${majors[@]}"; do printf ' %s |' "${result["$major,$index"]}"; done
    printf '\n'
done
for note in "${notes[@]}"; do echo "$note"; done
echo "test-majors: $(($(date +%s) - started)) s"
exit "$failed"
