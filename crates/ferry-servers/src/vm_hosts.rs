//! The simulated VMs' own hosts: behind each public address the simulator hands out, the VM
//! that holds it, as a ZFS host of its own ([`ZfsHost`]: its zfs-fuse, its sshd, its host id),
//! powered as the simulator says the VM is.
//!
//! A hot standby replicates a pool to a pool of the same name on another VM, and a failover
//! fences the old VM by powering it off: one machine-wide zfs-fuse behind one sshd (the cold
//! story's [`Sshd`](crate::Sshd)) can hold neither. Here:
//! - an SSH connection to a public address (port [`VmHosts::port`] on 127.0.1.x) is routed, when
//!   it arrives, to the host of the VM whose network interface holds that address in the
//!   simulator's state;
//! - a VM's host starts (a fresh daemon with an empty pool cache, as a VM that boots) at the
//!   first connection while the simulator says the VM runs;
//! - a VM that is deallocated, powered off, being so, or deleted has no host: its host is
//!   killed (every process of its namespace, SIGKILL: no export, no last write) and its
//!   connections are cut as soon as the simulator says so (a poll every
//!   [`POWER_POLL`]), and a connection to its address is refused. A fence is a real power-off.
//!
//! Every host presents the same host key, named once per public address in `known_hosts`,
//! so ferry's strict host key checking holds whichever VM an address leads to.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::simulator::state_resources;
use crate::sshd::generate_key;
use crate::zfs_hosts::{HostIdentity, HostKey, ZfsHost};
use crate::{ServerError, SshAccess, Sshd, create_folder, error, free_port, need, write};

/// How often the VMs' power states are read from the simulator.
pub const POWER_POLL: Duration = Duration::from_millis(100);

/// The hosts' own addresses: 127.43.0.N for the Nth host started.
const HOST_NETWORK: [u8; 3] = [127, 43, 0];

/// A mutex's value, whether or not a thread panicked holding it (the hosts are killed and
/// their records dropped all the same).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A VM's host, and the connections routed to it (cut when it powers off).
#[derive(Debug)]
struct Running {
    host: ZfsHost,
    connections: Vec<TcpStream>,
}

/// Reads the simulator's state (`GET /ferry-sim/state`, or the in-process world's dump).
pub type StateSource = Box<dyn Fn() -> Result<serde_json::Value, ServerError> + Send + Sync>;

struct Shared {
    state: StateSource,
    folder: PathBuf,
    /// The port every host's sshd listens on, at its own address.
    host_port: u16,
    authorized_keys: String,
    host_key: PathBuf,
    /// Folders each host has empty and its own, as a VM's own file system.
    own_folders: Vec<PathBuf>,
    /// By the VM's id, lowercased.
    hosts: Mutex<BTreeMap<String, Running>>,
    /// The VMs that crashed while the simulator says they run ([`VmHosts::crash`]): no host
    /// until the VM is powered off and on again.
    crashed: Mutex<Vec<String>>,
    started: Mutex<u8>,
    stopping: AtomicBool,
}

/// One host per simulated VM, reached over SSH on the VMs' public addresses. Everything stops
/// when dropped.
pub struct VmHosts {
    shared: Arc<Shared>,
    access: SshAccess,
    addresses: Vec<Ipv4Addr>,
    threads: Vec<JoinHandle<()>>,
}

/// A VM as the simulator's state shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct VmView {
    id: String,
    name: String,
    power: String,
}

impl VmView {
    /// Whether its host is up: running, not starting (no sshd yet) nor stopping.
    fn runs(&self) -> bool {
        self.power == "running"
    }
}

/// Each VM of the state by its id (lowercased), with the public addresses of its network
/// interfaces.
fn vms_of(state: &serde_json::Value) -> Vec<(VmView, Vec<String>)> {
    let resources = state_resources(state);
    let of_type = |kind: &'static str| {
        resources.iter().filter(move |resource| {
            resource["id"]
                .as_str()
                .is_some_and(|id| id.to_ascii_lowercase().contains(kind))
        })
    };
    let address_of: BTreeMap<String, String> =
        of_type("/providers/microsoft.network/publicipaddresses/")
            .filter_map(|ip| {
                Some((
                    ip["id"].as_str()?.to_ascii_lowercase(),
                    ip["properties"]["ipAddress"].as_str()?.to_owned(),
                ))
            })
            .collect();
    let mut addresses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for nic in of_type("/providers/microsoft.network/networkinterfaces/") {
        let Some(vm) = nic["properties"]["virtualMachine"]["id"].as_str() else {
            continue;
        };
        for configuration in nic["properties"]["ipConfigurations"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(address) = configuration["properties"]["publicIPAddress"]["id"]
                .as_str()
                .and_then(|id| address_of.get(&id.to_ascii_lowercase()))
            {
                addresses
                    .entry(vm.to_ascii_lowercase())
                    .or_default()
                    .push(address.clone());
            }
        }
    }
    of_type("/providers/microsoft.compute/virtualmachines/")
        .filter_map(|vm| {
            let id = vm["id"].as_str()?.to_ascii_lowercase();
            let name = vm["name"]
                .as_str()
                .map(str::to_owned)
                .or_else(|| id.rsplit('/').next().map(str::to_owned))?;
            let power = state["powerStates"][&id]
                .as_str()
                .unwrap_or("starting")
                .to_owned();
            let held = addresses.remove(&id).unwrap_or_default();
            Some((VmView { id, name, power }, held))
        })
        .collect()
}

impl Shared {
    /// Kills the host of every VM that no longer runs (or is gone), and returns the VMs.
    fn enforce_power(&self, state: &serde_json::Value) -> Vec<(VmView, Vec<String>)> {
        let vms = vms_of(state);
        // A crashed VM that was powered off boots afresh when it is started again.
        lock(&self.crashed).retain(|id| vms.iter().any(|(vm, _)| &vm.id == id && vm.runs()));
        let mut hosts = lock(&self.hosts);
        let gone: Vec<String> = hosts
            .keys()
            .filter(|id| !vms.iter().any(|(vm, _)| &vm.id == *id && vm.runs()))
            .cloned()
            .collect();
        for id in gone {
            if let Some(mut running) = hosts.remove(&id) {
                for connection in &running.connections {
                    let _ = connection.shutdown(Shutdown::Both);
                }
                running.host.crash();
            }
        }
        vms
    }

    /// Where a connection to `address` goes: the host of the running VM that holds it
    /// (started now if it is not yet), or nowhere.
    fn route(
        &self,
        address: Ipv4Addr,
        client: &TcpStream,
    ) -> Result<Option<TcpStream>, ServerError> {
        let state = (self.state)()?;
        let vms = self.enforce_power(&state);
        let wanted = address.to_string();
        let Some((vm, _)) = vms
            .into_iter()
            .find(|(_, addresses)| addresses.contains(&wanted))
        else {
            return Ok(None);
        };
        let crashed = lock(&self.crashed).contains(&vm.id);
        if !vm.runs() || crashed {
            return Ok(None);
        }
        let mut hosts = lock(&self.hosts);
        if !hosts.contains_key(&vm.id) {
            let host = self.start_host(&vm)?;
            hosts.insert(
                vm.id.clone(),
                Running {
                    host,
                    connections: Vec::new(),
                },
            );
        }
        let running = hosts.get_mut(&vm.id).expect("inserted above");
        let upstream = TcpStream::connect((running.host.identity.address, self.host_port))
            .map_err(|failure| error("vm hosts", format!("{}: {failure}", vm.name)))?;
        running.connections.extend(client.try_clone().ok());
        running.connections.extend(upstream.try_clone().ok());
        running
            .connections
            .retain(|connection| connection.peer_addr().is_ok());
        Ok(Some(upstream))
    }

    fn start_host(&self, vm: &VmView) -> Result<ZfsHost, ServerError> {
        let number = {
            let mut started = lock(&self.started);
            *started = started
                .checked_add(1)
                .ok_or_else(|| error("vm hosts", "more than 255 VM hosts in one run"))?;
            *started
        };
        let [a, b, c] = HOST_NETWORK;
        let identity = HostIdentity {
            hostname: vm.name.clone().into(),
            hostid: 0x00f0_0000 | u32::from(number),
            address: Ipv4Addr::new(a, b, c, number),
        };
        let host = ZfsHost::start(
            identity,
            &self.folder.join(format!("{}-{number}", vm.name)),
            self.host_port,
            &self.authorized_keys,
            HostKey::Shared(&self.host_key),
        )?;
        for folder in &self.own_folders {
            host.own_empty_folder(folder)?;
        }
        Ok(host)
    }
}

/// Copies both ways until either side ends.
fn forward(client: TcpStream, upstream: TcpStream) {
    let (Ok(mut client_reader), Ok(mut upstream_writer)) =
        (client.try_clone(), upstream.try_clone())
    else {
        return;
    };
    let uplink = std::thread::spawn(move || {
        let _ = std::io::copy(&mut client_reader, &mut upstream_writer);
        let _ = upstream_writer.shutdown(Shutdown::Write);
    });
    let (mut upstream_reader, mut client_writer) = (upstream, client);
    let _ = std::io::copy(&mut upstream_reader, &mut client_writer);
    let _ = client_writer.shutdown(Shutdown::Write);
    let _ = uplink.join();
}

impl VmHosts {
    /// Listens on `addresses` (the simulator's public addresses) at a free port, with a user
    /// key, a host key and a known_hosts naming it for each address, generated in `folder`;
    /// `state` reads the simulator's state (a [`SimulatorControl`](crate::SimulatorControl)'s
    /// `state`, or an in-process world's). Each host has `own_folders` empty and its own (the
    /// pool's mountpoints' parent, say): what one VM or an earlier run left there on this
    /// machine is not on another VM.
    pub fn start(
        folder: &Path,
        state: StateSource,
        addresses: Vec<Ipv4Addr>,
        own_folders: Vec<PathBuf>,
    ) -> Result<VmHosts, ServerError> {
        need("ssh", "openssh-client")?;
        create_folder("vm hosts", folder)?;
        let host_key = folder.join("host_key");
        let host_public_key = generate_key(&host_key, "ferry-demo-vm")?;
        let user_key = folder.join("user_key");
        let user_public_key = generate_key(&user_key, "ferry-demo")?;
        let port = free_port()?;
        let [a, b, c] = HOST_NETWORK;
        let host_port = TcpListener::bind((Ipv4Addr::new(a, b, c, 1), 0))
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .map_err(|failure| error("vm hosts", format!("no free port: {failure}")))?;
        let known_hosts = folder.join("known_hosts");
        let lines: String = addresses
            .iter()
            .map(|address| format!("[{address}]:{port} {host_public_key}\n"))
            .collect();
        write("vm hosts", &known_hosts, &lines)?;
        let shared = Arc::new(Shared {
            state,
            folder: folder.join("hosts"),
            host_port,
            authorized_keys: user_public_key.clone(),
            own_folders,
            host_key,
            hosts: Mutex::new(BTreeMap::new()),
            crashed: Mutex::new(Vec::new()),
            started: Mutex::new(0),
            stopping: AtomicBool::new(false),
        });
        let mut threads = Vec::new();
        for &address in &addresses {
            let listener = TcpListener::bind((address, port)).map_err(|failure| {
                error(
                    "vm hosts",
                    format!("cannot listen on {address}:{port}: {failure}"),
                )
            })?;
            let shared = Arc::clone(&shared);
            threads.push(std::thread::spawn(move || {
                for client in listener.incoming() {
                    if shared.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    let shared = Arc::clone(&shared);
                    std::thread::spawn(move || match shared.route(address, &client) {
                        Ok(Some(upstream)) => forward(client, upstream),
                        // No running VM holds the address: the connection is refused.
                        Ok(None) => drop(client),
                        Err(failure) => {
                            eprintln!("{failure}");
                            drop(client);
                        }
                    });
                }
            }));
        }
        let poller = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || {
            while !poller.stopping.load(Ordering::SeqCst) {
                if let Ok(state) = (poller.state)() {
                    poller.enforce_power(&state);
                }
                std::thread::sleep(POWER_POLL);
            }
        }));
        Ok(VmHosts {
            shared,
            access: SshAccess {
                port,
                user_key,
                user_public_key,
                known_hosts,
            },
            addresses,
            threads,
        })
    }

    /// How ferry reaches the VMs over SSH.
    pub fn access(&self) -> &SshAccess {
        &self.access
    }

    /// Runs `f` with the host of the VM named `vm` (`data100-nfs-g1`), when it runs.
    pub fn with_host<T>(&self, vm: &str, f: impl FnOnce(&ZfsHost) -> T) -> Option<T> {
        let hosts = lock(&self.shared.hosts);
        hosts
            .values()
            .find(|running| running.host.identity.hostname == vm)
            .map(|running| f(&running.host))
    }

    /// The VM named `vm` crashes while ARM still says it runs (a host failure, a kernel
    /// panic): its host is killed as a power-off kills it, its connections are cut, and its
    /// address answers no more until the VM is powered off and started again. Returns whether
    /// it had a host.
    pub fn crash(&self, vm: &str) -> bool {
        let mut hosts = lock(&self.shared.hosts);
        let Some(id) = hosts
            .iter()
            .find(|(_, running)| running.host.identity.hostname == vm)
            .map(|(id, _)| id.clone())
        else {
            return false;
        };
        lock(&self.shared.crashed).push(id.clone());
        if let Some(mut running) = hosts.remove(&id) {
            for connection in &running.connections {
                let _ = connection.shutdown(Shutdown::Both);
            }
            running.host.crash();
        }
        true
    }

    /// The names of the VMs whose hosts run now.
    pub fn running(&self) -> Vec<String> {
        let hosts = lock(&self.shared.hosts);
        hosts
            .values()
            .map(|running| running.host.identity.hostname.to_string())
            .collect()
    }
}

impl std::fmt::Debug for VmHosts {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("VmHosts")
            .field("access", &self.access)
            .field("addresses", &self.addresses)
            .field("running", &self.running())
            .finish()
    }
}

impl Drop for VmHosts {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake each listener from its accept.
        for address in &self.addresses {
            let _ = TcpStream::connect((*address, self.access.port));
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        let mut hosts = lock(&self.shared.hosts);
        for (_, running) in std::mem::take(&mut *hosts) {
            for connection in &running.connections {
                let _ = connection.shutdown(Shutdown::Both);
            }
        }
    }
}

/// How ferry reaches the NFS VMs, and where their pool's files are: the machine's zfs-fuse
/// behind one sshd on every address (the cold and warm stories), or a host of its own per VM
/// (a hot standby's, whose replica is a pool of the same name on another VM).
#[derive(Debug)]
pub enum NfsHosts {
    Machine(Sshd),
    Vms(VmHosts),
}

impl NfsHosts {
    pub fn access(&self) -> SshAccess {
        match self {
            NfsHosts::Machine(sshd) => sshd.access(),
            NfsHosts::Vms(hosts) => hosts.access().clone(),
        }
    }

    /// `path` as the VM named `vm` sees it, from this machine.
    pub fn path(&self, vm: &str, path: &Path) -> Result<PathBuf, ServerError> {
        match self {
            NfsHosts::Machine(_) => Ok(path.to_path_buf()),
            NfsHosts::Vms(hosts) => hosts.with_host(vm, |host| host.path(path)).ok_or_else(|| {
                error(
                    "vm hosts",
                    format!("{vm} does not run: {} cannot be read", path.display()),
                )
            }),
        }
    }

    /// `program ARGUMENTS` on the VM named `vm`: its standard output, or its error.
    pub fn run(&self, vm: &str, program: &str, arguments: &[&str]) -> Result<String, ServerError> {
        let output = match self {
            NfsHosts::Machine(_) => Command::new(program)
                .args(arguments)
                .output()
                .map_err(|failure| error("nfs host", format!("cannot run {program}: {failure}")))?,
            NfsHosts::Vms(hosts) => hosts
                .with_host(vm, |host| host.command(program, arguments))
                .ok_or_else(|| error("vm hosts", format!("{vm} does not run")))??,
        };
        if !output.status.success() {
            return Err(error(
                "nfs host",
                format!(
                    "{program} {} on {vm}: {}",
                    arguments.join(" "),
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}
