//! The simulated Azure: resources in memory, ARM's rules, long-running operations and the
//! filesystem mirror of disk attachments.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::faults::{ActiveFault, ApiServerDownMode, Fault};
use crate::readyz::ReadyzServer;
use crate::tls::CertificateAuthority;
use crate::{OperationDurations, SimulatorError};

/// A request as the world sees it.
#[derive(Debug, Clone)]
pub struct SimRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SimRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    pub fn query_value(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

/// A response the world produced.
#[derive(Debug, Clone)]
pub struct SimResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SimResponse {
    pub fn json(status: u16, body: &Value) -> Self {
        SimResponse {
            status,
            headers: vec![(
                "content-type".to_owned(),
                "application/json; charset=utf-8".to_owned(),
            )],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    pub fn empty(status: u16) -> Self {
        SimResponse {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn error(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self::json(
            status,
            &json!({"error": {"code": code, "message": message.into()}}),
        )
    }

    fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }
}

/// What happens when an operation's time is up.
#[derive(Debug, Clone)]
enum Completion {
    /// A PUT or PATCH finished: provisioningState Succeeded and kind-specific effects.
    Provisioned {
        id: String,
    },
    Deleted {
        id: String,
    },
    Power {
        vm_id: String,
        running: bool,
    },
    Move {
        source_group: String,
        target_group: String,
        ids: Vec<String>,
    },
    /// Nothing to change (a validation).
    Nothing,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(rename_all = "PascalCase")]
enum OperationState {
    InProgress,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, serde::Serialize)]
struct OperationRecord {
    id: String,
    state: OperationState,
    start_time: String,
    #[serde(skip)]
    completion: Completion,
    /// The error an operation told to fail ends with.
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<Value>,
    /// HTTP status of a failed Location-style poll.
    failure_status: u16,
    /// The body a finished Location-style poll answers with (a POST's result).
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<Value>,
    hung: bool,
    finish_after_milliseconds: u64,
    /// The request that started it, for the event log.
    #[serde(skip)]
    request: (String, String),
    /// The request's `SimEvent::disks`.
    #[serde(skip)]
    disks: Vec<String>,
}

/// One thing the simulator saw, in the order it saw it: an ARM request it answered, or a
/// long-running operation that ended. Tests assert the order of a failover with these.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SimEvent {
    /// `request` or `operation`.
    pub what: &'static str,
    pub method: String,
    /// The request's path (for an operation, the path of the request that started it).
    pub path: String,
    /// The HTTP status of a request (`201`), or how an operation ended (`Succeeded`, `Failed`).
    pub outcome: String,
    /// ARM's error code of a refused request or a failed operation (`ScopeLocked`,
    /// `ConflictingUserInput`), to tell a refusal worth a retry from a duplicate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// What a request asks of managed disks, one entry per disk: `move NAME` (a move or its
    /// validation), `attach NAME`, `detach NAME` and `force-detach NAME` (a VM write with
    /// `detachOption: ForceDetach`); an operation carries its request's. Several disks can
    /// share one request.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub disks: Vec<String>,
}

/// The ARM error code in an error body, if it is one.
fn error_code(body: &[u8]) -> Option<String> {
    let body: Value = serde_json::from_slice(body).ok()?;
    Some(body.get("error")?.get("code")?.as_str()?.to_owned())
}

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
    power_states: HashMap<String, String>,
    readyz: HashMap<String, ReadyzServer>,
    next_public_ip: u32,
    counter: u64,
    pub(crate) latency: Duration,
    pub(crate) tokens_issued: u64,
    events: Vec<SimEvent>,
}

pub type SharedWorld = Arc<Mutex<World>>;

fn lower(text: &str) -> String {
    text.to_ascii_lowercase()
}

fn group_id_of(id: &str) -> Option<String> {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    if segments.len() >= 4 && segments[2].eq_ignore_ascii_case("resourcegroups") {
        Some(format!(
            "/subscriptions/{}/resourceGroups/{}",
            segments[1], segments[3]
        ))
    } else {
        None
    }
}

fn name_of(id: &str) -> String {
    id.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// `Microsoft.Compute/virtualMachines` for a resource id, `Microsoft.Resources/resourceGroups` for a group.
fn type_of(id: &str) -> String {
    let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
    match segments
        .iter()
        .position(|segment| segment.eq_ignore_ascii_case("providers"))
    {
        Some(position) if segments.len() > position + 2 => {
            let mut full = segments[position + 1].to_owned();
            let rest = &segments[position + 2..];
            let dns_record = rest.len() >= 3 && rest[0].eq_ignore_ascii_case("dnszones");
            for (index, pair) in rest.chunks(2).enumerate() {
                // Record set types read `Microsoft.Network/dnszones/A`.
                if !(dns_record && index == 1) {
                    full.push('/');
                }
                if dns_record && index == 1 {
                    full.push('/');
                }
                full.push_str(pair[0]);
            }
            full
        }
        _ => "Microsoft.Resources/resourceGroups".to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Group,
    VirtualNetwork,
    Subnet,
    PublicIp,
    NetworkInterface,
    VirtualMachine,
    Disk,
    ManagedCluster,
    DnsZone,
    RecordSet,
    Other,
}

fn kind_of(id: &str) -> Kind {
    let resource_type = lower(&type_of(id));
    match resource_type.as_str() {
        "microsoft.resources/resourcegroups" => Kind::Group,
        "microsoft.network/virtualnetworks" => Kind::VirtualNetwork,
        "microsoft.network/virtualnetworks/subnets" => Kind::Subnet,
        "microsoft.network/publicipaddresses" => Kind::PublicIp,
        "microsoft.network/networkinterfaces" => Kind::NetworkInterface,
        "microsoft.compute/virtualmachines" => Kind::VirtualMachine,
        "microsoft.compute/disks" => Kind::Disk,
        "microsoft.containerservice/managedclusters" => Kind::ManagedCluster,
        "microsoft.network/dnszones" => Kind::DnsZone,
        other if other.starts_with("microsoft.network/dnszones/") => Kind::RecordSet,
        _ => Kind::Other,
    }
}

/// Merges a JSON merge patch (RFC 7396) into `target`, as ARM's PATCH does.
fn merge_patch(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge_patch(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn properties_mut(body: &mut Value) -> &mut Map<String, Value> {
    if !body.get("properties").is_some_and(Value::is_object) {
        body["properties"] = json!({});
    }
    body["properties"]
        .as_object_mut()
        .expect("just made an object")
}

fn iso_time_now() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|duration| duration.as_secs() as i64)
        .unwrap_or_default();
    let days = seconds.div_euclid(86_400);
    let second_of_day = seconds.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        (second_of_day / 60) % 60,
        second_of_day % 60
    )
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let triple = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for position in 0..4 {
            if position <= chunk.len() {
                out.push(ALPHABET[((triple >> (18 - 6 * position)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a request is refused, as ARM would say it.
type Refusal = SimResponse;

impl World {
    pub fn new(
        settings: WorldSettings,
        authority: Arc<CertificateAuthority>,
    ) -> Result<Self, SimulatorError> {
        for folder in ["disks", "vms"] {
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
            power_states: HashMap::new(),
            readyz: HashMap::new(),
            next_public_ip,
            counter: 0,
            latency: Duration::ZERO,
            tokens_issued: 0,
            events: Vec::new(),
        })
    }

    pub fn data_directory(&self) -> &Path {
        &self.settings.data_directory
    }

    /// The folder that mirrors a VM's `/dev/disk/azure/scsi1`: one `lunN` link per attached disk.
    /// The folder of a VM's `lunN` links, by VM id or by VM name. Two VMs of the same name in
    /// different groups (one per generation) get their own folders,
    /// `vms/{group}/{vm}/scsi1`; a name finds the VM of that name that exists (the last
    /// created, when several do).
    pub fn attachment_directory(&self, vm: &str) -> PathBuf {
        let id = if vm.starts_with('/') {
            Some(vm.to_owned())
        } else {
            self.resources
                .values()
                .filter(|stored| {
                    kind_of(&stored.id) == Kind::VirtualMachine
                        && name_of(&stored.id).eq_ignore_ascii_case(vm)
                })
                .max_by_key(|stored| {
                    stored
                        .body
                        .pointer("/properties/vmId")
                        .and_then(Value::as_str)
                        .and_then(|id| u64::from_str_radix(id.get(..8)?, 16).ok())
                        .unwrap_or(0)
                })
                .map(|stored| stored.id.clone())
        };
        let (group, name) = match &id {
            Some(id) => (lower(&group_name(id)), lower(&name_of(id))),
            None => ("_".to_owned(), lower(vm)),
        };
        self.settings
            .data_directory
            .join("vms")
            .join(group)
            .join(name)
            .join("scsi1")
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

    // ---- faults -------------------------------------------------------------------------

    pub fn add_fault(&mut self, fault: Fault) {
        match &fault {
            Fault::ApiServerDown { cluster, mode } => self.set_api_server(cluster, Some(*mode)),
            Fault::ApiServerUp { cluster } => self.set_api_server(cluster, None),
            _ => self.faults.push(ActiveFault::new(fault)),
        }
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
        for server in self.readyz.values() {
            server.set_down(None);
        }
    }

    fn set_api_server(&mut self, cluster: &str, down: Option<ApiServerDownMode>) {
        for (id, server) in &self.readyz {
            if id.eq_ignore_ascii_case(cluster) || name_of(id).eq_ignore_ascii_case(cluster) {
                server.set_down(down);
            }
        }
    }

    /// A fault response for this ARM request, if one applies.
    pub fn request_fault(&mut self, request: &SimRequest) -> Option<SimResponse> {
        let time_scale = self.settings.time_scale;
        for active in &mut self.faults {
            match active.fault.clone() {
                Fault::Throttle {
                    share,
                    retry_after_seconds,
                    count,
                } if active.hit_share(share, count) => {
                    let scaled_milliseconds =
                        (retry_after_seconds as f64 * 1000.0 * time_scale).round() as u64;
                    return Some(
                        SimResponse::error(
                            429,
                            "TooManyRequests",
                            "the request is being throttled: retry after the given time",
                        )
                        .with_header("Retry-After", retry_after_seconds.to_string())
                        .with_header("x-ms-retry-after-ms", scaled_milliseconds.to_string()),
                    );
                }
                Fault::ServerError { share, count } if active.hit_share(share, count) => {
                    return Some(SimResponse::error(
                        500,
                        "InternalServerError",
                        "the simulator was told to fail this request",
                    ));
                }
                Fault::RawResponse {
                    method,
                    path_contains,
                    status,
                    headers,
                    body,
                    count,
                } if active.hit_match(
                    &method,
                    &path_contains,
                    count,
                    &request.method,
                    &request.path,
                ) =>
                {
                    return Some(SimResponse {
                        status,
                        headers,
                        body: body.into_bytes(),
                    });
                }
                _ => {}
            }
        }
        None
    }

    /// Whether an operation started by this request should fail or hang.
    fn operation_fault(&mut self, method: &str, path: &str) -> (Option<Value>, bool) {
        for active in &mut self.faults {
            match active.fault.clone() {
                Fault::FailOperation {
                    method: wanted,
                    path_contains,
                    code,
                    message,
                    count,
                } if active.hit_match(&wanted, &path_contains, count, method, path) => {
                    return (Some(json!({"code": code, "message": message})), false);
                }
                Fault::HangOperation {
                    method: wanted,
                    path_contains,
                    count,
                } if active.hit_match(&wanted, &path_contains, count, method, path) => {
                    return (None, true);
                }
                _ => {}
            }
        }
        (None, false)
    }

    // ---- operations ---------------------------------------------------------------------

    fn operation_urls(&self, subscription: &str, operation_id: &str) -> (String, String) {
        let base = format!(
            "{}/subscriptions/{subscription}/providers/Microsoft.Simulator/locations/local",
            self.settings.endpoint
        );
        (
            format!("{base}/operations/{operation_id}?api-version=2025-01-01"),
            format!("{base}/operationResults/{operation_id}?api-version=2025-01-01"),
        )
    }

    /// Registers an operation and returns its id; `spawn_completion` must then be called
    /// outside the lock.
    fn begin_operation(
        &mut self,
        method: &str,
        path: &str,
        duration: Duration,
        completion: Completion,
    ) -> (String, Duration) {
        let operation_id = self.next_identifier();
        let (failure, hung) = self.operation_fault(method, path);
        let scaled = self.scaled(duration);
        self.operations.insert(
            operation_id.clone(),
            OperationRecord {
                id: operation_id.clone(),
                state: OperationState::InProgress,
                start_time: iso_time_now(),
                completion,
                failure,
                failure_status: 400,
                result: None,
                hung,
                finish_after_milliseconds: scaled.as_millis() as u64,
                request: (method.to_owned(), path.to_owned()),
                disks: Vec::new(),
            },
        );
        (operation_id, scaled)
    }

    fn retry_after_seconds(&self, remaining: Duration) -> String {
        let cap = self.scaled(Duration::from_secs(15));
        remaining.min(cap).as_secs().to_string()
    }

    /// Ends an operation: applies its effect or its failure.
    pub fn complete_operation(&mut self, operation_id: &str) {
        let Some(record) = self.operations.get(operation_id).cloned() else {
            return;
        };
        if record.hung || record.state != OperationState::InProgress {
            return;
        }
        if let Some(failure) = record.failure.clone() {
            if let Completion::Provisioned { id } = &record.completion
                && let Some(stored) = self.resources.get_mut(&lower(id))
            {
                properties_mut(&mut stored.body)
                    .insert("provisioningState".to_owned(), json!("Failed"));
            }
            if let Completion::Move {
                source_group,
                target_group,
                ..
            } = &record.completion
            {
                self.locked_groups.remove(&lower(source_group));
                self.locked_groups.remove(&lower(target_group));
            }
            if let Some(record) = self.operations.get_mut(operation_id) {
                record.state = OperationState::Failed;
                record.failure = Some(failure);
            }
            self.log_operation_end(&record, "Failed");
            return;
        }
        let outcome = match record.completion.clone() {
            Completion::Provisioned { id } => self.finish_provisioning(&id),
            Completion::Deleted { id } => {
                self.remove_resource(&id);
                Ok(())
            }
            Completion::Power { vm_id, running } => {
                self.power_states.insert(
                    lower(&vm_id),
                    if running { "running" } else { "deallocated" }.to_owned(),
                );
                self.refresh_vm_disks(&vm_id);
                Ok(())
            }
            Completion::Move {
                source_group,
                target_group,
                ids,
            } => {
                self.locked_groups.remove(&lower(&source_group));
                self.locked_groups.remove(&lower(&target_group));
                self.apply_move(&target_group, &ids);
                Ok(())
            }
            Completion::Nothing => Ok(()),
        };
        let ended = if outcome.is_ok() {
            "Succeeded"
        } else {
            "Failed"
        };
        if let Some(record) = self.operations.get_mut(operation_id) {
            match outcome {
                Ok(()) => record.state = OperationState::Succeeded,
                Err(message) => {
                    record.state = OperationState::Failed;
                    record.failure =
                        Some(json!({"code": "InternalOperationError", "message": message}));
                }
            }
        }
        self.log_operation_end(&record, ended);
    }

    fn log_operation_end(&mut self, record: &OperationRecord, outcome: &str) {
        self.events.push(SimEvent {
            what: "operation",
            method: record.request.0.clone(),
            path: record.request.1.clone(),
            outcome: outcome.to_owned(),
            code: record
                .failure
                .as_ref()
                .and_then(|failure| failure.get("code"))
                .and_then(Value::as_str)
                .map(str::to_owned),
            disks: record.disks.clone(),
        });
    }

    /// What a request asks of managed disks (`SimEvent::disks`), read before it is handled.
    fn disk_changes(&self, request: &SimRequest) -> Vec<String> {
        let Ok(body) = serde_json::from_slice::<Value>(&request.body) else {
            return Vec::new();
        };
        let path = lower(&request.path);
        if request.method == "POST"
            && (path.ends_with("/moveresources") || path.ends_with("/validatemoveresources"))
        {
            return body
                .get("resources")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|id| kind_of(id) == Kind::Disk)
                .map(|id| format!("move {}", name_of(id)))
                .collect();
        }
        if !matches!(request.method.as_str(), "PUT" | "PATCH")
            || kind_of(&request.path) != Kind::VirtualMachine
        {
            return Vec::new();
        }
        body.pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|entry| {
                let id = entry.pointer("/managedDisk/id").and_then(Value::as_str)?;
                if entry.get("toBeDetached").and_then(Value::as_bool) == Some(true) {
                    let forced = entry
                        .get("detachOption")
                        .and_then(Value::as_str)
                        .is_some_and(|option| option.eq_ignore_ascii_case("ForceDetach"));
                    let action = if forced { "force-detach" } else { "detach" };
                    return Some(format!("{action} {}", name_of(id)));
                }
                let holder = self
                    .resources
                    .get(&lower(id))
                    .and_then(|disk| disk.body.get("managedBy"))
                    .and_then(Value::as_str)
                    .map(lower);
                (holder.as_deref() != Some(path.as_str()))
                    .then(|| format!("attach {}", name_of(id)))
            })
            .collect()
    }

    /// Every request answered and operation ended so far, in order.
    pub fn events(&self) -> Vec<SimEvent> {
        self.events.clone()
    }

    fn operation_status(&self, operation_id: &str) -> SimResponse {
        let Some(record) = self.operations.get(operation_id) else {
            return SimResponse::error(
                404,
                "OperationNotFound",
                format!("operation {operation_id} does not exist"),
            );
        };
        let mut body = json!({
            "id": operation_id,
            "name": operation_id,
            "status": record.state,
            "startTime": record.start_time,
        });
        if record.state == OperationState::Failed
            && let Some(failure) = &record.failure
        {
            body["error"] = failure.clone();
        }
        let mut response = SimResponse::json(200, &body);
        if record.state == OperationState::InProgress {
            let wait =
                self.retry_after_seconds(Duration::from_millis(record.finish_after_milliseconds));
            response = response.with_header("Retry-After", wait);
        }
        response
    }

    fn operation_result(&self, operation_id: &str) -> SimResponse {
        let Some(record) = self.operations.get(operation_id) else {
            return SimResponse::error(
                404,
                "OperationNotFound",
                format!("operation {operation_id} does not exist"),
            );
        };
        match record.state {
            OperationState::InProgress => {
                let wait = self
                    .retry_after_seconds(Duration::from_millis(record.finish_after_milliseconds));
                SimResponse::empty(202).with_header("Retry-After", wait)
            }
            OperationState::Failed => SimResponse::json(
                record.failure_status,
                &json!({"error": record.failure.clone().unwrap_or_else(|| json!({"code": "OperationFailed", "message": "the operation failed"}))}),
            ),
            OperationState::Succeeded => match &record.result {
                Some(result) => SimResponse::json(200, result),
                None => SimResponse::empty(204),
            },
        }
    }

    // ---- request handling ---------------------------------------------------------------

    /// Handles one authenticated ARM request. Returns the response and, when it started an
    /// operation, the operation to complete after the given (scaled) time.
    pub fn handle(&mut self, request: &SimRequest) -> (SimResponse, Option<(String, Duration)>) {
        let disks = self.disk_changes(request);
        let answer = match self.route(request) {
            Ok(answer) => answer,
            Err(refusal) => (refusal, None),
        };
        if let Some((operation_id, _)) = &answer.1
            && let Some(record) = self.operations.get_mut(operation_id)
        {
            record.disks = disks.clone();
        }
        self.events.push(SimEvent {
            what: "request",
            method: request.method.clone(),
            path: request.path.clone(),
            outcome: answer.0.status.to_string(),
            code: (answer.0.status >= 400)
                .then(|| error_code(&answer.0.body))
                .flatten(),
            disks,
        });
        answer
    }

    fn route(
        &mut self,
        request: &SimRequest,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let segments: Vec<&str> = request
            .path
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let lowered: Vec<String> = segments.iter().map(|segment| lower(segment)).collect();
        let method = request.method.as_str();
        if segments.len() < 2 || lowered[0] != "subscriptions" {
            return Err(SimResponse::error(
                404,
                "InvalidResourceType",
                format!("no ARM route for {}", request.path),
            ));
        }
        if request.query_value("api-version").is_none() {
            return Err(SimResponse::error(
                400,
                "MissingApiVersionParameter",
                "the api-version query parameter (?api-version=) is required for all requests",
            ));
        }
        let subscription = segments[1];
        // Operation status and results.
        if segments.len() == 8 && lowered[2] == "providers" && lowered[3] == "microsoft.simulator" {
            return Ok(match lowered[6].as_str() {
                "operations" => (self.operation_status(segments[7]), None),
                _ => (self.operation_result(segments[7]), None),
            });
        }
        if segments.len() == 3 && lowered[2] == "resourcegroups" {
            return Ok((
                self.list(
                    request,
                    &format!("/subscriptions/{subscription}/resourceGroups"),
                )?,
                None,
            ));
        }
        if segments.len() < 4 || lowered[2] != "resourcegroups" {
            return Err(SimResponse::error(
                404,
                "InvalidResourceType",
                format!("no ARM route for {}", request.path),
            ));
        }
        let group_id = format!(
            "/subscriptions/{subscription}/resourceGroups/{}",
            segments[3]
        );
        if segments.len() == 4 {
            return self.resource_request(request, &group_id);
        }
        if segments.len() == 5 && method == "POST" {
            return match lowered[4].as_str() {
                "moveresources" => self.move_resources(request, &group_id, false),
                "validatemoveresources" => self.move_resources(request, &group_id, true),
                _ => Err(SimResponse::error(
                    404,
                    "InvalidResourceType",
                    format!("no action {}", segments[4]),
                )),
            };
        }
        if segments.len() < 7 || lowered[4] != "providers" {
            return Err(SimResponse::error(
                404,
                "InvalidResourceType",
                format!("no ARM route for {}", request.path),
            ));
        }
        self.require_group(&group_id)?;
        let full_path = format!("/{}", segments.join("/"));
        let after_namespace = segments.len() - 6;
        if after_namespace.is_multiple_of(2) {
            return self.resource_request(request, &full_path);
        }
        // An odd count: a collection, an action on a resource, or a DNS record-type listing.
        let parent = format!("/{}", segments[..segments.len() - 1].join("/"));
        let last = lowered[lowered.len() - 1].as_str();
        let is_zone_listing = after_namespace == 3 && lowered[6] == "dnszones";
        if is_zone_listing && method == "GET" {
            if last == "recordsets" || last == "all" {
                return Ok((self.list_children(request, &parent, None)?, None));
            }
            return Ok((
                self.list_children(request, &parent, Some(segments[segments.len() - 1]))?,
                None,
            ));
        }
        if after_namespace == 1 && method == "GET" {
            return Ok((self.list(request, &full_path)?, None));
        }
        if after_namespace >= 3 && method == "GET" && last != "instanceview" && last != "vmsizes" {
            return Ok((self.list(request, &full_path)?, None));
        }
        self.action(request, &parent, last)
    }

    fn require_group(&self, group_id: &str) -> Result<(), Refusal> {
        if self.resources.contains_key(&lower(group_id)) {
            Ok(())
        } else {
            Err(SimResponse::error(
                404,
                "ResourceGroupNotFound",
                format!("Resource group '{}' could not be found.", name_of(group_id)),
            ))
        }
    }

    fn require_unlocked(&self, id: &str) -> Result<(), Refusal> {
        let group = group_id_of(id).unwrap_or_default();
        if self.locked_groups.contains_key(&lower(&group)) {
            return Err(SimResponse::error(
                409,
                "ScopeLocked",
                format!(
                    "the resource group '{}' is locked while resources move into or out of it; retry after the move",
                    name_of(&group)
                ),
            ));
        }
        Ok(())
    }

    fn stored_response(&self, status: u16, stored: &Stored) -> SimResponse {
        SimResponse::json(status, &stored.body).with_header("ETag", stored.etag.clone())
    }

    fn not_found(id: &str) -> SimResponse {
        let kind = kind_of(id);
        if kind == Kind::Group {
            return SimResponse::error(
                404,
                "ResourceGroupNotFound",
                format!("Resource group '{}' could not be found.", name_of(id)),
            );
        }
        SimResponse::error(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{}' under resource group '{}' was not found.",
                type_and_name(id),
                group_name(id)
            ),
        )
    }

    fn resource_request(
        &mut self,
        request: &SimRequest,
        id: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        match request.method.as_str() {
            "GET" | "HEAD" => {
                let stored = self
                    .resources
                    .get(&lower(id))
                    .ok_or_else(|| Self::not_found(id))?;
                let mut stored = stored.clone();
                if kind_of(id) == Kind::VirtualMachine
                    && request
                        .query_value("$expand")
                        .is_some_and(|expand| expand.eq_ignore_ascii_case("instanceView"))
                {
                    properties_mut(&mut stored.body)
                        .insert("instanceView".to_owned(), self.instance_view(id));
                }
                if request.method == "HEAD" {
                    return Ok((SimResponse::empty(204), None));
                }
                Ok((self.stored_response(200, &stored), None))
            }
            "PUT" | "PATCH" => self.write(request, id),
            "DELETE" => self.delete(request, id),
            other => Err(SimResponse::error(
                405,
                "MethodNotAllowed",
                format!("{other} is not supported on {id}"),
            )),
        }
    }

    fn check_preconditions(
        &self,
        request: &SimRequest,
        existing: Option<&Stored>,
    ) -> Result<(), Refusal> {
        if let Some(wanted) = request.header("if-match") {
            let matches = match existing {
                Some(stored) => wanted.trim() == "*" || wanted.trim() == stored.etag,
                None => false,
            };
            if !matches {
                return Err(SimResponse::error(
                    412,
                    "PreconditionFailed",
                    "The condition specified using HTTP conditional header(s) is not met.",
                ));
            }
        }
        if let Some(wanted) = request.header("if-none-match")
            && wanted.trim() == "*"
            && existing.is_some()
        {
            return Err(SimResponse::error(
                412,
                "PreconditionFailed",
                "The resource already exists and If-None-Match: * forbids overwriting it.",
            ));
        }
        Ok(())
    }

    fn parse_body(request: &SimRequest) -> Result<Value, Refusal> {
        let body: Value = serde_json::from_slice(&request.body).map_err(|error| {
            SimResponse::error(
                400,
                "InvalidRequestContent",
                format!("The request content was invalid and could not be deserialized: {error}"),
            )
        })?;
        if !body.is_object() {
            return Err(SimResponse::error(
                400,
                "InvalidRequestContent",
                "The request content must be a JSON object.",
            ));
        }
        Ok(body)
    }

    fn write(
        &mut self,
        request: &SimRequest,
        id: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let _kind = kind_of(id);
        let key = lower(id);
        let existing = self.resources.get(&key).cloned();
        // A group's own PUT is refused while a move locks it, like any write inside it.
        self.require_unlocked(id)?;
        self.check_preconditions(request, existing.as_ref())?;
        let incoming = Self::parse_body(request)?;
        let body = if request.method == "PATCH" {
            let Some(existing) = &existing else {
                return Err(Self::not_found(id));
            };
            let mut merged = existing.body.clone();
            merge_patch(&mut merged, &incoming);
            merged
        } else {
            incoming
        };
        if let Some(existing) = &existing
            && kind_of(id) == Kind::VirtualMachine
        {
            self.check_resize(id, &existing.body, &body)?;
        }
        self.write_body(request, id, body, existing, false)
    }

    /// Validates and stores a resource body, and starts its operation. `immediate` (seeding)
    /// finishes at once with no faults.
    fn write_body(
        &mut self,
        request: &SimRequest,
        id: &str,
        mut body: Value,
        existing: Option<Stored>,
        immediate: bool,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let kind = kind_of(id);
        let creating = existing.is_none();
        let needs_location = matches!(
            kind,
            Kind::Group
                | Kind::VirtualNetwork
                | Kind::PublicIp
                | Kind::NetworkInterface
                | Kind::VirtualMachine
                | Kind::Disk
                | Kind::ManagedCluster
        );
        if needs_location
            && body
                .get("location")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            return Err(SimResponse::error(
                400,
                "LocationRequired",
                "The location property is required for this definition.",
            ));
        }
        // Parents must exist: a subnet needs its network, a record set its zone.
        if matches!(kind, Kind::Subnet | Kind::RecordSet) {
            let parent = match kind {
                Kind::Subnet => id.rsplitn(3, '/').nth(2).unwrap_or_default().to_owned(),
                _ => id.rsplitn(3, '/').nth(2).unwrap_or_default().to_owned(),
            };
            if !self.resources.contains_key(&lower(&parent)) {
                return Err(SimResponse::error(
                    404,
                    "ParentResourceNotFound",
                    format!(
                        "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                        name_of(&parent)
                    ),
                ));
            }
        }
        let stored_id = existing
            .as_ref()
            .map(|stored| stored.id.clone())
            .unwrap_or_else(|| id.to_owned());
        body["id"] = json!(stored_id);
        body["name"] = json!(name_of(&stored_id));
        body["type"] = json!(type_of(&stored_id));
        let previous = existing
            .as_ref()
            .map(|stored| stored.body.clone())
            .unwrap_or(Value::Null);
        // Server-owned fields survive a PUT that omits them.
        self.fill_server_fields(kind, &stored_id, &mut body, &previous)?;
        let mut duration = self
            .settings
            .durations
            .duration_for(kind_name(kind), creating);
        if kind == Kind::VirtualMachine {
            let disks_changed = self.apply_vm_disk_request(&stored_id, &mut body, &previous)?;
            if disks_changed && !creating {
                duration = self.settings.durations.disk_attach_detach;
            }
        }
        let synchronous = immediate
            || duration.is_zero()
            || matches!(kind, Kind::Group | Kind::DnsZone | Kind::RecordSet);
        let state = if synchronous {
            "Succeeded"
        } else if creating {
            "Creating"
        } else {
            "Updating"
        };
        properties_mut(&mut body).insert("provisioningState".to_owned(), json!(state));
        let etag = self.next_etag();
        if !matches!(
            kind,
            Kind::Group | Kind::VirtualMachine | Kind::Disk | Kind::ManagedCluster
        ) {
            body["etag"] = json!(etag.clone());
        }
        let stored = Stored {
            id: stored_id.clone(),
            etag,
            body,
        };
        self.resources.insert(lower(&stored_id), stored.clone());
        let status = if creating { 201 } else { 200 };
        if synchronous {
            let _ = self.finish_provisioning(&stored_id);
            let stored = self
                .resources
                .get(&lower(&stored_id))
                .cloned()
                .unwrap_or(stored);
            return Ok((self.stored_response(status, &stored), None));
        }
        let (operation_id, scaled) = self.begin_operation(
            &request.method,
            &request.path,
            duration,
            Completion::Provisioned {
                id: stored_id.clone(),
            },
        );
        let subscription = subscription_of(&stored_id);
        let (status_url, _) = self.operation_urls(&subscription, &operation_id);
        let response = self
            .stored_response(status, &stored)
            .with_header("Azure-AsyncOperation", status_url)
            .with_header("Retry-After", self.retry_after_seconds(scaled));
        Ok((response, Some((operation_id, scaled))))
    }

    /// Fills what ARM computes: IP addresses, disk state, AKS endpoints, DNS name servers.
    fn fill_server_fields(
        &mut self,
        kind: Kind,
        id: &str,
        body: &mut Value,
        previous: &Value,
    ) -> Result<(), Refusal> {
        let previous_properties = previous.get("properties").cloned().unwrap_or(Value::Null);
        let keep = |body: &mut Value, field: &str| {
            if let Some(value) = previous_properties.get(field)
                && body
                    .get("properties")
                    .and_then(|properties| properties.get(field))
                    .is_none()
            {
                properties_mut(body).insert(field.to_owned(), value.clone());
            }
        };
        match kind {
            Kind::PublicIp => {
                keep(body, "ipAddress");
                if body["properties"].get("ipAddress").is_none() {
                    let address = self.allocate_public_ip();
                    properties_mut(body).insert("ipAddress".to_owned(), json!(address.to_string()));
                }
                let properties = properties_mut(body);
                properties
                    .entry("publicIPAddressVersion")
                    .or_insert(json!("IPv4"));
                properties
                    .entry("publicIPAllocationMethod")
                    .or_insert(json!("Static"));
                properties.entry("idleTimeoutInMinutes").or_insert(json!(4));
                keep(body, "resourceGuid");
                let guid = self.next_identifier();
                properties_mut(body)
                    .entry("resourceGuid")
                    .or_insert(json!(guid));
            }
            Kind::Disk => {
                keep(body, "uniqueId");
                keep(body, "timeCreated");
                keep(body, "diskState");
                let unique = self.next_identifier();
                let properties = properties_mut(body);
                properties.entry("uniqueId").or_insert(json!(unique));
                properties
                    .entry("timeCreated")
                    .or_insert(json!(iso_time_now()));
                properties.entry("diskState").or_insert(json!("Unattached"));
                if properties
                    .get("diskSizeGB")
                    .and_then(Value::as_i64)
                    .is_none()
                {
                    properties.insert("diskSizeGB".to_owned(), json!(32));
                }
                let size = properties
                    .get("diskSizeGB")
                    .and_then(Value::as_i64)
                    .unwrap_or(32);
                properties
                    .entry("diskSizeBytes")
                    .or_insert(json!(size.saturating_mul(1 << 30)));
                if let Some(managed_by) = previous.get("managedBy") {
                    body["managedBy"] = managed_by.clone();
                }
            }
            Kind::NetworkInterface => {
                keep(body, "macAddress");
                keep(body, "virtualMachine");
                self.counter += 1;
                let counter = self.counter;
                properties_mut(body)
                    .entry("macAddress")
                    .or_insert(json!(format!(
                        "00-0D-3A-{:02X}-{:02X}-{:02X}",
                        (counter >> 16) & 0xff,
                        (counter >> 8) & 0xff,
                        counter & 0xff
                    )));
                let mut next_private = 4u32;
                if let Some(configurations) = body["properties"]
                    .get_mut("ipConfigurations")
                    .and_then(Value::as_array_mut)
                {
                    for configuration in configurations {
                        if !configuration
                            .get("properties")
                            .is_some_and(Value::is_object)
                        {
                            configuration["properties"] = json!({});
                        }
                        let properties =
                            configuration["properties"].as_object_mut().expect("object");
                        properties
                            .entry("privateIPAddress")
                            .or_insert(json!(format!("10.0.0.{next_private}")));
                        properties
                            .entry("privateIPAllocationMethod")
                            .or_insert(json!("Dynamic"));
                        properties
                            .entry("provisioningState")
                            .or_insert(json!("Succeeded"));
                        next_private += 1;
                    }
                }
            }
            Kind::VirtualMachine => {
                keep(body, "vmId");
                let vm_id = self.next_identifier();
                properties_mut(body).entry("vmId").or_insert(json!(vm_id));
                properties_mut(body).remove("instanceView");
            }
            Kind::ManagedCluster => {
                keep(body, "fqdn");
                keep(body, "azurePortalFQDN");
                keep(body, "nodeResourceGroup");
                let name = name_of(id);
                let group = group_name(id);
                let location = body
                    .get("location")
                    .and_then(Value::as_str)
                    .unwrap_or("local")
                    .to_owned();
                let properties = properties_mut(body);
                properties
                    .entry("nodeResourceGroup")
                    .or_insert(json!(format!("MC_{group}_{name}_{location}")));
                properties
                    .entry("kubernetesVersion")
                    .or_insert(json!("1.33.0"));
                properties.entry("dnsPrefix").or_insert(json!(name.clone()));
                properties.insert("powerState".to_owned(), json!({"code": "Running"}));
                properties.remove("fqdn");
                properties.remove("azurePortalFQDN");
                if let Some(fqdn) = previous_properties.get("fqdn") {
                    properties.insert("fqdn".to_owned(), fqdn.clone());
                    properties.insert("azurePortalFQDN".to_owned(), fqdn.clone());
                }
            }
            Kind::DnsZone => {
                let count = self
                    .resources
                    .keys()
                    .filter(|key| key.starts_with(&format!("{}/", lower(id))))
                    .count();
                let properties = properties_mut(body);
                properties.insert("maxNumberOfRecordSets".to_owned(), json!(10000));
                properties.insert("numberOfRecordSets".to_owned(), json!(count + 2));
                properties.insert(
                    "nameServers".to_owned(),
                    json!([
                        "ns1-01.azure-dns.com.",
                        "ns2-01.azure-dns.net.",
                        "ns3-01.azure-dns.org.",
                        "ns4-01.azure-dns.info."
                    ]),
                );
                properties.entry("zoneType").or_insert(json!("Public"));
            }
            Kind::RecordSet => {
                let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
                let zone = segments
                    .get(segments.len().saturating_sub(3))
                    .copied()
                    .unwrap_or_default();
                let name = name_of(id);
                let fqdn = if name == "@" {
                    format!("{zone}.")
                } else {
                    format!("{name}.{zone}.")
                };
                properties_mut(body).insert("fqdn".to_owned(), json!(fqdn));
            }
            Kind::Group => {
                if let Some(managed_by) = previous.get("managedBy")
                    && body.get("managedBy").is_none()
                {
                    body["managedBy"] = managed_by.clone();
                }
            }
            Kind::VirtualNetwork => {
                if let Some(subnets) = body["properties"]
                    .get_mut("subnets")
                    .and_then(Value::as_array_mut)
                {
                    for subnet in subnets {
                        let name = subnet
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or("default")
                            .to_owned();
                        subnet["id"] = json!(format!("{id}/subnets/{name}"));
                        subnet["type"] = json!("Microsoft.Network/virtualNetworks/subnets");
                        if !subnet.get("properties").is_some_and(Value::is_object) {
                            subnet["properties"] = json!({});
                        }
                        subnet["properties"]["provisioningState"] = json!("Succeeded");
                    }
                }
            }
            Kind::Subnet | Kind::Other => {}
        }
        Ok(())
    }

    /// Checks and reserves the disks in a VM body; returns whether any attachment changes.
    fn apply_vm_disk_request(
        &mut self,
        vm_id: &str,
        body: &mut Value,
        previous: &Value,
    ) -> Result<bool, Refusal> {
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or("local")
            .to_owned();
        let group = group_id_of(vm_id).unwrap_or_default();
        let vm_name = name_of(vm_id);
        let mut wanted: Vec<(i64, String, bool)> = Vec::new();
        let mut implicit_disks: Vec<(String, Value)> = Vec::new();
        let mut luns = std::collections::HashSet::new();
        if let Some(data_disks) = body
            .get_mut("properties")
            .and_then(|properties| properties.get_mut("storageProfile"))
            .and_then(|profile| profile.get_mut("dataDisks"))
            .and_then(Value::as_array_mut)
        {
            for disk in data_disks.iter_mut() {
                let Some(lun) = disk.get("lun").and_then(Value::as_i64) else {
                    return Err(SimResponse::error(
                        400,
                        "InvalidParameter",
                        "Required parameter 'dataDisk.lun' is missing (null).",
                    ));
                };
                if !luns.insert(lun) {
                    return Err(SimResponse::error(
                        400,
                        "InvalidParameter",
                        format!(
                            "A disk at LUN {lun} already exists; each data disk needs its own LUN."
                        ),
                    ));
                }
                let detaching = disk
                    .get("toBeDetached")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let create_option = disk
                    .get("createOption")
                    .and_then(Value::as_str)
                    .unwrap_or("Attach")
                    .to_owned();
                let disk_id = disk
                    .pointer("/managedDisk/id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let disk_id = match disk_id {
                    Some(id) => id,
                    None if create_option.eq_ignore_ascii_case("Empty") => {
                        let name = disk
                            .get("name")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("{vm_name}_DataDisk_{lun}"));
                        let id = format!("{group}/providers/Microsoft.Compute/disks/{name}");
                        let size = disk.get("diskSizeGB").and_then(Value::as_i64).unwrap_or(32);
                        implicit_disks.push((id.clone(), json!({"location": location, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": size}})));
                        if !disk.get("managedDisk").is_some_and(Value::is_object) {
                            disk["managedDisk"] = json!({});
                        }
                        disk["managedDisk"]["id"] = json!(id.clone());
                        disk["name"] = json!(name);
                        id
                    }
                    None => {
                        return Err(SimResponse::error(
                            400,
                            "InvalidParameter",
                            format!(
                                "Data disk at LUN {lun} needs managedDisk.id to attach an existing disk."
                            ),
                        ));
                    }
                };
                wanted.push((lun, disk_id, detaching));
            }
        }
        // Validate before changing anything.
        let implicit_ids: Vec<String> = implicit_disks.iter().map(|(id, _)| lower(id)).collect();
        for (_, disk_id, detaching) in &wanted {
            if *detaching {
                continue;
            }
            if implicit_ids.contains(&lower(disk_id))
                && !self.resources.contains_key(&lower(disk_id))
            {
                continue;
            }
            let Some(disk) = self.resources.get(&lower(disk_id)) else {
                return Err(SimResponse::error(
                    404,
                    "NotFound",
                    format!(
                        "Disk {} does not exist; create it before attaching it.",
                        name_of(disk_id)
                    ),
                ));
            };
            if let Some(owner) = disk.body.get("managedBy").and_then(Value::as_str)
                && !owner.eq_ignore_ascii_case(vm_id)
            {
                return Err(SimResponse::error(
                    409,
                    "ConflictingUserInput",
                    format!(
                        "Disk '{}' cannot be attached as the disk is already owned by VM '{}'.",
                        name_of(disk_id),
                        owner
                    ),
                ));
            }
        }
        let previously_attached: Vec<String> = previous
            .pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
            .map(|disks| {
                disks
                    .iter()
                    .filter_map(|disk| {
                        disk.pointer("/managedDisk/id")
                            .and_then(Value::as_str)
                            .map(lower)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (disk_id, disk_body) in implicit_disks {
            if !self.resources.contains_key(&lower(&disk_id)) {
                let request = SimRequest {
                    method: "PUT".to_owned(),
                    path: disk_id.clone(),
                    query: Vec::new(),
                    headers: Vec::new(),
                    body: Vec::new(),
                };
                let _ = self.write_body(&request, &disk_id, disk_body, None, true);
            }
        }
        let mut changed = false;
        for (_, disk_id, detaching) in &wanted {
            let was_attached = previously_attached.contains(&lower(disk_id));
            if *detaching {
                changed |= was_attached;
                continue;
            }
            changed |= !was_attached;
            // Reserve at once, so a concurrent attach elsewhere gets its 409.
            if let Some(disk) = self.resources.get_mut(&lower(disk_id)) {
                disk.body["managedBy"] = json!(vm_id);
            }
        }
        let still_listed: Vec<String> = wanted.iter().map(|(_, id, _)| lower(id)).collect();
        changed |= previously_attached
            .iter()
            .any(|id| !still_listed.contains(id));
        Ok(changed)
    }

    /// After a VM write: drop detached disks, settle each disk's state, mirror the links.
    fn settle_vm_disks(&mut self, vm_id: &str) {
        let key = lower(vm_id);
        let Some(stored) = self.resources.get(&key).cloned() else {
            return;
        };
        let mut body = stored.body.clone();
        let mut kept = Vec::new();
        let mut detached = Vec::new();
        if let Some(data_disks) = body
            .pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
        {
            for disk in data_disks {
                let disk_id = disk
                    .pointer("/managedDisk/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if disk
                    .get("toBeDetached")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                {
                    detached.push(lower(&disk_id));
                } else {
                    kept.push(disk.clone());
                }
            }
        }
        if body
            .pointer("/properties/storageProfile/dataDisks")
            .is_some()
        {
            body["properties"]["storageProfile"]["dataDisks"] = Value::Array(kept.clone());
        }
        let kept_ids: Vec<String> = kept
            .iter()
            .filter_map(|disk| {
                disk.pointer("/managedDisk/id")
                    .and_then(Value::as_str)
                    .map(lower)
            })
            .collect();
        // Every disk that names this VM as owner but is no longer listed is released.
        let owned: Vec<String> = self
            .resources
            .iter()
            .filter(|(_, disk)| {
                disk.body
                    .get("managedBy")
                    .and_then(Value::as_str)
                    .is_some_and(|owner| owner.eq_ignore_ascii_case(vm_id))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for disk_key in owned.iter().chain(detached.iter()) {
            if !kept_ids.contains(disk_key)
                && let Some(disk) = self.resources.get_mut(disk_key)
                && let Some(object) = disk.body.as_object_mut()
            {
                object.remove("managedBy");
                properties_mut(&mut disk.body).insert("diskState".to_owned(), json!("Unattached"));
            }
        }
        if let Some(stored) = self.resources.get_mut(&key) {
            stored.body = body;
        }
        self.refresh_vm_disks(vm_id);
    }

    /// Sets `diskState` of the VM's disks and rewrites its `lunN` links from ARM's view.
    fn refresh_vm_disks(&mut self, vm_id: &str) {
        let Some(stored) = self.resources.get(&lower(vm_id)).cloned() else {
            return;
        };
        let running = self
            .power_states
            .get(&lower(vm_id))
            .is_none_or(|state| state == "running");
        let folder = self.attachment_directory(vm_id);
        let _ = std::fs::remove_dir_all(&folder);
        let disks: Vec<(i64, String)> = stored
            .body
            .pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
            .map(|disks| {
                disks
                    .iter()
                    .filter_map(|disk| {
                        Some((
                            disk.get("lun")?.as_i64()?,
                            disk.pointer("/managedDisk/id")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if running {
            let _ = std::fs::create_dir_all(&folder);
        }
        for (lun, disk_id) in disks {
            let backing = self.backing_file(&disk_id);
            if let Some(disk) = self.resources.get_mut(&lower(&disk_id)) {
                disk.body["managedBy"] = json!(stored.id.clone());
                properties_mut(&mut disk.body).insert(
                    "diskState".to_owned(),
                    json!(if running { "Attached" } else { "Reserved" }),
                );
            }
            // A deallocated VM has no host, so no device: the links exist only while it runs.
            if running && let Some(backing) = backing {
                let _ = std::os::unix::fs::symlink(&backing, folder.join(format!("lun{lun}")));
            }
        }
    }

    /// The sparse file that holds a disk's bytes; it follows the disk through moves.
    fn backing_file(&self, disk_id: &str) -> Option<PathBuf> {
        let disk = self.resources.get(&lower(disk_id))?;
        let unique = disk.body.pointer("/properties/uniqueId")?.as_str()?;
        Some(
            self.settings
                .data_directory
                .join("disks")
                .join(format!("{unique}.img")),
        )
    }

    fn ensure_backing_file(&self, disk_id: &str) -> Result<(), String> {
        let Some(path) = self.backing_file(disk_id) else {
            return Ok(());
        };
        if path.exists() {
            return Ok(());
        }
        let size_gb = self
            .resources
            .get(&lower(disk_id))
            .and_then(|disk| {
                disk.body
                    .pointer("/properties/diskSizeGB")
                    .and_then(Value::as_u64)
            })
            .unwrap_or(32);
        let size = self
            .settings
            .disk_backing_size
            .unwrap_or(size_gb.saturating_mul(1 << 30));
        let file = std::fs::File::create(&path)
            .map_err(|error| format!("could not create {}: {error}", path.display()))?;
        // set_len makes a sparse file: no bytes are written until the pool writes them.
        file.set_len(size)
            .map_err(|error| format!("could not size {}: {error}", path.display()))
    }

    fn finish_provisioning(&mut self, id: &str) -> Result<(), String> {
        let key = lower(id);
        if let Some(stored) = self.resources.get_mut(&key) {
            properties_mut(&mut stored.body)
                .insert("provisioningState".to_owned(), json!("Succeeded"));
        }
        match kind_of(id) {
            Kind::Disk => self.ensure_backing_file(id)?,
            Kind::VirtualMachine => {
                self.power_states
                    .entry(key.clone())
                    .or_insert_with(|| "running".to_owned());
                self.settle_vm_disks(id);
                self.link_network_interfaces(id);
            }
            Kind::ManagedCluster => self.start_api_server(id)?,
            _ => {}
        }
        Ok(())
    }

    fn link_network_interfaces(&mut self, vm_id: &str) {
        let Some(stored) = self.resources.get(&lower(vm_id)).cloned() else {
            return;
        };
        let nics: Vec<String> = stored
            .body
            .pointer("/properties/networkProfile/networkInterfaces")
            .and_then(Value::as_array)
            .map(|nics| {
                nics.iter()
                    .filter_map(|nic| nic.get("id")?.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        for nic in nics {
            if let Some(nic) = self.resources.get_mut(&lower(&nic)) {
                properties_mut(&mut nic.body).insert(
                    "virtualMachine".to_owned(),
                    json!({"id": stored.id.clone()}),
                );
            }
        }
    }

    fn start_api_server(&mut self, cluster_id: &str) -> Result<(), String> {
        let key = lower(cluster_id);
        if self.readyz.contains_key(&key) {
            return Ok(());
        }
        let address = self.allocate_public_ip();
        let server = ReadyzServer::start(address, self.settings.readyz_port, &self.authority)
            .map_err(|error| error.to_string())?;
        let fqdn = server.fqdn();
        if let Some(stored) = self.resources.get_mut(&key) {
            let properties = properties_mut(&mut stored.body);
            properties.insert("fqdn".to_owned(), json!(fqdn.clone()));
            properties.insert("azurePortalFQDN".to_owned(), json!(fqdn));
        }
        self.readyz.insert(key, server);
        Ok(())
    }

    fn instance_view(&self, vm_id: &str) -> Value {
        let power = self
            .power_states
            .get(&lower(vm_id))
            .cloned()
            .unwrap_or_else(|| "starting".to_owned());
        let stored = self.resources.get(&lower(vm_id));
        let provisioning = stored
            .and_then(|stored| stored.body.pointer("/properties/provisioningState"))
            .and_then(Value::as_str)
            .unwrap_or("Succeeded")
            .to_ascii_lowercase();
        let disks: Vec<Value> = stored
            .and_then(|stored| stored.body.pointer("/properties/storageProfile/dataDisks"))
            .and_then(Value::as_array)
            .map(|disks| {
                disks
                    .iter()
                    .map(|disk| {
                        json!({
                            "name": disk.get("name").cloned().unwrap_or(Value::Null),
                            "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"}]
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "computerName": name_of(vm_id),
            "disks": disks,
            "statuses": [
                {"code": format!("ProvisioningState/{provisioning}"), "level": "Info", "displayStatus": format!("Provisioning {provisioning}")},
                {"code": format!("PowerState/{power}"), "level": "Info", "displayStatus": format!("VM {power}")}
            ]
        })
    }

    /// Whether a VM holds hardware in a cluster: every power state but `deallocated` (a VM
    /// that is still being created has none yet, and is not placed).
    fn holds_hardware(&self, vm_id: &str) -> bool {
        self.power_states
            .get(&lower(vm_id))
            .is_some_and(|state| state != "deallocated")
    }

    /// The sizes `GET {vm}/vmSizes` lists: those the VM can be resized to where it is now. A VM
    /// that holds hardware gets the sizes of its own series (see [`size_series`]): the
    /// simulator's hardware cluster hosts one series. A deallocated VM is placed again when it
    /// starts, so every size the simulator knows is open to it.
    fn sizes_available(&self, vm_id: &str, vm: &Value) -> Vec<&'static VmSize> {
        let current = vm
            .pointer("/properties/hardwareProfile/vmSize")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let in_place = self.holds_hardware(vm_id);
        VM_SIZES
            .iter()
            .filter(|size| !in_place || size_series(size.name) == size_series(current))
            .collect()
    }

    /// ARM's rule for a write that changes a VM's size: while the VM holds hardware, only to a
    /// size that `vmSizes` lists (its hardware cluster hosts it); refused otherwise with ARM's
    /// `409 OperationNotAllowed`, whose remedy is to deallocate the VM, resize it and start it.
    /// A deallocated VM takes any size. Seeding bypasses the rule, as a change in the portal
    /// after a deallocation would. Azure restarts a VM that it resizes in place; the simulator
    /// keeps it `running` throughout, the restart being inside the operation.
    fn check_resize(&self, vm_id: &str, before: &Value, after: &Value) -> Result<(), Refusal> {
        let size = |body: &Value| {
            body.pointer("/properties/hardwareProfile/vmSize")
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let (Some(current), Some(wanted)) = (size(before), size(after)) else {
            return Ok(());
        };
        if current.eq_ignore_ascii_case(&wanted) || !self.holds_hardware(vm_id) {
            return Ok(());
        }
        let available: Vec<&str> = self
            .sizes_available(vm_id, before)
            .into_iter()
            .map(|size| size.name)
            .collect();
        if available
            .iter()
            .any(|name| name.eq_ignore_ascii_case(&wanted))
        {
            return Ok(());
        }
        Err(SimResponse::json(
            409,
            &json!({"error": {
                "code": "OperationNotAllowed",
                "target": "vmSize",
                "message": format!(
                    "Unable to resize the VM '{}' because the requested size {wanted} is not available in the current hardware cluster. The available sizes in this cluster are: {}. The requested size might be available in other clusters of this region. Read more on VM resizing strategy at https://aka.ms/azure-resizevm.",
                    name_of(vm_id),
                    available.join(",")
                ),
            }}),
        ))
    }

    fn delete(
        &mut self,
        request: &SimRequest,
        id: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let key = lower(id);
        let kind = kind_of(id);
        let Some(existing) = self.resources.get(&key).cloned() else {
            if kind != Kind::Group {
                self.require_group(&group_id_of(id).unwrap_or_default())?;
            }
            return Ok((SimResponse::empty(204), None));
        };
        self.require_unlocked(id)?;
        self.check_preconditions(request, Some(&existing))?;
        if kind == Kind::Disk
            && let Some(owner) = existing.body.get("managedBy").and_then(Value::as_str)
        {
            return Err(SimResponse::error(
                409,
                "OperationNotAllowed",
                format!(
                    "Disk {} is attached to VM {owner}; detach it before deleting it.",
                    name_of(id)
                ),
            ));
        }
        if matches!(kind, Kind::DnsZone | Kind::RecordSet) {
            self.remove_resource(id);
            return Ok((SimResponse::empty(200), None));
        }
        if let Some(stored) = self.resources.get_mut(&key) {
            properties_mut(&mut stored.body)
                .insert("provisioningState".to_owned(), json!("Deleting"));
        }
        let duration = self.settings.durations.delete;
        let (operation_id, scaled) = self.begin_operation(
            "DELETE",
            &request.path,
            duration,
            Completion::Deleted {
                id: existing.id.clone(),
            },
        );
        let (status_url, result_url) = self.operation_urls(&subscription_of(id), &operation_id);
        let mut response = SimResponse::empty(202)
            .with_header("Location", result_url)
            .with_header("Retry-After", self.retry_after_seconds(scaled));
        if kind != Kind::Group {
            response = response.with_header("Azure-AsyncOperation", status_url);
        }
        Ok((response, Some((operation_id, scaled))))
    }

    fn remove_resource(&mut self, id: &str) {
        let key = lower(id);
        let prefix = format!("{key}/");
        let doomed: Vec<String> = self
            .resources
            .keys()
            .filter(|candidate| **candidate == key || candidate.starts_with(&prefix))
            .cloned()
            .collect();
        for doomed_key in doomed {
            let Some(stored) = self.resources.remove(&doomed_key) else {
                continue;
            };
            match kind_of(&stored.id) {
                Kind::VirtualMachine => {
                    // A deleted VM releases its disks; they stay, as on Azure.
                    for disk in self.resources.values_mut() {
                        if disk
                            .body
                            .get("managedBy")
                            .and_then(Value::as_str)
                            .is_some_and(|owner| owner.eq_ignore_ascii_case(&stored.id))
                            && let Some(object) = disk.body.as_object_mut()
                        {
                            object.remove("managedBy");
                            properties_mut(&mut disk.body)
                                .insert("diskState".to_owned(), json!("Unattached"));
                        }
                    }
                    let _ = std::fs::remove_dir_all(self.attachment_directory(&stored.id));
                    self.power_states.remove(&doomed_key);
                }
                Kind::ManagedCluster => {
                    if let Some(server) = self.readyz.remove(&doomed_key) {
                        server.stop();
                    }
                }
                Kind::Disk => {
                    if let Some(unique) = stored
                        .body
                        .pointer("/properties/uniqueId")
                        .and_then(Value::as_str)
                    {
                        let _ = std::fs::remove_file(
                            self.settings
                                .data_directory
                                .join("disks")
                                .join(format!("{unique}.img")),
                        );
                    }
                }
                _ => {}
            }
        }
    }

    fn action(
        &mut self,
        request: &SimRequest,
        resource_id: &str,
        action: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let key = lower(resource_id);
        let stored = self
            .resources
            .get(&key)
            .cloned()
            .ok_or_else(|| Self::not_found(resource_id))?;
        let kind = kind_of(resource_id);
        match (request.method.as_str(), kind, action) {
            ("GET", Kind::VirtualMachine, "instanceview") => Ok((
                SimResponse::json(200, &self.instance_view(resource_id)),
                None,
            )),
            ("GET", Kind::VirtualMachine, "vmsizes") => {
                let sizes: Vec<Value> = self
                    .sizes_available(&stored.id, &stored.body)
                    .into_iter()
                    .map(VmSize::listed)
                    .collect();
                Ok((SimResponse::json(200, &json!({"value": sizes})), None))
            }
            ("POST", Kind::VirtualMachine, "deallocate" | "poweroff" | "start" | "restart") => {
                self.require_unlocked(resource_id)?;
                let running = matches!(action, "start" | "restart");
                let transitional = if running {
                    "starting"
                } else if action == "poweroff" {
                    "stopping"
                } else {
                    "deallocating"
                };
                self.power_states
                    .insert(key.clone(), transitional.to_owned());
                let duration = if running {
                    self.settings.durations.vm_start
                } else {
                    self.settings.durations.vm_deallocate
                };
                let (operation_id, scaled) = self.begin_operation(
                    "POST",
                    &request.path,
                    duration,
                    Completion::Power {
                        vm_id: stored.id.clone(),
                        running,
                    },
                );
                let (status_url, result_url) =
                    self.operation_urls(&subscription_of(resource_id), &operation_id);
                let response = SimResponse::empty(202)
                    .with_header("Azure-AsyncOperation", status_url)
                    .with_header("Location", result_url)
                    .with_header("Retry-After", self.retry_after_seconds(scaled));
                Ok((response, Some((operation_id, scaled))))
            }
            ("POST", Kind::VirtualMachine, "attachdetachdatadisks") => {
                self.require_unlocked(resource_id)?;
                let body = Self::parse_body(request)?;
                let mut vm = stored.body.clone();
                let mut disks: Vec<Value> = vm
                    .pointer("/properties/storageProfile/dataDisks")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for detach in body
                    .get("dataDisksToDetach")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let disk_id = detach
                        .get("diskId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    for disk in &mut disks {
                        if disk
                            .pointer("/managedDisk/id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| id.eq_ignore_ascii_case(disk_id))
                        {
                            disk["toBeDetached"] = json!(true);
                            if let Some(option) = detach.get("detachOption") {
                                disk["detachOption"] = option.clone();
                            }
                        }
                    }
                }
                for attach in body
                    .get("dataDisksToAttach")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let disk_id = attach
                        .get("diskId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let used: Vec<i64> = disks
                        .iter()
                        .filter_map(|disk| disk.get("lun").and_then(Value::as_i64))
                        .collect();
                    let lun = attach
                        .get("lun")
                        .and_then(Value::as_i64)
                        .unwrap_or_else(|| (0..).find(|lun| !used.contains(lun)).unwrap_or(0));
                    let mut disk = json!({"lun": lun, "createOption": "Attach", "managedDisk": {"id": disk_id}});
                    for field in ["caching", "deleteOption", "writeAcceleratorEnabled"] {
                        if let Some(value) = attach.get(field) {
                            disk[field] = value.clone();
                        }
                    }
                    disks.push(disk);
                }
                if !vm
                    .pointer("/properties/storageProfile")
                    .is_some_and(Value::is_object)
                {
                    properties_mut(&mut vm).insert("storageProfile".to_owned(), json!({}));
                }
                vm["properties"]["storageProfile"]["dataDisks"] = Value::Array(disks);
                let (response, operation) =
                    self.write_body(request, resource_id, vm, Some(stored.clone()), false)?;
                let (operation_id, scaled) = match operation {
                    Some(operation) => operation,
                    None => return Ok((response, None)),
                };
                let (status_url, result_url) =
                    self.operation_urls(&subscription_of(resource_id), &operation_id);
                let response = SimResponse::empty(202)
                    .with_header("Azure-AsyncOperation", status_url)
                    .with_header("Location", result_url)
                    .with_header("Retry-After", self.retry_after_seconds(scaled));
                Ok((response, Some((operation_id, scaled))))
            }
            (
                "POST",
                Kind::ManagedCluster,
                "listclusterusercredential" | "listclusteradmincredential",
            ) => {
                let fqdn = stored
                    .body
                    .pointer("/properties/fqdn")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let name = name_of(resource_id);
                let kubeconfig = format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: https://{fqdn}\n    certificate-authority-data: {}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: clusterUser_{name}\ncurrent-context: {name}\nusers:\n- name: clusterUser_{name}\n  user:\n    token: ferry-sim-kubernetes-token\n",
                    base64(self.authority.pem().as_bytes())
                );
                Ok((
                    SimResponse::json(
                        200,
                        &json!({"kubeconfigs": [{"name": "clusterUser", "value": base64(kubeconfig.as_bytes())}]}),
                    ),
                    None,
                ))
            }
            _ => Err(SimResponse::error(
                404,
                "InvalidResourceType",
                format!(
                    "the simulator has no {} {action} on {}",
                    request.method,
                    type_of(resource_id)
                ),
            )),
        }
    }

    fn move_resources(
        &mut self,
        request: &SimRequest,
        source_group: &str,
        validate_only: bool,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        self.require_group(source_group)?;
        let body = Self::parse_body(request)?;
        let Some(target) = body
            .get("targetResourceGroup")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            return Err(SimResponse::error(
                400,
                "InvalidRequestContent",
                "targetResourceGroup is required.",
            ));
        };
        let ids: Vec<String> = body
            .get("resources")
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if ids.is_empty() {
            return Err(SimResponse::error(
                400,
                "InvalidRequestContent",
                "resources must list at least one resource id.",
            ));
        }
        self.require_group(&target).map_err(|_| {
            SimResponse::error(
                404,
                "ResourceGroupNotFound",
                format!(
                    "Target resource group '{}' could not be found.",
                    name_of(&target)
                ),
            )
        })?;
        if lower(&target) == lower(source_group) {
            return Err(SimResponse::error(
                400,
                "InvalidTargetResourceGroup",
                "The target resource group is the source group.",
            ));
        }
        self.require_unlocked(&format!("{source_group}/x"))?;
        self.require_unlocked(&format!("{target}/x"))?;
        let moving: Vec<String> = ids.iter().map(|id| lower(id)).collect();
        let mut resolved = Vec::new();
        for id in &ids {
            if !group_id_of(id).is_some_and(|group| group.eq_ignore_ascii_case(source_group)) {
                return Err(SimResponse::error(
                    400,
                    "InvalidResourceMoveRequest",
                    format!(
                        "Resource {id} is not in the source group {}.",
                        name_of(source_group)
                    ),
                ));
            }
            let stored = self.resources.get(&lower(id)).ok_or_else(|| {
                SimResponse::error(
                    404,
                    "ResourceNotFound",
                    format!("The resource {id} to move was not found."),
                )
            })?;
            match kind_of(id) {
                Kind::ManagedCluster => {
                    return Err(SimResponse::error(
                        400,
                        "ResourceMoveNotSupported",
                        format!(
                            "Resource type Microsoft.ContainerService/managedClusters ({}) cannot be moved; create a new cluster instead.",
                            name_of(id)
                        ),
                    ));
                }
                Kind::Disk => {
                    if let Some(owner) = stored.body.get("managedBy").and_then(Value::as_str)
                        && !moving.contains(&lower(owner))
                    {
                        return Err(SimResponse::error(
                            409,
                            "ResourceMoveFailed",
                            format!(
                                "Disk {} is attached to VM {owner}, which is not moved with it; detach it first.",
                                name_of(id)
                            ),
                        ));
                    }
                }
                _ => {}
            }
            resolved.push(stored.id.clone());
        }
        let completion = if validate_only {
            Completion::Nothing
        } else {
            Completion::Move {
                source_group: source_group.to_owned(),
                target_group: target.clone(),
                ids: resolved,
            }
        };
        let duration = if validate_only {
            Duration::ZERO
        } else {
            self.settings.durations.move_resources
        };
        let (operation_id, scaled) =
            self.begin_operation("POST", &request.path, duration, completion);
        if !validate_only {
            self.locked_groups
                .insert(lower(source_group), operation_id.clone());
            self.locked_groups
                .insert(lower(&target), operation_id.clone());
        }
        if let Some(record) = self.operations.get_mut(&operation_id) {
            record.failure_status = 409;
        }
        let (_, result_url) = self.operation_urls(&subscription_of(source_group), &operation_id);
        let response = SimResponse::empty(202)
            .with_header("Location", result_url)
            .with_header("Retry-After", self.retry_after_seconds(scaled));
        Ok((response, Some((operation_id, scaled))))
    }

    fn apply_move(&mut self, target_group: &str, ids: &[String]) {
        let target_name = name_of(target_group);
        let mut renames: Vec<(String, String)> = Vec::new();
        for id in ids {
            let segments: Vec<&str> = id.trim_matches('/').split('/').collect();
            let mut moved: Vec<String> = segments
                .iter()
                .map(|segment| (*segment).to_owned())
                .collect();
            if moved.len() > 3 {
                moved[3] = target_name.clone();
            }
            renames.push((id.clone(), format!("/{}", moved.join("/"))));
        }
        // Move each resource and its children, then rewrite every reference to them.
        for (old, new) in &renames {
            let old_key = lower(old);
            let prefix = format!("{old_key}/");
            let keys: Vec<String> = self
                .resources
                .keys()
                .filter(|key| **key == old_key || key.starts_with(&prefix))
                .cloned()
                .collect();
            for key in keys {
                if let Some(mut stored) = self.resources.remove(&key) {
                    stored.id = format!("{new}{}", &stored.id[old.len()..]);
                    self.resources.insert(lower(&stored.id), stored);
                }
            }
            for table in [&mut self.power_states] {
                if let Some(value) = table.remove(&old_key) {
                    table.insert(lower(new), value);
                }
            }
            if let Some(server) = self.readyz.remove(&old_key) {
                self.readyz.insert(lower(new), server);
            }
        }
        for stored in self.resources.values_mut() {
            rewrite_references(&mut stored.body, &renames);
        }
        let vms: Vec<String> = self
            .resources
            .values()
            .filter(|stored| kind_of(&stored.id) == Kind::VirtualMachine)
            .map(|stored| stored.id.clone())
            .collect();
        for vm in vms {
            self.refresh_vm_disks(&vm);
        }
    }

    fn list(&self, request: &SimRequest, collection: &str) -> Result<SimResponse, Refusal> {
        let prefix = format!("{}/", lower(collection));
        let items: Vec<Value> = self
            .resources
            .iter()
            .filter(|(key, _)| key.starts_with(&prefix) && !key[prefix.len()..].contains('/'))
            .map(|(_, stored)| stored.body.clone())
            .collect();
        Ok(self.page(request, items))
    }

    fn list_children(
        &self,
        request: &SimRequest,
        zone: &str,
        record_type: Option<&str>,
    ) -> Result<SimResponse, Refusal> {
        let prefix = format!("{}/", lower(zone));
        let items: Vec<Value> = self
            .resources
            .iter()
            .filter(|(key, _)| {
                let Some(rest) = key.strip_prefix(&prefix) else {
                    return false;
                };
                let parts: Vec<&str> = rest.split('/').collect();
                parts.len() == 2
                    && record_type.is_none_or(|wanted| parts[0].eq_ignore_ascii_case(wanted))
            })
            .map(|(_, stored)| stored.body.clone())
            .collect();
        Ok(self.page(request, items))
    }

    /// One page of a list, with `nextLink` carrying `$skiptoken` when more remain.
    fn page(&self, request: &SimRequest, items: Vec<Value>) -> SimResponse {
        let start: usize = request
            .query_value("$skiptoken")
            .and_then(|token| token.parse().ok())
            .unwrap_or(0);
        let size = self.settings.page_size.max(1);
        let page: Vec<Value> = items.iter().skip(start).take(size).cloned().collect();
        let mut body = json!({"value": page});
        if start + size < items.len() {
            let api_version = request.query_value("api-version").unwrap_or_default();
            body["nextLink"] = json!(format!(
                "{}{}?api-version={api_version}&$skiptoken={}",
                self.settings.endpoint,
                request.path,
                start + size
            ));
        }
        SimResponse::json(200, &body)
    }

    // ---- seeding and dumps --------------------------------------------------------------

    /// Puts a resource in place at once (scenario files and tests), creating its group if needed.
    pub fn seed(&mut self, id: &str, body: Value) -> Result<(), String> {
        if kind_of(id) != Kind::Group
            && let Some(group) = group_id_of(id)
            && !self.resources.contains_key(&lower(&group))
        {
            let location = body.get("location").cloned().unwrap_or(json!("local"));
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
            "powerStates": self.power_states,
            "apiServers": self.readyz.iter().map(|(id, server)| json!({"cluster": id, "address": server.address().to_string(), "up": server.is_up()})).collect::<Vec<_>>(),
        })
    }

    /// The address of a cluster's API server (`/readyz`), by cluster name or id.
    pub fn api_server_address(&self, cluster: &str) -> Option<std::net::SocketAddr> {
        self.readyz
            .iter()
            .find(|(id, _)| {
                id.eq_ignore_ascii_case(cluster) || name_of(id).eq_ignore_ascii_case(cluster)
            })
            .map(|(_, server)| server.address())
    }

    pub fn shutdown(&mut self) {
        for (_, server) in self.readyz.drain() {
            server.stop();
        }
    }
}

fn rewrite_references(value: &mut Value, renames: &[(String, String)]) {
    match value {
        Value::String(text) => {
            for (old, new) in renames {
                if text.len() >= old.len()
                    && text[..old.len()].eq_ignore_ascii_case(old)
                    && (text.len() == old.len() || text.as_bytes()[old.len()] == b'/')
                {
                    *text = format!("{new}{}", &text[old.len()..]);
                    break;
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| rewrite_references(item, renames)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| rewrite_references(item, renames)),
        _ => {}
    }
}

fn subscription_of(id: &str) -> String {
    id.trim_matches('/')
        .split('/')
        .nth(1)
        .unwrap_or_default()
        .to_owned()
}

fn group_name(id: &str) -> String {
    id.trim_matches('/')
        .split('/')
        .nth(3)
        .unwrap_or_default()
        .to_owned()
}

fn type_and_name(id: &str) -> String {
    format!("{}/{}", type_of(id), name_of(id))
}

/// A VM size as `vmSizes` lists it, with Azure's published figures.
#[derive(Debug)]
struct VmSize {
    name: &'static str,
    cores: u32,
    memory_mib: u32,
    /// The local temporary disk; 0 for the sizes that have none (the v5 Intel and AMD ones).
    resource_disk_mib: u32,
    max_data_disks: u32,
}

impl VmSize {
    const fn new(
        name: &'static str,
        cores: u32,
        memory_mib: u32,
        resource_disk_mib: u32,
        max_data_disks: u32,
    ) -> Self {
        VmSize {
            name,
            cores,
            memory_mib,
            resource_disk_mib,
            max_data_disks,
        }
    }

    /// One entry of ARM's `vmSizes` answer.
    fn listed(&self) -> Value {
        json!({
            "name": self.name,
            "numberOfCores": self.cores,
            "osDiskSizeInMB": 1_047_552,
            "resourceDiskSizeInMB": self.resource_disk_mib,
            "memoryInMB": self.memory_mib,
            "maxDataDiskCount": self.max_data_disks,
        })
    }
}

/// The sizes the simulator knows: those ferry's `vm` kind accepts.
const VM_SIZES: &[VmSize] = &[
    VmSize::new("Standard_B2s", 2, 4096, 8192, 4),
    VmSize::new("Standard_B2ms", 2, 8192, 16384, 4),
    VmSize::new("Standard_B4ms", 4, 16384, 32768, 8),
    VmSize::new("Standard_D2s_v5", 2, 8192, 0, 4),
    VmSize::new("Standard_D4s_v5", 4, 16384, 0, 8),
    VmSize::new("Standard_D8s_v5", 8, 32768, 0, 16),
    VmSize::new("Standard_D16s_v5", 16, 65536, 0, 32),
    VmSize::new("Standard_D2as_v5", 2, 8192, 0, 4),
    VmSize::new("Standard_D4as_v5", 4, 16384, 0, 8),
    VmSize::new("Standard_D8as_v5", 8, 32768, 0, 16),
    VmSize::new("Standard_E4s_v5", 4, 32768, 0, 8),
    VmSize::new("Standard_E8s_v5", 8, 65536, 0, 16),
    VmSize::new("Standard_E16s_v5", 16, 131072, 0, 32),
    VmSize::new("Standard_F4s_v2", 4, 8192, 32768, 8),
    VmSize::new("Standard_F8s_v2", 8, 16384, 65536, 16),
];

/// A size's series, the simulator's model of what one hardware cluster hosts: the family
/// letters, the processor (Intel unless the additive letters hold `a`, AMD, or `p`, Arm) and
/// the version. `Standard_D4s_v5` and `Standard_D16s_v5` share the series `d/intel/v5`;
/// `Standard_D4as_v5` (AMD) and `Standard_E8s_v5` (another family) do not, nor does
/// `Standard_D4s_v4` (another generation). The B-series sizes have no version and share one.
///
/// Why this rule: in Azure a cluster is built from one hardware generation, and a family's
/// sizes of one version differ in their share of the same machines, so they can be swapped in
/// place; another processor or generation is other hardware, reached only by deallocating.
/// Azure's real answer depends on the cluster (Dsv5 and Esv5 often share one), so the
/// simulator's is narrower than Azure's often is: a conservative model that makes both paths
/// of a resize reachable with sizes ferry accepts.
fn size_series(size: &str) -> String {
    let lowered = lower(size);
    let without_tier = lowered
        .strip_prefix("standard_")
        .or_else(|| lowered.strip_prefix("basic_"))
        .unwrap_or(&lowered);
    let (base, version) = without_tier.split_once('_').unwrap_or((without_tier, ""));
    let family: String = base.chars().take_while(char::is_ascii_alphabetic).collect();
    let additive: String = base[family.len()..]
        .trim_start_matches(|c: char| c.is_ascii_digit() || c == '-')
        .to_owned();
    let processor = if additive.contains('a') {
        "amd"
    } else if additive.contains('p') {
        "arm"
    } else {
        "intel"
    };
    format!("{family}/{processor}/{version}")
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Group => "group",
        Kind::VirtualNetwork | Kind::Subnet | Kind::PublicIp | Kind::NetworkInterface => "network",
        Kind::VirtualMachine => "vm",
        Kind::Disk => "disk",
        Kind::ManagedCluster => "aks",
        Kind::DnsZone | Kind::RecordSet => "dns",
        Kind::Other => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_family_processor_and_version() {
        for (size, series) in [
            ("Standard_D4s_v5", "d/intel/v5"),
            ("standard_d16S_V5", "d/intel/v5"),
            ("Standard_D4as_v5", "d/amd/v5"),
            ("Standard_D4ps_v5", "d/arm/v5"),
            ("Standard_E8s_v5", "e/intel/v5"),
            ("Standard_D2s_v3", "d/intel/v3"),
            ("Standard_B2s", "b/intel/"),
            ("Standard_B4ms", "b/intel/"),
            ("Standard_M8-2ms", "m/intel/"),
            ("Standard_F8s_v2", "f/intel/v2"),
            ("", "/intel/"),
        ] {
            assert_eq!(size_series(size), series, "{size}");
        }
    }
}
