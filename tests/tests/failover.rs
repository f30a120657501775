//! The whole loop through the library: observe, plan, apply, observe again, on the simulated
//! world, for data100 and for generated specs, with faults in the middle.

use std::path::Path;

use ferry_apply::{ApplyConfig, ApplyControl, ApplyReport, StepStatus, Store};
use ferry_core::{Kind, Plan, Providers, RuleBook, Snapshot};
use ferry_observe::ObserveConfig;
use ferry_plan::{FailoverRequest, PlanConfig};
use ferry_spec::{LoadOptions, Spec};
use ferry_state::StateFile;
use ferry_world::{Behaviour, World, memory_providers};
use proptest::prelude::*;

struct Deployment {
    spec: Spec,
    rules: RuleBook,
    world: World,
    store: Store,
}

impl Deployment {
    fn new(spec: Spec) -> Self {
        Self {
            spec,
            rules: ferry_providers::rule_book(),
            world: World::simulating(&ferry_providers::rule_book()),
            store: Store::in_memory(StateFile::default()),
        }
    }

    fn providers(&self) -> Providers {
        memory_providers(&self.world, |provider| provider)
    }

    async fn observe(&self, providers: &Providers) -> Snapshot {
        ferry_observe::observe(
            &self.spec,
            &self.rules,
            &self.store.state,
            providers,
            &ObserveConfig::default(),
        )
        .await
        .unwrap()
    }

    async fn plan(&self, config: &PlanConfig) -> Plan {
        let snapshot = self.observe(&self.providers()).await;
        ferry_plan::plan(&self.spec, &snapshot, &self.rules, config).unwrap()
    }

    /// Applies `plan`; on success the plan's generation becomes the active one, as the CLI does.
    async fn apply(&mut self, plan: &Plan, providers: &Providers) -> ApplyReport {
        ferry_apply::apply(
            plan,
            providers,
            &ApplyConfig::default(),
            &mut self.store,
            &ApplyControl::new(),
            &|_| {},
        )
        .await
        .unwrap()
    }

    async fn converge(&mut self, config: &PlanConfig) -> Plan {
        let plan = self.plan(config).await;
        let providers = self.providers();
        let report = self.apply(&plan, &providers).await;
        assert!(report.succeeded(), "{}", report.counts().describe());
        plan
    }

    fn break_api_server(&self) {
        let cluster = ferry_core::ResourceAddress::new(Kind::AksCluster, "hub")
            .at(Some(self.store.state.active_generation));
        self.world
            .set_unhealthy(cluster, Some("GET /readyz timed out after 5s".into()));
    }
}

fn data100() -> Spec {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../specs/data100");
    ferry_spec::load(
        &root,
        &LoadOptions::default(),
        &ferry_providers::rule_book(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)))
}

#[tokio::test]
async fn data100_builds_fails_over_and_fails_back() {
    let mut deployment = Deployment::new(data100());
    deployment.converge(&PlanConfig::default()).await;
    assert!(deployment.plan(&PlanConfig::default()).await.is_empty());

    deployment.break_api_server();
    let failover = deployment.converge(&PlanConfig::default()).await;
    assert_eq!(failover.failover.as_ref().map(|f| f.to_generation), Some(2));
    assert!(deployment.plan(&PlanConfig::default()).await.is_empty());

    // Failing back is the same operation again: a third generation.
    let force = PlanConfig {
        failover: FailoverRequest::Force,
        ..PlanConfig::default()
    };
    let back = deployment.converge(&force).await;
    assert_eq!(back.failover.as_ref().map(|f| f.to_generation), Some(3));
    assert!(deployment.plan(&PlanConfig::default()).await.is_empty());
    let disks = deployment.world.instances();
    let home0 = &disks[&"disk.home0".parse().unwrap()];
    assert_eq!(home0["vm"], "vm.nfs@g3");
    assert_eq!(home0["resource_group"], "resource_group.main@g3");
}

#[tokio::test]
async fn a_cluster_create_that_fails_skips_its_dependents_and_a_rerun_completes() {
    let mut deployment = Deployment::new(data100());
    deployment.converge(&PlanConfig::default()).await;
    deployment.break_api_server();
    let plan = deployment.plan(&PlanConfig::default()).await;
    let failing = memory_providers(&deployment.world, |provider| {
        provider.step(
            "aks_cluster.hub@g2:create",
            Behaviour::failing(
                "ARM: operation Failed: QuotaExceeded: the regional vCPU quota is exhausted",
            ),
        )
    });
    let report = deployment.apply(&plan, &failing).await;
    assert!(!report.succeeded());
    let status = |id: &str| {
        report
            .step(&ferry_core::StepId(id.into()))
            .unwrap()
            .status
            .clone()
    };
    assert!(matches!(
        status("aks_cluster.hub@g2:create"),
        StepStatus::Failed { .. }
    ));
    assert!(matches!(
        status("hook.staging_hub@g2:run"),
        StepStatus::Skipped { .. }
    ));
    assert!(matches!(
        status("aks_cluster.hub@g1:retire"),
        StepStatus::Skipped { .. }
    ));
    // The data moves on its own branch: it does not wait for the cluster.
    for disk in 0..4 {
        assert_eq!(status(&format!("disk.home{disk}:attach")), StepStatus::Done);
    }
    assert_eq!(status("zfs_pool.home:import"), StepStatus::Done);
    assert_eq!(
        deployment.store.state.active_generation, 1,
        "generation 2 does not serve yet"
    );

    // The fault clears: planning again gives only what is left, and it completes.
    let rest = deployment.plan(&PlanConfig::default()).await;
    assert!(
        rest.steps.iter().all(|step| !matches!(
            step.id.0.as_str(),
            "zfs_pool.home:import" | "vm.nfs@g2:create"
        )),
        "finished steps are not planned again"
    );
    deployment.converge(&PlanConfig::default()).await;
    assert_eq!(deployment.store.state.active_generation, 2);
    assert!(deployment.plan(&PlanConfig::default()).await.is_empty());
}

/// Issue 18, item 1, end to end on the simulated world: the failover is interrupted right
/// after the disks are attached to the new VM (the pool's import fails), and the state is
/// lost (`.ferry/state.json` moved away). Observing and planning from the world alone finishes
/// that same failover: the import on generation 2 and what follows, never a start of the
/// fenced `vm.nfs@g1` or a disk moved back; and once it is done, a second lost state plans no
/// changes on generation 2.
#[tokio::test]
async fn a_state_lost_in_the_middle_of_a_failover_is_rebuilt_from_the_world() {
    let mut deployment = Deployment::new(data100());
    deployment.converge(&PlanConfig::default()).await;
    deployment.break_api_server();
    let plan = deployment.plan(&PlanConfig::default()).await;
    let failing = memory_providers(&deployment.world, |provider| {
        provider.step(
            "zfs_pool.home:import",
            Behaviour::failing("ssh: connection reset by peer"),
        )
    });
    let report = deployment.apply(&plan, &failing).await;
    assert!(!report.succeeded());
    let world = deployment.world.instances();
    for disk in 0..4 {
        assert_eq!(
            world[&format!("disk.home{disk}").parse().unwrap()]["vm"],
            "vm.nfs@g2"
        );
    }
    assert_eq!(
        world[&"vm.nfs@g1".parse().unwrap()]["power_state"],
        "deallocated"
    );

    deployment.store = Store::in_memory(StateFile::default());
    let rest = deployment.plan(&PlanConfig::default()).await;
    let failover = rest.failover.as_ref().expect("the same failover goes on");
    assert_eq!((failover.from_generation, failover.to_generation), (1, 2));
    let steps: Vec<&str> = rest.steps.iter().map(|step| step.id.0.as_str()).collect();
    assert!(steps.contains(&"zfs_pool.home:import"), "{steps:?}");
    // Generation 2 was read, not taken for absent: what exists is not created again.
    assert!(
        rest.steps
            .iter()
            .all(|step| step.action != ferry_core::Action::Create),
        "{steps:?}"
    );
    assert!(
        rest.steps
            .iter()
            .all(|step| step.address.kind() != Kind::Disk
                && (step.address.generation != Some(1)
                    || step.action == ferry_core::Action::Retire)),
        "nothing moves back to generation 1: {steps:?}"
    );
    deployment.converge(&PlanConfig::default()).await;
    assert_eq!(deployment.store.state.active_generation, 2);
    let pool = &deployment.world.instances()[&"zfs_pool.home".parse().unwrap()];
    assert_eq!(pool["host"], "vm.nfs@g2");

    deployment.store = Store::in_memory(StateFile::default());
    let after = deployment.plan(&PlanConfig::default()).await;
    assert!(
        after.is_empty() && after.failover.is_none(),
        "{}",
        ferry_plan::render::text(&after, &Default::default())
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Applying any generated plan with the in-memory providers, then planning again, gives
    /// no changes; and so does a failover of the result.
    #[test]
    fn applying_then_planning_again_gives_no_changes(size in 5usize..60, seed in any::<u64>()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let text = ferry_testkit::synthetic::spec_text(size, seed);
            let spec = ferry_spec::load_sources(
                Path::new("synthetic"),
                vec![("synthetic.toml".into(), text)],
                &LoadOptions::default(),
                &ferry_providers::rule_book(),
            )
            .unwrap();
            let mut deployment = Deployment::new(spec);
            deployment.converge(&PlanConfig::default()).await;
            let again = deployment.plan(&PlanConfig::default()).await;
            assert!(again.is_empty(), "{}", ferry_plan::render::text(&again, &Default::default()));
            let force = PlanConfig { failover: FailoverRequest::Force, ..PlanConfig::default() };
            deployment.converge(&force).await;
            let again = deployment.plan(&PlanConfig::default()).await;
            assert!(again.is_empty(), "{}", ferry_plan::render::text(&again, &Default::default()));
        });
    }
}
