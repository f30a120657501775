//! Reads the world: one observation per resource instance of a spec, through the providers,
//! with bounded concurrency, into the [`Snapshot`] the planner plans from.
//!
//! Which instances are read comes from the spec and from ferry's state: every resource at the
//! active generation (generation 1 before the first apply), every other generation the state
//! still remembers (a failover under way, an old generation not yet retired), and every
//! instance the state remembers that the spec no longer declares, so that the plan can
//! delete it. The state is only where reading starts: the next generation is probed, and the
//! generations the stateful resources read placed on are read too, since the world, not the
//! state, says which generation serves.

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
///
/// The state only says where to start: the generation after the active one is probed too
/// (what reads present is kept), and when the stateful resources read placed on generations
/// the state did not name (a state lost, reset or stale, in the middle of a failover or after
/// one), those generations are read as well, so that the planner can rebuild from the world
/// which generation serves and finish a failover under way (`ferry_plan::world`).
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
    let mut snapshot = Snapshot::new(state.active_generation);
    snapshot.failover_in_progress = state.failover.clone();
    // A generation-less instance (a pool, whose host is a generation's VM) is read where the
    // active generation places it.
    let active = state.active_generation.max(1);
    let mut read: BTreeSet<InstanceAddress> = BTreeSet::new();
    let mut wanted: Vec<InstanceAddress> = instances;
    let mut probed: BTreeSet<Generation> = BTreeSet::new();
    let mut next = state.active_generation.max(1) + 1;
    // Each round reads what the last one pointed at; a world can point at no more generations
    // than it holds, and four rounds cover a state lost two generations behind.
    for _ in 0..4 {
        wanted.retain(|instance| !read.contains(instance));
        for (instance, observation) in
            read_instances(spec, rules, state, providers, config, &wanted, active).await
        {
            snapshot.insert(instance, observation);
        }
        read.extend(wanted.drain(..));
        // A generation beyond the ones read, kept only where it reads present: evidence of a
        // failover that started, never a reason to plan anything on its own.
        if probed.insert(next) {
            let probe: Vec<InstanceAddress> = generation_instances(spec, next)
                .into_iter()
                .filter(|instance| !read.contains(instance))
                .collect();
            for (instance, observation) in
                read_instances(spec, rules, state, providers, config, &probe, active).await
            {
                if observation.is_present() {
                    snapshot.insert(instance, observation);
                }
            }
            read.extend(probe);
        }
        let Ok(world) = ferry_plan::world::reconstruct(&snapshot, rules) else {
            break;
        };
        let mut generations = vec![world.active_generation.max(1)];
        if let Some(failover) = &world.failover_in_progress {
            generations.push(failover.from_generation);
            generations.push(failover.to_generation);
        }
        wanted = generations
            .iter()
            .flat_map(|generation| generation_instances(spec, *generation))
            .filter(|instance| !read.contains(instance))
            .collect();
        next = generations.iter().copied().max().unwrap_or(1) + 1;
        if wanted.is_empty() && probed.contains(&next) {
            break;
        }
    }
    // In a failover under way, a stateful instance may already sit on the new generation (the
    // pool imported there) while the old one's host is gone (its VM retired): one that reads
    // absent where the active generation places it is read where the failover takes it, and
    // that reading is kept when it finds the instance there.
    if let Some(failover) = &state.failover {
        let absent: Vec<InstanceAddress> = snapshot
            .resources
            .iter()
            .filter(|(instance, observation)| {
                instance.generation.is_none() && matches!(observation, Observation::Absent)
            })
            .map(|(instance, _)| instance.clone())
            .collect();
        for (instance, observation) in read_instances(
            spec,
            rules,
            state,
            providers,
            config,
            &absent,
            failover.to_generation,
        )
        .await
        {
            if observation.is_present() {
                snapshot.insert(instance, observation);
            }
        }
    }
    Ok(snapshot)
}

/// The instances of the spec's generation-scoped resources at `generation`.
fn generation_instances(spec: &Spec, generation: Generation) -> Vec<InstanceAddress> {
    spec.resources
        .keys()
        .map(|address| instance_at(address, generation))
        .filter(|instance| instance.generation.is_some())
        .collect()
}

/// Reads `instances` through their providers, with bounded concurrency.
async fn read_instances(
    spec: &Spec,
    rules: &RuleBook,
    state: &StateFile,
    providers: &Providers,
    config: &ObserveConfig,
    instances: &[InstanceAddress],
    generation_less_at: Generation,
) -> Vec<(InstanceAddress, Observation)> {
    let output = |instance: &InstanceAddress, name: &str| -> Option<Value> {
        state.outputs(instance)?.get(name).cloned()
    };
    let prepared: Vec<(InstanceAddress, ResourceSpec, Attributes)> = instances
        .iter()
        .filter(|instance| providers.get(instance.kind()).is_some())
        .map(|instance| {
            let resource = spec
                .resources
                .get(&instance.address)
                .cloned()
                .unwrap_or_else(|| ResourceSpec::new(instance.address.clone()));
            let generation: Generation = instance.generation.unwrap_or(generation_less_at);
            let fields = match rules.get(instance.kind()) {
                Some(kind_rules) => {
                    resolve_fields(spec, kind_rules, &instance.address, generation, &output)
                }
                None => Attributes::new(),
            };
            (instance.clone(), resource, fields)
        })
        .collect();
    // Other instances' outputs as the state remembers them (a pool's host address).
    let remembered_outputs =
        |instance: &InstanceAddress| -> Option<Attributes> { state.outputs(instance).cloned() };
    let remembered_outputs = &remembered_outputs;
    futures_util::stream::iter(prepared.iter())
        .map(|(instance, resource, fields)| async move {
            let provider = providers
                .get(instance.kind())
                .expect("filtered above: every kind read has a provider");
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
        .await
}
