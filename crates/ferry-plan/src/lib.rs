//! The planner: given a spec, a snapshot of observations and the kinds' rules, the ordered
//! steps that take the world to the spec, a failover when one is due.
//!
//! Pure by construction: no I/O, no clock, no randomness. The same inputs give the same plan,
//! byte for byte, which is what lets a saved plan be checked and a plan be reviewed.

mod build;
pub mod drill;
pub mod measured;
pub mod order;
pub mod outcome;
mod readiness;
mod readings;
pub mod render;
/// Spec fields to an instance's attributes: it lives with the spec, re-exported for old paths.
pub use ferry_spec::resolve;
mod safety;
pub mod saved;
pub mod world;

use std::fmt;

use ferry_core::{InstanceAddress, Plan, RuleBook, Snapshot};
use ferry_spec::Spec;

pub use outcome::{Finding, Severity, Verdict};
pub use readiness::{readiness, readiness_with};
pub use saved::{SavedPlan, StaleObservation};

/// Whether to plan a failover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailoverRequest {
    /// As the spec's failover policy says: with `mode = "automatic"`, when a trigger reads
    /// unhealthy.
    #[default]
    Policy,
    /// `--failover`: a planned failover (a move, or a drill's failover onto its own standby),
    /// whatever the readings say.
    Force,
    /// `--no-failover`: only reconcile the active generation.
    Never,
}

/// How to plan.
#[derive(Debug, Clone, Default)]
pub struct PlanConfig {
    pub failover: FailoverRequest,
    /// `--allow-destroy`: the command-line half of the two-key opt-in for deleting a stateful
    /// resource (the other half is `allow_destroy = true` in the spec).
    pub allow_destroy: bool,
    /// `--replace ADDRESS`: replaceable resources to build again although they match the spec
    /// (Terraform's `-replace`). Refused for stateful kinds and for what a stateful resource is
    /// placed on; moot in a failover, which builds every replaceable resource anew.
    pub replace: std::collections::BTreeSet<ferry_core::ResourceAddress>,
    /// `--retire-old`: when the generation a failover leaves is retired, over the spec's
    /// `[failover] retire_old`.
    pub retire_old: Option<ferry_core::RetireOld>,
    /// The time the plan is made at, for retentions that end at a time: the planner reads no
    /// clock. Without it, such a generation is kept.
    pub now: Option<std::time::SystemTime>,
}

/// Something that stops a plan from being made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanError {
    pub address: Option<InstanceAddress>,
    pub message: String,
    pub help: Option<String>,
}

impl PlanError {
    fn new(address: Option<InstanceAddress>, message: impl Into<String>) -> Self {
        Self {
            address,
            message: message.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl fmt::Display for PlanError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            Some(address) => write!(f, "{address}: {}", self.message)?,
            None => f.write_str(&self.message)?,
        }
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Every reason the plan could not be made, all at once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PlanErrors(pub Vec<PlanError>);

impl fmt::Display for PlanErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for error in &self.0 {
            writeln!(f, "error: {error}")?;
        }
        let count = self.0.len();
        write!(
            f,
            "no plan: {count} problem{} to fix first",
            if count == 1 { "" } else { "s" }
        )
    }
}

/// Plans the changes that take the observed world to the spec.
pub fn plan(
    spec: &Spec,
    snapshot: &Snapshot,
    rules: &RuleBook,
    config: &PlanConfig,
) -> Result<Plan, PlanErrors> {
    safety::check_spec(spec).map_err(PlanErrors)?;
    // Secrets: the planner compares plain values, and what leaves it is sealed
    // (`${env.NAME@sha256:…}`), so that no plan, JSON or saved plan holds one.
    let unsealed;
    let snapshot = if spec.secrets.is_empty() {
        snapshot
    } else {
        unsealed = spec.secrets.unseal_snapshot(snapshot);
        &unsealed
    };
    // The world, not the state, says which generation serves and whether a failover is under
    // way: a snapshot made with a lost or stale state is corrected before anything is planned.
    let reconstruction = world::reconstruct(snapshot, rules, &world::not_evidence(spec, snapshot))
        .map_err(|error| PlanErrors(vec![error]))?;
    let corrected;
    let snapshot = if reconstruction.active_generation == snapshot.active_generation
        && reconstruction.failover_in_progress == snapshot.failover_in_progress
    {
        snapshot
    } else {
        corrected = world::corrected(snapshot, &reconstruction);
        &corrected
    };
    let built = build::build(spec, snapshot, rules, config)?;
    let mut plan = order::finish(built)?;
    if let Some(note) = reconstruction.note {
        plan.notes.insert(0, note);
    }
    safety::check(&plan, snapshot, rules, config).map_err(PlanErrors)?;
    spec.secrets.seal_plan(&mut plan);
    Ok(plan)
}
