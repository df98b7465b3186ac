#!/usr/bin/env bash
# Validates the Kubernetes manifests under deploy/kubernetes against the Kubernetes schemas
# (kubernetes-validate from PyPI, in a private virtualenv under target/).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/validate-venv
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
    if ! python3 -m venv "$venv" 2>/dev/null; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        python3 -m venv "$venv"
    fi
    "$venv/bin/pip" install -q kubernetes-validate
fi
"$venv/bin/kubernetes-validate" --strict deploy/kubernetes/*.yaml
