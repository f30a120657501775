//! The resource group, network, public IP and VM providers against the ARM simulator: create,
//! read, update in place, replace, delete, drift, unknown readings on faults, retries of 429
//! and 500, failed operations, the fence, and the refusal to delete a group holding a disk.

use ferry_compute::{PublicIpProvider, ResourceGroupProvider, VmProvider, VnetProvider};
use ferry_core::{Action, AttributeChange, Observation};
use ferry_sim::Fault;
use ferry_testkit::provider_harness::{Harness, attributes, instance};
use serde_json::json;

fn group_fields() -> ferry_core::Attributes {
    attributes(json!({"name": "web-g1", "location": "westeurope"}))
}

fn vnet_fields() -> ferry_core::Attributes {
    attributes(json!({
        "name": "web-vnet", "resource_group": "resource_group.main@g1", "location": "westeurope",
        "address_space": ["10.1.0.0/16"], "subnets": {"default": "10.1.0.0/24"}
    }))
}

fn ip_fields(sku: &str) -> ferry_core::Attributes {
    attributes(json!({
        "name": "web-ip", "resource_group": "resource_group.main@g1", "location": "westeurope",
        "sku": sku, "allocation": "Static"
    }))
}

fn vm_fields(size: &str) -> ferry_core::Attributes {
    attributes(json!({
        "name": "web-vm", "resource_group": "resource_group.main@g1", "location": "westeurope",
        "vnet": "vnet.main@g1", "subnet": "default", "size": size,
        "admin_username": "azureuser", "ssh_public_key": "ssh-ed25519 AAAA test",
        "public_ip": "public_ip.web@g1"
    }))
}

async fn harness() -> Harness {
    Harness::start(&[
        ("resource_group.main", json!({"name": "web-g${generation}"})),
        (
            "vnet.main",
            json!({"name": "web-vnet", "resource_group": "resource_group.main"}),
        ),
        (
            "public_ip.web",
            json!({"name": "web-ip", "resource_group": "resource_group.main"}),
        ),
        (
            "vm.web",
            json!({"name": "web-vm", "resource_group": "resource_group.main"}),
        ),
    ])
    .await
}

/// Builds the group, network, IP and VM of generation 1.
async fn build(harness: &Harness) {
    let azure = harness.azure.clone();
    harness
        .apply(
            &ResourceGroupProvider::new(azure.clone()),
            &instance("resource_group.main@g1"),
            Action::Create,
            &group_fields(),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    harness
        .apply(
            &VnetProvider::new(azure.clone()),
            &instance("vnet.main@g1"),
            Action::Create,
            &vnet_fields(),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    harness
        .apply(
            &PublicIpProvider::new(azure.clone()),
            &instance("public_ip.web@g1"),
            Action::Create,
            &ip_fields("Standard"),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    harness
        .apply(
            &VmProvider::new(azure),
            &instance("vm.web@g1"),
            Action::Create,
            &vm_fields("Standard_D4s_v5"),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
}

/// The attributes the planner compares: every desired field must read back the same.
fn assert_reads_as_desired(observation: &Observation, desired: &ferry_core::Attributes) {
    let Observation::Present { attributes, .. } = observation else {
        panic!("expected present, got {}", observation.describe());
    };
    for (name, value) in desired {
        assert_eq!(
            attributes.get(name),
            Some(value),
            "{name} in {attributes:#?}"
        );
    }
}

#[tokio::test]
async fn created_resources_read_back_as_the_spec_wrote_them() {
    let harness = harness().await;
    let azure = harness.azure.clone();
    let vm = instance("vm.web@g1");
    assert_eq!(
        harness
            .read(
                &VmProvider::new(azure.clone()),
                &vm,
                &vm_fields("Standard_D4s_v5")
            )
            .await,
        Observation::Absent,
        "a VM whose group does not exist yet is absent"
    );
    build(&harness).await;
    assert_reads_as_desired(
        &harness
            .read(
                &ResourceGroupProvider::new(azure.clone()),
                &instance("resource_group.main@g1"),
                &group_fields(),
            )
            .await,
        &group_fields(),
    );
    assert_reads_as_desired(
        &harness
            .read(
                &VnetProvider::new(azure.clone()),
                &instance("vnet.main@g1"),
                &vnet_fields(),
            )
            .await,
        &vnet_fields(),
    );
    let ip = harness
        .read(
            &PublicIpProvider::new(azure.clone()),
            &instance("public_ip.web@g1"),
            &ip_fields("Standard"),
        )
        .await;
    assert_reads_as_desired(&ip, &ip_fields("Standard"));
    let address = ip
        .attribute("address")
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    assert!(address.starts_with("127."), "{address}");
    let reading = harness
        .read(&VmProvider::new(azure), &vm, &vm_fields("Standard_D4s_v5"))
        .await;
    assert_reads_as_desired(&reading, &vm_fields("Standard_D4s_v5"));
    assert!(reading.is_healthy());
    assert_eq!(reading.attribute("power_state"), Some(&json!("running")));
    assert_eq!(reading.attribute("public_address"), Some(&json!(address)));
    assert!(reading.attribute("private_ip").is_some());
    let folder = reading
        .attribute("device_folder")
        .unwrap()
        .as_str()
        .unwrap();
    assert!(folder.ends_with("vms/web-g1/web-vm/scsi1"), "{folder}");
}

#[tokio::test]
async fn an_update_is_made_in_place_and_a_replacement_deletes_first() {
    let harness = harness().await;
    build(&harness).await;
    let azure = harness.azure.clone();
    let vm = instance("vm.web@g1");
    let vm_id = harness.outputs(&vm).unwrap()["id"].clone();
    harness
        .apply(
            &VmProvider::new(azure.clone()),
            &vm,
            Action::Update,
            &vm_fields("Standard_E8s_v5"),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    let reading = harness
        .read(
            &VmProvider::new(azure.clone()),
            &vm,
            &vm_fields("Standard_E8s_v5"),
        )
        .await;
    assert_eq!(reading.attribute("size"), Some(&json!("Standard_E8s_v5")));
    assert_eq!(
        reading.attribute("id"),
        Some(&vm_id),
        "in place: the same VM"
    );

    // A public IP's SKU cannot change: the plan replaces it.
    let ip = instance("public_ip.web@g1");
    let old_address = harness.outputs(&ip).unwrap()["address"].clone();
    let change = AttributeChange {
        path: "sku".into(),
        before: Some(json!("Standard")),
        after: Some(json!("Basic")),
        forces_replacement: Some("a public IP's SKU cannot change".into()),
    };
    let outputs = harness
        .apply(
            &PublicIpProvider::new(azure.clone()),
            &ip,
            Action::Replace,
            &ip_fields("Basic"),
            vec![change.clone()],
            None,
        )
        .await
        .unwrap();
    assert_eq!(outputs["sku"], json!("Basic"));
    assert_ne!(outputs["address"], old_address, "a new IP address");
    // Azure refuses to delete an address a network interface holds: the replacement took it
    // off the VM's interface first and gave the new one back to it.
    let vm_reading = harness
        .read(
            &VmProvider::new(azure.clone()),
            &vm,
            &vm_fields("Standard_E8s_v5"),
        )
        .await;
    assert_eq!(
        vm_reading.attribute("public_address"),
        Some(&outputs["address"]),
        "the VM holds the new address"
    );
    // Applying the same replacement again (a retried step) does not delete the new one.
    let again = harness
        .apply(
            &PublicIpProvider::new(azure),
            &ip,
            Action::Replace,
            &ip_fields("Basic"),
            vec![change],
            None,
        )
        .await
        .unwrap();
    assert_eq!(again["address"], outputs["address"]);
}

#[tokio::test]
async fn drift_behind_ferrys_back_shows_in_the_reading() {
    let harness = harness().await;
    build(&harness).await;
    let azure = harness.azure.clone();
    let vnet_id = harness.outputs(&instance("vnet.main@g1")).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    harness.change_behind_ferrys_back(
        &vnet_id,
        json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.9.0.0/16"]}, "subnets": []}}),
    );
    let reading = harness
        .read(
            &VnetProvider::new(azure),
            &instance("vnet.main@g1"),
            &vnet_fields(),
        )
        .await;
    assert_eq!(
        reading.attribute("address_space"),
        Some(&json!(["10.9.0.0/16"]))
    );
    assert_eq!(reading.attribute("subnets"), Some(&json!({})));
}

#[tokio::test]
async fn faults_read_unknown_never_absent_and_retries_carry_a_step_through() {
    let harness = harness().await;
    build(&harness).await;
    let azure = harness.azure.clone();
    harness.simulator.inject(Fault::ServerError {
        share: 1.0,
        count: None,
    });
    let reading = harness
        .read(
            &ResourceGroupProvider::new(azure.clone()),
            &instance("resource_group.main@g1"),
            &group_fields(),
        )
        .await;
    let Observation::Unknown { reason } = &reading else {
        panic!("expected unknown, got {}", reading.describe());
    };
    assert!(reason.contains("InternalServerError: "), "{reason}");
    let error = harness
        .apply(
            &ResourceGroupProvider::new(azure.clone()),
            &instance("resource_group.main@g1"),
            Action::Update,
            &group_fields(),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(error.transient, "{error}");
    harness.simulator.clear_faults();

    // A few 429s and 500s in a row are retried by the client: the step succeeds.
    harness.simulator.inject(Fault::Throttle {
        share: 1.0,
        retry_after_seconds: 1,
        count: Some(2),
    });
    harness.simulator.inject(Fault::ServerError {
        share: 1.0,
        count: Some(2),
    });
    harness
        .apply(
            &VnetProvider::new(azure),
            &instance("vnet.main@g1"),
            Action::Update,
            &vnet_fields(),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_failed_operation_reports_arms_code_and_message() {
    let harness = harness().await;
    let azure = harness.azure.clone();
    harness
        .apply(
            &ResourceGroupProvider::new(azure.clone()),
            &instance("resource_group.main@g1"),
            Action::Create,
            &group_fields(),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    harness.simulator.inject(Fault::FailOperation {
        method: Some("PUT".into()),
        path_contains: "virtualNetworks/web-vnet".into(),
        code: "QuotaExceeded".into(),
        message: "the subscription has no network quota left".into(),
        count: Some(1),
    });
    let error = harness
        .apply(
            &VnetProvider::new(azure),
            &instance("vnet.main@g1"),
            Action::Create,
            &vnet_fields(),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(!error.transient);
    assert!(
        error
            .message
            .contains("QuotaExceeded: the subscription has no network quota left"),
        "{error}"
    );
    assert_eq!(
        harness.recorded.lock().unwrap().len(),
        1,
        "the operation was recorded"
    );
}

#[tokio::test]
async fn the_fence_deallocates_and_a_retirement_deletes() {
    let harness = harness().await;
    build(&harness).await;
    let azure = harness.azure.clone();
    let vm = instance("vm.web@g1");
    let outputs = harness
        .apply(
            &VmProvider::new(azure.clone()),
            &vm,
            Action::Fence,
            &attributes(json!({"mode": "deallocate"})),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(outputs["power_state"], json!("deallocated"));
    let reading = harness
        .read(
            &VmProvider::new(azure.clone()),
            &vm,
            &vm_fields("Standard_D4s_v5"),
        )
        .await;
    assert!(reading.is_fenced_host(), "{}", reading.describe());
    // Fencing again is harmless.
    harness
        .apply(
            &VmProvider::new(azure.clone()),
            &vm,
            Action::Fence,
            &attributes(json!({"mode": "deallocate"})),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    for (provider, address) in [
        (
            Box::new(VmProvider::new(azure.clone())) as Box<dyn ferry_core::Provider>,
            "vm.web@g1",
        ),
        (
            Box::new(PublicIpProvider::new(azure.clone())),
            "public_ip.web@g1",
        ),
        (Box::new(VnetProvider::new(azure.clone())), "vnet.main@g1"),
        (
            Box::new(ResourceGroupProvider::new(azure.clone())),
            "resource_group.main@g1",
        ),
    ] {
        let remembered = harness.outputs(&instance(address));
        harness
            .apply(
                &*provider,
                &instance(address),
                Action::Retire,
                &Default::default(),
                Vec::new(),
                None,
            )
            .await
            .unwrap();
        // The state forgot it; the spec still places it, and ARM says it is gone.
        let fields = remembered.unwrap();
        assert_eq!(
            harness.read(&*provider, &instance(address), &fields).await,
            Observation::Absent,
            "{address}"
        );
    }
}

#[tokio::test]
async fn a_group_that_holds_a_managed_disk_is_never_deleted() {
    let harness = harness().await;
    let azure = harness.azure.clone();
    let group = instance("resource_group.main@g1");
    harness
        .apply(
            &ResourceGroupProvider::new(azure.clone()),
            &group,
            Action::Create,
            &group_fields(),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    harness
        .simulator
        .seed(
            &format!(
                "{}/providers/Microsoft.Compute/disks/home0",
                harness.group_id("web-g1")
            ),
            json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64}}),
        )
        .unwrap();
    let error = harness
        .apply(
            &ResourceGroupProvider::new(azure.clone()),
            &group,
            Action::Retire,
            &Default::default(),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.message,
        "resource_group.main@g1: resource group web-g1 still holds managed disks (home0): ferry never deletes a group with data in it; move the disks out (a failover moves them) or delete them explicitly with allow_destroy, then apply again"
    );
    assert!(
        harness
            .read(&ResourceGroupProvider::new(azure), &group, &group_fields())
            .await
            .is_present()
    );
}

#[tokio::test]
async fn a_group_being_deleted_reads_unknown_so_nothing_is_planned_into_it() {
    let harness = harness().await;
    build(&harness).await;
    let azure = harness.azure.clone();
    let group = instance("resource_group.main@g1");
    // The group's deletion starts and does not end while the test reads it.
    harness.simulator.inject(Fault::HangOperation {
        method: Some("DELETE".to_owned()),
        path_contains: "resourceGroups/web-g1".to_owned(),
        count: None,
    });
    let started = azure
        .client()
        .delete(
            &harness.group_id("web-g1"),
            ferry_arm::api_version::RESOURCES,
            &ferry_arm::WriteOptions::default(),
        )
        .await
        .unwrap();
    assert!(started.pending().is_some());
    let observation = harness
        .read(
            &ResourceGroupProvider::new(azure.clone()),
            &group,
            &group_fields(),
        )
        .await;
    let Observation::Unknown { reason } = &observation else {
        panic!("a group being deleted is not present for planning: {observation:?}");
    };
    assert_eq!(
        reason,
        "resource_group.main@g1: resource group web-g1 is being deleted (ARM reports provisioningState Deleting) and takes no writes; nothing in it is planned until the deletion ends: plan again once it is gone"
    );
    // What ferry would otherwise write into it, ARM refuses.
    let error = harness
        .apply(
            &VnetProvider::new(azure),
            &instance("vnet.main@g1"),
            Action::Update,
            &vnet_fields(),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(
        error.message.contains("ResourceGroupBeingDeleted: ")
            && error
                .message
                .contains("wait until its deletion ends, then run ferry apply"),
        "{}",
        error.message
    );
}
