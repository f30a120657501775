//! Reads the world: one observation per resource instance of a spec, through the providers,
//! with bounded concurrency, into the [`Snapshot`] the planner plans from.
//!
//! Which instances are read comes from the spec and from ferry's state: every resource at the
//! active generation (generation 1 before the first apply), every other generation the state
//! still remembers (a failover under way, an old generation not yet retired), and every
//! instance the state remembers that the spec no longer declares, so that the plan can
//! delete it.

use std::collections::BTreeSet;

use ferry_core::{
    Attributes, Generation, InstanceAddress, Observation, Providers, ReadContext, ResourceSpec,
    RuleBook, Snapshot, Value,
};
use ferry_plan::resolve::{instance_at, resolve_fields};
use ferry_spec::Spec;
use ferry_state::StateFile;
use futures_util::StreamExt;

/// How to read.
#[derive(Debug, Clone)]
pub struct ObserveConfig {
    /// Reads in flight at once; each is bounded by its latency, not by ferry.
    pub concurrency: usize,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self { concurrency: 32 }
    }
}

/// Why the world could not be read at all. A single resource that cannot be read is not an
/// error: it is an `Unknown` observation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no provider can read {}: plan from a snapshot with --observed FILE, or use a simulated world with --world FILE",
    kinds.join(", ")
)]
pub struct MissingProviders {
    pub kinds: Vec<String>,
}

/// The instances a snapshot of `spec` should hold, given what the state remembers.
pub fn instances_to_read(spec: &Spec, state: &StateFile) -> Vec<InstanceAddress> {
    let active = state.active_generation.max(1);
    let mut instances: BTreeSet<InstanceAddress> = spec
        .resources
        .keys()
        .map(|address| instance_at(address, active))
        .collect();
    for instance in state.instances.keys() {
        instances.insert(instance.clone());
    }
    instances.into_iter().collect()
}

/// Reads every instance of `spec` through `providers`.
pub async fn observe(
    spec: &Spec,
    rules: &RuleBook,
    state: &StateFile,
    providers: &Providers,
    config: &ObserveConfig,
) -> Result<Snapshot, MissingProviders> {
    let instances = instances_to_read(spec, state);
    let mut missing: Vec<String> = instances
        .iter()
        .map(InstanceAddress::kind)
        .filter(|kind| providers.get(*kind).is_none())
        .map(|kind| kind.to_string())
        .collect();
    missing.dedup();
    if !missing.is_empty() {
        return Err(MissingProviders { kinds: missing });
    }
    let output = |instance: &InstanceAddress, name: &str| -> Option<Value> {
        state.outputs(instance)?.get(name).cloned()
    };
    let prepared: Vec<(InstanceAddress, ResourceSpec, Attributes)> = instances
        .into_iter()
        .map(|instance| {
            let resource = spec
                .resources
                .get(&instance.address)
                .cloned()
                .unwrap_or_else(|| ResourceSpec::new(instance.address.clone()));
            let generation: Generation = instance
                .generation
                .unwrap_or(state.active_generation.max(1));
            let fields = match rules.get(instance.kind()) {
                Some(kind_rules) => {
                    resolve_fields(spec, kind_rules, &instance.address, generation, &output)
                }
                None => Attributes::new(),
            };
            (instance, resource, fields)
        })
        .collect();
    // Other instances' outputs as the state remembers them (a pool's host address).
    let remembered_outputs =
        |instance: &InstanceAddress| -> Option<Attributes> { state.outputs(instance).cloned() };
    let remembered_outputs = &remembered_outputs;
    let readings: Vec<(InstanceAddress, Observation)> = futures_util::stream::iter(prepared.iter())
        .map(|(instance, resource, fields)| async move {
            let provider = providers
                .get(instance.kind())
                .expect("checked above: every kind has a provider");
            let observation = provider
                .read(ReadContext {
                    spec: resource,
                    instance,
                    fields,
                    remembered: state.outputs(instance),
                    outputs: remembered_outputs,
                })
                .await;
            (instance.clone(), observation)
        })
        .buffer_unordered(config.concurrency.max(1))
        .collect()
        .await;
    let mut snapshot = Snapshot::new(state.active_generation);
    snapshot.failover_in_progress = state.failover.clone();
    for (instance, observation) in readings {
        snapshot.insert(instance, observation);
    }
    Ok(snapshot)
}
