//! ferry's failover drill as a library, on the simulated world: build data100, then rehearse
//! its failover on copies with `Deployment::drill`, print what was measured against the
//! estimates, and check that the drill left nothing and production is as it was.
//!
//! `cargo run --example drill_on_simulated_world`

#[path = "copy_spec.rs"]
mod copy_spec;

use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl};
use ferry_ops::{
    Applied, ApplyRequest, Approval, Deployment, DrillMode, DrillRequest, PlanOptions, PlanSource,
    WorldSource,
};
use ferry_plan::drill::DrillId;
use ferry_spec::LoadOptions;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    let spec_path = copy_spec::data100_in(folder.path())?;
    let world = folder.path().join("world.json");
    let deployment = Deployment::load(
        &spec_path,
        &LoadOptions::default(),
        WorldSource::Simulated {
            path: world.clone(),
            new: true,
            // Each simulated step takes a thousandth of its estimate: a 40-minute failover
            // in about 2.4 seconds, so that the drill has something to measure.
            time_scale: 0.001,
        },
    )?;
    let built = deployment
        .apply(ApplyRequest {
            plan: PlanSource::Fresh(PlanOptions::default()),
            lock_timeout: Duration::ZERO,
            config: ApplyConfig::default(),
            control: &ApplyControl::new(),
            on_event: &|_| {},
            approve: &mut |_| Ok(Approval::Approved),
        })
        .await?;
    anyhow::ensure!(
        matches!(&built, Applied::Ran { report, .. } if report.succeeded()),
        "data100 was not built: {built:?}"
    );
    let before = std::fs::read(&world)?;

    let report = deployment
        .drill(DrillRequest {
            mode: DrillMode::Run { keep: false },
            id: Some(DrillId::new("example")?),
            lock_timeout: Duration::ZERO,
            config: ApplyConfig::default(),
            control: &ApplyControl::new(),
            on_event: &|_| {},
            // The drill's plan, then its clean-up's.
            on_plan: &|plan| println!("applying a plan of {} steps", plan.steps.len()),
            drill_providers: None,
            tagged_lists: None,
        })
        .await?;
    for step in &report.steps {
        let measured = step.measured.map_or_else(
            || "-".to_owned(),
            |time| format!("{:.3}s", time.as_secs_f64()),
        );
        println!(
            "  {:32} estimate {:>5}s, measured {measured} (scaled by 0.001)",
            step.id.to_string(),
            step.estimate_seconds
        );
    }
    let cleanup = report
        .cleanup
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("the drill was kept"))?;
    println!(
        "time to recovery {:?}; {} instances deleted, {} left; production untouched: {}",
        report.measured_recovery,
        cleanup.deleted.len(),
        cleanup.leftovers.len(),
        report.production_changes.is_empty()
    );
    anyhow::ensure!(report.ok(), "the drill did not end well: {report:#?}");
    anyhow::ensure!(
        std::fs::read(&world)? == before,
        "production's world changed"
    );
    Ok(())
}
