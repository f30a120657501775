#!/usr/bin/env bash
# The Python SDK test (tests/tests/python_sdk.rs): a virtualenv at tests/python-sdk/.venv with
# Microsoft's management SDKs pinned in tests/python-sdk/requirements.txt, from PyPI. Idempotent:
# rebuilds the virtualenv only when it is missing or the requirements changed (their hash is kept
# in the virtualenv). Needs python3; installs Debian's python3-venv when `venv` cannot make one.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
folder="$root/tests/python-sdk"
venv="$folder/.venv"
requirements="$folder/requirements.txt"
if ! command -v python3 >/dev/null 2>&1; then
  echo "60-python-sdk.sh: python3 is missing: install it (Debian: apt-get install python3), then run this again" >&2
  exit 1
fi
wanted="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$venv/requirements.sha256" 2>/dev/null)" = "$wanted" ]; then
  exit 0
fi
rm -rf "$venv"
if ! python3 -m venv "$venv" >/dev/null 2>&1; then
  rm -rf "$venv"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
  python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$requirements"
echo "$wanted" > "$venv/requirements.sha256"
