//! Two real ZFS hosts on one machine, for `zfs_two_hosts.rs`: each is a zfs-fuse daemon of its own
//! and an `sshd` of its own, started together in a private mount and UTS namespace, so that a
//! pool imported on one is unknown to the other, as on two VMs sharing a disk.
//!
//! What makes a host its own, inside its namespace (`unshare --mount --propagation private
//! --uts`, no network namespace):
//! - `/etc` is an overlay whose upper folder is the host's: `/etc/hostid` (what glibc's
//!   `gethostid()` reads, and what both the daemon, which writes it into the pool's labels, and
//!   the `zpool` command, which compares it on import, call) is the host's own;
//! - `/var/lib/zfs`, where Debian's zfs-fuse keeps its pool cache (`zpool.cache`: the pools a
//!   daemon imports when it starts), is a bind mount of the host's folder, empty at start: a
//!   daemon never loads the pools another daemon wrote there (the machine's, another host's,
//!   another test's, or a run's long gone, whose disks are deleted). Before it was, every host
//!   shared the machine's cache, and a host started while another test's host held its pool
//!   imported that pool too, from the same disk files;
//! - `/var/run/zfs` (the daemon's socket) and `/var/lock/zfs` (its lock file) are bind mounts
//!   of the host's folders, so the `zpool` commands of the host's SSH sessions talk to its own
//!   daemon, and the machine's daemon (which other tests share) is never seen nor touched;
//! - `/run/lock`, where a host's programs keep their lock files (ferry's replication round
//!   lock among them), is a bind mount of the host's folder (mounted first: `/var/lock` links
//!   to it, so the daemon's `/var/lock/zfs` is inside);
//! - its hostname, which ZFS records as the pool's last user ("last accessed by ...");
//! - its address: the sshd listens on a 127.x address of its own, on the port both hosts
//!   share (as two VMs' port 22). A network namespace is not needed: what must be per host is
//!   which daemon a session's `zpool` reaches, and that is the mount namespace's socket; the
//!   loopback interface is the machine's, so the test and ferry reach both hosts directly.
//!
//! The datasets a daemon mounts (FUSE) are visible in its namespace only: the test reads and
//! writes them through `/proc/PID/root`, and runs each host's own `zpool` with `nsenter`.
//! Every host is stopped when dropped, however the test ends.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use ferry_core::{
    Action, ApplyContext, Attributes, InstanceAddress, Observation, Provider, ReadContext,
    ResourceSpec, Step, StepError, StepId, StepOutcome,
};
use ferry_zfs::{ZfsPoolProvider, ZfsProviderConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

/// How long a daemon or an sshd may take to answer before the harness gives up.
const READY_WITHIN: Duration = Duration::from_secs(30);

fn run(program: &str, arguments: &[&str]) -> Output {
    Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {program}: {error}; run xtask/setup/30-zfs.sh first")
        })
}

fn run_ok(program: &str, arguments: &[&str]) -> String {
    let output = run(program, arguments);
    assert!(
        output.status.success(),
        "{program} {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Generates an ed25519 key pair at `path` (and `path.pub`); returns the public key line.
fn generate_key(path: &Path) -> String {
    let path_text = path.to_str().unwrap();
    run_ok(
        "ssh-keygen",
        &[
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "ferry-test",
            "-f",
            path_text,
        ],
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// Whether `pid` is a live process (not gone, not a zombie).
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// What each host of the pair is: its name, host id and loopback address.
#[derive(Debug, Clone, Copy)]
pub struct HostIdentity {
    pub hostname: &'static str,
    pub hostid: u32,
    pub address: Ipv4Addr,
}

pub const HOST_A: HostIdentity = HostIdentity {
    hostname: "ferry-host-a",
    hostid: 0x00a0_a0a0,
    address: Ipv4Addr::new(127, 42, 0, 1),
};

pub const HOST_B: HostIdentity = HostIdentity {
    hostname: "ferry-host-b",
    hostid: 0x00b0_b0b0,
    address: Ipv4Addr::new(127, 42, 0, 2),
};

/// A third host, for a test that needs one more VM (a failback's new standby): started only
/// when asked ([`TwoHosts::start_host_c`]), on the port the other two share.
pub const HOST_C: HostIdentity = HostIdentity {
    hostname: "ferry-host-c",
    hostid: 0x00c0_c0c0,
    address: Ipv4Addr::new(127, 42, 0, 3),
};

/// The script a host runs in its new namespaces: private `/etc`, lock folder, ZFS socket and
/// lock folders, its daemon, then its sshd in the foreground (the process the harness holds).
const HOST_SCRIPT: &str = r#"set -eu
folder=$1
hostname "$2"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$folder/etc,workdir=$folder/etc-work" /etc
rm -f /etc/zfs/zpool.cache
mount --bind "$folder/run-lock" /run/lock
mount --bind "$folder/run-zfs" /var/run/zfs
mount --bind "$folder/lock-zfs" /var/lock/zfs
mount --bind "$folder/lib-zfs" /var/lib/zfs
zfs-fuse --pidfile "$folder/zfs-fuse.pid"
exec /usr/sbin/sshd -D -e -f "$folder/sshd_config"
"#;

/// One ZFS host: its daemon and sshd, in their namespaces. Stopped on drop.
pub struct ZfsHost {
    pub identity: HostIdentity,
    pub folder: TempDir,
    pub port: u16,
    pub host_public_key: String,
    sshd: Child,
    daemon_pid: u32,
}

impl ZfsHost {
    /// Starts the host, letting in the holder of `user_public_key` as root on `port`.
    pub fn start(identity: HostIdentity, port: u16, user_public_key: &str) -> ZfsHost {
        let folder = tempfile::Builder::new()
            .prefix(&format!("{}-", identity.hostname))
            .tempdir()
            .unwrap();
        let path = folder.path();
        for name in [
            "etc/zfs",
            "etc-work",
            "run-lock/zfs",
            "run-zfs",
            "lock-zfs",
            "lib-zfs",
        ] {
            std::fs::create_dir_all(path.join(name)).unwrap();
        }
        // gethostid() reads the host id as a native-endian 32-bit number.
        std::fs::write(path.join("etc/hostid"), identity.hostid.to_ne_bytes()).unwrap();
        for mountpoint in ["/var/run/zfs", "/var/lock/zfs", "/var/lib/zfs", "/run/sshd"] {
            std::fs::create_dir_all(mountpoint).unwrap();
        }
        let host_key = path.join("host_key");
        let host_public_key = generate_key(&host_key);
        std::fs::write(path.join("authorized_keys"), user_public_key).unwrap();
        let config = format!(
            "Port {port}\nListenAddress {address}\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPubkeyAuthentication yes\nMaxSessions 50\n",
            address = identity.address,
            host = host_key.display(),
            dir = path.display(),
        );
        std::fs::write(path.join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(path.join("host.log")).unwrap();
        let mut sshd = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--uts", "sh", "-c"])
            .arg(HOST_SCRIPT)
            .args(["zfs-host", path.to_str().unwrap(), identity.hostname])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run unshare: {error}"));
        let started = Instant::now();
        let failed = |sshd: &mut Child, what: &str| -> ! {
            let _ = sshd.kill();
            let _ = sshd.wait();
            let log = std::fs::read_to_string(path.join("host.log")).unwrap_or_default();
            if let Some(pid) = std::fs::read_to_string(path.join("zfs-fuse.pid"))
                .ok()
                .and_then(|text| text.trim().parse::<u32>().ok())
            {
                let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            }
            panic!("{}: {what}; its output:\n{log}", identity.hostname);
        };
        // Ready when its sshd accepts connections (which happens after the daemon started).
        while TcpStream::connect((identity.address, port)).is_err() {
            if let Ok(Some(status)) = sshd.try_wait() {
                failed(&mut sshd, &format!("the host ended at start ({status})"));
            }
            if started.elapsed() > READY_WITHIN {
                failed(
                    &mut sshd,
                    &format!("sshd did not listen on {}:{port}", identity.address),
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let Some(daemon_pid) = std::fs::read_to_string(path.join("zfs-fuse.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
        else {
            failed(&mut sshd, "zfs-fuse wrote no pidfile");
        };
        let host = ZfsHost {
            identity,
            folder,
            port,
            host_public_key,
            sshd,
            daemon_pid,
        };
        // The daemon answers its own `zpool` (a wait for readiness, not a timed assertion).
        while !host.zpool(&["list"]).status.success() {
            assert!(
                started.elapsed() < READY_WITHIN,
                "{}: zfs-fuse does not answer `zpool list`: {}",
                identity.hostname,
                String::from_utf8_lossy(&host.zpool(&["list"]).stderr)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        host
    }

    pub fn daemon_pid(&self) -> u32 {
        self.daemon_pid
    }

    /// Runs `zpool ARGUMENTS` as this host runs it: in its namespaces, against its daemon.
    pub fn zpool(&self, arguments: &[&str]) -> Output {
        let target = self.daemon_pid.to_string();
        let mut all = vec!["-t", target.as_str(), "-m", "-u", "zpool"];
        all.extend_from_slice(arguments);
        run("nsenter", &all)
    }

    pub fn zpool_ok(&self, arguments: &[&str]) -> String {
        let output = self.zpool(arguments);
        assert!(
            output.status.success(),
            "{}: zpool {arguments:?} failed: {}",
            self.identity.hostname,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `zfs ARGUMENTS` as this host runs it.
    pub fn zfs(&self, arguments: &[&str]) -> Output {
        let target = self.daemon_pid.to_string();
        let mut all = vec!["-t", target.as_str(), "-m", "-u", "zfs"];
        all.extend_from_slice(arguments);
        run("nsenter", &all)
    }

    /// Runs `zfs ARGUMENTS` as this host runs it, and fails the test on an error.
    pub fn zfs_ok(&self, arguments: &[&str]) -> String {
        let output = self.zfs(arguments);
        assert!(
            output.status.success(),
            "{}: zfs {arguments:?} failed: {}",
            self.identity.hostname,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The snapshots of `dataset` (not of its children), oldest first, as this host lists them.
    pub fn snapshots(&self, dataset: &str) -> Vec<String> {
        self.zfs_ok(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", dataset])
            .lines()
            .filter_map(|line| line.split_once('@'))
            .filter(|(owner, _)| *owner == dataset)
            .map(|(_, name)| name.to_owned())
            .collect()
    }

    /// A dataset's property, as this host's `zfs get` says.
    pub fn zfs_value(&self, property: &str, dataset: &str) -> String {
        self.zfs_ok(&["get", "-H", "-o", "value", property, dataset])
            .trim()
            .to_owned()
    }

    /// The pools this host's daemon has imported, as its own `zpool list` says.
    pub fn imported_pools(&self) -> Vec<String> {
        self.zpool_ok(&["list", "-H", "-o", "name"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `zpool history POOL` on this host, or `None` when its daemon does not have the pool.
    pub fn history(&self, pool: &str) -> Option<String> {
        let output = self.zpool(&["history", pool]);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
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
        Path::new(&format!("/proc/{}/root", self.daemon_pid)).join(path.strip_prefix("/").unwrap())
    }

    /// Gives the host an empty folder of its own at `folder` (a tmpfs in its mount namespace),
    /// as a new VM's file system has: what the other hosts left there on the machine's file
    /// system (the folders their mounts made) is no longer seen by this host.
    pub fn own_empty_folder(&self, folder: &Path) {
        std::fs::create_dir_all(folder).unwrap();
        let target = self.daemon_pid.to_string();
        let folder = folder.to_str().unwrap();
        run_ok(
            "nsenter",
            &["-t", &target, "-m", "mount", "-t", "tmpfs", "tmpfs", folder],
        );
    }

    pub fn is_running(&self) -> bool {
        is_alive(self.daemon_pid)
    }

    /// The host dies as a VM that is powered off: its daemon and its sshd are killed with
    /// SIGKILL, with no export and no chance to write anything more to the disks. Returns once
    /// the daemon is gone.
    pub fn crash(&mut self) {
        let _ = Command::new("kill")
            .args(["-9", &self.daemon_pid.to_string()])
            .status();
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
        let started = Instant::now();
        while is_alive(self.daemon_pid) {
            assert!(
                started.elapsed() < READY_WITHIN,
                "zfs-fuse {} survived SIGKILL",
                self.daemon_pid
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ZfsHost {
    fn drop(&mut self) {
        // The host and its disks are thrown away: nothing needs a clean stop, and its mounts
        // go with its namespace once its last process has ended.
        if is_alive(self.daemon_pid) {
            let _ = Command::new("kill")
                .args(["-9", &self.daemon_pid.to_string()])
                .status();
        }
        let _ = self.sshd.kill();
        let _ = self.sshd.wait();
    }
}

/// Hosts A and B, a user key both let in, a known_hosts file naming both, and the disks they
/// share: sparse files linked as `lunN` in one device folder that both see.
pub struct TwoHosts {
    // Declared first, so dropped first: the daemons let go of the disks before their folder
    // goes.
    pub a: ZfsHost,
    pub b: ZfsHost,
    /// Host C, once [`TwoHosts::start_host_c`] started it.
    pub c: Option<ZfsHost>,
    pub folder: TempDir,
    pub port: u16,
    pub user_key: PathBuf,
    pub known_hosts: PathBuf,
    pub pool: String,
    pub devices: PathBuf,
    pub disk_files: Vec<PathBuf>,
}

/// A port free on every host's address now, host C's too (the sshds take it a moment later).
fn port_free_on_both() -> u16 {
    loop {
        let port = TcpListener::bind((HOST_A.address, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if TcpListener::bind((HOST_B.address, port)).is_ok()
            && TcpListener::bind((HOST_C.address, port)).is_ok()
        {
            return port;
        }
    }
}

impl TwoHosts {
    /// Both hosts, with `disks` disks of 128 MiB (zfs-fuse's smallest useful vdev is 64 MiB).
    pub fn start(disks: usize) -> TwoHosts {
        let folder = tempfile::Builder::new()
            .prefix("ferry-two-hosts-")
            .tempdir()
            .unwrap();
        let user_key = folder.path().join("user_key");
        let user_public_key = generate_key(&user_key);
        let port = port_free_on_both();
        let a = ZfsHost::start(HOST_A, port, &user_public_key);
        let b = ZfsHost::start(HOST_B, port, &user_public_key);
        let known_hosts = folder.path().join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!(
                "[{}]:{port} {}\n[{}]:{port} {}\n",
                HOST_A.address, a.host_public_key, HOST_B.address, b.host_public_key
            ),
        )
        .unwrap();
        let devices = folder.path().join("devices");
        std::fs::create_dir_all(&devices).unwrap();
        let mut disk_files = Vec::new();
        for lun in 0..disks {
            let file = folder.path().join(format!("disk{lun}"));
            std::fs::File::create(&file)
                .unwrap()
                .set_len(128 << 20)
                .unwrap();
            std::os::unix::fs::symlink(&file, devices.join(format!("lun{lun}"))).unwrap();
            disk_files.push(file);
        }
        TwoHosts {
            a,
            b,
            c: None,
            pool: format!("ferrytwo{}", std::process::id()),
            folder,
            port,
            user_key,
            known_hosts,
            devices,
            disk_files,
        }
    }

    /// Starts host C (its own daemon, sshd, host id and address, as A and B), lets ferry's
    /// key in and adds its host key to the known_hosts file, and gives it a device folder of
    /// its own that holds only `luns` (links to the same disk files): the disks moved and
    /// attached to it. Returns that folder.
    pub fn start_host_c(&mut self, luns: &[usize]) -> PathBuf {
        let user_public_key = std::fs::read_to_string(self.user_key.with_extension("pub")).unwrap();
        let c = ZfsHost::start(HOST_C, self.port, user_public_key.trim());
        let mut known_hosts = std::fs::read_to_string(&self.known_hosts).unwrap();
        known_hosts.push_str(&format!(
            "[{}]:{} {}\n",
            HOST_C.address, self.port, c.host_public_key
        ));
        std::fs::write(&self.known_hosts, known_hosts).unwrap();
        let devices = self.folder.path().join("devices-c");
        std::fs::create_dir_all(&devices).unwrap();
        for &lun in luns {
            std::os::unix::fs::symlink(&self.disk_files[lun], devices.join(format!("lun{lun}")))
                .unwrap();
        }
        self.c = Some(c);
        devices
    }

    /// Host C, started by [`TwoHosts::start_host_c`].
    pub fn c(&self) -> &ZfsHost {
        self.c.as_ref().expect("host C was started")
    }

    pub fn mountpoint(&self) -> PathBuf {
        self.folder.path().join("mnt")
    }

    /// Creates the pool directly (not through ferry) on host A, imported there.
    pub fn create_pool_on_a(&self) {
        let mountpoint = self.mountpoint().display().to_string();
        let mut arguments = vec!["create", "-m", mountpoint.as_str(), self.pool.as_str()];
        let links: Vec<String> = (0..self.disk_files.len())
            .map(|lun| self.devices.join(format!("lun{lun}")).display().to_string())
            .collect();
        arguments.extend(links.iter().map(String::as_str));
        self.a.zpool_ok(&arguments);
    }

    /// Which hosts' daemons list the pool as imported, each asked with its own `zpool list`.
    pub fn holders(&self) -> Vec<&'static str> {
        [&self.a, &self.b]
            .into_iter()
            .filter(|host| host.is_running() && host.imported_pools().contains(&self.pool))
            .map(|host| host.identity.hostname)
            .collect()
    }

    /// Replaces the temporary folder, the pool name, the port and the date ZFS gives for the
    /// pool's last use ("... (hostid: 0x...) on DATE") in a message, for snapshots.
    pub fn redact(&self, text: &str) -> String {
        let mut text = text
            .replace(&self.folder.path().display().to_string(), "[dir]")
            .replace(&self.pool, "[pool]")
            .replace(&format!(":{}", self.port), ":[port]");
        if let Some(start) = text.find(") on ").map(|index| index + ") on ".len())
            && let Some(length) = text[start..].find(')')
        {
            text.replace_range(start..start + length, "[date]");
        }
        text
    }
}

/// Writes files of varied sizes under `folder` as a host sees it, each fsynced (what an NFS
/// server does before it acknowledges a write), and returns each one's SHA-256.
pub fn write_files(folder: &Path) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    use std::io::Write;
    let mut sums = BTreeMap::new();
    for index in 0..6u32 {
        let size = 1000 + index as usize * 150_000;
        let data: Vec<u8> = (0..size)
            .map(|byte| (byte as u32).wrapping_mul(2654435761).wrapping_add(index) as u8)
            .collect();
        let name = format!("file{index}.bin");
        let mut file = std::fs::File::create(folder.join(&name)).unwrap();
        file.write_all(&data).unwrap();
        file.sync_all().unwrap();
        sums.insert(name, format!("{:x}", Sha256::digest(&data)));
    }
    std::fs::File::open(folder).unwrap().sync_all().unwrap();
    sums
}

/// The SHA-256 of every file of [`write_files`] under `folder`.
pub fn read_sums(folder: &Path, names: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    names
        .keys()
        .map(|name| {
            let data = std::fs::read(folder.join(name))
                .unwrap_or_else(|error| panic!("cannot read {name}: {error}"));
            (name.clone(), format!("{:x}", Sha256::digest(&data)))
        })
        .collect()
}

/// ferry's real provider for the hosts' pool, with host g1 at host A's address and g2 at
/// host B's, both seeing the disks in the same device folder.
pub fn fixture(hosts: &TwoHosts) -> Fixture {
    let (a, b) = (HOST_A.address.to_string(), HOST_B.address.to_string());
    Fixture::for_hosts(
        &hosts.pool,
        hosts.disk_files.len(),
        (hosts.port, &hosts.user_key, &hosts.known_hosts),
        [(&a, &hosts.devices), (&b, &hosts.devices)],
        json!({}),
    )
}

/// A zfs_pool resource, ferry's real provider for it, and the outputs of hosts g1 and g2.
pub struct Fixture {
    pub spec: ResourceSpec,
    pub provider: ZfsPoolProvider,
    pub outputs: BTreeMap<InstanceAddress, Attributes>,
}

pub fn host(generation: u32) -> InstanceAddress {
    format!("vm.nfs@g{generation}").parse().unwrap()
}

impl Fixture {
    /// The pool `pool` on disks `disk.d0..`, reached over SSH as `(port, user key, known
    /// hosts)`, with host g1 at the first `(address, device folder)` and g2 at the second.
    pub fn for_hosts(
        pool: &str,
        disk_count: usize,
        (port, user_key, known_hosts): (u16, &Path, &Path),
        hosts: [(&str, &Path); 2],
        extra_fields: Value,
    ) -> Fixture {
        let mut spec = ResourceSpec::new(format!("zfs_pool.{pool}").parse().unwrap());
        let disk_names: Vec<String> = (0..disk_count).map(|lun| format!("disk.d{lun}")).collect();
        let mut fields = json!({
            "host": "vm.nfs",
            "disks": disk_names,
            "ssh_user": "root",
            "ssh_port": port,
            "ssh_key_file": user_key.display().to_string(),
            "known_hosts": known_hosts.display().to_string(),
        });
        for (key, value) in extra_fields.as_object().into_iter().flatten() {
            fields[key] = value.clone();
        }
        for (key, value) in fields.as_object().unwrap() {
            spec = spec.with(key, value.clone());
        }
        let mut outputs = BTreeMap::new();
        for (generation, (address, folder)) in (1..).zip(hosts) {
            outputs.insert(
                host(generation),
                serde_json::from_value(json!({
                    "private_ip": address,
                    "device_folder": folder.display().to_string(),
                }))
                .unwrap(),
            );
        }
        let provider = ZfsPoolProvider::new(ZfsProviderConfig::default(), [&spec]);
        Fixture {
            spec,
            provider,
            outputs,
        }
    }

    pub fn instance(&self) -> InstanceAddress {
        self.spec.address.at(None)
    }

    /// The pool's instance in generation `generation`: a hot standby's replica.
    pub fn replica_instance(&self, generation: u32) -> InstanceAddress {
        self.spec.address.at(Some(generation))
    }

    /// Records `disk`'s lun among the outputs, as its attach does: the pool's device for it is
    /// then `lunN` whatever its position in `disks` (a replica's `disk.d1` is its first disk).
    pub fn record_lun(&mut self, disk: &str, lun: u32) {
        self.outputs.insert(
            disk.parse().unwrap(),
            serde_json::from_value(json!({ "lun": lun })).unwrap(),
        );
    }

    /// Records host g`generation` at `address`, seeing the disks in `folder`, as its VM's
    /// outputs would (a VM built after the first two).
    pub fn record_host(&mut self, generation: u32, address: &str, folder: &Path) {
        self.outputs.insert(
            host(generation),
            serde_json::from_value(json!({
                "private_ip": address,
                "device_folder": folder.display().to_string(),
            }))
            .unwrap(),
        );
    }

    /// Reads the pool as the spec at `generation` sees it.
    pub async fn read(&self, generation: u32) -> Observation {
        let mut fields = self.spec.fields.clone();
        fields.insert("host".into(), json!(host(generation).to_string()));
        self.read_instance(&self.instance(), &fields).await
    }

    /// Reads the hot standby's replica `zfs_pool.NAME@gN` on host gN, with the fields the
    /// observer gives it: the spec's, on the replica's disks (`replica_disks` as `disks`).
    pub async fn read_replica(&self, generation: u32) -> Observation {
        let mut fields = self.spec.fields.clone();
        let replica_disks = fields
            .remove("replica_disks")
            .expect("the pool has replica_disks");
        fields.insert("disks".into(), replica_disks);
        fields.insert("host".into(), json!(host(generation).to_string()));
        self.read_instance(&self.replica_instance(generation), &fields)
            .await
    }

    async fn read_instance(&self, instance: &InstanceAddress, fields: &Attributes) -> Observation {
        let outputs = |instance: &InstanceAddress| self.outputs.get(instance).cloned();
        self.provider
            .read(ReadContext {
                spec: &self.spec,
                instance,
                fields,
                remembered: None,
                outputs: &outputs,
            })
            .await
    }

    /// Applies one step with these inputs, as the engine would.
    pub async fn apply(&self, action: Action, inputs: Value) -> Result<StepOutcome, StepError> {
        self.apply_to(self.instance(), action, inputs).await
    }

    /// Applies one step of `address` (the pool's instance, or its replica's) with these
    /// inputs, as the engine would.
    pub async fn apply_to(
        &self,
        address: InstanceAddress,
        action: Action,
        inputs: Value,
    ) -> Result<StepOutcome, StepError> {
        self.apply_reporting(address, action, inputs).await.0
    }

    /// One replication round of the replica `address` with these inputs, as `ferry
    /// replicate` and the watch run it (`Provider::tend`).
    pub async fn tend(
        &self,
        address: InstanceAddress,
        inputs: Value,
    ) -> Result<Option<String>, StepError> {
        let inputs: Attributes = serde_json::from_value(inputs).unwrap();
        let outputs = |instance: &InstanceAddress| self.outputs.get(instance).cloned();
        self.provider
            .tend(
                &address,
                ApplyContext {
                    inputs: &inputs,
                    outputs: &outputs,
                    progress: &|_| {},
                    resume_token: None,
                    record_resume_token: &|_| {},
                },
            )
            .await
    }

    /// [`Fixture::apply_to`], with the progress lines the step reported, in order.
    pub async fn apply_reporting(
        &self,
        address: InstanceAddress,
        action: Action,
        inputs: Value,
    ) -> (Result<StepOutcome, StepError>, Vec<String>) {
        let step = Step {
            id: StepId::new(&address, action),
            address,
            action,
            reason: "test".into(),
            after: Vec::new(),
            estimate_seconds: 1,
            changes: Vec::new(),
            inputs: serde_json::from_value(inputs).unwrap(),
            warning: None,
        };
        let outputs = |instance: &InstanceAddress| self.outputs.get(instance).cloned();
        let lines = std::sync::Mutex::new(Vec::new());
        let result = self
            .provider
            .apply(
                &step,
                ApplyContext {
                    inputs: &step.inputs,
                    outputs: &outputs,
                    progress: &|line| lines.lock().unwrap().push(line),
                    resume_token: None,
                    record_resume_token: &|_| {},
                },
            )
            .await;
        (result, lines.into_inner().unwrap())
    }
}
