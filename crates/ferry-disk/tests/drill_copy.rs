//! A failover drill's disk through the disk provider on the ARM simulator: a create with
//! `copy_of` (what `ferry drill` writes into the drill's spec) of a production disk attached
//! to a VM takes one restore point of that VM in the drill's group, only reading the VM and
//! its disk, makes the drill's disk from its disk restore point, attaches it to the drill's
//! VM with the restore point's moment on it; a step run again reuses the restore point; a
//! create without the drill's tag is refused; the drill's clean-up leaves nothing tagged.

use ferry_arm::{ResourceId, StepOperations};
use ferry_core::Action;
use ferry_disk::DiskProvider;
use ferry_disk::copies::{DrillTag, remove_copies};
use ferry_testkit::provider_harness::{Harness, attributes, instance, read_at, write_at};
use serde_json::json;

#[tokio::test]
async fn a_drills_disk_is_a_copy_of_productions_which_is_only_read() {
    let harness = Harness::start(&[
        (
            "resource_group.main",
            json!({"name": "data-g${generation}"}),
        ),
        (
            "vm.nfs",
            json!({"name": "nfs-g${generation}", "resource_group": "resource_group.main"}),
        ),
        (
            "disk.home",
            json!({"name": "home0", "resource_group": "resource_group.main"}),
        ),
        (
            "disk.copy",
            json!({"name": "home0-drill", "resource_group": "resource_group.main"}),
        ),
    ])
    .await;
    // Generation 1 is production's; generation 2 stands for the drill's group and VM.
    harness.seed_group("resource_group.main@g1", "data-g1");
    harness.seed_group("resource_group.main@g2", "data-g1-drill");
    harness.seed_vm("vm.nfs@g1", "data-g1", "nfs-g1");
    harness.seed_vm("vm.nfs@g2", "data-g1-drill", "nfs-g1-drill");
    let provider = DiskProvider::new(harness.azure.clone());
    let production = harness
        .apply(
            &provider,
            &instance("disk.home"),
            Action::Create,
            &attributes(json!({
                "name": "home0", "resource_group": "resource_group.main@g1",
                "location": "westeurope", "size_gb": 64, "sku": "Premium_LRS",
                "vm": "vm.nfs@g1", "lun": 0
            })),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    let production_id = production["id"].as_str().unwrap().to_owned();
    let production_device = harness
        .simulator
        .attachment_directory("nfs-g1")
        .join("lun0");
    write_at(&production_device, b"the pool at the drill");
    let mark = harness.simulator.events().len();

    let copy_fields = |tags: serde_json::Value| {
        attributes(json!({
            "name": "home0-drill", "resource_group": "resource_group.main@g2",
            "location": "westeurope", "size_gb": 64, "sku": "Premium_LRS",
            "vm": "vm.nfs@g2", "lun": 0, "copy_of": production_id, "tags": tags
        }))
    };
    let refused = harness
        .apply(
            &provider,
            &instance("disk.copy"),
            Action::Create,
            &copy_fields(json!({})),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(!refused.transient);
    assert_eq!(
        refused.message,
        "disk.copy: a copy carries the drill's tag (ferry-drill), which this step lacks: ferry drill sets it; drill again"
    );

    let copied = harness
        .apply(
            &provider,
            &instance("disk.copy"),
            Action::Create,
            &copy_fields(json!({"ferry-drill": "d1"})),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(copied["disk_state"], json!("Attached"));
    let copy_id = copied["id"].as_str().unwrap().to_owned();
    assert!(
        copy_id.contains("/resourceGroups/data-g1-drill/"),
        "{copy_id}"
    );
    // Production goes on writing; the drill's disk holds the restore point's moment.
    write_at(&production_device, b"production after it!!");
    let drill_device = harness
        .simulator
        .attachment_directory("nfs-g1-drill")
        .join("lun0");
    assert_eq!(read_at(&drill_device, 21), b"the pool at the drill");
    // The restore point is the drill's, named for the drill and production's VM.
    let collection = ResourceId::parse(&format!(
        "{}/providers/Microsoft.Compute/restorePointCollections/rpc-d1-nfs-g1",
        harness.group_id("data-g1-drill")
    ))
    .unwrap();
    let restore_point = ResourceId::parse(&format!("{collection}/restorePoints/rp-d1")).unwrap();
    let points = harness
        .azure
        .client()
        .disk_restore_points(&restore_point)
        .await
        .unwrap();
    assert_eq!(points.len(), 1, "{points:?}");
    assert!(points[0].source_disk.eq_ignore_ascii_case(&production_id));
    // Done again (a retried step), it finds the copy made.
    harness
        .apply(
            &provider,
            &instance("disk.copy"),
            Action::Create,
            &copy_fields(json!({"ferry-drill": "d1"})),
            Vec::new(),
            None,
        )
        .await
        .unwrap();

    // Production's disk and VM were only read: no request but a GET named them.
    let production_vm = format!(
        "{}/providers/Microsoft.Compute/virtualMachines/nfs-g1",
        harness.group_id("data-g1")
    )
    .to_ascii_lowercase();
    let production_lower = production_id.to_ascii_lowercase();
    let writes: Vec<String> = harness
        .simulator
        .events()
        .into_iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.method != "GET")
        .filter(|event| {
            let path = event.path.to_ascii_lowercase();
            path.starts_with(&production_lower) || path.starts_with(&production_vm)
        })
        .map(|event| format!("{} {}", event.method, event.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new());

    // The clean-up, in the order the drill's clean-up plans it: an attached disk is not
    // deleted (ARM refuses), so its VM goes first, which leaves it unattached; then the disk;
    // then the restore point collection with its restore point, and nothing tagged is left.
    static RECORD: fn(String) = |_| {};
    static SAY: fn(String) = |_| {};
    let operations = StepOperations::new(harness.azure.client(), &RECORD, &SAY);
    let drill_vm = ResourceId::parse(&format!(
        "{}/providers/Microsoft.Compute/virtualMachines/nfs-g1-drill",
        harness.group_id("data-g1-drill")
    ))
    .unwrap();
    operations.delete(&drill_vm).await.unwrap();
    harness
        .apply(
            &provider,
            &instance("disk.copy"),
            Action::Delete,
            &copy_fields(json!({"ferry-drill": "d1"})),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    let drill_group = ResourceId::parse(&harness.group_id("data-g1-drill")).unwrap();
    let tag = DrillTag {
        key: "ferry-drill".into(),
        value: "d1".into(),
    };
    operations
        .delete_restore_point_collection(&collection)
        .await
        .unwrap();
    assert!(
        harness
            .azure
            .client()
            .read::<serde_json::Value>(&collection)
            .await
            .unwrap()
            .is_none()
    );
    let removal = remove_copies(&operations, std::slice::from_ref(&drill_group), &tag, 2)
        .await
        .unwrap();
    assert_eq!(removal.disks_deleted, Vec::<ResourceId>::new());
    assert_eq!(removal.snapshots_deleted, Vec::<ResourceId>::new());
    // Production's disk is still there, attached, with what production wrote.
    assert_eq!(read_at(&production_device, 21), b"production after it!!");
}

/// Two disks of one production VM copied at once share one restore point (the first step
/// takes it, the other waits and reuses it: both copies are of its moment); a production disk
/// attached to no VM is copied through a snapshot of its own, and no restore point is taken
/// for it.
#[tokio::test]
async fn the_disks_of_one_vm_share_one_restore_point_and_a_lone_disk_is_snapshotted() {
    let mut spec = vec![
        (
            "resource_group.main",
            json!({"name": "data-g${generation}"}),
        ),
        (
            "vm.nfs",
            json!({"name": "nfs-g${generation}", "resource_group": "resource_group.main"}),
        ),
    ];
    for name in [
        "home0",
        "home1",
        "lone",
        "home0-drill",
        "home1-drill",
        "lone-drill",
    ] {
        let address: &'static str =
            Box::leak(format!("disk.{}", name.replace('-', "_")).into_boxed_str());
        spec.push((
            address,
            json!({"name": name, "resource_group": "resource_group.main"}),
        ));
    }
    let harness = Harness::start(&spec).await;
    harness.seed_group("resource_group.main@g1", "data-g1");
    harness.seed_group("resource_group.main@g2", "data-g1-drill");
    harness.seed_vm("vm.nfs@g1", "data-g1", "nfs-g1");
    let provider = DiskProvider::new(harness.azure.clone());
    let mut production = Vec::new();
    for (lun, name) in ["home0", "home1", "lone"].into_iter().enumerate() {
        let mut fields = json!({
            "name": name, "resource_group": "resource_group.main@g1",
            "location": "westeurope", "size_gb": 64, "sku": "Premium_LRS",
        });
        if name != "lone" {
            fields["vm"] = json!("vm.nfs@g1");
            fields["lun"] = json!(lun);
        }
        let made = harness
            .apply(
                &provider,
                &instance(&format!("disk.{name}")),
                Action::Create,
                &attributes(fields),
                Vec::new(),
                None,
            )
            .await
            .unwrap();
        production.push(made["id"].as_str().unwrap().to_owned());
    }
    let mark = harness.simulator.events().len();
    let copy = |name: &str, source: &str| {
        attributes(json!({
            "name": format!("{name}-drill"), "resource_group": "resource_group.main@g2",
            "location": "westeurope", "size_gb": 64, "sku": "Premium_LRS",
            "copy_of": source, "tags": {"ferry-drill": "d1"}
        }))
    };
    let (home0, home1, lone) = (
        copy("home0", &production[0]),
        copy("home1", &production[1]),
        copy("lone", &production[2]),
    );
    let addresses = [
        instance("disk.home0_drill"),
        instance("disk.home1_drill"),
        instance("disk.lone_drill"),
    ];
    let (first, second, third) = tokio::join!(
        harness.apply(
            &provider,
            &addresses[0],
            Action::Create,
            &home0,
            Vec::new(),
            None
        ),
        harness.apply(
            &provider,
            &addresses[1],
            Action::Create,
            &home1,
            Vec::new(),
            None
        ),
        harness.apply(
            &provider,
            &addresses[2],
            Action::Create,
            &lone,
            Vec::new(),
            None
        ),
    );
    for copied in [first, second, third] {
        copied.unwrap();
    }
    let writes: Vec<String> = harness
        .simulator
        .events()
        .into_iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.method == "PUT")
        .map(|event| {
            event
                .path
                .rsplit("/providers/")
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    let restore_points: Vec<&String> = writes
        .iter()
        .filter(|path| path.contains("/restorePoints/"))
        .collect();
    assert_eq!(
        restore_points,
        ["Microsoft.Compute/restorePointCollections/rpc-d1-nfs-g1/restorePoints/rp-d1"],
        "{writes:?}"
    );
    let snapshots: Vec<&String> = writes
        .iter()
        .filter(|path| path.contains("/snapshots/"))
        .collect();
    assert_eq!(
        snapshots,
        ["Microsoft.Compute/snapshots/lone-drill-snapshot"],
        "{writes:?}"
    );
}

/// A step killed after it took the restore point, before its disk: run again, it finds the
/// restore point by its name (the drill's and the VM's) and restores from it, taking no
/// second one, so the copy holds the moment taken before the kill. A collection of a drill's
/// name without that drill's tag is refused, naming it.
#[tokio::test]
async fn a_step_run_again_after_a_kill_restores_from_the_restore_point_it_took() {
    let harness = Harness::start(&[
        (
            "resource_group.main",
            json!({"name": "data-g${generation}"}),
        ),
        (
            "vm.nfs",
            json!({"name": "nfs-g${generation}", "resource_group": "resource_group.main"}),
        ),
        (
            "disk.home",
            json!({"name": "home0", "resource_group": "resource_group.main"}),
        ),
        (
            "disk.copy",
            json!({"name": "home0-drill", "resource_group": "resource_group.main"}),
        ),
    ])
    .await;
    harness.seed_group("resource_group.main@g1", "data-g1");
    harness.seed_group("resource_group.main@g2", "data-g1-drill");
    let production_vm = harness.seed_vm("vm.nfs@g1", "data-g1", "nfs-g1");
    harness.seed_vm("vm.nfs@g2", "data-g1-drill", "nfs-g1-drill");
    let provider = DiskProvider::new(harness.azure.clone());
    let production = harness
        .apply(
            &provider,
            &instance("disk.home"),
            Action::Create,
            &attributes(json!({
                "name": "home0", "resource_group": "resource_group.main@g1",
                "location": "westeurope", "size_gb": 64, "sku": "Premium_LRS",
                "vm": "vm.nfs@g1", "lun": 0
            })),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    let production_id = production["id"].as_str().unwrap().to_owned();
    let production_device = harness
        .simulator
        .attachment_directory("nfs-g1")
        .join("lun0");
    write_at(&production_device, b"before the kill");

    // What the killed step had done: the collection and its restore point, by their names.
    static RECORD: fn(String) = |_| {};
    static SAY: fn(String) = |_| {};
    let operations = StepOperations::new(harness.azure.client(), &RECORD, &SAY);
    let collection = ResourceId::parse(&format!(
        "{}/providers/Microsoft.Compute/restorePointCollections/rpc-d1-nfs-g1",
        harness.group_id("data-g1-drill")
    ))
    .unwrap();
    operations
        .create_restore_point_collection(
            &collection,
            &ferry_arm::RestorePointCollectionOfVm {
                vm: ResourceId::parse(&production_vm).unwrap(),
                location: "westeurope".into(),
                tags: [("ferry-drill".to_owned(), "d1".to_owned())].into(),
            },
        )
        .await
        .unwrap();
    operations
        .create_restore_point(
            &ResourceId::parse(&format!("{collection}/restorePoints/rp-d1")).unwrap(),
            &ferry_arm::CrashConsistentRestorePoint::default(),
        )
        .await
        .unwrap();
    write_at(&production_device, b"after the kill!");
    let copy_fields = attributes(json!({
        "name": "home0-drill", "resource_group": "resource_group.main@g2",
        "location": "westeurope", "size_gb": 64, "sku": "Premium_LRS",
        "vm": "vm.nfs@g2", "lun": 0, "copy_of": production_id,
        "tags": {"ferry-drill": "d1"}
    }));

    // A collection of the drill's name that another drill (or a hand) made is never used.
    let other = ResourceId::parse(&format!(
        "{}/providers/Microsoft.Compute/restorePointCollections/rpc-d2-nfs-g1",
        harness.group_id("data-g1-drill")
    ))
    .unwrap();
    operations
        .create_restore_point_collection(
            &other,
            &ferry_arm::RestorePointCollectionOfVm {
                vm: ResourceId::parse(&production_vm).unwrap(),
                location: "westeurope".into(),
                tags: Default::default(),
            },
        )
        .await
        .unwrap();
    let other_fields = attributes(json!({
        "name": "home0-drill", "resource_group": "resource_group.main@g2",
        "location": "westeurope", "size_gb": 64, "sku": "Premium_LRS",
        "copy_of": production_id, "tags": {"ferry-drill": "d2"}
    }));
    let refused = harness
        .apply(
            &provider,
            &instance("disk.copy"),
            Action::Create,
            &other_fields,
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(!refused.transient);
    assert_eq!(
        refused.message,
        format!(
            "disk.copy: {other} exists without the drill's tag ferry-drill=d2: ferry never writes to what is not the drill's; delete it or drill under another id"
        )
    );

    let mark = harness.simulator.events().len();
    harness
        .apply(
            &provider,
            &instance("disk.copy"),
            Action::Create,
            &copy_fields,
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    let taken_again: Vec<String> = harness
        .simulator
        .events()
        .into_iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.method == "PUT")
        .filter(|event| event.path.contains("/restorePointCollections/"))
        .map(|event| event.path)
        .collect();
    assert_eq!(taken_again, Vec::<String>::new());
    let drill_device = harness
        .simulator
        .attachment_directory("nfs-g1-drill")
        .join("lun0");
    assert_eq!(read_at(&drill_device, 15), b"before the kill");
}
