//! A drill's copies of production's disks on the ARM simulator: the copy holds the data of the
//! snapshot's moment, production is only read (the simulator's record of every request shows
//! no write to it), the removal leaves nothing tagged, and the failures: a missing source, a
//! name Azure refuses, a name taken by what is not the drill's, a crash between the snapshot
//! and the copy.

use std::path::PathBuf;
use std::sync::Mutex;

use ferry_arm::api_version::{COMPUTE, DISKS};
use ferry_arm::{ResourceId, SnapshotOfDisk, SnapshotSku, StepOperations, WriteOptions};
use ferry_disk::copies::{
    CopyConfig, CopyError, DiskCopyRequest, DrillTag, copy_disks, remove_copies,
};
use ferry_testkit::provider_harness::{Harness, read_at, write_at};
use serde_json::{Value, json};

struct Drill {
    harness: Harness,
    production: ResourceId,
    drill: ResourceId,
}

async fn drill() -> Drill {
    let harness = Harness::start(&[]).await;
    for group in ["prod", "drill"] {
        harness
            .simulator
            .seed(&harness.group_id(group), json!({"location": "westeurope"}))
            .unwrap();
    }
    let production = ResourceId::parse(&harness.group_id("prod")).unwrap();
    let drill = ResourceId::parse(&harness.group_id("drill")).unwrap();
    Drill {
        harness,
        production,
        drill,
    }
}

fn disk(group: &ResourceId, name: &str) -> ResourceId {
    ResourceId::parse(&format!("{group}/providers/Microsoft.Compute/disks/{name}")).unwrap()
}

impl Drill {
    /// A production disk attached to a running VM; its `lun0` link, where the test writes.
    async fn production_disk(&self, name: &str, vm: &str) -> (ResourceId, PathBuf) {
        let client = self.harness.azure.client();
        let id = disk(&self.production, name);
        client
            .put_and_wait::<_, Value>(
                id.as_str(),
                DISKS,
                &json!({"location": "westeurope", "sku": {"name": "Premium_LRS"}, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        let device = self.vm_with(&self.production, vm, &id).await;
        (id, device)
    }

    /// A VM in the drill's group with `disk` at lun 0; where its data shows.
    async fn attach_in_drill(&self, vm: &str, disk: &ResourceId) -> PathBuf {
        self.vm_with(&self.drill, vm, disk).await
    }

    /// A VM `vm` in `group` with `disk` at lun 0; its `lun0` link, where the disk's data shows.
    async fn vm_with(&self, group: &ResourceId, vm: &str, disk: &ResourceId) -> PathBuf {
        let vm_id = format!("{group}/providers/Microsoft.Compute/virtualMachines/{vm}");
        self.harness
            .azure
            .client()
            .put_and_wait::<_, Value>(
                &vm_id,
                COMPUTE,
                &json!({"location": "westeurope", "properties": {
                    "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
                    "storageProfile": {"dataDisks": [{"lun": 0, "createOption": "Attach", "managedDisk": {"id": disk.as_str()}}]},
                }}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        self.harness
            .simulator
            .attachment_directory(&vm_id)
            .join("lun0")
    }

    fn config(&self) -> CopyConfig {
        CopyConfig {
            snapshot_group: self.drill.clone(),
            target_group: self.drill.clone(),
            zone: Some("1".into()),
            snapshot_sku: SnapshotSku::StandardZrs,
            tag: tag(),
            tags: [("purpose".to_owned(), "drill".to_owned())].into(),
            parallelism: 2,
        }
    }

    /// Where the simulator's record stands now.
    fn mark(&self) -> usize {
        self.harness.simulator.events().len()
    }

    /// Every request since `mark` that was not a read and names `id` in its path.
    fn writes_to(&self, id: &ResourceId, mark: usize) -> Vec<String> {
        let id = id.as_str().to_ascii_lowercase();
        self.harness
            .simulator
            .events()
            .into_iter()
            .skip(mark)
            .filter(|event| event.what == "request" && event.method != "GET")
            .filter(|event| event.path.to_ascii_lowercase().starts_with(&id))
            .map(|event| format!("{} {} {}", event.method, event.path, event.outcome))
            .collect()
    }
}

fn tag() -> DrillTag {
    DrillTag {
        key: "ferry-drill".into(),
        value: "drill-1".into(),
    }
}

fn request(source: &ResourceId, name: &str) -> DiskCopyRequest {
    DiskCopyRequest {
        source: source.clone(),
        snapshot_name: format!("{name}-snap"),
        copy_name: format!("{name}-copy"),
    }
}

static PROGRESS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn operations(harness: &Harness) -> StepOperations<'_> {
    static RECORD: fn(String) = |_| {};
    static SAY: fn(String) = |line| PROGRESS.lock().unwrap().push(line);
    StepOperations::new(harness.azure.client(), &RECORD, &SAY)
}

#[tokio::test]
async fn copies_hold_the_snapshot_s_moment_production_is_only_read_and_removal_leaves_nothing() {
    let drill = drill().await;
    let (data0, device0) = drill.production_disk("data0", "nfs0").await;
    let (data1, device1) = drill.production_disk("data1", "nfs1").await;
    write_at(&device0, b"pool zero at the drill");
    write_at(&device1, b"pool one at the drill!");
    let mark = drill.mark();
    let operations = operations(&drill.harness);
    let before: Value = drill
        .harness
        .azure
        .client()
        .get(data0.as_str(), DISKS)
        .await
        .unwrap()
        .value;

    let copies = copy_disks(
        &operations,
        &[request(&data0, "data0"), request(&data1, "data1")],
        &drill.config(),
    )
    .await
    .unwrap();
    // Production goes on writing; the copies keep the snapshot's moment.
    write_at(&device0, b"pool zero after drill!");
    assert_eq!(copies.len(), 2);
    assert_eq!(copies[0].copy, disk(&drill.drill, "data0-copy"));
    assert!(copies[0].snapshot_time.is_some());
    let copy: Value = drill
        .harness
        .azure
        .client()
        .get(copies[0].copy.as_str(), DISKS)
        .await
        .unwrap()
        .value;
    assert_eq!(copy["zones"], json!(["1"]));
    assert_eq!(copy["sku"]["name"], "Premium_LRS");
    assert_eq!(
        copy["tags"],
        json!({"ferry-drill": "drill-1", "purpose": "drill"})
    );
    assert_eq!(copy["properties"]["diskSizeGB"], 8);
    let snapshot: Value = drill
        .harness
        .azure
        .client()
        .get(copies[0].snapshot.as_str(), DISKS)
        .await
        .unwrap()
        .value;
    assert_eq!(snapshot["properties"]["incremental"], true);
    assert_eq!(snapshot["sku"]["name"], "Standard_ZRS");

    let copy0 = drill.attach_in_drill("drill0", &copies[0].copy).await;
    let copy1 = drill.attach_in_drill("drill1", &copies[1].copy).await;
    assert_eq!(read_at(&copy0, 22), b"pool zero at the drill");
    assert_eq!(read_at(&copy1, 22), b"pool one at the drill!");
    write_at(&copy0, b"the drill writes here");
    assert_eq!(read_at(&device0, 22), b"pool zero after drill!");

    // Production was read, never written: no request but GETs named its disks.
    for source in [&data0, &data1] {
        assert_eq!(
            drill.writes_to(source, mark),
            Vec::<String>::new(),
            "{source}"
        );
    }
    let after: Value = drill
        .harness
        .azure
        .client()
        .get(data0.as_str(), DISKS)
        .await
        .unwrap()
        .value;
    assert_eq!(before, after);

    // Copying again (a rerun) finds it done: the same snapshots, no new ones.
    let again = copy_disks(&operations, &[request(&data0, "data0")], &drill.config())
        .await
        .unwrap();
    assert_eq!(again[0].snapshot_time, copies[0].snapshot_time);

    // The drill's VMs go first (an attached disk is not deleted), then the copies.
    let client = drill.harness.azure.client();
    for vm in ["drill0", "drill1"] {
        client
            .delete_and_wait(
                &format!(
                    "{}/providers/Microsoft.Compute/virtualMachines/{vm}",
                    drill.drill
                ),
                COMPUTE,
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    let groups = [drill.drill.clone(), drill.production.clone()];
    let removal = remove_copies(&operations, &groups, &tag(), 2)
        .await
        .unwrap();
    assert_eq!(removal.disks_deleted.len(), 2);
    assert_eq!(removal.snapshots_deleted.len(), 2);
    // Nothing of the drill remains, production's disks do, and a second removal is a no-op.
    assert!(client.snapshots_in(&drill.drill).await.unwrap().is_empty());
    assert!(client.disks_in(&drill.drill).await.unwrap().is_empty());
    assert_eq!(client.disks_in(&drill.production).await.unwrap().len(), 2);
    let again = remove_copies(&operations, &groups, &tag(), 2)
        .await
        .unwrap();
    assert_eq!(again, Default::default());
    for source in [&data0, &data1] {
        assert_eq!(
            drill.writes_to(source, mark),
            Vec::<String>::new(),
            "{source}"
        );
    }
}

#[tokio::test]
async fn a_crash_between_the_snapshot_and_the_copy_is_finished_or_removed() {
    let drill = drill().await;
    let (data0, device0) = drill.production_disk("data0", "nfs0").await;
    write_at(&device0, b"moment of the snapshot");
    let mark = drill.mark();
    let operations = operations(&drill.harness);
    // The first run took the snapshot and died before the copy.
    let snapshot_id = ResourceId::parse(&format!(
        "{}/providers/Microsoft.Compute/snapshots/data0-snap",
        drill.drill
    ))
    .unwrap();
    let snapshot = SnapshotOfDisk {
        tags: [("ferry-drill".to_owned(), "drill-1".to_owned())].into(),
        ..SnapshotOfDisk::new(data0.clone(), "westeurope")
    };
    operations
        .create_snapshot(&snapshot_id, &snapshot)
        .await
        .unwrap();
    write_at(&device0, b"written after the crash");

    // Removing after the crash takes the lone snapshot away, and proves it.
    let groups = [drill.drill.clone()];
    let removal = remove_copies(&operations, &groups, &tag(), 1)
        .await
        .unwrap();
    assert_eq!(removal.snapshots_deleted, vec![snapshot_id.clone()]);
    assert!(removal.disks_deleted.is_empty());

    // Or, run again instead, the copy is finished from the snapshot already taken.
    operations
        .create_snapshot(&snapshot_id, &snapshot)
        .await
        .unwrap();
    write_at(&device0, b"written after the rerun!");
    let copies = copy_disks(&operations, &[request(&data0, "data0")], &drill.config())
        .await
        .unwrap();
    let copy = drill.attach_in_drill("drill0", &copies[0].copy).await;
    assert_eq!(read_at(&copy, 23), b"written after the crash");
    assert_eq!(drill.writes_to(&data0, mark), Vec::<String>::new());
}

#[tokio::test]
async fn failures_name_the_disk_and_nothing_that_is_not_the_drill_s_is_touched() {
    let drill = drill().await;
    let (data0, _) = drill.production_disk("data0", "nfs0").await;
    let mark = drill.mark();
    let operations = operations(&drill.harness);
    let config = drill.config();
    let client = drill.harness.azure.client();

    // A name Azure refuses is refused before anything is sent.
    let mut bad = request(&data0, "data0");
    bad.copy_name = "data0 copy!".into();
    let error = copy_disks(&operations, &[bad], &config).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "`data0 copy!` cannot be used: `data0 copy!` contains ` `: a managed disk name must be 1-80 characters of letters, digits, `-`, `_`, `.`; choose another name"
    );
    let mut bad = request(&data0, "data0");
    bad.snapshot_name = "-snap".into();
    let error = copy_disks(&operations, &[bad], &config).await.unwrap_err();
    assert!(
        error
            .to_string()
            .contains("a snapshot name must start with a letter or digit"),
        "{error}"
    );
    // A copy is never written over its source.
    let mut over = request(&data0, "data0");
    over.copy_name = "data0".into();
    let over_config = CopyConfig {
        target_group: drill.production.clone(),
        ..config.clone()
    };
    let error = copy_disks(&operations, &[over], &over_config)
        .await
        .unwrap_err();
    assert!(
        matches!(error, CopyError::TargetIsASource { .. }),
        "{error}"
    );

    // A missing source says so and creates nothing.
    let ghost = disk(&drill.production, "ghost");
    let error = copy_disks(
        &operations,
        &[request(&ghost, "ghost"), request(&data0, "data0")],
        &config,
    )
    .await
    .unwrap_err();
    let CopyError::Failed { copied, failures } = &error else {
        panic!("{error}");
    };
    assert_eq!(copied.len(), 1, "the other disk is copied");
    assert_eq!(
        failures[0].to_string(),
        format!(
            "{ghost}: no such managed disk (it may have moved to another group): read its id again, then copy it"
        )
    );
    assert!(!failures[0].step_error().transient);

    // A name taken by a disk without the tag is refused, naming it; that disk is untouched.
    let stranger = disk(&drill.drill, "other-copy");
    client
        .put_and_wait::<_, Value>(
            stranger.as_str(),
            DISKS,
            &json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let error = copy_disks(&operations, &[request(&data0, "other")], &config)
        .await
        .unwrap_err();
    let CopyError::Failed { failures, .. } = &error else {
        panic!("{error}");
    };
    assert_eq!(
        failures[0].to_string(),
        format!(
            "{stranger} exists without the drill's tag ferry-drill=drill-1: ferry never writes to or deletes a disk or snapshot that is not the drill's; choose another name"
        )
    );
    let removal = remove_copies(&operations, std::slice::from_ref(&drill.drill), &tag(), 2)
        .await
        .unwrap();
    assert!(!removal.disks_deleted.contains(&stranger));
    assert!(client.read::<Value>(&stranger).await.unwrap().is_some());
    assert_eq!(
        drill.writes_to(&stranger, mark).len(),
        1,
        "only its own create"
    );
    assert_eq!(drill.writes_to(&data0, mark), Vec::<String>::new());
}
