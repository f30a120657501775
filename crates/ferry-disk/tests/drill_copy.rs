//! A failover drill's disk through the disk provider on the ARM simulator: a create with
//! `copy_of` (what `ferry drill` writes into the drill's spec) snapshots production's disk,
//! only reading it, makes the drill's disk from the snapshot in the drill's group, attaches it
//! to the drill's VM with the snapshot's moment on it; a create without the drill's tag is
//! refused; the drill's clean-up leaves nothing tagged.

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
    // Production goes on writing; the drill's disk holds the snapshot's moment.
    write_at(&production_device, b"production after it!!");
    let drill_device = harness
        .simulator
        .attachment_directory("nfs-g1-drill")
        .join("lun0");
    assert_eq!(read_at(&drill_device, 21), b"the pool at the drill");
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

    // Production's disk was only read: no request but a GET named it.
    let production_lower = production_id.to_ascii_lowercase();
    let writes: Vec<String> = harness
        .simulator
        .events()
        .into_iter()
        .skip(mark)
        .filter(|event| event.what == "request" && event.method != "GET")
        .filter(|event| {
            event
                .path
                .to_ascii_lowercase()
                .starts_with(&production_lower)
        })
        .map(|event| format!("{} {}", event.method, event.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new());

    // The clean-up, in the order the drill's clean-up plans it: an attached disk is not
    // deleted (ARM refuses), so its VM goes first, which leaves it unattached; then the disk;
    // then the snapshot, and nothing tagged is left.
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
    let removal = remove_copies(&operations, std::slice::from_ref(&drill_group), &tag, 2)
        .await
        .unwrap();
    assert_eq!(removal.disks_deleted, Vec::<ResourceId>::new());
    assert_eq!(removal.snapshots_deleted.len(), 1);
    // Production's disk is still there, attached, with what production wrote.
    assert_eq!(read_at(&production_device, 21), b"production after it!!");
}
