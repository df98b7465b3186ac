#!/usr/bin/env bash
# Builds the container image from the Dockerfile and runs it as a user would, with podman:
#
#   1. a local Debian bookworm base (debootstrap, cached under target/container/, imported as
#      localhost/debian:bookworm-local) — these machines reach no container registry;
#   2. binaries built on the host (release; `CONTAINER_PROFILE=debug` takes the debug build the
#      test suite just made, as CI does to stay within its time budget), then `podman build
#      --build-arg BINARIES=prebuilt` (the runtime stage is the one `docker build .` makes);
#   3. `podman run` with a spec mounted and the ports published: /status reaches `running`
#      (with a JWT signed by a key of the mounted key set), psql connects through the published
#      port with the spec's role and password, /metrics scrapes and passes `promtool check
#      metrics`, the compute runs as uid 999, `podman stop` (SIGTERM) ends it in well under
#      10 s with exit code 0, and `--version` names the commit.
#
# Prints how long each step took. Everything podman keeps is under target/container/ (its own
# storage root and configuration: nothing under /etc is changed). Needs root (rootful podman).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DIR=$ROOT/target/container
IMAGE=localhost/compute-tools:test
BASE=localhost/debian:bookworm-local
NAME=compute-tools-test-$$
mkdir -p "$DIR"

say() { printf '%s\n' "container-test: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
step_start=0
timings=()
step() { step_start=$(date +%s.%N); say "$1"; current_step=$1; }
done_step() {
    local now elapsed
    now=$(date +%s.%N)
    elapsed=$(python3 -c "print(f'{$now - $step_start:.1f}')")
    timings+=("$(printf '%-44s %7s s' "$current_step" "$elapsed")")
}

sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v promtool >/dev/null || missing+=(prometheus)
command -v psql >/dev/null || missing+=(postgresql-client)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing: ${missing[*]}"
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# podman's own configuration, private: crun cannot run here (cgroups in hybrid mode), and
# setting the default rlimits is not permitted in this sandbox.
cat > "$DIR/containers.conf" <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$DIR/containers.conf
pod() { podman --root "$DIR/storage" --runroot "$DIR/run" "$@"; }

cleanup() {
    pod rm -f -t 0 "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# 1. The base image.
step "base image ($BASE)"
if ! pod image exists "$BASE"; then
    if [ ! -s "$DIR/bookworm-minbase.tar" ]; then
        mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
        mirror=${mirror:-http://deb.debian.org/debian}
        rm -rf "$DIR/bookworm"
        sudo_if_needed debootstrap --variant=minbase bookworm "$DIR/bookworm" "$mirror" \
            > "$DIR/debootstrap.log" 2>&1 || { tail -20 "$DIR/debootstrap.log" >&2; fail "debootstrap"; }
        sudo_if_needed tar -C "$DIR/bookworm" -cf "$DIR/bookworm-minbase.tar.part" .
        mv "$DIR/bookworm-minbase.tar.part" "$DIR/bookworm-minbase.tar"
        sudo_if_needed rm -rf "$DIR/bookworm"
    fi
    pod import -q "$DIR/bookworm-minbase.tar" "$BASE" >/dev/null
fi
done_step

# 2. The binaries and the image.
# The commit the binaries are built from (build.rs reads the same).
commit=${COMPUTE_TOOLS_GIT_HASH:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
profile=${CONTAINER_PROFILE:-release}
case "$profile" in
    release) build_flags=(--release); out=target/release ;;
    debug) build_flags=(); out=target/debug ;;
    *) fail "CONTAINER_PROFILE must be release or debug, not '$profile'" ;;
esac
step "$profile binaries (cargo build ${build_flags[*]})"
cargo build "${build_flags[@]}" -q --locked --bins
rm -rf "$DIR/bin"
mkdir -p "$DIR/bin"
for bin in compute-ctl compute_ctl compute-spec pg-sync-safekeepers pg-basebackup-fetch pg-extensions-fetch \
           pg-reconcile pg-supervise pg-prewarm pg-catalog pg-lsn-lease pg-promote vm-monitor; do
    cp "$out/$bin" "$DIR/bin/"
done
done_step

step "podman build"
pod build -q --build-arg BASE_IMAGE="$BASE" --build-arg BINARIES=prebuilt -t "$IMAGE" . \
    > "$DIR/build.log" 2>&1 || { tail -30 "$DIR/build.log" >&2; fail "podman build"; }
done_step

# 3. Run it as a user would: a spec, a key set, published ports.
step "podman run until /status says running"
work=$(mktemp -d "$DIR/run-XXXXXX")
python3 - "$work" <<'PY'
import base64, json, subprocess, sys, time
work = sys.argv[1]
b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=").decode()
subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", f"{work}/key.pem"], check=True)
public = subprocess.run(["openssl", "pkey", "-in", f"{work}/key.pem", "-pubout", "-outform", "DER"],
                        check=True, capture_output=True).stdout[-32:]
jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64(public), "kid": "container-test", "alg": "EdDSA", "use": "sig"}
header = b64(json.dumps({"alg": "EdDSA", "typ": "JWT", "kid": "container-test"}).encode())
claims = b64(json.dumps({"scope": "compute_ctl:admin", "aud": ["compute"], "exp": int(time.time()) + 3600}).encode())
signing_input = f"{header}.{claims}".encode()
with open(f"{work}/input", "wb") as f:
    f.write(signing_input)
signature = subprocess.run(["openssl", "pkeyutl", "-sign", "-inkey", f"{work}/key.pem", "-rawin", "-in", f"{work}/input"],
                           check=True, capture_output=True).stdout
with open(f"{work}/token", "w") as f:
    f.write(f"{header}.{claims}.{b64(signature)}")
spec = json.load(open("compute-spec/src/sample-spec.json"))
for setting in spec["cluster"]["settings"]:
    if setting["name"] == "listen_addresses":
        setting["value"] = "*"
json.dump({"spec": spec, "compute_ctl_config": {"jwks": {"keys": [jwk]}}}, open(f"{work}/config.json", "w"))
PY
chmod 0644 "$work/config.json"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(free_port)
pg_port=$(free_port)
token=$(cat "$work/token")
pod run -d --name "$NAME" -p "127.0.0.1:$http_port:3080" -p "127.0.0.1:$pg_port:55432" \
    -v "$work/config.json:/var/db/postgres/specs/config.json:ro" "$IMAGE" >/dev/null
status=""
for _ in $(seq 1 240); do
    status=$(curl -s -m 2 -H "Authorization: Bearer $token" "http://127.0.0.1:$http_port/status" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin).get("status",""))' 2>/dev/null || true)
    [ "$status" = running ] && break
    [ "$status" = failed ] && break
    if [ "$(pod inspect -f '{{.State.Running}}' "$NAME")" != true ]; then break; fi
    sleep 0.5
done
if [ "$status" != running ]; then
    pod logs "$NAME" 2>&1 | tail -40 >&2
    fail "/status did not reach running (last: '${status}')"
fi
done_step

step "psql through the published port"
answer=$(PGPASSWORD=app_password PGCONNECT_TIMEOUT=10 psql -X -At \
    "host=127.0.0.1 port=$pg_port user=app_owner dbname=app sslmode=disable" \
    -c "SELECT current_user || ' ' || current_database()")
[ "$answer" = "app_owner app" ] || fail "psql answered '$answer'"
done_step

step "/metrics through promtool check metrics"
curl -sf -m 5 "http://127.0.0.1:$http_port/metrics" > "$work/metrics"
grep -q '^compute_ctl_up{' "$work/metrics" || fail "/metrics has no compute_ctl_up"
# A parse error fails; so does a lint finding, except on upstream's two names, which a drop-in
# replacement keeps as upstream spells them (compute-ctl/tests/it/promtool.rs checks the same).
promtool_code=0
promtool check metrics < "$work/metrics" > "$work/promtool.out" 2>&1 || promtool_code=$?
if [ "$promtool_code" != 0 ]; then
    unexpected=$(grep -v -E '^(compute_pg_current_downtime_ms|compute_pg_downtime_ms_total) ' \
        "$work/promtool.out" | grep -v '^$' || true)
    if [ "$promtool_code" != 3 ] || [ -n "$unexpected" ]; then
        cat "$work/promtool.out" >&2
        fail "promtool check metrics (exit $promtool_code)"
    fi
fi
done_step

step "the compute runs as uid 999"
uid=$(pod exec "$NAME" stat -c %u /proc/1)
[ "$uid" = 999 ] || fail "PID 1 runs as uid $uid"
postgres_uid=$(pod exec "$NAME" sh -c 'for p in /proc/[0-9]*; do
    [ "$(cat $p/comm 2>/dev/null)" = postgres ] && stat -c %u $p && break; done')
[ "$postgres_uid" = 999 ] || fail "postgres runs as uid '$postgres_uid'"
done_step

step "podman stop (SIGTERM)"
stop_started=$(date +%s.%N)
pod stop -t 10 "$NAME" >/dev/null
stop_seconds=$(python3 -c "print(f'{$(date +%s.%N) - $stop_started:.2f}')")
code=$(pod inspect -f '{{.State.ExitCode}}' "$NAME")
[ "$code" = 0 ] || { pod logs "$NAME" 2>&1 | tail -20 >&2; fail "exit code $code after SIGTERM"; }
python3 -c "import sys; sys.exit(0 if $stop_seconds < 8 else 1)" \
    || fail "stopping took ${stop_seconds} s"
done_step

step "--version names the commit"
version=$(pod run --rm "$IMAGE" --version)
case "$version" in
    *"$commit"*) ;;
    *) fail "--version says '$version', not commit $commit" ;;
esac
done_step
rm -rf "$work"

say "passed (stop after SIGTERM: ${stop_seconds} s, exit code 0; $version)"
printf '%s\n' "${timings[@]}"
