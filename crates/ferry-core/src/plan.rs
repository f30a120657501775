//! Plans: the ordered steps that take the world from what was observed to what the spec wants.
//!
//! The planner builds a [`Plan`]; the apply engine executes it; the CLI renders it. Its JSON form
//! (`format_version` "1") is documented in `docs/spec-reference.md` and pinned by tests.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::address::{Generation, InstanceAddress};
use crate::value::{Attributes, Value};

/// The vocabulary of steps, shared by the text and JSON renderings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    Replace,
    Delete,
    /// Make sure a host can no longer touch stateful data (deallocate a VM, confirmed by ARM).
    Fence,
    Detach,
    Move,
    Attach,
    Import,
    Export,
    /// Make a hot standby's replica pool the primary (`zfs_pool`): after the old primary's
    /// fence, or by a hand-over from an old primary that still answers (a last increment,
    /// nothing lost).
    Promote,
    /// Run a hook.
    Run,
    /// Wait for a check to pass.
    Wait,
    /// Delete an old generation's instance after the new generation serves. A retirement
    /// goes last ([`Action::goes_last`]).
    Retire,
}

impl Action {
    /// A retirement goes last: it starts only once every step of its plan that is not a
    /// retirement has succeeded, whatever its `after` says (which lists only the retirements
    /// it follows), and it is skipped when one of them fails. The rule is the plan's, not an
    /// edge per pair: a failover of N groups would otherwise need N retirements times N last
    /// steps of edges. Planner, engine, forecasts and pictures all follow it.
    pub fn goes_last(self) -> bool {
        self == Action::Retire
    }

    pub const ALL: [Action; 14] = [
        Action::Create,
        Action::Update,
        Action::Replace,
        Action::Delete,
        Action::Fence,
        Action::Detach,
        Action::Move,
        Action::Attach,
        Action::Import,
        Action::Export,
        Action::Promote,
        Action::Run,
        Action::Wait,
        Action::Retire,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Delete => "delete",
            Action::Fence => "fence",
            Action::Detach => "detach",
            Action::Move => "move",
            Action::Attach => "attach",
            Action::Import => "import",
            Action::Export => "export",
            Action::Promote => "promote",
            Action::Run => "run",
            Action::Wait => "wait",
            Action::Retire => "retire",
        }
    }

    /// Whether the step removes something from the world.
    pub fn is_destructive(self) -> bool {
        matches!(self, Action::Delete | Action::Replace | Action::Retire)
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step's identity, stable for given inputs: `aks_cluster.hub@g2:create`.
///
/// A resource instance has at most one step per action, so the pair names the step, in the
/// journal as in the plan.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StepId(pub String);

impl StepId {
    pub fn new(instance: &InstanceAddress, action: Action) -> Self {
        let mut id = String::with_capacity(instance.address.name.len() + 32);
        // Writing into a `String` cannot fail.
        let _ = instance.write_onto(&mut id);
        id.push(':');
        id.push_str(action.as_str());
        StepId(id)
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One attribute's change, as a plan shows it. `None` means "not set" on that side; a string
/// still holding `${...}` is known only after apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributeChange {
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
    /// Why this change cannot be made in place, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forces_replacement: Option<String>,
}

/// One attribute's change, borrowed from the step that holds it: a listed change, or a
/// creation's field read from the step's inputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChangeRef<'a> {
    pub path: &'a str,
    pub before: Option<&'a Value>,
    pub after: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forces_replacement: Option<&'a str>,
}

impl ChangeRef<'_> {
    pub fn to_owned_change(&self) -> AttributeChange {
        AttributeChange {
            path: self.path.to_owned(),
            before: self.before.cloned(),
            after: self.after.cloned(),
            forces_replacement: self.forces_replacement.map(str::to_owned),
        }
    }
}

impl<'a> From<&'a AttributeChange> for ChangeRef<'a> {
    fn from(change: &'a AttributeChange) -> Self {
        ChangeRef {
            path: &change.path,
            before: change.before.as_ref(),
            after: change.after.as_ref(),
            forces_replacement: change.forces_replacement.as_deref(),
        }
    }
}

/// A step's changes. A creation's changes are its inputs (those the provider reads back), set
/// from nothing: held as a copy of each, they were a second copy of every input of every
/// create, about 60 MiB of a plan of 100,000 resources. So a creation holds only which of its
/// inputs are shown, and [`Step::changes`] reads their names and values from the inputs. Read
/// back from JSON, changes are listed; a plan's JSON is the same either way. `==` compares how
/// they are held; [`Step`]'s compares the changes shown.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes(ChangesHeld);

#[derive(Debug, Clone, PartialEq)]
enum ChangesHeld {
    Listed(Vec<AttributeChange>),
    /// The inputs, by position, not shown as changes (bit `i` for the `i`th input): a
    /// creation of at most 64 inputs.
    CreatedFromInputs {
        left_out: u64,
    },
}

impl Default for ChangesHeld {
    fn default() -> Self {
        ChangesHeld::Listed(Vec::new())
    }
}

impl Changes {
    /// A creation's changes: every input `shown` keeps, in the inputs' order, from nothing to
    /// its value. `inputs` must be the step's inputs as the step will hold them.
    pub fn created_from(inputs: &Attributes, shown: impl Fn(&str) -> bool) -> Self {
        if inputs.len() > 64 {
            return Changes(ChangesHeld::Listed(
                inputs
                    .iter()
                    .filter(|(name, _)| shown(name))
                    .map(|(name, value)| AttributeChange {
                        path: name.clone(),
                        before: None,
                        after: Some(value.clone()),
                        forces_replacement: None,
                    })
                    .collect(),
            ));
        }
        let mut left_out = 0u64;
        for (position, (name, _)) in inputs.iter().enumerate() {
            if !shown(name) {
                left_out |= 1 << position;
            }
        }
        Changes(ChangesHeld::CreatedFromInputs { left_out })
    }

    /// The changes as a list of their own, when they are one (not a creation's view of its
    /// inputs): what may be edited in place.
    pub fn listed_mut(&mut self) -> Option<&mut Vec<AttributeChange>> {
        match &mut self.0 {
            ChangesHeld::Listed(changes) => Some(changes),
            ChangesHeld::CreatedFromInputs { .. } => None,
        }
    }

    fn is_empty_given(&self, inputs: &Attributes) -> bool {
        match &self.0 {
            ChangesHeld::Listed(changes) => changes.is_empty(),
            ChangesHeld::CreatedFromInputs { left_out } => {
                (0..inputs.len()).all(|position| left_out & (1 << position) != 0)
            }
        }
    }
}

impl From<Vec<AttributeChange>> for Changes {
    fn from(changes: Vec<AttributeChange>) -> Self {
        Changes(ChangesHeld::Listed(changes))
    }
}

impl<'de> Deserialize<'de> for Changes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<AttributeChange>::deserialize(deserializer).map(Changes::from)
    }
}

static NO_INPUTS: Attributes = Attributes::new();

/// The changes of one step, in order (see [`Step::changes`]).
#[derive(Debug, Clone)]
pub struct ChangesIter<'a> {
    listed: std::slice::Iter<'a, AttributeChange>,
    inputs: crate::attributes::Iter<'a>,
    position: u32,
    left_out: u64,
}

impl<'a> Iterator for ChangesIter<'a> {
    type Item = ChangeRef<'a>;

    fn next(&mut self) -> Option<ChangeRef<'a>> {
        if let Some(change) = self.listed.next() {
            return Some(change.into());
        }
        loop {
            let (name, value) = self.inputs.next()?;
            let position = self.position;
            self.position += 1;
            if self.left_out & (1 << position) == 0 {
                return Some(ChangeRef {
                    path: name,
                    before: None,
                    after: Some(value),
                    forces_replacement: None,
                });
            }
        }
    }
}

/// One step of a plan.
#[derive(Debug, Clone, Deserialize)]
pub struct Step {
    pub id: StepId,
    /// The instance the step acts on: `vm.nfs@g2`, or `disk.home0` for a stateful resource.
    pub address: InstanceAddress,
    pub action: Action,
    /// Why the step exists: the attribute diff or the health reading that caused it.
    pub reason: String,
    /// Steps that must have succeeded before this one starts; a retirement also waits for
    /// every step that is not one ([`Action::goes_last`]).
    pub after: Vec<StepId>,
    pub estimate_seconds: u64,
    /// Read them with [`Step::changes`]: a creation's are read from its inputs.
    #[serde(default)]
    pub changes: Changes,
    /// What the provider needs to carry the step out. Strings may still hold `${...}` of
    /// outputs produced earlier in the same apply; the engine resolves them.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub inputs: Attributes,
    /// A warning the operator must not miss (shown in red): a forced detach, a forced import.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl Step {
    pub fn generation(&self) -> Option<Generation> {
        self.address.generation
    }

    pub fn instance(&self) -> InstanceAddress {
        self.address.clone()
    }

    /// The step's attribute changes, in the order a plan shows them.
    pub fn changes(&self) -> ChangesIter<'_> {
        match &self.changes.0 {
            ChangesHeld::Listed(changes) => ChangesIter {
                listed: changes.iter(),
                inputs: NO_INPUTS.iter(),
                position: 0,
                left_out: 0,
            },
            ChangesHeld::CreatedFromInputs { left_out } => ChangesIter {
                listed: [].iter(),
                inputs: self.inputs.iter(),
                position: 0,
                left_out: *left_out,
            },
        }
    }

    /// The step's changes as a list of their own (a copy).
    pub fn changes_owned(&self) -> Vec<AttributeChange> {
        self.changes()
            .map(|change| change.to_owned_change())
            .collect()
    }

    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty_given(&self.inputs)
    }
}

/// Steps are equal when they show the same changes, however those are held.
impl PartialEq for Step {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.address == other.address
            && self.action == other.action
            && self.reason == other.reason
            && self.after == other.after
            && self.estimate_seconds == other.estimate_seconds
            && self.changes().eq(other.changes())
            && self.inputs == other.inputs
            && self.warning == other.warning
    }
}

/// Written as the derived form would be, with a creation's changes spelled out from its
/// inputs: a plan's JSON does not show how its changes are held.
impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        struct ChangesOf<'a>(&'a Step);
        impl Serialize for ChangesOf<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(self.0.changes())
            }
        }
        let mut out = serializer.serialize_struct("Step", 9)?;
        out.serialize_field("id", &self.id)?;
        out.serialize_field("address", &self.address)?;
        out.serialize_field("action", &self.action)?;
        out.serialize_field("reason", &self.reason)?;
        out.serialize_field("after", &self.after)?;
        out.serialize_field("estimate_seconds", &self.estimate_seconds)?;
        if self.has_changes() {
            out.serialize_field("changes", &ChangesOf(self))?;
        } else {
            out.skip_field("changes")?;
        }
        if self.inputs.is_empty() {
            out.skip_field("inputs")?;
        } else {
            out.serialize_field("inputs", &self.inputs)?;
        }
        match &self.warning {
            Some(warning) => out.serialize_field("warning", warning)?,
            None => out.skip_field("warning")?,
        }
        out.end()
    }
}

/// Counts of steps by action, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanSummary(pub BTreeMap<Action, usize>);

impl PlanSummary {
    pub fn of(steps: &[Step]) -> Self {
        let mut counts = BTreeMap::new();
        for step in steps {
            *counts.entry(step.action).or_insert(0) += 1;
        }
        PlanSummary(counts)
    }

    pub fn total(&self) -> usize {
        self.0.values().sum()
    }
}

/// Why a plan is a failover, when it is one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failover {
    pub from_generation: Generation,
    pub to_generation: Generation,
    /// The reading (or the `--failover` flag) that called for it.
    pub trigger: String,
}

/// A reading the plan could not rely on: nothing is created, deleted or retired from it, and
/// what depends on it is held back (see `held_back`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownReading {
    pub address: InstanceAddress,
    /// Why the provider could not tell (an unreachable API, a refused credential).
    pub reason: String,
    /// The spec resources not planned because they depend on it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<crate::ResourceAddress>,
}

/// Something the operator must look at that no step of the plan fixes: an unhealthy resource
/// that is not a failover trigger (the NFS VM failed, a pool degraded), or a trigger that
/// reads unhealthy while the plan makes no failover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanWarning {
    pub address: InstanceAddress,
    pub reason: String,
}

/// The result of planning: steps in execution order (a topological order of `after`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub format_version: String,
    pub steps: Vec<Step>,
    /// The chain of steps whose estimates add up to the plan's estimated duration.
    pub critical_path: Vec<StepId>,
    /// When every step is done, from the steps' estimates.
    pub estimated_seconds: u64,
    /// In a failover, when the service is back: every step but the retirement of the old
    /// generation is done, and the old answers resolvers may cache for a repointed record
    /// (its TTL) have expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_seconds: Option<u64>,
    /// When a cache ends the time to recovery: the record whose old answer resolvers may
    /// keep after the plan repointed it, and for how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_cached: Option<CachedAnswer>,
    /// In a failover that promotes a hot standby's replica: the data it loses at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<DataLoss>,
    pub summary: PlanSummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// Things the operator should know that do not stop the plan (an `Unknown` reading that
    /// held back a create, for instance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Every reading that is unknown: a plan made from them is never "no changes".
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown: Vec<UnknownReading>,
    /// Unhealthy resources that no step of this plan fixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<PlanWarning>,
    /// A failover that the readings call for but the spec's `mode = "manual"` leaves to the
    /// operator (`--failover`): the reading that calls for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_due: Option<String>,
    /// Whether the failover this plan's readings would give could be made now: computed by
    /// `ferry plan` and `ferry watch` (`ferry_plan::readiness`) when the plan is not a failover
    /// itself; `None` when not computed, or when the spec's failover mode is off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Readiness>,
    /// Generations that no longer serve and that this plan keeps, as the spec's
    /// `[failover] retire_old` or `--retire-old` says, with what they keep running.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<crate::KeptGeneration>,
    /// With a warm standby: the generation after the serving one that this plan builds or
    /// keeps ready, with what it costs. Its steps are in `steps`; it is not the generation the
    /// plan converges, and a failover finds it built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<crate::StandbyGeneration>,
}

/// What a failover that promotes a hot standby's replica loses: nothing when every old
/// primary hands its pool over, else what the replica lagged when it was read (the largest
/// of the plan's replicas); `seconds` is `None` when a replica's lag could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataLoss {
    pub seconds: Option<u64>,
    /// The replica that loses the most, when one loses anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<InstanceAddress>,
}

/// A value clients may keep using after a step changed it: a DNS record's old answer, for
/// its TTL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedAnswer {
    pub address: InstanceAddress,
    pub seconds: u64,
}

/// Failover readiness: the failover planned from today's readings, so that whatever would
/// block it is seen on an ordinary day and not at the moment it is needed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Readiness {
    /// True when the failover plan was made and nothing blocks it.
    pub ready: bool,
    /// The generation the failover would move to.
    pub to_generation: Generation,
    /// The failover plan's estimated time to recovery, when it could be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_seconds: Option<u64>,
    /// How many steps the failover plan has, when it could be made (`ferry watch` alerts
    /// carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// What the failover would lose, when it promotes a hot standby's replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_loss: Option<DataLoss>,
    /// Each thing that stops the failover, with its reason and what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blockers: Vec<Blocker>,
}

/// One thing that stops a failover: an error of the failover plan, or a reading it needs that
/// is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocker {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<InstanceAddress>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Some(address) => write!(f, "{address}: {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

/// The one plan layout this version writes. Version 2: a retirement goes last by the plan's
/// rule ([`Action::goes_last`]) and its `after` lists only retirements; version 1 listed the
/// last steps of the rest too, which version 2 reads the same.
pub const PLAN_FORMAT_VERSION: &str = "2";

impl Plan {
    /// A plan of these steps and nothing more (no failover, notes, readings or standby), in
    /// this layout's version, with its summary and the critical path and estimate given: what
    /// a plan made outside the planner (a drill's clean-up, a test's) holds.
    pub fn of_steps(steps: Vec<Step>, critical_path: Vec<StepId>, estimated_seconds: u64) -> Plan {
        Plan {
            format_version: PLAN_FORMAT_VERSION.to_owned(),
            summary: PlanSummary::of(&steps),
            steps,
            critical_path,
            estimated_seconds,
            recovery_seconds: None,
            recovery_cached: None,
            data_loss: None,
            failover: None,
            notes: Vec::new(),
            unknown: Vec::new(),
            warnings: Vec::new(),
            failover_due: None,
            readiness: None,
            kept: Vec::new(),
            standby: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Every step that must have succeeded before `id` starts: its `after`, transitively, and
    /// for a retirement every step that is not one ([`Action::goes_last`]). Empty for a step
    /// the plan does not hold.
    pub fn ancestors(&self, id: &StepId) -> std::collections::BTreeSet<StepId> {
        let by_id: BTreeMap<&StepId, &Step> =
            self.steps.iter().map(|step| (&step.id, step)).collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut stack: Vec<&StepId> = vec![id];
        let mut rest_added = false;
        while let Some(next) = stack.pop() {
            let Some(step) = by_id.get(next) else {
                continue;
            };
            if step.action.goes_last() && !rest_added {
                rest_added = true;
                for other in self.steps.iter().filter(|other| !other.action.goes_last()) {
                    if seen.insert(other.id.clone()) {
                        stack.push(&other.id);
                    }
                }
            }
            for before in &step.after {
                if seen.insert(before.clone()) {
                    stack.push(before);
                }
            }
        }
        seen
    }

    pub fn step(&self, id: &StepId) -> Option<&Step> {
        self.steps.iter().find(|step| &step.id == id)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn creation(changes: impl FnOnce(&Attributes) -> Changes) -> Step {
        let address: InstanceAddress = "vm.nfs@g2".parse().unwrap();
        let inputs: Attributes = serde_json::from_value(json!({
            "location": "westeurope",
            "name": "nfs-g2",
            "size": "Standard_E8s_v5",
        }))
        .unwrap();
        Step {
            id: StepId::new(&address, Action::Create),
            address,
            action: Action::Create,
            reason: "it does not exist".to_owned(),
            after: Vec::new(),
            estimate_seconds: 60,
            changes: changes(&inputs),
            inputs,
            warning: None,
        }
    }

    fn shown(name: &str) -> bool {
        name != "name"
    }

    fn listed(inputs: &Attributes) -> Changes {
        inputs
            .iter()
            .filter(|(name, _)| shown(name))
            .map(|(name, value)| AttributeChange {
                path: name.clone(),
                before: None,
                after: Some(value.clone()),
                forces_replacement: None,
            })
            .collect::<Vec<_>>()
            .into()
    }

    #[test]
    fn a_creation_read_from_its_inputs_is_written_and_compared_as_a_listed_one() {
        let from_inputs = creation(|inputs| Changes::created_from(inputs, shown));
        let as_list = creation(listed);
        let paths: Vec<&str> = from_inputs.changes().map(|change| change.path).collect();
        assert_eq!(paths, ["location", "size"]);
        let written = serde_json::to_string(&from_inputs).unwrap();
        assert_eq!(written, serde_json::to_string(&as_list).unwrap());
        assert_eq!(from_inputs, as_list);
        let read: Step = serde_json::from_str(&written).unwrap();
        assert_eq!(read, from_inputs);
        assert_eq!(read.changes, as_list.changes);
    }

    #[test]
    fn a_creation_that_shows_nothing_writes_no_changes() {
        let step = creation(|inputs| Changes::created_from(inputs, |_| false));
        assert!(!step.has_changes());
        let written = serde_json::to_value(&step).unwrap();
        assert!(written.get("changes").is_none());
        assert_eq!(step, creation(|_| Changes::default()));
    }
}
