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
        // A hot pool's two sides: the one it serves from stays, the other is the standby's
        // (planned below: built, or re-seated after a failover).
        let sides = self.hot_sides();
        self.target = generation;
        let first = self.drafts.len();
        let mut instances = Vec::new();
        // Both sides of a hot pool are left out here: the one it serves from stays.
        let hot_disks = self.hot_disks();
        for address in order
            .iter()
            .filter(|address| standby.contains(*address) && !hot_disks.contains(*address))
        {
            let resource = &self.spec.resources[address];
            self.plan_resource(resource);
            let instance = self.target_of(address);
            let upkeep = match self.readings.get(&instance) {
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
        let pools: Vec<ResourceSpec> = self.spec.hot_pools().cloned().collect();
        for (_, side) in &sides {
            instances.extend(self.plan_replica_side(side));
        }
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
        // The replica is on the side the pool does not serve from (`desired` is the serving
        // side's, swapped already after a hot failover).
        let mut desired = self.desired(pool);
        zfs_pool::swap_sides(&mut desired);
        let primary_host = pool
            .str_field(zfs_pool::HOST)
            .and_then(|host| host.parse::<ResourceAddress>().ok())
            .map(|host| host.at(Some(serving)));
        let every = replica_interval_text(&desired);
        // How far behind the primary it read, when it did: the recovery point a failover now
        // would have (a gauge, read afresh by every plan).
        let behind = match &observed {
            Observation::Present { attributes, .. } => attributes
                .get(zfs_pool::REPLICA_LAG_SECONDS)
                .and_then(Value::as_u64)
                .map(|lag| {
                    format!(
                        "; {} behind the primary when read",
                        crate::render::duration(lag)
                    )
                }),
            _ => None,
        }
        .unwrap_or_default();
        let upkeep = Some(format!(
            "a read-only replica of the pool, sent an increment every {every}{behind}"
        ));
        match &observed {
            Observation::Unknown { reason } => {
                self.note_unknown(&instance, reason);
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
                // The replica's disks hold a pool already after a hot failover (the old
                // primary's): it is imported, after the plan's fence of the host it was on
                // (asked again right before, as for any import), and never overwritten.
                let old_hosts = self.old_hosts_of(&desired);
                if !old_hosts.is_empty() {
                    draft.reason = format!(
                        "the replica of {}: the old primary's pool, on its disks now on {}, imported there (after the fence of {}), made a read-only replica and sent what it lacks from {from}; a pool that took writes after its last round (fenced, not handed over) is refused, never rolled back",
                        pool.address,
                        pool.str_field(zfs_pool::HOST).unwrap_or("its host"),
                        old_hosts
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    desired.insert(
                        "fenced_hosts".to_owned(),
                        json!(
                            old_hosts
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                        ),
                    );
                }
                for disk in Self::side(&desired, zfs_pool::DISKS) {
                    let attach = StepId::new(&disk.at(None), Action::Attach);
                    if self.drafts.iter().any(|draft| draft.id == attach) {
                        draft = draft.after(attach);
                    }
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

impl Builder<'_> {
    /// The disk addresses a pool's side lists (`disks` or `replica_disks`).
    pub(super) fn side(attributes: &Attributes, field: &str) -> Vec<ResourceAddress> {
        attributes
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|disk| disk.as_str()?.parse().ok())
            .collect()
    }

    /// The hosts other than the standby's that a side's disks read attached to: where the old
    /// primary's pool was, to be fenced before it is imported anywhere else.
    fn old_hosts_of(&self, desired: &Attributes) -> Vec<InstanceAddress> {
        let standby_host = desired.get(zfs_pool::HOST).and_then(Value::as_str);
        let mut hosts: Vec<InstanceAddress> = Self::side(desired, zfs_pool::DISKS)
            .iter()
            .filter_map(|disk| {
                self.snapshot
                    .get(&disk.at(None))?
                    .attribute(ferry_core::fields::disk::VM)?
                    .as_str()
                    .filter(|vm| Some(*vm) != standby_host)?
                    .parse()
                    .ok()
            })
            .collect();
        hosts.sort();
        hosts.dedup();
        hosts
    }

    /// Every disk of a hot pool, on either side.
    pub(super) fn hot_disks(&self) -> std::collections::BTreeSet<ResourceAddress> {
        self.spec
            .hot_pools()
            .flat_map(|pool| {
                let mut both = Self::side(&pool.fields, zfs_pool::DISKS);
                both.extend(Self::side(&pool.fields, zfs_pool::REPLICA_DISKS));
                both
            })
            .collect()
    }

    /// Each hot pool's two sides: the disks it serves from stay where they are, and the
    /// other side's (`replica_disks`, or the pool's own `disks` after a hot failover) are the
    /// standby's: `(pool, the other side)` for each pool.
    pub(super) fn hot_sides(&self) -> Vec<(ResourceAddress, Vec<ResourceAddress>)> {
        self.spec
            .hot_pools()
            .map(|pool| {
                let field = if self.swapped.contains(&pool.address) {
                    zfs_pool::DISKS
                } else {
                    zfs_pool::REPLICA_DISKS
                };
                (pool.address.clone(), Self::side(&pool.fields, field))
            })
            .collect()
    }

    /// The standby's side of a hot pool, at the standby's generation: a disk missing is
    /// created there; one attached to another generation's host (the old primary's, after a
    /// hot failover: the failback) is re-seated with the moves a failover makes (its old host
    /// fenced, the disk detached, moved to the standby's group and attached), so that it holds
    /// the next replica.
    fn plan_replica_side(&mut self, disks: &[ResourceAddress]) -> Vec<KeptInstance> {
        let mut kept = Vec::new();
        for disk in disks {
            let Some(resource) = self.spec.resources.get(disk) else {
                continue;
            };
            let instance = disk.at(None);
            let observed = self.observation(&instance);
            let desired = self.desired(resource);
            let attached = observed
                .attribute(ferry_core::fields::disk::VM)
                .and_then(Value::as_str)
                .and_then(|vm| vm.parse::<InstanceAddress>().ok());
            match attached.filter(|vm| vm.generation != Some(self.target)) {
                Some(old_host) => {
                    let context = FailoverContext {
                        spec: resource,
                        observed: &observed,
                        from_generation: old_host.generation.unwrap_or(self.target),
                        to_generation: self.target,
                        snapshot: self.snapshot,
                        inputs: &desired,
                    };
                    match self.rules(disk.kind).failover(&context) {
                        Ok(drafts) => {
                            for draft in drafts {
                                self.push(draft, None);
                            }
                        }
                        Err(message) => self.errors.push(
                            PlanError::new(Some(instance.clone()), message).help(
                                "make it readable again and plan again: the standby's disks move only from a known reading",
                            ),
                        ),
                    }
                }
                None => self.plan_resource(resource),
            }
            let upkeep = match &observed {
                Observation::Present { attributes, .. } => self.rules(disk.kind).upkeep(attributes),
                _ => self.rules(disk.kind).upkeep(&desired),
            };
            kept.push(KeptInstance {
                address: instance,
                upkeep,
            });
        }
        kept
    }
}
