//! Makespan of the apply engine against the critical path and two simpler schedulers, on
//! synthetic DAGs whose steps take exactly their estimates.
//!
//! Sleeps run on tokio's paused clock (auto-advancing), so a plan of hours runs in
//! milliseconds and the makespan printed is the virtual elapsed time, exact to the tick.
//!
//! Run with `cargo run --release -p ferry-apply --example makespan`.

use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, Store, apply};
use ferry_core::{Action, InstanceAddress, Plan, Providers, Step, StepId};
use ferry_testkit::baseline::{run_in_waves, run_sequentially};
use ferry_testkit::random::{RandomPlan, plan_of, random_plan};
use ferry_testkit::{Behaviour, World, memory_providers};

fn paused<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
        .block_on(future)
}

fn providers(limit: usize) -> Providers {
    memory_providers(&World::new(), |provider| {
        provider
            .behaviour(Behaviour::from_estimates())
            .concurrency(limit)
    })
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

/// The data100 failover, step by step, with the estimates of a real Azure afternoon.
fn failover_plan() -> Plan {
    let step = |id: &str, seconds: u64, after: &[&str]| {
        let (instance, action) = id.split_once(':').unwrap();
        let address: InstanceAddress = instance.parse().unwrap();
        let action: Action = serde_json::from_value(action.into()).unwrap();
        Step {
            id: StepId::new(&address, action),
            address,
            action,
            reason: "failover".into(),
            after: after.iter().map(|a| StepId((*a).into())).collect(),
            estimate_seconds: seconds,
            changes: Vec::new(),
            inputs: Default::default(),
            warning: None,
        }
    };
    plan_of(vec![
        step("resource_group.hub@g2:create", 15, &[]),
        step("vnet.hub@g2:create", 30, &["resource_group.hub@g2:create"]),
        step(
            "public_ip.ingress@g2:create",
            20,
            &["resource_group.hub@g2:create"],
        ),
        step("aks_cluster.hub@g2:create", 480, &["vnet.hub@g2:create"]),
        step("vm.nfs@g2:create", 120, &["vnet.hub@g2:create"]),
        step("vm.nfs@g1:fence", 90, &[]),
        step("disk.home0:detach", 30, &["vm.nfs@g1:fence"]),
        step("disk.home1:detach", 30, &["vm.nfs@g1:fence"]),
        step(
            "disk.home0:move",
            90,
            &["disk.home0:detach", "resource_group.hub@g2:create"],
        ),
        step(
            "disk.home1:move",
            90,
            &["disk.home1:detach", "resource_group.hub@g2:create"],
        ),
        step(
            "disk.home0:attach",
            30,
            &["disk.home0:move", "vm.nfs@g2:create"],
        ),
        step(
            "disk.home1:attach",
            30,
            &["disk.home1:move", "vm.nfs@g2:create"],
        ),
        step(
            "zfs_pool.home:import",
            20,
            &["disk.home0:attach", "disk.home1:attach"],
        ),
        step(
            "hook.staging@g2:run",
            180,
            &["aks_cluster.hub@g2:create", "zfs_pool.home:import"],
        ),
        step(
            "dns_record.staging:update",
            10,
            &["hook.staging@g2:run", "public_ip.ingress@g2:create"],
        ),
        step("hook.prod@g2:run", 180, &["hook.staging@g2:run"]),
        step(
            "dns_record.prod:update",
            10,
            &["hook.prod@g2:run", "public_ip.ingress@g2:create"],
        ),
        step("check.prod_tls:wait", 120, &["dns_record.prod:update"]),
        step("aks_cluster.hub@g1:retire", 300, &["check.prod_tls:wait"]),
        step("vm.nfs@g1:retire", 120, &["check.prod_tls:wait"]),
    ])
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
    // (name, plan, global parallelism, per-provider limit)
    let cases = [
        ("data100 failover (20 steps)", failover_plan(), 10, 8),
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
