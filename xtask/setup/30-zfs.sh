#!/usr/bin/env bash
# ZFS over SSH tests (ferry-zfs): a real OpenSSH server binary (the tests start their own sshd on
# loopback) and Debian's zfs-fuse daemon (needs /dev/fuse). Idempotent: installs only what is
# missing and starts zfs-fuse only when it is not running.
set -euo pipefail
need=()
for package in openssh-server openssh-client zfs-fuse; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi
if ! pgrep -x zfs-fuse >/dev/null 2>&1; then
  if [ ! -e /dev/fuse ]; then
    echo "30-zfs.sh: /dev/fuse is missing: zfs-fuse cannot start (run on a machine with FUSE)" >&2
    exit 1
  fi
  mkdir -p /var/run/zfs /var/lock/zfs
  zfs-fuse --pidfile /var/run/zfs-fuse.pid
  # zfs-fuse forks and is ready when its control socket answers.
  for _ in $(seq 1 50); do
    zpool list >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
zpool list >/dev/null
