//! The old generation retired after a failover, and what the spec dropped deleted.

use super::*;

impl Builder<'_> {
    /// Retires the previous generation after a failover, and deletes what the spec dropped.
    pub(super) fn plan_old_instances(&mut self) {
        let relied_on = self.relied_on_by_held();
        let retire_from = self
            .failover
            .as_ref()
            .map(|failover| failover.from_generation);
        let readings: Vec<(InstanceAddress, Observation)> = self
            .snapshot
            .resources
            .iter()
            .map(|(instance, observation)| (instance.clone(), observation.clone()))
            .collect();
        for (instance, observation) in readings.into_iter().rev() {
            let in_spec = self.spec.resources.get(&instance.address);
            let old_generation = instance
                .generation
                .filter(|generation| *generation < self.target || retire_from == Some(*generation));
            match (in_spec, old_generation, &observation) {
                (Some(_), Some(_), Observation::Present { .. })
                    if relied_on.contains_key(&instance.address) =>
                {
                    let source = &relied_on[&instance.address];
                    self.notes.push(format!(
                        "{instance}: not retired, {source} reads unknown and may still rely on it; a later apply retires it"
                    ));
                }
                (Some(_), Some(generation), Observation::Present { .. }) => {
                    let reason = if instance.kind() == Kind::Hook {
                        format!(
                            "generation {} serves now: forget generation {generation}'s run, whose deployment goes with its cluster",
                            self.target
                        )
                    } else {
                        format!(
                            "generation {} serves now: generation {generation} is retired",
                            self.target
                        )
                    };
                    self.push(StepDraft::new(instance, Action::Retire, reason), None);
                }
                (Some(_), Some(_), Observation::Unknown { reason }) => self.notes.push(format!(
                    "{instance}: not retired, its reading is unknown ({reason}); a later apply retires it"
                )),
                (None, _, Observation::Present { .. }) if instance.kind().is_stateful() => {
                    self.errors.push(
                        PlanError::new(
                            Some(instance.clone()),
                            "it exists but the spec no longer declares it, and ferry never deletes a stateful resource implicitly",
                        )
                        .help(format!(
                            "declare [{}] again with ensure = \"absent\" and allow_destroy = true, then run with --allow-destroy",
                            instance.address
                        )),
                    );
                }
                (None, _, Observation::Present { .. }) => {
                    let reason = "the spec no longer declares it";
                    self.push(StepDraft::new(instance, Action::Delete, reason), None);
                }
                _ => {}
            }
        }
    }
}
