//! The NFS host a read or step works on: its SSH connection from the VM's outputs and the
//! pool's settings, and what its ZFS says about a pool (imported, imported by another host
//! sharing this ZFS, importable, or not found).

use std::sync::Arc;

use ferry_core::fields::vm;
use ferry_core::{Attributes, InstanceAddress, ResourceAddress, Value};

use super::settings::PoolSettings;
use super::{ZfsError, ZfsPoolProvider};
use crate::parse::{self, DatasetRow, ImportablePool, PoolStatus};
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

pub(super) async fn pool_state(host: &Host, pool: &str) -> Result<PoolState, ZfsError> {
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
    Importable(ImportablePool),
    NotFound,
}
