//! The shapes of the simulator's answers, through ferry's own client: the statuses each type's
//! definition declares, no secret echoed, subnets seen from both sides, lists across a
//! subscription, provisioning states from each provider's enum, the fields AKS computes, a
//! move validated asynchronously, and `attachDetachDataDisks`'s storage profile.

mod support;

use std::time::Duration;

use ferry_arm::{ArmError, ResourceId, WriteOptions, api_version};
use ferry_sim::Simulator;
use serde_json::{Value, json};
use support::{SUBSCRIPTION, create_group, group_id, resource_id, start, start_with, vm_body};

/// The statuses the simulator answered `method` on `path` with, in order.
fn answers(simulator: &Simulator, method: &str, path: &str) -> Vec<String> {
    simulator
        .events()
        .into_iter()
        .filter(|event| {
            event.what == "request"
                && event.method == method
                && event.path.eq_ignore_ascii_case(path)
        })
        .map(|event| event.outcome)
        .collect()
}

fn disk_body() -> Value {
    json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64}})
}

#[tokio::test]
async fn a_disk_put_answers_202_or_200_never_201() {
    let world = start().await;
    create_group(&world.client, "rg").await;
    let disk = resource_id("rg", "Microsoft.Compute/disks", "data");
    let _: Value = world
        .client
        .put_and_wait(
            &disk,
            api_version::DISKS,
            &disk_body(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    // DiskRP's disk.json (2025-01-02) declares 200 and 202 for a PUT.
    assert_eq!(answers(&world.simulator, "PUT", &disk), ["202"]);

    let instant = start_with(|config| config.durations.disk_create = Duration::ZERO).await;
    create_group(&instant.client, "rg").await;
    let _: Value = instant
        .client
        .put_and_wait(
            &disk,
            api_version::DISKS,
            &disk_body(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(answers(&instant.simulator, "PUT", &disk), ["200"]);
}

#[tokio::test]
async fn deleting_a_missing_group_is_not_found() {
    let world = start().await;
    let error = world
        .client
        .delete_and_wait(
            &group_id("never-made"),
            api_version::RESOURCES,
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(404), "{error}");
    assert_eq!(error.code(), Some("ResourceGroupNotFound"));
}

#[tokio::test]
async fn secrets_are_never_returned() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg").await;
    let vm = resource_id("rg", "Microsoft.Compute/virtualMachines", "vm");
    let created: Value = client
        .put_and_wait(
            &vm,
            api_version::COMPUTE,
            &json!({"location": "westeurope", "properties": {
                "hardwareProfile": {"vmSize": "Standard_D2s_v5"},
                "osProfile": {"computerName": "vm", "adminUsername": "azureuser", "adminPassword": "Secret-1!", "customData": "I2Nsb3Vk"}
            }}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let cluster = resource_id("rg", "Microsoft.ContainerService/managedClusters", "aks");
    let cluster_created: Value = client
        .put_and_wait(
            &cluster,
            api_version::CONTAINER_SERVICE,
            &json!({"location": "westeurope", "properties": {
                "dnsPrefix": "aks",
                "agentPoolProfiles": [{"name": "system", "count": 1, "vmSize": "Standard_D2s_v5", "mode": "System"}],
                "servicePrincipalProfile": {"clientId": "app", "secret": "sp-secret"},
                "windowsProfile": {"adminUsername": "azureuser", "adminPassword": "Windows-Secret-1!"}
            }}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let vm_read: Value = client.get(&vm, api_version::COMPUTE).await.unwrap().value;
    let cluster_read: Value = client
        .get(&cluster, api_version::CONTAINER_SERVICE)
        .await
        .unwrap()
        .value;
    let vms: Vec<Value> = client
        .list(
            &format!(
                "{}/providers/Microsoft.Compute/virtualMachines",
                group_id("rg")
            ),
            api_version::COMPUTE,
        )
        .await
        .unwrap();
    let clusters: Vec<Value> = client
        .list(
            &format!(
                "/subscriptions/{SUBSCRIPTION}/providers/Microsoft.ContainerService/managedClusters"
            ),
            api_version::CONTAINER_SERVICE,
        )
        .await
        .unwrap();
    for (what, body) in [
        ("the VM's PUT", &created),
        ("the VM's GET", &vm_read),
        ("the VM in a list", &vms[0]),
    ] {
        let profile = &body["properties"]["osProfile"];
        assert_eq!(profile["adminUsername"], "azureuser", "{what}: {body}");
        assert!(profile.get("adminPassword").is_none(), "{what}: {body}");
        assert!(profile.get("customData").is_none(), "{what}: {body}");
    }
    for (what, body) in [
        ("the cluster's PUT", &cluster_created),
        ("the cluster's GET", &cluster_read),
        ("the cluster in a list", &clusters[0]),
    ] {
        let properties = &body["properties"];
        assert_eq!(properties["servicePrincipalProfile"]["clientId"], "app");
        assert!(
            properties["servicePrincipalProfile"]
                .get("secret")
                .is_none(),
            "{what}: {body}"
        );
        assert!(
            properties["windowsProfile"].get("adminPassword").is_none(),
            "{what}: {body}"
        );
    }
}

#[tokio::test]
async fn a_cluster_create_answers_with_what_aks_computes() {
    let world = start().await;
    create_group(&world.client, "rg").await;
    let cluster = resource_id("rg", "Microsoft.ContainerService/managedClusters", "aks");
    let started = world
        .client
        .put::<_, Value>(
            &cluster,
            api_version::CONTAINER_SERVICE,
            &json!({"location": "westeurope", "properties": {"dnsPrefix": "aks", "kubernetesVersion": "", "agentPoolProfiles": [{"name": "system", "count": 1, "vmSize": "Standard_D2s_v5", "mode": "System"}]}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let pending = started.pending().expect("an AKS create is long-running");
    // The create's own 201 body, as the official example `ManagedClustersCreate_Update`
    // answers it, with the fqdn Azure computes at once.
    let events = world.simulator.events();
    assert_eq!(events.last().unwrap().outcome, "201");
    let first: Value = world
        .client
        .get(&cluster, api_version::CONTAINER_SERVICE)
        .await
        .unwrap()
        .value;
    let properties = &first["properties"];
    assert_eq!(properties["provisioningState"], "Creating");
    for field in [
        "fqdn",
        "azurePortalFQDN",
        "nodeResourceGroup",
        "maxAgentPools",
        "kubernetesVersion",
        "currentKubernetesVersion",
        "powerState",
    ] {
        assert!(
            properties.get(field).is_some_and(|value| value != ""),
            "{field} missing from {first}"
        );
    }
    assert_eq!(properties["nodeResourceGroup"], "MC_rg_aks_westeurope");
    let pool = &properties["agentPoolProfiles"][0];
    for (field, expected) in [
        ("type", json!("VirtualMachineScaleSets")),
        ("osType", json!("Linux")),
        ("osDiskSizeGB", json!(128)),
        ("maxPods", json!(110)),
        (
            "orchestratorVersion",
            properties["kubernetesVersion"].clone(),
        ),
        (
            "currentOrchestratorVersion",
            properties["kubernetesVersion"].clone(),
        ),
        ("provisioningState", json!("Creating")),
        ("powerState", json!({"code": "Running"})),
    ] {
        assert_eq!(pool[field], expected, "{field} of {pool}");
    }
    assert!(pool["nodeImageVersion"].is_string(), "{pool}");
    let done: Value = world.client.wait(pending).await.unwrap().unwrap();
    assert_eq!(done["properties"]["fqdn"], properties["fqdn"]);
    assert_eq!(
        done["properties"]["agentPoolProfiles"][0]["provisioningState"],
        "Succeeded"
    );
}

#[tokio::test]
async fn network_states_come_from_network_s_enum() {
    let world = start().await;
    create_group(&world.client, "rg").await;
    let address = resource_id("rg", "Microsoft.Network/publicIPAddresses", "pip");
    let started = world
        .client
        .put::<_, Value>(
            &address,
            api_version::PUBLIC_IP,
            &json!({"location": "westeurope", "sku": {"name": "Standard"}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let pending = started
        .pending()
        .expect("a public IP create is long-running");
    let during: Value = world
        .client
        .get(&address, api_version::PUBLIC_IP)
        .await
        .unwrap()
        .value;
    // Network's ProvisioningState: Succeeded, Updating, Deleting, Failed; no Creating.
    assert_eq!(during["properties"]["provisioningState"], "Updating");
    world.client.wait::<Value>(pending).await.unwrap();
}

#[tokio::test]
async fn subnets_are_the_same_resources_from_both_sides() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg").await;
    let network = resource_id("rg", "Microsoft.Network/virtualNetworks", "vnet");
    let _: Value = client
        .put_and_wait(
            &network,
            api_version::NETWORK,
            &json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": [{"name": "inline", "properties": {"addressPrefix": "10.0.0.0/24"}}]}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let inline: Value = client
        .get(&format!("{network}/subnets/inline"), api_version::NETWORK)
        .await
        .unwrap()
        .value;
    assert_eq!(inline["properties"]["addressPrefix"], "10.0.0.0/24");
    assert_eq!(inline["type"], "Microsoft.Network/virtualNetworks/subnets");
    let _: Value = client
        .put_and_wait(
            &format!("{network}/subnets/own"),
            api_version::NETWORK,
            &json!({"properties": {"addressPrefix": "10.0.1.0/24"}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let names = |body: &Value| -> Vec<String> {
        body["properties"]["subnets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|subnet| subnet["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let read: Value = client
        .get(&network, api_version::NETWORK)
        .await
        .unwrap()
        .value;
    assert_eq!(names(&read), ["inline", "own"]);
    let listed: Vec<Value> = client
        .list(&format!("{network}/subnets"), api_version::NETWORK)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);

    client
        .delete_and_wait(
            &format!("{network}/subnets/own"),
            api_version::NETWORK,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let read: Value = client
        .get(&network, api_version::NETWORK)
        .await
        .unwrap()
        .value;
    assert_eq!(names(&read), ["inline"]);
    // A network PUT replaces its subnets: one it no longer lists is gone.
    let _: Value = client
        .put_and_wait(
            &network,
            api_version::NETWORK,
            &json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": [{"name": "other", "properties": {"addressPrefix": "10.0.2.0/24"}}]}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let gone = client
        .get_if_exists::<Value>(&format!("{network}/subnets/inline"), api_version::NETWORK)
        .await
        .unwrap();
    assert!(gone.is_none());
}

#[tokio::test]
async fn subscription_lists_span_groups_and_page() {
    let world = start_with(|config| config.page_size = 2).await;
    let client = &world.client;
    for group in ["rg-a", "rg-b"] {
        create_group(client, group).await;
        for name in ["one", "two"] {
            let _: Value = client
                .put_and_wait(
                    &resource_id(group, "Microsoft.Compute/disks", name),
                    api_version::DISKS,
                    &disk_body(),
                    &WriteOptions::default(),
                )
                .await
                .unwrap();
        }
    }
    let path = format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/disks");
    let disks: Vec<Value> = client.list(&path, api_version::DISKS).await.unwrap();
    let mut ids: Vec<&str> = disks
        .iter()
        .map(|disk| disk["id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            resource_id("rg-a", "Microsoft.Compute/disks", "one"),
            resource_id("rg-a", "Microsoft.Compute/disks", "two"),
            resource_id("rg-b", "Microsoft.Compute/disks", "one"),
            resource_id("rg-b", "Microsoft.Compute/disks", "two"),
        ]
    );
    // Two pages of two: the first answered with a nextLink.
    assert_eq!(answers(&world.simulator, "GET", &path).len(), 2);
    let none: Vec<Value> = client
        .list(
            &format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/networkInterfaces"),
            api_version::NETWORK,
        )
        .await
        .unwrap();
    assert!(none.is_empty());
}

#[tokio::test]
async fn a_move_is_validated_at_its_location() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-old").await;
    create_group(client, "rg-new").await;
    let source = ResourceId::parse(&group_id("rg-old")).unwrap();
    let disk = resource_id("rg-old", "Microsoft.Compute/disks", "data");
    let _: Value = client
        .put_and_wait(
            &disk,
            api_version::DISKS,
            &disk_body(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let request = |id: &str| ferry_arm::models::MoveResourcesRequest {
        resources: vec![id.to_owned()],
        target_resource_group: group_id("rg-new"),
        extra: Default::default(),
    };
    client
        .validate_move_resources(&source, &request(&disk))
        .await
        .unwrap();
    let path = format!("{}/validateMoveResources", group_id("rg-old"));
    assert_eq!(answers(&world.simulator, "POST", &path), ["202"]);

    let cluster = resource_id(
        "rg-old",
        "Microsoft.ContainerService/managedClusters",
        "aks",
    );
    world
        .simulator
        .seed(
            &cluster,
            json!({"location": "westeurope", "properties": {"dnsPrefix": "aks"}}),
        )
        .unwrap();
    let refused = client
        .validate_move_resources(&source, &request(&cluster))
        .await
        .unwrap_err();
    // Accepted first, refused at the Location with 409 and the reason.
    assert_eq!(answers(&world.simulator, "POST", &path), ["202", "202"]);
    assert!(
        matches!(refused, ArmError::OperationFailed { .. }),
        "{refused:?}"
    );
    assert_eq!(refused.code(), Some("ResourceMoveNotSupported"));
    let last_poll = world
        .simulator
        .events()
        .into_iter()
        .rfind(|event| event.path.contains("/operationResults/"))
        .unwrap();
    assert_eq!(last_poll.outcome, "409");
    assert_eq!(last_poll.code.as_deref(), Some("ResourceMoveNotSupported"));
}

#[tokio::test]
async fn attach_detach_data_disks_ends_with_the_storage_profile() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg").await;
    let disk = resource_id("rg", "Microsoft.Compute/disks", "data");
    let _: Value = client
        .put_and_wait(
            &disk,
            api_version::DISKS,
            &disk_body(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let vm = resource_id("rg", "Microsoft.Compute/virtualMachines", "vm");
    let _: Value = client
        .put_and_wait(
            &vm,
            api_version::COMPUTE,
            &json!({"location": "westeurope", "properties": {"hardwareProfile": {"vmSize": "Standard_D2s_v5"}}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let profile: Value = client
        .post_and_wait(
            &format!("{vm}/attachDetachDataDisks"),
            api_version::COMPUTE,
            Some(&json!({"dataDisksToAttach": [{"diskId": disk, "lun": 3}]})),
            &WriteOptions::default(),
        )
        .await
        .unwrap()
        .expect("the operation ends with the VM's storage profile");
    assert_eq!(profile["dataDisks"][0]["lun"], 3, "{profile}");
    assert_eq!(profile["dataDisks"][0]["managedDisk"]["id"], json!(disk));
    let polls: Vec<String> = world
        .simulator
        .events()
        .into_iter()
        .filter(|event| event.path.contains("/operationResults/"))
        .map(|event| event.outcome)
        .collect();
    assert_eq!(polls.last().map(String::as_str), Some("200"));

    let profile: Value = client
        .post_and_wait(
            &format!("{vm}/attachDetachDataDisks"),
            api_version::COMPUTE,
            Some(&json!({"dataDisksToDetach": [{"diskId": disk}]})),
            &WriteOptions::default(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile["dataDisks"], json!([]), "{profile}");
}

#[tokio::test]
async fn a_vm_list_carries_power_states_only_with_status_only_on_the_subscription() {
    let world = start_with(|config| config.page_size = 1).await;
    let client = &world.client;
    create_group(client, "rg-vms").await;
    for name in ["one", "two"] {
        let _: Value = client
            .put_and_wait(
                &resource_id("rg-vms", "Microsoft.Compute/virtualMachines", name),
                api_version::COMPUTE,
                &vm_body(json!([])),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    // A group's list of VMs takes `$expand=instanceView` only with a scale set's `$filter`.
    let group_list = format!(
        "{}/providers/Microsoft.Compute/virtualMachines",
        group_id("rg-vms")
    );
    let expand = [("$expand".to_owned(), "instanceView".to_owned())];
    let refused = client
        .list_with_query::<Value>(&group_list, api_version::COMPUTE, &expand)
        .await
        .unwrap_err();
    assert_eq!(
        (refused.status(), refused.code()),
        (Some(400), Some("InvalidParameter"))
    );
    let listed: Vec<Value> = client
        .list(&group_list, api_version::COMPUTE)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert!(
        listed
            .iter()
            .all(|vm| vm.pointer("/properties/instanceView").is_none())
    );

    // The subscription's list with statusOnly=true: every VM's instance view, on every page
    // (nextLink keeps the query).
    let subscription_list =
        format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/virtualMachines");
    let status_only = [("statusOnly".to_owned(), "true".to_owned())];
    let statuses: Vec<Value> = client
        .list_with_query(&subscription_list, api_version::COMPUTE, &status_only)
        .await
        .unwrap();
    assert_eq!(statuses.len(), 2);
    for vm in &statuses {
        let codes: Vec<&str> = vm["properties"]["instanceView"]["statuses"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|status| status["code"].as_str())
            .collect();
        assert!(
            codes.iter().any(|code| code.starts_with("PowerState/")),
            "{vm}"
        );
        assert!(vm.pointer("/properties/hardwareProfile").is_none(), "{vm}");
    }
}
