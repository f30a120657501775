//! The disk provider against the ARM simulator: create and attach, the refusals that keep a
//! disk on one VM, detach, move (the id changes), attach elsewhere, grow, drift, unknown on
//! faults, a failed operation, and a move resumed from its recorded operation.

use ferry_arm::models::MoveResourcesRequest;
use ferry_core::{Action, Observation};
use ferry_disk::DiskProvider;
use ferry_sim::Fault;
use ferry_testkit::provider_harness::{Harness, attributes, instance};
use serde_json::json;

async fn harness() -> (Harness, String, String) {
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
    ])
    .await;
    harness.seed_group("resource_group.main@g1", "data-g1");
    harness.seed_group("resource_group.main@g2", "data-g2");
    let old_vm = harness.seed_vm("vm.nfs@g1", "data-g1", "nfs-g1");
    let new_vm = harness.seed_vm("vm.nfs@g2", "data-g2", "nfs-g2");
    (harness, old_vm, new_vm)
}

fn disk_fields(generation: u32, size: i64) -> ferry_core::Attributes {
    attributes(json!({
        "name": "home0", "resource_group": format!("resource_group.main@g{generation}"),
        "location": "westeurope", "size_gb": size, "sku": "Premium_LRS",
        "vm": format!("vm.nfs@g{generation}"), "lun": 0
    }))
}

async fn create(harness: &Harness) {
    harness
        .apply(
            &DiskProvider::new(harness.azure.clone()),
            &instance("disk.home"),
            Action::Create,
            &disk_fields(1, 64),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_disk_is_created_attached_and_reads_as_the_spec_wrote_it() {
    let (harness, _, _) = harness().await;
    let provider = DiskProvider::new(harness.azure.clone());
    let disk = instance("disk.home");
    assert_eq!(
        harness.read(&provider, &disk, &disk_fields(1, 64)).await,
        Observation::Absent
    );
    create(&harness).await;
    let reading = harness.read(&provider, &disk, &disk_fields(1, 64)).await;
    let Observation::Present { attributes, .. } = &reading else {
        panic!("{}", reading.describe());
    };
    for (name, value) in disk_fields(1, 64) {
        assert_eq!(attributes.get(&name), Some(&value), "{name}");
    }
    assert_eq!(attributes["disk_state"], json!("Attached"));
    assert!(
        harness
            .simulator
            .attachment_directory("nfs-g1")
            .join("lun0")
            .exists()
    );
    // Creating again (a retried step) finds it done.
    create(&harness).await;
}

#[tokio::test]
async fn a_failover_detaches_moves_and_attaches_and_the_id_follows() {
    let (harness, old_vm, _) = harness().await;
    create(&harness).await;
    let provider = DiskProvider::new(harness.azure.clone());
    let disk = instance("disk.home");

    // While attached to the old VM, it is neither attached elsewhere nor moved.
    let error = harness
        .apply(
            &provider,
            &disk,
            Action::Attach,
            &attributes(json!({"vm": "vm.nfs@g2", "lun": 0})),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        "disk.home: it is attached to vm.nfs@g1, so it is not attached to vm.nfs@g2: a disk is attached to one VM at a time; detach it from vm.nfs@g1 first (a failover plans the fence and the detach)"
    );
    let error = harness
        .apply(
            &provider,
            &disk,
            Action::Move,
            &attributes(json!({"resource_group": "resource_group.main@g2"})),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("an attached disk cannot move"),
        "{error}"
    );

    let detached = harness
        .apply(
            &provider,
            &disk,
            Action::Detach,
            &attributes(json!({"vm": "vm.nfs@g1", "detach_option": "ForceDetach"})),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(detached.get("vm"), None);
    assert_eq!(detached["disk_state"], json!("Unattached"));
    let vm_body = harness.simulator.dump_state()["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|resource| resource["id"] == json!(old_vm))
        .unwrap()["body"]
        .clone();
    assert_eq!(
        vm_body["properties"]["storageProfile"]["dataDisks"],
        json!([])
    );

    let moved = harness
        .apply(
            &provider,
            &disk,
            Action::Move,
            &attributes(json!({"resource_group": "resource_group.main@g2", "from_resource_group": "resource_group.main@g1"})),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert!(
        moved["id"]
            .as_str()
            .unwrap()
            .contains("/resourceGroups/data-g2/"),
        "{moved:?}"
    );
    assert_eq!(moved["resource_group"], json!("resource_group.main@g2"));

    let attached = harness
        .apply(
            &provider,
            &disk,
            Action::Attach,
            &attributes(json!({"vm": "vm.nfs@g2", "lun": 0})),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(attached["vm"], json!("vm.nfs@g2"));
    assert_eq!(attached["lun"], json!(0));
    assert!(
        harness
            .simulator
            .attachment_directory("nfs-g2")
            .join("lun0")
            .exists()
    );
    // Attaching again is harmless; reading at generation 2 shows no change.
    harness
        .apply(
            &provider,
            &disk,
            Action::Attach,
            &attributes(json!({"vm": "vm.nfs@g2", "lun": 0})),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    let reading = harness.read(&provider, &disk, &disk_fields(2, 64)).await;
    for (name, value) in disk_fields(2, 64) {
        assert_eq!(reading.attribute(&name), Some(&value), "{name}");
    }
}

#[tokio::test]
async fn a_disk_grows_in_place_and_drift_shows() {
    let (harness, _, _) = harness().await;
    create(&harness).await;
    let provider = DiskProvider::new(harness.azure.clone());
    let disk = instance("disk.home");
    let outputs = harness
        .apply(
            &provider,
            &disk,
            Action::Update,
            &disk_fields(1, 128),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outputs["size_gb"], json!(128));
    assert_eq!(outputs["vm"], json!("vm.nfs@g1"), "still attached");
    let id = outputs["id"].as_str().unwrap().to_owned();
    harness.change_behind_ferrys_back(
        &id,
        json!({"location": "westeurope", "sku": {"name": "Standard_LRS"}, "properties": {"diskSizeGB": 256}}),
    );
    let reading = harness.read(&provider, &disk, &disk_fields(1, 128)).await;
    assert_eq!(reading.attribute("size_gb"), Some(&json!(256)));
    assert_eq!(reading.attribute("sku"), Some(&json!("Standard_LRS")));
}

#[tokio::test]
async fn faults_read_unknown_and_failed_operations_say_why() {
    let (harness, _, _) = harness().await;
    let provider = DiskProvider::new(harness.azure.clone());
    let disk = instance("disk.home");
    harness.simulator.inject(Fault::FailOperation {
        method: Some("PUT".into()),
        path_contains: "disks/home0".into(),
        code: "DiskQuotaExceeded".into(),
        message: "no premium disk quota left in westeurope".into(),
        count: Some(1),
    });
    let error = harness
        .apply(
            &provider,
            &disk,
            Action::Create,
            &disk_fields(1, 64),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        error
            .message
            .contains("DiskQuotaExceeded: no premium disk quota left in westeurope"),
        "{error}"
    );
    harness.simulator.inject(Fault::ServerError {
        share: 1.0,
        count: None,
    });
    let reading = harness.read(&provider, &disk, &disk_fields(1, 64)).await;
    assert!(
        matches!(reading, Observation::Unknown { .. }),
        "{}",
        reading.describe()
    );
}

#[tokio::test]
async fn a_move_resumes_from_its_recorded_operation_without_moving_again() {
    let (harness, _, _) = harness().await;
    let provider = DiskProvider::new(harness.azure.clone());
    let disk = instance("disk.home");
    let mut unattached = disk_fields(1, 64);
    unattached.remove("vm");
    unattached.remove("lun");
    harness
        .apply(
            &provider,
            &disk,
            Action::Create,
            &unattached,
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    let id = harness.outputs(&disk).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // An earlier apply started the move and was interrupted: only the operation is known.
    let started = harness
        .azure
        .client()
        .move_resources(
            &ferry_arm::ResourceId::parse(&harness.group_id("data-g1")).unwrap(),
            &MoveResourcesRequest {
                resources: vec![id],
                target_resource_group: harness.group_id("data-g2"),
                extra: Default::default(),
            },
        )
        .await
        .unwrap();
    let recorded = serde_json::to_string(started.pending().unwrap()).unwrap();
    let before = harness.simulator.events().len();
    let moved = harness
        .apply(
            &provider,
            &disk,
            Action::Move,
            &attributes(json!({"resource_group": "resource_group.main@g2"})),
            Vec::new(),
            Some(&recorded),
        )
        .await
        .unwrap();
    assert!(moved["id"].as_str().unwrap().contains("/data-g2/"));
    let moves_sent = harness.simulator.events()[before..]
        .iter()
        .filter(|event| event.what == "request" && event.path.ends_with("moveResources"))
        .count();
    assert_eq!(moves_sent, 0, "the move was polled, not sent again");
}

/// The failover's disk steps become ready together (every detach right after the fence, each
/// move after its detach): the four disks of one VM go in one VM update, one move and one
/// VM update again, not one operation each, which ARM would run one after another.
#[tokio::test]
async fn the_disks_of_one_vm_are_detached_moved_and_attached_in_one_operation_each() {
    let names = ["home0", "home1", "home2", "home3"];
    let resources: Vec<(String, serde_json::Value)> = names
        .iter()
        .map(|name| {
            (
                format!("disk.{name}"),
                json!({"name": name, "resource_group": "resource_group.main"}),
            )
        })
        .collect();
    let mut spec = vec![
        (
            "resource_group.main".to_owned(),
            json!({"name": "data-g${generation}"}),
        ),
        (
            "vm.nfs".to_owned(),
            json!({"name": "nfs-g${generation}", "resource_group": "resource_group.main"}),
        ),
    ];
    spec.extend(resources);
    let spec: Vec<(&str, serde_json::Value)> = spec
        .iter()
        .map(|(address, fields)| (address.as_str(), fields.clone()))
        .collect();
    let harness = Harness::start(&spec).await;
    harness.seed_group("resource_group.main@g1", "data-g1");
    harness.seed_group("resource_group.main@g2", "data-g2");
    let old_vm = harness.seed_vm("vm.nfs@g1", "data-g1", "nfs-g1");
    let new_vm = harness.seed_vm("vm.nfs@g2", "data-g2", "nfs-g2");
    let provider = DiskProvider::new(harness.azure.clone());
    let step = |lun: usize, action: Action, inputs: serde_json::Value| {
        let harness = &harness;
        let provider = &provider;
        async move {
            harness
                .apply(
                    provider,
                    &instance(&format!("disk.{}", names[lun])),
                    action,
                    &attributes(inputs),
                    Vec::new(),
                    None,
                )
                .await
        }
    };
    let all = |action: Action, inputs: fn(usize) -> serde_json::Value| async move {
        let (a, b, c, d) = tokio::join!(
            step(0, action, inputs(0)),
            step(1, action, inputs(1)),
            step(2, action, inputs(2)),
            step(3, action, inputs(3)),
        );
        [a, b, c, d].map(|result| result.unwrap())
    };
    let created = all(Action::Create, |lun| {
        json!({
            "name": format!("home{lun}"), "resource_group": "resource_group.main@g1",
            "location": "westeurope", "size_gb": 8, "sku": "Premium_LRS",
            "vm": "vm.nfs@g1", "lun": lun
        })
    })
    .await;
    for (lun, outputs) in created.iter().enumerate() {
        assert_eq!(outputs["vm"], json!("vm.nfs@g1"));
        assert_eq!(outputs["lun"], json!(lun));
    }
    let before = harness.simulator.events().len();
    all(Action::Detach, |_| json!({"vm": "vm.nfs@g1"})).await;
    let moved = all(
        Action::Move,
        |_| json!({"resource_group": "resource_group.main@g2"}),
    )
    .await;
    let attached = all(Action::Attach, |lun| json!({"vm": "vm.nfs@g2", "lun": lun})).await;
    for (lun, (moved, attached)) in moved.iter().zip(&attached).enumerate() {
        assert!(
            moved["id"]
                .as_str()
                .unwrap()
                .contains("/resourceGroups/data-g2/"),
            "{moved:?}"
        );
        assert_eq!(attached["vm"], json!("vm.nfs@g2"));
        assert_eq!(attached["lun"], json!(lun));
        assert!(
            harness
                .simulator
                .attachment_directory("nfs-g2")
                .join(format!("lun{lun}"))
                .exists()
        );
    }
    let events = harness.simulator.events()[before..].to_vec();
    let sent = |method: &str, path: &str| {
        events
            .iter()
            .filter(|event| {
                event.what == "request"
                    && event.method == method
                    && event.path.eq_ignore_ascii_case(path)
            })
            .map(|event| event.outcome.clone())
            .collect::<Vec<_>>()
    };
    // One request each, accepted: no second update of a VM, no move refused while another
    // holds the groups.
    let group = |name: &str| harness.group_id(name);
    for (method, path) in [
        ("PATCH", old_vm.clone()),
        (
            "POST",
            format!("{}/validateMoveResources", group("data-g1")),
        ),
        ("POST", format!("{}/moveResources", group("data-g1"))),
        ("PATCH", new_vm.clone()),
    ] {
        let answers = sent(method, &path);
        assert!(
            answers.len() == 1 && answers[0].starts_with('2'),
            "{method} {path}: {answers:?}\n{events:#?}"
        );
    }
}

#[tokio::test]
async fn a_read_round_reads_a_groups_disks_with_one_list() {
    let disks = ["d0", "d1", "d2"];
    let mut resources = vec![(
        "resource_group.main".to_owned(),
        json!({"name": "data-g${generation}"}),
    )];
    for disk in disks {
        resources.push((
            format!("disk.{disk}"),
            json!({"name": format!("disk-{disk}"), "resource_group": "resource_group.main"}),
        ));
    }
    let resources: Vec<(&str, serde_json::Value)> = resources
        .iter()
        .map(|(address, fields)| (address.as_str(), fields.clone()))
        .collect();
    let harness = Harness::start(&resources).await;
    harness.seed_group("resource_group.main@g1", "data-g1");
    for disk in disks {
        harness.change_behind_ferrys_back(
            &format!(
                "{}/providers/Microsoft.Compute/disks/disk-{disk}",
                harness.group_id("data-g1")
            ),
            json!({"location": "westeurope", "sku": {"name": "Premium_LRS"}, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64}}),
        );
    }
    let provider = DiskProvider::new(harness.azure.clone());
    let fields = |disk: &str| {
        attributes(
            json!({"name": format!("disk-{disk}"), "resource_group": "resource_group.main@g1"}),
        )
    };
    let read_all = || async {
        let mut readings = Vec::new();
        for disk in disks {
            readings.push(
                harness
                    .read(&provider, &instance(&format!("disk.{disk}")), &fields(disk))
                    .await,
            );
        }
        readings
    };
    harness.simulator.reset_request_stats();
    let one_by_one = read_all().await;
    assert_eq!(harness.simulator.request_stats().requests, 3);
    assert!(one_by_one.iter().all(Observation::is_present));

    harness.simulator.reset_request_stats();
    let round = harness.azure.begin_read_round();
    let listed = read_all().await;
    drop(round);
    assert_eq!(listed, one_by_one);
    // The subscription's groups and the group's disks.
    assert_eq!(harness.simulator.request_stats().requests, 2);
}
