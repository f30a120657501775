//! VM restore points through ferry's client on the simulator: a collection of a VM, a
//! crash-consistent restore point of its data disks, its disk restore points listed, a disk
//! restored from each, and the collection deleted with what it holds. The requests ferry sends
//! and the answers it reads are checked, key path by key path, against the official examples
//! in `tests/fixtures/arm-examples/compute-restorepoints` (source and license in the README
//! there).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use ferry_arm::{
    CrashConsistentRestorePoint, DiskFromRestorePoint, ResourceId, RestorePointCollectionOfVm,
    StepOperations, api_version,
};
use serde_json::{Value, json};
use support::{group_id, resource_id};

fn example(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/arm-examples/compute-restorepoints")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Every key path of `value` with its JSON type; array items share the path `[]`.
fn key_paths(value: &Value, prefix: &str, found: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                let path = format!("{prefix}/{key}");
                if item.is_object() {
                    found.insert(format!("{path}: object"));
                }
                key_paths(item, &path, found);
            }
        }
        Value::Array(items) => {
            let path = format!("{prefix}[]");
            items.iter().for_each(|item| key_paths(item, &path, found));
        }
        Value::String(_) => {
            found.insert(format!("{prefix}: string"));
        }
        Value::Number(_) => {
            found.insert(format!("{prefix}: number"));
        }
        Value::Bool(_) => {
            found.insert(format!("{prefix}: bool"));
        }
        Value::Null => {}
    }
}

/// The example's key paths that `actual` lacks, but those under one of `not_produced`.
fn missing(expected: &Value, actual: &Value, not_produced: &[&str]) -> Vec<String> {
    let (mut wanted, mut have) = (BTreeSet::new(), BTreeSet::new());
    key_paths(expected, "", &mut wanted);
    key_paths(actual, "", &mut have);
    wanted
        .into_iter()
        .filter(|path| !have.contains(path))
        .filter(|path| !not_produced.iter().any(|gap| path.starts_with(gap)))
        .collect()
}

fn tags() -> BTreeMap<String, String> {
    BTreeMap::from([("ferry-drill".to_owned(), "d1".to_owned())])
}

#[tokio::test]
async fn a_drill_s_disks_come_from_one_restore_point_of_production_s_vm() {
    let world = support::start().await;
    let client = &world.client;
    for group in ["rg-prod", "rg-drill"] {
        world
            .simulator
            .seed(&group_id(group), json!({"location": "westeurope"}))
            .unwrap();
    }
    let disks: Vec<String> = ["os", "data0", "data1"]
        .iter()
        .map(|name| resource_id("rg-prod", "Microsoft.Compute/disks", name))
        .collect();
    for disk in &disks {
        world
            .simulator
            .seed(
                disk,
                json!({"location": "westeurope", "properties": {"diskSizeGB": 8, "creationData": {"createOption": "Empty"}}}),
            )
            .unwrap();
    }
    let vm = resource_id("rg-prod", "Microsoft.Compute/virtualMachines", "vm-prod");
    client
        .put_and_wait::<_, Value>(
            &vm,
            api_version::COMPUTE,
            &json!({"location": "westeurope", "properties": {
                "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
                "storageProfile": {
                    "osDisk": {"createOption": "Attach", "osType": "Linux", "managedDisk": {"id": disks[0]}},
                    "dataDisks": [
                        {"lun": 0, "createOption": "Attach", "managedDisk": {"id": disks[1]}},
                        {"lun": 1, "createOption": "Attach", "managedDisk": {"id": disks[2]}},
                    ],
                },
            }}),
            &ferry_arm::WriteOptions::default(),
        )
        .await
        .unwrap();
    let operations = StepOperations::new(client, &|_| {}, &|_| {});

    let collection_request = RestorePointCollectionOfVm {
        vm: ResourceId::parse(&vm).unwrap(),
        location: "westeurope".to_owned(),
        tags: tags(),
    };
    let collection_example = example("RestorePointCollection_CreateOrUpdate.json");
    assert_eq!(
        missing(
            &collection_example["parameters"]["parameters"],
            &collection_request.body(),
            // Tag names are the user's: ferry's are the drill's.
            &["/tags/"]
        ),
        Vec::<String>::new()
    );
    let collection = ResourceId::parse(&resource_id(
        "rg-drill",
        "Microsoft.Compute/restorePointCollections",
        "rpc-d1-vm-prod",
    ))
    .unwrap();
    let made = operations
        .create_restore_point_collection(&collection, &collection_request)
        .await
        .unwrap();
    assert_eq!(
        missing(
            &collection_example["responses"]["201"]["body"],
            &made,
            &["/tags/"]
        ),
        Vec::<String>::new()
    );

    let restore_point_request = CrashConsistentRestorePoint {
        exclude_disks: vec![ResourceId::parse(&disks[0]).unwrap()],
    };
    let restore_point_example = example("RestorePoint_Create.json");
    assert_eq!(
        missing(
            &restore_point_example["parameters"]["parameters"],
            &restore_point_request.body(),
            &[]
        ),
        Vec::<String>::new()
    );
    let restore_point = ResourceId::parse(&format!("{collection}/restorePoints/rp")).unwrap();
    let taken = operations
        .create_restore_point(&restore_point, &restore_point_request)
        .await
        .unwrap();
    // The OS disk is excluded, so the simulator shows no `osDisk`; it keeps no OS profile,
    // diagnostics, user data or caching, which a drill does not read.
    assert_eq!(
        missing(
            &restore_point_example["responses"]["201"]["body"],
            &taken,
            &[
                "/properties/sourceMetadata/osProfile",
                "/properties/sourceMetadata/diagnosticsProfile",
                "/properties/sourceMetadata/userData",
                "/properties/sourceMetadata/storageProfile/osDisk",
                "/properties/sourceMetadata/storageProfile/diskControllerType",
                "/properties/sourceMetadata/storageProfile/dataDisks[]/caching",
                "/properties/sourceMetadata/storageProfile/dataDisks[]/managedDisk/storageAccountType",
            ]
        ),
        Vec::<String>::new()
    );
    assert_eq!(taken["properties"]["consistencyMode"], "CrashConsistent");

    let listed = client.disk_restore_points(&restore_point).await.unwrap();
    let sources: Vec<&str> = listed.iter().map(|one| one.source_disk.as_str()).collect();
    assert_eq!(sources, vec![disks[1].as_str(), disks[2].as_str()]);
    let raw: Value = client
        .get(
            &format!("{restore_point}/diskRestorePoints"),
            api_version::DISKS,
        )
        .await
        .unwrap()
        .value;
    // The simulator's disk restore points carry no OS facts: they are data disks.
    assert_eq!(
        missing(
            &example("DiskRestorePoint_ListByVmRestorePoint.json")["responses"]["200"]["body"],
            &raw,
            &[
                "/value[]/properties/osType",
                "/value[]/properties/hyperVGeneration",
                "/value[]/properties/logicalSectorSize",
            ]
        ),
        Vec::<String>::new()
    );

    let copy = ResourceId::parse(&resource_id(
        "rg-drill",
        "Microsoft.Compute/disks",
        "data0-drill",
    ))
    .unwrap();
    let disk = operations
        .create_disk_from_restore_point(
            &copy,
            &DiskFromRestorePoint {
                disk_restore_point: listed[0].id.clone(),
                location: "westeurope".to_owned(),
                zone: None,
                sku: Some("Premium_LRS".to_owned()),
                tags: tags(),
            },
        )
        .await
        .unwrap();
    assert_eq!(
        disk["properties"]["creationData"]["createOption"],
        "Restore"
    );
    assert_eq!(disk["properties"]["diskSizeGB"], 8);
    assert_eq!(disk["tags"]["ferry-drill"], "d1");

    // A disk id where a disk restore point belongs is refused before anything is sent.
    let refused = operations
        .create_disk_from_restore_point(
            &copy,
            &DiskFromRestorePoint {
                disk_restore_point: ResourceId::parse(&disks[1]).unwrap(),
                location: "westeurope".to_owned(),
                zone: None,
                sku: None,
                tags: BTreeMap::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("is not a disk restore point (its type is Microsoft.Compute/disks)"),
        "{refused}"
    );

    operations
        .delete_restore_point_collection(&collection)
        .await
        .unwrap();
    // Gone with its restore points; deleting again is success.
    assert!(
        client
            .read::<Value>(&restore_point)
            .await
            .unwrap()
            .is_none()
    );
    operations
        .delete_restore_point_collection(&collection)
        .await
        .unwrap();
    // The restored disk stays.
    assert!(client.read::<Value>(&copy).await.unwrap().is_some());
}
