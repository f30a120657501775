#!/usr/bin/env bash
# Azure Blob state tests (ferry-state-blob): Azurite's blob service from the npm registry (package
# `azurite`, which provides `azurite-blob`). The tests start their own azurite-blob over HTTPS on a
# free loopback port with a generated certificate, so nothing is started here. Idempotent:
# installs only when `azurite-blob` is missing. Needs node and npm.
set -euo pipefail
if command -v azurite-blob >/dev/null 2>&1; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "50-azurite.sh: npm is missing: install Node.js and npm (Debian: apt-get install nodejs npm), then run this again" >&2
  exit 1
fi
npm install --global --no-audit --no-fund azurite
command -v azurite-blob >/dev/null
