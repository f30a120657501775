//! The Azure part of the data100 failover, end to end against the in-process ARM simulator:
//! the real resource group, network, public IP, VM, disk and AKS providers, with the ZFS pool,
//! DNS records, hooks and checks served by the in-memory world so that only the Azure kinds
//! are real. Build generation 1, stop its API server, plan the failover from a live read,
//! apply it, and check the order in which the simulator saw the operations.

mod support;

use ferry_apply::{ApplyConfig, ApplyControl, ApplyReport, Store};
use ferry_arm::Url;
use ferry_core::{Action, Kind, Observation, Plan, Providers, RuleBook, Snapshot};
use ferry_observe::ObserveConfig;
use ferry_plan::PlanConfig;
use ferry_sim::{Fault, SimEvent, Simulator};
use ferry_spec::Spec;
use ferry_state::StateFile;
use support::AZURE_KINDS;

struct Deployment {
    spec: Spec,
    rules: RuleBook,
    simulator: Simulator,
    providers: Providers,
    store: Store,
    _folder: tempfile::TempDir,
}

impl Deployment {
    async fn start() -> Self {
        let folder = tempfile::tempdir().unwrap();
        let support::AzureWorld {
            spec,
            rules,
            simulator,
            providers,
        } = support::azure_world(folder.path(), "state").await;
        Deployment {
            spec,
            rules,
            simulator,
            providers,
            store: Store::in_memory(StateFile::default()),
            _folder: folder,
        }
    }

    async fn observe(&self) -> Snapshot {
        ferry_observe::observe(
            &self.spec,
            &self.rules,
            &self.store.state,
            &self.providers,
            &ObserveConfig::default(),
        )
        .await
        .unwrap()
    }

    fn plan(&self, snapshot: &Snapshot) -> Plan {
        ferry_plan::plan(&self.spec, snapshot, &self.rules, &PlanConfig::default())
            .unwrap_or_else(|errors| panic!("{errors}"))
    }

    /// Applies `plan`; on success its generation becomes the active one, as the CLI does.
    async fn apply(&mut self, plan: &Plan) -> ApplyReport {
        ferry_apply::apply(
            plan,
            &self.providers,
            &ApplyConfig::default(),
            &mut self.store,
            &ApplyControl::new(),
            &|_| {},
        )
        .await
        .unwrap()
    }
}

fn azure_steps(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .filter(|step| AZURE_KINDS.contains(&step.address.kind()))
        .map(|step| format!("{}: {}", step.id, step.reason))
        .collect()
}

/// The position of the first event matching `wanted`, panicking with the log otherwise.
fn position(events: &[SimEvent], what: &str, wanted: impl Fn(&SimEvent) -> bool) -> usize {
    events
        .iter()
        .position(wanted)
        .unwrap_or_else(|| panic!("the simulator never saw {what}; it saw:\n{events:#?}"))
}

fn vm_path(generation: u32) -> String {
    format!(
        "/resourceGroups/data100-g{generation}/providers/Microsoft.Compute/virtualMachines/data100-nfs-g{generation}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data100_fails_over_on_the_arm_simulator() {
    let mut deployment = Deployment::start().await;

    // Generation 1, built through ferry.
    let first = deployment.plan(&deployment.observe().await);
    assert!(first.failover.is_none());
    let report = deployment.apply(&first).await;
    assert!(report.succeeded(), "{}", report.counts().describe());
    let healthy = deployment.observe().await;
    let hub = healthy.get(&"aks_cluster.hub@g1".parse().unwrap()).unwrap();
    assert!(hub.is_healthy(), "{}", hub.describe());
    assert_eq!(
        azure_steps(&deployment.plan(&healthy)),
        Vec::<String>::new(),
        "planning right after the first build changes nothing in Azure"
    );
    let kubeconfig = hub.attribute("kubeconfig").unwrap().as_str().unwrap();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(kubeconfig).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let attached = deployment.simulator.attachment_directory("data100-nfs-g1");
    for lun in 0..4 {
        assert!(
            attached.join(format!("lun{lun}")).exists(),
            "lun{lun} in {}: {:?}",
            attached.display(),
            std::fs::read_dir(
                attached
                    .parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .parent()
                    .unwrap()
            )
            .map(|entries| entries.flatten().map(|e| e.path()).collect::<Vec<_>>())
        );
    }

    // The API server stops answering while ARM still calls the cluster fine.
    let cluster_id = hub.attribute("id").unwrap().as_str().unwrap().to_owned();
    deployment.simulator.inject(Fault::ApiServerDown {
        cluster: cluster_id,
        mode: ferry_sim::ApiServerDownMode::Refuse,
    });
    let broken = deployment.observe().await;
    let hub = broken.get(&"aks_cluster.hub@g1".parse().unwrap()).unwrap();
    let Observation::Present { health, .. } = hub else {
        panic!("the cluster should read present: {}", hub.describe());
    };
    assert!(!health.is_healthy(), "{}", hub.describe());
    assert!(hub.describe().contains("/readyz"), "{}", hub.describe());

    let failover = deployment.plan(&broken);
    assert_eq!(failover.failover.as_ref().map(|f| f.to_generation), Some(2));
    // A snapshot written by `ferry observe` plans exactly like the live read.
    let written = serde_json::to_string_pretty(&broken).unwrap();
    let read_back: Snapshot = serde_json::from_str(&written).unwrap();
    assert_eq!(deployment.plan(&read_back), failover);
    let actions: Vec<String> = failover
        .steps
        .iter()
        .filter(|step| step.address.kind() == Kind::Disk || step.action == Action::Fence)
        .map(|step| step.id.to_string())
        .collect();
    for disk in 0..4 {
        for action in ["detach", "move", "attach"] {
            let id = format!("disk.home{disk}:{action}");
            assert!(actions.contains(&id), "{id} missing from {actions:?}");
        }
    }
    assert!(actions.contains(&"vm.nfs@g1:fence".to_owned()));

    let before = deployment.simulator.events().len();
    let report = deployment.apply(&failover).await;
    assert!(report.succeeded(), "{}", report.counts().describe());
    let events: Vec<SimEvent> = deployment.simulator.events()[before..].to_vec();

    let old_vm = vm_path(1);
    let fenced = position(&events, "the deallocation of the old VM end", |event| {
        event.what == "operation"
            && event.path.ends_with(&format!("{old_vm}/deallocate"))
            && event.outcome == "Succeeded"
    });
    // Disk by disk, as ARM saw them: several disks share one VM update or one move.
    let disks = [
        "data100-home0",
        "data100-home1",
        "data100-home2",
        "data100-home3",
    ];
    if let Err(broken) = ferry_sim::check_failover_order(&events, fenced, &disks) {
        panic!("{broken}\n{events:#?}");
    }
    let attached = deployment.simulator.attachment_directory("data100-nfs-g2");
    for lun in 0..4 {
        assert!(
            attached.join(format!("lun{lun}")).exists(),
            "lun{lun} on the new VM"
        );
    }

    let after = deployment.observe().await;
    assert_eq!(
        azure_steps(&deployment.plan(&after)),
        Vec::<String>::new(),
        "planning right after the failover changes nothing in Azure"
    );
    for disk in 0..4 {
        let reading = after
            .get(&format!("disk.home{disk}").parse().unwrap())
            .unwrap();
        assert_eq!(
            reading.attribute("resource_group").and_then(|v| v.as_str()),
            Some("resource_group.main@g2")
        );
        assert!(
            reading
                .attribute("id")
                .and_then(|v| v.as_str())
                .is_some_and(|id| id.contains("/resourceGroups/data100-g2/")),
            "{}",
            reading.describe()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_behind_ferrys_back_show_in_the_plan_and_are_put_right() {
    let mut deployment = Deployment::start().await;
    let first = deployment.plan(&deployment.observe().await);
    let report = deployment.apply(&first).await;
    assert!(report.succeeded(), "{}", report.counts().describe());

    // Someone resizes the NFS VM and detaches a disk in the portal.
    let client = ferry_arm::ArmClient::new(ferry_arm::ArmClientConfig::simulator(
        Url::parse(deployment.simulator.endpoint()).unwrap(),
        deployment.simulator.ca_file().to_path_buf(),
    ))
    .unwrap();
    let vm_id = deployment
        .store
        .state
        .outputs(&"vm.nfs@g1".parse().unwrap())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let vm: serde_json::Value = client
        .get(&vm_id, ferry_arm::api_version::COMPUTE)
        .await
        .unwrap()
        .value;
    let kept: Vec<serde_json::Value> = vm["properties"]["storageProfile"]["dataDisks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|disk| disk["lun"] != serde_json::json!(3))
        .cloned()
        .collect();
    let _: serde_json::Value = client
        .patch_and_wait(
            &vm_id,
            ferry_arm::api_version::COMPUTE,
            &serde_json::json!({"properties": {
                "hardwareProfile": {"vmSize": "Standard_E16s_v5"},
                "storageProfile": {"dataDisks": kept},
            }}),
            &ferry_arm::WriteOptions::default(),
        )
        .await
        .unwrap();

    let drifted = deployment.plan(&deployment.observe().await);
    let steps = azure_steps(&drifted);
    assert_eq!(
        steps,
        [
            "vm.nfs@g1:update: resized in place to Standard_E8s_v5: the VM restarts (its current hardware hosts that size)",
            "disk.home3:update: changed in place: lun, vm",
        ],
        "{drifted:#?}"
    );
    let report = deployment.apply(&drifted).await;
    assert!(report.succeeded(), "{}", report.counts().describe());
    assert_eq!(
        azure_steps(&deployment.plan(&deployment.observe().await)),
        Vec::<String>::new()
    );
    assert!(
        deployment
            .simulator
            .attachment_directory("data100-nfs-g1")
            .join("lun3")
            .exists()
    );
}
