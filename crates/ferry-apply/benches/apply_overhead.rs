//! Engine overhead: applying 10,000 zero-latency steps through the memory provider, so that
//! what is measured is scheduling, resolution of `${...}`, bookkeeping and events, not I/O.
//!
//! Run with `cargo bench -p ferry-apply --bench apply_overhead`.

use ferry_apply::{ApplyConfig, ApplyControl, Store, apply};
use ferry_core::{Plan, Providers};
use ferry_testkit::random::{RandomPlan, random_plan, wide_plan};
use ferry_world::{World, memory_providers};

fn main() {
    divan::main();
}

const STEPS: usize = 10_000;

fn run(plan: &Plan, providers: &Providers, parallelism: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let config = ApplyConfig {
        parallelism,
        ..ApplyConfig::default()
    };
    let report = runtime
        .block_on(apply(
            plan,
            providers,
            &config,
            &mut Store::default(),
            &ApplyControl::new(),
            &|_| {},
        ))
        .unwrap();
    assert!(report.succeeded());
}

fn providers() -> Providers {
    memory_providers(&World::new(), |provider| provider.concurrency(1_000))
}

/// 10,000 independent steps of mixed kinds.
#[divan::bench(args = [10, 1_000])]
fn wide_10k(bencher: divan::Bencher, parallelism: usize) {
    let plan = wide_plan(STEPS, 0);
    bencher
        .with_inputs(providers)
        .bench_local_refs(|providers| run(&plan, providers, parallelism));
}

/// 10,000 steps with up to 3 predecessors each among the previous 100, every edge carrying a
/// `${...}` input to resolve.
#[divan::bench(args = [10, 1_000])]
fn random_10k(bencher: divan::Bencher, parallelism: usize) {
    let plan = random_plan(&RandomPlan {
        seed: 7,
        steps: STEPS,
        max_predecessors: 3,
        window: 100,
        max_estimate_seconds: 600,
    });
    bencher
        .with_inputs(providers)
        .bench_local_refs(|providers| run(&plan, providers, parallelism));
}

/// 1,000 independent steps with the journal and state on disk: each step costs two fsynced
/// journal appends and an atomic save of the whole state file, which dominate.
#[divan::bench(sample_count = 5)]
fn wide_1k_journaled(bencher: divan::Bencher) {
    let plan = wide_plan(1_000, 0);
    bencher
        .with_inputs(|| {
            let directory = tempfile::tempdir().unwrap();
            let store =
                Store::lock_and_open(&ferry_state::StateDir::new(directory.path()), "bench")
                    .unwrap();
            (directory, store, providers())
        })
        .bench_local_refs(|(_directory, store, providers)| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let report = runtime
                .block_on(apply(
                    &plan,
                    providers,
                    &ApplyConfig::default(),
                    store,
                    &ApplyControl::new(),
                    &|_| {},
                ))
                .unwrap();
            assert!(report.succeeded());
        });
}
