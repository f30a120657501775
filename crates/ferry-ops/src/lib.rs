//! ferry's operations as a library: what `ferry plan`, `ferry apply`, `ferry observe`,
//! `ferry force-unlock` and `ferry watch` do, without their terminal.
//!
//! A [`Deployment`] is a loaded spec with its state backend (the local folder or an Azure
//! blob, from the spec's `[state]`) and its world (the real providers, or a simulated world
//! kept in a file). On it:
//! - [`Deployment::observe`] reads every instance the plan needs;
//! - [`Deployment::plan`] (and [`plan`] for a snapshot read elsewhere) plans with every guard,
//!   the planner's safety invariants and the providers' own (DNS's 30 % share of a zone);
//! - [`Deployment::apply`] takes the lock (it is not optional here), reads the world, refuses a
//!   saved plan whose readings changed, asks the caller to approve, applies, saves the world and
//!   releases the lock: a program that embeds ferry gets the CLI's guarantees;
//! - [`Deployment::force_unlock`] breaks a lock whose holder is gone;
//! - [`Deployment::state_view`] shows what the state knows, and [`Deployment::forget`] makes it
//!   forget an instance, under the lock;
//! - [`Deployment::drill`] rehearses the failover on copies in a deployment of its own (its
//!   own state, lock and, in a simulated world, file), measures it and removes it;
//! - [`Deployment::replicate`] runs one replication round for each pool of a hot standby;
//! - [`watch::Watcher`] runs one round of `ferry watch`: readings, damped alerts delivered, the
//!   failover plan written, failover readiness followed.
//!
//! What a terminal shows (progress lines, colour, confirmation prompts, exit codes) stays in the
//! CLI: this crate reports through return values, events and callbacks.

mod apply;
mod deployment;
pub mod drill;
mod error;
mod plan;
mod replicate;
mod state;
mod timeline;
pub mod watch;

pub use apply::{Applied, ApplyRequest, Approval, PlanSource};
pub use deployment::{Deployment, WorldSource, read_snapshot, state_backend};
pub use drill::{
    Cleanup, DrillMode, DrillReport, DrillRequest, MeasuredStep, Stage, TaggedLists,
    drill_world_path, measured_path, read_measured,
};
pub use error::OpsError;
pub use plan::{PlanOptions, plan, readiness, saved_plan};
pub use replicate::ReplicationRound;
pub use state::{Forgotten, InstanceView, KeptView, Role, STATE_VIEW_FORMAT_VERSION, StateView};
pub use timeline::{AppliedTimeline, applied_timeline};

/// The rules of every kind ferry ships, for loading a spec before opening it.
pub fn rule_book() -> ferry_core::RuleBook {
    ferry_providers::rule_book()
}

/// Whether a step's failure says to fix something first (a quota raised by a person), rather
/// than to resume at once: the advice after a failed apply depends on it.
pub fn needs_fixing_first(failure: &str) -> bool {
    failure.contains(ferry_arm::error::FIX_FIRST)
}
