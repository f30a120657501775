//! The plain progress log (`ferry apply` when stderr is not a terminal) of a small apply on the
//! simulated world, on tokio's paused clock.

use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, Store, apply};
use ferry_cli::progress;
use ferry_testkit::random::{plan_of, step};
use ferry_world::{Behaviour, World, memory_providers};

/// Applies `plan` and returns the report with the plain log its events made.
async fn plain_log(
    plan: &ferry_core::Plan,
    providers: &ferry_core::Providers,
) -> (ferry_apply::ApplyReport, String) {
    let renderer = progress::PlainProgress::new(Vec::new());
    renderer.tracker().set_plan(plan);
    let report = apply(
        plan,
        providers,
        &ApplyConfig::default(),
        &mut Store::default(),
        &ApplyControl::new(),
        &|event| renderer.handle(event),
    )
    .await
    .unwrap();
    (report, String::from_utf8(renderer.into_inner()).unwrap())
}

#[tokio::test(start_paused = true)]
async fn the_plain_progress_log_of_a_small_apply() {
    let plan = plan_of(vec![
        step("resource_group.ferry@g2:create", 20, &[]),
        step(
            "aks_cluster.hub@g2:create",
            480,
            &["resource_group.ferry@g2:create"],
        ),
        step("vm.nfs@g2:create", 90, &["resource_group.ferry@g2:create"]),
        step("disk.home0:attach", 30, &["vm.nfs@g2:create"]),
        step("zfs_pool.home:import", 10, &["disk.home0:attach"]),
        step(
            "hook.hub@g2:run",
            60,
            &["aks_cluster.hub@g2:create", "zfs_pool.home:import"],
        ),
    ]);
    let world = World::new();
    let providers = memory_providers(&world, |provider| {
        provider
            .behaviour(Behaviour::from_estimates())
            .step(
                "disk.home0:attach",
                Behaviour {
                    transient_failures: 1,
                    retry_after: Some(Duration::from_secs(15)),
                    ..Behaviour::from_estimates()
                },
            )
            .step(
                "zfs_pool.home:import",
                Behaviour {
                    progress: vec!["zpool import -d /dev/disk/azure home".to_owned()],
                    fail: Some("pool home was last used by another system".to_owned()),
                    ..Behaviour::from_estimates()
                },
            )
    });
    let (report, log) = plain_log(&plan, &providers).await;
    assert_eq!(report.counts().failed, 1);
    insta::assert_snapshot!(log);
}

/// A failover: the moment the service is back (every step but retirement done) is said once,
/// measured against the plan's estimate, and each line after it counts from it.
#[tokio::test(start_paused = true)]
async fn the_plain_progress_of_a_failover_says_when_the_service_is_back() {
    let mut plan = plan_of(vec![
        step("vm.nfs@g1:fence", 60, &[]),
        step("aks_cluster.hub@g2:create", 480, &[]),
        step(
            "hook.hub@g2:run",
            60,
            &["aks_cluster.hub@g2:create", "vm.nfs@g1:fence"],
        ),
        step("aks_cluster.hub@g1:retire", 300, &["hook.hub@g2:run"]),
    ]);
    plan.recovery_seconds = Some(540);
    let world = World::new();
    let providers = memory_providers(&world, |provider| {
        provider.behaviour(Behaviour::from_estimates()).step(
            "aks_cluster.hub@g2:create",
            Behaviour {
                // Two minutes late, as a cluster create often is.
                estimate_scale: Some(1.25),
                ..Behaviour::from_estimates()
            },
        )
    });
    let (report, log) = plain_log(&plan, &providers).await;
    assert!(report.succeeded(), "{report:?}");
    insta::assert_snapshot!(log);
}
