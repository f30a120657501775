//! One resource's steps: a check or hook run again, a create, update, replacement or delete
//! from the diff of its spec and its reading, and a stateful resource's failover moves.

use super::*;

impl<'a> Builder<'a> {
    pub(super) fn plan_check(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        observed: &Observation,
        desired: Attributes,
        upstream_changed: Option<ResourceAddress>,
    ) {
        let reason = match (upstream_changed, observed) {
            (Some(upstream), _) => format!("{upstream} changes: wait until the check passes again"),
            (
                None,
                Observation::Present {
                    health: ferry_core::Health::Healthy,
                    ..
                },
            ) => return,
            (None, observation) => {
                format!("the check does not pass now ({})", observation.describe())
            }
        };
        let mut draft = StepDraft::new(instance, Action::Wait, reason);
        draft.inputs = desired;
        self.push(draft, Some(resource));
    }

    pub(super) fn plan_hook(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        observed: &Observation,
        desired: Attributes,
    ) {
        let rules = self.rules(Kind::Hook);
        let (reason, changes) = match observed {
            Observation::Unknown { reason } => {
                self.notes.push(format!(
                    "{instance}: not planned, its last run is unknown ({reason})"
                ));
                self.hold(&resource.address, instance);
                return;
            }
            Observation::Absent => (
                match instance.generation {
                    Some(generation) if self.failover.is_some() => {
                        format!("generation {generation} needs it run")
                    }
                    _ => "it has never run".to_owned(),
                },
                creation_changes(&desired, rules),
            ),
            Observation::Present { attributes, .. } => {
                let changes = diff(&desired, attributes, rules, &|_| false);
                if changes.is_empty() {
                    return;
                }
                (
                    format!("its inputs changed: {}", change_paths(&changes)),
                    changes.into(),
                )
            }
        };
        let mut draft = StepDraft::new(instance, Action::Run, reason);
        draft.changes = changes;
        draft.inputs = desired;
        self.push(draft, Some(resource));
    }

    pub(super) fn plan_generic(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        observed: &Observation,
        desired: Attributes,
    ) {
        if resource.ensure == Ensure::Absent {
            self.plan_deletion(resource, instance, observed, desired);
            return;
        }
        match observed {
            Observation::Unknown { reason } => {
                self.plan_unknown(resource, instance, observed, reason, &desired);
            }
            Observation::Absent => self.plan_absent(resource, instance, desired),
            Observation::Present {
                attributes,
                health: Health::Failed { reason },
            } if !resource.address.kind.is_stateful() => {
                let why = format!("its provisioning failed ({reason}): it is built again");
                self.plan_rebuild(resource, instance, attributes, why, desired);
            }
            // A failover onto a generation built before it (a warm standby) moves the service
            // onto what is there: an instance of it that reads unhealthy (the standby's own
            // API server dead too) is built again first, or the data would move onto it.
            Observation::Present {
                attributes,
                health: Health::Unhealthy { reason },
            } if !resource.address.kind.is_stateful()
                && self.failover.as_ref().is_some_and(|failover| {
                    instance.generation == Some(failover.to_generation)
                }) =>
            {
                let why = format!(
                    "it reads unhealthy ({reason}): built again before the service moves onto it"
                );
                self.plan_rebuild(resource, instance, attributes, why, desired);
            }
            // A failover moves stateful resources and never creates them: one still being
            // created there is left to the warnings, as any reading no step answers.
            Observation::Present {
                health: Health::Creating { reason },
                ..
            } if !(resource.address.kind.is_stateful() && self.failover.is_some()) => {
                self.plan_unfinished_create(resource, instance, reason, desired);
            }
            Observation::Present { attributes, .. } => {
                self.plan_present(resource, instance, observed, attributes, desired);
            }
        }
    }

    /// A resource the spec says is absent: deleted when it reads present (a stateful one only
    /// with both opt-ins), held back when its reading is unknown.
    pub(super) fn plan_deletion(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        observed: &Observation,
        desired: Attributes,
    ) {
        match observed {
            Observation::Present { .. } => {
                if resource.address.kind.is_stateful()
                    && !(resource.allow_destroy && self.config.allow_destroy)
                {
                    self.errors.push(
                        PlanError::new(
                            Some(instance),
                            "the spec deletes a stateful resource, which needs two opt-ins",
                        )
                        .help("keep allow_destroy = true in the spec and pass --allow-destroy"),
                    );
                    return;
                }
                let reason = "the spec says ensure = \"absent\"";
                let mut draft = StepDraft::new(instance, Action::Delete, reason);
                // The spec's literal fields, so that the provider can find what it deletes
                // (and how, such as a record's wait for its old ttl) when ferry's state
                // forgot it; a value from another step's output is left out, since a
                // delete never waits for one.
                draft.inputs = desired
                    .into_iter()
                    .filter(|(_, value)| value::unresolved(value).is_empty())
                    .collect();
                self.push(draft, Some(resource));
            }
            Observation::Unknown { reason } => {
                self.notes.push(format!(
                    "{instance}: not deleted, its reading is unknown ({reason})"
                ));
                self.hold(&resource.address, instance);
            }
            Observation::Absent => {}
        }
    }

    /// An instance whose reading is unknown: nothing is planned for it, except the moves a
    /// failover makes of a stateful resource.
    pub(super) fn plan_unknown(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        observed: &Observation,
        reason: &str,
        desired: &Attributes,
    ) {
        // A failover still moves a stateful resource that cannot be read, when its
        // kind's rules know how to do that safely (a pool behind a fence); the others
        // refuse. Nothing else is planned from an unknown reading.
        if resource.address.kind.is_stateful() && self.failover.is_some() {
            let before = self.drafts.len();
            self.plan_failover_moves(resource, &instance, observed, desired);
            // A kind with no move for an unreadable instance (a DNS record, which a
            // failover repoints by an update from its reading) is held back like any
            // other unknown: nothing that relies on it goes ahead.
            if self.drafts[before..]
                .iter()
                .any(|draft| draft.step.target == instance)
            {
                return;
            }
        }
        self.notes.push(format!(
            "{instance}: not planned, its reading is unknown ({reason}); nothing is created or deleted on an unknown reading"
        ));
        self.hold(&resource.address, instance);
    }

    /// An instance that reads absent is created, unless a failover would have to create a
    /// stateful resource, which it never does.
    pub(super) fn plan_absent(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        desired: Attributes,
    ) {
        if resource.address.kind.is_stateful() && self.failover.is_some() {
            self.errors.push(
                PlanError::new(
                    Some(instance),
                    "it reads absent, and a failover moves stateful resources, it never creates them",
                )
                .help("find out what happened to it before failing over; plan with --no-failover to create it anew"),
            );
            return;
        }
        let reason = match (&self.failover, instance.generation) {
            (Some(failover), Some(generation)) => format!(
                "generation {generation} is built beside generation {} (failover)",
                failover.from_generation
            ),
            _ => "it does not exist".to_owned(),
        };
        let rules = self.rules(resource.address.kind);
        let mut draft = StepDraft::new(instance, Action::Create, reason);
        draft.changes = creation_changes(&desired, rules);
        draft.inputs = desired;
        self.push(draft, Some(resource));
    }

    /// A resource whose create an earlier apply started and did not see finish (killed, or
    /// past its time limit) reads present while Azure is still creating it. It is not built:
    /// its create is planned again, with the same step id, so that the engine resumes the
    /// operation the journal recorded for it; without a record, the provider's request waits
    /// for the operation in progress and is then sent again, unchanged. Either way whatever
    /// needs the resource waits for that step, as it would for any create.
    pub(super) fn plan_unfinished_create(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        reason: &str,
        desired: Attributes,
    ) {
        let rules = self.rules(resource.address.kind);
        let mut draft = StepDraft::new(
            instance,
            Action::Create,
            format!(
                "its create has not finished ({reason}): the step waits for it and completes it"
            ),
        );
        draft.changes = creation_changes(&desired, rules);
        draft.inputs = desired;
        self.push(draft, Some(resource));
    }

    /// A replaceable instance that is there but cannot serve (its provisioning failed; or,
    /// in a failover onto a generation built ahead, it reads unhealthy) is built again.
    pub(super) fn plan_rebuild(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        attributes: &Attributes,
        why: String,
        desired: Attributes,
    ) {
        let rules = self.rules(resource.address.kind);
        let mut draft = StepDraft::new(instance, Action::Replace, why);
        draft.changes = diff(&desired, attributes, rules, &|_| false).into();
        draft.inputs = desired;
        self.push(draft, Some(resource));
    }

    /// An instance that reads present: nothing when it matches the spec, else an update in
    /// place or a replacement (never of a stateful resource). Inside a failover a stateful
    /// instance's moves come first, and what they set is not an update's.
    pub(super) fn plan_present(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        observed: &Observation,
        attributes: &Attributes,
        desired: Attributes,
    ) {
        let kind = resource.address.kind;
        let rules = self.rules(kind);
        let stateful = kind.is_stateful();
        let moves_in_failover = stateful && self.failover.is_some();
        // What the failover's own steps set (the attach's lun, say) is theirs to set,
        // not an update's.
        let mut moved = if moves_in_failover {
            self.plan_failover_moves(resource, &instance, observed, &desired)
        } else {
            BTreeSet::new()
        };
        // A hot pool's sides are its failover's to settle (a promotion, or its refusal when
        // there is no replica to promote), never an update's.
        if moves_in_failover
            && self
                .spec
                .hot_pools()
                .any(|pool| pool.address == resource.address)
        {
            moved.insert(ferry_core::fields::zfs_pool::DISKS.to_owned());
            moved.insert(ferry_core::fields::zfs_pool::REPLICA_DISKS.to_owned());
        }
        let relocated = |name: &str| {
            moved.contains(name)
                || moves_in_failover
                    && relocated_reference(rules, name, desired.get(name), attributes)
        };
        let mut changes = diff(&desired, attributes, rules, &relocated);
        if !moved.is_empty() {
            // An instance the failover's own steps move still reads where it is now,
            // which may not show every attribute (a pool exported by a killed apply
            // reads as importable: its datasets are read once it is imported). What
            // the reading does not show is compared by the plan after the move, never
            // set on the instance's old placement by an update here.
            changes.retain(|change| change.before.is_some());
        }
        // The fields the failover's own steps move (a disk's group and VM) are not an
        // update's to set: an update in a failover (a disk grown) runs after them.
        let placed: BTreeSet<String> = desired
            .keys()
            .filter(|name| relocated(name))
            .cloned()
            .collect();
        let mut desired = desired;
        add_implied_changes(rules, resource, attributes, &mut desired, &mut changes);
        changes.sort_by(|left, right| left.path.cmp(&right.path));
        // `--replace` (checked in `check_replacements`: never a stateful resource, nor one a
        // stateful resource is placed on): built again whatever the diff says.
        if !stateful && self.failover.is_none() && self.config.replace.contains(&resource.address) {
            let mut draft = StepDraft::new(
                instance,
                Action::Replace,
                "its replacement was asked for (--replace)".to_owned(),
            );
            draft.changes = mark_forced_replacements(rules, changes).into();
            draft.inputs = desired;
            self.push(draft, Some(resource));
            return;
        }
        if changes.is_empty() {
            return;
        }
        let replacement = match forced_replacement(rules, &instance, &changes) {
            Ok(replacement) => replacement,
            Err(error) => {
                self.errors.push(error);
                return;
            }
        };
        let changes = mark_forced_replacements(rules, changes);
        let (mut draft, estimate_seconds) = match replacement {
            Some((path, why)) if stateful => {
                self.errors.push(
                    PlanError::new(
                        Some(instance),
                        format!("changing {path} would replace a stateful resource ({why})"),
                    )
                    .help("ferry never recreates a stateful resource: revert the change, or move the data yourself"),
                );
                return;
            }
            Some((path, why)) => (
                StepDraft::new(instance, Action::Replace, format!("{path} changed: {why}")),
                None,
            ),
            None => update_draft(rules, resource, instance, attributes, &changes),
        };
        draft.changes = changes.into();
        draft.inputs = desired;
        if moves_in_failover {
            draft.inputs.retain(|name, _| !placed.contains(name));
        }
        self.push_estimated(draft, Some(resource), estimate_seconds);
    }

    /// Asks a stateful kind's rules how it moves to the new generation; returns the fields
    /// that the instance's own failover steps set.
    pub(super) fn plan_failover_moves(
        &mut self,
        resource: &ResourceSpec,
        instance: &InstanceAddress,
        observed: &Observation,
        desired: &Attributes,
    ) -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        let Some(failover) = self.failover.clone() else {
            return set;
        };
        let context = FailoverContext {
            spec: resource,
            observed,
            from_generation: failover.from_generation,
            to_generation: failover.to_generation,
            snapshot: self.snapshot,
            inputs: desired,
        };
        match self.rules(resource.address.kind).failover(&context) {
            Ok(drafts) => {
                for draft in drafts {
                    if &draft.target == instance {
                        set.extend(draft.inputs.keys().cloned());
                    }
                    self.push(draft, None);
                }
            }
            // The rules' message says what to do; an unknown reading gets the usual advice.
            Err(message) => self.errors.push(match observed {
                Observation::Unknown { .. } => PlanError::new(Some(instance.clone()), message)
                    .help("make it readable again (or find out why it is not) and plan again"),
                _ => PlanError::new(Some(instance.clone()), message),
            }),
        }
        set
    }
}

/// Adds what every converged instance of the kind is although the spec does not write it (a
/// VM of the serving generation runs) to `changes` and `desired`, where the spec's own changes
/// do not already set it. Only the target generation's instance is asked: an older
/// generation's is fenced and retired in `plan_old_instances`, never updated.
pub(super) fn add_implied_changes(
    rules: &dyn KindRules,
    resource: &ResourceSpec,
    attributes: &Attributes,
    desired: &mut Attributes,
    changes: &mut Vec<AttributeChange>,
) {
    for change in rules.implied_changes(resource, attributes) {
        if changes
            .iter()
            .any(|spec_change| spec_change.path == change.path)
        {
            continue;
        }
        if let Some(after) = &change.after {
            desired.insert(change.path.clone(), after.clone());
        }
        changes.push(change);
    }
}

/// The change that forces a replacement, with the rules' reason (the last such change, in
/// path order), or `None` when every change can be made in place. A change the rules refuse
/// is an error; changes to values known only at apply are not classified.
pub(super) fn forced_replacement(
    rules: &dyn KindRules,
    instance: &InstanceAddress,
    changes: &[AttributeChange],
) -> Result<Option<(String, String)>, PlanError> {
    let mut replacement = None;
    for change in changes {
        let (Some(before), Some(after)) = (&change.before, &change.after) else {
            continue;
        };
        if !value::unresolved(after).is_empty() {
            continue;
        }
        match rules.classify_change(&change.path, before, after) {
            ChangeClass::InPlace => {}
            ChangeClass::Replace(why) => replacement = Some((change.path.clone(), why)),
            ChangeClass::Refuse(why) => {
                return Err(PlanError::new(
                    Some(instance.clone()),
                    format!("{}: {why}", change.path),
                ));
            }
        }
    }
    Ok(replacement)
}

/// Notes on each change that forces a replacement why it does.
pub(super) fn mark_forced_replacements(
    rules: &dyn KindRules,
    changes: Vec<AttributeChange>,
) -> Vec<AttributeChange> {
    changes
        .into_iter()
        .map(|mut change| {
            if let (Some(before), Some(after)) = (&change.before, &change.after)
                && let ChangeClass::Replace(why) =
                    rules.classify_change(&change.path, before, after)
            {
                change.forces_replacement = Some(why);
            }
            change
        })
        .collect()
}

/// An update in place, with what the kind knows it does beyond "in place" (a VM resize that
/// stops the VM) from the changes and the reading, and its own estimate if it has one.
pub(super) fn update_draft(
    rules: &dyn KindRules,
    resource: &ResourceSpec,
    instance: InstanceAddress,
    attributes: &Attributes,
    changes: &[AttributeChange],
) -> (StepDraft, Option<u64>) {
    let refinement = rules.refine_update(&UpdateContext {
        spec: resource,
        observed: attributes,
        changes,
    });
    let reason = refinement
        .reason
        .unwrap_or_else(|| format!("changed in place: {}", change_paths(changes)));
    let mut draft = StepDraft::new(instance, Action::Update, reason);
    draft.warning = refinement.warning;
    (draft, refinement.estimate_seconds)
}

/// Every desired field, as a creation shows it: read from the step's inputs, which must be
/// `desired` as it is.
pub(super) fn creation_changes(desired: &Attributes, rules: &dyn KindRules) -> Changes {
    Changes::created_from(desired, |name| rules.is_observed(name))
}

/// The fields whose desired value differs from the observed one. Fields the spec leaves out
/// are not compared: ferry manages what the spec says, and only that.
pub(super) fn diff(
    desired: &Attributes,
    observed: &Attributes,
    rules: &dyn KindRules,
    skip: &dyn Fn(&str) -> bool,
) -> Vec<AttributeChange> {
    desired
        .iter()
        .filter(|(name, _)| rules.is_observed(name) && !skip(name))
        .filter(|(name, after)| observed.get(*name) != Some(*after))
        .map(|(name, after)| AttributeChange {
            path: name.clone(),
            before: observed.get(name).cloned(),
            after: Some(after.clone()),
            forces_replacement: None,
        })
        .collect()
}

pub(super) fn change_paths(changes: &[AttributeChange]) -> String {
    changes
        .iter()
        .map(|change| change.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether a stateful resource's reference field differs from its reading only by the
/// generation a failover moves it to (a disk's `resource_group` from `@g1` to `@g2`): that is
/// the failover's own move, not a change of the spec, and so is a field the reading lacks.
/// Any other difference (a pool's `disks` list edited) is diffed and classified exactly as on
/// the normal path, so that a failover refuses whatever `--no-failover` refuses.
pub(super) fn relocated_reference(
    rules: &dyn KindRules,
    name: &str,
    desired: Option<&ferry_core::Value>,
    observed: &Attributes,
) -> bool {
    let is_reference = rules.fields().iter().any(|field| {
        field.name == name
            && matches!(
                field.field_type,
                FieldType::Reference(_) | FieldType::ReferenceList(_)
            )
    });
    // Not read (a pool exported by an interrupted apply lists no disks): nothing to compare,
    // the failover's own steps set it.
    let (Some(desired), Some(observed)) = (desired, observed.get(name)) else {
        return is_reference;
    };
    is_reference && without_generations(desired) == without_generations(observed)
}

/// A reference value with every instance address reduced to its resource address.
pub(super) fn without_generations(value: &ferry_core::Value) -> ferry_core::Value {
    match value {
        ferry_core::Value::String(text) => match text.parse::<InstanceAddress>() {
            Ok(instance) => ferry_core::Value::String(instance.address.to_string()),
            Err(_) => value.clone(),
        },
        ferry_core::Value::Array(items) => {
            ferry_core::Value::Array(items.iter().map(without_generations).collect())
        }
        other => other.clone(),
    }
}
