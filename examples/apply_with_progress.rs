//! ferry as a library: build data100 in an in-memory world with a progress handler of our
//! own, make the API server fail, and apply the failover the planner computes.
//!
//! `cargo run --example apply_with_progress`

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use ferry_apply::{ApplyConfig, ApplyControl, Event, EventKind, Store};
use ferry_core::Kind;
use ferry_observe::ObserveConfig;
use ferry_plan::PlanConfig;
use ferry_spec::LoadOptions;
use ferry_state::StateFile;
use ferry_world::{World, memory_providers};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    let rules = ferry_providers::rule_book();
    let spec = ferry_spec::load(&root, &LoadOptions::default(), &rules)
        .map_err(|errors| anyhow::anyhow!("{}", errors.render(false)))?;
    let world = World::simulating(&rules);
    let providers = memory_providers(&world, |provider| provider);
    let mut store = Store::in_memory(StateFile::default());

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
        let snapshot = ferry_observe::observe(
            &spec,
            &rules,
            &store.state,
            &providers,
            &ObserveConfig::default(),
        )
        .await?;
        let plan = ferry_plan::plan(&spec, &snapshot, &rules, &PlanConfig::default())?;
        println!("{round}: {} steps", plan.steps.len());
        let report = ferry_apply::apply(
            &plan,
            &providers,
            // The values the spec read from the environment, to open the plan's sealed ones.
            &ApplyConfig {
                secrets: spec.secrets.clone(),
                ..ApplyConfig::default()
            },
            &mut store,
            &ApplyControl::new(),
            &on_event,
        )
        .await?;
        anyhow::ensure!(
            report.succeeded(),
            "the apply failed: {}",
            report.counts().describe()
        );
        // The engine made the plan's target generation the active one.
        // As on the day: ARM still calls the cluster fine, but its API server stops answering.
        let cluster = ferry_core::ResourceAddress::new(Kind::AksCluster, "hub")
            .at(Some(store.state.active_generation));
        world.set_unhealthy(cluster, Some("GET /readyz timed out after 5s".into()));
    }
    println!(
        "{} steps finished; generation {} serves",
        finished.load(Ordering::Relaxed),
        store.state.active_generation
    );
    Ok(())
}
