//! The warm standby: the generation after the serving one, built ahead of a failover and kept
//! ready (`[failover] standby = "warm"`), so that a failover finds the cluster, the NFS VM
//! and the idle hubs there and only moves the data, runs what needs it and repoints.
//!
//! The standby is planned like the serving generation, resource by resource from its own
//! readings, with the same rules (nothing created from an unknown reading, nothing that
//! depends on a held-back resource planned), but only for the spec's standby resources
//! ([`Spec::standby_resources`]): nothing stateful and nothing that needs the data.

use ferry_core::fields::zfs_pool;
use ferry_core::{KeptInstance, StandbyGeneration, StepId, Value};
use serde_json::json;

use super::*;

impl Builder<'_> {
    /// Plans the standby generation after the serving one: creates what is missing, updates
    /// what drifted. `None` when the spec has no standby; in a failover it is not planned
    /// (the generation a failover moves to was the standby), and a note says so.
    pub(super) fn plan_standby(&mut self, order: &[ResourceAddress]) -> Option<StandbyGeneration> {
        let standby = self.spec.standby_resources();
        if standby.is_empty() {
            return None;
        }
        if let Some(failover) = &self.failover {
            self.notes.push(format!(
                "the {} standby: generation {} is built by the first apply after this failover, once generation {} serves",
                self.spec.failover.standby.as_str(),
                failover.to_generation + 1,
                failover.to_generation
            ));
            return None;
        }
        let serving = self.target;
        let generation = serving + 1;
        self.standby_generation = Some(generation);
        // The standby is its own generation: what the serving pass held back or changed says
        // nothing about it, and its own holds stay its own.
        let held = std::mem::take(&mut self.held);
        let changed = std::mem::take(&mut self.changed);
        // Pools a hot failover left serving from their replica's disks: those disks serve,
        // and no replica is kept until a failback makes the old primary's disks one.
        let swapped = self.swapped.clone();
        let serving_disks = self.serving_replica_disks();
        for pool in &swapped {
            self.notes.push(format!(
                "{pool} serves from its replica_disks since the hot failover; its own disks stay on the old primary's host, and the hot standby keeps no replica of it until a failback makes them one (not built yet): failover readiness says so"
            ));
        }
        self.target = generation;
        let first = self.drafts.len();
        let mut instances = Vec::new();
        for address in order
            .iter()
            .filter(|address| standby.contains(*address) && !serving_disks.contains(*address))
        {
            let resource = &self.spec.resources[address];
            self.plan_resource(resource);
            let instance = self.target_of(address);
            let upkeep = match self.snapshot.get(&instance) {
                Some(Observation::Present { attributes, .. }) => {
                    self.rules(address.kind).upkeep(attributes)
                }
                _ => {
                    let desired = self.desired(resource);
                    self.rules(address.kind).upkeep(&desired)
                }
            };
            instances.push(KeptInstance {
                address: instance,
                upkeep,
            });
        }
        let pools: Vec<ResourceSpec> = self
            .spec
            .hot_pools()
            .filter(|pool| !swapped.contains(&pool.address))
            .cloned()
            .collect();
        for pool in &pools {
            if let Some(replica) = self.plan_replica(pool, serving) {
                instances.push(replica);
            }
        }
        let temperature = match self.spec.failover.standby {
            ferry_spec::Standby::Hot => "hot",
            _ => "warm",
        };
        for draft in &mut self.drafts[first..] {
            draft.step.reason = format!(
                "the {temperature} standby, generation {generation}: {}",
                draft.step.reason
            );
        }
        self.target = serving;
        self.held = held;
        self.changed = changed;
        instances.sort_by(|one, other| one.address.cmp(&other.address));
        Some(StandbyGeneration {
            generation,
            instances,
        })
    }

    /// A hot standby's replica of `pool`, the pool's instance in the standby generation
    /// (`zfs_pool.home@g2`) on the replica's disks: seeded when it reads absent (the pool
    /// created on them, marked a read-only replica, and a first full round sent from the
    /// primary), and otherwise left to the replication rounds, which keep it current. A pool
    /// there that is no replica is never written over: a warning says what it is.
    fn plan_replica(&mut self, pool: &ResourceSpec, serving: Generation) -> Option<KeptInstance> {
        let instance = pool.address.at(Some(self.target));
        let observed = self.observation(&instance);
        let mut desired = self.desired(pool);
        zfs_pool::replica_view(&mut desired);
        let primary_host = pool
            .str_field(zfs_pool::HOST)
            .and_then(|host| host.parse::<ResourceAddress>().ok())
            .map(|host| host.at(Some(serving)));
        let every = replica_interval_text(&desired);
        let upkeep = Some(format!(
            "a read-only replica of the pool, sent an increment every {every}"
        ));
        match &observed {
            Observation::Unknown { reason } => {
                self.unknown
                    .entry(instance.clone())
                    .or_insert_with(|| UnknownReading {
                        address: instance.clone(),
                        reason: reason.clone(),
                        held_back: Vec::new(),
                    });
                self.notes.push(format!(
                    "{instance}: not planned, its reading is unknown ({reason}); the hot standby's replica is never seeded over what ferry cannot read"
                ));
                self.hold(&pool.address, instance.clone());
            }
            Observation::Absent => {
                let from = primary_host
                    .as_ref()
                    .map_or_else(|| "the primary".to_owned(), ToString::to_string);
                let mut draft = StepDraft::new(
                    instance.clone(),
                    Action::Create,
                    format!(
                        "the replica of {}: the pool created on its replica_disks, made a read-only replica, and seeded by a full send from {from}; the replication rounds keep it current",
                        pool.address
                    ),
                );
                if let Some(host) = &primary_host {
                    desired.insert(zfs_pool::REPLICATE_FROM.to_owned(), json!(host.to_string()));
                }
                for action in [Action::Create, Action::Import, Action::Promote] {
                    let primary = StepId::new(&pool.address.at(None), action);
                    if self.drafts.iter().any(|draft| draft.id == primary) {
                        draft = draft.after(primary);
                    }
                }
                // The replica's datasets are the primary's, as the rounds bring them: the seed
                // creates none of its own.
                desired.remove("datasets");
                let rules = self.rules(pool.address.kind);
                draft.changes = resource::creation_changes(&desired, rules);
                draft.inputs = desired;
                self.push(draft, Some(pool));
            }
            Observation::Present { attributes, .. } => {
                let role = attributes
                    .get(zfs_pool::REPLICATION_ROLE)
                    .and_then(Value::as_str);
                if role != Some("replica") {
                    self.notes.push(format!(
                        "{instance}: the hot standby's pool reads as {}, not as a read-only replica: ferry neither promotes nor overwrites it; a failover to generation {} would be refused",
                        role.map_or_else(|| "a pool outside any replication".to_owned(), |role| format!("a {role}")),
                        self.target
                    ));
                }
            }
        }
        Some(KeptInstance {
            address: instance,
            upkeep,
        })
    }
}

/// A pool's replication interval as the spec writes it (`1m` by default).
fn replica_interval_text(attributes: &Attributes) -> String {
    attributes
        .get(zfs_pool::REPLICA_INTERVAL)
        .and_then(Value::as_str)
        .unwrap_or("1m")
        .to_owned()
}
