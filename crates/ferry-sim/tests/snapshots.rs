//! Managed-disk snapshots on the simulator, through ARM's HTTP API with ferry's own client: a
//! snapshot keeps the data of its moment, a disk copied from it starts with that data, and
//! every refusal carries Azure's status and code.
//!
//! No official snapshot example is stored in the repository (`/work/shared/arm-examples` had
//! none): the bodies follow DiskRP 2025-01-02's snapshot.json and diskRPCommon.json
//! (`Snapshot`, `SnapshotProperties`, `CreationData`).

use ferry_arm::api_version::{COMPUTE, DISKS, RESOURCES};
use ferry_arm::{Started, WriteOptions};
use ferry_sim::Fault;
use serde_json::{Value, json};

mod support;

use support::*;

fn snapshot_id(group: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/snapshots/{name}",
        group_id(group)
    )
}

fn copy_of(location: &str, source: &str) -> Value {
    json!({"location": location, "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}}})
}

fn incremental_copy_of(location: &str, source: &str) -> Value {
    json!({
        "location": location,
        "sku": {"name": "Standard_ZRS"},
        "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}, "incremental": true},
    })
}

/// A running VM with `disk` at LUN 0: the disk's `lun0` link is where a test writes and reads.
async fn attach_to_new_vm(
    world: &World,
    group: &str,
    name: &str,
    disk: &str,
) -> std::path::PathBuf {
    let vm = vm_id(group, name);
    create(
        &world.client,
        &vm,
        COMPUTE,
        json!({
            "location": "westeurope",
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
                "storageProfile": {"dataDisks": [{"lun": 0, "createOption": "Attach", "managedDisk": {"id": disk}}]},
            }
        }),
    )
    .await;
    world.simulator.attachment_directory(&vm).join("lun0")
}

#[tokio::test]
async fn a_disk_copied_from_a_snapshot_holds_the_data_of_the_snapshot_s_moment() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-data", "westeurope").await;
    let source = disk_id("rg-data", "data0");
    create(client, &source, DISKS, empty_disk("westeurope", 8)).await;
    let device = attach_to_new_vm(&world, "rg-data", "vm-primary", &source).await;
    write_at(&device, DATA_OFFSET, b"pool at the snapshot's moment");

    // Taken while the disk is attached, as Azure allows (a crash-consistent copy).
    let snapshot = snapshot_id("rg-data", "data0-drill");
    let started = client
        .put::<_, Value>(
            &snapshot,
            DISKS,
            &incremental_copy_of("westeurope", &source),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let Started::Pending(operation) = started else {
        panic!("a snapshot's PUT is long-running");
    };
    // What the disk receives after the PUT was accepted is not in the snapshot, even while its
    // operation still runs.
    write_at(&device, DATA_OFFSET, b"pool after the snapshot, changed");
    client.wait::<Value>(&operation).await.unwrap();

    let read: Value = client.get(&snapshot, DISKS).await.unwrap().value;
    let disk: Value = client.get(&source, DISKS).await.unwrap().value;
    let properties = &read["properties"];
    assert_eq!(properties["provisioningState"], "Succeeded");
    assert_eq!(properties["incremental"], true);
    assert_eq!(properties["diskSizeGB"], 8);
    assert_eq!(properties["diskSizeBytes"], 8_i64 << 30);
    assert_eq!(properties["creationData"]["createOption"], "Copy");
    assert_eq!(properties["creationData"]["sourceResourceId"], source);
    assert_eq!(
        properties["creationData"]["sourceUniqueId"],
        disk["properties"]["uniqueId"]
    );
    assert!(
        properties["timeCreated"]
            .as_str()
            .is_some_and(|time| time.ends_with('Z'))
    );
    assert!(properties["incrementalSnapshotFamilyId"].is_string());
    assert_eq!(
        read["sku"],
        json!({"name": "Standard_ZRS", "tier": "Standard"})
    );
    assert_eq!(read["type"], "Microsoft.Compute/snapshots");

    let restored = disk_id("rg-data", "data0-restored");
    let copied = create(client, &restored, DISKS, copy_of("westeurope", &snapshot)).await;
    assert_eq!(copied["properties"]["diskSizeGB"], 8);
    assert_eq!(
        copied["properties"]["creationData"]["sourceUniqueId"],
        properties["uniqueId"]
    );
    let restored_device = attach_to_new_vm(&world, "rg-data", "vm-drill", &restored).await;
    assert_eq!(
        read_at(&restored_device, DATA_OFFSET, 32),
        b"pool at the snapshot's moment\0\0\0"
    );
    // The source disk keeps its own later data.
    assert_eq!(
        read_at(&device, DATA_OFFSET, 32),
        b"pool after the snapshot, changed"
    );
    // A write on the copy reaches neither the snapshot nor the source.
    write_at(&restored_device, DATA_OFFSET, b"drill");
    let again = disk_id("rg-data", "data0-again");
    create(client, &again, DISKS, copy_of("westeurope", &snapshot)).await;
    let again_device = attach_to_new_vm(&world, "rg-data", "vm-again", &again).await;
    assert_eq!(read_at(&again_device, DATA_OFFSET, 5), b"pool ");
}

#[tokio::test]
async fn a_snapshot_outlives_its_disk_and_goes_with_its_delete() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-life", "westeurope").await;
    let source = disk_id("rg-life", "data0");
    create(client, &source, DISKS, empty_disk("westeurope", 4)).await;
    let device = attach_to_new_vm(&world, "rg-life", "vm", &source).await;
    write_at(&device, DATA_OFFSET, b"kept");
    let snapshot = snapshot_id("rg-life", "data0-snap");
    create(
        client,
        &snapshot,
        DISKS,
        incremental_copy_of("westeurope", &source),
    )
    .await;

    // Deleting a disk that has incremental snapshots is allowed; the snapshots stay usable.
    client
        .delete_and_wait(&vm_id("rg-life", "vm"), COMPUTE, &WriteOptions::default())
        .await
        .unwrap();
    client
        .delete_and_wait(&source, DISKS, &WriteOptions::default())
        .await
        .unwrap();
    assert!(
        client
            .get_if_exists::<Value>(&source, DISKS)
            .await
            .unwrap()
            .is_none()
    );
    let restored = disk_id("rg-life", "restored");
    create(client, &restored, DISKS, copy_of("westeurope", &snapshot)).await;
    let restored_device = attach_to_new_vm(&world, "rg-life", "vm-drill", &restored).await;
    assert_eq!(read_at(&restored_device, DATA_OFFSET, 4), b"kept");

    // A snapshot's DELETE is long-running, and deleting what is gone is a 204.
    let started = client
        .delete(&snapshot, DISKS, &WriteOptions::default())
        .await
        .unwrap();
    let Started::Pending(operation) = started else {
        panic!("a snapshot's DELETE is long-running");
    };
    let deleting: Value = client.get(&snapshot, DISKS).await.unwrap().value;
    assert_eq!(deleting["properties"]["provisioningState"], "Deleting");
    client.wait::<Value>(&operation).await.unwrap();
    assert!(
        client
            .get_if_exists::<Value>(&snapshot, DISKS)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        client
            .delete(&snapshot, DISKS, &WriteOptions::default())
            .await
            .unwrap(),
        Started::Completed(None)
    ));
    let error = put_refused(
        client,
        &disk_id("rg-life", "late"),
        DISKS,
        copy_of("westeurope", &snapshot),
    )
    .await;
    assert_eq!(error, "404 NotFound: Resource data0-snap is not found.");
}

#[tokio::test]
async fn snapshots_are_listed_by_group_and_by_subscription_in_pages() {
    let world = start_with(|config| config.page_size = 2).await;
    let client = &world.client;
    create_group(client, "rg-a", "westeurope").await;
    create_group(client, "rg-b", "westeurope").await;
    let source = disk_id("rg-a", "data0");
    create(client, &source, DISKS, empty_disk("westeurope", 4)).await;
    for (group, name) in [
        ("rg-a", "s1"),
        ("rg-a", "s2"),
        ("rg-a", "s3"),
        ("rg-b", "s4"),
    ] {
        create(
            client,
            &snapshot_id(group, name),
            DISKS,
            copy_of("westeurope", &source),
        )
        .await;
    }
    let names = |items: Vec<Value>| -> Vec<String> {
        items
            .iter()
            .map(|item| item["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let in_group = format!("{}/providers/Microsoft.Compute/snapshots", group_id("rg-a"));
    let first_page: Value = client.get(&in_group, DISKS).await.unwrap().value;
    assert_eq!(first_page["value"].as_array().unwrap().len(), 2);
    assert!(first_page["nextLink"].is_string());
    assert_eq!(
        names(client.list(&in_group, DISKS).await.unwrap()),
        ["s1", "s2", "s3"]
    );
    let in_subscription =
        format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/snapshots");
    let mut everywhere = names(client.list(&in_subscription, DISKS).await.unwrap());
    everywhere.sort();
    assert_eq!(everywhere, ["s1", "s2", "s3", "s4"]);
    // The disks' lists do not carry snapshots.
    let disks: Vec<Value> = client
        .list(
            &format!("{}/providers/Microsoft.Compute/disks", group_id("rg-a")),
            DISKS,
        )
        .await
        .unwrap();
    assert_eq!(names(disks), ["data0"]);
}

#[tokio::test]
async fn every_refusal_carries_azure_s_code() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-no", "westeurope").await;
    create_group(client, "rg-far", "northeurope").await;
    let source = disk_id("rg-no", "data0");
    create(client, &source, DISKS, empty_disk("westeurope", 16)).await;
    let far_disk = disk_id("rg-far", "far0");
    create(client, &far_disk, DISKS, empty_disk("northeurope", 16)).await;
    let snapshot = snapshot_id("rg-no", "snap");
    create(client, &snapshot, DISKS, copy_of("westeurope", &source)).await;
    let target = snapshot_id("rg-no", "refused");
    let new_disk = disk_id("rg-no", "refused");
    let cases: Vec<(&str, String, &str, Value)> = vec![
        (
            "a snapshot without creationData",
            target.clone(),
            DISKS,
            json!({"location": "westeurope", "properties": {}}),
        ),
        (
            "a snapshot without createOption",
            target.clone(),
            DISKS,
            json!({"location": "westeurope", "properties": {"creationData": {"sourceResourceId": source}}}),
        ),
        (
            "a snapshot with an unknown createOption",
            target.clone(),
            DISKS,
            json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Clone", "sourceResourceId": source}}}),
        ),
        (
            "a disk with an unknown createOption",
            new_disk.clone(),
            DISKS,
            json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Clone"}, "diskSizeGB": 16}}),
        ),
        (
            "a Copy without sourceResourceId",
            target.clone(),
            DISKS,
            json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Copy"}}}),
        ),
        (
            "a snapshot of a disk that does not exist",
            target.clone(),
            DISKS,
            copy_of("westeurope", &disk_id("rg-no", "ghost")),
        ),
        (
            "a snapshot of what is neither a disk nor a snapshot",
            target.clone(),
            DISKS,
            copy_of("westeurope", &vm_id("rg-no", "vm")),
        ),
        (
            "a snapshot of a disk in another region",
            target.clone(),
            DISKS,
            incremental_copy_of("westeurope", &far_disk),
        ),
        (
            "a disk copied from a snapshot in another region",
            disk_id("rg-far", "copy"),
            DISKS,
            copy_of("northeurope", &snapshot),
        ),
        (
            "a disk smaller than its snapshot",
            new_disk.clone(),
            DISKS,
            json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": snapshot}, "diskSizeGB": 8}}),
        ),
        (
            "a snapshot with a disk's SKU",
            target.clone(),
            DISKS,
            json!({"location": "westeurope", "sku": {"name": "StandardSSD_LRS"}, "properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}}}),
        ),
        (
            "a snapshot without a location",
            target.clone(),
            DISKS,
            json!({"properties": {"creationData": {"createOption": "Copy", "sourceResourceId": source}}}),
        ),
        (
            "a snapshot at an api-version DiskRP does not have",
            target.clone(),
            "2025-04-01",
            copy_of("westeurope", &source),
        ),
        (
            "a snapshot in a group that does not exist",
            snapshot_id("rg-ghost", "snap"),
            DISKS,
            copy_of("westeurope", &source),
        ),
    ];
    let mut rendered = Vec::new();
    for (what, path, version, body) in cases {
        let line = put_refused(client, &path, version, body).await;
        rendered.push(format!("{what}\n  {line}"));
    }
    insta::assert_snapshot!(rendered.join("\n"));

    // The new resource is never stored by a refused PUT.
    assert!(
        client
            .get_if_exists::<Value>(&target, DISKS)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .get_if_exists::<Value>(&new_disk, DISKS)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_snapshot_waits_for_a_move_of_its_group_and_for_its_own_write() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-src", "westeurope").await;
    create_group(client, "rg-dst", "westeurope").await;
    let source = disk_id("rg-src", "data0");
    create(client, &source, DISKS, empty_disk("westeurope", 4)).await;
    // The move never ends, so both groups stay locked for the whole test.
    world.simulator.inject(Fault::HangOperation {
        method: Some("POST".to_owned()),
        path_contains: "moveResources".to_owned(),
        count: None,
    });
    let started = client
        .post::<_, Value>(
            &format!("{}/moveResources", group_id("rg-src")),
            RESOURCES,
            Some(&json!({"resources": [source], "targetResourceGroup": group_id("rg-dst")})),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(started.pending().is_some());
    let mut rendered = Vec::new();
    for (what, snapshot) in [
        (
            "in the group the disk moves out of",
            snapshot_id("rg-src", "snap"),
        ),
        (
            "in the group the disk moves into",
            snapshot_id("rg-dst", "snap"),
        ),
    ] {
        let line = put_refused(client, &snapshot, DISKS, copy_of("westeurope", &source)).await;
        rendered.push(format!("a snapshot {what}\n  {line}"));
    }
    insta::assert_snapshot!(rendered.join("\n"));

    // A second write on a snapshot whose create still runs is Compute's conflict.
    let other = start().await;
    create_group(&other.client, "rg-busy", "westeurope").await;
    let disk = disk_id("rg-busy", "data0");
    create(&other.client, &disk, DISKS, empty_disk("westeurope", 4)).await;
    other.simulator.inject(Fault::HangOperation {
        method: Some("PUT".to_owned()),
        path_contains: "snapshots/slow".to_owned(),
        count: Some(1),
    });
    let slow = snapshot_id("rg-busy", "slow");
    other
        .client
        .put::<_, Value>(
            &slow,
            DISKS,
            &copy_of("westeurope", &disk),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let line = put_refused(&other.client, &slow, DISKS, copy_of("westeurope", &disk)).await;
    assert_eq!(
        line,
        "409 ConflictingConcurrentWriteNotAllowed: The operation was interrupted by a conflicting concurrent write on the same entity. Please retry later."
    );
}

#[tokio::test]
async fn a_disk_copied_from_a_disk_or_a_snapshot_from_a_snapshot_carries_the_data_too() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-copy", "westeurope").await;
    let source = disk_id("rg-copy", "data0");
    create(client, &source, DISKS, empty_disk("westeurope", 4)).await;
    let device = attach_to_new_vm(&world, "rg-copy", "vm", &source).await;
    write_at(&device, DATA_OFFSET, b"original");

    let clone = disk_id("rg-copy", "clone");
    let cloned = create(client, &clone, DISKS, copy_of("westeurope", &source)).await;
    assert_eq!(cloned["properties"]["diskSizeGB"], 4);
    let first = snapshot_id("rg-copy", "first");
    create(client, &first, DISKS, copy_of("westeurope", &source)).await;
    let second = snapshot_id("rg-copy", "second");
    let copied = create(client, &second, DISKS, copy_of("westeurope", &first)).await;
    assert_eq!(copied["properties"]["incremental"], false);
    write_at(&device, DATA_OFFSET, b"changed!");

    let from_second = disk_id("rg-copy", "from-second");
    create(client, &from_second, DISKS, copy_of("westeurope", &second)).await;
    for (vm, disk) in [("vm-clone", &clone), ("vm-second", &from_second)] {
        let copy_device = attach_to_new_vm(&world, "rg-copy", vm, disk).await;
        assert_eq!(read_at(&copy_device, DATA_OFFSET, 8), b"original", "{disk}");
    }
}
