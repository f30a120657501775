//! ZFS hosts of their own on one machine: each is a zfs-fuse daemon and an `sshd`, started
//! together in a private mount and UTS namespace, so that a pool imported on one is unknown to
//! the others, as on VMs sharing a disk. The two-host tests in `tests/` and the hot standby's
//! demo (through [`VmHosts`](crate::VmHosts): one host per simulated VM) stand on them.
//!
//! What makes a host its own, inside its namespace (`unshare --mount --propagation private
//! --uts`, no network namespace):
//! - `/etc` is an overlay whose upper folder is the host's: `/etc/hostid` (what glibc's
//!   `gethostid()` reads, and what both the daemon, which writes it into the pool's labels, and
//!   the `zpool` command, which compares it on import, call) is the host's own;
//! - `/var/lib/zfs`, where Debian's zfs-fuse keeps its pool cache (`zpool.cache`: the pools a
//!   daemon imports when it starts), is a bind mount of the host's folder, empty at start: a
//!   daemon never loads the pools another daemon wrote there (the machine's, another host's,
//!   another run's, long gone, whose disks are deleted);
//! - `/var/run/zfs` (the daemon's socket) and `/var/lock/zfs` (its lock file) are bind mounts
//!   of the host's folders, so the `zpool` commands of the host's SSH sessions talk to its own
//!   daemon, and the machine's daemon (which other runs share) is never seen nor touched;
//! - `/run/lock`, where a host's programs keep their lock files (ferry's replication round
//!   lock among them), is a bind mount of the host's folder (mounted first: `/var/lock` links
//!   to it, so the daemon's `/var/lock/zfs` is inside);
//! - no FUSE mount of another daemon: a new mount namespace starts with a copy of the
//!   machine's mounts, the datasets the machine's zfs-fuse had mounted at that moment among
//!   them, and a copy held for the host's life keeps that pool busy (`zpool export` refuses:
//!   "pool is busy") for whoever runs the machine's daemon; the host lets go of them first;
//! - its hostname, which ZFS records as the pool's last user ("last accessed by ...");
//! - its address: the sshd listens on a 127.x address of its own. A network namespace is not
//!   needed: what must be per host is which daemon a session's `zpool` reaches, and that is the
//!   mount namespace's socket; the loopback interface is the machine's, so the caller and
//!   ferry reach every host directly.
//!
//! The datasets a daemon mounts (FUSE) are visible in its namespace only: read and write them
//! through [`ZfsHost::path`] (`/proc/PID/root/...`), and run the host's own `zpool` and `zfs`
//! with [`ZfsHost::zpool`] and [`ZfsHost::zfs`] (`nsenter`). A host is stopped when dropped.

use std::borrow::Cow;
use std::net::{Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::sshd::generate_key;
use crate::{ServerError, create_folder, error, need, write};

/// How long a daemon or an sshd may take to answer before we give up on the host.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// What a host is: its name, host id and loopback address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    pub hostname: Cow<'static, str>,
    pub hostid: u32,
    pub address: Ipv4Addr,
}

/// The script a host runs in its new namespaces: no inherited FUSE mount, private `/etc`, lock
/// folder, ZFS socket, lock and cache folders, its daemon, then its sshd in the foreground
/// (the process the handle holds).
const HOST_SCRIPT: &str = r#"set -eu
folder=$1
hostname "$2"
# The machine's zfs-fuse datasets, copied into this namespace when it was made: deepest first.
awk '$3 ~ /^fuse/ { print $2 }' /proc/self/mounts | sort -r | while read -r mountpoint; do
  umount -l "$(printf '%b' "$mountpoint")" 2>/dev/null || true
done
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$folder/etc,workdir=$folder/etc-work" /etc
rm -f /etc/zfs/zpool.cache
mount --bind "$folder/run-lock" /run/lock
mount --bind "$folder/run-zfs" /var/run/zfs
mount --bind "$folder/lock-zfs" /var/lock/zfs
mount --bind "$folder/lib-zfs" /var/lib/zfs
zfs-fuse --pidfile "$folder/zfs-fuse.pid"
exec /usr/sbin/sshd -D -e -f "$folder/sshd_config"
"#;

/// The host key a host presents: its own, generated at start, or one it shares with others
/// (a known_hosts line per address then names it once for all).
#[derive(Debug, Clone, Copy)]
pub enum HostKey<'a> {
    Generate,
    Shared(&'a Path),
}

/// Whether `pid` is a live process (not gone, not a zombie).
pub fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

fn kill_hard(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// Kills every process of the mount namespace `pid` is in (SIGKILL), `pid` included: what a
/// power-off does to a VM's processes, its SSH sessions' among them.
fn kill_namespace(pid: u32) {
    let namespace = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    let Some(own) = namespace(&pid.to_string()) else {
        return;
    };
    if namespace("self").as_ref() == Some(&own) {
        // Never the caller's own namespace (a daemon already gone, its pid taken again).
        return;
    }
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(other) = name.to_str().filter(|name| name.parse::<u32>().is_ok()) else {
            continue;
        };
        if namespace(other).as_ref() == Some(&own) {
            let _ = Command::new("kill").args(["-9", other]).status();
        }
    }
}

/// One ZFS host: its daemon and sshd, in their namespaces. Stopped on drop.
#[derive(Debug)]
pub struct ZfsHost {
    pub identity: HostIdentity,
    /// The host's own files: its `/etc` overlay, ZFS folders, keys, config and log.
    pub folder: PathBuf,
    pub port: u16,
    pub host_public_key: String,
    sshd: Child,
    daemon_pid: u32,
}

impl ZfsHost {
    /// Starts the host in `folder` (created; the caller removes it), letting in the holders of
    /// `authorized_keys` as root on `port` of its address.
    pub fn start(
        identity: HostIdentity,
        folder: &Path,
        port: u16,
        authorized_keys: &str,
        host_key: HostKey<'_>,
    ) -> Result<ZfsHost, ServerError> {
        for program in [("zfs-fuse", "zfs-fuse"), ("unshare", "util-linux")] {
            need(program.0, program.1)?;
        }
        need("nsenter", "util-linux")?;
        need("sshd", "openssh-server")?;
        for name in [
            "etc/zfs",
            "etc-work",
            "run-lock/zfs",
            "run-zfs",
            "lock-zfs",
            "lib-zfs",
        ] {
            create_folder("zfs host", &folder.join(name))?;
        }
        for mountpoint in ["/var/run/zfs", "/var/lock/zfs", "/var/lib/zfs", "/run/sshd"] {
            create_folder("zfs host", Path::new(mountpoint))?;
        }
        // gethostid() reads the host id as a native-endian 32-bit number.
        std::fs::write(folder.join("etc/hostid"), identity.hostid.to_ne_bytes())
            .map_err(|failure| error("zfs host", format!("cannot write its hostid: {failure}")))?;
        let key_file = folder.join("host_key");
        let host_public_key = match host_key {
            HostKey::Generate => generate_key(&key_file, &identity.hostname)?,
            HostKey::Shared(path) => {
                std::fs::copy(path, &key_file).map_err(|failure| {
                    error(
                        "zfs host",
                        format!("cannot copy the host key {}: {failure}", path.display()),
                    )
                })?;
                std::fs::read_to_string(path.with_extension("pub"))
                    .map(|text| text.trim().to_owned())
                    .map_err(|failure| {
                        error(
                            "zfs host",
                            format!("cannot read {}.pub: {failure}", path.display()),
                        )
                    })?
            }
        };
        write(
            "zfs host",
            &folder.join("authorized_keys"),
            &format!("{}\n", authorized_keys.trim()),
        )?;
        let config = format!(
            "Port {port}\nListenAddress {address}\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPubkeyAuthentication yes\nMaxSessions 50\nMaxStartups 100\n",
            address = identity.address,
            host = key_file.display(),
            dir = folder.display(),
        );
        write("zfs host", &folder.join("sshd_config"), &config)?;
        let log_path = folder.join("host.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|failure| error("zfs host", format!("cannot create its log: {failure}")))?;
        let log_copy = log
            .try_clone()
            .map_err(|failure| error("zfs host", failure.to_string()))?;
        let mut sshd = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--uts", "sh", "-c"])
            .arg(HOST_SCRIPT)
            .arg("zfs-host")
            .arg(folder)
            .arg(identity.hostname.as_ref())
            .stdin(Stdio::null())
            .stdout(log_copy)
            .stderr(log)
            .spawn()
            .map_err(|failure| error("zfs host", format!("cannot run unshare: {failure}")))?;
        let daemon_pid = || {
            std::fs::read_to_string(folder.join("zfs-fuse.pid"))
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
        };
        let failed = |sshd: &mut Child, what: String| -> ServerError {
            let _ = sshd.kill();
            let _ = sshd.wait();
            if let Some(pid) = daemon_pid() {
                kill_hard(pid);
            }
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            error(
                "zfs host",
                format!("{}: {what}; its output:\n{log}", identity.hostname),
            )
        };
        let started = Instant::now();
        // Ready when its sshd accepts connections (which happens after the daemon started).
        while TcpStream::connect((identity.address, port)).is_err() {
            if let Ok(Some(status)) = sshd.try_wait() {
                return Err(failed(
                    &mut sshd,
                    format!("the host ended at start ({status})"),
                ));
            }
            if started.elapsed() > READY_WITHIN {
                let what = format!("sshd did not listen on {}:{port}", identity.address);
                return Err(failed(&mut sshd, what));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let Some(daemon_pid) = daemon_pid() else {
            return Err(failed(&mut sshd, "zfs-fuse wrote no pidfile".into()));
        };
        let host = ZfsHost {
            identity,
            folder: folder.to_path_buf(),
            port,
            host_public_key,
            sshd,
            daemon_pid,
        };
        // The daemon answers its own `zpool` (a wait for readiness).
        loop {
            let answer = host.zpool(&["list"])?;
            if answer.status.success() {
                return Ok(host);
            }
            if started.elapsed() > READY_WITHIN {
                return Err(error(
                    "zfs host",
                    format!(
                        "{}: zfs-fuse does not answer `zpool list`: {}",
                        host.identity.hostname,
                        String::from_utf8_lossy(&answer.stderr).trim()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon_pid
    }

    /// Runs `program ARGUMENTS` as this host runs it: in its namespaces, against its daemon.
    pub fn command(&self, program: &str, arguments: &[&str]) -> Result<Output, ServerError> {
        let target = self.daemon_pid.to_string();
        Command::new("nsenter")
            .args(["-t", target.as_str(), "-m", "-u", program])
            .args(arguments)
            .output()
            .map_err(|failure| error("zfs host", format!("cannot run nsenter: {failure}")))
    }

    /// `zpool ARGUMENTS` on this host.
    pub fn zpool(&self, arguments: &[&str]) -> Result<Output, ServerError> {
        self.command("zpool", arguments)
    }

    /// `zfs ARGUMENTS` on this host.
    pub fn zfs(&self, arguments: &[&str]) -> Result<Output, ServerError> {
        self.command("zfs", arguments)
    }

    /// Gives the host an empty folder of its own at `folder` (a tmpfs in its mount namespace),
    /// as a new VM's file system has: what other hosts or earlier runs left there on the
    /// machine's file system (the folders their mounts made, files written beside them) is no
    /// longer seen by this host, and what it writes there stays its own.
    pub fn own_empty_folder(&self, folder: &Path) -> Result<(), ServerError> {
        create_folder("zfs host", folder)?;
        let text = folder.to_string_lossy();
        let output = self.command("mount", &["-t", "tmpfs", "tmpfs", &text])?;
        if !output.status.success() {
            return Err(error(
                "zfs host",
                format!(
                    "{}: cannot mount a tmpfs on {text}: {}",
                    self.identity.hostname,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        Ok(())
    }

    /// The mounts of `pool`'s datasets in this host's namespace, as its `/proc/PID/mounts`
    /// lists them (what is mounted now, whatever ZFS's properties say).
    pub fn mounts_of(&self, pool: &str) -> Vec<String> {
        let mounts = std::fs::read_to_string(format!("/proc/{}/mounts", self.daemon_pid))
            .unwrap_or_default();
        let child = format!("{pool}/");
        mounts
            .lines()
            .filter(|line| {
                line.split_whitespace()
                    .next()
                    .is_some_and(|source| source == pool || source.starts_with(&child))
            })
            .map(str::to_owned)
            .collect()
    }

    /// `path` as this host sees it (its daemon's mounts are in its namespace only).
    pub fn path(&self, path: &Path) -> PathBuf {
        let relative = path.strip_prefix("/").unwrap_or(path);
        Path::new(&format!("/proc/{}/root", self.daemon_pid)).join(relative)
    }

    /// Whether its daemon still runs.
    pub fn is_running(&self) -> bool {
        is_alive(self.daemon_pid)
    }

    /// The host dies as a VM that is powered off: its daemon, its sshd and its SSH sessions
    /// are killed with SIGKILL, with no export and no chance to write anything more to the
    /// disks. Returns once the daemon is gone (or, should it outlive SIGKILL, after saying so).
    pub fn crash(&mut self) {
        if is_alive(self.daemon_pid) {
            kill_namespace(self.daemon_pid);
        }
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        let started = Instant::now();
        while is_alive(self.daemon_pid) {
            if started.elapsed() > READY_WITHIN {
                eprintln!(
                    "{}: zfs-fuse {} survived SIGKILL",
                    self.identity.hostname, self.daemon_pid
                );
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ZfsHost {
    fn drop(&mut self) {
        // The host and its disks are thrown away: nothing needs a clean stop, and its mounts
        // go with its namespace once its last process has ended.
        if is_alive(self.daemon_pid) {
            kill_namespace(self.daemon_pid);
        }
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}
