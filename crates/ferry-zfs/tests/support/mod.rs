//! Test harness of the ZFS-over-SSH tests: an `sshd` of our own on a free loopback port, with
//! a host key and a user key generated for it, and pools on sparse files whose `lunN` links sit
//! in per-host device folders, on the machine's one zfs-fuse daemon.
//!
//! It needs `openssh-server`, `openssh-client` and a running `zfs-fuse`, which
//! `xtask/setup/30-zfs.sh` installs and starts.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ferry_core::{
    Action, ApplyContext, Attributes, InstanceAddress, Observation, Provider, ReadContext,
    ResourceSpec, Step, StepError, StepId, StepOutcome,
};
use ferry_zfs::{ZfsPoolProvider, ZfsProviderConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

/// zfs-fuse is one daemon for the whole machine: the tests that use it take turns. An async
/// mutex, as each test holds it across its awaits (and a failed test does not poison it).
static ZFS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub async fn zfs_lock() -> tokio::sync::MutexGuard<'static, ()> {
    ZFS.lock().await
}

fn run(program: &str, arguments: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(arguments)
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run {program}: {error}; run xtask/setup/30-zfs.sh first")
        })
}

pub fn run_ok(program: &str, arguments: &[&str]) -> String {
    let output = run(program, arguments);
    assert!(
        output.status.success(),
        "{program} {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Generates an ed25519 key pair at `path` (and `path.pub`); returns the public key line.
pub fn generate_key(path: &Path) -> String {
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
            path.to_str().unwrap(),
        ],
    );
    std::fs::read_to_string(path.with_extension("pub"))
        .unwrap()
        .trim()
        .to_owned()
}

/// The SHA256 fingerprint of a public key file.
pub fn fingerprint(public_key_file: &Path) -> String {
    run_ok(
        "ssh-keygen",
        &["-l", "-f", public_key_file.to_str().unwrap()],
    )
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_owned()
}

/// An sshd on 127.0.0.1 that lets root in with the generated user key. Stopped on drop.
pub struct Sshd {
    child: Child,
    pub dir: TempDir,
    pub port: u16,
    pub host_public_key: String,
    pub user_key: PathBuf,
    pub known_hosts: PathBuf,
}

impl Sshd {
    pub fn start() -> Sshd {
        Self::start_with("")
    }

    /// `extra` is added to sshd_config (a test's `SetEnv PATH=...`).
    pub fn start_with(extra: &str) -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("ferry-sshd-")
            .tempdir()
            .unwrap();
        let host_key = dir.path().join("host_key");
        let host_public_key = generate_key(&host_key);
        let user_key = dir.path().join("user_key");
        let user_public_key = generate_key(&user_key);
        std::fs::write(dir.path().join("authorized_keys"), &user_public_key).unwrap();
        // sshd needs its privilege separation folder, which only a booted system creates.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {host}\nPidFile {dir}/sshd.pid\n\
             AuthorizedKeysFile {dir}/authorized_keys\nPermitRootLogin prohibit-password\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
             StrictModes no\nPubkeyAuthentication yes\nMaxSessions 50\n{extra}\n",
            host = host_key.display(),
            dir = dir.path().display(),
        );
        let config_path = dir.path().join("sshd_config");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("/usr/sbin/sshd")
            .args(["-D", "-e", "-f", config_path.to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start sshd: {error}; run xtask/setup/30-zfs.sh first")
            });
        // Ready when it accepts connections (a wait for readiness, not a timed assertion).
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "sshd did not listen on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let known_hosts = dir.path().join("known_hosts");
        std::fs::write(
            &known_hosts,
            format!("[127.0.0.1]:{port} {host_public_key}\n"),
        )
        .unwrap();
        Sshd {
            child,
            dir,
            port,
            host_public_key,
            user_key,
            known_hosts,
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

static POOLS: AtomicUsize = AtomicUsize::new(0);

/// Sparse-file disks, "host A" and "host B" device folders, and a pool name of its own.
/// Destroys the pool on drop, wherever it is.
pub struct Disks {
    pub dir: TempDir,
    pub pool: String,
    pub files: Vec<PathBuf>,
    pub host_a: PathBuf,
    pub host_b: PathBuf,
}

impl Disks {
    /// `count` disks of 128 MiB (zfs-fuse's smallest useful vdev is 64 MiB), linked as
    /// `lun0..` in host A's folder.
    pub fn new(count: usize) -> Disks {
        let dir = tempfile::Builder::new()
            .prefix("ferry-zfs-")
            .tempdir()
            .unwrap();
        let pool = format!(
            "ferrytest{}n{}",
            std::process::id(),
            POOLS.fetch_add(1, Ordering::SeqCst)
        );
        let host_a = dir.path().join("host-a");
        let host_b = dir.path().join("host-b");
        std::fs::create_dir_all(&host_a).unwrap();
        std::fs::create_dir_all(&host_b).unwrap();
        let mut files = Vec::new();
        for lun in 0..count {
            let file = dir.path().join(format!("disk{lun}"));
            std::fs::File::create(&file)
                .unwrap()
                .set_len(128 << 20)
                .unwrap();
            std::os::unix::fs::symlink(&file, host_a.join(format!("lun{lun}"))).unwrap();
            files.push(file);
        }
        Disks {
            dir,
            pool,
            files,
            host_a,
            host_b,
        }
    }

    /// Moves `lunN` from host A's folder to host B's, as a detach and an attach would.
    pub fn move_to_b(&self, lun: usize) {
        std::fs::rename(
            self.host_a.join(format!("lun{lun}")),
            self.host_b.join(format!("lun{lun}")),
        )
        .unwrap();
    }

    pub fn move_all_to_b(&self) {
        for lun in 0..self.files.len() {
            self.move_to_b(lun);
        }
    }

    pub fn mountpoint(&self) -> PathBuf {
        self.dir.path().join("mnt")
    }

    /// Creates the pool directly (not through ferry) on host A's links, imported there.
    pub fn create_on_a(&self, layout: Option<&str>) {
        let mountpoint = self.mountpoint();
        let mut arguments = vec![
            "create".to_owned(),
            "-m".to_owned(),
            mountpoint.display().to_string(),
            self.pool.clone(),
        ];
        arguments.extend(layout.map(str::to_owned));
        for lun in 0..self.files.len() {
            arguments.push(self.host_a.join(format!("lun{lun}")).display().to_string());
        }
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        run_ok("zpool", &arguments);
    }

    /// Replaces the temp folder and pool name in a message, for snapshots.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.dir.path().display().to_string(), "[dir]")
            .replace(&self.pool, "[pool]")
    }
}

impl Drop for Disks {
    fn drop(&mut self) {
        // zfs-fuse may still hold a mount for a moment after the test: try a few times.
        for _ in 0..20 {
            let output = run("zpool", &["destroy", "-f", &self.pool]);
            if output.status.success() {
                return;
            }
            if String::from_utf8_lossy(&output.stderr).contains("no such pool") {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The pool may be imported through links that moved, or not imported at all: let go
        // of it, put every link back in host A's folder, import it from there and destroy it.
        let _ = run("zpool", &["export", "-f", &self.pool]);
        for (lun, file) in self.files.iter().enumerate() {
            let name = format!("lun{lun}");
            let _ = std::fs::remove_file(self.host_a.join(&name));
            let _ = std::fs::remove_file(self.host_b.join(&name));
            let _ = std::os::unix::fs::symlink(file, self.host_a.join(&name));
        }
        let folder = self.host_a.display().to_string();
        let _ = run("zpool", &["import", "-d", &folder, "-f", &self.pool]);
        let output = run("zpool", &["destroy", "-f", &self.pool]);
        if !output.status.success() {
            eprintln!(
                "could not destroy the test pool {}: {}",
                self.pool,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// Writes files of varied sizes under `folder` and returns each one's SHA-256.
pub fn write_files(folder: &Path) -> BTreeMap<String, String> {
    use sha2::{Digest, Sha256};
    let mut sums = BTreeMap::new();
    for index in 0..6u32 {
        let size = 1000 + index as usize * 150_000;
        let data: Vec<u8> = (0..size)
            .map(|byte| (byte as u32).wrapping_mul(2654435761).wrapping_add(index) as u8)
            .collect();
        let name = format!("file{index}.bin");
        std::fs::write(folder.join(&name), &data).unwrap();
        sums.insert(name, format!("{:x}", Sha256::digest(&data)));
    }
    run_ok("sync", &[]);
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

/// A zfs_pool resource, its provider and the outputs of hosts g1 (folder A) and g2 (B).
pub struct Fixture {
    pub spec: ResourceSpec,
    pub provider: ZfsPoolProvider,
    pub outputs: BTreeMap<InstanceAddress, Attributes>,
}

pub fn host(generation: u32) -> InstanceAddress {
    format!("vm.nfs@g{generation}").parse().unwrap()
}

impl Fixture {
    pub fn new(sshd: &Sshd, disks: &Disks, extra_fields: Value) -> Fixture {
        Fixture::for_hosts(
            &disks.pool,
            disks.files.len(),
            (sshd.port, &sshd.user_key, &sshd.known_hosts),
            [("127.0.0.1", &disks.host_a), ("127.0.0.1", &disks.host_b)],
            extra_fields,
        )
    }

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

    /// Reads the pool as the spec at `generation` sees it.
    pub async fn read(&self, generation: u32) -> Observation {
        let mut fields = self.spec.fields.clone();
        fields.insert("host".into(), json!(host(generation).to_string()));
        let outputs = |instance: &InstanceAddress| self.outputs.get(instance).cloned();
        let instance = self.instance();
        self.provider
            .read(ReadContext {
                spec: &self.spec,
                instance: &instance,
                fields: &fields,
                remembered: None,
                outputs: &outputs,
            })
            .await
    }

    /// Applies one step with these inputs, as the engine would.
    pub async fn apply(&self, action: Action, inputs: Value) -> Result<StepOutcome, StepError> {
        let address = self.instance();
        let step = Step {
            id: StepId::new(&address, action),
            address,
            action,
            reason: "test".into(),
            after: Vec::new(),
            estimate_seconds: 1,
            changes: Default::default(),
            inputs: serde_json::from_value(inputs).unwrap(),
            warning: None,
        };
        let outputs = |instance: &InstanceAddress| self.outputs.get(instance).cloned();
        self.provider
            .apply(
                &step,
                ApplyContext {
                    inputs: &step.inputs,
                    outputs: &outputs,
                    progress: &|_| {},
                    resume_token: None,
                    record_resume_token: &|_| {},
                },
            )
            .await
    }
}
