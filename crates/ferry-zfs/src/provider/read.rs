//! Reading a pool: the devices its disks should have, and its attributes named like the
//! spec's fields plus its outputs (`mountpoint`, `nfs_export`).

use ferry_core::fields::{self, zfs_pool};
use ferry_core::{Attributes, Health, InstanceAddress, Observation, ReadContext, Value};
use serde_json::json;

use super::host::{Host, ListedPool, PoolState, WantedPool, pool_state};
use super::settings::PoolSettings;
use super::{ZfsError, ZfsPoolProvider};
use crate::parse::{DatasetRow, PoolStatus};

/// The device path each disk of the pool should have on the host: `FOLDER/lunN`, with N the
/// disk's recorded `lun`, or its position in `disks` when none is recorded.
pub(super) fn expected_devices(
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
                .and_then(|attributes| attributes.get(fields::disk::LUN).and_then(Value::as_u64))
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
pub(super) fn imported_attributes(
    settings: &PoolSettings,
    host: &Host,
    status: &PoolStatus,
    datasets: &[DatasetRow],
    expected: &[(InstanceAddress, String)],
    has_pool_name: bool,
) -> Attributes {
    let mut attributes = Attributes::new();
    let pool = &settings.name;
    attributes.insert(zfs_pool::HOST.into(), json!(host.instance.to_string()));
    attributes.insert("imported".into(), json!(true));
    attributes.insert("health".into(), json!(status.state));
    if has_pool_name {
        attributes.insert(zfs_pool::POOL_NAME.into(), json!(pool));
    }
    let vdevs: Vec<Value> = status
        .devices()
        .map(|row| json!({"path": row.path(), "state": row.state}))
        .collect();
    attributes.insert("vdevs".into(), Value::Array(vdevs));
    // Only when set, so that a pool outside any replication reads as it always did.
    if let Some(root) = datasets.iter().find(|row| &row.name == pool) {
        if root.role != "-" {
            attributes.insert("replication_role".into(), json!(root.role));
        }
        if root.readonly == "on" {
            attributes.insert("readonly".into(), json!(true));
        }
    }
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
        attributes.insert(zfs_pool::DISKS.into(), Value::Array(disks));
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

fn health_of(status: &PoolStatus, datasets: &[DatasetRow], pool: &str) -> Health {
    if status.state == "ONLINE" {
        // Imported and whole, but taking no writes: a hot standby's replica, or a primary
        // stopped by a hand-over. It serves nobody; the plan and the watch say so.
        if let Some(root) = datasets
            .iter()
            .find(|row| row.name == pool && (row.readonly == "on" || row.role == "replica"))
        {
            return Health::Unhealthy {
                reason: format!(
                    "the pool takes no writes (readonly={}, ferry:role={}): it is a replica or was handed over; promote it, or hand the service back to it",
                    root.readonly, root.role
                ),
            };
        }
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

/// A hot standby's replica is healthy as a replica: whole, read-only and marked one. Anything
/// else in its place (a writable pool, a pool outside any replication) is no replica.
fn replica_health(status: &PoolStatus, datasets: &[DatasetRow], pool: &str) -> Health {
    if status.state != "ONLINE" {
        return health_of(status, datasets, pool);
    }
    match datasets.iter().find(|row| row.name == pool) {
        Some(root) if root.role == "replica" && root.readonly == "on" => Health::Healthy,
        Some(root) => Health::Unhealthy {
            reason: format!(
                "the standby's pool is no read-only replica (readonly={}, ferry:role={}): ferry neither promotes nor overwrites it",
                root.readonly, root.role
            ),
        },
        None => Health::Unhealthy {
            reason: "the standby's pool lists no root dataset".to_owned(),
        },
    }
}

impl ZfsPoolProvider {
    /// How far a replica is behind its primary, the serving generation's host (the one before
    /// the replica's), in seconds on the primary's clock; when the primary cannot be asked, the
    /// time since the replica's newest complete snapshot on the replica's own clock; `None`
    /// when neither can say (the read of the replica itself stands).
    async fn replica_lag(
        &self,
        context: &ReadContext<'_>,
        settings: &PoolSettings,
        replica: &Host,
        replica_host: &InstanceAddress,
    ) -> Option<u64> {
        let replica_end = replica.end(&settings.name);
        let serving = replica_host.generation?.checked_sub(1)?;
        let primary_instance = replica_host.address.at(Some(serving));
        let on_primary = match self.host(
            &context.instance.address,
            settings,
            &primary_instance,
            (context.outputs)(&primary_instance),
        ) {
            Ok(primary) => crate::replication::status(primary.end(&settings.name), replica_end)
                .await
                .ok()
                .and_then(|status| status.lag_seconds()),
            Err(_) => None,
        };
        // The primary does not answer (its host down: the very moment a failover reads this):
        // the replica's own reckoning, on its clock, of what a promotion would lose.
        match on_primary {
            Some(lag) => Some(lag),
            None => crate::replication::lag_on_replica(replica_end)
                .await
                .ok()
                .flatten(),
        }
    }

    pub(super) async fn observe(&self, context: &ReadContext<'_>) -> Result<Observation, ZfsError> {
        let address = &context.instance.address;
        // A hot pool and its replica are each on either side's disks (the pool's own, or its
        // replica's: a hot failover swaps them): both are looked for, and the reading names
        // the ones it finds.
        let both_sides;
        let fields = match context.fields.get(zfs_pool::REPLICA_DISKS) {
            Some(Value::Array(replica)) => {
                let mut fields = context.fields.clone();
                let mut disks = fields
                    .get(zfs_pool::DISKS)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                disks.extend(replica.iter().cloned());
                fields.insert(zfs_pool::DISKS.to_owned(), Value::Array(disks));
                both_sides = fields;
                &both_sides
            }
            _ => context.fields,
        };
        let settings = self.merged_settings(address, fields)?;
        let Some(host_instance) = context
            .fields
            .get(zfs_pool::HOST)
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
        let wanted = WantedPool {
            name: &settings.name,
            devices: &expected,
            replica: context.instance.generation.is_some(),
        };
        match pool_state(&host, wanted).await? {
            PoolState::Imported { status, datasets } => {
                let mut attributes = imported_attributes(
                    &settings,
                    &host,
                    &status,
                    &datasets,
                    &expected,
                    context.fields.contains_key(zfs_pool::POOL_NAME),
                );
                // A stateful instance of a generation is a hot standby's replica: healthy as
                // one, and read with how far behind its primary it is.
                let health = if context.instance.generation.is_some() {
                    if let Some(lag) = self
                        .replica_lag(context, &settings, &host, &host_instance)
                        .await
                    {
                        attributes.insert(zfs_pool::REPLICA_LAG_SECONDS.into(), json!(lag));
                    }
                    replica_health(&status, &datasets, &settings.name)
                } else {
                    health_of(&status, &datasets, &settings.name)
                };
                Ok(Observation::Present { attributes, health })
            }
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
            PoolState::Importable(ListedPool { pool: found, .. }) => {
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
