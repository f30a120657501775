//! The NFS host a read or step works on: its SSH connection from the VM's outputs and the
//! pool's settings, and what its ZFS says about a pool (imported, imported by another host
//! sharing this ZFS, importable, or not found).

use std::sync::Arc;

use ferry_core::fields::vm;
use ferry_core::{Attributes, InstanceAddress, ResourceAddress, Value};

use super::settings::PoolSettings;
use super::{ZfsError, ZfsPoolProvider};
use crate::parse::{self, DatasetRow, ImportablePool, PoolStatus, VdevRow};
use crate::shell::{command_line, quote};
use crate::ssh::{CommandOutput, HostKeys, SshConnection, SshTarget};

/// The host a read or step works on, from its VM's outputs.
#[derive(Debug, Clone)]
pub(super) struct Host {
    pub(super) instance: InstanceAddress,
    pub(super) device_folder: String,
    pub(super) nfs_address: String,
    pub(super) connection: Arc<SshConnection>,
}

impl Host {
    /// This host's end of a replication of `pool`.
    pub(super) fn end<'h>(&'h self, pool: &'h str) -> crate::replication::PoolEnd<'h> {
        crate::replication::PoolEnd {
            connection: &self.connection,
            pool,
        }
    }
}

impl ZfsPoolProvider {
    pub(super) fn host(
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
            .or_else(|| text(vm::PUBLIC_ADDRESS))
            .or_else(|| text(vm::PRIVATE_IP))
            .ok_or_else(|| ZfsError::HostNotKnown {
                pool: pool.to_string(),
                host: host.to_string(),
            })?;
        let device_folder =
            text(vm::DEVICE_FOLDER).unwrap_or_else(|| vm::DEFAULT_DEVICE_FOLDER.to_owned());
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
                .or_else(|| text(vm::ADMIN_USERNAME))
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
            nfs_address: text(vm::PRIVATE_IP).unwrap_or(address),
            connection,
        })
    }
}

/// Runs a read-only command and fails on a non-zero exit.
pub(super) async fn query(
    host: &Host,
    pool: &str,
    arguments: &[&str],
) -> Result<CommandOutput, ZfsError> {
    let command = command_line(arguments.iter().copied());
    let output = host.connection.run_read_only(&command).await?;
    if !output.success() {
        return Err(command_failed(host, pool, &command, &output));
    }
    Ok(output)
}

pub(super) fn command_failed(
    host: &Host,
    pool: &str,
    command: &str,
    output: &CommandOutput,
) -> ZfsError {
    ZfsError::Command {
        pool: pool.to_owned(),
        host: host.instance.to_string(),
        command: command.to_owned(),
        stderr: output.first_error_line(),
    }
}

/// Which of `paths` exist on the host.
pub(super) async fn existing_paths(host: &Host, paths: &[String]) -> Result<Vec<String>, ZfsError> {
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

/// The pool a read or step looks for: its name, and the devices that are its own (the spec's
/// disks, as this host's device folder names them), which tell it from another pool of the
/// same name that `zpool import -d` lists (a replica's disks beside the old primary's, both
/// attached; a pool left on disks that were reused).
#[derive(Debug, Clone, Copy)]
pub(super) struct WantedPool<'a> {
    pub(super) name: &'a str,
    pub(super) devices: &'a [(InstanceAddress, String)],
    /// A hot standby's replica, which is the pool on its own disks or nothing: a pool of that
    /// name on none of them is another pool (the primary's, where the hosts see each other's
    /// disks, as a test's hosts or shared disks do), and the replica is not there. A seed then
    /// creates it on its own disks, which `zpool create` (never with -f) refuses should they
    /// hold a pool.
    pub(super) replica: bool,
}

pub(super) async fn pool_state(host: &Host, wanted: WantedPool<'_>) -> Result<PoolState, ZfsError> {
    let pool = wanted.name;
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
    let importable = importable_pools(host, pool).await?;
    match own_importable(importable, wanted) {
        Ok(found) => Ok(found.map_or(PoolState::NotFound, PoolState::Importable)),
        Err(candidates) => Err(ZfsError::AmbiguousPool {
            pool: pool.to_owned(),
            host: host.instance.to_string(),
            folder: host.device_folder.clone(),
            candidates,
        }),
    }
}

/// Every pool `zpool import -d FOLDER` lists on the host (none imported), possibly none.
pub(super) async fn importable_pools(
    host: &Host,
    pool: &str,
) -> Result<Vec<ImportablePool>, ZfsError> {
    let command = command_line(["zpool", "import", "-d", &host.device_folder]);
    let output = host.connection.run_read_only(&command).await?;
    // With nothing to list, zpool exits 1 and prints nothing (or "no pools available").
    let nothing_listed = output.stdout.trim().is_empty()
        && (output.stderr.trim().is_empty() || output.stderr.contains("no pools available"));
    if !output.success() && !nothing_listed {
        return Err(command_failed(host, pool, &command, &output));
    }
    Ok(parse::parse_import_listing(&command, &output.stdout)?)
}

/// Which of the pools `zpool import -d FOLDER` lists is the wanted one: the only one of its
/// name on its own devices; else, for a pool that is no replica, the only one of its name
/// (its devices may be named otherwise than the spec's disks say, as while a failover is
/// resumed after the import). Never a guess: when several qualify, `Err` describes each of
/// them (id, devices, state, whether it is on the pool's own devices), for the error that asks
/// the operator to settle it.
pub(super) fn own_importable(
    listed: Vec<ImportablePool>,
    wanted: WantedPool<'_>,
) -> Result<Option<ListedPool>, Vec<String>> {
    let is_own = |candidate: &ImportablePool| {
        candidate
            .vdevs
            .iter()
            .any(|row| wanted.devices.iter().any(|(_, path)| path == row.path()))
    };
    let named: Vec<ImportablePool> = listed
        .into_iter()
        .filter(|candidate| candidate.name == wanted.name)
        .collect();
    let own = named.iter().filter(|candidate| is_own(candidate)).count();
    let describe = |candidates: &[ImportablePool]| -> Vec<String> {
        candidates
            .iter()
            .map(|candidate| {
                let devices: Vec<&str> = candidate
                    .vdevs
                    .iter()
                    .filter(|row| !row.is_group())
                    .map(VdevRow::path)
                    .collect();
                format!(
                    "id {} on {} ({}{})",
                    candidate.id,
                    devices.join(", "),
                    candidate.state,
                    if is_own(candidate) {
                        ", on this pool's disks"
                    } else {
                        ""
                    }
                )
            })
            .collect()
    };
    let by_id = named.len() > 1;
    let chosen = match (own, named.len()) {
        (1, _) => named.into_iter().find(|candidate| is_own(candidate)),
        (0, _) if wanted.replica => None,
        (0, 0 | 1) => named.into_iter().next(),
        _ => return Err(describe(&named)),
    };
    Ok(chosen.map(|pool| ListedPool { pool, by_id }))
}

/// The pool `zpool import -d FOLDER` lists that is the wanted one.
#[derive(Debug, Clone)]
pub(super) struct ListedPool {
    pub(super) pool: ImportablePool,
    /// Another pool of the same name is listed too: ZFS imports this one only by its id
    /// (by name, it refuses: "more than one matching pool").
    pub(super) by_id: bool,
}

/// What one host's ZFS says about a pool.
#[derive(Debug, Clone)]
pub(super) enum PoolState {
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
    Importable(ListedPool),
    NotFound,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the choice among a listing's pools comes to, for one wanted pool: the id chosen,
    /// nothing, or the refusal's message.
    fn choose(listing: &str, name: &str, luns: &[u32], replica: bool) -> String {
        let folder = "/tmp/zcap/A";
        let listed = parse::parse_import_listing("zpool import -d /tmp/zcap/A", listing).unwrap();
        let devices: Vec<(InstanceAddress, String)> = luns
            .iter()
            .map(|lun| {
                (
                    format!("disk.d{lun}").parse().unwrap(),
                    format!("{folder}/lun{lun}"),
                )
            })
            .collect();
        let wanted = WantedPool {
            name,
            devices: &devices,
            replica,
        };
        let case = format!(
            "{name} on luns {luns:?}{}",
            if replica { " (a replica)" } else { "" }
        );
        match own_importable(listed, wanted) {
            Ok(Some(found)) => format!(
                "{case}: {} {}",
                found.pool.id,
                if found.by_id { "(by id)" } else { "(by name)" }
            ),
            Ok(None) => format!("{case}: not found"),
            Err(candidates) => {
                let error = ZfsError::AmbiguousPool {
                    pool: name.to_owned(),
                    host: "vm.nfs@g2".to_owned(),
                    folder: folder.to_owned(),
                    candidates,
                };
                format!("{case}: {error}")
            }
        }
    }

    #[test]
    fn of_two_pools_named_alike_the_one_on_the_pools_own_disks_is_chosen_or_none_is() {
        let two = include_str!("../parse/captured/import-listing-two-alike.txt");
        let one = include_str!("../parse/captured/import-listing-online.txt");
        let results = [
            // Each on its own disks: the replica's lun1 beside the old primary's lun0.
            choose(two, "capt", &[1], false),
            choose(two, "capt", &[0], true),
            // On neither: a replica is not there; any other pool cannot be told.
            choose(two, "capt", &[2], true),
            choose(two, "capt", &[2], false),
            // On both (a hot pool's reading looks on both sides' disks), or on none named.
            choose(two, "capt", &[0, 1], false),
            choose(two, "capt", &[], false),
            // One pool of the name: by name, as always, wherever the spec says its disks are.
            choose(one, "mir", &[2, 3], false),
            choose(one, "mir", &[7], false),
            choose(one, "mir", &[7], true),
            choose(two, "other", &[0], false),
        ];
        insta::assert_snapshot!(results.join("\n"));
    }
}
