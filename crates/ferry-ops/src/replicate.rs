//! `ferry replicate`: one replication round for every pool a hot standby keeps a replica of
//! (`[failover] standby = "hot"`). The `ferry watch` leader runs the same rounds every
//! `replica_interval`; this is the round on demand (before a planned failover, from cron, in a
//! test).
//!
//! The roles come from the state: the primary is the pool on the serving generation's host,
//! the replica its instance in the next generation (`zfs_pool.home@g2`). A round never decides
//! a role: the receive refuses any pool that is not a read-only replica (safety invariant 14
//! of ARCHITECTURE.md), so a round that races a promotion fails rather than rolling it back.

use ferry_core::fields::zfs_pool;
use ferry_core::{ApplyContext, Attributes, InstanceAddress, ResourceAddress};
use ferry_spec::resolve::resolve_fields;

use crate::{Deployment, OpsError};

/// What one pool's round did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRound {
    pub pool: ResourceAddress,
    /// The replica the round sent to (`zfs_pool.home@g2`).
    pub replica: InstanceAddress,
    /// What the provider did, or why the round did not run or failed. A round skipped
    /// because another round of the pool was running on its primary (a manual `ferry
    /// replicate` beside the acting watch's rounds) is no failure: `Ok`, its line starting
    /// `skipped: ` and naming the host and who runs the other round.
    pub outcome: Result<String, String>,
}

impl Deployment {
    /// One replication round for each pool of a hot standby: the replica is sent what the
    /// primary wrote since the last round. Nothing when the spec's standby is not hot or
    /// nothing was built; a pool whose round cannot run (its replica not seeded, a failover
    /// under way) gets an `Err` outcome that says why, and the other pools still replicate.
    pub async fn replicate(&self) -> Result<Vec<ReplicationRound>, OpsError> {
        let state = self.state()?;
        let serving = state.active_generation;
        if serving == 0 {
            return Ok(Vec::new());
        }
        let (providers, _) = self.providers(true)?;
        let outputs = |instance: &InstanceAddress| state.outputs(instance).cloned();
        let mut rounds = Vec::new();
        for pool in self.spec.hot_pools() {
            let replica = pool.address.at(Some(serving + 1));
            let outcome = match (&state.failover, state.instances.get(&replica)) {
                (Some(failover), _) => Err(format!(
                    "a failover from generation {} to {} is under way: its promotion decides which pool is the primary; ferry apply finishes it first",
                    failover.from_generation, failover.to_generation
                )),
                (None, None) => Err(format!(
                    "{replica} was never seeded (or the state forgot it): ferry apply seeds the replica first"
                )),
                (None, Some(_)) => {
                    let Some(provider) = providers.get(pool.address.kind) else {
                        return Err(OpsError::Guard(format!(
                            "no provider for {}",
                            pool.address.kind
                        )));
                    };
                    let inputs = self.replica_inputs(pool, serving, &outputs);
                    provider
                        .tend(
                            &replica,
                            ApplyContext {
                                inputs: &inputs,
                                outputs: &outputs,
                                progress: &|_| {},
                                resume_token: None,
                                record_resume_token: &|_| {},
                            },
                        )
                        .await
                        .map(|done| {
                            done.unwrap_or_else(|| "nothing to do for this kind".to_owned())
                        })
                        .map_err(|error| error.message)
                }
            };
            rounds.push(ReplicationRound {
                pool: pool.address.clone(),
                replica,
                outcome,
            });
        }
        Ok(rounds)
    }

    /// The replica's fields at the generation after `serving`, with the primary's host to
    /// copy from.
    fn replica_inputs(
        &self,
        pool: &ferry_core::ResourceSpec,
        serving: ferry_core::Generation,
        outputs: &dyn Fn(&InstanceAddress) -> Option<Attributes>,
    ) -> Attributes {
        let Some(rules) = self.rules.get(pool.address.kind) else {
            return Attributes::new();
        };
        let output = |instance: &InstanceAddress, name: &str| outputs(instance)?.get(name).cloned();
        let mut inputs = resolve_fields(&self.spec, rules, &pool.address, serving + 1, &output);
        // The round names only the pool and its two hosts: which disks either side is on
        // does not matter to it.
        if let Some(host) = pool
            .str_field(zfs_pool::HOST)
            .and_then(|host| host.parse::<ResourceAddress>().ok())
        {
            inputs.insert(
                zfs_pool::REPLICATE_FROM.to_owned(),
                serde_json::json!(host.at(Some(serving)).to_string()),
            );
        }
        inputs
    }
}
