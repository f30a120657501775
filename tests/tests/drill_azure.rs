//! A failover drill of data100 on the in-process ARM simulator (issue 17), through
//! `ferry_ops::Deployment::drill`: the real Azure providers build the drill's own resource
//! group, network, cluster, VM and public IPs, the disk provider copies production's disks
//! through snapshots, the pool, records, hooks and checks are in a memory world of the drill's
//! own; then the clean-up deletes it all. The simulator's record shows no request but a read
//! to anything of production's group, and the drill's group is gone at the end.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl};
use ferry_arm::{AzureDeployment, AzureSettings, Url};
use ferry_core::{Kind, Providers};
use ferry_ops::{
    Applied, ApplyRequest, Approval, Deployment, DrillMode, DrillRequest, PlanOptions, PlanSource,
    WorldSource,
};
use ferry_plan::drill::DrillId;
use ferry_world::{MemoryProvider, World};

/// Providers for `spec` on `simulator`: the real Azure ones, the rest in `world`.
fn providers(
    spec: &ferry_spec::Spec,
    simulator: &ferry_sim::Simulator,
    folder: &Path,
    operations: &str,
    world: &World,
) -> Providers {
    let mut settings = AzureSettings::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
        folder.join(operations),
    );
    settings.subscription = spec.deployment.subscription.clone();
    settings.device_root = Some(folder.join("sim"));
    let azure = Arc::new(AzureDeployment::new(settings, spec.resources.values()).unwrap());
    ferry_providers::with_azure_providers(Providers::new(), &azure)
        .with(Arc::new(MemoryProvider::new(Kind::ZfsPool, world)))
        .with(Arc::new(MemoryProvider::new(Kind::DnsRecord, world)))
        .with(Arc::new(MemoryProvider::new(Kind::Hook, world)))
        .with(Arc::new(MemoryProvider::new(Kind::Check, world)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_on_the_arm_simulator_copies_production_touches_nothing_of_it_and_leaves_nothing() {
    let folder = tempfile::tempdir().unwrap();
    let support::AzureWorld {
        mut spec,
        rules,
        simulator,
        providers: production_providers,
    } = support::azure_world(folder.path(), "operations").await;
    spec.state = ferry_spec::StateConfig::Local {
        path: folder.path().join("state"),
    };
    let spec_path = spec.root.clone();
    let production = Deployment::open(
        spec,
        rules,
        &spec_path,
        WorldSource::Providers(production_providers),
    )
    .unwrap();
    let built = production
        .apply(ApplyRequest {
            plan: PlanSource::Fresh(PlanOptions::default()),
            lock_timeout: Duration::ZERO,
            config: ApplyConfig::default(),
            control: &ApplyControl::new(),
            on_event: &|_| {},
            approve: &mut |_| Ok(Approval::Approved),
        })
        .await
        .unwrap();
    let Applied::Ran { report, .. } = built else {
        panic!("generation 1 was not built");
    };
    assert!(report.succeeded(), "{}", report.counts().describe());
    let mark = simulator.events().len();

    let drill_world = World::simulating(&ferry_providers::rule_book());
    let build_drill = |drill_spec: &ferry_spec::Spec| {
        providers(
            drill_spec,
            &simulator,
            folder.path(),
            "drill-operations",
            &drill_world,
        )
    };
    let drilled = production
        .drill(DrillRequest {
            mode: DrillMode::Run { keep: false },
            id: Some(DrillId::new("azure-1").unwrap()),
            lock_timeout: Duration::ZERO,
            config: ApplyConfig::default(),
            control: &ApplyControl::new(),
            on_event: &|_| {},
            on_plan: &|_| {},
            drill_providers: Some(&build_drill),
        })
        .await
        .unwrap();
    let failed: Vec<String> = drilled
        .steps
        .iter()
        .filter(|step| step.outcome != "done")
        .map(|step| format!("{}: {}", step.id, step.outcome))
        .collect();
    assert_eq!(failed, Vec::<String>::new());
    let cleanup = drilled.cleanup.as_ref().unwrap();
    assert_eq!(cleanup.failures, Vec::<String>::new());
    assert_eq!(cleanup.leftovers, Vec::new());
    assert_eq!(drilled.production_changes, Vec::<String>::new());
    assert!(drilled.ok());

    // Production's group saw reads only; the drill's is gone, its snapshots with it.
    let events = simulator.events();
    let production_writes: Vec<String> = events
        .iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.method != "GET")
        .filter(|event| {
            event
                .path
                .to_ascii_lowercase()
                .contains("/resourcegroups/data100-g1/")
        })
        .map(|event| format!("{} {}", event.method, event.path))
        .collect();
    assert_eq!(production_writes, Vec::<String>::new());
    let snapshots_made = events
        .iter()
        .skip(mark)
        .filter(|event| {
            event.what == "request"
                && event.method == "PUT"
                && event.path.contains(
                    "/resourceGroups/data100-g1-drill/providers/Microsoft.Compute/snapshots/",
                )
        })
        .count();
    assert_eq!(snapshots_made, 4);
    let group_deleted = events.iter().skip(mark).any(|event| {
        event.what == "request"
            && event.method == "DELETE"
            && event.path.ends_with("/resourceGroups/data100-g1-drill")
    });
    assert!(group_deleted);
}
