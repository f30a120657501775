//! An in-memory world and a provider for any kind that reads and changes it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use ferry_core::{
    Action, ApplyContext, Attributes, Generation, Health, InstanceAddress, Kind, Observation,
    Provider, Providers, ReadContext, Snapshot, Step, StepError, StepId, StepOutcome, Value,
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
    /// Calls record a long-running operation (`memory://operations/<step>`) before working,
    /// unless they resume one.
    pub records_operation: bool,
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
    pub resume_operation: Option<String>,
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

/// A shared in-memory world: instance address to attributes, plus the record of calls.
#[derive(Debug, Clone, Default)]
pub struct World {
    state: Arc<Mutex<WorldState>>,
}

impl World {
    pub fn new() -> Self {
        Self::default()
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
            instances: state.instances.clone(),
            unhealthy: state.unhealthy.clone(),
        };
        let mut text = serde_json::to_string_pretty(&file).expect("worlds always serialise");
        text.push('\n');
        text
    }

    /// A world read back from [`World::to_json`].
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let file: WorldFile = serde_json::from_str(text)?;
        let world = World::new();
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

    fn start_call(
        &self,
        step: &Step,
        resume_operation: Option<&str>,
        inputs: &Attributes,
    ) -> usize {
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
            resume_operation: resume_operation.map(str::to_owned),
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

/// The world file: instances and the ones that read unhealthy.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct WorldFile {
    #[serde(default)]
    instances: BTreeMap<InstanceAddress, Attributes>,
    #[serde(default)]
    unhealthy: BTreeMap<InstanceAddress, String>,
}

/// What a step does to an instance in the memory world: its new attributes, or `None` when it
/// is gone. Each action changes what the real provider would change, and each kind reports
/// outputs shaped like the real ones, so that plans applied here converge like real ones.
fn effect(
    step: &Step,
    existing: Option<Attributes>,
    inputs: &Attributes,
    extra_outputs: &Attributes,
    outputs_of: &(dyn Fn(&InstanceAddress) -> Option<Attributes> + Send + Sync),
) -> Option<Attributes> {
    let instance = step.instance();
    let mut attributes = existing.unwrap_or_default();
    let set = |attributes: &mut Attributes, name: &str, value: Value| {
        attributes.insert(name.to_owned(), value);
    };
    match step.action {
        Action::Delete | Action::Retire => return None,
        Action::Fence => set(&mut attributes, "power_state", Value::from("deallocated")),
        Action::Detach => {
            attributes.remove("vm");
            attributes.remove("lun");
            set(&mut attributes, "disk_state", Value::from("Unattached"));
        }
        Action::Move => {
            if let Some(group) = inputs.get("resource_group") {
                set(&mut attributes, "resource_group", group.clone());
            }
        }
        Action::Attach => {
            for name in ["vm", "lun"] {
                if let Some(value) = inputs.get(name) {
                    set(&mut attributes, name, value.clone());
                }
            }
            set(&mut attributes, "disk_state", Value::from("Attached"));
        }
        Action::Export => set(&mut attributes, "imported", Value::Bool(false)),
        Action::Import => {
            if let Some(host) = inputs.get("host") {
                set(&mut attributes, "host", host.clone());
            }
            set(&mut attributes, "imported", Value::Bool(true));
        }
        Action::Create | Action::Update | Action::Replace | Action::Run | Action::Wait => {
            attributes.extend(inputs.clone());
        }
    }
    set(
        &mut attributes,
        "id",
        Value::from(format!("/memory/{instance}")),
    );
    let text = |name: &str| {
        attributes
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let generation = instance.generation.unwrap_or(0);
    // A small stable number per instance, for addresses.
    let number = instance.to_string().bytes().fold(7u32, |hash, byte| {
        hash.wrapping_mul(31).wrapping_add(u32::from(byte))
    }) % 200
        + 20;
    let mut outputs: Vec<(&str, Value)> = Vec::new();
    match instance.kind() {
        Kind::PublicIp => outputs.push((
            "address",
            Value::from(format!("127.0.{generation}.{number}")),
        )),
        Kind::Vm => {
            outputs.push((
                "private_ip",
                Value::from(format!("10.{generation}.16.{number}")),
            ));
            if !attributes.contains_key("power_state") {
                outputs.push(("power_state", Value::from("running")));
            }
            if !attributes.contains_key("device_folder") {
                outputs.push(("device_folder", Value::from("/dev/disk/azure/scsi1")));
            }
        }
        Kind::AksCluster => {
            let prefix = text("dns_prefix").unwrap_or_else(|| instance.address.name.clone());
            let location = text("location").unwrap_or_else(|| "westeurope".to_owned());
            outputs.push((
                "fqdn",
                Value::from(format!("{prefix}-{number:x}.hcp.{location}.azmk8s.io")),
            ));
            outputs.push(("node_resource_group", Value::from(format!("MC_{prefix}"))));
            outputs.push((
                "kubeconfig",
                Value::from(format!("/memory/kubeconfig/{instance}")),
            ));
        }
        Kind::Disk if !attributes.contains_key("disk_state") => {
            let state = if attributes.contains_key("vm") {
                "Attached"
            } else {
                "Unattached"
            };
            outputs.push(("disk_state", Value::from(state)));
        }
        Kind::ZfsPool => {
            let pool = text("pool_name").unwrap_or_else(|| instance.address.name.clone());
            let host_ip = text("host")
                .and_then(|host| host.parse::<InstanceAddress>().ok())
                .and_then(|host| outputs_of(&host))
                .and_then(|host| {
                    host.get("private_ip")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "127.0.0.1".to_owned());
            outputs.push(("mountpoint", Value::from(format!("/{pool}"))));
            outputs.push((
                "nfs_export",
                Value::from(format!("{host_ip}:/export/{pool}")),
            ));
            outputs.push(("health", Value::from("ONLINE")));
            if !attributes.contains_key("imported") {
                outputs.push(("imported", Value::Bool(true)));
            }
        }
        Kind::DnsRecord => {
            if let (Some(name), Some(zone)) = (text("name"), text("zone")) {
                outputs.push(("fqdn", Value::from(format!("{name}.{zone}"))));
            }
        }
        Kind::Hook => outputs.push(("exit_code", Value::from(0))),
        _ => {}
    }
    for (name, value) in outputs {
        attributes.insert(name.to_owned(), value);
    }
    attributes.extend(extra_outputs.clone());
    Some(attributes)
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
            .start_call(step, context.resume_operation, context.inputs);
        let mut guard = CallGuard {
            world: &self.world,
            index,
            outcome: None,
        };
        let attempt = self.world.lock().calls[index].attempt;
        if behaviour.records_operation && context.resume_operation.is_none() {
            (context.record_operation)(format!("memory://operations/{}", step.id));
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
            changes: Vec::new(),
            inputs: [("size_gb".to_owned(), Value::from(256))].into(),
            warning: None,
        }
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
                    resume_operation: None,
                    record_operation: &ignore,
                },
            )
            .await
    }

    #[tokio::test]
    async fn steps_change_the_world_idempotently_and_snapshots_show_it() {
        let world = World::new();
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
