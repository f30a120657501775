//! The in-memory world, and the provider for any kind that reads and changes it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{
    Action, ApplyContext, Attributes, Generation, Health, InstanceAddress, Kind, KindRules,
    Observation, Provider, Providers, ReadContext, RuleBook, SimulatedStep, Snapshot, Step,
    StepError, StepId, StepOutcome, Value,
};
use tokio::time::Instant;

/// How a provider behaves for a kind or for one step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behaviour {
    /// How long each call takes (a `tokio::time::sleep`: free under a paused clock).
    pub latency: Duration,
    /// Sleep for the step's `estimate_seconds` instead of `latency`.
    pub latency_from_estimate: bool,
    /// With `latency_from_estimate`, the share of the estimate to sleep (1.0 when unset): a
    /// demo runs a 40-minute plan in seconds at 0.005.
    pub estimate_scale: Option<f64>,
    /// The first N calls of a step fail with a transient error.
    pub transient_failures: u32,
    /// The `retry_after` those transient errors carry.
    pub retry_after: Option<Duration>,
    /// Every call fails with this permanent error.
    pub fail: Option<String>,
    /// Calls never return.
    pub hang: bool,
    /// Calls record a resume token before working, unless they resume from one: the URL of a
    /// long-running operation (`memory://operations/<step>`), as the ARM providers record.
    pub records_resume_token: bool,
    /// Lines each call reports as progress.
    pub progress: Vec<String>,
}

impl Behaviour {
    pub fn latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    pub fn from_estimates() -> Self {
        Self {
            latency_from_estimate: true,
            ..Self::default()
        }
    }

    pub fn transient(failures: u32, retry_after: Option<Duration>) -> Self {
        Self {
            transient_failures: failures,
            retry_after,
            ..Self::default()
        }
    }

    pub fn failing(message: &str) -> Self {
        Self {
            fail: Some(message.to_owned()),
            ..Self::default()
        }
    }

    pub fn hanging() -> Self {
        Self {
            hang: true,
            ..Self::default()
        }
    }
}

/// How one recorded call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutcome {
    Running,
    Succeeded,
    Transient,
    Failed,
    /// Its future was dropped before it returned (a timeout or a hard cancel).
    Dropped,
}

/// One call of `Provider::apply`, as the world saw it.
#[derive(Debug, Clone)]
pub struct Call {
    pub step: StepId,
    pub kind: Kind,
    /// 1 for the first call of this step.
    pub attempt: u32,
    /// The resume token the call was given (`ApplyContext::resume_token`).
    pub resume_token: Option<String>,
    pub inputs: Attributes,
    pub started: Instant,
    pub ended: Option<Instant>,
    /// Positions in the world's sequence of starts and ends: orders events that share an
    /// instant, which a paused clock makes common.
    pub started_sequence: u64,
    pub ended_sequence: Option<u64>,
    pub outcome: CallOutcome,
}

#[derive(Debug, Default)]
struct WorldState {
    instances: BTreeMap<InstanceAddress, Attributes>,
    /// Instances that read unhealthy, with the reason (an API server that stopped answering).
    unhealthy: BTreeMap<InstanceAddress, String>,
    calls: Vec<Call>,
    /// Calls so far per step, so that counting attempts does not scan every call.
    attempts: BTreeMap<StepId, u32>,
    sequence: u64,
    running: usize,
    max_running: usize,
    running_by_kind: BTreeMap<Kind, usize>,
    max_running_by_kind: BTreeMap<Kind, usize>,
}

/// A shared in-memory world: instance address to attributes, plus the record of calls, and
/// the kinds' rules that say what a step does to each kind's instances.
#[derive(Clone, Default)]
pub struct World {
    state: Arc<Mutex<WorldState>>,
    rules: Arc<BTreeMap<Kind, Arc<dyn KindRules>>>,
}

impl std::fmt::Debug for World {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("World")
            .field("state", &self.state)
            .field("kinds", &self.rules.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl World {
    /// An empty world where steps only store their inputs: no kind's own effect (no address
    /// for a VM, no fence). Engine tests that need no more use it.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty world where each step also has its kind's simulated effect
    /// ([`KindRules::simulate`]), as the real provider would: give it the rule book of the
    /// kinds the spec uses (`ferry_providers::rule_book()`).
    pub fn simulating(rules: &RuleBook) -> Self {
        Self {
            state: Arc::default(),
            rules: Arc::new(
                rules
                    .kinds()
                    .filter_map(|kind| rules.shared(kind).map(|rules| (kind, rules)))
                    .collect(),
            ),
        }
    }

    fn rules_of(&self, kind: Kind) -> Option<&dyn KindRules> {
        self.rules.get(&kind).map(|rules| &**rules)
    }

    fn lock(&self) -> MutexGuard<'_, WorldState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, instance: &InstanceAddress) -> Option<Attributes> {
        self.lock().instances.get(instance).cloned()
    }

    /// Puts an instance in the world, as if it existed before the test.
    pub fn insert(&self, instance: InstanceAddress, attributes: Attributes) {
        self.lock().instances.insert(instance, attributes);
    }

    pub fn instances(&self) -> BTreeMap<InstanceAddress, Attributes> {
        self.lock().instances.clone()
    }

    /// Makes an instance read unhealthy (`Some(reason)`) or healthy again (`None`).
    pub fn set_unhealthy(&self, instance: InstanceAddress, reason: Option<String>) {
        let mut state = self.lock();
        match reason {
            Some(reason) => state.unhealthy.insert(instance, reason),
            None => state.unhealthy.remove(&instance),
        };
    }

    /// What providers read for one instance.
    pub fn observe(&self, instance: &InstanceAddress) -> Observation {
        let state = self.lock();
        match state.instances.get(instance) {
            Some(attributes) => Observation::Present {
                attributes: attributes.clone(),
                health: match state.unhealthy.get(instance) {
                    Some(reason) => Health::Unhealthy {
                        reason: reason.clone(),
                    },
                    None => Health::Healthy,
                },
            },
            None => Observation::Absent,
        }
    }

    /// The world as JSON, for a world kept in a file between commands.
    pub fn to_json(&self) -> String {
        let state = self.lock();
        let file = WorldFile {
            format_version: WORLD_FORMAT_VERSION.to_owned(),
            instances: state.instances.clone(),
            unhealthy: state.unhealthy.clone(),
        };
        let mut text = serde_json::to_string_pretty(&file).expect("worlds always serialise");
        text.push('\n');
        text
    }

    /// A world read back from [`World::to_json`], simulating with `rules`. A file with no
    /// `format_version` is read as format 1 (worlds were written without one before).
    pub fn from_json(text: &str, rules: &RuleBook) -> Result<Self, WorldFormatError> {
        let file: WorldFile = serde_json::from_str(text)?;
        if file.format_version != WORLD_FORMAT_VERSION {
            return Err(WorldFormatError::Version(file.format_version));
        }
        let world = World::simulating(rules);
        {
            let mut state = world.lock();
            state.instances = file.instances;
            state.unhealthy = file.unhealthy;
        }
        Ok(world)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn calls_of(&self, step: &StepId) -> Vec<Call> {
        self.lock()
            .calls
            .iter()
            .filter(|call| &call.step == step)
            .cloned()
            .collect()
    }

    /// The most calls that were running at once, over all kinds.
    pub fn max_running(&self) -> usize {
        self.lock().max_running
    }

    pub fn max_running_of(&self, kind: Kind) -> usize {
        self.lock()
            .max_running_by_kind
            .get(&kind)
            .copied()
            .unwrap_or(0)
    }

    /// What providers would read now for `instances`: present with the stored attributes,
    /// or absent. Feed it to the planner to re-plan after an apply.
    pub fn snapshot(
        &self,
        active_generation: Generation,
        instances: impl IntoIterator<Item = InstanceAddress>,
    ) -> Snapshot {
        let state = self.lock();
        drop(state);
        let mut snapshot = Snapshot::new(active_generation);
        for instance in instances {
            let observation = self.observe(&instance);
            snapshot.insert(instance, observation);
        }
        snapshot
    }

    /// A snapshot of every instance the world holds.
    pub fn snapshot_all(&self, active_generation: Generation) -> Snapshot {
        let instances: Vec<InstanceAddress> = self.lock().instances.keys().cloned().collect();
        self.snapshot(active_generation, instances)
    }

    fn start_call(&self, step: &Step, resume_token: Option<&str>, inputs: &Attributes) -> usize {
        let mut state = self.lock();
        let kind = step.address.kind();
        let attempt = {
            let count = state.attempts.entry(step.id.clone()).or_insert(0);
            *count += 1;
            *count
        };
        state.sequence += 1;
        state.running += 1;
        state.max_running = state.max_running.max(state.running);
        let running = {
            let count = state.running_by_kind.entry(kind).or_insert(0);
            *count += 1;
            *count
        };
        let max = state.max_running_by_kind.entry(kind).or_insert(0);
        *max = (*max).max(running);
        let sequence = state.sequence;
        state.calls.push(Call {
            step: step.id.clone(),
            kind,
            attempt,
            resume_token: resume_token.map(str::to_owned),
            inputs: inputs.clone(),
            started: Instant::now(),
            ended: None,
            started_sequence: sequence,
            ended_sequence: None,
            outcome: CallOutcome::Running,
        });
        state.calls.len() - 1
    }

    fn end_call(&self, index: usize, outcome: CallOutcome) {
        let mut state = self.lock();
        state.sequence += 1;
        state.running -= 1;
        let sequence = state.sequence;
        let kind = state.calls[index].kind;
        if let Some(count) = state.running_by_kind.get_mut(&kind) {
            *count -= 1;
        }
        let call = &mut state.calls[index];
        call.ended = Some(Instant::now());
        call.ended_sequence = Some(sequence);
        call.outcome = outcome;
    }
}

/// The version of the world file's format this ferry writes and reads.
pub const WORLD_FORMAT_VERSION: &str = "1";

/// Why a text is not a world this ferry reads.
#[derive(Debug, thiserror::Error)]
pub enum WorldFormatError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("it has world format {0}, and this ferry reads format {WORLD_FORMAT_VERSION}")]
    Version(String),
}

/// The world file: instances and the ones that read unhealthy.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct WorldFile {
    #[serde(default = "first_format")]
    format_version: String,
    #[serde(default)]
    instances: BTreeMap<InstanceAddress, Attributes>,
    #[serde(default)]
    unhealthy: BTreeMap<InstanceAddress, String>,
}

fn first_format() -> String {
    WORLD_FORMAT_VERSION.to_owned()
}

/// What a step does to an instance in the simulated world: its new attributes, or `None` when
/// it is gone. What every kind does is here (a create or update stores its inputs, a delete
/// removes the instance, every instance gets an id); what one kind does beyond that (a fence
/// deallocates, an attach sets the disk's VM, a VM gets an address) is its rules'
/// [`KindRules::simulate`], so that plans applied here converge as they do on Azure.
fn effect(
    step: &Step,
    existing: Option<Attributes>,
    inputs: &Attributes,
    rules: Option<&dyn KindRules>,
    extra_outputs: &Attributes,
    outputs_of: &(dyn Fn(&InstanceAddress) -> Option<Attributes> + Send + Sync),
) -> Option<Attributes> {
    let instance = step.instance();
    let mut attributes = existing.unwrap_or_default();
    match step.action {
        Action::Delete | Action::Retire => return None,
        Action::Create | Action::Update | Action::Replace | Action::Run | Action::Wait => {
            attributes.extend(inputs.clone());
        }
        Action::Fence
        | Action::Detach
        | Action::Move
        | Action::Attach
        | Action::Export
        | Action::Import
        | Action::Promote => {}
    }
    attributes.insert("id".to_owned(), Value::from(format!("/memory/{instance}")));
    if let Some(rules) = rules {
        rules.simulate(
            &SimulatedStep {
                instance: &instance,
                action: step.action,
                inputs,
                number: stable_number(&instance, is_drills(inputs)),
                outputs_of,
            },
            &mut attributes,
        );
    }
    attributes.extend(extra_outputs.clone());
    Some(attributes)
}

/// A small number stable for an instance, for simulated addresses: 20 to 219, or for a
/// failover drill's instance (`ferry drill`, whose instances have production's addresses in a
/// world of their own) 220 to 254, so that a drill's simulated addresses are never
/// production's.
fn stable_number(instance: &InstanceAddress, drill: bool) -> u32 {
    let hash = instance.to_string().bytes().fold(7u32, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(u32::from(byte))
    });
    if drill {
        hash % 35 + 220
    } else {
        hash % 200 + 20
    }
}

/// Whether a step's inputs carry a drill's tag.
fn is_drills(inputs: &Attributes) -> bool {
    inputs
        .get("tags")
        .and_then(|tags| tags.get(ferry_core::fields::DRILL_TAG))
        .is_some()
}

/// Ends a call when its future is dropped before it returned.
struct CallGuard<'a> {
    world: &'a World,
    index: usize,
    outcome: Option<CallOutcome>,
}

impl Drop for CallGuard<'_> {
    fn drop(&mut self) {
        let outcome = self.outcome.take().unwrap_or(CallOutcome::Dropped);
        self.world.end_call(self.index, outcome);
    }
}

/// A provider for any kind that acts on a [`World`].
///
/// `apply` of a delete or retire removes the instance; every other action stores the step's
/// inputs plus generated outputs (`id` = `/memory/<instance>`, and the kind's configured
/// outputs) and returns them. Doing a step twice gives the same result.
#[derive(Debug, Clone)]
pub struct MemoryProvider {
    kind: Kind,
    world: World,
    concurrency_limit: usize,
    behaviour: Behaviour,
    step_behaviours: BTreeMap<StepId, Behaviour>,
    outputs: Attributes,
}

impl MemoryProvider {
    pub fn new(kind: Kind, world: &World) -> Self {
        Self {
            kind,
            world: world.clone(),
            concurrency_limit: 8,
            behaviour: Behaviour::default(),
            step_behaviours: BTreeMap::new(),
            outputs: Attributes::new(),
        }
    }

    pub fn concurrency(mut self, limit: usize) -> Self {
        self.concurrency_limit = limit;
        self
    }

    /// The behaviour of every step of this kind without its own.
    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    pub fn step(mut self, step: &str, behaviour: Behaviour) -> Self {
        self.step_behaviours
            .insert(StepId(step.to_owned()), behaviour);
        self
    }

    /// An extra output every instance of this kind gets.
    pub fn output(mut self, name: &str, value: Value) -> Self {
        self.outputs.insert(name.to_owned(), value);
        self
    }
}

/// One memory provider per kind on `world`, each passed through `configure`.
pub fn memory_providers(
    world: &World,
    configure: impl Fn(MemoryProvider) -> MemoryProvider,
) -> Providers {
    Kind::ALL
        .into_iter()
        .fold(Providers::new(), |providers, kind| {
            providers.with(Arc::new(configure(MemoryProvider::new(kind, world))))
        })
}

#[async_trait]
impl Provider for MemoryProvider {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn concurrency_limit(&self) -> usize {
        self.concurrency_limit
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        self.world.observe(context.instance)
    }

    /// A simulated replication round: a replica (a stateful instance of a generation that
    /// reads `replication_role = "replica"`) is current again.
    async fn tend(
        &self,
        instance: &InstanceAddress,
        _: ApplyContext<'_>,
    ) -> Result<Option<String>, StepError> {
        use ferry_core::fields::zfs_pool;
        let Some(mut attributes) = self.world.get(instance) else {
            return Err(StepError::permanent(format!(
                "{instance} does not exist in the simulated world"
            )));
        };
        if instance.generation.is_none()
            || attributes
                .get(zfs_pool::REPLICATION_ROLE)
                .and_then(Value::as_str)
                != Some("replica")
        {
            return Ok(None);
        }
        attributes.insert(zfs_pool::REPLICA_LAG_SECONDS.to_owned(), Value::from(0));
        self.world.insert(instance.clone(), attributes);
        Ok(Some("a simulated round: the replica is current".to_owned()))
    }

    async fn apply(
        &self,
        step: &Step,
        context: ApplyContext<'_>,
    ) -> Result<StepOutcome, StepError> {
        let behaviour = self
            .step_behaviours
            .get(&step.id)
            .unwrap_or(&self.behaviour);
        let index = self
            .world
            .start_call(step, context.resume_token, context.inputs);
        let mut guard = CallGuard {
            world: &self.world,
            index,
            outcome: None,
        };
        let attempt = self.world.lock().calls[index].attempt;
        if behaviour.records_resume_token && context.resume_token.is_none() {
            (context.record_resume_token)(format!("memory://operations/{}", step.id));
        }
        for line in &behaviour.progress {
            (context.progress)(line.clone());
        }
        if behaviour.hang {
            std::future::pending::<()>().await;
        }
        let latency = if behaviour.latency_from_estimate {
            Duration::from_secs_f64(
                step.estimate_seconds as f64 * behaviour.estimate_scale.unwrap_or(1.0).max(0.0),
            )
        } else {
            behaviour.latency
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        if attempt <= behaviour.transient_failures {
            guard.outcome = Some(CallOutcome::Transient);
            return Err(StepError::transient(
                format!("{} is busy (attempt {attempt})", step.instance()),
                behaviour.retry_after,
            ));
        }
        if let Some(message) = &behaviour.fail {
            guard.outcome = Some(CallOutcome::Failed);
            return Err(StepError::permanent(message.clone()));
        }
        let instance = step.instance();
        let outputs = {
            let mut state = self.world.lock();
            let existing = state.instances.get(&instance).cloned();
            match effect(
                step,
                existing,
                context.inputs,
                self.world.rules_of(self.kind),
                &self.outputs,
                context.outputs,
            ) {
                Some(attributes) => {
                    state.instances.insert(instance, attributes.clone());
                    attributes
                }
                None => {
                    state.instances.remove(&instance);
                    Attributes::new()
                }
            }
        };
        guard.outcome = Some(CallOutcome::Succeeded);
        Ok(StepOutcome { outputs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(id: &str) -> Step {
        let (instance, action) = id.split_once(':').unwrap();
        let address: InstanceAddress = instance.parse().unwrap();
        let action: Action = serde_json::from_value(Value::String(action.to_owned())).unwrap();
        Step {
            id: StepId::new(&address, action),
            address,
            action,
            reason: String::new(),
            after: Vec::new(),
            estimate_seconds: 1,
            changes: Default::default(),
            inputs: [("size_gb".to_owned(), Value::from(256))].into(),
            warning: None,
        }
    }

    /// A kind whose simulated effect says whether the disk is attached.
    #[derive(Debug)]
    struct DiskLike;

    impl KindRules for DiskLike {
        fn kind(&self) -> Kind {
            Kind::Disk
        }
        fn description(&self) -> &'static str {
            "a disk"
        }
        fn fields(&self) -> &'static [ferry_core::FieldSchema] {
            &[]
        }
        fn outputs(&self) -> &'static [ferry_core::OutputSchema] {
            &[]
        }
        fn estimate_seconds(&self, _: Action, _: &ferry_core::ResourceSpec) -> u64 {
            1
        }
        fn simulate(&self, _: &SimulatedStep<'_>, attributes: &mut Attributes) {
            let state = if attributes.contains_key("vm") {
                "Attached"
            } else {
                "Unattached"
            };
            attributes.insert("disk_state".to_owned(), Value::from(state));
        }
    }

    #[tokio::test]
    async fn a_world_without_rules_only_stores_inputs() {
        let world = World::new();
        let provider = MemoryProvider::new(Kind::Disk, &world);
        let outcome = call(&provider, &step("disk.home0:create")).await.unwrap();
        assert_eq!(
            serde_json::to_string(&outcome.outputs).unwrap(),
            r#"{"id":"/memory/disk.home0","size_gb":256}"#
        );
    }

    #[test]
    fn a_world_file_of_another_format_is_refused_and_one_without_a_version_is_read() {
        let rules = RuleBook::new();
        let error = World::from_json(r#"{"format_version": "2"}"#, &rules).unwrap_err();
        assert_eq!(
            error.to_string(),
            "it has world format 2, and this ferry reads format 1"
        );
        let world =
            World::from_json(r#"{"instances": {"disk.home0": {"size_gb": 1}}}"#, &rules).unwrap();
        assert!(
            world
                .to_json()
                .starts_with("{\n  \"format_version\": \"1\",")
        );
        assert_eq!(world.instances().len(), 1);
    }

    async fn call(provider: &MemoryProvider, step: &Step) -> Result<StepOutcome, StepError> {
        let outputs = |_: &InstanceAddress| None;
        let ignore = |_: String| {};
        provider
            .apply(
                step,
                ApplyContext {
                    inputs: &step.inputs,
                    outputs: &outputs,
                    progress: &ignore,
                    resume_token: None,
                    record_resume_token: &ignore,
                },
            )
            .await
    }

    #[tokio::test]
    async fn steps_change_the_world_idempotently_and_snapshots_show_it() {
        let world = World::simulating(&RuleBook::new().with(Box::new(DiskLike)));
        let provider = MemoryProvider::new(Kind::Disk, &world).output("lun", Value::from(0));
        let create = step("disk.home0:create");
        let first = call(&provider, &create).await.unwrap();
        assert_eq!(call(&provider, &create).await.unwrap(), first);
        assert_eq!(
            serde_json::to_string(&first.outputs).unwrap(),
            r#"{"disk_state":"Unattached","id":"/memory/disk.home0","lun":0,"size_gb":256}"#
        );
        let instance: InstanceAddress = "disk.home0".parse().unwrap();
        let other: InstanceAddress = "disk.home1".parse().unwrap();
        let snapshot = world.snapshot(1, [instance.clone(), other.clone()]);
        assert_eq!(
            snapshot.get(&instance),
            Some(&Observation::present(first.outputs))
        );
        assert_eq!(snapshot.get(&other), Some(&Observation::Absent));
        call(&provider, &step("disk.home0:delete")).await.unwrap();
        call(&provider, &step("disk.home0:delete")).await.unwrap();
        assert_eq!(world.snapshot_all(1).resources.len(), 0);
        let attempts: Vec<u32> = world.calls().iter().map(|call| call.attempt).collect();
        assert_eq!(attempts, [1, 2, 1, 2]);
        assert!(
            world
                .calls()
                .iter()
                .all(|call| call.outcome == CallOutcome::Succeeded)
        );
    }
}
