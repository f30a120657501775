//! Failover readiness: the failover a plan's readings would give, planned beside the plan, so
//! that whatever would block it (a spec change the failover refuses, a reading it needs that is
//! unknown, a provider's guard) is seen on an ordinary day, not at the moment it is needed.
//!
//! The planner is pure, so this is only a second planning from the same snapshot with the
//! failover forced; `ferry plan` puts the answer in [`Plan::readiness`] and `ferry watch` alerts
//! when it changes.

use std::collections::BTreeSet;

use ferry_core::{
    Action, Blocker, Ensure, InstanceAddress, Observation, Plan, Readiness, RuleBook, Snapshot,
};
use ferry_spec::{FailoverMode, Spec};

use crate::{FailoverRequest, PlanConfig};
use ferry_spec::resolve::instance_at;

/// Whether the failover planned from `snapshot` could be made now, and how long it would take;
/// `None` when there is nothing to fail over (the spec's failover mode is off, or no generation
/// was ever built).
pub fn readiness(
    spec: &Spec,
    snapshot: &Snapshot,
    rules: &RuleBook,
    config: &PlanConfig,
) -> Option<Readiness> {
    readiness_with(spec, snapshot, rules, config, &|_| Ok(()))
}

/// [`readiness`], with the guards a finished plan must also pass (the providers' checks, such
/// as DNS's limit on the share of a zone one plan changes): a failover plan they refuse is
/// blocked too.
pub fn readiness_with(
    spec: &Spec,
    snapshot: &Snapshot,
    rules: &RuleBook,
    config: &PlanConfig,
    guard: &dyn Fn(&Plan) -> Result<(), String>,
) -> Option<Readiness> {
    let active = snapshot.active_generation;
    if spec.failover.mode == FailoverMode::Off || active == 0 {
        return None;
    }
    let forced = PlanConfig {
        failover: FailoverRequest::Force,
        ..config.clone()
    };
    let to_generation = snapshot
        .failover_in_progress
        .as_ref()
        .filter(|started| started.from_generation == active)
        .map_or(active + 1, |started| started.to_generation);
    let plan = match crate::plan(spec, snapshot, rules, &forced) {
        Ok(plan) => plan,
        Err(errors) => {
            return Some(Readiness {
                ready: false,
                to_generation,
                recovery_seconds: None,
                steps: None,
                data_loss: None,
                blockers: errors
                    .0
                    .into_iter()
                    .map(|error| Blocker {
                        address: error.address,
                        reason: error.message,
                        help: error.help,
                    })
                    .collect(),
            });
        }
    };
    let mut blockers = Vec::new();
    if let Err(message) = guard(&plan) {
        blockers.push(Blocker {
            address: None,
            reason: message,
            help: None,
        });
    }
    blockers.extend(unknown_needs(spec, snapshot, &plan));
    blockers.extend(standby_gap(spec, &plan));
    blockers.extend(replica_lag(spec, snapshot, &plan));
    Some(Readiness {
        ready: blockers.is_empty(),
        to_generation: plan
            .failover
            .as_ref()
            .map_or(to_generation, |failover| failover.to_generation),
        recovery_seconds: plan.recovery_seconds,
        steps: Some(plan.steps.len()),
        data_loss: plan.data_loss.clone(),
        blockers,
    })
}

/// The unknown readings the failover needs: one that holds back resources the failover would
/// build or change, and a stateful resource the failover would leave where it is because it
/// cannot be read (a DNS record that would keep pointing at the old generation).
fn unknown_needs(spec: &Spec, snapshot: &Snapshot, plan: &Plan) -> Vec<Blocker> {
    let help = "make it readable again (or find out why it is not): a failover needs it";
    let mut seen: BTreeSet<InstanceAddress> = BTreeSet::new();
    let mut blockers = Vec::new();
    for reading in &plan.unknown {
        if reading.held_back.is_empty() || !seen.insert(reading.address.clone()) {
            continue;
        }
        let held: Vec<String> = reading.held_back.iter().map(ToString::to_string).collect();
        let left = reading.address.kind().is_stateful()
            && !plan
                .steps
                .iter()
                .any(|step| step.address == reading.address);
        blockers.push(Blocker {
            address: Some(reading.address.clone()),
            reason: format!(
                "its reading is unknown ({}): the failover would {}hold back {}",
                reading.reason,
                if left { "leave it as it is and " } else { "" },
                held.join(", ")
            ),
            help: Some(help.to_owned()),
        });
    }
    let to = plan
        .failover
        .as_ref()
        .map_or(snapshot.active_generation + 1, |failover| {
            failover.to_generation
        });
    for resource in spec.resources.values() {
        if resource.ensure == Ensure::Absent || !resource.address.kind.is_stateful() {
            continue;
        }
        let instance = instance_at(&resource.address, to);
        let Some(Observation::Unknown { reason }) = snapshot.get(&instance) else {
            continue;
        };
        if plan.steps.iter().any(|step| step.address == instance) || !seen.insert(instance.clone())
        {
            continue;
        }
        blockers.push(Blocker {
            address: Some(instance),
            reason: format!(
                "its reading is unknown ({reason}): the failover would leave it as it is, in generation {}",
                snapshot.active_generation
            ),
            help: Some(help.to_owned()),
        });
    }
    blockers
}

/// With a hot standby: each replica further behind its primary than the spec's
/// `replica_max_lag` (the recovery point objective). The failover can still be made, and
/// would lose up to the lag: the operator learns it today, not on the day.
fn replica_lag(spec: &Spec, snapshot: &Snapshot, plan: &Plan) -> Vec<Blocker> {
    use ferry_core::fields::zfs_pool;
    let to = plan
        .failover
        .as_ref()
        .map_or(snapshot.active_generation + 1, |failover| {
            failover.to_generation
        });
    let mut blockers = Vec::new();
    for pool in spec.hot_pools() {
        let Some((_, max_lag)) = zfs_pool::replica_timing(&pool.fields) else {
            continue;
        };
        let replica = pool.address.at(Some(to));
        let Some(lag) = snapshot
            .get(&replica)
            .and_then(|reading| reading.attribute(zfs_pool::REPLICA_LAG_SECONDS))
            .and_then(ferry_core::Value::as_u64)
        else {
            continue;
        };
        if lag > max_lag.as_secs() {
            blockers.push(Blocker {
                address: Some(replica),
                reason: format!(
                    "the replica lags {} behind the primary, more than replica_max_lag ({}): a failover now would lose up to that",
                    crate::render::duration(lag),
                    crate::render::duration(max_lag.as_secs())
                ),
                help: Some("find out why the replication rounds fall behind (ferry watch runs them; its log says why one failed), or raise replica_max_lag".to_owned()),
            });
        }
    }
    blockers
}

/// With a warm standby: what of it the failover would have to build, start or repair first
/// (none built yet, one deleted behind ferry's back, its cluster unhealthy). Such a failover
/// can still be made, but not at the pace the spec's standby exists for: the operator learns
/// it now, from the plan and from `ferry watch`, not from a failover that takes three times
/// as long as expected.
fn standby_gap(spec: &Spec, plan: &Plan) -> Option<Blocker> {
    let standby = spec.standby_resources();
    let to = plan.failover.as_ref()?.to_generation;
    let gaps: Vec<String> = plan
        .steps
        .iter()
        .filter(|step| {
            step.action != Action::Retire
                && step.address.generation == Some(to)
                && standby.contains(&step.address.address)
        })
        .map(|step| format!("{} {}", step.action, step.address))
        .collect();
    if gaps.is_empty() {
        return None;
    }
    let recovery = plan
        .recovery_seconds
        .map(|seconds| {
            format!(
                ", and its estimated time to recovery is {}",
                crate::render::duration(seconds)
            )
        })
        .unwrap_or_default();
    Some(Blocker {
        address: None,
        reason: format!(
            "the warm standby, generation {to}, is not ready: the failover would first {} ({} of its {} resources){recovery}",
            gaps.join(", "),
            gaps.len(),
            standby.len()
        ),
        help: Some(
            "run ferry apply: every apply builds the warm standby and keeps it ready (ferry plan shows what it lacks)"
                .to_owned(),
        ),
    })
}
