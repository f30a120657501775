//! Load balancers and the public IPs they hold, on the simulator through ARM's HTTP API with
//! ferry's own client: the sub-resources Network fills, who holds a public IP, every refusal
//! with Azure's status, code and wording, and an AKS cluster's node resource group with its
//! `kubernetes` load balancer.
//!
//! The refusals' wording is Azure's as users quote it; each rule's source is in
//! `crates/ferry-sim/src/world/public_ips.rs` and `load_balancers.rs`.

use ferry_arm::api_version::{CONTAINER_SERVICE, NETWORK, PUBLIC_IP, RESOURCES};
use ferry_arm::{ArmClient, ArmClientConfig, ArmError, Started, Url, WriteOptions};
use ferry_sim::{Simulator, SimulatorConfig};
use serde_json::{Value, json};

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";

struct World {
    simulator: Simulator,
    client: ArmClient,
    _folder: tempfile::TempDir,
}

async fn start() -> World {
    start_with(|_| {}).await
}

async fn start_with(adjust: impl FnOnce(&mut SimulatorConfig)) -> World {
    let folder = tempfile::tempdir().unwrap();
    let mut config = SimulatorConfig::for_tests(folder.path().join("sim"));
    adjust(&mut config);
    let simulator = ferry_sim::start(config).await.unwrap();
    let client = ArmClient::new(ArmClientConfig::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
    ))
    .unwrap();
    World {
        simulator,
        client,
        _folder: folder,
    }
}

fn group_id(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}")
}

fn network_id(group: &str, kind: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/{kind}/{name}",
        group_id(group)
    )
}

fn ip_id(group: &str, name: &str) -> String {
    network_id(group, "publicIPAddresses", name)
}

fn balancer_id(group: &str, name: &str) -> String {
    network_id(group, "loadBalancers", name)
}

fn nic_id(group: &str, name: &str) -> String {
    network_id(group, "networkInterfaces", name)
}

async fn create(client: &ArmClient, path: &str, version: &str, body: Value) -> Value {
    client
        .put_and_wait(path, version, &body, &WriteOptions::default())
        .await
        .unwrap_or_else(|error| panic!("creating {path}: {error}"))
}

async fn get(client: &ArmClient, path: &str, version: &str) -> Value {
    client
        .get::<Value>(path, version)
        .await
        .unwrap_or_else(|error| panic!("reading {path}: {error}"))
        .value
}

async fn create_group(client: &ArmClient, name: &str) {
    create(
        client,
        &group_id(name),
        RESOURCES,
        json!({"location": "westeurope"}),
    )
    .await;
}

async fn create_ip(client: &ArmClient, group: &str, name: &str, sku: &str) -> String {
    let id = ip_id(group, name);
    create(
        client,
        &id,
        PUBLIC_IP,
        json!({"location": "westeurope", "sku": {"name": sku}, "properties": {"publicIPAllocationMethod": "Static"}}),
    )
    .await;
    id
}

/// A load balancer of `sku` with one frontend per public IP (`fe0`, `fe1`...), a pool, a probe
/// and a rule on the first frontend.
fn balancer(balancer: &str, sku: &str, ips: &[&str]) -> Value {
    let frontends: Vec<Value> = ips
        .iter()
        .enumerate()
        .map(|(index, ip)| json!({"name": format!("fe{index}"), "properties": {"publicIPAddress": {"id": ip}}}))
        .collect();
    let rules = if ips.is_empty() {
        json!([])
    } else {
        json!([{"name": "https", "properties": {
            "frontendIPConfiguration": {"id": format!("{balancer}/frontendIPConfigurations/fe0")},
            "backendAddressPool": {"id": format!("{balancer}/backendAddressPools/pool")},
            "probe": {"id": format!("{balancer}/probes/https")},
            "protocol": "Tcp", "frontendPort": 443, "backendPort": 8443,
        }}])
    };
    json!({
        "location": "westeurope",
        "sku": {"name": sku},
        "properties": {
            "frontendIPConfigurations": frontends,
            "backendAddressPools": [{"name": "pool"}],
            "probes": [{"name": "https", "properties": {"protocol": "Tcp", "port": 8443}}],
            "loadBalancingRules": rules,
        },
    })
}

fn nic(ip: &str) -> Value {
    json!({
        "location": "westeurope",
        "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {"publicIPAddress": {"id": ip}}}]},
    })
}

/// The status, code and message of ARM's answer, on one line.
fn answer(error: &ArmError) -> String {
    match error {
        ArmError::Service(service) => {
            format!("{} {}: {}", service.status, service.code, service.message)
        }
        other => panic!("not an answer from ARM: {other}"),
    }
}

async fn put_refused(client: &ArmClient, path: &str, version: &str, body: Value) -> String {
    match client
        .put::<_, Value>(path, version, &body, &WriteOptions::default())
        .await
    {
        Ok(_) => panic!("PUT {path} was accepted"),
        Err(error) => answer(&error),
    }
}

async fn delete_refused(client: &ArmClient, path: &str, version: &str) -> String {
    match client.delete(path, version, &WriteOptions::default()).await {
        Ok(_) => panic!("DELETE {path} was accepted"),
        Err(error) => answer(&error),
    }
}

async fn delete(client: &ArmClient, path: &str, version: &str) {
    client
        .delete_and_wait(path, version, &WriteOptions::default())
        .await
        .unwrap_or_else(|error| panic!("deleting {path}: {error}"));
}

fn holder_of(ip: &Value) -> Option<&str> {
    ip.pointer("/properties/ipConfiguration/id")
        .and_then(Value::as_str)
}

#[tokio::test]
async fn a_load_balancer_s_sub_resources_get_ids_etags_and_back_references() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-static").await;
    let ip = create_ip(client, "rg-static", "ingress", "Standard").await;
    assert_eq!(holder_of(&get(client, &ip, PUBLIC_IP).await), None);
    let lb = balancer_id("rg-static", "edge");
    let created = create(client, &lb, NETWORK, balancer(&lb, "Standard", &[&ip])).await;

    let read = get(client, &lb, NETWORK).await;
    assert_eq!(read, created);
    assert_eq!(read["sku"], json!({"name": "Standard", "tier": "Regional"}));
    assert_eq!(read["properties"]["provisioningState"], "Succeeded");
    let etag = read["etag"].as_str().unwrap();
    let frontend = &read["properties"]["frontendIPConfigurations"][0];
    let rule_id = format!("{lb}/loadBalancingRules/https");
    assert_eq!(frontend["id"], format!("{lb}/frontendIPConfigurations/fe0"));
    assert_eq!(
        frontend["type"],
        "Microsoft.Network/loadBalancers/frontendIPConfigurations"
    );
    assert_eq!(frontend["etag"], etag);
    assert_eq!(frontend["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        frontend["properties"]["loadBalancingRules"],
        json!([{"id": rule_id}])
    );
    let pool = &read["properties"]["backendAddressPools"][0];
    assert_eq!(pool["id"], format!("{lb}/backendAddressPools/pool"));
    assert_eq!(
        pool["properties"]["loadBalancingRules"],
        json!([{"id": rule_id}])
    );
    let probe = &read["properties"]["probes"][0];
    assert_eq!(
        probe["properties"]["loadBalancingRules"],
        json!([{"id": rule_id}])
    );
    let rule = &read["properties"]["loadBalancingRules"][0];
    assert_eq!(rule["id"], rule_id);
    assert_eq!(rule["etag"], etag);
    assert_eq!(rule["properties"]["frontendPort"], 443);

    // Each sub-resource is served on its own and in its list, as the load balancer shows it.
    assert_eq!(
        get(
            client,
            &format!("{lb}/frontendIPConfigurations/fe0"),
            NETWORK
        )
        .await,
        *frontend
    );
    let probes: Vec<Value> = client.list(&format!("{lb}/probes"), NETWORK).await.unwrap();
    assert_eq!(probes, vec![probe.clone()]);
    let missing = client
        .get::<Value>(&format!("{lb}/loadBalancingRules/http"), NETWORK)
        .await
        .unwrap_err();
    assert_eq!(
        answer(&missing),
        "404 ResourceNotFound: The Resource 'Microsoft.Network/loadBalancers/loadBalancingRules/http' under resource group 'rg-static' was not found."
    );
    assert_eq!(
        put_refused(
            client,
            &format!("{lb}/probes/https"),
            NETWORK,
            json!({"properties": {"port": 80}})
        )
        .await,
        format!(
            "405 MethodNotAllowed: the simulator serves only GET on a load balancer's probes: PUT the load balancer {lb} to change them"
        )
    );

    // The IP shows its holder, the frontend.
    assert_eq!(
        holder_of(&get(client, &ip, PUBLIC_IP).await),
        Some(format!("{lb}/frontendIPConfigurations/fe0").as_str())
    );

    // Lists in the group and in the subscription.
    let in_group: Vec<Value> = client
        .list(
            &format!(
                "{}/providers/Microsoft.Network/loadBalancers",
                group_id("rg-static")
            ),
            NETWORK,
        )
        .await
        .unwrap();
    assert_eq!(in_group.len(), 1);
    let in_subscription: Vec<Value> = client
        .list(
            &format!("/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/loadBalancers"),
            NETWORK,
        )
        .await
        .unwrap();
    assert_eq!(in_subscription.len(), 1);

    // A PATCH changes only the tags (`LoadBalancers_UpdateTags`): not the frontends.
    let patched: Value = client
        .patch_and_wait(
            &lb,
            NETWORK,
            &json!({"tags": {"owner": "ferry"}, "properties": {"frontendIPConfigurations": []}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(patched["tags"], json!({"owner": "ferry"}));
    assert_eq!(
        patched["properties"]["frontendIPConfigurations"][0]["name"],
        "fe0"
    );
    let etag = patched["etag"].as_str().unwrap();

    // An `If-Match` with an ETag read before the last write is refused.
    let stale = etag.to_owned();
    create(client, &lb, NETWORK, balancer(&lb, "Standard", &[])).await;
    let refused = client
        .put::<_, Value>(
            &lb,
            NETWORK,
            &balancer(&lb, "Standard", &[&ip]),
            &WriteOptions {
                if_match: Some(stale),
                ..WriteOptions::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        answer(&refused),
        "412 PreconditionFailed: The condition specified using HTTP conditional header(s) is not met."
    );
    // Without its frontend the load balancer holds nothing.
    assert_eq!(holder_of(&get(client, &ip, PUBLIC_IP).await), None);
}

#[tokio::test]
async fn every_refusal_of_a_load_balancer_names_what_it_refers_to() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg").await;
    let standard = create_ip(client, "rg", "standard", "Standard").await;
    let other = create_ip(client, "rg", "other", "Standard").await;
    let basic = create_ip(client, "rg", "basic", "Basic").await;
    let missing = ip_id("rg", "missing");
    let lb = balancer_id("rg", "edge");
    let rule = format!("{lb}/loadBalancingRules/https");

    let mut unknown_pool = balancer(&lb, "Standard", &[&standard]);
    unknown_pool["properties"]["backendAddressPools"] = json!([]);
    let mut unknown_probe = balancer(&lb, "Standard", &[&standard]);
    unknown_probe["properties"]["probes"] = json!([{"name": "http"}]);
    let mut unknown_frontend = balancer(&lb, "Standard", &[&standard]);
    unknown_frontend["properties"]["frontendIPConfigurations"][0]["name"] = json!("other");
    let mut bare_frontend = balancer(&lb, "Standard", &[]);
    bare_frontend["properties"]["frontendIPConfigurations"] = json!([{"name": "fe0"}]);
    let subnet = format!(
        "{}/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default",
        group_id("rg")
    );
    let mut missing_subnet = balancer(&lb, "Standard", &[]);
    missing_subnet["properties"]["frontendIPConfigurations"] =
        json!([{"name": "fe0", "properties": {"subnet": {"id": subnet}}}]);
    let mut both = balancer(&lb, "Standard", &[&standard]);
    both["properties"]["frontendIPConfigurations"][0]["properties"]["subnet"] =
        json!({"id": subnet});

    let cases = [
        (
            balancer(&lb, "Standard", &[&missing]),
            format!(
                "400 InvalidResourceReference: Resource {missing} referenced by resource {lb}/frontendIPConfigurations/fe0 was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
            ),
        ),
        (
            balancer(&lb, "Standard", &[&standard, &other, &standard]),
            format!(
                "400 PublicIPReferencedByMultipleIPConfigs: Public ip address {standard} is referenced by multiple ipconfigs in resource {lb}."
            ),
        ),
        (
            balancer(&lb, "Standard", &[&basic]),
            format!(
                "400 PublicIPAndLBSkuDoNotMatch: Standard sku load balancer {lb} cannot reference Basic sku publicIP {basic}."
            ),
        ),
        (
            balancer(&lb, "Basic", &[&standard]),
            format!(
                "400 PublicIPAndLBSkuDoNotMatch: Basic sku load balancer {lb} cannot reference Standard sku publicIP {standard}."
            ),
        ),
        (
            unknown_pool,
            format!(
                "400 InvalidResourceReference: Resource {lb}/backendAddressPools/pool referenced by resource {rule} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
            ),
        ),
        (
            unknown_probe,
            format!(
                "400 InvalidResourceReference: Resource {lb}/probes/https referenced by resource {rule} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
            ),
        ),
        (
            unknown_frontend,
            format!(
                "400 InvalidResourceReference: Resource {lb}/frontendIPConfigurations/fe0 referenced by resource {rule} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
            ),
        ),
        (
            missing_subnet,
            format!(
                "400 InvalidResourceReference: Resource {subnet} referenced by resource {lb}/frontendIPConfigurations/fe0 was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
            ),
        ),
        (
            both,
            format!(
                "400 FrontendIPConfigHasBothSubnetAndPublicIP: Frontend IP Configuration {lb}/frontendIPConfigurations/fe0 must not reference both a Subnet and a Public IP Address."
            ),
        ),
        (
            bare_frontend,
            format!(
                "400 FrontendIPConfigHasNoSubnetOrPublicIP: Frontend IP Configuration {lb}/frontendIPConfigurations/fe0 must reference either a Subnet or a Public IP Address."
            ),
        ),
    ];
    for (body, expected) in cases {
        assert_eq!(put_refused(client, &lb, NETWORK, body).await, expected);
    }
    // Nothing refused was stored, and no IP is held.
    assert!(
        client
            .get_if_exists::<Value>(&lb, NETWORK)
            .await
            .unwrap()
            .is_none()
    );
    for ip in [&standard, &other, &basic] {
        assert_eq!(holder_of(&get(client, ip, PUBLIC_IP).await), None);
    }
}

#[tokio::test]
async fn a_public_ip_has_one_holder_and_cannot_be_deleted_while_held() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg").await;
    let ip = create_ip(client, "rg", "ingress", "Standard").await;
    let first_nic = nic_id("rg", "nic-a");
    create(client, &first_nic, NETWORK, nic(&ip)).await;
    let holder = format!("{first_nic}/ipConfigurations/ipconfig1");
    assert_eq!(
        holder_of(&get(client, &ip, PUBLIC_IP).await),
        Some(holder.as_str())
    );

    // A second NIC, or a load balancer's frontend, cannot take it.
    let second_nic = nic_id("rg", "nic-b");
    assert_eq!(
        put_refused(client, &second_nic, NETWORK, nic(&ip)).await,
        format!(
            "400 PublicIPAddressInUse: Resource {second_nic}/ipConfigurations/ipconfig1 is referencing public IP address {ip} that is already allocated to resource {holder}."
        )
    );
    let lb = balancer_id("rg", "edge");
    assert_eq!(
        put_refused(client, &lb, NETWORK, balancer(&lb, "Standard", &[&ip])).await,
        format!(
            "400 PublicIPAddressInUse: Resource {lb}/frontendIPConfigurations/fe0 is referencing public IP address {ip} that is already allocated to resource {holder}."
        )
    );
    // The holder itself may write again with the IP.
    create(client, &first_nic, NETWORK, nic(&ip)).await;

    assert_eq!(
        delete_refused(client, &ip, PUBLIC_IP).await,
        format!(
            "400 PublicIPAddressCannotBeDeleted: Public IP address {ip} can not be deleted since it is still allocated to resource {holder}. In order to delete the public IP, disassociate/detach the Public IP address from the resource.  To learn how to do this, see aka.ms/deletepublicip."
        )
    );

    // Deleting the holder frees it: a load balancer takes it, and holds it against a NIC.
    delete(client, &first_nic, NETWORK).await;
    assert_eq!(holder_of(&get(client, &ip, PUBLIC_IP).await), None);
    create(client, &lb, NETWORK, balancer(&lb, "Standard", &[&ip])).await;
    let frontend = format!("{lb}/frontendIPConfigurations/fe0");
    assert_eq!(
        put_refused(client, &second_nic, NETWORK, nic(&ip)).await,
        format!(
            "400 PublicIPAddressInUse: Resource {second_nic}/ipConfigurations/ipconfig1 is referencing public IP address {ip} that is already allocated to resource {frontend}."
        )
    );
    let other_lb = balancer_id("rg", "other");
    assert_eq!(
        put_refused(
            client,
            &other_lb,
            NETWORK,
            balancer(&other_lb, "Standard", &[&ip])
        )
        .await,
        format!(
            "400 PublicIPAddressInUse: Resource {other_lb}/frontendIPConfigurations/fe0 is referencing public IP address {ip} that is already allocated to resource {frontend}."
        )
    );
    assert_eq!(
        delete_refused(client, &ip, PUBLIC_IP).await,
        format!(
            "400 PublicIPAddressCannotBeDeleted: Public IP address {ip} can not be deleted since it is still allocated to resource {frontend}. In order to delete the public IP, disassociate/detach the Public IP address from the resource.  To learn how to do this, see aka.ms/deletepublicip."
        )
    );
    delete(client, &lb, NETWORK).await;

    // Deleting a group deletes its load balancer, which frees the IP it held elsewhere.
    create_group(client, "rg-edge").await;
    let edge = balancer_id("rg-edge", "edge");
    create(client, &edge, NETWORK, balancer(&edge, "Standard", &[&ip])).await;
    assert_eq!(
        holder_of(&get(client, &ip, PUBLIC_IP).await),
        Some(format!("{edge}/frontendIPConfigurations/fe0").as_str())
    );
    delete(client, &group_id("rg-edge"), RESOURCES).await;
    assert_eq!(holder_of(&get(client, &ip, PUBLIC_IP).await), None);
    delete(client, &ip, PUBLIC_IP).await;

    // The control API counts each refusal by code.
    let counts = world.simulator.refusal_counts();
    assert_eq!(counts.arm["PublicIPAddressInUse"], 4);
    assert_eq!(counts.arm["PublicIPAddressCannotBeDeleted"], 2);
}

#[tokio::test]
async fn a_cluster_s_node_group_holds_its_load_balancer_and_goes_with_the_cluster() {
    let world = start().await;
    let client = &world.client;
    create_group(client, "rg-aks").await;
    create_group(client, "rg-static").await;
    let ip = create_ip(client, "rg-static", "ingress", "Standard").await;
    let cluster = format!(
        "{}/providers/Microsoft.ContainerService/managedClusters/blue",
        group_id("rg-aks")
    );
    let created = create(
        client,
        &cluster,
        CONTAINER_SERVICE,
        json!({
            "location": "westeurope",
            "properties": {"dnsPrefix": "blue", "agentPoolProfiles": [{"name": "system", "count": 1, "vmSize": "Standard_D2s_v3", "mode": "System"}]},
        }),
    )
    .await;
    assert_eq!(
        created["properties"]["nodeResourceGroup"],
        "MC_rg-aks_blue_westeurope"
    );
    let node_group = group_id("MC_rg-aks_blue_westeurope");
    let group = get(client, &node_group, RESOURCES).await;
    assert_eq!(group["managedBy"], cluster);
    assert_eq!(
        group["tags"],
        json!({"aks-managed-cluster-name": "blue", "aks-managed-cluster-rg": "rg-aks"})
    );
    let lb = balancer_id("MC_rg-aks_blue_westeurope", "kubernetes");
    let kubernetes = get(client, &lb, NETWORK).await;
    assert_eq!(kubernetes["sku"]["name"], "Standard");
    assert_eq!(
        kubernetes["properties"]["backendAddressPools"][0]["id"],
        format!("{lb}/backendAddressPools/kubernetes")
    );

    // Its load balancer takes writes: a frontend for the static IP, and its removal.
    let mut with_frontend = kubernetes.clone();
    with_frontend["properties"]["frontendIPConfigurations"] =
        json!([{"name": "aingress", "properties": {"publicIPAddress": {"id": ip}}}]);
    create(client, &lb, NETWORK, with_frontend.clone()).await;
    let frontend = format!("{lb}/frontendIPConfigurations/aingress");
    assert_eq!(
        holder_of(&get(client, &ip, PUBLIC_IP).await),
        Some(frontend.as_str())
    );

    // Deleting the cluster deletes its node group and what it holds, which frees the IP.
    delete(client, &cluster, CONTAINER_SERVICE).await;
    assert!(
        client
            .get_if_exists::<Value>(&node_group, RESOURCES)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        client
            .get_if_exists::<Value>(&lb, NETWORK)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(holder_of(&get(client, &ip, PUBLIC_IP).await), None);
    delete(client, &ip, PUBLIC_IP).await;
}

#[tokio::test]
async fn an_ip_changing_holder_is_held_by_the_write_that_changes_it() {
    // A network write lasts an hour of Azure's time: 1.8 s here, long enough to be seen running.
    let world = start_with(|config| {
        config.durations.network = std::time::Duration::from_secs(3600);
    })
    .await;
    let client = &world.client;
    // Seeded: in place at once.
    let ip = ip_id("rg", "ingress");
    world
        .simulator
        .seed(
            &ip,
            json!({"location": "westeurope", "sku": {"name": "Standard"}}),
        )
        .unwrap();
    let old = balancer_id("rg", "old");
    world
        .simulator
        .seed(&old, balancer(&old, "Standard", &[&ip]))
        .unwrap();

    // The old load balancer lets go of the IP: until that write ends, the IP is its.
    let started = client
        .put::<_, Value>(
            &old,
            NETWORK,
            &balancer(&old, "Standard", &[]),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    let Started::Pending(operation) = started else {
        panic!("a load balancer's PUT is long-running");
    };
    let new = balancer_id("rg", "new");
    let refused = put_refused(client, &new, NETWORK, balancer(&new, "Standard", &[&ip])).await;
    assert!(
        refused.starts_with(
            "409 AnotherOperationInProgress: Another operation on this or dependent resource is in progress."
        ),
        "{refused}"
    );
    let refused = delete_refused(client, &ip, PUBLIC_IP).await;
    assert!(
        refused.starts_with("409 AnotherOperationInProgress: "),
        "{refused}"
    );
    client.wait::<Value>(&operation).await.unwrap();
    create(client, &new, NETWORK, balancer(&new, "Standard", &[&ip])).await;
    assert_eq!(
        holder_of(&get(client, &ip, PUBLIC_IP).await),
        Some(format!("{new}/frontendIPConfigurations/fe0").as_str())
    );
}
