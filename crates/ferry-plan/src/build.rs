//! Turns spec and observations into step drafts with their edges: the diff itself.

use std::collections::{BTreeMap, BTreeSet};

use ferry_core::provider::FieldType;
use ferry_core::value;
use ferry_core::{
    Action, AttributeChange, Attributes, ChangeClass, Ensure, Failover, FailoverContext,
    Generation, Health, InstanceAddress, Kind, KindRules, Observation, PlanWarning,
    ResourceAddress, ResourceSpec, RuleBook, Snapshot, StepDraft, UnknownReading, UpdateContext,
};
use ferry_spec::{FailoverMode, Spec};

use crate::{FailoverRequest, PlanConfig, PlanError, PlanErrors};
use ferry_spec::resolve::{instance_at, resolve_fields};

/// A step before ordering: the rules' draft plus what the planner knows about it.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub id: ferry_core::StepId,
    pub step: StepDraft,
    pub estimate_seconds: u64,
    /// The spec resource whose dependencies give this step its default edges; `None` for
    /// steps whose rules set every edge themselves (failover moves, fences, retires).
    pub resource: Option<ResourceAddress>,
}

/// What [`build`] hands to the ordering stage.
#[derive(Debug)]
pub(crate) struct Built {
    pub drafts: Vec<Draft>,
    /// Each resource's dependencies, for the default edges.
    pub dependencies: BTreeMap<ResourceAddress, Vec<ResourceAddress>>,
    pub target: Generation,
    pub failover: Option<Failover>,
    pub notes: Vec<String>,
    pub unknown: Vec<UnknownReading>,
    pub warnings: Vec<PlanWarning>,
    pub failover_due: Option<String>,
}

struct Builder<'a> {
    spec: &'a Spec,
    dependencies: &'a BTreeMap<ResourceAddress, Vec<ResourceAddress>>,
    snapshot: &'a Snapshot,
    rules: &'a RuleBook,
    config: &'a PlanConfig,
    failover: Option<Failover>,
    /// The generation the spec is converged at: the active one, or the next in a failover.
    target: Generation,
    drafts: Vec<Draft>,
    /// Instances whose outputs are known only after this plan is applied.
    unsettled: BTreeSet<InstanceAddress>,
    /// Resources with a step, or downstream of one: a check after them waits again.
    changed: BTreeSet<ResourceAddress>,
    errors: Vec<PlanError>,
    notes: Vec<String>,
    /// Every unknown reading met, by instance.
    unknown: BTreeMap<InstanceAddress, UnknownReading>,
    /// Resources with no step because their own reading, or a dependency's, is unknown: the
    /// unknown instance that holds each back. What depends on them is held back too, and
    /// nothing they rely on is retired.
    held: BTreeMap<ResourceAddress, InstanceAddress>,
}

pub(crate) fn build(
    spec: &Spec,
    snapshot: &Snapshot,
    rules: &RuleBook,
    config: &PlanConfig,
) -> Result<Built, PlanErrors> {
    let failover = decide_failover(spec, snapshot, config)?;
    let (target, notes, failover_due) = match &failover {
        Decision::Failover(failover) => (failover.to_generation, Vec::new(), None),
        Decision::Reconcile { notes, due } => (
            snapshot.active_generation.max(1),
            notes.clone(),
            due.clone(),
        ),
    };
    let dependencies: BTreeMap<ResourceAddress, Vec<ResourceAddress>> = spec
        .resources
        .keys()
        .map(|address| {
            let mut dependencies: Vec<ResourceAddress> = spec
                .dependencies(address)
                .into_iter()
                .map(|dependency| dependency.address)
                .filter(|dependency| {
                    dependency != address && spec.resources.contains_key(dependency)
                })
                .collect();
            dependencies.sort();
            dependencies.dedup();
            (address.clone(), dependencies)
        })
        .collect();
    let mut builder = Builder {
        spec,
        dependencies: &dependencies,
        snapshot,
        rules,
        config,
        failover: match failover {
            Decision::Failover(failover) => Some(failover),
            Decision::Reconcile { .. } => None,
        },
        target,
        drafts: Vec::new(),
        unsettled: BTreeSet::new(),
        changed: BTreeSet::new(),
        errors: Vec::new(),
        notes,
        unknown: BTreeMap::new(),
        held: BTreeMap::new(),
    };
    for address in resource_order(&dependencies) {
        let resource = &spec.resources[&address];
        builder.plan_resource(resource);
    }
    builder.plan_old_instances();
    if !builder.errors.is_empty() {
        return Err(PlanErrors(builder.errors));
    }
    let warnings = builder.warnings(failover_due.is_some());
    let unknown = builder.unknown_readings();
    Ok(Built {
        drafts: builder.drafts,
        target,
        failover: builder.failover,
        notes: builder.notes,
        unknown,
        warnings,
        failover_due,
        dependencies,
    })
}

enum Decision {
    Failover(Failover),
    /// `due`: the readings that call for a failover the spec's manual mode leaves to the
    /// operator.
    Reconcile {
        notes: Vec<String>,
        due: Option<String>,
    },
}

fn decide_failover(
    spec: &Spec,
    snapshot: &Snapshot,
    config: &PlanConfig,
) -> Result<Decision, PlanErrors> {
    let active = snapshot.active_generation;
    let unhealthy: Vec<String> = spec
        .failover
        .triggers
        .iter()
        .filter_map(|trigger| {
            let instance = trigger.at(Some(active));
            match snapshot.get(&instance) {
                Some(Observation::Present {
                    health: ferry_core::Health::Unhealthy { reason },
                    ..
                }) => Some(format!("{instance} is unhealthy: {reason}")),
                _ => None,
            }
        })
        .collect();
    let failover = |trigger: String| {
        Decision::Failover(Failover {
            from_generation: active,
            to_generation: active + 1,
            trigger,
        })
    };
    // A failover an earlier apply started is finished whatever the readings say now: part
    // of the service may already have moved (the old VM fenced, disks in the new group), and
    // neither reconciling the old generation nor starting another failover is safe from there.
    if let Some(started) = &snapshot.failover_in_progress
        && started.from_generation == active
    {
        let to = started.to_generation;
        return match config.failover {
            FailoverRequest::Never => Err(PlanErrors(vec![
                PlanError::new(
                    None,
                    format!(
                        "the failover from generation {active} to {to} that an earlier apply started is not finished, and --no-failover would leave it half done"
                    ),
                )
                .help("run the command without --no-failover: the plan finishes that failover"),
            ])),
            FailoverRequest::Force | FailoverRequest::Policy => Ok(Decision::Failover(Failover {
                from_generation: active,
                to_generation: to,
                trigger: finishing(&started.trigger),
            })),
        };
    }
    match config.failover {
        FailoverRequest::Never => Ok(Decision::Reconcile {
            due: None,
            notes: unhealthy
                .into_iter()
                .map(|reading| format!("{reading} (no failover: --no-failover)"))
                .collect(),
        }),
        FailoverRequest::Force if active == 0 => Err(PlanErrors(vec![
            PlanError::new(None, "there is nothing to fail over: no generation was ever built")
                .help("run ferry apply without --failover to build generation 1"),
        ])),
        FailoverRequest::Force if spec.failover.mode == FailoverMode::Off => {
            Err(PlanErrors(vec![
                PlanError::new(None, "the spec's failover mode is off")
                    .help("set mode = \"manual\" or \"automatic\" in [failover] to allow a failover"),
            ]))
        }
        FailoverRequest::Force => Ok(failover(match unhealthy.first() {
            Some(reading) => format!("--failover ({reading})"),
            None => "--failover (a planned failover: every trigger reads healthy)".to_owned(),
        })),
        FailoverRequest::Policy => match (spec.failover.mode, unhealthy.first()) {
            (_, None) => Ok(Decision::Reconcile {
                notes: Vec::new(),
                due: None,
            }),
            (FailoverMode::Automatic, Some(_)) if active > 0 => {
                Ok(failover(unhealthy.join("; ")))
            }
            (FailoverMode::Manual, Some(_)) => Ok(Decision::Reconcile {
                due: Some(unhealthy.join("; ")),
                notes: unhealthy
                    .into_iter()
                    .map(|reading| {
                        format!("{reading}: the failover mode is manual, run `ferry plan --failover` to plan the failover")
                    })
                    .collect(),
            }),
            (_, Some(_)) => Ok(Decision::Reconcile {
                due: None,
                notes: unhealthy
                    .into_iter()
                    .map(|reading| format!("{reading} (the spec's failover mode is off)"))
                    .collect(),
            }),
        },
    }
}

/// The trigger of a plan that finishes an interrupted failover, naming the original trigger
/// once however many applies were interrupted.
fn finishing(trigger: &str) -> String {
    const PREFIX: &str = "finishing the failover an earlier apply started: ";
    format!(
        "{PREFIX}{}",
        trigger.strip_prefix(PREFIX).unwrap_or(trigger)
    )
}

/// Resources in dependency order (dependencies first), ties broken by address.
pub(crate) fn resource_order(
    dependencies: &BTreeMap<ResourceAddress, Vec<ResourceAddress>>,
) -> Vec<ResourceAddress> {
    let mut remaining: BTreeMap<&ResourceAddress, usize> = BTreeMap::new();
    let mut dependents: BTreeMap<&ResourceAddress, Vec<&ResourceAddress>> = BTreeMap::new();
    for (address, needs) in dependencies {
        remaining.insert(address, needs.len());
        for dependency in needs {
            dependents.entry(dependency).or_default().push(address);
        }
    }
    let mut ready: BTreeSet<&ResourceAddress> = remaining
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(address, _)| *address)
        .collect();
    let mut order = Vec::with_capacity(remaining.len());
    while let Some(next) = ready.pop_first() {
        for dependent in dependents.get(next).into_iter().flatten() {
            let count = remaining
                .get_mut(dependent)
                .expect("every dependent is a resource");
            *count -= 1;
            if *count == 0 {
                ready.insert(dependent);
            }
        }
        order.push(next.clone());
    }
    order
}

impl<'a> Builder<'a> {
    fn rules(&self, kind: Kind) -> &'a dyn KindRules {
        self.rules
            .get(kind)
            .unwrap_or_else(|| panic!("the rule book has no rules for {kind}"))
    }

    /// The instance of a resource that the plan converges: the target generation for
    /// replaceable kinds, the one and only instance for the others.
    fn target_of(&self, address: &ResourceAddress) -> InstanceAddress {
        instance_at(address, self.target)
    }

    fn observation(&self, instance: &InstanceAddress) -> Observation {
        match self.snapshot.get(instance) {
            Some(observation) => observation.clone(),
            // Nothing was built before the first apply, and a generation beyond the active one
            // was never built, as far as ferry's state knows; anything else missing was simply
            // not read, which is not the same as gone.
            None if self.snapshot.active_generation == 0
                || instance
                    .generation
                    .is_some_and(|generation| generation > self.snapshot.active_generation) =>
            {
                Observation::Absent
            }
            None => Observation::Unknown {
                reason: "not in the snapshot".to_owned(),
            },
        }
    }

    /// The spec's fields as the target generation wants them, with the outputs known now.
    fn desired(&self, resource: &ResourceSpec) -> Attributes {
        let rules = self.rules(resource.address.kind);
        resolve_fields(
            self.spec,
            rules,
            &resource.address,
            self.target,
            &|instance, output| {
                if self.unsettled.contains(instance) {
                    return None;
                }
                self.snapshot.get(instance)?.attribute(output).cloned()
            },
        )
    }

    fn push(&mut self, draft: StepDraft, resource: Option<&ResourceSpec>) {
        self.push_estimated(draft, resource, None);
    }

    /// Pushes a draft with the estimate its kind's rules gave for this very step, if they did,
    /// else the kind's usual one for its action.
    fn push_estimated(
        &mut self,
        draft: StepDraft,
        resource: Option<&ResourceSpec>,
        estimate_seconds: Option<u64>,
    ) {
        let rules = self.rules(draft.target.kind());
        let estimate_seconds = estimate_seconds.unwrap_or_else(|| {
            match resource.or_else(|| self.spec.resources.get(&draft.target.address)) {
                Some(spec) => rules.estimate_seconds(draft.action, spec),
                None => rules.estimate_seconds(
                    draft.action,
                    &ResourceSpec::new(draft.target.address.clone()),
                ),
            }
        });
        if !matches!(draft.action, Action::Update | Action::Wait | Action::Fence) {
            self.unsettled.insert(draft.target.clone());
        }
        self.changed.insert(draft.target.address.clone());
        self.drafts.push(Draft {
            id: draft.id(),
            step: draft,
            estimate_seconds,
            resource: resource.map(|resource| resource.address.clone()),
        });
    }

    fn plan_resource(&mut self, resource: &ResourceSpec) {
        let address = &resource.address;
        let instance = self.target_of(address);
        let observed = self.observation(&instance);
        if let Observation::Unknown { reason } = &observed {
            self.unknown
                .entry(instance.clone())
                .or_insert_with(|| UnknownReading {
                    address: instance.clone(),
                    reason: reason.clone(),
                    held_back: Vec::new(),
                });
        }
        // What depends on a resource held back by an unknown reading is held back too: its
        // inputs may be stale (a record that may still point at the old ingress), and a check
        // after it would wait for nothing. (A reading unknown itself says so on its own.)
        if !matches!(observed, Observation::Unknown { .. })
            && let Some((dependency, source)) =
                self.dependencies[address].iter().find_map(|dependency| {
                    Some((dependency.clone(), self.held.get(dependency)?.clone()))
                })
        {
            let reason = self
                .unknown
                .get(&source)
                .map_or_else(|| "unknown".to_owned(), |reading| reading.reason.clone());
            self.notes.push(format!(
                "{instance}: not planned, it depends on {dependency}, held back by {source}, whose reading is unknown ({reason}); plan again once it reads"
            ));
            self.hold(address, source);
            return;
        }
        let desired = self.desired(resource);
        let upstream_changed = self.dependencies[address]
            .iter()
            .find(|dependency| self.changed.contains(*dependency))
            .cloned();
        match address.kind {
            Kind::Check => self.plan_check(
                resource,
                instance,
                &observed,
                desired,
                upstream_changed.clone(),
            ),
            Kind::Hook => self.plan_hook(resource, instance, &observed, desired),
            _ => self.plan_generic(resource, instance, &observed, desired),
        }
        // Whatever depends on a changed resource may behave differently too: a check further
        // down waits again.
        if upstream_changed.is_some() {
            self.changed.insert(address.clone());
        }
    }

    fn plan_check(
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

    fn plan_hook(
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
                    changes,
                )
            }
        };
        let mut draft = StepDraft::new(instance, Action::Run, reason);
        draft.changes = changes;
        draft.inputs = desired;
        self.push(draft, Some(resource));
    }

    fn plan_generic(
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
                self.plan_failed_provisioning(resource, instance, attributes, reason, desired);
            }
            Observation::Present { attributes, .. } => {
                self.plan_present(resource, instance, observed, attributes, desired);
            }
        }
    }

    /// A resource the spec says is absent: deleted when it reads present (a stateful one only
    /// with both opt-ins), held back when its reading is unknown.
    fn plan_deletion(
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
    fn plan_unknown(
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
    fn plan_absent(
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

    /// A replaceable resource whose provisioning failed (a create that ended in a quota error)
    /// exists but was never built: it is built again, as Terraform replaces a tainted
    /// resource, on a first build as inside a failover.
    fn plan_failed_provisioning(
        &mut self,
        resource: &ResourceSpec,
        instance: InstanceAddress,
        attributes: &Attributes,
        reason: &str,
        desired: Attributes,
    ) {
        let rules = self.rules(resource.address.kind);
        let mut draft = StepDraft::new(
            instance,
            Action::Replace,
            format!("its provisioning failed ({reason}): it is built again"),
        );
        draft.changes = diff(&desired, attributes, rules, &|_| false);
        draft.inputs = desired;
        self.push(draft, Some(resource));
    }

    /// An instance that reads present: nothing when it matches the spec, else an update in
    /// place or a replacement (never of a stateful resource). Inside a failover a stateful
    /// instance's moves come first, and what they set is not an update's.
    fn plan_present(
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
        let moved = if moves_in_failover {
            self.plan_failover_moves(resource, &instance, observed, &desired)
        } else {
            BTreeSet::new()
        };
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
        draft.changes = changes;
        draft.inputs = desired;
        if moves_in_failover {
            draft.inputs.retain(|name, _| !placed.contains(name));
        }
        self.push_estimated(draft, Some(resource), estimate_seconds);
    }

    /// Asks a stateful kind's rules how it moves to the new generation; returns the fields
    /// that the instance's own failover steps set.
    fn plan_failover_moves(
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

    /// Holds a resource back because of `source`'s unknown reading.
    fn hold(&mut self, address: &ResourceAddress, source: InstanceAddress) {
        if let Some(reading) = self.unknown.get_mut(&source)
            && &source.address != address
        {
            reading.held_back.push(address.clone());
        }
        self.held.insert(address.clone(), source);
    }

    /// The resources a held-back resource relies on, directly or not, itself included: none
    /// of their old instances is retired while it is held back (a DNS record that reads
    /// unknown may still point at the old generation's ingress).
    fn relied_on_by_held(&self) -> BTreeMap<ResourceAddress, InstanceAddress> {
        let mut relied: BTreeMap<ResourceAddress, InstanceAddress> = BTreeMap::new();
        let mut stack: Vec<(ResourceAddress, InstanceAddress)> = self
            .held
            .iter()
            .map(|(address, source)| (address.clone(), source.clone()))
            .collect();
        while let Some((address, source)) = stack.pop() {
            if relied.contains_key(&address) {
                continue;
            }
            for dependency in self.dependencies.get(&address).into_iter().flatten() {
                stack.push((dependency.clone(), source.clone()));
            }
            relied.insert(address, source);
        }
        relied
    }

    /// Every unknown reading, of the instances planned and of the others in the snapshot.
    fn unknown_readings(&mut self) -> Vec<UnknownReading> {
        for (instance, observation) in &self.snapshot.resources {
            if let Observation::Unknown { reason } = observation {
                self.unknown
                    .entry(instance.clone())
                    .or_insert_with(|| UnknownReading {
                        address: instance.clone(),
                        reason: reason.clone(),
                        held_back: Vec::new(),
                    });
            }
        }
        std::mem::take(&mut self.unknown).into_values().collect()
    }

    /// The readings that say present but not healthy, of instances no step acts on: what the
    /// operator must look at though there is nothing to apply.
    /// `failover_due`: the triggers read unhealthy and the failover is the operator's to make,
    /// which says more than a warning about each.
    fn warnings(&self, failover_due: bool) -> Vec<PlanWarning> {
        let mut acted_on: BTreeSet<InstanceAddress> = self
            .drafts
            .iter()
            .map(|draft| draft.step.target.clone())
            .collect();
        if failover_due {
            acted_on.extend(
                self.spec
                    .failover
                    .triggers
                    .iter()
                    .map(|trigger| trigger.at(Some(self.snapshot.active_generation))),
            );
        }
        self.snapshot
            .resources
            .iter()
            .filter(|(instance, _)| {
                instance
                    .generation
                    .is_none_or(|generation| generation == self.target)
                    && !acted_on.contains(*instance)
            })
            .filter_map(|(instance, observation)| {
                let Observation::Present { health, .. } = observation else {
                    return None;
                };
                let reason = match health {
                    Health::Healthy => return None,
                    Health::Unhealthy { reason } => format!("unhealthy: {reason}"),
                    Health::Failed { reason } if instance.kind().is_stateful() => format!(
                        "its provisioning failed ({reason}); ferry never rebuilds a stateful resource: find out why in Azure and repair it"
                    ),
                    Health::Failed { reason } => format!("its provisioning failed: {reason}"),
                };
                Some(PlanWarning {
                    address: instance.clone(),
                    reason,
                })
            })
            .collect()
    }

    /// Retires the previous generation after a failover, and deletes what the spec dropped.
    fn plan_old_instances(&mut self) {
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

/// Adds what every converged instance of the kind is although the spec does not write it (a
/// VM of the serving generation runs) to `changes` and `desired`, where the spec's own changes
/// do not already set it. Only the target generation's instance is asked: an older
/// generation's is fenced and retired in `plan_old_instances`, never updated.
fn add_implied_changes(
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
fn forced_replacement(
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
fn mark_forced_replacements(
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
fn update_draft(
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

/// Every desired field, as a creation shows it.
fn creation_changes(desired: &Attributes, rules: &dyn KindRules) -> Vec<AttributeChange> {
    desired
        .iter()
        .filter(|(name, _)| rules.is_observed(name))
        .map(|(name, after)| AttributeChange {
            path: name.clone(),
            before: None,
            after: Some(after.clone()),
            forces_replacement: None,
        })
        .collect()
}

/// The fields whose desired value differs from the observed one. Fields the spec leaves out
/// are not compared: ferry manages what the spec says, and only that.
fn diff(
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

fn change_paths(changes: &[AttributeChange]) -> String {
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
fn relocated_reference(
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
fn without_generations(value: &ferry_core::Value) -> ferry_core::Value {
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
