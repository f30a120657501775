//! What ARM refuses about resource groups, api-versions, types and locations, through ferry's
//! own client against the simulator: each answer with Azure's status, code and wording.

mod support;

use ferry_arm::{ArmClient, ArmError, Started, WriteOptions, api_version};
use ferry_sim::Fault;
use serde_json::{Value, json};
use support::{group_id, resource_id, start};

async fn create(client: &ArmClient, path: &str, version: &str, body: Value) -> Value {
    client
        .put_and_wait(path, version, &body, &WriteOptions::default())
        .await
        .unwrap_or_else(|error| panic!("creating {path}: {error}"))
}

async fn create_group(client: &ArmClient, name: &str) {
    create(
        client,
        &group_id(name),
        api_version::RESOURCES,
        json!({"location": "westeurope"}),
    )
    .await;
}

fn disk_body(location: &str) -> Value {
    json!({"location": location, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8}})
}

fn vm_body(location: &str, disks: Value) -> Value {
    json!({
        "location": location,
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
            "storageProfile": {"dataDisks": disks},
        }
    })
}

async fn put_error(client: &ArmClient, path: &str, version: &str, body: Value) -> ArmError {
    match client
        .put::<_, Value>(path, version, &body, &WriteOptions::default())
        .await
    {
        Ok(_) => panic!("PUT {path} was accepted"),
        Err(error) => error,
    }
}

async fn get_error(client: &ArmClient, path: &str, version: &str) -> ArmError {
    match client.get::<Value>(path, version).await {
        Ok(_) => panic!("GET {path} was answered"),
        Err(error) => error,
    }
}

/// The status, code and message of a service error.
fn answer(error: &ArmError) -> (u16, String, String) {
    match error {
        ArmError::Service(service) => (
            service.status,
            service.code.clone(),
            service.message.clone(),
        ),
        other => panic!("not an answer from ARM: {other}"),
    }
}

#[tokio::test]
async fn a_group_being_deleted_takes_no_writes_and_reads_deleting() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-doomed").await;
    let disk = resource_id("rg-doomed", "Microsoft.Compute/disks", "data");
    create(client, &disk, api_version::DISKS, disk_body("westeurope")).await;
    let vm = resource_id("rg-doomed", "Microsoft.Compute/virtualMachines", "vm");
    create(
        client,
        &vm,
        api_version::COMPUTE,
        vm_body("westeurope", json!([])),
    )
    .await;
    // The group's deletion never ends, so the group stays `Deleting` for the whole test.
    world.simulator.inject(Fault::HangOperation {
        method: Some("DELETE".to_owned()),
        path_contains: "resourceGroups/rg-doomed".to_owned(),
        count: None,
    });
    let started = client
        .delete(
            &group_id("rg-doomed"),
            api_version::RESOURCES,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        started.pending().is_some(),
        "a group's delete is long-running"
    );

    let group: Value = client
        .get(&group_id("rg-doomed"), api_version::RESOURCES)
        .await
        .unwrap()
        .value;
    assert_eq!(group["properties"]["provisioningState"], "Deleting");

    let expected = (
        409,
        "ResourceGroupBeingDeleted".to_owned(),
        "The resource group 'rg-doomed' is in deprovisioning state and cannot perform this operation."
            .to_owned(),
    );
    let refused_put = put_error(client, &disk, api_version::DISKS, disk_body("westeurope")).await;
    assert_eq!(answer(&refused_put), expected);
    let new_disk = resource_id("rg-doomed", "Microsoft.Compute/disks", "late");
    let refused_create = put_error(
        client,
        &new_disk,
        api_version::DISKS,
        disk_body("westeurope"),
    )
    .await;
    assert_eq!(answer(&refused_create), expected);
    let refused_patch = client
        .patch::<_, Value>(
            &disk,
            api_version::DISKS,
            &json!({"tags": {"late": "yes"}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(answer(&refused_patch), expected);
    let refused_action = client
        .post::<Value, Value>(
            &format!("{vm}/deallocate"),
            api_version::COMPUTE,
            None,
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(answer(&refused_action), expected);
    let refused_group_put = put_error(
        client,
        &group_id("rg-doomed"),
        api_version::RESOURCES,
        json!({"location": "westeurope"}),
    )
    .await;
    assert_eq!(answer(&refused_group_put), expected);

    // Reads still answer, and what is inside is still there until the deletion ends.
    let still_there: Value = client.get(&disk, api_version::DISKS).await.unwrap().value;
    assert_eq!(still_there["name"], "data");
}

#[tokio::test]
async fn a_delete_of_a_missing_group_is_not_found_and_of_a_missing_resource_succeeds() {
    let world = start().await;
    let client = &world.client;
    let missing_group = client
        .delete(
            &group_id("rg-never"),
            api_version::RESOURCES,
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        answer(&missing_group),
        (
            404,
            "ResourceGroupNotFound".to_owned(),
            "Resource group 'rg-never' could not be found.".to_owned()
        )
    );

    create_group(client, "rg-here").await;
    let missing_disk = client
        .delete(
            &resource_id("rg-here", "Microsoft.Compute/disks", "never"),
            api_version::DISKS,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(
        matches!(missing_disk, Started::Completed(_)),
        "ARM's DELETE of a missing resource in an existing group answers 204"
    );
}

#[tokio::test]
async fn an_api_version_the_type_does_not_have_is_refused_as_arm_words_it() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-versions").await;

    // ARM's own routes (resource groups) parse and check the version themselves.
    for version in ["1999-01-01", "not-a-version"] {
        let (status, code, message) =
            answer(&get_error(client, &group_id("rg-versions"), version).await);
        assert_eq!((status, code.as_str()), (400, "InvalidApiVersionParameter"));
        assert!(
            message.starts_with(&format!(
                "The api-version '{version}' is invalid. The supported versions are '2025-04-01,"
            )),
            "{message}"
        );
        assert!(message.ends_with("'."), "{message}");
    }

    // A provider's type asked with a version it lacks, where ARM knows the region.
    let disk = resource_id("rg-versions", "Microsoft.Compute/disks", "data");
    let (status, code, message) =
        answer(&put_error(client, &disk, "1999-01-01", disk_body("westeurope")).await);
    assert_eq!((status, code.as_str()), (400, "NoRegisteredProviderFound"));
    assert!(
        message.starts_with("No registered resource provider found for location 'westeurope' and API version '1999-01-01' for type 'disks'. The supported api-versions are '2026-03-02, 2025-01-02, 2024-03-02,"),
        "{message}"
    );
    assert!(
        message.contains("'. The supported locations are '") && message.contains("westeurope"),
        "{message}"
    );
    // Disks have DiskRP's versions, not ComputeRP's: the VM's version is refused for a disk.
    let (_, code, _) =
        answer(&put_error(client, &disk, api_version::COMPUTE, disk_body("westeurope")).await);
    assert_eq!(code, "NoRegisteredProviderFound");

    create(client, &disk, api_version::DISKS, disk_body("westeurope")).await;
    let (status, code, message) = answer(&get_error(client, &disk, "1999-01-01").await);
    assert_eq!((status, code.as_str()), (400, "NoRegisteredProviderFound"));
    assert!(message.contains("for location 'westeurope'"), "{message}");

    // Without a region to route by (a read of what does not exist), the type is not found.
    let missing = resource_id("rg-versions", "Microsoft.Compute/disks", "missing");
    let refused = get_error(client, &missing, "1999-01-01").await;
    let (status, code, message) = answer(&refused);
    assert_eq!((status, code.as_str()), (404, "InvalidResourceType"));
    assert!(
        message.starts_with("The resource type 'disks' could not be found in the namespace 'Microsoft.Compute' for api version '1999-01-01'. The supported api-versions are '2026-03-02, 2025-01-02,"),
        "{message}"
    );
    assert!(
        !refused.is_not_found(),
        "a 404 that ARM could not route says nothing of the resource"
    );
    let absent = client
        .get_if_exists::<Value>(&missing, "1999-01-01")
        .await
        .unwrap_err();
    assert_eq!(absent.code(), Some("InvalidResourceType"));

    // A malformed version is refused before any type is looked at.
    let (status, code, _) = answer(&get_error(client, &disk, "not-a-version").await);
    assert_eq!((status, code.as_str()), (400, "InvalidApiVersionParameter"));

    // DNS has its own versions.
    let zone = resource_id("rg-versions", "Microsoft.Network/dnsZones", "example.org");
    let (status, code, message) = answer(&get_error(client, &zone, api_version::RESOURCES).await);
    assert_eq!((status, code.as_str()), (404, "InvalidResourceType"));
    assert!(
        message.contains("'2018-05-01'") || message.contains(" 2018-05-01,"),
        "{message}"
    );

    // The operation URLs the simulator hands out keep whatever api-version they carry.
    world.simulator.inject(Fault::HangOperation {
        method: Some("PUT".to_owned()),
        path_contains: "slow".to_owned(),
        count: Some(1),
    });
    let slow = resource_id("rg-versions", "Microsoft.Compute/disks", "slow");
    let started = client
        .put::<_, Value>(
            &slow,
            api_version::DISKS,
            &disk_body("westeurope"),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let operation = started.pending().expect("a disk create is long-running");
    client
        .poll_once::<Value>(operation)
        .await
        .expect("the operation URL is served with its own api-version");
}

#[tokio::test]
async fn unknown_types_and_namespaces_are_refused_as_arm_words_it() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-types").await;
    let typo = resource_id("rg-types", "Microsoft.Compute/virtualMachinez", "vm");
    let expected = (
        404,
        "InvalidResourceType".to_owned(),
        "The resource type 'virtualMachinez' could not be found in the namespace 'Microsoft.Compute' for api version '2025-04-01'."
            .to_owned(),
    );
    assert_eq!(
        answer(
            &put_error(
                client,
                &typo,
                api_version::COMPUTE,
                vm_body("westeurope", json!([]))
            )
            .await
        ),
        expected
    );
    assert_eq!(
        answer(&get_error(client, &typo, api_version::COMPUTE).await),
        expected
    );

    let invented = resource_id("rg-types", "Microsoft.Computer/virtualMachines", "vm");
    assert_eq!(
        answer(&get_error(client, &invented, api_version::COMPUTE).await),
        (
            400,
            "InvalidResourceNamespace".to_owned(),
            "The resource namespace 'Microsoft.Computer' is invalid.".to_owned()
        )
    );
    let unregistered = resource_id("rg-types", "Microsoft.Storage/storageAccounts", "data");
    let refused = put_error(
        client,
        &unregistered,
        "2024-01-01",
        json!({"location": "westeurope"}),
    )
    .await;
    let (status, code, message) = answer(&refused);
    assert_eq!(
        (status, code.as_str()),
        (409, "MissingSubscriptionRegistration")
    );
    assert_eq!(
        message,
        "The subscription is not registered to use namespace 'Microsoft.Storage'. See https://aka.ms/rps-not-found for how to register subscriptions."
    );
    let ArmError::Service(service) = &refused else {
        unreachable!()
    };
    assert_eq!(
        service.details[0].target.as_deref(),
        Some("Microsoft.Storage")
    );
}

#[tokio::test]
async fn a_group_or_a_resource_never_changes_region() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-region").await;
    // ARM compares normalised names: `West Europe` is `westeurope`.
    create(
        client,
        &group_id("rg-region"),
        api_version::RESOURCES,
        json!({"location": "West Europe", "tags": {"again": "yes"}}),
    )
    .await;
    assert_eq!(
        answer(
            &put_error(
                client,
                &group_id("rg-region"),
                api_version::RESOURCES,
                json!({"location": "northeurope"})
            )
            .await
        ),
        (
            409,
            "InvalidResourceGroupLocation".to_owned(),
            "Invalid resource group location 'northeurope'. The Resource group already exists in location 'westeurope'.".to_owned()
        )
    );

    let moved = |name: &str, after: &str| {
        (
            409,
            "InvalidResourceLocation".to_owned(),
            format!(
                "The resource '{name}' already exists in location 'westeurope' in resource group 'rg-region'. A resource with the same name cannot be created in location '{after}'. Please select a new resource name."
            ),
        )
    };
    let loose = resource_id("rg-region", "Microsoft.Compute/disks", "loose");
    create(client, &loose, api_version::DISKS, disk_body("westeurope")).await;
    create(client, &loose, api_version::DISKS, disk_body("West Europe")).await;
    assert_eq!(
        answer(&put_error(client, &loose, api_version::DISKS, disk_body("eastus")).await),
        moved("loose", "eastus")
    );

    let attached = resource_id("rg-region", "Microsoft.Compute/disks", "attached");
    create(
        client,
        &attached,
        api_version::DISKS,
        disk_body("westeurope"),
    )
    .await;
    let vm = resource_id("rg-region", "Microsoft.Compute/virtualMachines", "vm");
    let disks = json!([{"lun": 0, "createOption": "Attach", "managedDisk": {"id": attached}}]);
    create(
        client,
        &vm,
        api_version::COMPUTE,
        vm_body("westeurope", disks.clone()),
    )
    .await;
    assert_eq!(
        answer(&put_error(client, &attached, api_version::DISKS, disk_body("eastus")).await),
        moved("attached", "eastus")
    );
    assert_eq!(
        answer(&put_error(client, &vm, api_version::COMPUTE, vm_body("eastus", disks)).await),
        moved("vm", "eastus")
    );

    let ip = resource_id("rg-region", "Microsoft.Network/publicIPAddresses", "ip");
    create(
        client,
        &ip,
        api_version::PUBLIC_IP,
        json!({"location": "westeurope"}),
    )
    .await;
    assert_eq!(
        answer(
            &put_error(
                client,
                &ip,
                api_version::PUBLIC_IP,
                json!({"location": "uksouth"})
            )
            .await
        ),
        moved("ip", "uksouth")
    );
}

#[tokio::test]
async fn a_region_azure_does_not_have_is_refused() {
    let world = start().await;
    let client = &world.client;
    for made_up in ["local", "global", "westeurope2"] {
        let (status, code, message) = answer(
            &put_error(
                client,
                &group_id("rg-nowhere"),
                api_version::RESOURCES,
                json!({"location": made_up}),
            )
            .await,
        );
        assert_eq!(
            (status, code.as_str()),
            (400, "LocationNotAvailableForResourceGroup")
        );
        assert!(
            message.starts_with(&format!("The provided location '{made_up}' is not available for resource group. List of available regions is '")),
            "{message}"
        );
        assert!(message.contains(",westeurope,"), "{message}");
    }

    create_group(client, "rg-somewhere").await;
    let disk = resource_id("rg-somewhere", "Microsoft.Compute/disks", "data");
    let (status, code, message) =
        answer(&put_error(client, &disk, api_version::DISKS, disk_body("local")).await);
    assert_eq!(
        (status, code.as_str()),
        (400, "LocationNotAvailableForResourceType")
    );
    assert!(
        message.starts_with("The provided location 'local' is not available for resource type 'Microsoft.Compute/disks'. List of available regions for the resource type is '"),
        "{message}"
    );
    // A DNS zone is global, and only global.
    let zone = resource_id("rg-somewhere", "Microsoft.Network/dnsZones", "example.org");
    let (_, code, message) = answer(
        &put_error(
            client,
            &zone,
            api_version::DNS,
            json!({"location": "westeurope"}),
        )
        .await,
    );
    assert_eq!(code, "LocationNotAvailableForResourceType");
    assert!(message.ends_with("is 'global'."), "{message}");
    create(
        client,
        &zone,
        api_version::DNS,
        json!({"location": "global"}),
    )
    .await;
}

#[tokio::test]
async fn a_world_that_needs_a_made_up_region_names_it() {
    let world =
        support::start_with(|config| config.extra_regions = vec!["Lab One".to_owned()]).await;
    let client = &world.client;
    create(
        client,
        &group_id("rg-lab"),
        api_version::RESOURCES,
        json!({"location": "labone"}),
    )
    .await;
    let (_, code, _) = answer(
        &put_error(
            client,
            &group_id("rg-elsewhere"),
            api_version::RESOURCES,
            json!({"location": "labtwo"}),
        )
        .await,
    );
    assert_eq!(code, "LocationNotAvailableForResourceGroup");
}
