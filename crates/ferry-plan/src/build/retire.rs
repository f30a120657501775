//! The old generation retired after a failover, and what the spec dropped deleted.

use ferry_core::retention::{kept_until, retention_end};
use ferry_core::time::format_time;
use ferry_core::{KeptGeneration, KeptInstance, KeptUntil, RetireOld};

use super::*;

impl Builder<'_> {
    /// Retires the previous generation after a failover, and deletes what the spec dropped.
    pub(super) fn plan_old_instances(&mut self) {
        let relied_on = self.relied_on_by_held();
        // Which stateful instances read placed on each instance, once for the whole pass; the
        // old primary's disks a failback re-seats on the standby (planned after this pass)
        // leave their old generation too.
        let reseated: BTreeSet<ResourceAddress> = match self.failover {
            Some(_) => BTreeSet::new(),
            None => self
                .hot_sides()
                .into_iter()
                .flat_map(|(_, side)| side)
                .collect(),
        };
        let mut placed: BTreeMap<InstanceAddress, Vec<InstanceAddress>> = BTreeMap::new();
        for placement in crate::world::placements(self.snapshot, self.rules)
            .into_iter()
            .filter(|placement| !reseated.contains(&placement.instance.address))
        {
            placed
                .entry(placement.on)
                .or_default()
                .push(placement.instance);
        }
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
        let needed_by_kept = self.needed_by_kept(&placed, &readings, retire_from);
        for (instance, observation) in readings.into_iter().rev() {
            // A hot standby's replica (`zfs_pool.home@g2`) holds data: never retired, whatever
            // its generation; what becomes of it is its pool's failover and failback.
            if instance.kind().is_stateful() && instance.generation.is_some() {
                continue;
            }
            let in_spec = self.spec.resources.get(&instance.address);
            if in_spec.is_some() && self.beyond_the_standby(&instance) {
                self.retire_beyond_the_standby(instance, &observation);
                continue;
            }
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
                (Some(_), Some(_), Observation::Present { .. })
                    if needed_by_kept.contains_key(&instance) =>
                {
                    let (kept, why) = &needed_by_kept[&instance];
                    self.notes.push(format!(
                        "{instance}: not retired, {kept} needs it and is kept ({why}); it is retired with {kept}"
                    ));
                }
                (Some(_), Some(_), Observation::Present { .. })
                    if self.data_left_on(&placed, &instance).is_some() =>
                {
                    let data = self
                        .data_left_on(&placed, &instance)
                        .expect("checked by the guard");
                    let next = if self.failover.is_some() && self.spec.hot_pools().next().is_some() {
                        " (a hot failover moves no disk: the apply after it re-seats the old primary's disks on the next standby, then retires this)"
                    } else {
                        ""
                    };
                    self.notes.push(format!(
                        "{instance}: not retired, {data} is still on it and this plan moves it nowhere{next}; it is retired once nothing stateful is on it"
                    ));
                }
                (Some(_), Some(generation), Observation::Present { attributes, .. })
                    if self.retention_of(generation).is_some() =>
                {
                    let until = self.retention_of(generation).expect("checked by the guard");
                    let upkeep = self.upkeep(&instance, attributes);
                    self.kept
                        .entry(generation)
                        .or_insert_with(|| KeptGeneration {
                            generation,
                            until,
                            instances: Vec::new(),
                        })
                        .instances
                        .push(KeptInstance {
                            address: instance,
                            upkeep,
                        });
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
                    let reason = match self.retention_ended(generation) {
                        Some(ended) => format!("{reason} ({ended})"),
                        None => reason,
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

    /// What an old instance this plan does not retire needs of its own generation, directly or
    /// not (the old NFS VM its public IP and network, which Azure refuses to delete while its
    /// network interface holds them), each with that instance and why it stays: kept too. An
    /// instance stays while data is on it, or while its reading is unknown.
    fn needed_by_kept(
        &self,
        placed: &BTreeMap<InstanceAddress, Vec<InstanceAddress>>,
        readings: &[(InstanceAddress, Observation)],
        retire_from: Option<Generation>,
    ) -> BTreeMap<InstanceAddress, (InstanceAddress, String)> {
        let mut needed: BTreeMap<InstanceAddress, (InstanceAddress, String)> = BTreeMap::new();
        let mut stack: Vec<(InstanceAddress, InstanceAddress, String)> = readings
            .iter()
            .filter(|(instance, _)| {
                self.spec.resources.contains_key(&instance.address)
                    && instance.kind().is_replaceable()
                    && instance.generation.is_some_and(|generation| {
                        generation < self.target || retire_from == Some(generation)
                    })
            })
            .filter_map(|(instance, observation)| {
                let why = match observation {
                    Observation::Present { .. } => {
                        format!("{} is on it", self.data_left_on(placed, instance)?)
                    }
                    Observation::Unknown { .. } => "its reading is unknown".to_owned(),
                    Observation::Absent => return None,
                };
                Some((instance.clone(), instance.clone(), why))
            })
            .collect();
        let kept: BTreeSet<InstanceAddress> = stack.iter().map(|(one, ..)| one.clone()).collect();
        while let Some((instance, holder, why)) = stack.pop() {
            for dependency in self
                .dependencies
                .get(&instance.address)
                .into_iter()
                .flatten()
            {
                if !dependency.kind.is_replaceable() {
                    continue;
                }
                let needs = dependency.at(instance.generation);
                if needs == instance || kept.contains(&needs) || needed.contains_key(&needs) {
                    continue;
                }
                needed.insert(needs.clone(), (holder.clone(), why.clone()));
                stack.push((needs, holder.clone(), why.clone()));
            }
        }
        needed
    }

    /// Whether an instance is of the generation after the serving one without being part of
    /// its warm standby, outside a failover: the spec turned cold, a hook's `standby = true`
    /// removed, or a failover's first creates whose record went with a lost state. No data is
    /// on it (the world would show a failover under way otherwise), nothing serves from it,
    /// and it costs.
    fn beyond_the_standby(&self, instance: &InstanceAddress) -> bool {
        self.failover.is_none()
            && instance.generation == Some(self.target + 1)
            && !self.spec.is_standby(&instance.address)
    }

    fn retire_beyond_the_standby(&mut self, instance: InstanceAddress, observation: &Observation) {
        let generation = self.target + 1;
        match observation {
            Observation::Present { .. } => {
                let reason = if self.spec.standby_resources().is_empty() {
                    format!(
                        "generation {generation} is no warm standby (the spec keeps none) and nothing serves from it: retired"
                    )
                } else {
                    format!(
                        "not part of the warm standby, generation {generation}, and nothing serves from it: retired"
                    )
                };
                self.push(StepDraft::new(instance, Action::Retire, reason), None);
            }
            Observation::Unknown { reason } => self.notes.push(format!(
                "{instance}: not retired, its reading is unknown ({reason}); a later apply retires it"
            )),
            Observation::Absent => {}
        }
    }

    /// When a generation that no longer serves goes, as `--retire-old` or the spec's
    /// `[failover] retire_old` says: `None` when it is retired by this plan.
    /// A stateful instance that reads placed on `instance` (a disk attached to that VM or in
    /// that group) and that no step of this plan moves: retiring `instance` would take the
    /// data with it (a group's deletion deletes its disks).
    fn data_left_on(
        &self,
        placed: &BTreeMap<InstanceAddress, Vec<InstanceAddress>>,
        instance: &InstanceAddress,
    ) -> Option<InstanceAddress> {
        placed
            .get(instance)?
            .iter()
            .find(|data| {
                !self.drafts.iter().any(|draft| {
                    &draft.step.target == *data
                        && matches!(
                            draft.step.action,
                            Action::Detach
                                | Action::Move
                                | Action::Import
                                | Action::Export
                                | Action::Promote
                        )
                })
            })
            .cloned()
    }

    fn retention_of(&self, generation: Generation) -> Option<KeptUntil> {
        let leaving_now = self
            .failover
            .as_ref()
            .is_some_and(|failover| failover.from_generation == generation);
        kept_until(
            self.retire_old(),
            self.stood_down(generation),
            leaving_now,
            self.config.now,
        )
    }

    fn stood_down(&self, generation: Generation) -> Option<&str> {
        self.snapshot
            .stood_down
            .get(&generation)
            .map(String::as_str)
    }

    /// Why an old generation kept for a while is retired now, for its steps' reasons.
    fn retention_ended(&self, generation: Generation) -> Option<String> {
        match (self.retire_old(), self.config.retire_old) {
            (RetireOld::Now, Some(RetireOld::Now)) => Some("--retire-old now".to_owned()),
            (RetireOld::After(duration), _) => {
                let until = retention_end(self.stood_down(generation), duration)?;
                Some(format!(
                    "kept {} after its failover, until {}",
                    RetireOld::After(duration),
                    format_time(until)
                ))
            }
            _ => None,
        }
    }

    /// What a kept instance keeps costing once this plan is applied: a VM this plan fences
    /// is deallocated by then.
    fn upkeep(&self, instance: &InstanceAddress, observed: &Attributes) -> Option<String> {
        let rules = self.rules.get(instance.kind())?;
        let fenced = self
            .drafts
            .iter()
            .any(|draft| draft.step.action == Action::Fence && &draft.step.target == instance);
        if !fenced {
            return rules.upkeep(observed);
        }
        let mut after = observed.clone();
        after.insert(
            ferry_core::fields::vm::POWER_STATE.to_owned(),
            ferry_core::Value::from("deallocated"),
        );
        rules.upkeep(&after)
    }

    fn retire_old(&self) -> RetireOld {
        self.config
            .retire_old
            .unwrap_or(self.spec.failover.retire_old)
    }
}
