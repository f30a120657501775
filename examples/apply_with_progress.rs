//! ferry as a library: build data100 in a simulated world with a progress handler of our own,
//! make the API server fail, and apply the failover the planner computes, each apply under the
//! deployment's lock, as `ferry apply` does.
//!
//! `cargo run --example apply_with_progress`

#[path = "copy_spec.rs"]
mod copy_spec;

use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_apply::{ApplyConfig, ApplyControl, Event, EventKind};
use ferry_core::Kind;
use ferry_ops::{
    Applied, ApplyRequest, Approval, Deployment, PlanOptions, PlanSource, WorldSource,
};
use ferry_spec::LoadOptions;
use ferry_world::{World, memory_providers};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    let spec = copy_spec::data100_in(folder.path())?;
    let world = World::simulating(&ferry_ops::rule_book());
    let providers = memory_providers(&world, |provider| provider);
    let deployment = Deployment::load(
        &spec,
        &LoadOptions::default(),
        WorldSource::Providers(providers),
    )?;

    // Our own progress handler: one line per finished step, and a count of them.
    let finished = AtomicUsize::new(0);
    let on_event = |event: &Event| match &event.kind {
        EventKind::StepSucceeded { step, .. } => {
            finished.fetch_add(1, Ordering::Relaxed);
            println!("  done    {step}");
        }
        EventKind::StepFailed { step, error } => println!("  FAILED  {step}: {error}"),
        _ => {}
    };

    for round in ["build generation 1", "fail over"] {
        let mut approve = |plan: &ferry_core::Plan| {
            println!("{round}: {} steps", plan.steps.len());
            Ok(Approval::Approved)
        };
        let applied = deployment
            .apply(ApplyRequest {
                plan: PlanSource::Fresh(PlanOptions::default()),
                lock_timeout: std::time::Duration::ZERO,
                config: ApplyConfig::default(),
                control: &ApplyControl::new(),
                on_event: &on_event,
                approve: &mut approve,
            })
            .await?;
        let Applied::Ran {
            report,
            active_generation,
            ..
        } = applied
        else {
            anyhow::bail!("{round}: nothing was applied: {applied:?}");
        };
        anyhow::ensure!(
            report.succeeded(),
            "the apply failed: {}",
            report.counts().describe()
        );
        // As on the day: ARM still calls the cluster fine, but its API server stops answering.
        let cluster =
            ferry_core::ResourceAddress::new(Kind::AksCluster, "hub").at(Some(active_generation));
        world.set_unhealthy(cluster, Some("GET /readyz timed out after 5s".into()));
    }
    println!(
        "{} steps finished; generation {} serves",
        finished.load(Ordering::Relaxed),
        deployment.state()?.active_generation
    );
    Ok(())
}
