#!/usr/bin/env bash
# Packages every test run needs, installed only when missing (needs root on a fresh machine).
set -euo pipefail
need=()
for package in git ca-certificates; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
