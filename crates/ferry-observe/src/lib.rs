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

use std::borrow::Cow;
use std::collections::BTreeSet;

use ferry_core::provider::ReadRound;
use ferry_core::{
    Attributes, Generation, InstanceAddress, Observation, Providers, ReadContext, ResourceSpec,
    RuleBook, Snapshot, Value,
};
use ferry_spec::Spec;
use ferry_spec::resolve::{instance_at, resolve_resource_fields};
use ferry_state::StateFile;
use futures_util::StreamExt;
use rustc_hash::FxHashSet;

/// How to read.
#[derive(Debug, Clone)]
pub struct ObserveConfig {
    /// Reads in flight at once; each is bounded by its latency, not by ferry.
    pub concurrency: usize,
    /// Open a read round on every provider for each pass of reads (`Provider::begin_read_round`),
    /// so that the Azure providers read each resource group's resources of a type with one
    /// ARM list instead of a GET each. `false` reads every instance on its own, as a
    /// benchmark's baseline.
    pub read_rounds: bool,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            concurrency: 32,
            read_rounds: true,
        }
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
    snapshot.stood_down = state.stood_down.clone();
    // What the state remembers, taught what each round reads (the world wins): an output the
    // state lost (a create killed after Azure accepted it) is known from its reading before
    // anything that needs it (a pool's host address, a check's target) is read again.
    let mut known = state.clone();
    // A generation-less instance (a pool, whose host is a generation's VM) is read where the
    // active generation places it.
    let active = state.active_generation.max(1);
    // Only asked whether it holds an instance: hashed (Fx: the spec's own addresses), where an
    // ordered set compared every address read with a dozen others.
    let mut read: FxHashSet<InstanceAddress> = FxHashSet::default();
    let mut wanted: Vec<InstanceAddress> = instances;
    let mut probed: BTreeSet<Generation> = BTreeSet::new();
    let mut next = state.active_generation.max(1) + 1;
    // Each round reads what the last one pointed at; a world can point at no more generations
    // than it holds, and four rounds cover a state lost two generations behind.
    for _ in 0..4 {
        wanted.retain(|instance| !read.contains(instance));
        snapshot.extend(
            read_instances(
                spec,
                rules,
                &known,
                providers,
                config,
                &wanted,
                At::generation(active),
            )
            .await,
        );
        read.extend(wanted.drain(..));
        // A generation beyond the ones read, kept only where it reads present: evidence of a
        // failover that started, never a reason to plan anything on its own.
        if probed.insert(next) {
            let probe: Vec<InstanceAddress> = generation_instances(spec, next)
                .into_iter()
                .filter(|instance| !read.contains(instance))
                .collect();
            for (instance, observation) in read_instances(
                spec,
                rules,
                &known,
                providers,
                config,
                &probe,
                At::generation(active),
            )
            .await
            {
                if observation.is_present() {
                    snapshot.insert(instance, observation);
                }
            }
            read.extend(probe);
        }
        learn_outputs(&mut known, &snapshot, rules);
        let Ok(world) = ferry_plan::world::reconstruct(
            &snapshot,
            rules,
            &ferry_plan::world::not_evidence(spec, &snapshot),
        ) else {
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
    // The generation before the serving one, where the state holds none of it: a generation
    // kept after its failover (`[failover] retire_old`) whose record went with a lost state,
    // or one a lost state never retired. Kept only where it reads present, so that what
    // still runs is seen (and retired, or shown as kept) rather than forgotten with the state.
    let serving = ferry_plan::world::reconstruct(
        &snapshot,
        rules,
        &ferry_plan::world::not_evidence(spec, &snapshot),
    )
    .map_or(active, |world| world.active_generation.max(1));
    if serving > 1 {
        let below: Vec<InstanceAddress> = generation_instances(spec, serving - 1)
            .into_iter()
            .filter(|instance| !read.contains(instance))
            .collect();
        for (instance, observation) in read_instances(
            spec,
            rules,
            &known,
            providers,
            config,
            &below,
            At::generation(active),
        )
        .await
        {
            if observation.is_present() {
                snapshot.insert(instance, observation);
            }
        }
    }
    // The warm standby, in the generation after the serving one: every reading is kept, absent
    // and unknown too, since the planner builds there what reads absent and nothing from what
    // it could not read.
    // A hot standby's replicas are their pools' instances of that generation.
    let standby: Vec<InstanceAddress> = spec
        .standby_resources()
        .iter()
        .map(|address| instance_at(address, serving + 1))
        .chain(
            spec.hot_pools()
                .map(|pool| pool.address.at(Some(serving + 1))),
        )
        .filter(|instance| !snapshot.resources.contains_key(instance))
        .collect();
    // A replica is on the replica's disks, or on the pool's own once a failback re-seated
    // them there (the disks' readings, read before, say which).
    let on_own_disks: BTreeSet<InstanceAddress> = spec
        .hot_pools()
        .filter_map(|pool| {
            let replica = pool.address.at(Some(serving + 1));
            let host = pool
                .str_field(ferry_core::fields::zfs_pool::HOST)?
                .parse::<ferry_core::ResourceAddress>()
                .ok()?
                .at(Some(serving + 1))
                .to_string();
            let own: Vec<&str> = pool
                .field(ferry_core::fields::zfs_pool::DISKS)?
                .as_array()?
                .iter()
                .filter_map(Value::as_str)
                .collect();
            let there = !own.is_empty()
                && own.iter().all(|disk| {
                    disk.parse::<ferry_core::ResourceAddress>()
                        .ok()
                        .and_then(|disk| snapshot.get(&disk.at(None)))
                        .and_then(|reading| reading.attribute(ferry_core::fields::disk::VM))
                        .and_then(Value::as_str)
                        == Some(host.as_str())
                });
            there.then_some(replica)
        })
        .collect();
    for (instance, observation) in read_instances(
        spec,
        rules,
        &known,
        providers,
        config,
        &standby,
        At {
            generation_less: active,
            replicas_on_own_disks: &on_own_disks,
        },
    )
    .await
    {
        snapshot.insert(instance, observation);
    }
    // A reading that was not present may have needed an output the state had lost (a pool's
    // host address, a check's target) and been read in the same round as the instance that
    // has it: it is read again now that the output is known. Only when something was learned,
    // so that a world that cannot be read is not read twice.
    if known.instances != state.instances {
        let not_present: Vec<InstanceAddress> = snapshot
            .resources
            .iter()
            .filter(|(_, observation)| !observation.is_present())
            .map(|(instance, _)| instance.clone())
            .collect();
        for (instance, observation) in read_instances(
            spec,
            rules,
            &known,
            providers,
            config,
            &not_present,
            At::generation(active),
        )
        .await
        {
            snapshot.insert(instance, observation);
        }
    }
    // In a failover under way (as the state says, or as the world shows when the state was
    // lost), a stateful instance may already sit on the new generation (the pool imported
    // there) while the old one's host is gone (its VM retired): one that reads absent where
    // the active generation places it is read where the failover takes it, and that reading
    // is kept when it finds the instance there.
    let failover = state.failover.clone().or_else(|| {
        ferry_plan::world::reconstruct(
            &snapshot,
            rules,
            &ferry_plan::world::not_evidence(spec, &snapshot),
        )
        .ok()?
        .failover_in_progress
    });
    if let Some(failover) = failover {
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
            &known,
            providers,
            config,
            &absent,
            At::generation(failover.to_generation),
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

/// Teaches `state` the outputs the world reads, the world winning: for every instance that
/// reads present, each output its kind declares and its reading carries (a VM's address, a
/// cluster's kubeconfig). Returns the instances whose remembered outputs changed.
///
/// The state is a cache of the world: an apply killed after Azure accepted a create never
/// recorded that step's outputs, and the resume plans no step for an instance that reads
/// present. Without this, everything that needs those outputs (the pool's import on the new
/// VM, the TLS check of the new ingress) would wait for them apply after apply. `ferry apply`
/// calls it on the state it applies with; [`observe`] reads with what it learns.
pub fn learn_outputs(
    state: &mut StateFile,
    snapshot: &Snapshot,
    rules: &RuleBook,
) -> Vec<InstanceAddress> {
    let mut changed = Vec::new();
    for (instance, observation) in &snapshot.resources {
        let Observation::Present { attributes, .. } = observation else {
            continue;
        };
        let Some(kind_rules) = rules.get(instance.kind()) else {
            continue;
        };
        let read: Vec<(&str, &Value)> = kind_rules
            .outputs()
            .iter()
            .filter_map(|output| {
                attributes
                    .get(output.name)
                    .filter(|value| !value.is_null())
                    .map(|value| (output.name, value))
            })
            .collect();
        if read.is_empty() {
            continue;
        }
        let record = state.instances.entry(instance.clone()).or_default();
        let mut learned = false;
        for (name, value) in read {
            if record.outputs.get(name) != Some(value) {
                record.outputs.insert(name.to_owned(), value.clone());
                learned = true;
            }
        }
        if learned {
            changed.push(instance.clone());
        }
    }
    changed
}

/// The instances of the spec's generation-scoped resources at `generation`.
fn generation_instances(spec: &Spec, generation: Generation) -> Vec<InstanceAddress> {
    spec.resources
        .keys()
        .map(|address| instance_at(address, generation))
        .filter(|instance| instance.generation.is_some())
        .collect()
}

/// Where a read places what the instance addresses leave open.
#[derive(Clone, Copy)]
struct At<'a> {
    /// The generation a generation-less instance (a pool, whose host is a generation's VM) is
    /// read on.
    generation_less: Generation,
    /// The hot standby's replicas that are on their pool's own disks (after a failback),
    /// rather than on its `replica_disks`.
    replicas_on_own_disks: &'a BTreeSet<InstanceAddress>,
}

static NO_REPLICAS: BTreeSet<InstanceAddress> = BTreeSet::new();

impl At<'_> {
    fn generation(generation_less: Generation) -> At<'static> {
        At {
            generation_less,
            replicas_on_own_disks: &NO_REPLICAS,
        }
    }
}

/// Reads `instances` through their providers, with bounded concurrency.
async fn read_instances(
    spec: &Spec,
    rules: &RuleBook,
    state: &StateFile,
    providers: &Providers,
    config: &ObserveConfig,
    instances: &[InstanceAddress],
    at: At<'_>,
) -> Vec<(InstanceAddress, Observation)> {
    let (generation_less_at, on_own_disks) = (at.generation_less, at.replicas_on_own_disks);
    let output = |instance: &InstanceAddress, name: &str| -> Option<Value> {
        state.outputs(instance)?.get(name).cloned()
    };
    // Each instance's spec and fields are prepared as its read starts, not all before the
    // first: a vector of every instance's copy of its resource and its resolved fields cost
    // 9 % of a 100,000-resource `ferry plan`'s time, and memory that outlived its reads.
    let prepare = |instance: &InstanceAddress| -> (Cow<'_, ResourceSpec>, Attributes) {
        let resource = match spec.resources.get(&instance.address) {
            Some(resource) => Cow::Borrowed(resource),
            None => Cow::Owned(ResourceSpec::new(instance.address.clone())),
        };
        let generation: Generation = instance.generation.unwrap_or(generation_less_at);
        let mut fields = match (&resource, rules.get(instance.kind())) {
            (Cow::Borrowed(resource), Some(kind_rules)) => {
                resolve_resource_fields(spec, kind_rules, resource, generation, &output)
            }
            _ => Attributes::new(),
        };
        // A stateful instance of a generation is a hot standby's replica: read on its own
        // side's disks only.
        if instance.kind().is_stateful() && instance.generation.is_some() {
            if !on_own_disks.contains(instance) {
                ferry_core::fields::zfs_pool::swap_sides(&mut fields);
            }
            fields.remove(ferry_core::fields::zfs_pool::REPLICA_DISKS);
        }
        (resource, fields)
    };
    let prepare = &prepare;
    let readable: Vec<&InstanceAddress> = instances
        .iter()
        .filter(|instance| providers.get(instance.kind()).is_some())
        .collect();
    // Other instances' outputs as the state remembers them (a pool's host address).
    let remembered_outputs =
        |instance: &InstanceAddress| -> Option<Attributes> { state.outputs(instance).cloned() };
    let remembered_outputs = &remembered_outputs;
    // One read round per pass: the pass's reads share what the providers fetch for it (an
    // ARM list of a group's disks), and the next pass (the probe of the next generation,
    // after a pass that may take seconds) and the next observation read afresh. A round over
    // the whole observation answered a later pass from lists fetched before it: a cluster
    // still creating then, and long since created.
    let _read_rounds: Vec<ReadRound> = if config.read_rounds && !readable.is_empty() {
        providers
            .kinds()
            .filter_map(|kind| providers.get(kind))
            .map(|provider| provider.begin_read_round())
            .collect()
    } else {
        Vec::new()
    };
    futures_util::stream::iter(readable)
        .map(|instance| async move {
            let provider = providers
                .get(instance.kind())
                .expect("filtered above: every kind read has a provider");
            let (resource, fields) = prepare(instance);
            let observation = provider
                .read(ReadContext {
                    spec: &resource,
                    instance,
                    fields: &fields,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use ferry_core::provider::ReadRound;
    use ferry_core::{
        ApplyContext, Health, Kind, Provider, Snapshot, Step, StepError, StepOutcome,
    };
    use serde_json::json;

    use super::*;

    /// A provider of resource groups that counts the read rounds opened on it and, for each
    /// read, how many were open.
    #[derive(Debug, Default)]
    struct RoundCounting {
        begun: AtomicUsize,
        open: Arc<AtomicUsize>,
        reads_in_a_round: AtomicUsize,
        reads: AtomicUsize,
    }

    struct Open(Arc<AtomicUsize>);

    impl Drop for Open {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    #[async_trait::async_trait]
    impl Provider for RoundCounting {
        fn kind(&self) -> Kind {
            Kind::ResourceGroup
        }

        async fn read(&self, _: ReadContext<'_>) -> Observation {
            self.reads.fetch_add(1, Ordering::SeqCst);
            if self.open.load(Ordering::SeqCst) > 0 {
                self.reads_in_a_round.fetch_add(1, Ordering::SeqCst);
            }
            Observation::Absent
        }

        async fn apply(&self, _: &Step, _: ApplyContext<'_>) -> Result<StepOutcome, StepError> {
            Ok(StepOutcome::default())
        }

        fn begin_read_round(&self) -> ReadRound {
            self.begun.fetch_add(1, Ordering::SeqCst);
            self.open.fetch_add(1, Ordering::SeqCst);
            ReadRound::new(Open(self.open.clone()))
        }
    }

    #[tokio::test]
    async fn each_pass_of_an_observation_reads_within_a_round_of_its_own() {
        let rules = ferry_providers::rule_book();
        let root = std::path::Path::new("/spec");
        let text = "[deployment]\nname = \"t\"\nlocation = \"westeurope\"\n\n\
                    [resource_group.a]\nname = \"a-g${generation}\"\n\n\
                    [resource_group.b]\nname = \"b-g${generation}\"\n";
        let spec = ferry_spec::load_sources(
            root,
            vec![(root.join("main.toml"), text.to_owned())],
            &ferry_spec::LoadOptions::default(),
            &rules,
        )
        .unwrap();
        // Two passes: generation 1, then the probe of generation 2.
        for (read_rounds, begun) in [(true, 2), (false, 0)] {
            let provider = Arc::new(RoundCounting::default());
            let providers = Providers::new().with(provider.clone());
            let config = ObserveConfig {
                read_rounds,
                ..ObserveConfig::default()
            };
            observe(&spec, &rules, &StateFile::default(), &providers, &config)
                .await
                .unwrap();
            let reads = provider.reads.load(Ordering::SeqCst);
            assert_eq!(reads, 4);
            assert_eq!(provider.begun.load(Ordering::SeqCst), begun);
            assert_eq!(
                provider.reads_in_a_round.load(Ordering::SeqCst),
                if read_rounds { reads } else { 0 }
            );
            assert_eq!(provider.open.load(Ordering::SeqCst), 0, "closed at the end");
        }
    }

    fn instance(text: &str) -> InstanceAddress {
        text.parse().unwrap()
    }

    fn attributes(value: serde_json::Value) -> Attributes {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn outputs_a_killed_apply_never_recorded_are_learned_from_the_world() {
        let rules = ferry_providers::rule_book();
        // The state lost the new VM (its create was killed after Azure accepted it) and
        // remembers an old address for the public IP.
        let mut state = StateFile::default();
        state.record_outputs(
            &instance("public_ip.ingress@g2"),
            attributes(json!({"address": "127.0.1.9", "sku": "Standard"})),
        );
        let mut snapshot = Snapshot::new(1);
        snapshot.insert(
            instance("vm.nfs@g2"),
            Observation::Present {
                attributes: attributes(json!({
                    "id": "/subscriptions/s/resourceGroups/data100-g2/providers/Microsoft.Compute/virtualMachines/data100-nfs-g2",
                    "public_address": "127.0.1.2",
                    "device_folder": "/srv/luns/g2",
                    "size": "Standard_D4s_v5",
                })),
                // A VM still starting is present: its address is known all the same.
                health: Health::Unhealthy {
                    reason: "the VM is starting".into(),
                },
            },
        );
        snapshot.insert(
            instance("public_ip.ingress@g2"),
            Observation::present(attributes(json!({"address": "127.0.1.3"}))),
        );
        snapshot.insert(instance("vm.nfs@g3"), Observation::Absent);
        snapshot.insert(
            instance("public_ip.nfs@g2"),
            Observation::Unknown {
                reason: "ARM did not answer".into(),
            },
        );

        let changed = learn_outputs(&mut state, &snapshot, &rules);

        assert_eq!(
            changed,
            vec![instance("public_ip.ingress@g2"), instance("vm.nfs@g2")]
        );
        let vm = state.outputs(&instance("vm.nfs@g2")).unwrap();
        assert_eq!(vm["public_address"], json!("127.0.1.2"));
        assert_eq!(vm["device_folder"], json!("/srv/luns/g2"));
        // Only what the kind declares as an output is learned, not every attribute read.
        assert!(!vm.contains_key("size"), "{vm:?}");
        // The world wins over the state; what the reading does not carry is kept.
        let ip = state.outputs(&instance("public_ip.ingress@g2")).unwrap();
        assert_eq!(ip["address"], json!("127.0.1.3"));
        assert_eq!(ip["sku"], json!("Standard"));
        // Absent and unknown readings teach nothing, and forget nothing.
        assert!(state.outputs(&instance("vm.nfs@g3")).is_none());
        assert!(state.outputs(&instance("public_ip.nfs@g2")).is_none());
        // Learning again what is already known changes nothing.
        assert!(learn_outputs(&mut state, &snapshot, &rules).is_empty());
    }
}
