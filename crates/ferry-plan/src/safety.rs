//! The design's planning invariants, checked on every finished plan.
//!
//! The kinds' rules are written to keep them; this pass makes sure, so that a mistake in a
//! rule stops the plan instead of reaching the data.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use ferry_core::fields::{disk, vm, zfs_pool};
use ferry_core::{
    Action, InstanceAddress, Kind, Observation, Plan, ResourceAddress, RuleBook, Snapshot, Step,
    StepId, Value, value,
};
use ferry_spec::Spec;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::readings::Readings;
use crate::{PlanConfig, PlanError};

/// Safety invariant 2 of ARCHITECTURE.md, a managed disk is attached to at most one VM, for the spec itself: two `disk`
/// resources that name the same Azure disk (the same name in the same resource group) and
/// each attach it to a VM would attach one disk to two VMs. The plan is refused before it is
/// made, whatever ARM would say.
pub(crate) fn check_spec(spec: &Spec) -> Result<(), Vec<PlanError>> {
    let mut attached: BTreeMap<(String, String), Vec<(&ResourceAddress, &str)>> = BTreeMap::new();
    for resource in spec.resources.values() {
        if resource.address.kind != Kind::Disk || resource.ensure == ferry_core::Ensure::Absent {
            continue;
        }
        let (Some(name), Some(group), Some(vm)) = (
            resource.str_field(disk::NAME),
            resource.str_field(disk::RESOURCE_GROUP),
            resource.str_field(disk::VM),
        ) else {
            continue;
        };
        attached
            .entry((name.to_ascii_lowercase(), group.to_owned()))
            .or_default()
            .push((&resource.address, vm));
    }
    let errors: Vec<PlanError> = attached
        .into_iter()
        .filter(|(_, holders)| holders.len() > 1)
        .map(|((name, group), holders)| {
            let described: Vec<String> = holders
                .iter()
                .map(|(disk, vm)| format!("{disk} to {vm}"))
                .collect();
            PlanError::new(
                None,
                format!(
                    "the managed disk `{name}` in {group} would be attached to more than one VM ({}): a disk is attached to at most one VM",
                    described.join(", ")
                ),
            )
            .help("declare the disk once, or give each disk resource its own name")
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

pub(crate) fn check(
    plan: &Plan,
    snapshot: &Snapshot,
    rules: &RuleBook,
    config: &PlanConfig,
) -> Result<(), Vec<PlanError>> {
    let steps: FxHashMap<&StepId, &Step> = plan.steps.iter().map(|step| (&step.id, step)).collect();
    let started: FxHashSet<&InstanceAddress> = plan
        .steps
        .iter()
        .filter(|step| starts_a_vm(step))
        .map(|step| &step.address)
        .collect();
    let serving = plan
        .failover
        .as_ref()
        .map_or(snapshot.active_generation.max(1), |failover| {
            failover.to_generation
        });
    // 11. The generation the data is on, from the readings alone: whatever the state says,
    // nothing is built, started or placed behind it.
    let standby_data: BTreeSet<ResourceAddress> = plan
        .standby
        .iter()
        .flat_map(|standby| &standby.instances)
        .filter(|kept| kept.address.kind().is_stateful() && kept.address.generation.is_none())
        .map(|kept| kept.address.address.clone())
        .collect();
    let data = crate::world::data_generation(snapshot, rules, &standby_data);
    // 15. What stateful instances read placed on, and the plan's steps that move each away.
    let mut placed_on: BTreeMap<&InstanceAddress, Vec<InstanceAddress>> = BTreeMap::new();
    let placements = crate::world::placements(snapshot, rules);
    for placement in &placements {
        placed_on
            .entry(&placement.on)
            .or_default()
            .push(placement.instance.clone());
    }
    let moved: BTreeSet<&InstanceAddress> = plan
        .steps
        .iter()
        .filter(|step| {
            matches!(
                step.action,
                Action::Detach | Action::Move | Action::Import | Action::Export | Action::Promote
            )
        })
        .map(|step| &step.address)
        .collect();
    let readings = Readings::of(snapshot);
    let mut errors = Vec::new();
    for step in &plan.steps {
        let instance = &step.address;
        let reading = readings.get(instance);
        let violation = |message: String| {
            PlanError::new(Some(instance.clone()), message).help(
                "this is a bug in a kind's rules; please report it with the spec and snapshot",
            )
        };

        // 10. A stateful instance changes placement (a disk's VM or group, a pool's host) only
        // by the failover's moves: fence, detach, move, attach; export, fence, import.
        errors.extend(placement_changed_in_place(step, reading, rules).map(&violation));

        // 11. Nothing is created, changed, started or run on a generation older than the one
        // the data is on, and nothing stateful is placed there.
        if let Some((data, evidence)) = &data {
            errors.extend(behind_the_data(step, rules, *data, evidence).map(&violation));
        }

        // 15. Nothing is retired or deleted with data still on it (a VM a disk is attached
        // to, a group a disk is in: deleting a group deletes its disks) unless the plan moves
        // the data away first (retirements go last).
        if matches!(step.action, Action::Retire | Action::Delete)
            && let Some(data) = placed_on
                .get(instance)
                .and_then(|data| data.iter().find(|data| !moved.contains(data)))
        {
            errors.push(violation(format!(
                "it would be {}d with {data} still on it, and the plan does not move {data} away first",
                step.action
            )));
        }

        // 3. No create or delete from an Unknown observation.
        if matches!(
            step.action,
            Action::Create | Action::Delete | Action::Replace | Action::Retire
        ) && matches!(reading, Some(Observation::Unknown { .. }))
        {
            errors.push(violation(format!(
                "a {} was planned from an unknown reading",
                step.action
            )));
        }

        // 4. Nothing stateful is destroyed without both opt-ins (the spec's half is checked
        // where the step is made).
        if instance.kind().is_stateful()
            && (matches!(step.action, Action::Replace | Action::Retire)
                || (step.action == Action::Delete && !config.allow_destroy))
        {
            errors.push(violation(format!(
                "a stateful resource would be destroyed by a {}",
                step.action
            )));
        }

        // 1, its fences: a VM is started only in the generation that serves and never by a
        // plan that fences it (a host that an import relies on as fenced is checked below).
        if starts_a_vm(step) {
            if plan
                .steps
                .iter()
                .any(|other| other.address == *instance && other.action == Action::Fence)
            {
                errors.push(violation(
                    "a VM would be started and fenced by one plan".to_owned(),
                ));
            }
            // The warm standby's VM runs ahead of its failover: it holds no data yet.
            let standby = plan.standby.as_ref().map(|standby| standby.generation);
            if let Some(generation) = instance
                .generation
                .filter(|g| *g != serving && Some(*g) != standby)
            {
                errors.push(violation(format!(
                    "a VM of generation {generation} would be started, but generation {serving} serves: an older generation's VM is fenced and only retired"
                )));
            }
        }

        // 1. A pool is imported only after every other host that could hold it is fenced.
        if step.action == Action::Import {
            let target = step.inputs.get(zfs_pool::HOST).and_then(Value::as_str);
            let holder = reading
                .and_then(|reading| reading.attribute(zfs_pool::HOST))
                .and_then(Value::as_str)
                .filter(|holder| Some(*holder) != target)
                .and_then(|holder| holder.parse::<InstanceAddress>().ok());
            let forced = step.inputs.get(zfs_pool::FORCE).and_then(Value::as_bool) == Some(true);
            let ancestors = ancestors(step, &steps);
            // A host this plan starts is not fenced, whatever it reads now.
            let fenced = |host: &InstanceAddress| {
                (readings.get(host).is_some_and(Observation::is_fenced_host)
                    && !started.contains(host))
                    || ancestors.contains(&StepId::new(host, Action::Fence))
            };
            match &holder {
                Some(holder) if !fenced(holder) => errors.push(violation(format!(
                    "the import does not wait for a fence of {holder}, which may still hold the pool"
                ))),
                None if forced => {
                    // Nobody can say where the pool is: every other instance of the target
                    // host's resource must be fenced, by this plan or already (an apply that
                    // was interrupted after its fence), and some fence must exist.
                    let target = target.and_then(|text| text.parse::<InstanceAddress>().ok());
                    let others: Vec<&InstanceAddress> = target
                        .as_ref()
                        .map(|target| {
                            snapshot
                                .resources
                                .keys()
                                .filter(|host| host.address == target.address && *host != target)
                                .collect()
                        })
                        .unwrap_or_default();
                    let fence_before = ancestors
                        .iter()
                        .any(|id| steps.get(id).is_some_and(|s| s.action == Action::Fence));
                    if let Some(unfenced) = others.iter().find(|host| !fenced(host)) {
                        errors.push(violation(format!(
                            "zpool import -f does not wait for a fence of {unfenced}, which may still hold the pool"
                        )));
                    } else if others.is_empty() && !fence_before {
                        errors.push(violation(
                            "zpool import -f is planned without any fence before it".to_owned(),
                        ));
                    }
                }
                _ => {}
            }
        }

        // 14. A replica becomes writable only once the old primary cannot write: a fence of
        // its host before the promotion, or a hand-over, in which the old primary itself
        // stops, sends its last increment and becomes the replica.
        if step.action == Action::Promote {
            let target = step.inputs.get(zfs_pool::HOST).and_then(Value::as_str);
            let handed_over = step
                .inputs
                .get(zfs_pool::HAND_OVER_FROM)
                .and_then(Value::as_str);
            let holder = reading
                .and_then(|reading| reading.attribute(zfs_pool::HOST))
                .and_then(Value::as_str)
                .filter(|holder| Some(*holder) != target && Some(*holder) != handed_over)
                .and_then(|holder| holder.parse::<InstanceAddress>().ok());
            if let Some(holder) = holder {
                let ancestors = ancestors(step, &steps);
                let fenced = (snapshot
                    .get(&holder)
                    .is_some_and(Observation::is_fenced_host)
                    && !started.contains(&holder))
                    || ancestors.contains(&StepId::new(&holder, Action::Fence));
                if !fenced {
                    errors.push(violation(format!(
                        "the promotion neither waits for a fence of {holder} nor hands the pool over from it, and {holder} may still write to the pool"
                    )));
                }
            }
        }

        // 2. A disk is attached to at most one VM: an attach follows the detach from the old.
        if step.action == Action::Attach {
            let target = step.inputs.get(disk::VM).and_then(Value::as_str);
            let attached = reading
                .and_then(|reading| reading.attribute(disk::VM))
                .and_then(Value::as_str)
                .filter(|vm| Some(*vm) != target);
            if let Some(attached) = attached
                && !ancestors(step, &steps).contains(&StepId::new(instance, Action::Detach))
            {
                errors.push(violation(format!(
                    "the attach does not wait for the detach from {attached}"
                )));
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The moves that may change where a stateful instance is; every other step must leave it.
fn is_failover_move(action: Action) -> bool {
    matches!(
        action,
        Action::Fence
            | Action::Detach
            | Action::Move
            | Action::Attach
            | Action::Export
            | Action::Import
            | Action::Promote
            | Action::Retire
            | Action::Delete
    )
}

/// Safety invariant 10 of ARCHITECTURE.md: a step other than a failover move that would change a stateful instance's
/// placement as it reads now (an update of a disk's `vm` from one VM to another, of a pool's
/// `host`) in place, with no fence, detach or export before it.
fn placement_changed_in_place(
    step: &Step,
    reading: Option<&Observation>,
    rules: &RuleBook,
) -> Option<String> {
    let kind = step.address.kind();
    if !kind.is_stateful() || is_failover_move(step.action) {
        return None;
    }
    let observed = reading.and_then(Observation::attributes);
    let mut changed: Vec<String> = Vec::new();
    for (attribute, before) in observed.into_iter().flatten() {
        if !crate::world::is_placement(rules, kind, attribute)
            || crate::world::generation_references(before).is_empty()
        {
            continue;
        }
        if let Some(after) = step.inputs.get(attribute)
            && after != before
            && value::unresolved(after).is_empty()
        {
            changed.push(format!(
                "{attribute} from {} to {}",
                show(before),
                show(after)
            ));
        }
    }
    for change in step.changes() {
        let (Some(before), Some(after)) = (change.before, change.after) else {
            continue;
        };
        if before != after
            && crate::world::is_placement(rules, kind, change.path)
            && !crate::world::generation_references(before).is_empty()
            && !changed
                .iter()
                .any(|line| line.starts_with(&format!("{} from", change.path)))
        {
            changed.push(format!(
                "{} from {} to {}",
                change.path,
                show(before),
                show(after)
            ));
        }
    }
    if changed.is_empty() {
        return None;
    }
    Some(format!(
        "{} would change {} in place: a stateful resource changes placement only by a fence, detach, move and attach (a pool: export, fence, import), never by an update",
        article(step.action),
        changed.join(", ")
    ))
}

/// Safety invariant 11 of ARCHITECTURE.md: a step that builds, changes, starts or runs an instance of a generation older
/// than the data's, or places a stateful instance there.
fn behind_the_data(
    step: &Step,
    rules: &RuleBook,
    data: ferry_core::Generation,
    evidence: &crate::world::Placement,
) -> Option<String> {
    let because = format!(
        "the data is on generation {data} ({}'s {} reads {})",
        evidence.instance, evidence.attribute, evidence.on
    );
    if let Some(generation) = step.address.generation
        && generation < data
        && matches!(
            step.action,
            Action::Create | Action::Update | Action::Replace | Action::Run | Action::Wait
        )
    {
        let what = if starts_a_vm(step) {
            "a start".to_owned()
        } else {
            article(step.action)
        };
        return Some(format!(
            "{what} of generation {generation} was planned, but {because}: ferry never moves the service back behind its data"
        ));
    }
    if !step.address.kind().is_stateful() {
        return None;
    }
    // What the step places: every reference for a build or an update; for a move, only where
    // it moves to (a detach names the VM it leaves, an import the hosts it relies on as fenced).
    let placing: Vec<&str> = match step.action {
        Action::Create | Action::Update | Action::Replace => step
            .inputs
            .keys()
            .map(String::as_str)
            .filter(|name| crate::world::is_placement(rules, step.address.kind(), name))
            .collect(),
        Action::Attach => vec![disk::VM],
        Action::Move => vec![disk::RESOURCE_GROUP],
        Action::Import | Action::Promote => vec![zfs_pool::HOST],
        _ => Vec::new(),
    };
    let behind: Vec<String> = placing
        .into_iter()
        .filter_map(|name| step.inputs.get(name).map(|value| (name, value)))
        .flat_map(|(name, value)| {
            crate::world::generation_references(value)
                .into_iter()
                .filter(|on| on.generation.is_some_and(|generation| generation < data))
                .map(move |on| format!("{name} = {on}"))
        })
        .collect();
    if behind.is_empty() {
        return None;
    }
    Some(format!(
        "{} would place it on an older generation ({}), but {because}: data never moves backwards",
        article(step.action),
        behind.join(", ")
    ))
}

/// "an update", "a move".
fn article(action: Action) -> String {
    let name = action.to_string();
    if name.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {name}")
    } else {
        format!("a {name}")
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Whether a step starts a VM: an update or replacement that takes its power state to
/// running (what `KindRules::implied_changes` asks of a VM that reads deallocated or stopped).
fn starts_a_vm(step: &Step) -> bool {
    step.address.kind() == Kind::Vm
        && matches!(step.action, Action::Update | Action::Replace)
        && step.changes().any(|change| {
            change.path == vm::POWER_STATE
                && change.after.and_then(Value::as_str) == Some("running")
        })
}

fn ancestors(step: &Step, steps: &FxHashMap<&StepId, &Step>) -> HashSet<StepId> {
    let mut seen = HashSet::new();
    let mut stack: Vec<&StepId> = step.after.iter().collect();
    while let Some(id) = stack.pop() {
        if seen.insert(id.clone())
            && let Some(step) = steps.get(id)
        {
            stack.extend(step.after.iter());
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::Attributes;
    use serde_json::json;

    fn step(id: &str, action: Action, after: &[&str], inputs: Value) -> Step {
        let address: InstanceAddress = id.parse().unwrap();
        Step {
            id: StepId::new(&address, action),
            address,
            action,
            reason: String::new(),
            after: after.iter().map(|id| StepId((*id).to_owned())).collect(),
            estimate_seconds: 1,
            changes: Default::default(),
            inputs: serde_json::from_value::<Attributes>(inputs).unwrap(),
            warning: None,
        }
    }

    fn plan(steps: Vec<Step>) -> Plan {
        Plan::of_steps(steps, Vec::new(), 0)
    }

    fn messages(plan: &Plan, snapshot: &Snapshot, allow_destroy: bool) -> Vec<String> {
        let config = PlanConfig {
            allow_destroy,
            ..PlanConfig::default()
        };
        match check(plan, snapshot, &ferry_providers::rule_book(), &config) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .iter()
                .map(|error| error.to_string().lines().next().unwrap().to_owned())
                .collect(),
        }
    }

    #[test]
    fn one_disk_declared_twice_for_two_vms_is_refused() {
        let text = |second_name: &str| {
            format!(
                r#"
[deployment]
name = "twice"
location = "westeurope"

[failover]
mode = "off"

[resource_group.main]
name = "twice-g${{generation}}"

[vnet.main]
name = "twice-vnet"
resource_group = "resource_group.main"
address_space = ["10.1.0.0/16"]

[vm.a]
name = "twice-a"
resource_group = "resource_group.main"
vnet = "vnet.main"
size = "Standard_D4s_v5"
ssh_public_key = "ssh-ed25519 AAAA a"

[vm.b]
name = "twice-b"
resource_group = "resource_group.main"
vnet = "vnet.main"
size = "Standard_D4s_v5"
ssh_public_key = "ssh-ed25519 AAAA b"

[disk.first]
name = "shared-data"
resource_group = "resource_group.main"
size_gb = 64
vm = "vm.a"
lun = 0

[disk.second]
name = "{second_name}"
resource_group = "resource_group.main"
size_gb = 64
vm = "vm.b"
lun = 0
"#
            )
        };
        let load = |text: &str| {
            let folder = std::env::temp_dir().join(format!(
                "ferry-plan-twice-{}-{}",
                std::process::id(),
                text.len()
            ));
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("spec.toml"), text).unwrap();
            let spec = ferry_spec::load(
                &folder.join("spec.toml"),
                &ferry_spec::LoadOptions::default(),
                &ferry_providers::rule_book(),
            )
            .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
            let _ = std::fs::remove_dir_all(&folder);
            spec
        };
        let refused = check_spec(&load(&text("SHARED-data")))
            .unwrap_err()
            .iter()
            .map(|error| error.to_string())
            .collect::<Vec<_>>();
        assert_eq!(
            refused,
            [
                "the managed disk `shared-data` in resource_group.main would be attached to more than one VM (disk.first to vm.a, disk.second to vm.b): a disk is attached to at most one VM\n  help: declare the disk once, or give each disk resource its own name"
            ]
        );
        assert!(check_spec(&load(&text("other-data"))).is_ok());
    }

    fn pool_on(host: &str) -> Snapshot {
        let mut snapshot = Snapshot::new(1);
        snapshot.insert(
            "zfs_pool.home".parse().unwrap(),
            Observation::present(
                serde_json::from_value(json!({"host": host, "imported": true})).unwrap(),
            ),
        );
        snapshot.insert(
            "vm.nfs@g1".parse().unwrap(),
            Observation::present(Attributes::new()),
        );
        snapshot
    }

    #[test]
    fn an_import_without_a_fence_of_the_old_host_is_refused() {
        let unfenced = plan(vec![step(
            "zfs_pool.home",
            Action::Import,
            &[],
            json!({"host": "vm.nfs@g2", "force": true}),
        )]);
        assert_eq!(
            messages(&unfenced, &pool_on("vm.nfs@g1"), false),
            [
                "zfs_pool.home: the import does not wait for a fence of vm.nfs@g1, which may still hold the pool"
            ]
        );
        let fenced = plan(vec![
            step("vm.nfs@g1", Action::Fence, &[], json!({})),
            step(
                "zfs_pool.home",
                Action::Import,
                &["vm.nfs@g1:fence"],
                json!({"host": "vm.nfs@g2", "force": true}),
            ),
        ]);
        assert_eq!(
            messages(&fenced, &pool_on("vm.nfs@g1"), false),
            Vec::<String>::new()
        );
    }

    /// An apply interrupted after its fence: the old host reads deallocated and the pool reads
    /// nowhere, so the resumed plan forces the import with no fence step of its own.
    #[test]
    fn a_forced_import_after_a_fence_that_already_happened_is_allowed_only_then() {
        let forced = plan(vec![step(
            "zfs_pool.home",
            Action::Import,
            &[],
            json!({"host": "vm.nfs@g2", "force": true}),
        )]);
        let reading = |power_state: &str| {
            let mut snapshot = Snapshot::new(1);
            snapshot.insert("zfs_pool.home".parse().unwrap(), Observation::Absent);
            snapshot.insert(
                "vm.nfs@g1".parse().unwrap(),
                Observation::present(
                    serde_json::from_value(json!({"power_state": power_state})).unwrap(),
                ),
            );
            snapshot.insert(
                "vm.nfs@g2".parse().unwrap(),
                Observation::present(
                    serde_json::from_value(json!({"power_state": "running"})).unwrap(),
                ),
            );
            snapshot
        };
        assert_eq!(
            messages(&forced, &reading("deallocated"), false),
            Vec::<String>::new()
        );
        assert_eq!(
            messages(&forced, &reading("running"), false),
            [
                "zfs_pool.home: zpool import -f does not wait for a fence of vm.nfs@g1, which may still hold the pool"
            ]
        );
    }

    #[test]
    fn a_forced_import_of_a_pool_nobody_can_read_needs_a_fence() {
        let mut snapshot = Snapshot::new(1);
        snapshot.insert(
            "zfs_pool.home".parse().unwrap(),
            Observation::Unknown {
                reason: "ssh: connection refused".into(),
            },
        );
        let forced = plan(vec![step(
            "zfs_pool.home",
            Action::Import,
            &[],
            json!({"host": "vm.nfs@g2", "force": true}),
        )]);
        assert_eq!(
            messages(&forced, &snapshot, false),
            ["zfs_pool.home: zpool import -f is planned without any fence before it"]
        );
    }

    /// An update that starts a VM, as `VmRules::implied_changes` has the planner draft it.
    fn start(id: &str, after: &[&str]) -> Step {
        let mut step = step(id, Action::Update, after, json!({"power_state": "running"}));
        step.changes = ferry_core::Changes::from(vec![ferry_core::AttributeChange {
            path: "power_state".into(),
            before: Some(json!("deallocated")),
            after: Some(json!("running")),
            forces_replacement: None,
        }]);
        step
    }

    #[test]
    fn a_vm_is_started_only_in_the_serving_generation_and_never_where_a_fence_is_relied_on() {
        // The old generation of a failover: fenced, and only retired.
        let mut old = plan(vec![start("vm.nfs@g1", &[])]);
        old.failover = Some(ferry_core::Failover {
            from_generation: 1,
            to_generation: 2,
            trigger: "a test".into(),
        });
        assert_eq!(
            messages(&old, &Snapshot::new(1), false),
            [
                "vm.nfs@g1: a VM of generation 1 would be started, but generation 2 serves: an older generation's VM is fenced and only retired"
            ]
        );
        // After the failover, without one in the plan.
        assert_eq!(
            messages(
                &plan(vec![start("vm.nfs@g1", &[])]),
                &Snapshot::new(2),
                false
            ),
            [
                "vm.nfs@g1: a VM of generation 1 would be started, but generation 2 serves: an older generation's VM is fenced and only retired"
            ]
        );
        // Started and fenced by one plan.
        let both = plan(vec![
            step("vm.nfs@g1", Action::Fence, &[], json!({})),
            start("vm.nfs@g1", &["vm.nfs@g1:fence"]),
        ]);
        assert_eq!(
            messages(&both, &Snapshot::new(1), false),
            ["vm.nfs@g1: a VM would be started and fenced by one plan"]
        );
        // An import that relies on another host's reading deallocated, which the plan starts.
        let mut snapshot = Snapshot::new(1);
        snapshot.insert(
            "zfs_pool.home".parse().unwrap(),
            Observation::present(
                serde_json::from_value(json!({"host": "vm.old@g1", "imported": true})).unwrap(),
            ),
        );
        snapshot.insert(
            "vm.old@g1".parse().unwrap(),
            Observation::present(
                serde_json::from_value(json!({"power_state": "deallocated"})).unwrap(),
            ),
        );
        let import = step(
            "zfs_pool.home",
            Action::Import,
            &[],
            json!({"host": "vm.nfs@g1", "force": true}),
        );
        assert_eq!(
            messages(&plan(vec![import.clone()]), &snapshot, false),
            Vec::<String>::new()
        );
        assert_eq!(
            messages(
                &plan(vec![start("vm.old@g1", &[]), import]),
                &snapshot,
                false
            ),
            [
                "zfs_pool.home: the import does not wait for a fence of vm.old@g1, which may still hold the pool"
            ]
        );
        // The serving generation's VM is started.
        assert_eq!(
            messages(
                &plan(vec![start("vm.nfs@g2", &[])]),
                &Snapshot::new(2),
                false
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_disk_is_never_attached_before_its_detach() {
        let mut snapshot = Snapshot::new(1);
        snapshot.insert(
            "disk.home0".parse().unwrap(),
            Observation::present(serde_json::from_value(json!({"vm": "vm.nfs@g1"})).unwrap()),
        );
        let attach = plan(vec![step(
            "disk.home0",
            Action::Attach,
            &[],
            json!({"vm": "vm.nfs@g2"}),
        )]);
        assert_eq!(
            messages(&attach, &snapshot, false),
            ["disk.home0: the attach does not wait for the detach from vm.nfs@g1"]
        );
    }

    /// The world after a failover to generation 2, as a state that says generation 1 serves
    /// (lost and rebuilt empty, or restored from an old copy) would have it planned.
    fn data_on_generation_2() -> Snapshot {
        let mut snapshot = Snapshot::new(1);
        snapshot.insert(
            "disk.home0".parse().unwrap(),
            Observation::present(
                serde_json::from_value(
                    json!({"vm": "vm.nfs@g2", "resource_group": "resource_group.main@g2", "lun": 0}),
                )
                .unwrap(),
            ),
        );
        snapshot.insert(
            "zfs_pool.home".parse().unwrap(),
            Observation::present(
                serde_json::from_value(json!({"host": "vm.nfs@g2", "imported": true})).unwrap(),
            ),
        );
        snapshot.insert(
            "vm.nfs@g1".parse().unwrap(),
            Observation::present(
                serde_json::from_value(json!({"power_state": "deallocated"})).unwrap(),
            ),
        );
        snapshot
    }

    /// Safety invariant 10 of ARCHITECTURE.md: whatever the state says, a disk changes VM (and a pool host) only by the
    /// failover's moves, never by an update in place.
    #[test]
    fn a_disk_or_pool_is_never_moved_by_an_update_in_place() {
        let snapshot = data_on_generation_2();
        let mut disk = step(
            "disk.home0",
            Action::Update,
            &[],
            json!({"vm": "vm.nfs@g1", "resource_group": "resource_group.main@g1", "lun": 0}),
        );
        disk.changes = ferry_core::Changes::from(vec![ferry_core::AttributeChange {
            path: "vm".into(),
            before: Some(json!("vm.nfs@g2")),
            after: Some(json!("vm.nfs@g1")),
            forces_replacement: None,
        }]);
        let pool = step(
            "zfs_pool.home",
            Action::Update,
            &[],
            json!({"host": "vm.nfs@g1"}),
        );
        assert_eq!(
            messages(&plan(vec![disk, pool]), &snapshot, false),
            [
                "disk.home0: an update would change resource_group from resource_group.main@g2 to resource_group.main@g1, vm from vm.nfs@g2 to vm.nfs@g1 in place: a stateful resource changes placement only by a fence, detach, move and attach (a pool: export, fence, import), never by an update",
                "disk.home0: an update would place it on an older generation (resource_group = resource_group.main@g1, vm = vm.nfs@g1), but the data is on generation 2 (disk.home0's resource_group reads resource_group.main@g2): data never moves backwards",
                "zfs_pool.home: an update would change host from vm.nfs@g2 to vm.nfs@g1 in place: a stateful resource changes placement only by a fence, detach, move and attach (a pool: export, fence, import), never by an update",
                "zfs_pool.home: an update would place it on an older generation (host = vm.nfs@g1), but the data is on generation 2 (disk.home0's resource_group reads resource_group.main@g2): data never moves backwards",
            ]
        );
        // Forward, too: a move to the next generation is a failover's, not an update's.
        let mut forward = data_on_generation_2();
        forward.insert(
            "disk.home0".parse().unwrap(),
            Observation::present(serde_json::from_value(json!({"vm": "vm.nfs@g1"})).unwrap()),
        );
        forward.resources.remove(&"zfs_pool.home".parse().unwrap());
        assert_eq!(
            messages(
                &plan(vec![step(
                    "disk.home0",
                    Action::Update,
                    &[],
                    json!({"vm": "vm.nfs@g2"})
                )]),
                &forward,
                false
            ),
            [
                "disk.home0: an update would change vm from vm.nfs@g1 to vm.nfs@g2 in place: a stateful resource changes placement only by a fence, detach, move and attach (a pool: export, fence, import), never by an update"
            ]
        );
        // The moves themselves, and an update that leaves the placement as it reads, pass.
        let moves = plan(vec![
            step(
                "disk.home0",
                Action::Detach,
                &[],
                json!({"vm": "vm.nfs@g1"}),
            ),
            step(
                "disk.home0",
                Action::Attach,
                &["disk.home0:detach"],
                json!({"vm": "vm.nfs@g2", "lun": 0}),
            ),
        ]);
        assert_eq!(messages(&moves, &forward, false), Vec::<String>::new());
        let grow = step(
            "disk.home0",
            Action::Update,
            &[],
            json!({"vm": "vm.nfs@g2", "size_gb": 2048}),
        );
        assert_eq!(
            messages(&plan(vec![grow]), &snapshot, false),
            Vec::<String>::new()
        );
    }

    /// Safety invariant 11 of ARCHITECTURE.md: whatever the state says (here: generation 1 serves), nothing of a
    /// generation older than the one the data is on is started, built or run, and nothing
    /// stateful is attached or imported there.
    #[test]
    fn nothing_is_started_built_or_placed_behind_the_generation_the_data_is_on() {
        let snapshot = data_on_generation_2();
        let backwards = plan(vec![
            start("vm.nfs@g1", &[]),
            step("hook.prod_hub@g1", Action::Run, &[], json!({})),
            step(
                "disk.home0",
                Action::Attach,
                &[],
                json!({"vm": "vm.nfs@g1", "lun": 0}),
            ),
            step(
                "zfs_pool.home",
                Action::Import,
                &["vm.nfs@g1:fence"],
                json!({"host": "vm.nfs@g1", "fenced_hosts": ["vm.nfs@g2"]}),
            ),
        ]);
        let refused = messages(&backwards, &snapshot, false);
        assert!(
            refused.contains(&"vm.nfs@g1: a start of generation 1 was planned, but the data is on generation 2 (disk.home0's resource_group reads resource_group.main@g2): ferry never moves the service back behind its data".to_owned()),
            "{refused:#?}"
        );
        assert!(
            refused.contains(&"hook.prod_hub@g1: a run of generation 1 was planned, but the data is on generation 2 (disk.home0's resource_group reads resource_group.main@g2): ferry never moves the service back behind its data".to_owned()),
            "{refused:#?}"
        );
        assert!(
            refused.contains(&"disk.home0: an attach would place it on an older generation (vm = vm.nfs@g1), but the data is on generation 2 (disk.home0's resource_group reads resource_group.main@g2): data never moves backwards".to_owned()),
            "{refused:#?}"
        );
        assert!(
            refused.contains(&"zfs_pool.home: an import would place it on an older generation (host = vm.nfs@g1), but the data is on generation 2 (disk.home0's resource_group reads resource_group.main@g2): data never moves backwards".to_owned()),
            "{refused:#?}"
        );
        // Retiring the old generation, and starting the one the data is on, pass.
        let forward = plan(vec![
            step("vm.nfs@g1", Action::Retire, &[], json!({})),
            start("vm.nfs@g2", &[]),
        ]);
        let mut serving = snapshot.clone();
        serving.active_generation = 2;
        assert_eq!(messages(&forward, &serving, false), Vec::<String>::new());
    }

    #[test]
    fn nothing_is_created_or_deleted_from_an_unknown_reading_and_nothing_stateful_retired() {
        let mut snapshot = Snapshot::new(1);
        snapshot.insert(
            "vm.nfs@g1".parse().unwrap(),
            Observation::Unknown {
                reason: "timeout".into(),
            },
        );
        snapshot.insert(
            "disk.home0".parse().unwrap(),
            Observation::present(Attributes::new()),
        );
        let bad = plan(vec![
            step("vm.nfs@g1", Action::Delete, &[], json!({})),
            step("disk.home0", Action::Retire, &[], json!({})),
            step("disk.home0", Action::Delete, &[], json!({})),
        ]);
        assert_eq!(
            messages(&bad, &snapshot, false),
            [
                "vm.nfs@g1: a delete was planned from an unknown reading",
                "disk.home0: a stateful resource would be destroyed by a retire",
                "disk.home0: a stateful resource would be destroyed by a delete",
            ]
        );
        assert_eq!(
            messages(&bad, &snapshot, true),
            [
                "vm.nfs@g1: a delete was planned from an unknown reading",
                "disk.home0: a stateful resource would be destroyed by a retire",
            ]
        );
    }
}
