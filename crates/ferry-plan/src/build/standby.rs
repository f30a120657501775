//! The warm standby: the generation after the serving one, built ahead of a failover and kept
//! ready (`[failover] standby = "warm"`), so that a failover finds the cluster, the NFS VM
//! and the idle hubs there and only moves the data, runs what needs it and repoints.
//!
//! The standby is planned like the serving generation, resource by resource from its own
//! readings, with the same rules (nothing created from an unknown reading, nothing that
//! depends on a held-back resource planned), but only for the spec's standby resources
//! ([`Spec::standby_resources`]): nothing stateful and nothing that needs the data.

use ferry_core::{KeptInstance, StandbyGeneration};

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
                "the warm standby: generation {} is built by the first apply after this failover, once generation {} serves",
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
        self.target = generation;
        let first = self.drafts.len();
        let mut instances = Vec::new();
        for address in order.iter().filter(|address| standby.contains(*address)) {
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
        for draft in &mut self.drafts[first..] {
            draft.step.reason = format!(
                "the warm standby, generation {generation}: {}",
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
}
