//! Laws of the apply engine on random DAGs: every step starts only after all of its
//! predecessors ended, and with a provider that never fails, everything succeeds.

use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, Store, apply};
use ferry_testkit::random::{RandomPlan, random_plan};
use ferry_world::{Behaviour, World, memory_providers};
use proptest::prelude::*;

fn check(shape: RandomPlan, parallelism: usize, limit: usize) {
    let plan = random_plan(&shape);
    let world = World::new();
    let providers = memory_providers(&world, |provider| {
        provider
            .behaviour(Behaviour::from_estimates())
            .concurrency(limit)
    });
    let config = ApplyConfig {
        parallelism,
        ..ApplyConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let report = runtime
        .block_on(apply(
            &plan,
            &providers,
            &config,
            &mut Store::default(),
            &ApplyControl::new(),
            &|_| {},
        ))
        .unwrap();
    assert!(report.succeeded(), "{:?}", report.counts());
    let calls = world.calls();
    assert_eq!(calls.len(), plan.steps.len(), "each step ran exactly once");
    for step in &plan.steps {
        let call = calls.iter().find(|call| call.step == step.id).unwrap();
        for predecessor in &step.after {
            let before = calls.iter().find(|call| &call.step == predecessor).unwrap();
            assert!(before.ended_sequence.unwrap() < call.started_sequence);
            assert!(before.ended.unwrap() <= call.started);
        }
    }
    assert!(world.max_running() <= parallelism);
    // With unbounded slots the makespan is exactly the critical path.
    if parallelism >= plan.steps.len() && limit >= plan.steps.len() {
        assert_eq!(
            report.elapsed,
            Duration::from_secs(plan.estimated_seconds),
            "makespan equals the critical path"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn steps_start_after_their_predecessors_and_all_succeed(
        seed in any::<u64>(),
        steps in 1usize..80,
        max_predecessors in 0usize..5,
        window in 1usize..30,
        parallelism in prop_oneof![1usize..12, Just(1000)],
        limit in prop_oneof![1usize..9, Just(1000)],
    ) {
        check(
            RandomPlan { seed, steps, max_predecessors, window, max_estimate_seconds: 300 },
            parallelism,
            limit,
        );
    }
}
