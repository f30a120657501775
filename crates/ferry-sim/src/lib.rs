//! A local Azure Resource Manager simulator over HTTPS, for ferry's tests and demos.
//!
//! [`start`] serves ARM's protocol for the resource types ferry uses (groups, networks,
//! public IPs, NICs, VMs with data disks, managed disks and their snapshots, AKS clusters, DNS
//! zones and record sets, moves) with ARM's rules, real long-running operations scaled by a
//! time scale, an Entra ID-like token endpoint, and fault injection. Its CA is generated at
//! start and written to `{data_directory}/ca.pem`.
//!
//! Routes besides ARM's:
//! - `POST /{tenant}/oauth2/v2.0/token`: Entra ID's token endpoint for one application
//!   ([`CLIENT_ID`]): the client credentials grant with its secret ([`CLIENT_SECRET`]) or
//!   with a client assertion ([`FEDERATED_TOKEN`], workload identity); anything else is refused
//!   in Entra's error shape with its AADSTS code. [`Simulator::token_requests`] lists what it
//!   was asked.
//! - `POST /ferry-sim/faults` (a [`Fault`] as JSON), `DELETE /ferry-sim/faults`,
//!   `PUT /ferry-sim/latency` (`{"milliseconds": 20}`), `POST /ferry-sim/seed`
//!   (`{"id": ..., "body": {...}}`), `PUT /ferry-sim/throttling` (an [`ArmThrottling`] as JSON,
//!   or `"azure"` for Azure's documented limits), `DELETE /ferry-sim/throttling`,
//!   `GET /ferry-sim/state`, `GET /ferry-sim/stats` (a [`RequestStats`]: ARM requests
//!   answered, reads, throttled), `DELETE /ferry-sim/stats` (back to zero) and
//!   `GET /ferry-sim/refusals` (a [`RefusalCounts`]: Network's refusals of references, to ARM's
//!   clients and to the clusters' cloud controllers, by code): the control API.
//!
//! Each AKS cluster's API server (`readyz`) serves `/readyz` and the cluster's Services
//! (`kubernetes`); while it is up, the cluster's cloud controller (`world/cloud_controller.rs`)
//! reconciles its `LoadBalancer` Services with the cluster's `kubernetes` load balancer every
//! tick (`controllers`), and a public IP's traffic goes to the backend of the Service whose
//! frontend holds it (`traffic`).

mod controllers;
mod faults;
mod kubernetes;
mod readyz;
mod record;
mod scenario;
mod server;
mod tls;
mod traffic;
mod world;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use faults::{ApiServerDownMode, Fault};
pub use record::{DiskRecord, check_failover_order, disk_records};
pub use scenario::{Scenario, SeededResource};
pub use server::{CLIENT_ID, CLIENT_SECRET, ClientProof, FEDERATED_TOKEN, TENANT_ID, TokenRequest};
pub use world::{
    ArmThrottling, Exchange, RefusalCounts, RequestStats, SimEvent, TokenBucket, World,
};

/// How long operations take on Azure, before the time scale applies.
///
/// Each figure's basis is on its field, with one address; BENCHMARKS.md ("The simulator's
/// latency profile") has every source found, the ranges they give and the kinds' estimates.
/// The documentation searched gives no durations but the move's limit, so most figures are
/// users' measurements, reported in GitHub issues.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct OperationDurations {
    /// A managed cluster's create, 8 min: users measure 6 to 18 min for a small cluster (about
    /// 9 min through Terraform in <https://github.com/Azure/AKS/issues/1439>).
    pub aks_create: Duration,
    /// A managed cluster's update, 4 min: even an empty PUT holds it `Updating` for 2 min or more
    /// (<https://github.com/Azure/azure-cli/issues/12209>); adding a node pool took 4 to 9 min.
    pub aks_update: Duration,
    /// A VM's create, 2 min: users report under 1 min to 4 min in a healthy region (2 to 4 min
    /// usual in <https://github.com/jenkinsci/azure-vm-agents-plugin/issues/205>).
    pub vm_create: Duration,
    /// A VM's update that changes no disk, 30 s: 1 to 2 s in the portal, about 31 s for a tag
    /// update through an SDK that polls (<https://github.com/Azure/azure-sdk-for-python/issues/10321>).
    pub vm_update: Duration,
    /// A VM's deallocation, 60 s: no source found for a usual figure; one user saw 10 to 30 min
    /// (<https://github.com/hashicorp/terraform-provider-azurerm/issues/6022>).
    pub vm_deallocate: Duration,
    /// A deallocated VM's start, 45 s: allocation and start in under a minute
    /// (<https://github.com/Azure/az-hop/issues/1217>); 2 to 3 min reported in 2017.
    pub vm_start: Duration,
    /// A managed disk's or snapshot's create (and a disk's update), 5 s: 2 s to 20 s measured
    /// (<https://github.com/kubernetes-sigs/azuredisk-csi-driver/issues/441>).
    pub disk_create: Duration,
    /// A VM update that attaches or detaches data disks, 30 s: about 15 s usual, a Microsoft
    /// engineer says (<https://github.com/kubernetes-sigs/cloud-provider-azure/issues/78>);
    /// users see ARM answer after 35 s to 2 min.
    pub disk_attach_detach: Duration,
    /// A virtual network's, subnet's, public IP's or NIC's create or update, 5 s: a public IP in
    /// 4 s (<https://github.com/PaloAltoNetworks/terraform-azurerm-vmseries-modules/pull/92>).
    pub network: Duration,
    /// Any delete, 30 s: a NIC or subnet takes 11 to 13 s, but a VM about 10 min
    /// (<https://github.com/turbot/steampipe-plugin-azure/pull/421>) and an AKS cluster 13 to
    /// 30 min (<https://github.com/Azure/AKS/issues/711>): short for those two.
    pub delete: Duration,
    /// A `moveResources` between resource groups, 3 min: Azure allows 4 hours, most moves take
    /// much less, and one user's took about 4 min
    /// (<https://github.com/Azure/azure-cli/issues/11942>;
    /// <https://learn.microsoft.com/en-us/azure/azure-resource-manager/management/move-resource-group-and-subscription>).
    pub move_resources: Duration,
}

impl Default for OperationDurations {
    /// Azure's usual pace, as the sources on each field report it.
    fn default() -> Self {
        OperationDurations {
            aks_create: Duration::from_secs(8 * 60),
            aks_update: Duration::from_secs(4 * 60),
            vm_create: Duration::from_secs(2 * 60),
            vm_update: Duration::from_secs(30),
            vm_deallocate: Duration::from_secs(60),
            vm_start: Duration::from_secs(45),
            disk_create: Duration::from_secs(5),
            disk_attach_detach: Duration::from_secs(30),
            network: Duration::from_secs(5),
            delete: Duration::from_secs(30),
            move_resources: Duration::from_secs(3 * 60),
        }
    }
}

impl OperationDurations {
    pub(crate) fn duration_for(&self, kind: &str, creating: bool) -> Duration {
        match (kind, creating) {
            ("aks", true) => self.aks_create,
            ("aks", false) => self.aks_update,
            ("vm", true) => self.vm_create,
            ("vm", false) => self.vm_update,
            ("disk", _) => self.disk_create,
            ("network", _) => self.network,
            _ => Duration::ZERO,
        }
    }
}

/// How to run the simulator.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Where ARM is served; `127.0.0.1:0` picks a free port.
    pub address: SocketAddr,
    /// Multiplies every operation duration: 1.0 is Azure's pace, 0.001 turns an
    /// 8-minute AKS create into 480 ms.
    pub time_scale: f64,
    pub durations: OperationDurations,
    /// Holds `ca.pem`, `disks/` (backing files) and `vms/{group}/{vm}/scsi1/lunN` links.
    pub data_directory: PathBuf,
    /// Size of each disk's sparse backing file; `None` uses the disk's own size.
    pub disk_backing_size: Option<u64>,
    /// Added to every ARM request, to model network and ARM latency.
    pub latency: Duration,
    /// Items per list page before `nextLink`.
    pub page_size: usize,
    /// Port of each AKS API server; 443 like Azure, falling back to a free port if taken.
    pub readyz_port: u16,
    /// First loopback address handed to public IPs and API servers.
    pub first_public_ip: Ipv4Addr,
    /// Locations accepted beside Azure's public regions, for a world that deliberately needs
    /// a region Azure does not have (an official example's `location1`); empty otherwise.
    pub extra_regions: Vec<String>,
    pub scenario: Option<Scenario>,
    /// ARM's throttling (token buckets per subscription and principal, in real time); `None`
    /// (the default) throttles only through injected faults.
    pub throttling: Option<ArmThrottling>,
}

impl SimulatorConfig {
    /// A config for tests: a free port, a fast clock, small disks, API servers on free ports.
    pub fn for_tests(data_directory: PathBuf) -> Self {
        SimulatorConfig {
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            time_scale: 0.0005,
            durations: OperationDurations::default(),
            data_directory,
            disk_backing_size: Some(64 << 20),
            latency: Duration::ZERO,
            page_size: 100,
            readyz_port: 0,
            first_public_ip: Ipv4Addr::new(127, 0, 1, 1),
            extra_regions: Vec::new(),
            scenario: None,
            throttling: None,
        }
    }
}

/// Why the simulator could not start or do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum SimulatorError {
    #[error("could not listen on {address}: {reason}; pick another address or free the port")]
    Bind { address: String, reason: String },
    #[error("could not set up TLS: {0}")]
    Tls(String),
    #[error("could not use {path}: {reason}; check the data directory and its permissions")]
    Io { path: PathBuf, reason: String },
    #[error("scenario {path}: {reason}")]
    Scenario { path: String, reason: String },
    #[error("could not seed {id}: {reason}")]
    Seed { id: String, reason: String },
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Simulator {
    endpoint: String,
    ca_file: PathBuf,
    ca_pem: String,
    world: world::SharedWorld,
    tokens: server::TokenLog,
    shutdown: tokio::sync::watch::Sender<bool>,
}

/// Starts the simulator on the current tokio runtime.
pub async fn start(config: SimulatorConfig) -> Result<Simulator, SimulatorError> {
    std::fs::create_dir_all(&config.data_directory).map_err(|error| SimulatorError::Io {
        path: config.data_directory.clone(),
        reason: error.to_string(),
    })?;
    let authority = Arc::new(tls::CertificateAuthority::generate()?);
    let ca_file = config.data_directory.join("ca.pem");
    std::fs::write(&ca_file, authority.pem()).map_err(|error| SimulatorError::Io {
        path: ca_file.clone(),
        reason: error.to_string(),
    })?;
    let listener = tokio::net::TcpListener::bind(config.address)
        .await
        .map_err(|error| SimulatorError::Bind {
            address: config.address.to_string(),
            reason: error.to_string(),
        })?;
    let local = listener
        .local_addr()
        .map_err(|error| SimulatorError::Bind {
            address: config.address.to_string(),
            reason: error.to_string(),
        })?;
    let host = match local.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    let endpoint = format!("https://{host}:{}", local.port());
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
    if !names.contains(&local.ip().to_string()) && !local.ip().is_unspecified() {
        names.push(local.ip().to_string());
    }
    let server_tls = authority.server_config(&names)?;
    let settings = world::WorldSettings {
        endpoint: endpoint.clone(),
        time_scale: config.time_scale,
        durations: config.durations.clone(),
        data_directory: config.data_directory.clone(),
        disk_backing_size: config.disk_backing_size,
        page_size: config.page_size,
        readyz_port: config.readyz_port,
        first_public_ip: config.first_public_ip,
        extra_regions: config.extra_regions.clone(),
    };
    let mut world = World::new(settings, authority.clone())?;
    world.latency = config.latency;
    world.set_throttling(config.throttling);
    let world = Arc::new(Mutex::new(world));
    let (shutdown, shutdown_receiver) = tokio::sync::watch::channel(false);
    let tokens = server::TokenLog::default();
    let simulator = Simulator {
        endpoint,
        ca_file,
        ca_pem: authority.pem().to_owned(),
        world: world.clone(),
        tokens: tokens.clone(),
        shutdown,
    };
    if let Some(scenario) = &config.scenario {
        simulator.apply_scenario(scenario)?;
    }
    tokio::spawn(controllers::run(world.clone(), shutdown_receiver.clone()));
    tokio::spawn(server::serve(
        listener,
        server_tls,
        world,
        tokens,
        shutdown_receiver,
    ));
    Ok(simulator)
}

impl Simulator {
    /// `https://127.0.0.1:{port}`: the ARM endpoint and the authority host.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The PEM file of the CA that signed the simulator's certificates.
    pub fn ca_file(&self) -> &std::path::Path {
        &self.ca_file
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn with_world<T>(&self, action: impl FnOnce(&mut World) -> T) -> T {
        let mut world = self
            .world
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        action(&mut world)
    }

    pub fn inject(&self, fault: Fault) {
        self.with_world(|world| world.add_fault(fault));
    }

    pub fn clear_faults(&self) {
        self.with_world(World::clear_faults);
    }

    /// Turns ARM's throttling on with `limits`, buckets full, or off with `None`.
    pub fn set_throttling(&self, limits: Option<ArmThrottling>) {
        self.with_world(|world| world.set_throttling(limits));
    }

    pub fn set_latency(&self, latency: Duration) {
        self.with_world(|world| world.latency = latency);
    }

    /// Puts a resource in place at once, creating its group if needed.
    pub fn seed(&self, id: &str, body: serde_json::Value) -> Result<(), SimulatorError> {
        self.with_world(|world| world.seed(id, body))
            .map_err(|reason| SimulatorError::Seed {
                id: id.to_owned(),
                reason,
            })
    }

    pub fn apply_scenario(&self, scenario: &Scenario) -> Result<(), SimulatorError> {
        for resource in &scenario.resources {
            self.seed(&resource.id, resource.body.clone())?;
        }
        for fault in &scenario.faults {
            self.inject(fault.clone());
        }
        Ok(())
    }

    /// The world as JSON (resources, operations, locks, faults).
    pub fn dump_state(&self) -> serde_json::Value {
        self.with_world(|world| world.dump())
    }

    /// The folder of `lunN` links for a VM, like `/dev/disk/azure/scsi1` on Azure.
    /// By VM id, or by name (see [`World::attachment_directory`]).
    pub fn attachment_directory(&self, vm: &str) -> PathBuf {
        self.with_world(|world| world.attachment_directory(vm))
    }

    /// Where a cluster's `/readyz` listens, by cluster name or id.
    pub fn api_server_address(&self, cluster: &str) -> Option<SocketAddr> {
        self.with_world(|world| world.api_server_address(cluster))
    }

    /// Every ARM request answered and long-running operation ended so far, in order.
    pub fn events(&self) -> Vec<SimEvent> {
        self.with_world(|world| world.events())
    }

    /// From now on, keeps every ARM request and answer in full (off by default), for
    /// [`Simulator::exchanges`].
    pub fn record_exchanges(&self) {
        self.with_world(World::record_exchanges);
    }

    /// Every ARM request and answer kept since [`Simulator::record_exchanges`], in order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.with_world(|world| world.exchanges())
    }

    /// How many ARM requests were answered, read and throttled since the start or the last
    /// [`Simulator::reset_request_stats`].
    pub fn request_stats(&self) -> RequestStats {
        self.with_world(|world| world.request_stats())
    }

    /// How many times Network refused a load balancer's or NIC's references (to ARM's clients
    /// and to the clusters' cloud controllers), by code.
    pub fn refusal_counts(&self) -> RefusalCounts {
        self.with_world(|world| world.refusal_counts())
    }

    pub fn reset_request_stats(&self) {
        self.with_world(World::reset_request_stats);
    }

    /// How many tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> u64 {
        self.with_world(|world| world.tokens_issued)
    }

    /// Every request the token endpoint answered, issued or refused, in order.
    pub fn token_requests(&self) -> Vec<TokenRequest> {
        self.tokens
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        self.with_world(World::shutdown);
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        self.shutdown();
    }
}
