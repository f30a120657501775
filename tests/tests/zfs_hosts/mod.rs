//! Two real ZFS hosts on one machine, for `zfs_two_hosts.rs`, `zfs_replication.rs` and
//! `zfs_hot_steps.rs`: each is `ferry_servers::ZfsHost`, a zfs-fuse daemon of its own and an
//! `sshd` of its own in a private mount and UTS namespace (its module says what makes a host
//! its own), so that a pool imported on one is unknown to the other, as on two VMs sharing a
//! disk. Every host is stopped when dropped, however the test ends.
//!
//! The helpers here panic, as a test's do: [`HostChecks`] runs a host's `zpool` and `zfs` and
//! fails the test on an error.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Output;

use ferry_core::{
    Action, ApplyContext, Attributes, InstanceAddress, Observation, Provider, ReadContext,
    ResourceSpec, Step, StepError, StepId, StepOutcome,
};
pub use ferry_servers::{HostIdentity, HostKey, ZfsHost};
use ferry_zfs::{ZfsPoolProvider, ZfsProviderConfig};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Generates an ed25519 key pair at `path` (and `path.pub`); returns the public key line.
fn generate_key(path: &Path) -> String {
    ferry_servers::generate_key(path, "ferry-test").unwrap_or_else(|error| panic!("{error}"))
}

pub const HOST_A: HostIdentity = HostIdentity {
    hostname: std::borrow::Cow::Borrowed("ferry-host-a"),
    hostid: 0x00a0_a0a0,
    address: Ipv4Addr::new(127, 42, 0, 1),
};

pub const HOST_B: HostIdentity = HostIdentity {
    hostname: std::borrow::Cow::Borrowed("ferry-host-b"),
    hostid: 0x00b0_b0b0,
    address: Ipv4Addr::new(127, 42, 0, 2),
};

/// A third host, for a test that needs one more VM (a failback's new standby): started only
/// when asked ([`TwoHosts::start_host_c`]), on the port the other two share.
pub const HOST_C: HostIdentity = HostIdentity {
    hostname: std::borrow::Cow::Borrowed("ferry-host-c"),
    hostid: 0x00c0_c0c0,
    address: Ipv4Addr::new(127, 42, 0, 3),
};

/// Starts a host of the pair in a folder of `parent`, letting in `user_public_key`.
fn start_host(parent: &Path, identity: HostIdentity, port: u16, user_public_key: &str) -> ZfsHost {
    let folder = parent.join(identity.hostname.as_ref());
    ZfsHost::start(identity, &folder, port, user_public_key, HostKey::Generate)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// A test's checks on a host, each failing the test on an error.
pub trait HostChecks {
    fn zpool_output(&self, arguments: &[&str]) -> Output;
    fn zfs_output(&self, arguments: &[&str]) -> Output;
    fn zpool_ok(&self, arguments: &[&str]) -> String;
    fn zfs_ok(&self, arguments: &[&str]) -> String;
    fn snapshots(&self, dataset: &str) -> Vec<String>;
    fn zfs_value(&self, property: &str, dataset: &str) -> String;
    fn imported_pools(&self) -> Vec<String>;
    fn history(&self, pool: &str) -> Option<String>;
}

impl HostChecks for ZfsHost {
    /// `zpool ARGUMENTS` as this host runs it: in its namespaces, against its daemon.
    fn zpool_output(&self, arguments: &[&str]) -> Output {
        self.zpool(arguments)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// `zfs ARGUMENTS` as this host runs it.
    fn zfs_output(&self, arguments: &[&str]) -> Output {
        self.zfs(arguments)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    fn zpool_ok(&self, arguments: &[&str]) -> String {
        let output = self.zpool_output(arguments);
        assert!(
            output.status.success(),
            "{}: zpool {arguments:?} failed: {}",
            self.identity.hostname,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Runs `zfs ARGUMENTS` as this host runs it, and fails the test on an error.
    fn zfs_ok(&self, arguments: &[&str]) -> String {
        let output = self.zfs_output(arguments);
        assert!(
            output.status.success(),
            "{}: zfs {arguments:?} failed: {}",
            self.identity.hostname,
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The snapshots of `dataset` (not of its children), oldest first, as this host lists them.
    fn snapshots(&self, dataset: &str) -> Vec<String> {
        self.zfs_ok(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", dataset])
            .lines()
            .filter_map(|line| line.split_once('@'))
            .filter(|(owner, _)| *owner == dataset)
            .map(|(_, name)| name.to_owned())
            .collect()
    }

    /// A dataset's property, as this host's `zfs get` says.
    fn zfs_value(&self, property: &str, dataset: &str) -> String {
        self.zfs_ok(&["get", "-H", "-o", "value", property, dataset])
            .trim()
            .to_owned()
    }

    /// The pools this host's daemon has imported, as its own `zpool list` says.
    fn imported_pools(&self) -> Vec<String> {
        self.zpool_ok(&["list", "-H", "-o", "name"])
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// `zpool history POOL` on this host, or `None` when its daemon does not have the pool.
    fn history(&self, pool: &str) -> Option<String> {
        let output = self.zpool_output(&["history", pool]);
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
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
        let a = start_host(folder.path(), HOST_A, port, &user_public_key);
        let b = start_host(folder.path(), HOST_B, port, &user_public_key);
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
        let c = start_host(
            self.folder.path(),
            HOST_C,
            self.port,
            user_public_key.trim(),
        );
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
    pub fn holders(&self) -> Vec<String> {
        [&self.a, &self.b]
            .into_iter()
            .filter(|host| host.is_running() && host.imported_pools().contains(&self.pool))
            .map(|host| host.identity.hostname.to_string())
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
            changes: Default::default(),
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
