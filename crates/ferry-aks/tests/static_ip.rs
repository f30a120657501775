//! The `static_ip` provider against the ARM simulator: the create (with its group, which no
//! generation deletes), a reading that names who holds the address, the detach that takes it
//! off an old cluster's load balancer and nothing else, done again, refused for what is not a
//! load balancer's frontend, and a delete Azure refuses while the address is held.

use ferry_aks::StaticIpProvider;
use ferry_arm::{ArmClient, ResourceId, WriteOptions};
use ferry_core::fields::static_ip::{ADDRESS, HELD_BY};
use ferry_core::{Action, Health, Observation};
use ferry_testkit::provider_harness::{Harness, attributes, instance};
use serde_json::{Value, json};

const SHARED: &str = "web-shared";

async fn harness() -> Harness {
    Harness::start(&[(
        "static_ip.ingress",
        json!({"name": "web-ingress", "resource_group": SHARED}),
    )])
    .await
}

fn fields() -> ferry_core::Attributes {
    attributes(json!({
        "name": "web-ingress", "resource_group": SHARED, "location": "westeurope",
        "tags": {"purpose": "ingress"}
    }))
}

fn with_holder(holder: &str) -> ferry_core::Attributes {
    let mut inputs = fields();
    inputs.insert(HELD_BY.into(), json!(holder));
    inputs
}

/// One step of the address's, as the engine runs it.
async fn step(
    harness: &Harness,
    action: Action,
    inputs: &ferry_core::Attributes,
) -> Result<ferry_core::Attributes, ferry_core::StepError> {
    harness
        .apply(
            &StaticIpProvider::new(harness.azure.clone()),
            &instance("static_ip.ingress"),
            action,
            inputs,
            Vec::new(),
            None,
        )
        .await
}

async fn put(client: &ArmClient, id: &str, body: Value) -> Value {
    client
        .create_or_update(
            &ResourceId::parse(id).unwrap(),
            &body,
            &WriteOptions::default(),
        )
        .await
        .unwrap_or_else(|error| panic!("creating {id}: {error}"))
}

async fn get(client: &ArmClient, id: &str) -> Value {
    client
        .read::<Value>(&ResourceId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("no {id}"))
        .value
}

/// An old cluster's node group: its `kubernetes` load balancer holds the address on `a1`,
/// and its own outbound address on `outbound`, each with a rule.
async fn old_cluster_holds(harness: &Harness, address_id: &str) -> (String, String) {
    let client = harness.azure.client();
    let group = harness.group_id("MC_web-g1_web-hub_westeurope");
    put(client, &group, json!({"location": "westeurope"})).await;
    let outbound = format!("{group}/providers/Microsoft.Network/publicIPAddresses/outbound");
    put(
        client,
        &outbound,
        json!({"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}}),
    )
    .await;
    let balancer = format!("{group}/providers/Microsoft.Network/loadBalancers/kubernetes");
    let rule = |name: &str, frontend: &str| {
        json!({"name": name, "properties": {
            "frontendIPConfiguration": {"id": format!("{balancer}/frontendIPConfigurations/{frontend}")},
            "backendAddressPool": {"id": format!("{balancer}/backendAddressPools/pool")},
            "protocol": "Tcp", "frontendPort": 443, "backendPort": 443,
        }})
    };
    put(
        client,
        &balancer,
        json!({
            "location": "westeurope",
            "sku": {"name": "Standard"},
            "properties": {
                "frontendIPConfigurations": [
                    {"name": "a1", "properties": {"publicIPAddress": {"id": address_id}}},
                    {"name": "outbound", "properties": {"publicIPAddress": {"id": outbound}}},
                ],
                "backendAddressPools": [{"name": "pool"}],
                "loadBalancingRules": [rule("a1-443", "a1"), rule("outbound-443", "outbound")],
            },
        }),
    )
    .await;
    (
        balancer.clone(),
        format!("{balancer}/frontendIPConfigurations/a1"),
    )
}

fn names(body: &Value, list: &str) -> Vec<String> {
    body.pointer(&format!("/properties/{list}"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|item| item["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn the_address_is_created_in_its_own_group_and_read_with_its_holder() {
    let harness = harness().await;
    let provider = StaticIpProvider::new(harness.azure.clone());
    let ingress = instance("static_ip.ingress");
    let outputs = step(&harness, Action::Create, &fields()).await.unwrap();
    let address = outputs[ADDRESS].as_str().unwrap().to_owned();
    assert!(address.parse::<std::net::Ipv4Addr>().is_ok(), "{outputs:?}");
    assert_eq!(outputs[HELD_BY], Value::Null);
    assert_eq!(outputs["resource_group"], SHARED);
    // The group was created with it: nothing else in the spec makes it.
    get(harness.azure.client(), &harness.group_id(SHARED)).await;
    let id = outputs["id"].as_str().unwrap().to_owned();
    let body = get(harness.azure.client(), &id).await;
    assert_eq!(body["sku"]["name"], "Standard");
    assert_eq!(body["properties"]["publicIPAllocationMethod"], "Static");
    assert_eq!(body["tags"]["purpose"], "ingress");

    // Created again (a resumed step): the same address.
    let again = step(&harness, Action::Create, &fields()).await.unwrap();
    assert_eq!(again[ADDRESS], address.as_str());

    // Nothing holds it yet: clients would reach nothing, which the plan and the watch say.
    let reading = harness.read(&provider, &ingress, &fields()).await;
    let Observation::Present { health, .. } = &reading else {
        panic!("{reading:?}");
    };
    let Health::Unhealthy { reason } = health else {
        panic!("an address nothing holds reads {health:?}");
    };
    assert!(reason.starts_with("no load balancer holds it"), "{reason}");

    let (_, frontend) = old_cluster_holds(&harness, &id).await;
    let reading = harness.read(&provider, &ingress, &fields()).await;
    let Observation::Present { attributes, health } = &reading else {
        panic!("{reading:?}");
    };
    assert_eq!(*health, Health::Healthy);
    assert!(
        attributes[HELD_BY]
            .as_str()
            .is_some_and(|holder| holder.eq_ignore_ascii_case(&frontend)),
        "{attributes:?}"
    );
}

#[tokio::test]
async fn the_detach_frees_the_address_and_leaves_the_rest_of_the_load_balancer() {
    let harness = harness().await;
    let provider = StaticIpProvider::new(harness.azure.clone());
    let ingress = instance("static_ip.ingress");
    let outputs = step(&harness, Action::Create, &fields()).await.unwrap();
    let id = outputs["id"].as_str().unwrap().to_owned();
    let (balancer, frontend) = old_cluster_holds(&harness, &id).await;

    let detached = harness
        .apply(
            &provider,
            &ingress,
            Action::Detach,
            &with_holder(&frontend),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(detached[HELD_BY], Value::Null);
    assert_eq!(detached[ADDRESS], outputs[ADDRESS]);
    let after = get(harness.azure.client(), &balancer).await;
    assert_eq!(names(&after, "frontendIPConfigurations"), ["outbound"]);
    assert_eq!(names(&after, "loadBalancingRules"), ["outbound-443"]);
    assert_eq!(names(&after, "backendAddressPools"), ["pool"]);

    // Done again (a resumed apply): the address is free, nothing is written.
    let again = harness
        .apply(
            &provider,
            &ingress,
            Action::Detach,
            &with_holder(&frontend),
            Vec::new(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(again[HELD_BY], Value::Null);
    assert_eq!(
        get(harness.azure.client(), &balancer).await["etag"],
        after["etag"]
    );
}

#[tokio::test]
async fn an_address_held_by_a_network_interface_is_not_taken_and_a_held_one_is_not_deleted() {
    let harness = harness().await;
    let provider = StaticIpProvider::new(harness.azure.clone());
    let ingress = instance("static_ip.ingress");
    let outputs = step(&harness, Action::Create, &fields()).await.unwrap();
    let id = outputs["id"].as_str().unwrap().to_owned();
    let client = harness.azure.client();
    let group = harness.group_id("someone-else");
    put(client, &group, json!({"location": "westeurope"})).await;
    let nic = format!("{group}/providers/Microsoft.Network/networkInterfaces/their-nic");
    put(
        client,
        &nic,
        json!({"location": "westeurope", "properties": {"ipConfigurations": [
            {"name": "ipconfig1", "properties": {"publicIPAddress": {"id": id}}}
        ]}}),
    )
    .await;
    let holder = format!("{nic}/ipConfigurations/ipconfig1");
    let refused = harness
        .apply(
            &provider,
            &ingress,
            Action::Detach,
            &with_holder(&holder),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err();
    assert!(!refused.transient);
    assert!(
        refused
            .message
            .contains("which is not a load balancer's frontend"),
        "{}",
        refused.message
    );
    // Still held by the interface: ferry changed nothing.
    let body = get(client, &id).await;
    assert!(
        body["properties"]["ipConfiguration"]["id"]
            .as_str()
            .is_some_and(|found| found.eq_ignore_ascii_case(&holder)),
        "{body}"
    );

    // Deleting it while held: Azure refuses, and the step says so.
    let refused = step(&harness, Action::Delete, &fields()).await.unwrap_err();
    assert!(
        refused.message.contains("PublicIPAddressCannotBeDeleted"),
        "{}",
        refused.message
    );
}

#[tokio::test]
async fn a_basic_or_dynamic_address_reads_unhealthy() {
    let harness = harness().await;
    let provider = StaticIpProvider::new(harness.azure.clone());
    let ingress = instance("static_ip.ingress");
    step(&harness, Action::Create, &fields()).await.unwrap();
    let id = format!(
        "{}/providers/Microsoft.Network/publicIPAddresses/web-ingress",
        harness.group_id(SHARED)
    );
    harness.change_behind_ferrys_back(
        &id,
        json!({"location": "westeurope", "sku": {"name": "Basic"}, "properties": {"publicIPAllocationMethod": "Dynamic"}}),
    );
    let reading = harness.read(&provider, &ingress, &fields()).await;
    let Observation::Present {
        health: Health::Unhealthy { reason },
        ..
    } = &reading
    else {
        panic!("{reading:?}");
    };
    assert!(reason.contains("its SKU is Basic"), "{reason}");
}

/// A drill's address goes with the group its create made (tagged with the drill's id), so
/// that nothing of the drill is left; production's group stays when its address is deleted.
#[tokio::test]
async fn a_drills_address_is_deleted_with_its_group_and_productions_group_stays() {
    let harness = harness().await;
    let client = harness.azure.client();
    let exists = |id: String| async move {
        client
            .read::<Value>(&ResourceId::parse(&id).unwrap())
            .await
            .unwrap()
            .is_some()
    };

    let mut drill = fields();
    drill.insert("resource_group".into(), json!("web-shared-drill"));
    drill.insert(
        "tags".into(),
        json!({"purpose": "ingress", "ferry-drill": "2026-12-07-a"}),
    );
    step(&harness, Action::Create, &drill).await.unwrap();
    let drill_group = harness.group_id("web-shared-drill");
    assert_eq!(
        get(client, &drill_group).await["tags"]["ferry-drill"],
        "2026-12-07-a"
    );
    step(&harness, Action::Delete, &drill).await.unwrap();
    assert!(!exists(drill_group).await, "the drill's group is gone");

    step(&harness, Action::Create, &fields()).await.unwrap();
    step(&harness, Action::Delete, &fields()).await.unwrap();
    let shared = harness.group_id(SHARED);
    assert!(
        !exists(format!(
            "{shared}/providers/Microsoft.Network/publicIPAddresses/web-ingress"
        ))
        .await,
        "the address is deleted"
    );
    assert!(exists(shared).await, "production's group stays");
}
