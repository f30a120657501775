//! A failover drill (issue 17), the planner's half: the production spec rewritten into the
//! drill's (names marked, disks copied, hooks told, a state of its own), and the safety pass
//! that refuses a drill plan with a step on a production instance.
//!
//! Pure like the rest of the planner: the drill's plan is `crate::plan` of [`drill_spec`]
//! against the drill's own readings, checked by [`check_drill_plan`] against production's (a
//! staged drill's failover by [`check_drill_failover`]); its clean-up is [`teardown_plan`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use ferry_core::{Action, Kind, Observation, Plan, Snapshot, StepId, Value};
use ferry_spec::{Spec, StateConfig};

/// What every name the drill makes ends with, so that a person reading a portal, a zone or a
/// bill knows what is the drill's.
pub const DRILL_MARK: &str = "-drill";

/// The field of a disk in a drill's spec that names the production disk it is a copy of (its
/// ARM id, or its address in a simulated world): only ever read.
pub const COPY_OF: &str = ferry_core::fields::disk::COPY_OF;

/// The environment variables every hook of a drill runs with.
pub const DRILL_VARIABLE: &str = "FERRY_DRILL";
pub const DRILL_ID_VARIABLE: &str = "FERRY_DRILL_ID";

/// The actions a drill's build never takes: each acts on an instance that already holds
/// something, never on what the build makes. A staged drill's failover takes them, on the
/// instances its own build made ([`check_drill_failover`]).
pub const NEVER_IN_A_DRILL: [Action; 6] = [
    Action::Fence,
    Action::Detach,
    Action::Move,
    Action::Export,
    Action::Promote,
    Action::Retire,
];

/// A drill's id: it marks the drill's tag (`ferry-drill=ID`) and its hooks' `FERRY_DRILL_ID`.
/// Lower-case letters, digits and `-`, 1 to 40 of them, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DrillId(String);

impl DrillId {
    pub fn new(text: &str) -> Result<Self, DrillRefusal> {
        let valid = !text.is_empty()
            && text.len() <= 40
            && !text.starts_with('-')
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(DrillRefusal(format!(
                "`{text}` is not a drill id: use 1 to 40 lower-case letters, digits and -, such as 2026-12-07-a"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DrillId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a drill cannot be planned from this spec and these readings; the text says what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DrillRefusal(pub String);

/// What a drill's state blob's name ends with, after production's (`data100/state.json.drill`).
pub const DRILL_BLOB_SUFFIX: &str = ".drill";

/// The drill's `[state]`: beside production's and never production's, so that the drill holds
/// a lock of its own and a real failover can still take production's.
pub fn drill_state(production: &StateConfig) -> StateConfig {
    match production {
        StateConfig::Local { path } => StateConfig::Local {
            path: path.join("drill"),
        },
        StateConfig::AzureBlob {
            account,
            container,
            blob,
            endpoint,
            sas_url_env,
            ca_file,
        } => StateConfig::AzureBlob {
            account: account.clone(),
            container: container.clone(),
            blob: format!("{blob}{DRILL_BLOB_SUFFIX}"),
            endpoint: endpoint.clone(),
            sas_url_env: sas_url_env.clone(),
            ca_file: ca_file.clone(),
        },
    }
}

/// The fields of a kind that name what Azure, a zone or a portal shows: marked in a drill.
fn marked_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::AksCluster => &["name", "dns_prefix"],
        // The drill's address is its own, in a group of its own: production's is held by
        // production's ingress, and a drill never takes it.
        Kind::StaticIp => &["name", "resource_group"],
        Kind::ResourceGroup
        | Kind::Vnet
        | Kind::PublicIp
        | Kind::Vm
        | Kind::Disk
        | Kind::DnsRecord => &["name"],
        Kind::ZfsPool | Kind::Hook | Kind::Check => &[],
    }
}

/// The tag every Azure resource of a drill carries (`ferry-drill = ID`): what the clean-up
/// lists, and what tells a person in the portal that it is not production's.
pub const DRILL_TAG: &str = ferry_core::fields::DRILL_TAG;

/// The drill's layout of the production spec, without its copies: every name marked with
/// [`DRILL_MARK`], every resource whose kind has `tags` tagged [`DRILL_TAG`], every hook run
/// with `FERRY_DRILL=1` and `FERRY_DRILL_ID`, production's standby, the drill's own state. Its
/// dependencies are production's: what the clean-up orders its deletes by.
pub fn drill_layout(production: &Spec, rules: &ferry_core::RuleBook, id: &DrillId) -> Spec {
    let mut drill = production.clone();
    drill.state = drill_state(&production.state);
    for (address, resource) in &mut drill.resources {
        for field in marked_fields(address.kind) {
            // Always appended, even to a name that ends with the mark already: production's
            // `hub-drill` becomes `hub-drill-drill`, never the drill's `hub` twin.
            if let Some(Value::String(name)) = resource.fields.get_mut(*field) {
                name.push_str(DRILL_MARK);
            }
        }
        let tagged = rules
            .get(address.kind)
            .is_some_and(|kind| kind.fields().iter().any(|field| field.name == "tags"));
        if tagged {
            let tags = resource
                .fields
                .get_or_insert_with("tags", || Value::Object(serde_json::Map::new()));
            if let Value::Object(tags) = tags {
                tags.insert(DRILL_TAG.to_owned(), Value::from(id.as_str()));
            }
        }
        if address.kind == Kind::Hook {
            let environment = resource
                .fields
                .get_or_insert_with("env", || Value::Object(serde_json::Map::new()));
            if let Value::Object(environment) = environment {
                environment.insert(DRILL_VARIABLE.to_owned(), Value::from("1"));
                environment.insert(DRILL_ID_VARIABLE.to_owned(), Value::from(id.as_str()));
            }
        }
    }
    drill
}

/// The production spec rewritten into the drill's ([`drill_layout`]), with every stateful
/// disk a copy of production's (`copy_of`: the id production's reading gives, only read).
/// Refused when there is nothing to drill, when production serves nothing yet, and when a
/// production disk does not read present (a copy needs a source that is there).
pub fn drill_spec(
    production: &Spec,
    production_readings: &Snapshot,
    rules: &ferry_core::RuleBook,
    id: &DrillId,
) -> Result<Spec, DrillRefusal> {
    let stateful = production
        .resources
        .keys()
        .any(|address| address.kind.is_stateful());
    if !stateful && production.failover.triggers.is_empty() {
        return Err(DrillRefusal(format!(
            "nothing to drill: deployment {} has no stateful resource to copy and no [failover] triggers, so it has no failover to rehearse; add them, or plan it with ferry plan",
            production.deployment.name
        )));
    }
    if production_readings.active_generation == 0 {
        return Err(DrillRefusal(format!(
            "deployment {} serves no generation yet, so there is nothing to copy: build it with ferry apply first, then drill",
            production.deployment.name
        )));
    }
    // A hot standby's replica disks are new, empty disks in the drill: its stage seeds its
    // replica from its own primary, as production's first apply did.
    let replica_disks: BTreeSet<ferry_core::ResourceAddress> = production
        .hot_pools()
        .flat_map(|pool| {
            pool.field(ferry_core::fields::zfs_pool::REPLICA_DISKS)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|disk| disk.as_str()?.parse().ok())
        })
        .collect();
    // Which production disk holds what each of the spec's pool disks stands for: itself, but
    // after a hot failover the pool serves from its replica's disks (its reading lists them),
    // and the drill copies the side that serves.
    let mut serving_disk: BTreeMap<ferry_core::ResourceAddress, ferry_core::ResourceAddress> =
        BTreeMap::new();
    for pool in production.resources.values() {
        if pool.address.kind != Kind::ZfsPool {
            continue;
        }
        let listed = |value: Option<&Value>| -> Vec<ferry_core::ResourceAddress> {
            value
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|disk| disk.as_str()?.parse::<ferry_core::InstanceAddress>().ok())
                .map(|disk| disk.address)
                .collect()
        };
        let written = listed(pool.field(ferry_core::fields::zfs_pool::DISKS));
        let read = match production_readings.resources.get(&pool.address.at(None)) {
            Some(Observation::Present { attributes, .. }) => {
                listed(attributes.get(ferry_core::fields::zfs_pool::DISKS))
            }
            _ => Vec::new(),
        };
        if read.len() == written.len() {
            serving_disk.extend(written.into_iter().zip(read));
        }
    }
    let mut drill = drill_layout(production, rules, id);
    let mut problems = Vec::new();
    for (address, resource) in &mut drill.resources {
        if address.kind != Kind::Disk || replica_disks.contains(address) {
            continue;
        }
        let instance = serving_disk.get(address).unwrap_or(address).at(None);
        match production_readings.resources.get(&instance) {
            Some(Observation::Present { attributes, .. }) => {
                let source = attributes
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .unwrap_or_else(|| instance.to_string());
                resource
                    .fields
                    .insert(COPY_OF.to_owned(), Value::from(source));
            }
            Some(Observation::Unknown { reason }) => problems.push(format!(
                "{instance} reads unknown in production ({reason}): a copy needs its source read; drill again once it reads"
            )),
            _ => problems.push(format!(
                "{instance} is not in production's readings, so there is nothing to copy: build it with ferry apply, or remove it from the spec"
            )),
        }
    }
    if !problems.is_empty() {
        return Err(DrillRefusal(problems.join("\n")));
    }
    mark_copied_pools(&mut drill, id);
    Ok(drill)
}

/// Marks every pool of the drill's spec whose every disk is a copy (`copy_of`) with the
/// drill's id (`zfs_pool.drill`): its create then imports the copy of production's pool that it
/// finds on those disks, which a pool's create otherwise refuses (a pool it did not make, on
/// disks it was asked to create one on). Only a pool wholly on copies: one on a disk the drill
/// makes empty, or on a disk that is no copy, is created as the spec says, or refused.
fn mark_copied_pools(drill: &mut Spec, id: &DrillId) {
    let copies: BTreeSet<ferry_core::ResourceAddress> = drill
        .resources
        .iter()
        .filter(|(address, resource)| {
            address.kind == Kind::Disk && resource.fields.get(COPY_OF).is_some()
        })
        .map(|(address, _)| address.clone())
        .collect();
    for (address, resource) in &mut drill.resources {
        if address.kind != Kind::ZfsPool {
            continue;
        }
        let disks: Vec<ferry_core::ResourceAddress> = resource
            .fields
            .get(ferry_core::fields::zfs_pool::DISKS)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|disk| disk.as_str()?.parse().ok())
            .collect();
        if !disks.is_empty() && disks.iter().all(|disk| copies.contains(disk)) {
            resource.fields.insert(
                ferry_core::fields::zfs_pool::DRILL.to_owned(),
                Value::from(id.as_str()),
            );
        }
    }
}

/// One step of a drill plan that would touch production, and what it would touch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub step: StepId,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.step, self.what)
    }
}

/// The safety pass refused the drill's plan: every step that would touch production.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "refused: this drill would touch production, and a drill never changes production:\n{}\nnothing was changed; rename what collides in the spec (a drill marks every name with {DRILL_MARK}), then drill again",
    .0.iter().map(|violation| format!("  {violation}")).collect::<Vec<_>>().join("\n")
)]
pub struct TouchesProduction(pub Vec<Violation>);

/// What production's readings say it holds: the things no step of a drill may target. Made
/// once from production's readings, then asked about each step: by [`check_drill_plan`] for
/// the plan, and by the drill's providers for each step's resolved inputs as it starts (an
/// address produced during the drill is only known then).
#[derive(Debug, Default)]
pub struct ProductionIdentities {
    /// ARM ids, lower-case (ARM compares them so).
    ids: BTreeMap<String, String>,
    /// `kind name` of every resource named by a `name` (not DNS records: a name in a zone).
    names: BTreeMap<String, String>,
    /// `zone name type` of every DNS record.
    records: BTreeMap<String, String>,
    /// Host addresses (VMs, public IPs).
    addresses: BTreeMap<String, String>,
}

impl ProductionIdentities {
    /// The production instance whose ARM id is `id` (compared ignoring case), if any.
    pub fn owner_of_id(&self, id: &str) -> Option<&str> {
        self.ids.get(&id.to_lowercase()).map(String::as_str)
    }

    pub fn of(production: &Snapshot) -> Self {
        let mut identities = Self::default();
        for (instance, observation) in &production.resources {
            let Observation::Present { attributes, .. } = observation else {
                continue;
            };
            let text = |name: &str| attributes.get(name).and_then(Value::as_str);
            let owner = instance.to_string();
            if let Some(id) = text("id").filter(|id| id.starts_with("/subscriptions/")) {
                identities.ids.insert(id.to_lowercase(), owner.clone());
            }
            match instance.kind() {
                Kind::DnsRecord => {
                    if let Some(key) = record_key(
                        text("zone"),
                        text("name"),
                        text("type").or(text("record_type")),
                    ) {
                        identities.records.insert(key, owner.clone());
                    }
                }
                kind => {
                    if let Some(name) = text("name") {
                        identities
                            .names
                            .insert(format!("{kind} {}", name.to_lowercase()), owner.clone());
                    }
                }
            }
            for field in ["address", "ip_address", "public_ip_address"] {
                if let Some(address) = text(field).filter(|address| !address.is_empty()) {
                    identities
                        .addresses
                        .insert(address.to_owned(), owner.clone());
                }
            }
        }
        identities
    }

    /// What of production `step`, with these `inputs` (the plan's, or resolved as it starts),
    /// would touch: empty when nothing.
    pub fn touched_by(
        &self,
        step: &ferry_core::Step,
        inputs: &ferry_core::Attributes,
    ) -> Vec<Violation> {
        let mut violations = Vec::new();
        let mut refuse = |what: String| {
            violations.push(Violation {
                step: step.id.clone(),
                what,
            })
        };
        if step.action == Action::Wait {
            return violations;
        }
        let text = |name: &str| inputs.get(name).and_then(Value::as_str);
        match step.address.kind() {
            Kind::DnsRecord => {
                if let Some(owner) = record_key(text("zone"), text("name"), text("type"))
                    .and_then(|key| self.records.get(&key))
                {
                    refuse(format!(
                        "the record {} in {} is production's ({owner})",
                        text("name").unwrap_or_default(),
                        text("zone").unwrap_or_default()
                    ));
                }
            }
            kind => {
                if let Some(name) = text("name")
                    && let Some(owner) = self.names.get(&format!("{kind} {}", name.to_lowercase()))
                {
                    refuse(format!("the {kind} named {name} is production's ({owner})"));
                }
            }
        }
        let mut seen = BTreeSet::new();
        for (field, value) in inputs.iter() {
            // A copy's source is only read: the disk provider snapshots it, or, when it is
            // attached to a VM, takes a restore point of that VM (found from the disk's own
            // reading, never from the step) and restores the copy from it. So a disk step's
            // `copy_of` may name a production disk, and nothing else: not a VM, not another
            // kind's field.
            let copy_source = field == COPY_OF && step.address.kind() == Kind::Disk;
            let mut found = Vec::new();
            strings(value, &mut found);
            for text in found {
                let owner = self
                    .ids
                    .get(&text.to_lowercase())
                    .or_else(|| self.addresses.get(&text));
                let a_disk = |owner: &str| {
                    owner
                        .parse::<ferry_core::InstanceAddress>()
                        .is_ok_and(|instance| instance.kind() == Kind::Disk)
                };
                if let Some(owner) = owner
                    && !(copy_source && a_disk(owner))
                    && seen.insert(text.clone())
                {
                    refuse(format!(
                        "its {field} names {text}, which is production's ({owner})"
                    ));
                }
            }
        }
        violations
    }
}

fn record_key(zone: Option<&str>, name: Option<&str>, kind: Option<&str>) -> Option<String> {
    Some(format!(
        "{} {} {}",
        zone?.trim_end_matches('.').to_lowercase(),
        name?.to_lowercase(),
        kind.unwrap_or("A").to_uppercase()
    ))
}

/// Every string in `value`, at any depth.
fn strings(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::String(text) => found.push(text.clone()),
        Value::Array(items) => items.iter().for_each(|item| strings(item, found)),
        Value::Object(fields) => fields.values().for_each(|item| strings(item, found)),
        _ => {}
    }
}

/// The safety pass of a drill: refuses `plan` when one of its steps is an action a drill
/// never takes, or targets what production's readings hold (an ARM id, a named resource of the
/// same kind and name, a DNS record of the same zone, name and type, or a host address), or
/// carries one of production's ids or addresses in its inputs other than a copy's `copy_of`.
/// A check (`wait`) only reads, so its inputs may name production's (a TLS check of the real
/// host name, connected to the drill's address).
pub fn check_drill_plan(plan: &Plan, production: &Snapshot) -> Result<(), TouchesProduction> {
    let identities = ProductionIdentities::of(production);
    let violations: Vec<Violation> = plan
        .steps
        .iter()
        .flat_map(|step| {
            if NEVER_IN_A_DRILL.contains(&step.action) {
                return vec![Violation {
                    step: step.id.clone(),
                    what: format!(
                        "a drill never plans a {} step: it would act on what already holds data or serves",
                        step.action
                    ),
                }];
            }
            identities.touched_by(step, &step.inputs)
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(TouchesProduction(violations))
    }
}

/// The safety pass of a staged drill's failover ([`is_staged`]): the failover of the drill's
/// own generation onto its own standby, so its fences, moves and retirements are allowed,
/// each on an instance of the drill's; every step is refused, as by [`check_drill_plan`],
/// when it targets or names what production's readings hold.
pub fn check_drill_failover(plan: &Plan, production: &Snapshot) -> Result<(), TouchesProduction> {
    let identities = ProductionIdentities::of(production);
    let violations: Vec<Violation> = plan
        .steps
        .iter()
        .flat_map(|step| identities.touched_by(step, &step.inputs))
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(TouchesProduction(violations))
    }
}

/// Whether a drill of `production` is staged: with a warm or hot standby, the drill first
/// builds its own copy of production as it stands (the serving generation on copies, and the
/// standby beside it), then fails that over onto its standby, which is what it measures; a
/// cold deployment's drill builds its one generation on copies, which is what a cold failover
/// does.
pub fn is_staged(production: &Spec) -> bool {
    production.failover.standby != ferry_spec::Standby::Cold
}

/// Whether `first`'s delete waits for `then`'s: the reverse of the build's order (what
/// depends on an instance goes before it), except for a disk and its VM: ARM refuses to
/// delete an attached disk, and deleting the VM leaves its data disks unattached, so a disk
/// goes after its VM.
fn deleted_after(
    drill: &Spec,
    first: &ferry_core::InstanceAddress,
    then: &ferry_core::InstanceAddress,
) -> bool {
    let through_vm = |dependency: &ferry_spec::Dependency| {
        dependency.via == (ferry_spec::DependencyVia::Reference { field: "vm" })
    };
    let disk_on = |disk: &ferry_core::InstanceAddress, vm: &ferry_core::InstanceAddress| {
        disk.kind() == Kind::Disk
            && drill
                .dependencies(&disk.address)
                .iter()
                .any(|dependency| dependency.address == vm.address && through_vm(dependency))
    };
    if disk_on(first, then) {
        return true;
    }
    if disk_on(then, first) {
        return false;
    }
    // A static IP after every AKS cluster: once a Service took it, the cluster's load balancer
    // holds it, ARM refuses to delete a held address, and the cluster's deletion lets go of it
    // (no field of the spec says so: the hooks ask for it by name).
    match (first.kind(), then.kind()) {
        (Kind::StaticIp, Kind::AksCluster) => return true,
        (Kind::AksCluster, Kind::StaticIp) => return false,
        _ => {}
    }
    drill
        .dependencies(&then.address)
        .iter()
        .any(|dependency| dependency.address == first.address)
}

/// The clean-up of a drill: a delete of every instance the drill's readings show, each after
/// the deletes of what depends on it in the drill's spec (a pool before its disks and host, a
/// disk before its group, but after its VM: `deleted_after`), with the kinds' estimates. Refused while an instance reads
/// unknown: nothing is deleted from an unknown reading (safety invariant 3 of ARCHITECTURE.md).
pub fn teardown_plan(
    drill: &Spec,
    drill_readings: &Snapshot,
    rules: &ferry_core::RuleBook,
) -> Result<Plan, DrillRefusal> {
    let unknown: Vec<String> = drill_readings
        .resources
        .iter()
        .filter_map(|(instance, observation)| match observation {
            Observation::Unknown { reason } => Some(format!("{instance}: {reason}")),
            _ => None,
        })
        .collect();
    if !unknown.is_empty() {
        return Err(DrillRefusal(format!(
            "the drill's clean-up deletes nothing it cannot read; these read unknown:
  {}
try ferry drill --clean again once they read",
            unknown.join("\n  ")
        )));
    }
    let present: Vec<&ferry_core::InstanceAddress> = drill_readings
        .resources
        .iter()
        .filter(|(_, observation)| matches!(observation, Observation::Present { .. }))
        .map(|(instance, _)| instance)
        .collect();
    let mut steps: Vec<ferry_core::Step> = Vec::new();
    for instance in &present {
        let after: Vec<StepId> = present
            .iter()
            .filter(|other| deleted_after(drill, instance, other))
            .map(|other| StepId::new(other, Action::Delete))
            .collect();
        // A check holds nothing: its estimate is its wait's, not a delete's.
        let estimate = match (
            rules.get(instance.kind()),
            drill.resources.get(&instance.address),
        ) {
            _ if instance.kind() == Kind::Check => 0,
            (Some(kind_rules), Some(resource)) => {
                kind_rules.estimate_seconds(Action::Delete, resource)
            }
            _ => 60,
        };
        let inputs = match &drill_readings.resources[*instance] {
            Observation::Present { attributes, .. } => attributes.clone(),
            _ => ferry_core::Attributes::new(),
        };
        steps.push(ferry_core::Step {
            id: StepId::new(instance, Action::Delete),
            address: (*instance).clone(),
            action: Action::Delete,
            reason: "the drill is over: everything it made is deleted".to_owned(),
            after,
            estimate_seconds: estimate,
            changes: Default::default(),
            inputs,
            warning: None,
        });
    }
    // Execution order (a topological order of `after`), and the longest chain of estimates.
    let mut ordered: Vec<ferry_core::Step> = Vec::with_capacity(steps.len());
    let mut finish: BTreeMap<StepId, (u64, Option<StepId>)> = BTreeMap::new();
    while !steps.is_empty() {
        let ready = steps
            .iter()
            .position(|step| step.after.iter().all(|before| finish.contains_key(before)))
            .ok_or_else(|| {
                DrillRefusal(
                    "the drill's spec has a dependency cycle, which ferry validate refuses: run it on the spec".to_owned(),
                )
            })?;
        let step = steps.remove(ready);
        let (start, previous) = step
            .after
            .iter()
            .map(|before| (finish[before].0, Some(before.clone())))
            .max()
            .unwrap_or((0, None));
        finish.insert(step.id.clone(), (start + step.estimate_seconds, previous));
        ordered.push(step);
    }
    let mut critical_path = Vec::new();
    let mut last = finish
        .iter()
        .max_by_key(|(_, (end, _))| *end)
        .map(|(id, _)| id.clone());
    let estimated_seconds = last.as_ref().map_or(0, |id| finish[id].0);
    while let Some(id) = last {
        last = finish[&id].1.clone();
        critical_path.push(id);
    }
    critical_path.reverse();
    Ok(Plan::of_steps(ordered, critical_path, estimated_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_core::{Attributes, InstanceAddress, Step};

    fn instance(text: &str) -> InstanceAddress {
        text.parse().unwrap()
    }

    fn present(pairs: serde_json::Value) -> Observation {
        Observation::present(serde_json::from_value::<Attributes>(pairs).unwrap())
    }

    fn step(address: &str, action: Action, inputs: serde_json::Value) -> Step {
        let address = instance(address);
        Step {
            id: StepId::new(&address, action),
            address,
            action,
            reason: String::new(),
            after: Vec::new(),
            estimate_seconds: 60,
            changes: Default::default(),
            inputs: serde_json::from_value(inputs).unwrap(),
            warning: None,
        }
    }

    fn plan_of(steps: Vec<Step>) -> Plan {
        Plan::of_steps(steps, Vec::new(), 0)
    }

    fn production() -> Snapshot {
        let mut snapshot = Snapshot::new(1);
        snapshot.resources.insert(
            instance("disk.home0"),
            present(serde_json::json!({"name": "data100-home0", "id": "/subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/disks/data100-home0"})),
        );
        snapshot.resources.insert(
            instance("public_ip.ingress@g1"),
            present(serde_json::json!({"name": "data100-ingress", "address": "127.0.0.10"})),
        );
        snapshot.resources.insert(
            instance("vm.nfs@g1"),
            present(serde_json::json!({"name": "data100-nfs-g1", "id": "/subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/virtualMachines/data100-nfs-g1"})),
        );
        snapshot.resources.insert(
            instance("dns_record.prod"),
            present(serde_json::json!({"zone": "data100.example.org", "name": "hub", "type": "A"})),
        );
        snapshot
    }

    /// The drill's own steps pass; each way of touching production is refused, naming the
    /// step and what it would touch; a copy's source and a check's reading are not touches.
    #[test]
    fn the_safety_pass_refuses_every_step_that_touches_production() {
        let production = production();
        let fine = plan_of(vec![
            step(
                "disk.home0",
                Action::Create,
                serde_json::json!({"name": "data100-home0-drill", "copy_of": "/subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/disks/data100-home0"}),
            ),
            step(
                "dns_record.prod",
                Action::Create,
                serde_json::json!({"zone": "data100.example.org", "name": "hub-drill", "type": "A"}),
            ),
            step(
                "check.prod_tls@g1",
                Action::Wait,
                serde_json::json!({"connect_to": "127.0.0.10"}),
            ),
        ]);
        assert_eq!(check_drill_plan(&fine, &production), Ok(()));

        let touching = plan_of(vec![
            step("vm.nfs@g1", Action::Fence, serde_json::json!({})),
            step(
                "disk.home0",
                Action::Update,
                serde_json::json!({"name": "data100-home0"}),
            ),
            step(
                "dns_record.prod",
                Action::Update,
                serde_json::json!({"zone": "data100.example.org.", "name": "HUB", "type": "A"}),
            ),
            step(
                "hook.staging_hub@g1",
                Action::Run,
                serde_json::json!({"env": {"INGRESS_IP": "127.0.0.10"}}),
            ),
            step(
                "disk.home1",
                Action::Create,
                serde_json::json!({"name": "data100-home1-drill", "source": "/SUBSCRIPTIONS/s/resourceGroups/data100-g1/providers/Microsoft.Compute/disks/data100-home0"}),
            ),
            // `copy_of` reads a production disk, and only on a disk's step: production's VM
            // (whose restore point the disk provider takes from the disk's own reading) is
            // never a step's to name.
            step(
                "disk.home2",
                Action::Create,
                serde_json::json!({"name": "data100-home2-drill", "copy_of": "/subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/virtualMachines/data100-nfs-g1"}),
            ),
            step(
                "disk.home3",
                Action::Create,
                serde_json::json!({"name": "data100-home3-drill", "copy_of": "/subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/disks/data100-home0", "source_vm": "/subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/virtualMachines/data100-nfs-g1"}),
            ),
            step(
                "hook.copy@g1",
                Action::Run,
                serde_json::json!({"copy_of": "/subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/disks/data100-home0"}),
            ),
        ]);
        let refused = check_drill_plan(&touching, &production).unwrap_err();
        insta::assert_snapshot!(refused.to_string(), @r"
        refused: this drill would touch production, and a drill never changes production:
          vm.nfs@g1:fence: a drill never plans a fence step: it would act on what already holds data or serves
          disk.home0:update: the disk named data100-home0 is production's (disk.home0)
          dns_record.prod:update: the record HUB in data100.example.org. is production's (dns_record.prod)
          hook.staging_hub@g1:run: its env names 127.0.0.10, which is production's (public_ip.ingress@g1)
          disk.home1:create: its source names /SUBSCRIPTIONS/s/resourceGroups/data100-g1/providers/Microsoft.Compute/disks/data100-home0, which is production's (disk.home0)
          disk.home2:create: its copy_of names /subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/virtualMachines/data100-nfs-g1, which is production's (vm.nfs@g1)
          disk.home3:create: its source_vm names /subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/virtualMachines/data100-nfs-g1, which is production's (vm.nfs@g1)
          hook.copy@g1:run: its copy_of names /subscriptions/s/resourceGroups/data100-g1/providers/Microsoft.Compute/disks/data100-home0, which is production's (disk.home0)
        nothing was changed; rename what collides in the spec (a drill marks every name with -drill), then drill again
        ");
    }

    #[test]
    fn a_drill_id_is_a_short_lower_case_word() {
        assert!(DrillId::new("2026-12-07-a").is_ok());
        for bad in ["", "-a", "Drill", "a b", &"x".repeat(41)] {
            let refused = DrillId::new(bad).unwrap_err().to_string();
            assert!(refused.contains("is not a drill id"), "{refused}");
        }
    }
}
