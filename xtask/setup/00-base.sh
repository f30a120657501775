#!/usr/bin/env bash
# Packages every test run needs, installed only when missing (needs root on a fresh machine).
set -euo pipefail
need=()
# librsvg2-bin and graphviz: the pictures test renders every picture ferry draws to PNG.
for package in git ca-certificates librsvg2-bin graphviz; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
