//! ferry as a library: open the data100 deployment, plan (with every guard `ferry plan`
//! applies) from a snapshot in which the AKS API server does not answer, and walk the failover
//! plan step by step.
//!
//! `cargo run --example plan_failover`

use std::path::Path;

use ferry_ops::{Deployment, PlanOptions, WorldSource};
use ferry_spec::LoadOptions;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    // Planning from a snapshot reads nothing else: no state, no provider is touched.
    let deployment = Deployment::load(&root, &LoadOptions::default(), WorldSource::Live)?;
    let snapshot = ferry_ops::read_snapshot(&root.join("observed-apiserver-down.json"))?;

    let plan = deployment.plan(&snapshot, &PlanOptions::default())?;
    if let Some(failover) = &plan.failover {
        println!(
            "failover from generation {} to {}: {}",
            failover.from_generation, failover.to_generation, failover.trigger
        );
    }
    let starts = ferry_plan::order::earliest_starts(&plan);
    for step in &plan.steps {
        println!(
            "t+{:>5}s  {:<7} {:<26} {}",
            starts[&step.id],
            step.action.to_string(),
            step.address.to_string(),
            step.reason
        );
    }
    println!(
        "{} steps; service back after about {} minutes",
        plan.steps.len(),
        plan.recovery_seconds.unwrap_or(plan.estimated_seconds) / 60
    );
    Ok(())
}
