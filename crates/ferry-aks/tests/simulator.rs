//! The AKS provider against the ARM simulator: create with its kubeconfig (mode 0600), the
//! `/readyz` probe that makes a cluster ARM calls fine read unhealthy, an in-place upgrade,
//! retirement, a failed operation and unknown readings.

use std::os::unix::fs::PermissionsExt;

use ferry_aks::AksClusterProvider;
use ferry_core::{Action, Health, Observation};
use ferry_sim::{ApiServerDownMode, Fault};
use ferry_testkit::provider_harness::{Harness, attributes, instance};
use serde_json::json;

async fn harness() -> Harness {
    harness_at(|_| {}).await
}

async fn harness_at(adjust: impl FnOnce(&mut ferry_sim::SimulatorConfig)) -> Harness {
    let harness = Harness::start_with(
        &[
            ("resource_group.main", json!({"name": "hub-g${generation}"})),
            (
                "aks_cluster.hub",
                json!({"name": "hub", "resource_group": "resource_group.main"}),
            ),
        ],
        adjust,
    )
    .await;
    harness.seed_group("resource_group.main@g1", "hub-g1");
    harness
}

fn fields(version: &str) -> ferry_core::Attributes {
    attributes(json!({
        "name": "hub", "resource_group": "resource_group.main@g1", "location": "westeurope",
        "dns_prefix": "hub-g1", "kubernetes_version": version, "node_count": 3,
        "node_vm_size": "Standard_D4s_v5"
    }))
}

async fn create(harness: &Harness) -> ferry_core::Attributes {
    harness
        .apply(
            &AksClusterProvider::new(harness.azure.clone()),
            &instance("aks_cluster.hub@g1"),
            Action::Create,
            &fields("1.33"),
            Vec::new(),
            None,
        )
        .await
        .unwrap()
}

fn unhealthy_reason(observation: &Observation) -> String {
    match observation {
        Observation::Present {
            health: Health::Unhealthy { reason },
            ..
        } => reason.clone(),
        other => panic!("expected present and unhealthy, got {}", other.describe()),
    }
}

#[tokio::test]
async fn a_cluster_is_created_with_a_private_kubeconfig_and_reads_healthy() {
    let harness = harness().await;
    let cluster = instance("aks_cluster.hub@g1");
    let provider = AksClusterProvider::new(harness.azure.clone());
    assert_eq!(
        harness.read(&provider, &cluster, &fields("1.33")).await,
        Observation::Absent
    );
    let outputs = create(&harness).await;
    let path = outputs["kubeconfig"].as_str().unwrap();
    assert!(path.starts_with(&harness.folder.path().display().to_string()));
    let metadata = std::fs::metadata(path).unwrap();
    assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
    assert!(
        std::fs::read_to_string(path)
            .unwrap()
            .contains("certificate-authority-data")
    );
    assert!(outputs["fqdn"].as_str().unwrap().starts_with("127."));
    assert!(
        outputs["node_resource_group"]
            .as_str()
            .unwrap()
            .starts_with("MC_")
    );
    let reading = harness.read(&provider, &cluster, &fields("1.33")).await;
    assert!(reading.is_healthy(), "{}", reading.describe());
    for (name, value) in fields("1.33") {
        assert_eq!(reading.attribute(&name), Some(&value), "{name}");
    }
    // No secret in what ferry keeps or shows.
    let shown = serde_json::to_string(&reading).unwrap();
    assert!(!shown.contains("ferry-sim-kubernetes-token"));
}

#[tokio::test]
async fn an_api_server_that_stops_answering_reads_present_and_unhealthy() {
    let harness = harness().await;
    let outputs = create(&harness).await;
    let cluster = instance("aks_cluster.hub@g1");
    let provider = AksClusterProvider::new(harness.azure.clone());
    let id = outputs["id"].as_str().unwrap().to_owned();
    harness.simulator.inject(Fault::ApiServerDown {
        cluster: id.clone(),
        mode: ApiServerDownMode::Refuse,
    });
    let reason = unhealthy_reason(&harness.read(&provider, &cluster, &fields("1.33")).await);
    assert!(
        reason.contains("/readyz failed") && reason.contains("does not answer"),
        "{reason}"
    );
    harness.simulator.inject(Fault::ApiServerDown {
        cluster: id.clone(),
        mode: ApiServerDownMode::Hang,
    });
    let reason = unhealthy_reason(&harness.read(&provider, &cluster, &fields("1.33")).await);
    assert!(reason.contains("timed out after 500ms"), "{reason}");
    harness.simulator.inject(Fault::ApiServerUp { cluster: id });
    assert!(
        harness
            .read(&provider, &cluster, &fields("1.33"))
            .await
            .is_healthy()
    );
}

#[tokio::test]
async fn an_upgrade_is_in_place_and_a_retirement_removes_the_cluster_and_its_kubeconfig() {
    let harness = harness().await;
    let created = create(&harness).await;
    let cluster = instance("aks_cluster.hub@g1");
    let provider = AksClusterProvider::new(harness.azure.clone());
    let upgraded = harness
        .apply(
            &provider,
            &cluster,
            Action::Update,
            &fields("1.34"),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(upgraded["kubernetes_version"], json!("1.34"));
    assert_eq!(upgraded["fqdn"], created["fqdn"], "the same API server");
    let kubeconfig = upgraded["kubeconfig"].as_str().unwrap().to_owned();
    harness
        .apply(
            &provider,
            &cluster,
            Action::Retire,
            &Default::default(),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert!(!std::path::Path::new(&kubeconfig).exists());
    assert_eq!(
        harness.read(&provider, &cluster, &fields("1.34")).await,
        Observation::Absent
    );
}

#[tokio::test]
async fn a_failed_create_says_why_and_faults_read_unknown() {
    let harness = harness().await;
    let cluster = instance("aks_cluster.hub@g1");
    let provider = AksClusterProvider::new(harness.azure.clone());
    harness.simulator.inject(Fault::FailOperation {
        method: Some("PUT".into()),
        path_contains: "managedClusters/hub".into(),
        code: "QuotaExceeded".into(),
        message: "not enough vCPU quota for 3 nodes".into(),
        count: Some(1),
    });
    let error = harness
        .apply(
            &provider,
            &cluster,
            Action::Create,
            &fields("1.33"),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        error
            .message
            .contains("QuotaExceeded: not enough vCPU quota for 3 nodes"),
        "{error}"
    );
    // The advice fits the error: a quota is raised by a person, applying again does nothing.
    assert!(
        !error.transient
            && error.message.contains("request a higher quota")
            && error.message.contains(ferry_arm::error::FIX_FIRST),
        "{error}"
    );
    // The failed cluster reads present with a failed provisioning (which the planner
    // replaces), not merely unhealthy, and a replacement puts it right.
    let reading = harness.read(&provider, &cluster, &fields("1.33")).await;
    assert!(
        matches!(
            &reading,
            Observation::Present { health: Health::Failed { reason }, .. }
                if reason == "ARM reports provisioningState Failed"
        ),
        "{}",
        reading.describe()
    );
    harness
        .apply(
            &provider,
            &cluster,
            Action::Replace,
            &fields("1.33"),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert!(
        harness
            .read(&provider, &cluster, &fields("1.33"))
            .await
            .is_healthy()
    );
    harness.simulator.inject(Fault::ServerError {
        share: 1.0,
        count: None,
    });
    let reading = harness.read(&provider, &cluster, &fields("1.33")).await;
    assert!(
        matches!(reading, Observation::Unknown { .. }),
        "{}",
        reading.describe()
    );
}

/// An apply killed while Azure is creating the cluster leaves it `Creating`. It reads so: not
/// unhealthy (whose hooks would be planned at once and fail against a cluster that is not
/// there yet), not absent. The create sent again waits for the one under way and finishes.
#[tokio::test]
async fn a_create_a_killed_apply_left_under_way_reads_creating_and_a_second_create_finishes_it() {
    // A cluster create (8 minutes in Azure) lasts 2.4 s at this scale.
    let harness = harness_at(|config| config.time_scale = 0.005).await;
    let cluster = instance("aks_cluster.hub@g1");
    let provider = AksClusterProvider::new(harness.azure.clone());
    let killed =
        tokio::time::timeout(std::time::Duration::from_millis(300), create(&harness)).await;
    assert!(
        killed.is_err(),
        "the create was meant to be cut off while under way"
    );
    let reading = harness.read(&provider, &cluster, &fields("1.33")).await;
    assert!(
        matches!(
            &reading,
            Observation::Present { health: Health::Creating { reason }, .. }
                if reason == "ARM reports provisioningState Creating"
        ),
        "{}",
        reading.describe()
    );
    let outputs = create(&harness).await;
    assert!(outputs["kubeconfig"].as_str().is_some(), "{outputs:?}");
    let reading = harness.read(&provider, &cluster, &fields("1.33")).await;
    assert!(reading.is_healthy(), "{}", reading.describe());
}
