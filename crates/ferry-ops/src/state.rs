//! What the state knows, for a person to look at (`ferry state list`, `ferry state show`), and
//! the one deliberate way to make it forget an instance (`ferry state forget`).
//!
//! The state is a cache of the world (safety invariant 11 of ARCHITECTURE.md): forgetting an
//! instance never touches the resource, and the next plan reads the world again. What may not
//! be forgotten is what a failover in progress still moves: its stateful instances.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ferry_core::retention::kept_until;
use ferry_core::{Attributes, Failover, Generation, InstanceAddress, KeptInstance, KeptUntil};
use ferry_state::LockRequest;
use serde::Serialize;

use crate::{Deployment, OpsError};

/// The layout of [`StateView`] as JSON (`ferry state list --json`).
pub const STATE_VIEW_FORMAT_VERSION: &str = "1";

/// The state of one deployment as a person reads it.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    pub format_version: &'static str,
    pub deployment: String,
    /// Where the state is: a folder, or a blob URL without its query.
    pub location: String,
    /// The generation that serves, as the state last recorded it; `0` before the first apply.
    pub active_generation: Generation,
    /// A failover an apply started and no apply has finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    pub instances: Vec<InstanceView>,
    /// The older generations still in the state, with when each goes (as the spec's
    /// `[failover] retire_old` says, from when it stopped serving) and what it keeps running,
    /// from the outputs the state recorded.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptView>,
}

/// An older generation the state still holds.
#[derive(Debug, Clone, Serialize)]
pub struct KeptView {
    pub generation: Generation,
    /// When it stopped serving, if the state recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stood_down: Option<String>,
    /// When it goes; `None`: its retention is over, and the next apply retires it.
    pub until: Option<KeptUntil>,
    /// Its instances, with what each keeps running as their recorded outputs say.
    pub instances: Vec<KeptInstance>,
}

/// One instance the state remembers.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    pub address: InstanceAddress,
    pub role: Role,
    /// Whether the spec still declares its resource: one it no longer declares is retired by
    /// the next apply (or kept, for a stateful one without `allow_destroy`).
    pub in_spec: bool,
    /// The outputs its last successful step returned (its Azure id among them).
    pub outputs: Attributes,
}

/// What an instance is to the deployment now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Holds data or identity; one instance, whatever the generation.
    Stateful,
    /// Of the active generation.
    Serving,
    /// Of an older generation, not retired yet.
    Old,
    /// Of a newer generation: a failover in progress is building it.
    Next,
    /// Of the generation after the active one, built ahead by a warm standby
    /// (`[failover] standby = "warm"`).
    Standby,
    /// A hot standby's replica of a pool (`zfs_pool.home@g2`): data, of a generation.
    Replica,
}

impl Role {
    fn of(instance: &InstanceAddress, active: Generation, spec: &ferry_spec::Spec) -> Role {
        match instance.generation {
            Some(_) if instance.kind().is_stateful() => Role::Replica,
            _ if instance.kind().is_stateful() => Role::Stateful,
            None => Role::Serving,
            Some(generation) if generation == active => Role::Serving,
            Some(generation) if generation < active => Role::Old,
            Some(generation) if generation == active + 1 && spec.is_standby(&instance.address) => {
                Role::Standby
            }
            Some(_) => Role::Next,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Role::Stateful => "stateful",
            Role::Serving => "serving",
            Role::Old => "old generation",
            Role::Next => "next generation",
            Role::Standby => "warm standby",
            Role::Replica => "hot standby's replica",
        }
    }
}

/// What `forget` took out of the state.
#[derive(Debug, Clone)]
pub struct Forgotten {
    pub address: InstanceAddress,
    /// Its outputs as they were, so that the operator keeps the resource's id.
    pub outputs: Attributes,
}

impl Deployment {
    /// The state as it is saved now, with each instance's role.
    pub fn state_view(&self) -> Result<StateView, OpsError> {
        let state = self.state()?;
        let active = state.active_generation;
        Ok(StateView {
            format_version: STATE_VIEW_FORMAT_VERSION,
            deployment: self.spec().deployment.name.clone(),
            location: self.backend()?.location(),
            active_generation: active,
            failover: state.failover.clone(),
            kept: self.kept_generations(&state),
            instances: state
                .instances
                .iter()
                .map(|(address, record)| InstanceView {
                    address: address.clone(),
                    role: Role::of(address, active, self.spec()),
                    in_spec: self.spec().resources.contains_key(&address.address),
                    outputs: record.outputs.clone(),
                })
                .collect(),
        })
    }

    /// The older generations `state` still holds, as [`StateView::kept`] shows them. One whose
    /// retention is over shows as due (`KeptUntil::Time` in the past): the next apply retires it.
    fn kept_generations(&self, state: &ferry_state::StateFile) -> Vec<KeptView> {
        let rules = self.rules();
        let mut kept: BTreeMap<Generation, KeptView> = BTreeMap::new();
        for (address, record) in &state.instances {
            // A hot standby's replica holds data: never an old generation's to retire.
            let Some(generation) = address
                .generation
                .filter(|generation| *generation < state.active_generation)
                .filter(|_| !address.kind().is_stateful())
            else {
                continue;
            };
            let stood_down = state.stood_down.get(&generation).cloned();
            let view = kept.entry(generation).or_insert_with(|| KeptView {
                generation,
                until: kept_until(
                    self.spec().failover.retire_old,
                    stood_down.as_deref(),
                    false,
                    Some(SystemTime::now()),
                ),
                stood_down,
                instances: Vec::new(),
            });
            view.instances.push(KeptInstance {
                address: address.clone(),
                upkeep: rules
                    .get(address.kind())
                    .and_then(|rules| rules.upkeep(&record.outputs)),
            });
        }
        kept.into_values().collect()
    }

    /// One instance of [`Deployment::state_view`], or an error naming the instances there are.
    pub fn state_instance(&self, address: &str) -> Result<InstanceView, OpsError> {
        let view = self.state_view()?;
        let wanted = parse_address(address)?;
        view.instances
            .into_iter()
            .find(|instance| instance.address == wanted)
            .ok_or_else(|| not_in_state(address, &self.state().unwrap_or_default().instances))
    }

    /// Makes the state forget `address`, under the lock (waiting up to `lock_timeout` for
    /// it). The resource itself is left as it is. Refused for a stateful instance while a
    /// failover is in progress: that failover still moves it.
    pub async fn forget(
        &self,
        address: &str,
        lock_timeout: Duration,
    ) -> Result<Forgotten, OpsError> {
        let wanted = parse_address(address)?;
        let backend = self.backend()?.clone();
        let spec_path = self.spec_path().to_owned();
        let lock = tokio::task::spawn_blocking({
            let backend = backend.clone();
            move || {
                ferry_state::acquire_waiting(
                    &*backend,
                    &LockRequest::for_this_process("state forget", backend.lease()),
                    lock_timeout,
                    Duration::from_secs(1),
                )
                .map_err(|error| error.for_spec(&spec_path))
            }
        })
        .await
        .map_err(|error| OpsError::Runtime(std::io::Error::other(error)))??;
        let forgotten = (|| {
            let mut state = backend.load_state()?;
            if let Some(failover) = &state.failover
                && wanted.kind().is_stateful()
            {
                return Err(OpsError::Refused(format!(
                    "{wanted} is stateful and the failover from generation {} to {} is in progress: \
                     it still moves {wanted}; finish it with ferry apply first",
                    failover.from_generation, failover.to_generation
                )));
            }
            let Some(record) = state.instances.get(&wanted).cloned() else {
                return Err(not_in_state(address, &state.instances));
            };
            state.forget(&wanted);
            backend.save_state(&state)?;
            Ok(Forgotten {
                address: wanted.clone(),
                outputs: record.outputs,
            })
        })();
        let released = backend.release_lock(&lock.id);
        let forgotten = forgotten?;
        released?;
        Ok(forgotten)
    }
}

fn parse_address(address: &str) -> Result<InstanceAddress, OpsError> {
    address.parse().map_err(|error| {
        OpsError::Refused(format!(
            "{address} is not an instance address ({error}): write KIND.NAME for a stateful \
             resource (disk.home0) or KIND.NAME@gN for one generation's (vm.nfs@g2)"
        ))
    })
}

fn not_in_state<T>(address: &str, instances: &BTreeMap<InstanceAddress, T>) -> OpsError {
    let known: Vec<String> = instances.keys().map(ToString::to_string).collect();
    OpsError::Refused(if known.is_empty() {
        format!("{address} is not in the state: the state holds no instances yet")
    } else {
        format!(
            "{address} is not in the state; it holds: {}",
            known.join(", ")
        )
    })
}
