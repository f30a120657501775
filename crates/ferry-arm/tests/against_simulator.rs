//! The ARM client against the simulator: every long-running operation style, ARM's rules,
//! faults, ETags, moves and resuming an interrupted operation.

mod support;

use ferry_arm::models::{
    Disk, DnsZone, ManagedCluster, PublicIpAddress, RecordSet, ResourceGroup, VirtualMachine,
    VirtualNetwork,
};
use ferry_arm::{
    ArmError, PendingOperation, PollStyle, ResourceId, Started, WriteOptions, api_version,
};
use ferry_sim::{ApiServerDownMode, Fault};
use serde_json::json;
use support::{create_disk, create_group, group_id, resource_id, start, vm_body};

#[tokio::test]
async fn groups_networks_and_public_ips_through_both_operation_styles() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-net").await;
    let group: ResourceGroup = client
        .get(&group_id("RG-NET"), api_version::RESOURCES)
        .await
        .unwrap()
        .value;
    assert_eq!(group.provisioning_state(), Some("Succeeded"));

    // A PUT that answers 201 with Azure-AsyncOperation.
    let vnet_id = resource_id("rg-net", "Microsoft.Network/virtualNetworks", "vnet");
    let started: Started<VirtualNetwork> = client
        .put(
            &vnet_id,
            api_version::NETWORK,
            &json!({"location": "westeurope", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}, "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}]}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let pending = started
        .pending()
        .expect("a network create is a long-running operation")
        .clone();
    assert_eq!(pending.style, PollStyle::AzureAsyncOperation);
    let vnet: VirtualNetwork = client.wait(&pending).await.unwrap().unwrap();
    assert_eq!(vnet.provisioning_state(), Some("Succeeded"));
    let subnets = vnet.properties.unwrap().subnets.unwrap();
    assert!(
        subnets[0]
            .id
            .as_deref()
            .unwrap()
            .ends_with("/subnets/default")
    );

    let ip_id = resource_id("rg-net", "Microsoft.Network/publicIPAddresses", "ingress");
    let ip: PublicIpAddress = client
        .put_and_wait(
            &ip_id,
            api_version::PUBLIC_IP,
            &json!({"location": "westeurope"}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let address: std::net::Ipv4Addr = ip.properties.unwrap().ip_address.unwrap().parse().unwrap();
    assert!(
        address.is_loopback(),
        "public IPs come from 127.0.0.0/8, got {address}"
    );

    // A DELETE of a group answers 202 with Location only.
    let started = client
        .delete(
            &group_id("rg-net"),
            api_version::RESOURCES,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let pending = started.pending().unwrap().clone();
    assert_eq!(pending.style, PollStyle::Location);
    client.wait::<serde_json::Value>(&pending).await.unwrap();
    let gone = client
        .get_if_exists::<VirtualNetwork>(&vnet_id, api_version::NETWORK)
        .await
        .unwrap();
    assert!(gone.is_none(), "deleting a group deletes what it holds");
    let missing = client
        .get::<VirtualNetwork>(&vnet_id, api_version::NETWORK)
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Some("ResourceGroupNotFound"));
    assert!(
        world.simulator.tokens_issued() >= 1,
        "the client secret credential got its token from the simulator"
    );
}

#[tokio::test]
async fn lists_follow_next_link_across_pages() {
    let world = support::start_with(|config| config.page_size = 2).await;
    let client = &world.client;
    create_group(client, "rg-dns").await;
    let zone = resource_id("rg-dns", "Microsoft.Network/dnsZones", "example.org");
    let _: DnsZone = client
        .put_and_wait(
            &zone,
            api_version::DNS,
            &json!({"location": "global"}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    for index in 0..5 {
        let _: RecordSet = client
            .put_and_wait(
                &format!("{zone}/A/host{index}"),
                api_version::DNS,
                &json!({"properties": {"TTL": 60, "ARecords": [{"ipv4Address": format!("127.0.2.{index}")}]}}),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
    }
    let records: Vec<RecordSet> = client
        .list(&format!("{zone}/A"), api_version::DNS)
        .await
        .unwrap();
    assert_eq!(records.len(), 5);
}

#[tokio::test]
async fn a_disk_attaches_to_one_vm_only_and_force_detach_frees_it() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-vm").await;
    let disk_id = create_disk(client, "rg-vm", "pool-disk-0").await;
    let first_vm = resource_id("rg-vm", "Microsoft.Compute/virtualMachines", "nfs-old");
    let second_vm = resource_id("rg-vm", "Microsoft.Compute/virtualMachines", "nfs-new");
    let attach = json!([{"lun": 0, "createOption": "Attach", "managedDisk": {"id": disk_id}}]);
    let vm: VirtualMachine = client
        .put_and_wait(
            &first_vm,
            api_version::COMPUTE,
            &vm_body(attach.clone()),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(vm.provisioning_state(), Some("Succeeded"));

    let disk: Disk = client
        .get(&disk_id, api_version::DISKS)
        .await
        .unwrap()
        .value;
    assert!(
        disk.managed_by
            .as_deref()
            .unwrap()
            .eq_ignore_ascii_case(&first_vm)
    );
    assert_eq!(
        disk.properties.as_ref().unwrap().disk_state.as_deref(),
        Some("Attached")
    );
    let link = world.simulator.attachment_directory("nfs-old").join("lun0");
    let target = std::fs::read_link(&link).unwrap();
    assert!(target.exists(), "lun0 points at the disk's backing file");

    let conflict = client
        .put_and_wait::<_, VirtualMachine>(
            &second_vm,
            api_version::COMPUTE,
            &vm_body(attach.clone()),
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(conflict.is_conflict(), "{conflict}");
    assert_eq!(conflict.code(), Some("ConflictingUserInput"));
    insta::assert_snapshot!(
        "attach_conflict",
        support::redact(&world.simulator, &conflict.to_string())
    );

    let detach = json!({"properties": {"storageProfile": {"dataDisks": [{"lun": 0, "createOption": "Attach", "managedDisk": {"id": disk_id}, "toBeDetached": true, "detachOption": "ForceDetach"}]}}});
    let vm: VirtualMachine = client
        .patch_and_wait(
            &first_vm,
            api_version::COMPUTE,
            &detach,
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let remaining = vm
        .properties
        .unwrap()
        .storage_profile
        .unwrap()
        .data_disks
        .unwrap();
    assert!(remaining.is_empty());
    assert!(
        std::fs::symlink_metadata(&link).is_err(),
        "the lun0 link is gone after the detach"
    );
    let disk: Disk = client
        .get(&disk_id, api_version::DISKS)
        .await
        .unwrap()
        .value;
    assert_eq!(disk.managed_by, None);
    assert_eq!(
        disk.properties.as_ref().unwrap().disk_state.as_deref(),
        Some("Unattached")
    );

    let _: VirtualMachine = client
        .put_and_wait(
            &second_vm,
            api_version::COMPUTE,
            &vm_body(attach),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let new_link = world.simulator.attachment_directory("nfs-new").join("lun0");
    assert_eq!(
        std::fs::read_link(new_link).unwrap(),
        target,
        "the same backing file moves to the new VM"
    );
}

#[tokio::test]
async fn deallocating_a_vm_fences_it() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-fence").await;
    let disk_id = create_disk(client, "rg-fence", "data").await;
    let vm_id = resource_id("rg-fence", "Microsoft.Compute/virtualMachines", "nfs");
    let _: VirtualMachine = client
        .put_and_wait(
            &vm_id,
            api_version::COMPUTE,
            &vm_body(json!([{"lun": 1, "createOption": "Attach", "managedDisk": {"id": disk_id}}])),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let vm = ResourceId::parse(&vm_id).unwrap();
    assert_eq!(
        client
            .virtual_machine_instance_view(&vm)
            .await
            .unwrap()
            .power_state(),
        Some("running")
    );
    let started = client.deallocate_virtual_machine(&vm).await.unwrap();
    let pending = started.pending().unwrap().clone();
    assert!(
        pending.location_url.is_some(),
        "deallocate answers with both headers"
    );
    client.wait::<serde_json::Value>(&pending).await.unwrap();
    assert_eq!(
        client
            .virtual_machine_instance_view(&vm)
            .await
            .unwrap()
            .power_state(),
        Some("deallocated")
    );
    assert!(
        !world
            .simulator
            .attachment_directory("nfs")
            .join("lun1")
            .exists(),
        "a deallocated VM has no devices"
    );
    let disk: Disk = client
        .get(&disk_id, api_version::DISKS)
        .await
        .unwrap()
        .value;
    assert_eq!(
        disk.properties.unwrap().disk_state.as_deref(),
        Some("Reserved")
    );
}

#[tokio::test]
async fn a_failed_operation_keeps_its_arm_error() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-fail").await;
    world.simulator.inject(Fault::FailOperation {
        method: Some("PUT".to_owned()),
        path_contains: "/disks/doomed".to_owned(),
        code: "AllocationFailed".to_owned(),
        message: "no capacity in this region".to_owned(),
        count: Some(1),
    });
    let error = client
        .put_and_wait::<_, Disk>(
            &resource_id("rg-fail", "Microsoft.Compute/disks", "doomed"),
            api_version::DISKS,
            &json!({"location": "westeurope", "properties": {"diskSizeGB": 8}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(error, ArmError::OperationFailed { .. }),
        "{error:?}"
    );
    assert_eq!(error.code(), Some("AllocationFailed"));
    assert!(!error.is_transient());
    let step_error = error.step_error(error.to_string());
    assert!(!step_error.transient);
    insta::assert_snapshot!(
        "failed_operation",
        support::redact(&world.simulator, &error.to_string())
    );
}

#[tokio::test]
async fn throttling_is_honoured_and_server_errors_are_retried() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-retry").await;
    world.simulator.inject(Fault::Throttle {
        share: 1.0,
        retry_after_seconds: 10,
        count: Some(2),
    });
    let group: ResourceGroup = client
        .get(&group_id("rg-retry"), api_version::RESOURCES)
        .await
        .unwrap()
        .value;
    assert_eq!(group.name.as_deref(), Some("rg-retry"));
    world.simulator.inject(Fault::ServerError {
        share: 1.0,
        count: Some(2),
    });
    let group: ResourceGroup = client
        .get(&group_id("rg-retry"), api_version::RESOURCES)
        .await
        .unwrap()
        .value;
    assert_eq!(group.name.as_deref(), Some("rg-retry"));

    // Throttled past the retry budget: a transient error carrying ARM's wait.
    world.simulator.clear_faults();
    world.simulator.inject(Fault::Throttle {
        share: 1.0,
        retry_after_seconds: 10,
        count: None,
    });
    let error = client
        .get::<ResourceGroup>(&group_id("rg-retry"), api_version::RESOURCES)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(429));
    assert!(error.is_transient());
    let step_error = error.step_error(error.to_string());
    assert!(step_error.transient);
    assert_eq!(
        step_error.retry_after,
        Some(std::time::Duration::from_millis(5)),
        "10 s scaled by 0.0005"
    );
    assert!(error.request_id().is_some());
}

#[tokio::test]
async fn etags_guard_writes() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-etag").await;
    let zone = resource_id("rg-etag", "Microsoft.Network/dnsZones", "example.net");
    let _: DnsZone = client
        .put_and_wait(
            &zone,
            api_version::DNS,
            &json!({"location": "global"}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let record = format!("{zone}/A/hub");
    let body = json!({"properties": {"TTL": 300, "ARecords": [{"ipv4Address": "127.0.3.1"}]}});
    let create_only = WriteOptions {
        if_none_match: Some("*".to_owned()),
        ..WriteOptions::default()
    };
    let _: RecordSet = client
        .put_and_wait(&record, api_version::DNS, &body, &create_only)
        .await
        .unwrap();
    let again = client
        .put_and_wait::<_, RecordSet>(&record, api_version::DNS, &body, &create_only)
        .await
        .unwrap_err();
    assert!(again.is_precondition_failed());

    let fetched = client
        .get::<RecordSet>(&record, api_version::DNS)
        .await
        .unwrap();
    let etag = fetched.etag.clone().unwrap();
    let mut changed = fetched.value.clone();
    changed.properties.as_mut().unwrap().a_records = Some(vec![ferry_arm::models::ARecord {
        ipv4_address: Some("127.0.3.2".to_owned()),
        extra: Default::default(),
    }]);
    let guarded = WriteOptions {
        if_match: Some(etag.clone()),
        ..WriteOptions::default()
    };
    let _: RecordSet = client
        .put_and_wait(&record, api_version::DNS, &changed, &guarded)
        .await
        .unwrap();
    let stale = client
        .put_and_wait::<_, RecordSet>(&record, api_version::DNS, &changed, &guarded)
        .await
        .unwrap_err();
    assert!(stale.is_precondition_failed(), "{stale}");
    assert!(!stale.is_conflict());
    insta::assert_snapshot!(
        "etag_mismatch",
        support::redact(&world.simulator, &stale.to_string())
    );
}

#[tokio::test]
async fn moves_lock_both_groups_change_ids_and_refuse_clusters() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-old").await;
    create_group(client, "rg-new").await;
    let disk_id = create_disk(client, "rg-old", "pool-disk").await;
    let source = ResourceId::parse(&group_id("rg-old")).unwrap();
    let request = ferry_arm::models::MoveResourcesRequest {
        resources: vec![disk_id.clone()],
        target_resource_group: group_id("rg-new"),
        extra: Default::default(),
    };
    // Validation first, as a careful plan does.
    client
        .validate_move_resources(&source, &request)
        .await
        .unwrap();

    world.simulator.inject(Fault::HangOperation {
        method: Some("POST".to_owned()),
        path_contains: "moveResources".to_owned(),
        count: Some(1),
    });
    let hung = client.move_resources(&source, &request).await.unwrap();
    assert_eq!(hung.pending().unwrap().style, PollStyle::Location);
    for group in ["rg-old", "rg-new"] {
        let locked = client
            .put_and_wait::<_, Disk>(
                &resource_id(group, "Microsoft.Compute/disks", "blocked"),
                api_version::DISKS,
                &json!({"location": "westeurope"}),
                &WriteOptions::default(),
            )
            .await
            .unwrap_err();
        assert!(
            locked.is_conflict(),
            "{group} is locked during the move: {locked}"
        );
    }

    // A second world where the move completes.
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-old").await;
    create_group(client, "rg-new").await;
    let disk_id = create_disk(client, "rg-old", "pool-disk").await;
    let request = ferry_arm::models::MoveResourcesRequest {
        resources: vec![disk_id.clone()],
        target_resource_group: group_id("rg-new"),
        extra: Default::default(),
    };
    let started = client.move_resources(&source, &request).await.unwrap();
    client
        .wait::<serde_json::Value>(started.pending().unwrap())
        .await
        .unwrap();
    let moved_id = ResourceId::parse(&disk_id)
        .unwrap()
        .in_resource_group("rg-new");
    let moved: Disk = client
        .get(moved_id.as_str(), api_version::DISKS)
        .await
        .unwrap()
        .value;
    assert_eq!(
        ResourceId::parse(moved.id.as_deref().unwrap()).unwrap(),
        moved_id
    );
    assert!(
        client
            .read::<Disk>(&ResourceId::parse(&disk_id).unwrap())
            .await
            .unwrap()
            .is_none()
    );

    let cluster = resource_id(
        "rg-old",
        "Microsoft.ContainerService/managedClusters",
        "hub",
    );
    world
        .simulator
        .seed(
            &cluster,
            json!({"location": "westeurope", "properties": {"dnsPrefix": "hub"}}),
        )
        .unwrap();
    let refused = client
        .move_resources(
            &source,
            &ferry_arm::models::MoveResourcesRequest {
                resources: vec![cluster],
                target_resource_group: group_id("rg-new"),
                extra: Default::default(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some("ResourceMoveNotSupported"));
}

#[tokio::test]
async fn clusters_serve_readyz_until_their_api_server_goes_down() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-aks").await;
    let cluster_id = resource_id(
        "rg-aks",
        "Microsoft.ContainerService/managedClusters",
        "hub-blue",
    );
    let cluster: ManagedCluster = client
        .put_and_wait(&cluster_id, api_version::CONTAINER_SERVICE, &json!({"location": "westeurope", "properties": {"dnsPrefix": "hub-blue", "agentPoolProfiles": [{"name": "system", "count": 1, "vmSize": "Standard_D4s_v5", "mode": "System"}]}}), &WriteOptions::default())
        .await
        .unwrap();
    let fqdn = cluster.properties.unwrap().fqdn.unwrap();
    let ca = reqwest::Certificate::from_pem(world.simulator.ca_pem().as_bytes()).unwrap();
    let prober = reqwest::Client::builder()
        .tls_certs_merge([ca])
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap();
    let ready = prober
        .get(format!("https://{fqdn}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status().as_u16(), 200);

    let credentials = client
        .list_cluster_user_credential(&ResourceId::parse(&cluster_id).unwrap())
        .await
        .unwrap();
    assert_eq!(credentials.kubeconfigs.len(), 1);
    assert_eq!(
        format!("{:?}", credentials.kubeconfigs[0].value),
        "[redacted]"
    );

    world.simulator.inject(Fault::ApiServerDown {
        cluster: "hub-blue".to_owned(),
        mode: ApiServerDownMode::Refuse,
    });
    let down = prober.get(format!("https://{fqdn}/readyz")).send().await;
    assert!(down.is_err(), "a down API server does not answer");
    // ARM still says the cluster is fine: exactly the failure ferry must detect.
    let cluster: ManagedCluster = client
        .get(&cluster_id, api_version::CONTAINER_SERVICE)
        .await
        .unwrap()
        .value;
    assert_eq!(cluster.provisioning_state(), Some("Succeeded"));
}

#[tokio::test]
async fn an_interrupted_operation_resumes_from_its_saved_url() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-resume").await;
    let vm_id = resource_id("rg-resume", "Microsoft.Compute/virtualMachines", "nfs");
    let started: Started<VirtualMachine> = client
        .put(
            &vm_id,
            api_version::COMPUTE,
            &vm_body(json!([])),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let saved = serde_json::to_string(started.pending().unwrap()).unwrap();
    drop(started);
    // A new process: a new client, the saved operation, no second PUT.
    let restored: PendingOperation = serde_json::from_str(&saved).unwrap();
    let fresh_client = support::client_for(&world.simulator);
    let vm: VirtualMachine = fresh_client.wait(&restored).await.unwrap().unwrap();
    assert_eq!(vm.provisioning_state(), Some("Succeeded"));
}
