//! The `zfs_pool` provider: reads, imports, exports and creates pools on the NFS host over SSH.
//!
//! Every command is built here from values checked against ZFS's naming rules and quoted
//! argument by argument; see [`crate::shell`]. The device folder and the host's address come
//! from the host VM's outputs (`device_folder`, `public_address` or else `private_ip`).
//!
//! This file holds the provider and its settings; `settings` reads a pool's fields, `host`
//! connects to the NFS host and reads what its ZFS says, `read` turns that into a reading,
//! `steps` and `import` run the steps (`drill` a drill's import of its copy), and `error` holds [`ZfsError`].

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_core::{
    ApplyContext, Attributes, InstanceAddress, Kind, Observation, Provider, ReadContext,
    ResourceAddress, ResourceSpec, Step, StepError, StepOutcome,
};

use crate::ssh::{SshConnection, SshTarget, SshTimeouts};

mod drill;
mod error;
mod host;
mod import;
mod read;
mod settings;
mod steps;

pub use error::ZfsError;

use settings::{PoolSettings, settings};

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
}

#[async_trait]
impl Provider for ZfsPoolProvider {
    fn kind(&self) -> Kind {
        Kind::ZfsPool
    }

    fn concurrency_limit(&self) -> usize {
        // Each host runs one command at a time anyway (one connection per host), so a higher
        // limit would only queue steps on the hosts; 4 lets the pools of a few hosts move
        // together. The spec's `[limits] zfs_pool = N` can still change it.
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

    /// One replication round for a hot standby's replica (an instance with a generation):
    /// a snapshot of every dataset on the primary (the host `replicate_from` names), each sent
    /// to the replica as an increment, older rounds' snapshots pruned (`replication::replicate`).
    /// A round that finds another round of the pool running on the primary is skipped: `Ok`,
    /// with a line that starts `skipped: ` and names the host and who runs the other round.
    async fn tend(
        &self,
        instance: &InstanceAddress,
        context: ApplyContext<'_>,
    ) -> Result<Option<String>, StepError> {
        if instance.generation.is_none() {
            return Ok(None);
        }
        self.replication_round(instance, &context)
            .await
            .map(Some)
            .map_err(ZfsError::into_step_error)
    }
}

impl ZfsPoolProvider {
    async fn replication_round(
        &self,
        instance: &InstanceAddress,
        context: &ApplyContext<'_>,
    ) -> Result<String, ZfsError> {
        let address = &instance.address;
        let settings = self.merged_settings(address, context.inputs)?;
        let named = |input: &str| -> Result<InstanceAddress, ZfsError> {
            context
                .inputs
                .get(input)
                .and_then(ferry_core::Value::as_str)
                .and_then(|text| text.parse::<InstanceAddress>().ok())
                .ok_or_else(|| ZfsError::Setting {
                    pool: instance.to_string(),
                    message: format!("the round names no {input}"),
                })
        };
        let (replica_host, primary_host) = (
            named(ferry_core::fields::zfs_pool::HOST)?,
            named(ferry_core::fields::zfs_pool::REPLICATE_FROM)?,
        );
        let replica = self.host(
            address,
            &settings,
            &replica_host,
            (context.outputs)(&replica_host),
        )?;
        let primary = self.host(
            address,
            &settings,
            &primary_host,
            (context.outputs)(&primary_host),
        )?;
        let round = match crate::replication::replicate(
            primary.end(&settings.name),
            replica.end(&settings.name),
            std::time::SystemTime::now(),
        )
        .await
        {
            Ok(round) => round,
            // Another round of the pool holds its lock on the primary (a manual `ferry
            // replicate` beside the acting watch's): it sends what this one would have, so
            // this one is skipped, no failure: the replica is no further behind for it.
            Err(busy @ crate::replication::ReplicationError::Busy { .. }) => {
                return Ok(format!("skipped: {busy}"));
            }
            Err(source) => {
                return Err(ZfsError::Replication {
                    pool: instance.to_string(),
                    source,
                });
            }
        };
        let sends = round.bases.values().filter(|base| base.is_some()).count();
        Ok(format!(
            "{} reached {replica_host} from {primary_host}: {} bytes in {} increments and {} full sends; {} older snapshots pruned",
            round.snapshot.name,
            round.bytes,
            sends,
            round.bases.len() - sends,
            round.pruned
        ))
    }
}
