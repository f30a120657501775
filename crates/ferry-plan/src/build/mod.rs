//! Turns spec and observations into step drafts with their edges: the diff itself.
//!
//! `decide` says whether the plan is a failover, `resource` plans one resource from its spec
//! and reading, `retire` retires the old generation; this file holds the builder they share.

mod decide;
mod resource;
mod retire;
mod standby;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::readings::Readings;

use ferry_core::provider::FieldType;
use ferry_core::value;
use ferry_core::{
    Action, AttributeChange, Attributes, ChangeClass, Changes, Ensure, Failover, FailoverContext,
    Generation, Health, InstanceAddress, Kind, KindRules, Observation, PlanWarning,
    ResourceAddress, ResourceSpec, RuleBook, Snapshot, StepDraft, UnknownReading, UpdateContext,
};
use ferry_spec::{FailoverMode, Spec};

use crate::{FailoverRequest, PlanConfig, PlanError, PlanErrors};
use decide::{Decision, decide_failover};
use ferry_spec::resolve::{instance_at, resolve_resource_fields};

/// A step before ordering: the rules' draft plus what the planner knows about it.
#[derive(Debug, Clone)]
pub(crate) struct Draft {
    pub id: ferry_core::StepId,
    pub step: StepDraft,
    pub estimate_seconds: u64,
    /// The spec resource whose dependencies give this step its default edges; `None` for
    /// steps whose rules set every edge themselves (failover moves, fences, retires).
    pub resource: Option<ResourceAddress>,
    /// The generation the builder converged when it drafted the step: the serving (or, in a
    /// failover, the new) generation, or the standby's. A generation-less instance's step
    /// (a hot standby's replica disk) follows its dependencies' steps in this generation.
    pub generation: Generation,
    /// How long clients may keep the old value once the step is done: a repointed DNS
    /// record's old TTL, in a failover ([`KindRules::cached_for_seconds`]).
    pub cached_seconds: u64,
}

/// What [`build`] hands to the ordering stage.
#[derive(Debug)]
pub(crate) struct Built {
    pub drafts: Vec<Draft>,
    /// Each resource's dependencies, for the default edges.
    pub dependencies: BTreeMap<ResourceAddress, Vec<ResourceAddress>>,
    pub failover: Option<Failover>,
    pub notes: Vec<String>,
    pub unknown: Vec<UnknownReading>,
    pub warnings: Vec<PlanWarning>,
    pub failover_due: Option<String>,
    /// Old generations kept rather than retired, with what they keep running.
    pub kept: Vec<ferry_core::KeptGeneration>,
    /// The warm standby this plan builds or keeps.
    pub standby: Option<ferry_core::StandbyGeneration>,
    /// What a failover that promotes a hot standby's replica loses.
    pub data_loss: Option<ferry_core::DataLoss>,
}

struct Builder<'a> {
    spec: &'a Spec,
    dependencies: &'a BTreeMap<ResourceAddress, Vec<ResourceAddress>>,
    snapshot: &'a Snapshot,
    /// The snapshot's readings, hashed: every lookup of a reading goes through it.
    readings: Readings<'a>,
    rules: &'a RuleBook,
    config: &'a PlanConfig,
    failover: Option<Failover>,
    /// The generation the spec is converged at: the active one, or the next in a failover.
    target: Generation,
    drafts: Vec<Draft>,
    /// Instances whose outputs are known only after this plan is applied. Both sets are only
    /// asked whether they hold an address, never walked: hashed, a lookup reads the address
    /// once instead of comparing it with about seventeen others (a large plan asks for every
    /// field reference of every instance). Fx rather than the standard SipHash: the keys are
    /// the spec's own addresses, not input an attacker picks to collide, and SipHash was 3 % of
    /// a large plan's instructions.
    unsettled: FxHashSet<InstanceAddress>,
    /// Resources with a step, or downstream of one: a check after them waits again.
    changed: FxHashSet<ResourceAddress>,
    errors: Vec<PlanError>,
    notes: Vec<String>,
    /// Every unknown reading met, by instance.
    unknown: BTreeMap<InstanceAddress, UnknownReading>,
    /// Resources with no step because their own reading, or a dependency's, is unknown: the
    /// unknown instance that holds each back. What depends on them is held back too, and
    /// nothing they rely on is retired.
    held: BTreeMap<ResourceAddress, InstanceAddress>,
    /// Old generations kept, by generation.
    kept: BTreeMap<Generation, ferry_core::KeptGeneration>,
    /// The warm standby's generation, once planned.
    standby_generation: Option<Generation>,
    /// Hot pools that serve from their replica's disks since a hot failover
    /// ([`Builder::swapped_pools`]): their desired `disks` are the replica's.
    swapped: BTreeSet<ResourceAddress>,
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
    let dependencies = dependency_lists(spec);
    let mut builder = Builder {
        spec,
        dependencies: &dependencies,
        snapshot,
        readings: Readings::of(snapshot),
        rules,
        config,
        failover: match failover {
            Decision::Failover(failover) => Some(failover),
            Decision::Reconcile { .. } => None,
        },
        target,
        drafts: Vec::new(),
        unsettled: FxHashSet::default(),
        changed: FxHashSet::default(),
        errors: Vec::new(),
        notes,
        unknown: BTreeMap::new(),
        held: BTreeMap::new(),
        kept: BTreeMap::new(),
        standby_generation: None,
        swapped: BTreeSet::new(),
    };
    builder.swapped = builder.swapped_pools();
    builder.check_replacements();
    let order = resource_order(&dependencies);
    // A hot standby's disks on either side stay where they are in the serving pass: a
    // replica's disks are the standby's (planned there, and found in place by a failover),
    // and a hot failover moves no disk of the pool (the replica is promoted instead).
    // A hot pool's disks: the side it does not serve from is the standby's (planned with the
    // standby, `plan_standby`), and a hot failover moves no disk of either side.
    let hot_disks: BTreeSet<ResourceAddress> = match &builder.failover {
        Some(_) => builder.hot_disks(),
        None => builder
            .hot_sides()
            .into_iter()
            .flat_map(|(_, side)| side)
            .collect(),
    };
    for address in &order {
        if hot_disks.contains(address) {
            continue;
        }
        builder.plan_resource(&spec.resources[address]);
    }
    builder.plan_old_instances();
    let standby = builder.plan_standby(&order);
    if !builder.errors.is_empty() {
        return Err(PlanErrors(builder.errors));
    }
    let warnings = builder.warnings(failover_due.is_some());
    let data_loss = builder.data_loss();
    let unknown = builder.unknown_readings();
    let kept = builder
        .kept
        .into_values()
        .map(|mut kept| {
            kept.instances
                .sort_by(|one, other| one.address.cmp(&other.address));
            kept
        })
        .collect();
    Ok(Built {
        drafts: builder.drafts,
        failover: builder.failover,
        notes: builder.notes,
        unknown,
        warnings,
        failover_due,
        dependencies,
        kept,
        standby,
        data_loss,
    })
}

/// Each resource's dependencies among the spec's resources, itself left out, sorted, each once.
fn dependency_lists(spec: &Spec) -> BTreeMap<ResourceAddress, Vec<ResourceAddress>> {
    let known: FxHashSet<&ResourceAddress> = spec.resources.keys().collect();
    // Both are ordered by address: walked side by side, not looked up one by one.
    let mut declared = spec.all_dependencies().peekable();
    spec.resources
        .keys()
        .map(|address| {
            while declared.next_if(|(from, _)| *from < address).is_some() {}
            let listed = declared
                .next_if(|(from, _)| *from == address)
                .map_or(&[][..], |(_, listed)| listed);
            let mut dependencies: Vec<ResourceAddress> = listed
                .iter()
                .map(|dependency| &dependency.address)
                .filter(|dependency| *dependency != address && known.contains(dependency))
                .cloned()
                .collect();
            dependencies.sort();
            dependencies.dedup();
            (address.clone(), dependencies)
        })
        .collect()
}

/// Resources in dependency order (dependencies first), ties broken by address.
///
/// Worked on positions in the map's order, which is the addresses' own order, so that the
/// smallest position ready is the smallest address ready: a large spec's order was mostly
/// ordered-map lookups comparing addresses (3 % of a 10,000-resource plan).
pub(crate) fn resource_order(
    dependencies: &BTreeMap<ResourceAddress, Vec<ResourceAddress>>,
) -> Vec<ResourceAddress> {
    let addresses: Vec<&ResourceAddress> = dependencies.keys().collect();
    let position: FxHashMap<&ResourceAddress, usize> = addresses
        .iter()
        .enumerate()
        .map(|(at, address)| (*address, at))
        .collect();
    let mut remaining: Vec<usize> = Vec::with_capacity(addresses.len());
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); addresses.len()];
    for (at, needs) in dependencies.values().enumerate() {
        remaining.push(needs.len());
        for dependency in needs {
            // A dependency that is not a resource is never ready, nor is what waits for it.
            if let Some(&of) = position.get(dependency) {
                dependents[of].push(at);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = remaining
        .iter()
        .enumerate()
        .filter(|(_, count)| **count == 0)
        .map(|(at, _)| Reverse(at))
        .collect();
    let mut order = Vec::with_capacity(addresses.len());
    while let Some(Reverse(next)) = ready.pop() {
        for &dependent in &dependents[next] {
            remaining[dependent] -= 1;
            if remaining[dependent] == 0 {
                ready.push(Reverse(dependent));
            }
        }
        order.push(addresses[next].clone());
    }
    order
}

impl<'a> Builder<'a> {
    /// `--replace`: each address must be a replaceable resource of the spec on which no
    /// stateful resource is placed (replacing the NFS VM would take its disks and pool
    /// offline: a failover moves them instead).
    fn check_replacements(&mut self) {
        for address in &self.config.replace {
            match self.replacement_problem(address) {
                Some((message, help)) => self.errors.push(PlanError::new(None, message).help(help)),
                None => {
                    if let Some(failover) = &self.failover {
                        self.notes.push(format!(
                            "--replace {address}: the failover to generation {} builds it anew anyway",
                            failover.to_generation
                        ));
                    }
                }
            }
        }
    }

    /// Why `--replace address` is refused, with the help to give; `None` when it may be.
    fn replacement_problem(&self, address: &ResourceAddress) -> Option<(String, String)> {
        if !self.spec.resources.contains_key(address) {
            return Some((
                format!("--replace {address}: the spec declares no such resource"),
                "name a resource of the spec as KIND.NAME (vm.nfs), as ferry plan lists them"
                    .to_owned(),
            ));
        }
        if address.kind.is_stateful() {
            return Some((
                format!(
                    "--replace {address}: it is stateful, and ferry never replaces a stateful resource"
                ),
                "ferry never recreates data: move the data yourself, or leave it".to_owned(),
            ));
        }
        let placed = self.spec.resources.keys().find(|other| {
            other.kind.is_stateful()
                && self
                    .dependencies
                    .get(*other)
                    .is_some_and(|needs| needs.contains(address))
        })?;
        Some((
            format!(
                "--replace {address}: {placed} (stateful) depends on it, and replacing it would take {placed} offline"
            ),
            "to build it anew with the data moved safely, fail over: ferry plan --failover"
                .to_owned(),
        ))
    }

    /// The hot pools on their replica's disks in the generation converged: a hot failover
    /// promoted (or, in a failover, promotes) the replica, whose disks read attached to that
    /// generation's host. The pool's own `disks` are then the other side, the standby's.
    fn swapped_pools(&self) -> BTreeSet<ResourceAddress> {
        let mut pools = BTreeSet::new();
        for pool in self.spec.hot_pools() {
            let Some(host) = pool
                .str_field(ferry_core::fields::zfs_pool::HOST)
                .and_then(|host| host.parse::<ResourceAddress>().ok())
            else {
                continue;
            };
            // The generation converged: the serving one, or the one a failover goes to (whose
            // replica it promotes: the pool is then on the replica's disks).
            let serving_host = host.at(Some(self.target)).to_string();
            let replica = Self::side(&pool.fields, ferry_core::fields::zfs_pool::REPLICA_DISKS);
            let serves = !replica.is_empty()
                && replica.iter().all(|disk| {
                    self.snapshot
                        .get(&disk.at(None))
                        .and_then(|reading| reading.attribute(ferry_core::fields::disk::VM))
                        .and_then(ferry_core::Value::as_str)
                        == Some(serving_host.as_str())
                });
            if serves {
                pools.insert(pool.address.clone());
            }
        }
        pools
    }

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
        match self.readings.get(instance) {
            Some(observation) => observation.clone(),
            // Nothing was built before the first apply, and a generation beyond the active one
            // was never built, as far as ferry's state knows; anything else missing was simply
            // not read, which is not the same as gone.
            // The warm standby's instances are read like the serving generation's: one missing
            // was not read, and nothing is created from what ferry does not know.
            None if self.snapshot.active_generation > 0
                && self.standby_generation.is_some()
                && instance.generation == self.standby_generation =>
            {
                Observation::Unknown {
                    reason: "not in the snapshot: the standby generation was not read".to_owned(),
                }
            }
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
        let mut desired = resolve_resource_fields(
            self.spec,
            rules,
            resource,
            self.target,
            &|instance, output| {
                if self.unsettled.contains(instance) {
                    return None;
                }
                self.readings.get(instance)?.attribute(output).cloned()
            },
        );
        // A pool that serves from its replica's disks since a hot failover is on those (and
        // its replica, once a failback made one, on the pool's own).
        if self.swapped.contains(&resource.address) {
            ferry_core::fields::zfs_pool::swap_sides(&mut desired);
        }
        desired
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
        // An identity handed over keeps its outputs: a static IP's address is the point of it.
        let identity_handed_over = draft.action == Action::Detach
            && draft.target.kind().is_stateful()
            && !draft.target.kind().holds_data();
        if !matches!(draft.action, Action::Update | Action::Wait | Action::Fence)
            && !identity_handed_over
        {
            self.unsettled.insert(draft.target.clone());
        }
        self.changed.insert(draft.target.address.clone());
        let cached_seconds = match (
            &self.failover,
            draft.action,
            self.readings.get(&draft.target),
        ) {
            (Some(_), Action::Update, Some(Observation::Present { attributes, .. })) => {
                rules.cached_for_seconds(attributes, &draft.inputs)
            }
            _ => 0,
        };
        self.drafts.push(Draft {
            generation: self.target,
            id: draft.id(),
            step: draft,
            estimate_seconds,
            resource: resource.map(|resource| resource.address.clone()),
            cached_seconds,
        });
    }

    fn plan_resource(&mut self, resource: &ResourceSpec) {
        let address = &resource.address;
        let instance = self.target_of(address);
        let observed = self.observation(&instance);
        if let Observation::Unknown { reason } = &observed {
            self.note_unknown(&instance, reason);
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

    /// What the plan's promotions of hot standby replicas lose: nothing for a hand-over, else
    /// the replica's lag as read (`None` seconds when one could not be read). `None` when the
    /// plan promotes nothing.
    fn data_loss(&self) -> Option<ferry_core::DataLoss> {
        let mut loss: Option<ferry_core::DataLoss> = None;
        for draft in self
            .drafts
            .iter()
            .filter(|draft| draft.step.action == Action::Promote)
        {
            let this = if draft
                .step
                .inputs
                .contains_key(ferry_core::fields::zfs_pool::HAND_OVER_FROM)
            {
                ferry_core::DataLoss {
                    seconds: Some(0),
                    replica: None,
                }
            } else {
                let generation = draft
                    .step
                    .inputs
                    .get(ferry_core::fields::zfs_pool::HOST)
                    .and_then(ferry_core::Value::as_str)
                    .and_then(|host| host.parse::<InstanceAddress>().ok())
                    .and_then(|host| host.generation);
                let replica = draft.step.target.address.at(generation);
                let seconds = self
                    .snapshot
                    .get(&replica)
                    .and_then(|reading| {
                        reading.attribute(ferry_core::fields::zfs_pool::REPLICA_LAG_SECONDS)
                    })
                    .and_then(ferry_core::Value::as_u64);
                ferry_core::DataLoss {
                    seconds,
                    replica: Some(replica),
                }
            };
            // The worst: an unknown lag, else the longest.
            loss = Some(match loss {
                None => this,
                Some(worst) => match (worst.seconds, this.seconds) {
                    (None, _) => worst,
                    (_, None) => this,
                    (Some(old), Some(new)) if new > old => this,
                    _ => worst,
                },
            });
        }
        loss
    }

    /// Records an unknown reading met, once per instance.
    fn note_unknown(&mut self, instance: &InstanceAddress, reason: &str) {
        self.unknown
            .entry(instance.clone())
            .or_insert_with(|| UnknownReading {
                address: instance.clone(),
                reason: reason.to_owned(),
                held_back: Vec::new(),
            });
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
                instance.generation.is_none_or(|generation| {
                    generation == self.target || Some(generation) == self.standby_generation
                }) && !acted_on.contains(*instance)
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
                    Health::Creating { reason } => format!(
                        "it is still being created ({reason}): plan again once Azure has finished"
                    ),
                };
                Some(PlanWarning {
                    address: instance.clone(),
                    reason,
                })
            })
            .collect()
    }
}
