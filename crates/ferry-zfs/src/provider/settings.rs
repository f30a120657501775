//! A pool's settings from the spec's fields (with a step's inputs laid over them), each
//! checked against ZFS's naming rules before any command is built from it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use ferry_core::fields::zfs_pool;
use ferry_core::{Attributes, InstanceAddress, ResourceAddress, Value};

use super::ZfsError;
use crate::check_zfs_name;

/// A pool's settings: the spec's fields, with a step's inputs laid over them.
#[derive(Debug, Clone)]
pub(super) struct PoolSettings {
    pub(super) name: String,
    pub(super) layout: String,
    pub(super) disks: Vec<InstanceAddress>,
    /// Relative dataset name to its managed properties.
    pub(super) datasets: BTreeMap<String, BTreeMap<String, String>>,
    pub(super) ssh_user: Option<String>,
    pub(super) ssh_port: u16,
    pub(super) ssh_key_file: Option<PathBuf>,
    pub(super) known_hosts: Option<PathBuf>,
    pub(super) host_key: Option<String>,
    /// A failover drill's pool (`drill`): the drill's id, which the pool's disks are tagged
    /// with (`ferry-drill`) as copies of production's.
    pub(super) drill: Option<String>,
}

const DATASET_PROPERTIES: &[&str] = &["mountpoint", "sharenfs", "quota", "compression"];

pub(super) fn settings(
    address: &ResourceAddress,
    fields: &Attributes,
) -> Result<PoolSettings, ZfsError> {
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_owned);
    let name = text(zfs_pool::POOL_NAME).unwrap_or_else(|| address.name.clone());
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
        .get(zfs_pool::DISKS)
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
    let drill = text(zfs_pool::DRILL);
    if let Some(drill) = &drill
        && (drill.is_empty() || drill.chars().any(char::is_control))
    {
        return Err(setting(
            "drill must be a drill's id on one line: ferry drill sets it; drill again".to_owned(),
        ));
    }
    Ok(PoolSettings {
        name,
        drill,
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
