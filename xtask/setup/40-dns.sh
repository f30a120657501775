#!/usr/bin/env bash
# DNS tests (ferry-dns, ferry-hook's dns checks): BIND 9's `named`, `tsig-keygen` and `dig`.
# The tests start their own `named` on a loopback port with a generated config; this script
# only installs the binaries, when missing, and never starts the system's named.
set -euo pipefail
need=()
for package in bind9 bind9-dnsutils; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
