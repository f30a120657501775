//! Makespan of the apply engine against the critical path and two simpler schedulers, on
//! synthetic DAGs whose steps take exactly their estimates.
//!
//! Sleeps run on tokio's paused clock (auto-advancing), so a plan of hours runs in
//! milliseconds and the makespan printed is the virtual elapsed time, exact to the tick.
//!
//! Run with `cargo run --release -p ferry-apply --example makespan`.

use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, Store, apply};
use ferry_core::{Plan, Providers};
use ferry_testkit::baseline::{run_in_waves, run_sequentially};
use ferry_testkit::random::{RandomPlan, random_plan};
use ferry_world::{Behaviour, World, memory_providers};

fn paused<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}

/// Each kind's simulated effect (a VM's address, a pool's export) is there, so that the
/// failover's inputs that wait on outputs resolve as they do on Azure.
fn providers(limit: usize) -> Providers {
    memory_providers(
        &World::simulating(&ferry_providers::rule_book()),
        |provider| {
            provider
                .behaviour(Behaviour::from_estimates())
                .concurrency(limit)
        },
    )
}

fn engine_makespan(plan: &Plan, parallelism: usize, limit: usize) -> Duration {
    let providers = providers(limit);
    let config = ApplyConfig {
        parallelism,
        step_timeout: Duration::from_secs(24 * 3600),
        ..ApplyConfig::default()
    };
    let report = paused(apply(
        plan,
        &providers,
        &config,
        &mut Store::default(),
        &ApplyControl::new(),
        &|_| {},
    ))
    .unwrap();
    assert!(report.succeeded());
    report.elapsed
}

/// The data100 failover exactly as the planner makes it from the shipped snapshot in which the
/// AKS API server does not answer, with the kinds' estimates of a real Azure afternoon.
fn failover_plan() -> Plan {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../specs/data100");
    let rules = ferry_providers::rule_book();
    let spec = ferry_spec::load(&root, &ferry_spec::LoadOptions::default(), &rules)
        .unwrap_or_else(|errors| panic!("{}", errors.render(false)));
    let snapshot = serde_json::from_str(
        &std::fs::read_to_string(root.join("observed-apiserver-down.json")).unwrap(),
    )
    .unwrap();
    ferry_plan::plan(&spec, &snapshot, &rules, &ferry_plan::PlanConfig::default()).unwrap()
}

fn main() {
    let random = |seed, steps, window| {
        random_plan(&RandomPlan {
            seed,
            steps,
            max_predecessors: 3,
            window,
            max_estimate_seconds: 600,
        })
    };
    let failover = failover_plan();
    let failover_name = format!("data100 failover ({} steps, planned)", failover.steps.len());
    // (name, plan, global parallelism, per-provider limit)
    let cases = [
        (failover_name.as_str(), failover, 10, 8),
        ("random 200, window 20", random(1, 200, 20), 10_000, 10_000),
        ("random 200, window 20", random(1, 200, 20), 10, 8),
        (
            "random 1000, window 50",
            random(2, 1000, 50),
            10_000,
            10_000,
        ),
        ("random 1000, window 50", random(2, 1000, 50), 50, 50),
        (
            "random 1000, window 200",
            random(3, 1000, 200),
            10_000,
            10_000,
        ),
    ];
    println!(
        "| DAG | parallelism (global / per provider) | critical path | event-driven | waves | sequential | event-driven / critical path | waves / event-driven | sequential / event-driven |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for (name, plan, parallelism, limit) in cases {
        let critical = plan.estimated_seconds as f64;
        let engine = engine_makespan(&plan, parallelism, limit).as_secs_f64();
        let waves = paused(run_in_waves(&plan, &providers(limit), parallelism)).as_secs_f64();
        let sequential = paused(run_sequentially(&plan, &providers(limit))).as_secs_f64();
        let limits = if parallelism >= 10_000 {
            "unbounded".to_owned()
        } else {
            format!("{parallelism} / {limit}")
        };
        println!(
            "| {name} | {limits} | {critical:.0} s | {engine:.0} s | {waves:.0} s | {sequential:.0} s | {:.3} | {:.2} | {:.2} |",
            engine / critical,
            waves / engine,
            sequential / engine,
        );
    }
}
