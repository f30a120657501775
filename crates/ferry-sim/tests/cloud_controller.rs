//! Kubernetes Services on the clusters' simulated API servers and AKS's cloud controller, on
//! the simulator over HTTPS: a `LoadBalancer` Service naming a static public IP takes it
//! through its cluster's `kubernetes` load balancer, retries while another cluster holds it,
//! takes it once the holder's frontend is removed over ARM (the static IP takeover ferry
//! performs at failover), does nothing while its API server is down, puts back a frontend
//! removed under it; and the IP's traffic goes to the backend of whichever Service holds it.
//!
//! Every wait polls with a generous bound; nothing asserts on time.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ferry_arm::api_version::{CONTAINER_SERVICE, NETWORK, PUBLIC_IP, RESOURCES};
use ferry_arm::{ArmClient, ArmClientConfig, Url, WriteOptions};
use ferry_sim::{ApiServerDownMode, Fault, Simulator, SimulatorConfig};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";
const TOKEN: &str = "ferry-sim-kubernetes-token";
/// How long a wait may take before the test fails: far beyond the few ticks each needs.
const PATIENCE: Duration = Duration::from_secs(20);

struct World {
    simulator: Simulator,
    client: ArmClient,
    tls: Arc<rustls::ClientConfig>,
    _folder: tempfile::TempDir,
}

/// Each test's public IPs in a block of loopback addresses of its own (`test` picks it): the
/// traffic of an IP is listened on at `{ip}:443`, which no other test or simulator on the
/// machine may hold.
async fn start(test: u8) -> World {
    let folder = tempfile::tempdir().unwrap();
    let mut config = SimulatorConfig::for_tests(folder.path().join("sim"));
    let block = (std::process::id() % 200) as u8;
    config.first_public_ip = Ipv4Addr::new(127, 203, block, 1 + test * 20);
    let simulator = ferry_sim::start(config).await.unwrap();
    let client = ArmClient::new(ArmClientConfig::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
    ))
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(simulator.ca_pem().as_bytes()).unwrap())
        .unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    World {
        simulator,
        client,
        tls: Arc::new(tls),
        _folder: folder,
    }
}

fn group_id(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}")
}

fn cluster_id(name: &str) -> String {
    format!(
        "{}/providers/Microsoft.ContainerService/managedClusters/{name}",
        group_id("rg-aks")
    )
}

fn kubernetes_balancer(cluster: &str) -> String {
    format!(
        "{}/providers/Microsoft.Network/loadBalancers/kubernetes",
        group_id(&format!("MC_rg-aks_{cluster}_westeurope"))
    )
}

fn ip_id() -> String {
    format!(
        "{}/providers/Microsoft.Network/publicIPAddresses/ingress",
        group_id("rg-static")
    )
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

/// Two clusters, `blue` and `green`, and a Standard static IP in a group of its own; returns
/// the IP's address.
async fn two_clusters_and_a_static_ip(world: &World) -> String {
    let client = &world.client;
    for group in ["rg-aks", "rg-static"] {
        create(
            client,
            &group_id(group),
            RESOURCES,
            json!({"location": "westeurope"}),
        )
        .await;
    }
    let ip = create(
        client,
        &ip_id(),
        PUBLIC_IP,
        json!({"location": "westeurope", "sku": {"name": "Standard"}, "properties": {"publicIPAllocationMethod": "Static"}}),
    )
    .await;
    for name in ["blue", "green"] {
        create(
            client,
            &cluster_id(name),
            CONTAINER_SERVICE,
            json!({
                "location": "westeurope",
                "properties": {"dnsPrefix": name, "agentPoolProfiles": [{"name": "system", "count": 1, "vmSize": "Standard_D2s_v3", "mode": "System"}]},
            }),
        )
        .await;
    }
    ip["properties"]["ipAddress"].as_str().unwrap().to_owned()
}

/// The ingress Service as ferry's spec writes it: a `LoadBalancer` on 443 taking the static
/// IP, its pods at `backend`.
fn ingress_service(backend: SocketAddr) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "ingress",
            "namespace": "ingress",
            "annotations": {
                "service.beta.kubernetes.io/azure-pip-name": "ingress",
                "service.beta.kubernetes.io/azure-load-balancer-resource-group": "rg-static",
                "ferry-sim/backend": backend.to_string(),
            },
        },
        "spec": {"type": "LoadBalancer", "ports": [{"name": "https", "port": 443, "targetPort": 8443}]},
    })
}

const SERVICE_PATH: &str = "/api/v1/namespaces/ingress/services/ingress";

/// One request to a cluster's API server; `Err` when the server does not answer.
async fn kube(
    world: &World,
    cluster: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, Value), String> {
    let address = world.simulator.api_server_address(cluster).unwrap();
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|error| error.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(world.tls.clone());
    let name = ServerName::IpAddress(address.ip().into());
    let mut stream = connector
        .connect(name, stream)
        .await
        .map_err(|error| error.to_string())?;
    let body = body.map(|body| body.to_string()).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|error| error.to_string())?;
    let mut answer = Vec::new();
    // The server closes without TLS's close_notify when it is done: what arrived is the answer.
    let _ = stream.read_to_end(&mut answer).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no answer: {answer:?}"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    let body = serde_json::from_str(body).unwrap_or(Value::String(body.to_owned()));
    Ok((status, body))
}

async fn put_service(world: &World, cluster: &str, service: &Value) -> (u16, Value) {
    kube(
        world,
        cluster,
        "PUT",
        SERVICE_PATH,
        Some(TOKEN),
        Some(service),
    )
    .await
    .unwrap()
}

async fn get_service(world: &World, cluster: &str) -> (u16, Value) {
    kube(world, cluster, "GET", SERVICE_PATH, Some(TOKEN), None)
        .await
        .unwrap()
}

/// Polls `check` until it gives a value, failing after [`PATIENCE`] with `what`.
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ingress_of(world: &World, cluster: &str) -> Option<String> {
    let (_, service) = get_service(world, cluster).await;
    service
        .pointer("/status/loadBalancer/ingress/0/ip")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn frontend_name(service: &Value) -> String {
    format!(
        "a{}",
        service["metadata"]["uid"]
            .as_str()
            .unwrap()
            .replace('-', "")
    )
}

fn frontends(balancer: &Value) -> Vec<String> {
    balancer["properties"]["frontendIPConfigurations"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|frontend| frontend["name"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes every frontend and rule from a cluster's `kubernetes` load balancer over ARM, as
/// ferry's release step does, with the ETag it read.
async fn remove_frontends(world: &World, cluster: &str) {
    let balancer = kubernetes_balancer(cluster);
    let fetched = world.client.get::<Value>(&balancer, NETWORK).await.unwrap();
    let mut body = fetched.value;
    body["properties"]["frontendIPConfigurations"] = json!([]);
    body["properties"]["loadBalancingRules"] = json!([]);
    world
        .client
        .put_and_wait::<_, Value>(
            &balancer,
            NETWORK,
            &body,
            &WriteOptions {
                if_match: fetched.etag,
                ..WriteOptions::default()
            },
        )
        .await
        .unwrap();
}

fn holder_of(ip: &Value) -> Option<String> {
    ip.pointer("/properties/ipConfiguration/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// A "pod": reads what its client sends until the client is done, and answers with its name
/// and those bytes, so that an answer shows bytes went both ways.
async fn backend(name: &'static str) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut asked = String::new();
                let _ = stream.read_to_string(&mut asked).await;
                let _ = stream.write_all(format!("{name} {asked}").as_bytes()).await;
            });
        }
    });
    address
}

/// Which pods a client of the static IP reaches on 443, if any (within a second): it sends
/// `ping` and expects the pods' name and its `ping` back.
async fn reach(ip: &str) -> Option<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect((ip, 443)).await.ok()?;
        stream.write_all(b"ping").await.ok()?;
        stream.shutdown().await.ok()?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.ok()?;
        reply.strip_suffix(" ping").map(str::to_owned)
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn the_api_server_serves_services_and_refuses_what_kubernetes_refuses() {
    let world = start(0).await;
    two_clusters_and_a_static_ip(&world).await;
    let service = ingress_service("127.0.0.1:8443".parse().unwrap());

    let (status, body) = kube(&world, "blue", "GET", SERVICE_PATH, None, None)
        .await
        .unwrap();
    assert_eq!(
        (status, body["reason"].clone()),
        (401, json!("Unauthorized"))
    );
    let (status, body) = get_service(&world, "blue").await;
    assert_eq!(status, 404);
    assert_eq!(body["message"], "services \"ingress\" not found");

    let (status, created) = put_service(&world, "blue", &service).await;
    assert_eq!(status, 201);
    assert!(created["metadata"]["uid"].is_string());
    assert_eq!(created["spec"]["ports"][0]["protocol"], "TCP");
    assert!(created["spec"]["ports"][0]["nodePort"].is_number());
    let (status, replaced) = put_service(&world, "blue", &service).await;
    assert_eq!(status, 200);
    assert_eq!(replaced["metadata"]["uid"], created["metadata"]["uid"]);

    let mut stale = service.clone();
    stale["metadata"]["resourceVersion"] = json!("1");
    let (status, body) = put_service(&world, "blue", &stale).await;
    assert_eq!(status, 409);
    assert_eq!(
        body["message"],
        "Operation cannot be fulfilled on services \"ingress\": the object has been modified; please apply your changes to the latest version and try again"
    );
    let mut renamed = service.clone();
    renamed["metadata"]["name"] = json!("other");
    let (status, body) = put_service(&world, "blue", &renamed).await;
    assert_eq!(status, 400);
    assert_eq!(
        body["message"],
        "the name of the object (other) does not match the name on the URL (ingress)"
    );
    let mut no_ports = service.clone();
    no_ports["spec"]["ports"] = json!([]);
    let (status, body) = put_service(&world, "blue", &no_ports).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["message"],
        "Service \"ingress\" is invalid: spec.ports: Required value"
    );
    let mut bad_backend = service.clone();
    bad_backend["metadata"]["annotations"]["ferry-sim/backend"] = json!("somewhere");
    let (status, body) = put_service(&world, "blue", &bad_backend).await;
    assert_eq!(status, 422);
    assert_eq!(
        body["message"],
        "Service \"ingress\" is invalid: metadata.annotations[ferry-sim/backend]: Invalid value: \"somewhere\": the simulator's backend is IP:PORT, or IP for each port's targetPort"
    );

    // A down API server answers nothing, Services included.
    world.simulator.inject(Fault::ApiServerDown {
        cluster: "blue".to_owned(),
        mode: ApiServerDownMode::Refuse,
    });
    assert!(
        kube(&world, "blue", "GET", SERVICE_PATH, Some(TOKEN), None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn the_standby_s_controller_takes_the_static_ip_once_the_old_frontend_is_removed() {
    let world = start(1).await;
    let address = two_clusters_and_a_static_ip(&world).await;
    let client = &world.client;
    let blue_pods = backend("blue").await;
    let green_pods = backend("green").await;

    // The serving cluster's controller takes the free IP.
    let (_, blue_service) = put_service(&world, "blue", &ingress_service(blue_pods)).await;
    let blue_ingress = eventually("blue's Service to show the IP", || async {
        ingress_of(&world, "blue").await
    })
    .await;
    assert_eq!(blue_ingress, address);
    let blue_frontend = format!(
        "{}/frontendIPConfigurations/{}",
        kubernetes_balancer("blue"),
        frontend_name(&blue_service)
    );
    let ip = get(client, &ip_id(), PUBLIC_IP).await;
    assert_eq!(holder_of(&ip).as_deref(), Some(blue_frontend.as_str()));
    let balancer = get(client, &kubernetes_balancer("blue"), NETWORK).await;
    let rule_name = format!("{}-TCP-443", frontend_name(&blue_service));
    let rule = &balancer["properties"]["loadBalancingRules"][0];
    assert_eq!(rule["name"], rule_name);
    assert_eq!(
        rule["properties"]["frontendIPConfiguration"]["id"],
        blue_frontend
    );
    assert_eq!(
        rule["properties"]["probe"]["id"],
        format!("{}/probes/{rule_name}", kubernetes_balancer("blue"))
    );
    assert_eq!(
        (
            rule["properties"]["frontendPort"].clone(),
            rule["properties"]["backendPort"].clone()
        ),
        (json!(443), json!(443))
    );
    assert_eq!(
        balancer["properties"]["probes"][0]["properties"]["port"],
        blue_service["spec"]["ports"][0]["nodePort"]
    );
    let (_, service) = get_service(&world, "blue").await;
    assert_eq!(
        service["metadata"]["finalizers"],
        json!(["service.kubernetes.io/load-balancer-cleanup"])
    );
    // Its traffic reaches blue's pods.
    eventually("the IP to reach blue's pods", || async {
        (reach(&address).await.as_deref() == Some("blue")).then_some(())
    })
    .await;

    // The standby's controller retries while blue holds the IP, saying why.
    put_service(&world, "green", &ingress_service(green_pods)).await;
    let error = eventually("green's Service to show the refusal", || async {
        let (_, service) = get_service(&world, "green").await;
        service
            .pointer("/status/ferrySim/lastError")
            .and_then(Value::as_str)
            .map(str::to_owned)
    })
    .await;
    assert!(
        error.starts_with("PublicIPAddressInUse: Resource ")
            && error.ends_with(&format!(
                "that is already allocated to resource {blue_frontend}."
            )),
        "{error}"
    );
    assert_eq!(ingress_of(&world, "green").await, None);
    assert!(
        world.simulator.refusal_counts().cloud_controller["PublicIPAddressInUse"] >= 1,
        "{:?}",
        world.simulator.refusal_counts()
    );

    // Failover: blue's control plane is dead, and ferry removes its frontend over ARM.
    world.simulator.inject(Fault::ApiServerDown {
        cluster: "blue".to_owned(),
        mode: ApiServerDownMode::Refuse,
    });
    remove_frontends(&world, "blue").await;
    let green_ingress = eventually("green's Service to take the IP", || async {
        ingress_of(&world, "green").await
    })
    .await;
    assert_eq!(green_ingress, address);
    // Blue's controller did not run while its API server was down: no frontend came back.
    assert_eq!(
        frontends(&get(client, &kubernetes_balancer("blue"), NETWORK).await),
        Vec::<String>::new()
    );
    let (_, green_service) = get_service(&world, "green").await;
    assert_eq!(
        green_service["status"]["ferrySim"]["lastEvent"],
        "EnsuredLoadBalancer"
    );
    assert!(
        green_service["status"]["ferrySim"]
            .get("lastError")
            .is_none()
    );
    let green_frontend = format!(
        "{}/frontendIPConfigurations/{}",
        kubernetes_balancer("green"),
        frontend_name(&green_service)
    );
    assert_eq!(
        holder_of(&get(client, &ip_id(), PUBLIC_IP).await).as_deref(),
        Some(green_frontend.as_str())
    );
    // The same address now reaches green's pods: clients change nothing.
    eventually("the IP to reach green's pods", || async {
        (reach(&address).await.as_deref() == Some("green")).then_some(())
    })
    .await;

    // Blue's API server back: its controller runs again, and is refused while green holds it.
    world.simulator.inject(Fault::ApiServerUp {
        cluster: "blue".to_owned(),
    });
    eventually("blue's controller to be refused", || async {
        let (_, service) = get_service(&world, "blue").await;
        (service
            .pointer("/status/ferrySim/lastErrorCode")
            .and_then(Value::as_str)
            == Some("PublicIPAddressInUse"))
        .then_some(())
    })
    .await;
    assert_eq!(ingress_of(&world, "blue").await, None);

    // Blue's Service goes (it held nothing); then a frontend removed under green's running
    // controller comes back.
    let (status, _) = kube(&world, "blue", "DELETE", SERVICE_PATH, Some(TOKEN), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    eventually("blue's Service to go", || async {
        (get_service(&world, "blue").await.0 == 404).then_some(())
    })
    .await;
    remove_frontends(&world, "green").await;
    eventually("green's frontend to come back", || async {
        let balancer = get(client, &kubernetes_balancer("green"), NETWORK).await;
        (frontends(&balancer) == vec![frontend_name(&green_service)]).then_some(())
    })
    .await;
    eventually("the IP to reach green's pods again", || async {
        (reach(&address).await.as_deref() == Some("green")).then_some(())
    })
    .await;

    // Green's Service deleted: its frontend and rules go, then the Service, and the IP is free
    // and reaches nothing.
    kube(&world, "green", "DELETE", SERVICE_PATH, Some(TOKEN), None)
        .await
        .unwrap();
    eventually("green's Service to go", || async {
        (get_service(&world, "green").await.0 == 404).then_some(())
    })
    .await;
    let balancer = get(client, &kubernetes_balancer("green"), NETWORK).await;
    assert_eq!(frontends(&balancer), Vec::<String>::new());
    assert_eq!(balancer["properties"]["loadBalancingRules"], json!([]));
    assert_eq!(balancer["properties"]["probes"], json!([]));
    assert_eq!(holder_of(&get(client, &ip_id(), PUBLIC_IP).await), None);
    eventually("the IP's listener to close", || async {
        reach(&address).await.is_none().then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_service_that_stops_being_a_load_balancer_lets_go_of_its_ip() {
    let world = start(2).await;
    let address = two_clusters_and_a_static_ip(&world).await;
    let client = &world.client;
    let pods = backend("blue").await;
    put_service(&world, "blue", &ingress_service(pods)).await;
    eventually("blue's Service to show the IP", || async {
        ingress_of(&world, "blue").await
    })
    .await;

    let (_, mut service) = get_service(&world, "blue").await;
    service["spec"]["type"] = json!("ClusterIP");
    let (status, _) = put_service(&world, "blue", &service).await;
    assert_eq!(status, 200);
    let released = eventually("blue's Service to lose its finalizer", || async {
        let (_, service) = get_service(&world, "blue").await;
        (service["metadata"]["finalizers"] == json!([])).then_some(service)
    })
    .await;
    assert_eq!(released["status"], json!({"loadBalancer": {}}));
    let balancer = get(client, &kubernetes_balancer("blue"), NETWORK).await;
    assert_eq!(frontends(&balancer), Vec::<String>::new());
    assert_eq!(holder_of(&get(client, &ip_id(), PUBLIC_IP).await), None);
    eventually("the IP's listener to close", || async {
        reach(&address).await.is_none().then_some(())
    })
    .await;
    // A Service without the finalizer goes at once.
    let (status, _) = kube(&world, "blue", "DELETE", SERVICE_PATH, Some(TOKEN), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(get_service(&world, "blue").await.0, 404);
}
