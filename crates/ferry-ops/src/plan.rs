//! Planning with every guard: the planner's own safety invariants, then the providers' (DNS's
//! refusal of a plan that changes more than 30 % of a zone), and failover readiness beside a
//! plan that is not a failover.

use std::path::Path;
use std::time::SystemTime;

use ferry_core::{Plan, Readiness, RuleBook, Snapshot};
use ferry_plan::{PlanConfig, SavedPlan};
use ferry_spec::Spec;

use crate::{Deployment, OpsError};

/// How to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Whether to fail over, and whether stateful resources may be destroyed.
    pub config: PlanConfig,
    /// Accept a plan that changes more than 30 % of a DNS zone's managed records.
    pub force: bool,
}

/// Plans `spec` against `snapshot` with every guard; a plan no guard refused.
pub fn plan(
    spec: &Spec,
    snapshot: &Snapshot,
    rules: &RuleBook,
    options: &PlanOptions,
) -> Result<Plan, OpsError> {
    let plan = ferry_plan::plan(spec, snapshot, rules, &clocked(&options.config))?;
    ferry_providers::check_plan(&plan, snapshot, options.force).map_err(OpsError::Guard)?;
    Ok(measured(spec, plan))
}

/// The plan with this deployment's drills' figures over its estimates, when it has some; a
/// file that cannot be read is a note, never a refusal (a failover plan must not wait on it).
fn measured(spec: &Spec, mut plan: Plan) -> Plan {
    let path = crate::drill::measured_path(spec);
    match crate::drill::read_measured(&path) {
        Ok(Some(figures)) => ferry_plan::measured::with_measured(plan, &figures),
        Ok(None) => plan,
        Err(why) => {
            plan.notes.push(format!(
                "estimates: the drills' figures are not used: {why}"
            ));
            plan
        }
    }
}

/// The planning configuration with the time it plans at, the one thing the pure planner cannot
/// know (when a kept generation's retention ends): the caller's, or the clock's.
pub fn clocked(config: &PlanConfig) -> PlanConfig {
    let mut config = config.clone();
    config.now.get_or_insert_with(SystemTime::now);
    config
}

/// Failover readiness beside a plan that is not a failover itself: the failover the same
/// readings would give, with every guard `ferry plan --failover` would apply.
pub fn readiness(
    spec: &Spec,
    snapshot: &Snapshot,
    rules: &RuleBook,
    options: &PlanOptions,
    plan: &Plan,
) -> Option<Readiness> {
    if plan.failover.is_some() {
        return None;
    }
    // The failover's time to recovery from the drills' figures too, as `ferry plan
    // --failover` shows it.
    let measured_recovery = std::sync::Mutex::new(None);
    let mut readiness = ferry_plan::readiness_with(
        spec,
        snapshot,
        rules,
        &clocked(&options.config),
        &|failover| {
            *measured_recovery
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                measured(spec, failover.clone()).recovery_seconds;
            ferry_providers::check_plan(failover, snapshot, options.force)
        },
    )?;
    if readiness.recovery_seconds.is_some()
        && let Some(seconds) = measured_recovery
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    {
        readiness.recovery_seconds = Some(seconds);
    }
    Some(readiness)
}

/// A plan to save: with its spec's absolute path (so that it applies from any folder), the
/// variables it was loaded with, and who made it and when, for the reviewer.
pub fn saved_plan(
    spec: &Spec,
    plan: Plan,
    snapshot: &Snapshot,
    spec_path: &Path,
    variables: &std::collections::BTreeMap<String, String>,
) -> Result<SavedPlan, OpsError> {
    let author = format!(
        "{}@{}",
        ferry_state::lock::this_user(),
        ferry_state::lock::this_host()
    );
    let spec_path = std::path::absolute(spec_path).map_err(|error| {
        OpsError::StateSetup(format!(
            "cannot make {} absolute: {error}",
            spec_path.display()
        ))
    })?;
    Ok(SavedPlan::new(&spec.deployment.name, plan, snapshot)
        .for_spec(&spec_path, variables)
        .made_by(&author, &ferry_core::time::format_time(SystemTime::now())))
}

impl Deployment {
    /// Plans from `snapshot` with every guard, with failover readiness beside a plan that is not
    /// a failover.
    pub fn plan(&self, snapshot: &Snapshot, options: &PlanOptions) -> Result<Plan, OpsError> {
        let mut planned = plan(&self.spec, snapshot, &self.rules, options)?;
        planned.readiness = readiness(&self.spec, snapshot, &self.rules, options, &planned);
        Ok(planned)
    }
}
