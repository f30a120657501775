//! VM restore points on the simulator, through ARM's HTTP API with ferry's own client: a
//! restore point holds all its VM's data disks at one moment (what each disk held when the
//! PUT was accepted), a disk restored from a disk restore point starts with that moment's
//! data, deleting the collection takes its restore points, and every refusal carries Azure's
//! status and code.
//!
//! The bodies follow ComputeRP 2024-11-01's restorePoint.json and its examples
//! (`RestorePointCollection_CreateOrUpdate.json`, `RestorePoint_Create.json`) and DiskRP
//! 2025-01-02's `DiskRestorePoint_ListByVmRestorePoint.json`, copied into
//! `crates/ferry-arm/tests/fixtures/arm-examples/compute-restorepoints`.

use ferry_arm::api_version::{COMPUTE, DISKS, RESOURCES};
use ferry_arm::{ArmClient, Started, WriteOptions};
use serde_json::{Value, json};

mod support;

use support::*;

fn collection_id(group: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/restorePointCollections/{name}",
        group_id(group)
    )
}

/// A running VM with `disks` at LUNs 0, 1, ...: the paths where a test writes each disk's data.
async fn vm_with_disks(
    world: &World,
    group: &str,
    name: &str,
    location: &str,
    disks: &[&str],
) -> Vec<std::path::PathBuf> {
    let vm = vm_id(group, name);
    let data_disks: Vec<Value> = disks
        .iter()
        .enumerate()
        .map(|(lun, disk)| json!({"lun": lun, "createOption": "Attach", "managedDisk": {"id": disk}}))
        .collect();
    create(
        &world.client,
        &vm,
        COMPUTE,
        json!({
            "location": location,
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
                "storageProfile": {"dataDisks": data_disks},
            }
        }),
    )
    .await;
    let folder = world.simulator.attachment_directory(&vm);
    (0..disks.len())
        .map(|lun| folder.join(format!("lun{lun}")))
        .collect()
}

fn collection_for(location: &str, vm: &str) -> Value {
    json!({"location": location, "tags": {"ferry-drill": "d1"}, "properties": {"source": {"id": vm}}})
}

fn crash_consistent() -> Value {
    json!({"properties": {"consistencyMode": "CrashConsistent"}})
}

fn restored_from(location: &str, disk_restore_point: &str) -> Value {
    json!({"location": location, "properties": {"creationData": {"createOption": "Restore", "sourceResourceId": disk_restore_point}}})
}

async fn get_refused(client: &ArmClient, path: &str, version: &str) -> String {
    match client.get::<Value>(path, version).await {
        Ok(_) => panic!("GET {path} was answered"),
        Err(error) => answer(&error),
    }
}

/// A VM in `rg-prod` with two data disks, each holding its own text.
async fn production(world: &World) -> (String, Vec<String>, Vec<std::path::PathBuf>) {
    let client = &world.client;
    create_group(client, "rg-prod", "westeurope").await;
    create_group(client, "rg-drill", "westeurope").await;
    let disks = vec![disk_id("rg-prod", "data0"), disk_id("rg-prod", "data1")];
    for disk in &disks {
        create(client, disk, DISKS, empty_disk("westeurope", 8)).await;
    }
    let names: Vec<&str> = disks.iter().map(String::as_str).collect();
    let devices = vm_with_disks(world, "rg-prod", "vm-prod", "westeurope", &names).await;
    (vm_id("rg-prod", "vm-prod"), disks, devices)
}

#[tokio::test]
async fn a_restore_point_holds_every_data_disk_at_the_moment_its_put_was_accepted() {
    let world = start().await;
    let client = &world.client;
    let (vm, disks, devices) = production(&world).await;
    write_at(&devices[0], DATA_OFFSET, b"disk 0 at the restore point");
    write_at(&devices[1], DATA_OFFSET, b"disk 1 at the restore point");

    let collection = collection_id("rg-drill", "rpc-drill");
    let made = create(
        client,
        &collection,
        COMPUTE,
        collection_for("westeurope", &vm),
    )
    .await;
    assert_eq!(made["type"], "Microsoft.Compute/restorePointCollections");
    assert_eq!(made["properties"]["provisioningState"], "Succeeded");
    assert_eq!(made["properties"]["source"]["id"], vm);
    assert_eq!(made["properties"]["source"]["location"], "westeurope");
    assert!(made["properties"]["restorePointCollectionId"].is_string());
    assert_eq!(made["tags"]["ferry-drill"], "d1");

    let restore_point = format!("{collection}/restorePoints/rp-drill");
    let started = client
        .put::<_, Value>(
            &restore_point,
            COMPUTE,
            &crash_consistent(),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let Started::Pending(operation) = started else {
        panic!("a restore point's PUT is long-running");
    };
    // Writes after the PUT was accepted, one disk after the other, are in no copy.
    write_at(&devices[0], DATA_OFFSET, b"disk 0 written after, changed!");
    write_at(&devices[1], DATA_OFFSET, b"disk 1 written after, changed!");
    client.wait::<Value>(&operation).await.unwrap();

    let read: Value = client.get(&restore_point, COMPUTE).await.unwrap().value;
    let properties = &read["properties"];
    assert_eq!(properties["provisioningState"], "Succeeded");
    assert_eq!(properties["consistencyMode"], "CrashConsistent");
    let data_disks = properties["sourceMetadata"]["storageProfile"]["dataDisks"]
        .as_array()
        .unwrap();
    assert_eq!(data_disks.len(), 2);
    assert_eq!(data_disks[1]["lun"], 1);
    assert_eq!(data_disks[1]["managedDisk"]["id"], disks[1]);

    let listed: Value = client
        .get(&format!("{restore_point}/diskRestorePoints"), DISKS)
        .await
        .unwrap()
        .value;
    let listed = listed["value"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    for (lun, disk) in disks.iter().enumerate() {
        let disk_restore_point = data_disks[lun]["diskRestorePoint"]["id"].as_str().unwrap();
        let entry = listed
            .iter()
            .find(|entry| entry["id"] == disk_restore_point)
            .unwrap_or_else(|| panic!("{disk_restore_point} is not listed"));
        assert_eq!(entry["properties"]["sourceResourceId"], *disk);
        let one: Value = client.get(disk_restore_point, DISKS).await.unwrap().value;
        assert_eq!(one["id"], disk_restore_point);

        let restored = disk_id("rg-drill", &format!("data{lun}-drill"));
        let made = create(
            client,
            &restored,
            DISKS,
            restored_from("westeurope", disk_restore_point),
        )
        .await;
        assert_eq!(made["properties"]["diskSizeGB"], 8);
        assert_eq!(
            made["properties"]["creationData"]["createOption"],
            "Restore"
        );
        let device = vm_with_disks(
            &world,
            "rg-drill",
            &format!("vm-drill{lun}"),
            "westeurope",
            &[&restored],
        )
        .await;
        assert_eq!(
            read_at(&device[0], DATA_OFFSET, 27),
            format!("disk {lun} at the restore point").as_bytes()
        );
    }

    // A drill's clean-up finds the collection by its tag (restore points are not top-level
    // resources, so ARM's list shows only the collection), and nothing once it is deleted.
    let tagged = || async {
        let listed: Vec<Value> = client
            .list_with_query(
                &format!("/subscriptions/{SUBSCRIPTION}/resources"),
                RESOURCES,
                &[(
                    "$filter".to_owned(),
                    "tagName eq 'ferry-drill' and tagValue eq 'd1'".to_owned(),
                )],
            )
            .await
            .unwrap();
        listed
            .iter()
            .map(|item| item["id"].as_str().unwrap().to_owned())
            .collect::<Vec<String>>()
    };
    assert_eq!(tagged().await, vec![collection.clone()]);
    // Deleting the collection takes its restore points and their disk restore points.
    client
        .delete_and_wait(&collection, COMPUTE, &WriteOptions::default())
        .await
        .unwrap();
    let first = data_disks[0]["diskRestorePoint"]["id"].as_str().unwrap();
    assert!(
        get_refused(client, &restore_point, COMPUTE)
            .await
            .starts_with("404 ResourceNotFound")
    );
    assert!(
        get_refused(client, first, DISKS)
            .await
            .starts_with("404 ResourceNotFound")
    );
    assert_eq!(tagged().await, Vec::<String>::new());
    // The restored disks keep their data.
    let device = world
        .simulator
        .attachment_directory(&vm_id("rg-drill", "vm-drill0"))
        .join("lun0");
    assert_eq!(
        read_at(&device, DATA_OFFSET, 27),
        b"disk 0 at the restore point"
    );
}

#[tokio::test]
async fn an_excluded_disk_has_no_disk_restore_point() {
    let world = start().await;
    let client = &world.client;
    let (vm, disks, _) = production(&world).await;
    let collection = collection_id("rg-drill", "rpc");
    create(
        client,
        &collection,
        COMPUTE,
        collection_for("westeurope", &vm),
    )
    .await;
    let restore_point = format!("{collection}/restorePoints/rp");
    let read = create(
        client,
        &restore_point,
        COMPUTE,
        json!({"properties": {"consistencyMode": "CrashConsistent", "excludeDisks": [{"id": disks[0]}]}}),
    )
    .await;
    let data_disks = read["properties"]["sourceMetadata"]["storageProfile"]["dataDisks"]
        .as_array()
        .unwrap();
    assert_eq!(data_disks.len(), 1);
    assert_eq!(data_disks[0]["managedDisk"]["id"], disks[1]);
}

#[tokio::test]
async fn every_refusal_carries_azure_s_code() {
    let world = start().await;
    let client = &world.client;
    let (vm, disks, _) = production(&world).await;
    create_group(client, "rg-east", "eastus").await;

    let missing_vm = vm_id("rg-prod", "vm-gone");
    assert_eq!(
        put_refused(
            client,
            &collection_id("rg-drill", "rpc-gone"),
            COMPUTE,
            collection_for("westeurope", &missing_vm)
        )
        .await,
        "404 NotFound: The entity was not found: virtual machine vm-gone does not exist."
    );
    assert!(
        put_refused(client, &collection_id("rg-east", "rpc-east"), COMPUTE, collection_for("eastus", &vm))
            .await
            .starts_with("400 BadRequest: the restore point collection is in eastus but its source virtual machine vm-prod is in westeurope")
    );
    assert!(
        put_refused(
            client,
            &collection_id("rg-drill", "rpc-none"),
            COMPUTE,
            json!({"location": "westeurope", "properties": {}})
        )
        .await
        .starts_with("400 InvalidParameter: Required parameter 'source.id'")
    );
    assert!(
        put_refused(
            client,
            &format!(
                "{}/restorePoints/rp",
                collection_id("rg-drill", "rpc-absent")
            ),
            COMPUTE,
            crash_consistent()
        )
        .await
        .starts_with("404 ParentResourceNotFound")
    );

    let collection = collection_id("rg-drill", "rpc");
    create(
        client,
        &collection,
        COMPUTE,
        collection_for("westeurope", &vm),
    )
    .await;
    let other_vm_disks = vm_id("rg-prod", "vm-other");
    assert!(
        put_refused(
            client,
            &collection,
            COMPUTE,
            collection_for("westeurope", &other_vm_disks)
        )
        .await
        .starts_with("400 BadRequest: only tags may be modified")
    );
    assert!(
        put_refused(
            client,
            &format!("{collection}/restorePoints/rp-odd"),
            COMPUTE,
            json!({"properties": {"consistencyMode": "Sometimes"}})
        )
        .await
        .starts_with("400 InvalidParameter: The value 'Sometimes'")
    );
    assert!(
        put_refused(
            client,
            &format!("{collection}/restorePoints/rp-foreign"),
            COMPUTE,
            json!({"properties": {"excludeDisks": [{"id": disk_id("rg-prod", "elsewhere")}]}})
        )
        .await
        .starts_with("400 InvalidParameter: Disk ")
    );
    let restore_point = format!("{collection}/restorePoints/rp");
    let read = create(client, &restore_point, COMPUTE, crash_consistent()).await;
    assert!(
        put_refused(client, &restore_point, COMPUTE, crash_consistent())
            .await
            .starts_with("409 OperationNotAllowed: Updating properties of an existing restore point is not allowed")
    );
    let disk_restore_point = read["properties"]["sourceMetadata"]["storageProfile"]["dataDisks"][0]
        ["diskRestorePoint"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        put_refused(
            client,
            &disk_restore_point,
            DISKS,
            json!({"properties": {}})
        )
        .await
        .starts_with("405 MethodNotAllowed")
    );
    // A disk restored in another region does not find the disk restore point.
    assert_eq!(
        put_refused(
            client,
            &disk_id("rg-east", "data0-east"),
            DISKS,
            restored_from("eastus", &disk_restore_point)
        )
        .await,
        format!(
            "404 NotFound: Resource {} is not found.",
            disk_restore_point.rsplit('/').next().unwrap()
        )
    );
    assert!(
        put_refused(client, &disk_id("rg-drill", "data0-none"), DISKS, json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Restore"}}}))
            .await
            .starts_with("400 InvalidParameter: Required parameter 'sourceResourceId'")
    );
    assert!(
        put_refused(
            client,
            &disk_id("rg-drill", "data0-disk"),
            DISKS,
            restored_from("westeurope", &disks[0])
        )
        .await
        .starts_with(
            "400 InvalidParameter: the simulator restores disks from a disk restore point only"
        )
    );
}
