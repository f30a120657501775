//! The simulated Azure: resources in memory, ARM's rules, long-running operations and the
//! filesystem mirror of disk attachments.
//!
//! [`World`] is one value behind one lock; its methods are spread over files by concern and by
//! ARM type:
//! - `messages`: the request the world is asked and the response it gives;
//! - `ids`: resource ids and paths, and the `Kind` of ARM type an id names;
//! - `body`: helpers over JSON bodies (merge patches, `properties`, timestamps);
//! - `routing`: ARM's paths: a resource, a list, an action, an operation's status;
//! - `api_versions`: the api-versions of each served type, and ARM's refusals of a namespace,
//!   type or api-version it cannot route;
//! - `regions`: Azure's public regions, and the refusals of an unknown or changed location;
//! - `resources`: writes and deletes of every type (preconditions, server-owned fields,
//!   provisioning) and their dispatch to each type's file;
//! - `operations`: long-running operations, the URLs they are polled at, their completion;
//! - `moves`: moves between resource groups and the lock they hold on both groups;
//! - `busy`: a resource held by the write in progress on it (or another writer's), and the
//!   refusal of a second write meanwhile;
//! - `throttling`: ARM's token buckets per subscription and principal, when turned on;
//! - `attachments`: data disks attached to VMs, and their `lunN` links;
//! - `views`: what a response shows of a stored resource (no secrets, a network's subnets);
//! - `events`: the record of every request answered and operation ended ([`SimEvent`]);
//! - `stats`: how many ARM requests were answered, read and throttled ([`RequestStats`]), and
//!   Network's refusals of references by code ([`RefusalCounts`]);
//! - `cloud_controller`: each AKS cluster's cloud controller, which reconciles `LoadBalancer`
//!   Services with its `kubernetes` load balancer, and the table of where a public IP's
//!   traffic goes;
//! - `fault_injection`: the faults a test or a scenario adds;
//! - one file per ARM type for what only that type does: `resource_groups`,
//!   `virtual_networks`, `public_ips` (and who holds each), `network_interfaces`,
//!   `load_balancers`, `virtual_machines` (and `vm_sizes`), `disks`, `snapshots` (and disks
//!   copied from one), `managed_clusters` (and their node resource groups), `dns`.
//!
//! Adding an ARM type: its `Kind` (`ids`), a file with its server-owned fields and actions,
//! and a line in the dispatch of `fill_server_fields` (`resources`) and, when it has actions,
//! of `action` (`routing`).

mod api_versions;
mod attachments;
mod body;
mod busy;
mod cloud_controller;
mod disks;
mod dns;
mod events;
mod fault_injection;
mod ids;
mod load_balancers;
mod managed_clusters;
mod messages;
mod moves;
mod network_interfaces;
mod operations;
mod public_ips;
mod regions;
mod resource_groups;
mod resources;
mod restore_points;
mod routing;
mod snapshots;
mod stats;
mod tagged_lists;
mod throttling;
mod views;
mod virtual_machines;
mod virtual_networks;
mod vm_sizes;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::faults::ActiveFault;
use crate::readyz::ReadyzServer;
use crate::tls::CertificateAuthority;
use crate::{OperationDurations, SimulatorError};

pub(crate) use cloud_controller::ForwardingTable;
pub use events::{Exchange, SimEvent};
pub use messages::{SimRequest, SimResponse};
pub use stats::{RefusalCounts, RequestStats};
pub use throttling::{ArmThrottling, TokenBucket};

use ids::{Kind, group_id_of, kind_of, lower};
use operations::OperationRecord;

#[derive(Debug, Clone, serde::Serialize)]
struct Stored {
    id: String,
    etag: String,
    body: Value,
}

/// Settings the world needs from the simulator's config.
#[derive(Debug, Clone)]
pub struct WorldSettings {
    pub endpoint: String,
    pub time_scale: f64,
    pub durations: OperationDurations,
    pub data_directory: PathBuf,
    pub disk_backing_size: Option<u64>,
    pub page_size: usize,
    pub readyz_port: u16,
    pub first_public_ip: Ipv4Addr,
    /// Locations accepted beside Azure's public regions (`regions`).
    pub extra_regions: Vec<String>,
}

/// The whole simulated world behind one lock. Handlers never hold the lock across an await.
#[derive(Debug)]
pub struct World {
    settings: WorldSettings,
    authority: Arc<CertificateAuthority>,
    resources: BTreeMap<String, Stored>,
    operations: HashMap<String, OperationRecord>,
    /// Lower-cased group id to the id of the move operation that locks it.
    locked_groups: HashMap<String, String>,
    faults: Vec<ActiveFault>,
    /// Lower-cased resource id to the write in progress on it.
    holds: HashMap<String, busy::Hold>,
    other_writers: Vec<busy::OtherWriter>,
    /// ARM's throttling, when on.
    throttling: Option<throttling::Throttling>,
    power_states: HashMap<String, String>,
    readyz: HashMap<String, ReadyzServer>,
    next_public_ip: u32,
    counter: u64,
    pub(crate) latency: Duration,
    pub(crate) tokens_issued: u64,
    events: Vec<SimEvent>,
    /// How many ARM requests were answered and throttled (`stats`).
    request_stats: RequestStats,
    /// Every request and answer in full, once a test asks for them (`record_exchanges`).
    exchanges: Option<Vec<events::Exchange>>,
    /// Where the connections of each load-balancing rule a Service made go (lower-cased rule
    /// id to the Service's backend), as its cluster's cloud controller last saw it.
    service_backends: HashMap<String, std::net::SocketAddr>,
    /// Network's refusals of references, by who was refused and code (`stats`).
    refusal_counts: RefusalCounts,
    /// Addresses the traffic of a public IP could not be listened on, and why.
    forwarding_failures: BTreeMap<String, String>,
}

pub type SharedWorld = Arc<Mutex<World>>;

/// The region of a group seeded for a resource that names none of its own.
const DEFAULT_SEED_REGION: &str = "westeurope";

/// Why a request is refused, as ARM would say it.
type Refusal = SimResponse;

impl World {
    pub fn new(
        settings: WorldSettings,
        authority: Arc<CertificateAuthority>,
    ) -> Result<Self, SimulatorError> {
        for folder in ["disks", "snapshots", "vms"] {
            std::fs::create_dir_all(settings.data_directory.join(folder)).map_err(|error| {
                SimulatorError::Io {
                    path: settings.data_directory.join(folder),
                    reason: error.to_string(),
                }
            })?;
        }
        let next_public_ip = u32::from(settings.first_public_ip);
        Ok(World {
            settings,
            authority,
            resources: BTreeMap::new(),
            operations: HashMap::new(),
            locked_groups: HashMap::new(),
            faults: Vec::new(),
            holds: HashMap::new(),
            other_writers: Vec::new(),
            throttling: None,
            power_states: HashMap::new(),
            readyz: HashMap::new(),
            next_public_ip,
            counter: 0,
            latency: Duration::ZERO,
            tokens_issued: 0,
            events: Vec::new(),
            request_stats: RequestStats::default(),
            exchanges: None,
            service_backends: HashMap::new(),
            refusal_counts: RefusalCounts::default(),
            forwarding_failures: BTreeMap::new(),
        })
    }

    pub(crate) fn time_scale(&self) -> f64 {
        self.settings.time_scale
    }

    pub(crate) fn set_forwarding_failures(
        &mut self,
        failures: &HashMap<std::net::SocketAddrV4, String>,
    ) {
        self.forwarding_failures = failures
            .iter()
            .map(|(address, reason)| (address.to_string(), reason.clone()))
            .collect();
    }

    pub fn data_directory(&self) -> &Path {
        &self.settings.data_directory
    }

    fn next_etag(&mut self) -> String {
        self.counter += 1;
        format!(
            "W/\"{:08x}-0000-4000-8000-{:012x}\"",
            self.counter, self.counter
        )
    }

    fn next_identifier(&mut self) -> String {
        self.counter += 1;
        format!("{:08x}-0000-4000-8000-{:012x}", self.counter, self.counter)
    }

    fn allocate_public_ip(&mut self) -> Ipv4Addr {
        let address = Ipv4Addr::from(self.next_public_ip);
        self.next_public_ip += 1;
        // Stay inside 127.0.0.0/8, skipping 127.0.0.1 which everyone already uses.
        if !Ipv4Addr::from(self.next_public_ip).is_loopback() {
            self.next_public_ip = u32::from(Ipv4Addr::new(127, 0, 1, 1));
        }
        address
    }

    fn scaled(&self, duration: Duration) -> Duration {
        duration.mul_f64(self.settings.time_scale.max(0.0))
    }

    // ---- seeding and dumps --------------------------------------------------------------

    /// Puts a resource in place at once (scenario files and tests), creating its group if needed.
    pub fn seed(&mut self, id: &str, body: Value) -> Result<(), String> {
        if kind_of(id) != Kind::Group
            && let Some(group) = group_id_of(id)
            && !self.resources.contains_key(&lower(&group))
        {
            // A group lives in a region: a global resource's (a DNS zone's) group gets one.
            let location = body
                .get("location")
                .and_then(Value::as_str)
                .filter(|location| !location.eq_ignore_ascii_case("global"))
                .unwrap_or(DEFAULT_SEED_REGION);
            self.seed(&group, json!({"location": location}))?;
        }
        let existing = self.resources.get(&lower(id)).cloned();
        let request = SimRequest {
            method: "PUT".to_owned(),
            path: id.to_owned(),
            query: Vec::new(),
            headers: Vec::new(),
            body: Vec::new(),
        };
        match self.write_body(&request, id, body, existing, true) {
            Ok(_) => Ok(()),
            Err(refusal) => Err(String::from_utf8_lossy(&refusal.body).into_owned()),
        }
    }

    /// The whole world as JSON: resources, operations, locks, faults.
    pub fn dump(&self) -> Value {
        json!({
            "resources": self.resources.values().map(|stored| json!({"id": stored.id, "etag": stored.etag, "body": stored.body})).collect::<Vec<_>>(),
            "operations": self.operations.values().collect::<Vec<_>>(),
            "lockedGroups": self.locked_groups.keys().collect::<Vec<_>>(),
            "faults": self.faults.iter().map(|active| &active.fault).collect::<Vec<_>>(),
            "holds": self.holds,
            "powerStates": self.power_states,
            "forwardingFailures": self.forwarding_failures,
            "apiServers": self.readyz.iter().map(|(id, server)| json!({
                "cluster": id,
                "address": server.address().to_string(),
                "up": server.is_up(),
                "services": server.services().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).snapshot(),
            })).collect::<Vec<_>>(),
        })
    }

    pub fn shutdown(&mut self) {
        for (_, server) in self.readyz.drain() {
            server.stop();
        }
    }
}
