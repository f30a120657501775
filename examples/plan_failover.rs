//! ferry as a library: load the data100 spec, plan from a snapshot in which the AKS API server
//! does not answer, and walk the failover plan step by step.
//!
//! `cargo run --example plan_failover`

use std::path::Path;

use ferry_core::Snapshot;
use ferry_plan::PlanConfig;
use ferry_spec::LoadOptions;

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let rules = ferry_providers::rule_book();
    let spec = ferry_spec::load(&root, &LoadOptions::default(), &rules)
        .map_err(|errors| anyhow::anyhow!("{}", errors.render(false)))?;
    let snapshot: Snapshot = serde_json::from_str(&std::fs::read_to_string(
        root.join("observed-apiserver-down.json"),
    )?)?;

    let plan = ferry_plan::plan(&spec, &snapshot, &rules, &PlanConfig::default())?;
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
