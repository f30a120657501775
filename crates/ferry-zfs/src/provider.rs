//! The `zfs_pool` provider: reads, imports, exports and creates pools on the NFS host over SSH.
//!
//! Every command is built here from values checked against ZFS's naming rules and quoted
//! argument by argument; see [`crate::shell`]. The device folder and the host's address come
//! from the host VM's outputs (`device_folder`, `public_address` or else `private_ip`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{
    Action, ApplyContext, Attributes, Health, InstanceAddress, Kind, Observation, Provider,
    ReadContext, ResourceAddress, ResourceSpec, Step, StepError, StepOutcome, Value,
};
use serde_json::json;

use crate::check_zfs_name;
use crate::parse::{self, DatasetRow, ImportablePool, ParseError, PoolStatus};
use crate::shell::{command_line, quote};
use crate::ssh::{CommandOutput, HostKeys, SshConnection, SshError, SshTarget, SshTimeouts};

/// Where Azure Linux VMs show attached data disks, one `lunN` link per disk.
pub const AZURE_DEVICE_FOLDER: &str = "/dev/disk/azure/scsi1";

/// The provider's settings; the pools' own settings come from the spec.
#[derive(Debug, Clone)]
pub struct ZfsProviderConfig {
    pub timeouts: SshTimeouts,
    /// Connect to this address instead of the host VM's (a tunnel, or a test's loopback sshd).
    pub address_override: Option<String>,
    /// The SSH user when the spec sets no `ssh_user` and the VM reports no `admin_username`.
    pub default_user: String,
    /// The known_hosts file when the spec sets neither `known_hosts` nor `host_key`.
    pub default_known_hosts: PathBuf,
}

impl Default for ZfsProviderConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
        Self {
            timeouts: SshTimeouts::default(),
            address_override: None,
            default_user: "azureuser".to_owned(),
            default_known_hosts: home.join(".ssh/known_hosts"),
        }
    }
}

/// Why a zfs_pool read or step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZfsError {
    #[error("{0}")]
    Ssh(#[from] SshError),
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{pool}: {message}")]
    Setting { pool: String, message: String },
    #[error(
        "{pool}: the host {host} has no recorded address yet: create it first, or check ferry's state"
    )]
    HostNotKnown { pool: String, host: String },
    #[error("{pool}: `{command}` failed on {host}: {stderr}")]
    Command {
        pool: String,
        host: String,
        command: String,
        stderr: String,
    },
    #[error(
        "{pool}: refused to import on {host}: the pool is imported by another host ({detail}); fence that host, then import with force"
    )]
    ImportedElsewhere {
        pool: String,
        host: String,
        detail: String,
    },
    #[error(
        "{pool}: refused to import on {host} although the plan fenced the other hosts: the pool is still imported by another host ({detail}); make sure the fence took effect (the old VM deallocated), then apply again"
    )]
    StillImportedAfterFence {
        pool: String,
        host: String,
        detail: String,
    },
    #[error(
        "{pool}: cannot import on {host}: {}; attach the missing disks to the host, then apply again",
        missing.join(", ")
    )]
    MissingDisks {
        pool: String,
        host: String,
        missing: Vec<String>,
    },
    #[error(
        "{pool}: imported on {host} but {state}, not ONLINE: {}; replace or reattach those disks with zpool, then plan again",
        problems.join(", ")
    )]
    NotOnline {
        pool: String,
        host: String,
        state: String,
        problems: Vec<String>,
    },
    #[error(
        "{pool}: no pool of that name is imported on {host} or found in {folder}; check pool_name and that its disks are attached"
    )]
    NotFound {
        pool: String,
        host: String,
        folder: String,
    },
    #[error(
        "{pool}: the pool already exists on the disks in {folder} but is not imported: plan again to import it instead of creating it"
    )]
    ExistsNotImported { pool: String, folder: String },
    #[error("{pool}: zfs_pool has no `{action}` step")]
    Unsupported { pool: String, action: Action },
}

impl ZfsError {
    fn into_step_error(self) -> StepError {
        let transient = matches!(&self, ZfsError::Ssh(error) if error.is_transient());
        if transient {
            StepError::transient(self.to_string(), None)
        } else {
            StepError::permanent(self.to_string())
        }
    }
}

/// A pool's settings: the spec's fields, with a step's inputs laid over them.
#[derive(Debug, Clone)]
struct PoolSettings {
    name: String,
    layout: String,
    disks: Vec<InstanceAddress>,
    /// Relative dataset name to its managed properties.
    datasets: BTreeMap<String, BTreeMap<String, String>>,
    ssh_user: Option<String>,
    ssh_port: u16,
    ssh_key_file: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    host_key: Option<String>,
}

const DATASET_PROPERTIES: &[&str] = &["mountpoint", "sharenfs", "quota", "compression"];

fn settings(address: &ResourceAddress, fields: &Attributes) -> Result<PoolSettings, ZfsError> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let name = text("pool_name").unwrap_or_else(|| address.name.clone());
    let setting = |message: String| ZfsError::Setting {
        pool: address.to_string(),
        message,
    };
    check_zfs_name(&name, "pool")
        .map_err(|message| setting(format!("{message}; fix pool_name")))?;
    let mut datasets = BTreeMap::new();
    if let Some(table) = fields.get("datasets").and_then(Value::as_object) {
        for (relative, properties) in table {
            check_zfs_name(&format!("{name}/{relative}"), "dataset")
                .map_err(|message| setting(format!("{message}; fix datasets.{relative}")))?;
            let mut managed = BTreeMap::new();
            for (key, value) in properties.as_object().into_iter().flatten() {
                if !DATASET_PROPERTIES.contains(&key.as_str()) {
                    return Err(setting(format!(
                        "datasets.{relative}.{key} is not a property ferry manages: use mountpoint, sharenfs, quota or compression"
                    )));
                }
                let value = match value {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                };
                if value.is_empty() || value.chars().any(char::is_control) {
                    return Err(setting(format!(
                        "datasets.{relative}.{key} must be a non-empty value on one line"
                    )));
                }
                managed.insert(key.clone(), value);
            }
            datasets.insert(relative.clone(), managed);
        }
    }
    let disks = fields
        .get("disks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|text| {
            text.parse::<InstanceAddress>()
                .map_err(|_| setting(format!("`{text}` in disks is not a disk address")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let ssh_port = match fields.get("ssh_port") {
        None => 22,
        Some(value) => value
            .as_u64()
            .and_then(|port| u16::try_from(port).ok())
            .filter(|port| *port > 0)
            .ok_or_else(|| setting("ssh_port must be a port number, 1 to 65535".to_owned()))?,
    };
    Ok(PoolSettings {
        name,
        layout: text("layout").unwrap_or_else(|| "stripe".to_owned()),
        disks,
        datasets,
        ssh_user: text("ssh_user"),
        ssh_port,
        ssh_key_file: text("ssh_key_file").map(PathBuf::from),
        known_hosts: text("known_hosts").map(PathBuf::from),
        host_key: text("host_key"),
    })
}

/// What one host's ZFS says about a pool.
#[derive(Debug, Clone)]
enum PoolState {
    /// Imported here, with its datasets.
    Imported {
        status: PoolStatus,
        datasets: Vec<DatasetRow>,
    },
    /// The ZFS instance knows the pool as imported, but none of its devices is on this host:
    /// another host that shares this ZFS (a test's two device folders) holds it.
    ImportedElsewhere {
        devices: Vec<String>,
    },
    /// Not imported, and `zpool import -d FOLDER` lists it.
    Importable(ImportablePool),
    NotFound,
}

/// How long a host the plan fenced is given to accept an SSH connection before it counts as
/// fenced.
const FENCED_HOST_CONNECT: Duration = Duration::from_secs(5);

/// The host a read or step works on, from its VM's outputs.
#[derive(Debug, Clone)]
struct Host {
    instance: InstanceAddress,
    device_folder: String,
    nfs_address: String,
    connection: Arc<SshConnection>,
}

/// The `zfs_pool` provider.
pub struct ZfsPoolProvider {
    config: ZfsProviderConfig,
    /// Each pool's spec fields, for the steps whose inputs carry only what the plan changes
    /// (an import carries `host` and `force`, not the SSH settings).
    pools: BTreeMap<ResourceAddress, Attributes>,
    connections: Mutex<HashMap<SshTarget, Arc<SshConnection>>>,
}

impl std::fmt::Debug for ZfsPoolProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZfsPoolProvider")
            .field("config", &self.config)
            .field("pools", &self.pools.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ZfsPoolProvider {
    /// A provider for the `zfs_pool` resources among `resources` (others are ignored).
    pub fn new<'a>(
        config: ZfsProviderConfig,
        resources: impl IntoIterator<Item = &'a ResourceSpec>,
    ) -> Self {
        let pools = resources
            .into_iter()
            .filter(|resource| resource.address.kind == Kind::ZfsPool)
            .map(|resource| (resource.address.clone(), resource.fields.clone()))
            .collect();
        Self {
            config,
            pools,
            connections: Mutex::new(HashMap::new()),
        }
    }

    fn merged_settings(
        &self,
        address: &ResourceAddress,
        over: &Attributes,
    ) -> Result<PoolSettings, ZfsError> {
        let mut fields = self.pools.get(address).cloned().unwrap_or_default();
        fields.extend(over.iter().map(|(key, value)| (key.clone(), value.clone())));
        settings(address, &fields)
    }

    fn host(
        &self,
        pool: &ResourceAddress,
        settings: &PoolSettings,
        host: &InstanceAddress,
        outputs: Option<Attributes>,
    ) -> Result<Host, ZfsError> {
        let Some(outputs) = outputs else {
            return Err(ZfsError::HostNotKnown {
                pool: pool.to_string(),
                host: host.to_string(),
            });
        };
        let text = |name: &str| {
            outputs
                .get(name)
                .and_then(Value::as_str)
                .filter(|text| !text.is_empty())
                .map(str::to_owned)
        };
        let address = self
            .config
            .address_override
            .clone()
            .or_else(|| text("public_address"))
            .or_else(|| text("private_ip"))
            .ok_or_else(|| ZfsError::HostNotKnown {
                pool: pool.to_string(),
                host: host.to_string(),
            })?;
        let device_folder = text("device_folder").unwrap_or_else(|| AZURE_DEVICE_FOLDER.to_owned());
        if !device_folder.starts_with('/') || device_folder.chars().any(char::is_control) {
            return Err(ZfsError::Setting {
                pool: pool.to_string(),
                message: format!(
                    "the device folder `{device_folder}` of {host} is not an absolute path"
                ),
            });
        }
        let target = SshTarget {
            address: address.clone(),
            port: settings.ssh_port,
            user: settings
                .ssh_user
                .clone()
                .or_else(|| text("admin_username"))
                .unwrap_or_else(|| self.config.default_user.clone()),
            key_file: settings.ssh_key_file.clone(),
            host_keys: match (&settings.host_key, &settings.known_hosts) {
                (Some(key), _) => HostKeys::Pinned(key.clone()),
                (None, Some(path)) => HostKeys::KnownHostsFile(path.clone()),
                (None, None) => HostKeys::KnownHostsFile(self.config.default_known_hosts.clone()),
            },
        };
        let connection = self
            .connections
            .lock()
            .expect("the connection map is never left poisoned")
            .entry(target.clone())
            .or_insert_with(|| Arc::new(SshConnection::new(target, self.config.timeouts)))
            .clone();
        Ok(Host {
            instance: host.clone(),
            device_folder,
            nfs_address: text("private_ip").unwrap_or(address),
            connection,
        })
    }
}

/// Runs a read-only command and fails on a non-zero exit.
async fn query(host: &Host, pool: &str, arguments: &[&str]) -> Result<CommandOutput, ZfsError> {
    let command = command_line(arguments.iter().copied());
    let output = host.connection.run_read_only(&command).await?;
    if !output.success() {
        return Err(command_failed(host, pool, &command, &output));
    }
    Ok(output)
}

fn command_failed(host: &Host, pool: &str, command: &str, output: &CommandOutput) -> ZfsError {
    ZfsError::Command {
        pool: pool.to_owned(),
        host: host.instance.to_string(),
        command: command.to_owned(),
        stderr: first_line(&output.stderr),
    }
}

fn first_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("(no message)")
        .to_owned()
}

/// Which of `paths` exist on the host.
async fn existing_paths(host: &Host, paths: &[String]) -> Result<Vec<String>, ZfsError> {
    if paths.is_empty() {
        return Ok(Vec::new());
    }
    let quoted: Vec<String> = paths.iter().map(|path| quote(path)).collect();
    let command = format!(
        "for p in {}; do if [ -e \"$p\" ]; then echo \"$p\"; fi; done",
        quoted.join(" ")
    );
    let output = host.connection.run_read_only(&command).await?;
    Ok(output.stdout.lines().map(str::to_owned).collect())
}

async fn pool_state(host: &Host, pool: &str) -> Result<PoolState, ZfsError> {
    let list = query(host, pool, &["zpool", "list", "-H", "-o", "name,health"]).await?;
    let pools = parse::parse_pool_list("zpool list -H -o name,health", &list.stdout)?;
    if pools.iter().any(|entry| entry.name == pool) {
        let command = format!("zpool status {}", quote(pool));
        let status = query(host, pool, &["zpool", "status", pool]).await?;
        let status = parse::parse_status(&command, &status.stdout)?;
        let devices: Vec<String> = status
            .devices()
            .map(|row| row.path().to_owned())
            .filter(|path| path.starts_with('/'))
            .collect();
        if !devices.is_empty() && existing_paths(host, &devices).await?.is_empty() {
            return Ok(PoolState::ImportedElsewhere { devices });
        }
        let listed = query(
            host,
            pool,
            &[
                "zfs",
                "list",
                "-H",
                "-o",
                parse::DATASET_COLUMNS,
                "-r",
                pool,
            ],
        )
        .await?;
        let datasets = parse::parse_dataset_list(
            &format!(
                "zfs list -H -o {} -r {}",
                parse::DATASET_COLUMNS,
                quote(pool)
            ),
            &listed.stdout,
        )?;
        return Ok(PoolState::Imported { status, datasets });
    }
    let command = command_line(["zpool", "import", "-d", &host.device_folder]);
    let output = host.connection.run_read_only(&command).await?;
    // With nothing to list, zpool exits 1 and prints nothing (or "no pools available").
    let nothing_listed = output.stdout.trim().is_empty()
        && (output.stderr.trim().is_empty() || output.stderr.contains("no pools available"));
    if !output.success() && !nothing_listed {
        return Err(command_failed(host, pool, &command, &output));
    }
    let importable = parse::parse_import_listing(&command, &output.stdout)?;
    Ok(importable
        .into_iter()
        .find(|candidate| candidate.name == pool)
        .map_or(PoolState::NotFound, PoolState::Importable))
}

/// The device path each disk of the pool should have on the host: `FOLDER/lunN`, with N the
/// disk's recorded `lun`, or its position in `disks` when none is recorded.
fn expected_devices(
    settings: &PoolSettings,
    folder: &str,
    outputs: &dyn Fn(&InstanceAddress) -> Option<Attributes>,
) -> Vec<(InstanceAddress, String)> {
    settings
        .disks
        .iter()
        .enumerate()
        .map(|(position, disk)| {
            let lun = outputs(disk)
                .and_then(|attributes| attributes.get("lun").and_then(Value::as_u64))
                .unwrap_or(position as u64);
            (
                disk.clone(),
                format!("{}/lun{lun}", folder.trim_end_matches('/')),
            )
        })
        .collect()
}

fn pool_mountpoint(pool: &str, datasets: &[DatasetRow]) -> String {
    datasets
        .iter()
        .find(|row| row.name == pool)
        .map_or_else(|| format!("/{pool}"), |row| row.mountpoint.clone())
}

/// The pool's observed attributes, named like the spec's fields, plus its outputs.
fn imported_attributes(
    settings: &PoolSettings,
    host: &Host,
    status: &PoolStatus,
    datasets: &[DatasetRow],
    expected: &[(InstanceAddress, String)],
    has_pool_name: bool,
) -> Attributes {
    let mut attributes = Attributes::new();
    let pool = &settings.name;
    attributes.insert("host".into(), json!(host.instance.to_string()));
    attributes.insert("imported".into(), json!(true));
    attributes.insert("health".into(), json!(status.state));
    if has_pool_name {
        attributes.insert("pool_name".into(), json!(pool));
    }
    let vdevs: Vec<Value> = status
        .devices()
        .map(|row| json!({"path": row.path(), "state": row.state}))
        .collect();
    attributes.insert("vdevs".into(), Value::Array(vdevs));
    attributes.insert(
        "layout".into(),
        json!(crate::parse::layout_of(&status.vdevs)),
    );
    // A disk of the spec belongs to the pool when its device is one of the pool's vdevs.
    let paths: Vec<&str> = status.devices().map(|row| row.path()).collect();
    let disks: Vec<Value> = expected
        .iter()
        .filter(|(_, path)| paths.contains(&path.as_str()))
        .map(|(disk, _)| json!(disk.to_string()))
        .collect();
    // None named (the disks' expected paths are another host's luns, as while a failover is
    // resumed after the import) says nothing about which disks hold the pool: the reading
    // then lacks `disks` rather than claiming the pool has none.
    if !disks.is_empty() {
        attributes.insert("disks".into(), Value::Array(disks));
    }
    let mut observed_datasets = serde_json::Map::new();
    for (relative, managed) in &settings.datasets {
        let full = format!("{pool}/{relative}");
        let Some(row) = datasets.iter().find(|row| row.name == full) else {
            continue;
        };
        let mut properties = serde_json::Map::new();
        for key in managed.keys() {
            let value = match key.as_str() {
                "mountpoint" => Some(&row.mountpoint),
                "sharenfs" => Some(&row.sharenfs),
                "quota" => Some(&row.quota),
                // Not listed: it is set on every apply that names it.
                _ => managed.get(key),
            };
            if let Some(value) = value {
                properties.insert(key.clone(), json!(value));
            }
        }
        observed_datasets.insert(relative.clone(), Value::Object(properties));
    }
    if !settings.datasets.is_empty() {
        attributes.insert("datasets".into(), Value::Object(observed_datasets));
    }
    let mountpoint = pool_mountpoint(pool, datasets);
    // The folder that holds every shared dataset: with staging and prod under /export/home,
    // hooks get /export/home and add their release's folder.
    let shared: Vec<&str> = settings
        .datasets
        .keys()
        .filter_map(|relative| {
            let full = format!("{pool}/{relative}");
            datasets.iter().find(|row| row.name == full)
        })
        .filter(|row| row.sharenfs != "off")
        .map(|row| row.mountpoint.as_str())
        .collect();
    let export_path = common_parent(&shared).unwrap_or_else(|| mountpoint.clone());
    attributes.insert("mountpoint".into(), json!(mountpoint));
    attributes.insert(
        "nfs_export".into(),
        json!(format!("{}:{export_path}", host.nfs_address)),
    );
    attributes
}

/// The deepest folder that holds every one of `paths`: itself when there is one path, their
/// common parent otherwise; `None` when there are none or they share nothing but `/`.
fn common_parent(paths: &[&str]) -> Option<String> {
    let (first, rest) = paths.split_first()?;
    if rest.is_empty() {
        return Some((*first).to_owned());
    }
    let split = |path: &str| -> Vec<String> {
        path.split('/')
            .filter(|part| !part.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let mut common = split(first);
    for path in rest {
        let parts = split(path);
        let same = common
            .iter()
            .zip(&parts)
            .take_while(|(left, right)| left == right)
            .count();
        common.truncate(same);
    }
    (!common.is_empty()).then(|| format!("/{}", common.join("/")))
}

fn health_of(status: &PoolStatus) -> Health {
    if status.state == "ONLINE" {
        return Health::Healthy;
    }
    let problems: Vec<String> = status
        .devices()
        .filter(|row| row.state != "ONLINE")
        .map(|row| format!("{} {}", row.path(), row.state))
        .collect();
    Health::Unhealthy {
        reason: format!("the pool is {}: {}", status.state, problems.join(", ")),
    }
}

impl ZfsPoolProvider {
    async fn observe(&self, context: &ReadContext<'_>) -> Result<Observation, ZfsError> {
        let address = &context.instance.address;
        let settings = self.merged_settings(address, context.fields)?;
        let Some(host_instance) = context
            .fields
            .get("host")
            .and_then(Value::as_str)
            .and_then(|text| text.parse::<InstanceAddress>().ok())
        else {
            return Err(ZfsError::Setting {
                pool: address.to_string(),
                message: "host is not a VM address".to_owned(),
            });
        };
        let host_outputs = (context.outputs)(&host_instance);
        if host_outputs.is_none() {
            // ferry never built this host, so it never imported the pool there. The first
            // build then plans a create, and `zpool create` (never with -f) refuses disks that
            // already hold a pool, so no data is at risk from this reading.
            return Ok(Observation::Absent);
        }
        let host = self.host(address, &settings, &host_instance, host_outputs)?;
        let expected = expected_devices(&settings, &host.device_folder, context.outputs);
        match pool_state(&host, &settings.name).await? {
            PoolState::Imported { status, datasets } => Ok(Observation::Present {
                attributes: imported_attributes(
                    &settings,
                    &host,
                    &status,
                    &datasets,
                    &expected,
                    context.fields.contains_key("pool_name"),
                ),
                health: health_of(&status),
            }),
            PoolState::ImportedElsewhere { devices } => {
                let mut attributes = Attributes::new();
                attributes.insert("imported".into(), json!(false));
                attributes.insert("imported_elsewhere".into(), json!(true));
                attributes.insert("vdevs".into(), json!(devices));
                Ok(Observation::Present {
                    attributes,
                    health: Health::Unhealthy {
                        reason: format!("imported by another host, not by {}", host.instance),
                    },
                })
            }
            PoolState::Importable(found) => {
                let mut attributes = Attributes::new();
                attributes.insert("imported".into(), json!(false));
                attributes.insert("importable".into(), json!(found.can_import()));
                attributes.insert("needs_force".into(), json!(found.needs_force()));
                attributes.insert("health".into(), json!(found.state));
                let vdevs: Vec<Value> = found
                    .vdevs
                    .iter()
                    .filter(|row| !row.is_group())
                    .map(|row| json!({"path": row.path(), "state": row.state}))
                    .collect();
                attributes.insert("vdevs".into(), Value::Array(vdevs));
                attributes.insert(
                    "layout".into(),
                    json!(crate::parse::layout_of(&found.vdevs)),
                );
                let health = if found.can_import() {
                    Health::Healthy
                } else {
                    Health::Unhealthy {
                        reason: format!("not importable on {}: {}", host.instance, found.action),
                    }
                };
                Ok(Observation::Present { attributes, health })
            }
            PoolState::NotFound => Ok(Observation::Absent),
        }
    }
}

/// What a step works with.
struct StepTarget<'a> {
    address: &'a ResourceAddress,
    settings: PoolSettings,
    host: Host,
    expected: Vec<(InstanceAddress, String)>,
}

impl StepTarget<'_> {
    fn pool(&self) -> &str {
        &self.settings.name
    }

    fn label(&self) -> String {
        self.address.to_string()
    }

    /// Runs a command that changes the pool. If the connection drops, the command may or may
    /// not have taken effect: the caller reads the state again rather than repeating it.
    async fn change(&self, arguments: &[&str]) -> Result<Result<(), ZfsError>, SshError> {
        let command = command_line(arguments.iter().copied());
        let output = self.host.connection.run(&command).await?;
        if output.success() {
            Ok(Ok(()))
        } else {
            Ok(Err(command_failed(
                &self.host,
                &self.label(),
                &command,
                &output,
            )))
        }
    }

    /// The spec's disks whose device is not in the host's device folder.
    async fn missing_disks(&self) -> Result<Vec<String>, ZfsError> {
        let paths: Vec<String> = self.expected.iter().map(|(_, path)| path.clone()).collect();
        let present = existing_paths(&self.host, &paths).await?;
        Ok(self
            .expected
            .iter()
            .filter(|(_, path)| !present.contains(path))
            .map(|(disk, path)| format!("{disk} is not at {path}"))
            .collect())
    }

    /// The pool is ONLINE with every expected device ONLINE.
    fn verify(&self, status: &PoolStatus) -> Result<(), ZfsError> {
        let mut problems: Vec<String> = status
            .devices()
            .filter(|row| row.state != "ONLINE")
            .map(|row| {
                let disk = self
                    .expected
                    .iter()
                    .find(|(_, path)| path == row.path())
                    .map_or_else(String::new, |(disk, _)| format!(" ({disk})"));
                format!("{}{disk} is {}", row.path(), row.state)
            })
            .collect();
        for (disk, path) in &self.expected {
            if !status.devices().any(|row| row.path() == path) {
                problems.push(format!("{disk} ({path}) is not a vdev of the pool"));
            }
        }
        if status.state == "ONLINE" && problems.is_empty() {
            Ok(())
        } else {
            Err(ZfsError::NotOnline {
                pool: self.label(),
                host: self.host.instance.to_string(),
                state: status.state.clone(),
                problems,
            })
        }
    }

    fn outcome(&self, status: &PoolStatus, datasets: &[DatasetRow]) -> StepOutcome {
        let mut outputs = imported_attributes(
            &self.settings,
            &self.host,
            status,
            datasets,
            &self.expected,
            false,
        );
        // Outputs are what other resources reference; the dataset table stays in the reading.
        outputs.remove("datasets");
        StepOutcome { outputs }
    }

    /// Asks each host the plan fenced whether it still has the pool imported. ZFS on another
    /// host cannot tell a live holder from a crashed one (a pool last used by another system
    /// reads the same either way, and hosts cloned with one host id do not even read that), so
    /// a fence that did not take effect (ARM says deallocated, the VM still runs) would
    /// otherwise become a double import. A host that does not answer is taken as fenced: that
    /// is what a fence looks like.
    async fn held_by_fenced_host(
        &self,
        fenced: &[Host],
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Option<String> {
        let command = command_line(["zpool", "list", "-H", "-o", "name", self.pool()]);
        for other in fenced {
            // A fenced VM's address usually drops packets: a short connect timeout, so that
            // the question costs seconds on the recovery's critical path, not the full 15.
            let asked = SshConnection::new(
                other.connection.target().clone(),
                SshTimeouts {
                    connect: FENCED_HOST_CONNECT.min(other.connection.timeouts().connect),
                    command: Duration::from_secs(30),
                },
            );
            match asked.run_read_only(&command).await {
                Ok(output) if output.success() => {
                    return Some(format!(
                        "{} still answers over SSH and lists it imported",
                        other.instance
                    ));
                }
                Ok(_) => progress(format!(
                    "{} answers over SSH and does not hold the pool",
                    other.instance
                )),
                Err(error) => progress(format!(
                    "{} does not answer over SSH ({error}): fenced",
                    other.instance
                )),
            }
        }
        None
    }

    async fn import(
        &self,
        force: bool,
        fenced: &[Host],
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<StepOutcome, ZfsError> {
        let label = self.label();
        let host = self.host.instance.to_string();
        match pool_state(&self.host, self.pool()).await? {
            PoolState::Imported { status, datasets } => {
                self.verify(&status)?;
                return Ok(self.outcome(&status, &datasets));
            }
            PoolState::ImportedElsewhere { devices } => {
                let detail = format!("its devices {} are not on this host", devices.join(", "));
                // With force too: a fence that did not take effect must not become a double
                // import.
                return Err(if force {
                    ZfsError::StillImportedAfterFence {
                        pool: label,
                        host,
                        detail,
                    }
                } else {
                    ZfsError::ImportedElsewhere {
                        pool: label,
                        host,
                        detail,
                    }
                });
            }
            PoolState::NotFound => {
                let missing = self.missing_disks().await?;
                if !missing.is_empty() {
                    return Err(ZfsError::MissingDisks {
                        pool: label,
                        host,
                        missing,
                    });
                }
                return Err(ZfsError::NotFound {
                    pool: label,
                    host,
                    folder: self.host.device_folder.clone(),
                });
            }
            PoolState::Importable(found) if !found.can_import() => {
                let mut missing = self.missing_disks().await?;
                if missing.is_empty() {
                    missing.push(format!(
                        "zpool reports the pool {}: {}",
                        found.state, found.action
                    ));
                }
                return Err(ZfsError::MissingDisks {
                    pool: label,
                    host,
                    missing,
                });
            }
            PoolState::Importable(_) => {}
        }
        if let Some(holder) = self.held_by_fenced_host(fenced, progress).await {
            return Err(if force {
                ZfsError::StillImportedAfterFence {
                    pool: label,
                    host,
                    detail: holder,
                }
            } else {
                ZfsError::ImportedElsewhere {
                    pool: label,
                    host,
                    detail: holder,
                }
            });
        }
        let folder = self.host.device_folder.clone();
        let mut arguments = vec!["zpool", "import", "-d", folder.as_str()];
        // -f only when the plan put a fence of every other host before this step.
        if force {
            arguments.push("-f");
        }
        arguments.push(self.pool());
        match self.change(&arguments).await {
            Ok(Ok(())) => {}
            Ok(Err(ZfsError::Command { stderr, .. }))
                if stderr.contains("in use from another system")
                    || stderr.contains("in use from other system") =>
            {
                return Err(ZfsError::ImportedElsewhere {
                    pool: label,
                    host,
                    detail: format!("zpool says: {stderr}"),
                });
            }
            Ok(Err(error)) => return Err(error),
            // The import may have happened before the connection dropped: read again below,
            // on a new connection, rather than importing a second time.
            Err(error) if matches!(error, SshError::Dropped { .. } | SshError::Timeout { .. }) => {
                match pool_state(&self.host, self.pool()).await? {
                    PoolState::Imported { .. } => {}
                    _ => return Err(error.into()),
                }
            }
            Err(error) => return Err(error.into()),
        }
        match pool_state(&self.host, self.pool()).await? {
            PoolState::Imported { status, datasets } => {
                self.verify(&status)?;
                Ok(self.outcome(&status, &datasets))
            }
            _ => Err(ZfsError::NotFound {
                pool: label,
                host,
                folder,
            }),
        }
    }

    async fn export(&self) -> Result<StepOutcome, ZfsError> {
        let not_imported = || {
            let mut outputs = Attributes::new();
            outputs.insert("imported".into(), json!(false));
            StepOutcome { outputs }
        };
        match pool_state(&self.host, self.pool()).await? {
            PoolState::Imported { .. } => {}
            _ => return Ok(not_imported()),
        }
        match self.change(&["zpool", "export", self.pool()]).await {
            Ok(Ok(())) => Ok(not_imported()),
            Ok(Err(error)) => Err(error),
            Err(error) => match pool_state(&self.host, self.pool()).await? {
                PoolState::Imported { .. } => Err(error.into()),
                _ => Ok(not_imported()),
            },
        }
    }

    async fn create(&self) -> Result<StepOutcome, ZfsError> {
        match pool_state(&self.host, self.pool()).await? {
            PoolState::Imported { .. } => return self.update().await,
            PoolState::Importable(_) | PoolState::ImportedElsewhere { .. } => {
                return Err(ZfsError::ExistsNotImported {
                    pool: self.label(),
                    folder: self.host.device_folder.clone(),
                });
            }
            PoolState::NotFound => {}
        }
        let missing = self.missing_disks().await?;
        if !missing.is_empty() {
            return Err(ZfsError::MissingDisks {
                pool: self.label(),
                host: self.host.instance.to_string(),
                missing,
            });
        }
        let mut arguments = vec!["zpool", "create", self.pool()];
        match self.settings.layout.as_str() {
            "mirror" => arguments.push("mirror"),
            "raidz" => arguments.push("raidz"),
            _ => {}
        }
        for (_, path) in &self.expected {
            arguments.push(path);
        }
        match self.change(&arguments).await {
            Ok(result) => result?,
            Err(error) => match pool_state(&self.host, self.pool()).await? {
                PoolState::Imported { .. } => {}
                _ => return Err(error.into()),
            },
        }
        self.update().await
    }

    /// Imports a pool that is not imported (without -f), then makes its datasets match.
    async fn update(&self) -> Result<StepOutcome, ZfsError> {
        let (status, mut datasets) = match pool_state(&self.host, self.pool()).await? {
            PoolState::Imported { status, datasets } => (status, datasets),
            PoolState::Importable(_) => {
                self.import(false, &[], &|_| {}).await?;
                match pool_state(&self.host, self.pool()).await? {
                    PoolState::Imported { status, datasets } => (status, datasets),
                    _ => {
                        return Err(ZfsError::NotFound {
                            pool: self.label(),
                            host: self.host.instance.to_string(),
                            folder: self.host.device_folder.clone(),
                        });
                    }
                }
            }
            PoolState::ImportedElsewhere { devices } => {
                return Err(ZfsError::ImportedElsewhere {
                    pool: self.label(),
                    host: self.host.instance.to_string(),
                    detail: format!("its devices {} are not on this host", devices.join(", ")),
                });
            }
            PoolState::NotFound => {
                return Err(ZfsError::NotFound {
                    pool: self.label(),
                    host: self.host.instance.to_string(),
                    folder: self.host.device_folder.clone(),
                });
            }
        };
        let mut changed = false;
        for (relative, managed) in &self.settings.datasets {
            let full = format!("{}/{relative}", self.pool());
            let assignments: Vec<String> = managed
                .iter()
                .map(|(key, value)| format!("{key}={value}"))
                .collect();
            match datasets.iter().find(|row| row.name == full) {
                None => {
                    let mut arguments = vec!["zfs", "create"];
                    for assignment in &assignments {
                        arguments.push("-o");
                        arguments.push(assignment);
                    }
                    arguments.push(&full);
                    self.change(&arguments).await??;
                    changed = true;
                }
                Some(row) => {
                    for (key, value) in managed {
                        let current = match key.as_str() {
                            "mountpoint" => Some(&row.mountpoint),
                            "sharenfs" => Some(&row.sharenfs),
                            "quota" => Some(&row.quota),
                            _ => None,
                        };
                        if current == Some(value) {
                            continue;
                        }
                        let assignment = format!("{key}={value}");
                        // Repeating a `zfs set` is harmless, so a dropped connection is simply
                        // reported as transient and the engine retries the step.
                        self.change(&["zfs", "set", &assignment, &full]).await??;
                        changed = true;
                    }
                }
            }
        }
        if changed {
            let command = format!(
                "zfs list -H -o {} -r {}",
                parse::DATASET_COLUMNS,
                quote(self.pool())
            );
            let listed = query(
                &self.host,
                &self.label(),
                &[
                    "zfs",
                    "list",
                    "-H",
                    "-o",
                    parse::DATASET_COLUMNS,
                    "-r",
                    self.pool(),
                ],
            )
            .await?;
            datasets = parse::parse_dataset_list(&command, &listed.stdout)?;
        }
        Ok(self.outcome(&status, &datasets))
    }
}

impl ZfsPoolProvider {
    async fn run_step(
        &self,
        step: &Step,
        context: &ApplyContext<'_>,
    ) -> Result<StepOutcome, ZfsError> {
        let address = &step.address.address;
        let settings = self.merged_settings(address, context.inputs)?;
        let host_instance = context
            .inputs
            .get("host")
            .and_then(Value::as_str)
            .or_else(|| {
                self.pools
                    .get(address)
                    .and_then(|fields| fields.get("host"))
                    .and_then(Value::as_str)
            })
            .and_then(|text| text.parse::<InstanceAddress>().ok())
            .ok_or_else(|| ZfsError::Setting {
                pool: address.to_string(),
                message: "the step names no host".to_owned(),
            })?;
        let host = self.host(
            address,
            &settings,
            &host_instance,
            (context.outputs)(&host_instance),
        )?;
        let expected = expected_devices(&settings, &host.device_folder, context.outputs);
        let target = StepTarget {
            address,
            settings,
            host,
            expected,
        };
        (context.progress)(format!("{} on {}", step.action, target.host.instance));
        match step.action {
            Action::Import => {
                let force = context.inputs.get("force").and_then(Value::as_bool) == Some(true);
                let mut fenced = Vec::new();
                for text in context
                    .inputs
                    .get("fenced_hosts")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    let Ok(instance) = text.parse::<InstanceAddress>() else {
                        continue;
                    };
                    match self.host(
                        address,
                        &target.settings,
                        &instance,
                        (context.outputs)(&instance),
                    ) {
                        Ok(host) => fenced.push(host),
                        Err(error) => (context.progress)(format!(
                            "{instance} cannot be asked whether it still holds the pool ({error}): relying on its fence"
                        )),
                    }
                }
                target.import(force, &fenced, context.progress).await
            }
            Action::Export => target.export().await,
            Action::Create => target.create().await,
            Action::Update => target.update().await,
            action => Err(ZfsError::Unsupported {
                pool: address.to_string(),
                action,
            }),
        }
    }
}

#[async_trait]
impl Provider for ZfsPoolProvider {
    fn kind(&self) -> Kind {
        Kind::ZfsPool
    }

    fn concurrency_limit(&self) -> usize {
        // Each host runs one command at a time anyway (one connection per host).
        4
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        match self.observe(&context).await {
            Ok(observation) => observation,
            // Never Absent on a failure: an unreachable host says nothing about the pool.
            Err(error) => Observation::Unknown {
                reason: error.to_string(),
            },
        }
    }

    async fn apply(
        &self,
        step: &Step,
        context: ApplyContext<'_>,
    ) -> Result<StepOutcome, StepError> {
        self.run_step(step, &context)
            .await
            .map_err(ZfsError::into_step_error)
    }
}

#[cfg(test)]
mod tests {
    use super::common_parent;

    #[test]
    fn the_nfs_export_is_the_folder_that_holds_every_shared_dataset() {
        assert_eq!(common_parent(&[]), None);
        assert_eq!(
            common_parent(&["/export/home/prod"]).as_deref(),
            Some("/export/home/prod")
        );
        assert_eq!(
            common_parent(&["/export/home/prod", "/export/home/staging"]).as_deref(),
            Some("/export/home")
        );
        assert_eq!(common_parent(&["/a/b", "/c/d"]), None);
    }
}
