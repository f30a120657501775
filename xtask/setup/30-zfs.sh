#!/usr/bin/env bash
# ZFS over SSH tests (ferry-zfs): a real OpenSSH server binary (the tests start their own sshd on
# loopback) and Debian's zfs-fuse daemon (needs /dev/fuse). Idempotent: installs only what is
# missing and starts zfs-fuse only when no daemon answers.
set -euo pipefail
need=()
for package in openssh-server openssh-client zfs-fuse; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}"
fi

answers() { zpool list >/dev/null 2>&1; }
wait_for_daemon() {
  for _ in $(seq 1 50); do
    answers && return 0
    sleep 0.1
  done
  return 1
}
# A live (not zombie) process named in the pidfile.
pidfile=/var/run/zfs-fuse.pid
daemon_pid() {
  local pid
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  [ "$(awk '{print $3}' "/proc/$pid/stat")" != Z ] || return 1
  echo "$pid"
}

answers && exit 0
if pid=$(daemon_pid); then
  # Started a moment ago (by the package's postinst, say): give it time, then replace it.
  wait_for_daemon && exit 0
  echo "30-zfs.sh: zfs-fuse (pid $pid) does not answer; restarting it" >&2
  kill "$pid" 2>/dev/null || true
  sleep 1
fi
if [ ! -e /dev/fuse ]; then
  echo "30-zfs.sh: /dev/fuse is missing: zfs-fuse cannot start (run on a machine with FUSE)" >&2
  exit 1
fi
# zfs-fuse refuses to start, silently, while a pidfile exists, and a daemon that ended with its
# machine or its session leaves one behind.
rm -f "$pidfile"
mkdir -p /var/run/zfs /var/lock/zfs
if ! zfs-fuse --pidfile "$pidfile"; then
  echo "30-zfs.sh: zfs-fuse did not start" >&2
  exit 1
fi
if ! wait_for_daemon; then
  zpool list || true
  echo "30-zfs.sh: zfs-fuse started but \`zpool list\` does not answer (see above)" >&2
  exit 1
fi
