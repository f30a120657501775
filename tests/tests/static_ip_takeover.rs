//! A static IP taken over in a failover, through the `ferry` binary on the ARM simulator: the
//! serving cluster's ingress holds the address (AKS's cloud controller, simulated, put it on a
//! frontend of the cluster's `kubernetes` load balancer for the hub's Service), the cluster's
//! API server dies (so its controller never lets go of the address), and the failover detaches
//! the address from the old load balancer over ARM; the new generation's hub asks for it, its
//! controller takes it, and clients reach the new generation at the same address, with no DNS
//! change. When the old API server answers again, its controller finds the address taken and
//! does not get it back.
//!
//! The hub is `hub.py` below, a stand-in for `deploy-hub.sh`: `idle` starts the hub's "pods" (a
//! TCP server that says which generation serves) and asks for nothing; `activate` creates the
//! proxy's Service on the cluster's API server with the annotations that ask AKS for the static
//! IP by name, and waits until the Service has the address, as `helm --wait` waits for a
//! LoadBalancer's.

mod real_servers;

use std::io::Read;
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ferry_sim::{Fault, Simulator, SimulatorConfig};
use real_servers::ferry_binary;

/// The hub stand-in's port on the address: what the Service's rule forwards.
const PORT: u16 = 8080;

const SPEC: &str = r#"
[deployment]
name = "web"
subscription = "00000000-0000-0000-0000-000000000000"
location = "westeurope"

[failover]
mode = "automatic"
triggers = ["aks_cluster.hub"]
standby = "warm"
# Generation 1 is kept after the failover: its API server comes back in the test.
retire_old = "when-asked"

[variables]
hub_state = "@HUB_STATE_FOLDER@"

[resource_group.main]
name = "web-g${generation}"

[aks_cluster.hub]
name = "web-hub"
resource_group = "resource_group.main"
dns_prefix = "web-g${generation}"
node_count = 1

# The address clients know, in a group no generation deletes.
[static_ip.ingress]
name = "web-ingress"
resource_group = "web-shared"
service = "hub/proxy-public"

[hook.hub_idle]
command = ["python3", "./hub.py", "idle"]
env = { KUBECONFIG = "${aks_cluster.hub.kubeconfig}", GENERATION = "${generation}", HUB_STATE = "${var.hub_state}" }
standby = true
estimate_seconds = 600

[hook.hub_active]
command = ["python3", "./hub.py", "activate"]
env = { KUBECONFIG = "${aks_cluster.hub.kubeconfig}", GENERATION = "${generation}", HUB_STATE = "${var.hub_state}", INGRESS_IP = "${static_ip.ingress.address}", INGRESS_IP_NAME = "${static_ip.ingress.name}", INGRESS_IP_GROUP = "web-shared" }
timeout_seconds = 120
estimate_seconds = 60
depends_on = ["hook.hub_idle"]
"#;

const HUB: &str = r#"
import base64, json, os, socket, ssl, subprocess, sys, time, urllib.request

mode, generation, state = sys.argv[1], os.environ["GENERATION"], os.environ["HUB_STATE"]
os.makedirs(state, exist_ok=True)
port_file = os.path.join(state, "g%s.port" % generation)

PODS = r'''
import socket, sys
generation, port_file = sys.argv[1], sys.argv[2]
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", 0))
server.listen(16)
with open(port_file + ".new", "w") as out:
    out.write(str(server.getsockname()[1]))
import os
os.rename(port_file + ".new", port_file)
while True:
    connection, _ = server.accept()
    connection.sendall(b"generation " + generation.encode() + b"\n")
    connection.close()
'''

if mode == "idle":
    if not os.path.exists(port_file):
        pods = subprocess.Popen([sys.executable, "-c", PODS, generation, port_file],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        with open(os.path.join(state, "g%s.pid" % generation), "w") as out:
            out.write(str(pods.pid))
        for _ in range(100):
            if os.path.exists(port_file):
                break
            time.sleep(0.05)
    print("hub of generation %s deployed idle" % generation)
    sys.exit(0)

# activate: the proxy's Service, asking AKS for the static IP by name.
kubeconfig = open(os.environ["KUBECONFIG"]).read()
def field(name):
    for line in kubeconfig.splitlines():
        line = line.strip()
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
server = field("server")
context = ssl.create_default_context(cadata=base64.b64decode(field("certificate-authority-data")).decode())
token = field("token")
def call(method, path, body=None):
    request = urllib.request.Request(server + path, method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, context=context, timeout=10) as response:
        return json.load(response)
port = open(port_file).read().strip()
path = "/api/v1/namespaces/hub/services/proxy-public"
call("PUT", path, {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "proxy-public", "namespace": "hub", "annotations": {
        "service.beta.kubernetes.io/azure-pip-name": os.environ["INGRESS_IP_NAME"],
        "service.beta.kubernetes.io/azure-load-balancer-resource-group": os.environ["INGRESS_IP_GROUP"],
        "ferry-sim/backend": "127.0.0.1:" + port}},
    "spec": {"type": "LoadBalancer", "ports": [{"port": %PORT%, "targetPort": %PORT%}]}})
deadline = time.time() + 60
while True:
    service = call("GET", path)
    ingress = service.get("status", {}).get("loadBalancer", {}).get("ingress") or []
    if any(item.get("ip") == os.environ["INGRESS_IP"] for item in ingress):
        print("hub of generation %s active on %s" % (generation, os.environ["INGRESS_IP"]))
        sys.exit(0)
    if time.time() > deadline:
        print("the Service has no address after 60 s: %s" % json.dumps(service.get("status")), file=sys.stderr)
        sys.exit(1)
    time.sleep(0.1)
"#;

/// Stops the hubs' "pods" however the test ends.
struct Pods(PathBuf);

impl Drop for Pods {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if entry
                .path()
                .extension()
                .is_some_and(|extension| extension == "pid")
                && let Ok(pid) = std::fs::read_to_string(entry.path())
            {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

struct Takeover {
    simulator: Simulator,
    work: PathBuf,
    environment: Vec<(&'static str, String)>,
    _pods: Pods,
    _folder: tempfile::TempDir,
}

impl Takeover {
    async fn start() -> Takeover {
        let folder = tempfile::tempdir().unwrap();
        let mut config = SimulatorConfig::for_tests(folder.path().join("sim"));
        // Addresses of its own: the simulator forwards the address's port, which another
        // test's simulator must not hold.
        config.first_public_ip = Ipv4Addr::new(127, 0, 3, 1);
        let simulator = ferry_sim::start(config).await.unwrap();
        let work = folder.path().join("web");
        let state = folder.path().join("hubs");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::write(
            work.join("main.toml"),
            SPEC.replace("@HUB_STATE_FOLDER@", &state.display().to_string()),
        )
        .unwrap();
        std::fs::write(
            work.join("hub.py"),
            HUB.replace("%PORT%", &PORT.to_string()),
        )
        .unwrap();
        let environment = ferry_servers::simulator_environment(
            simulator.endpoint(),
            simulator.ca_file(),
            &folder.path().join("sim"),
        );
        Takeover {
            simulator,
            work,
            environment,
            _pods: Pods(state),
            _folder: folder,
        }
    }

    fn ferry(&self, arguments: &[&str]) -> Output {
        Command::new(ferry_binary())
            .current_dir(&self.work)
            .args(arguments)
            .args(["--color", "never"])
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .output()
            .unwrap()
    }

    fn ferry_ok(&self, arguments: &[&str]) -> String {
        let output = self.ferry(arguments);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "ferry {arguments:?}:\n{text}");
        text
    }

    /// A resource as ARM answers for it (a public IP's holder is worked out by the GET).
    async fn resource(&self, id: &str) -> serde_json::Value {
        let client = ferry_arm::ArmClient::new(ferry_arm::ArmClientConfig::simulator(
            ferry_arm::Url::parse(self.simulator.endpoint()).unwrap(),
            self.simulator.ca_file().to_path_buf(),
        ))
        .unwrap();
        client
            .read::<serde_json::Value>(&ferry_arm::ResourceId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("the simulator has no {id}"))
            .value
    }

    /// The static IP's address and the IP configuration that holds it.
    async fn address(&self) -> (String, Option<String>) {
        let ip = self.resource(IP_ID).await;
        (
            ip.pointer("/properties/ipAddress")
                .and_then(serde_json::Value::as_str)
                .unwrap()
                .to_owned(),
            ip.pointer("/properties/ipConfiguration/id")
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned),
        )
    }

    fn cluster_id(generation: u32) -> String {
        format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/web-g{generation}/providers/Microsoft.ContainerService/managedClusters/web-hub"
        )
    }

    /// The load balancer of a generation's cluster, where its controller puts the address.
    async fn load_balancer(&self, generation: u32) -> String {
        let cluster = self.resource(&Self::cluster_id(generation)).await;
        let group = cluster
            .pointer("/properties/nodeResourceGroup")
            .and_then(serde_json::Value::as_str)
            .unwrap()
            .to_owned();
        format!(
            "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{group}/providers/Microsoft.Network/loadBalancers/kubernetes"
        )
    }
}

const IP_ID: &str = "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/web-shared/providers/Microsoft.Network/publicIPAddresses/web-ingress";

/// What a client reaching the address hears: which generation serves it.
fn served_by(address: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = TcpStream::connect((address, PORT)).and_then(|mut stream| {
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            let mut text = String::new();
            stream.read_to_string(&mut text)?;
            Ok(text)
        });
        match answer {
            Ok(text) if !text.is_empty() => return text.trim().to_owned(),
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("nothing answers on {address}:{PORT}: {other:?}"),
        }
    }
}

fn holder_is_of(holder: Option<&str>, load_balancer: &str) -> bool {
    holder.is_some_and(|holder| {
        holder
            .to_ascii_lowercase()
            .starts_with(&format!("{}/", load_balancer.to_ascii_lowercase()))
    })
}

/// The failover's plan, with what changes from run to run masked: the address, the test's
/// folder, and the API server's address in the trigger's reason.
fn masked(text: &str, address: &str, folder: &std::path::Path) -> String {
    text.replace(address, "ADDRESS")
        .replace(&folder.display().to_string(), "FOLDER")
        .lines()
        .map(|line| match line.split_once("is unhealthy: ") {
            Some((trigger, _)) => format!("{trigger}is unhealthy: [the API server's /readyz]"),
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A planned failover, the old cluster answering: its controller would put the frontend back
/// after ferry took it off, so the detach deletes the old cluster's Service first, and the old
/// controller lets go of the address itself; the new generation takes it, and it stays there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planned_failover_releases_the_address_through_the_old_cluster_which_keeps_off_it() {
    let world = Takeover::start().await;
    world.ferry_ok(&["apply", ".", "--auto-approve"]);
    let (address, holder) = world.address().await;
    assert!(
        holder_is_of(holder.as_deref(), &world.load_balancer(1).await),
        "{holder:?}"
    );
    let planned = world.ferry_ok(&["apply", ".", "--failover", "--auto-approve"]);
    assert!(
        planned.contains("its Service hub/proxy-public deleted"),
        "the old cluster let go of the address itself:\n{planned}"
    );
    let (after, holder) = world.address().await;
    assert_eq!(after, address);
    assert!(
        holder_is_of(holder.as_deref(), &world.load_balancer(2).await),
        "generation 2's ingress holds it: {holder:?}"
    );
    // Generation 1's controller still runs (generation 1 is kept): it stays off the address.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, holder) = world.address().await;
    assert!(
        holder_is_of(holder.as_deref(), &world.load_balancer(2).await),
        "{holder:?}"
    );
    assert_eq!(served_by(&address), "generation 2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_hands_the_static_ip_to_the_new_generation_and_clients_keep_the_address() {
    let world = Takeover::start().await;
    world.ferry_ok(&["apply", ".", "--auto-approve"]);
    let (address, holder) = world.address().await;
    assert!(
        holder_is_of(holder.as_deref(), &world.load_balancer(1).await),
        "generation 1's ingress holds the address: {holder:?}"
    );
    assert_eq!(served_by(&address), "generation 1");

    // The API server of generation 1 dies: its controller with it, holding the address.
    world.simulator.inject(Fault::ApiServerDown {
        cluster: Takeover::cluster_id(1),
        mode: ferry_sim::ApiServerDownMode::Refuse,
    });
    let plan = world.ferry_ok(&["plan", "."]);
    assert!(plan.contains("detach static_ip.ingress"), "{plan}");
    insta::assert_snapshot!(masked(&plan, &address, world.work.parent().unwrap()));

    world.ferry_ok(&["apply", ".", "--auto-approve"]);
    let (after, holder) = world.address().await;
    assert_eq!(after, address, "the same address");
    assert!(
        holder_is_of(holder.as_deref(), &world.load_balancer(2).await),
        "generation 2's ingress holds it: {holder:?}"
    );
    assert_eq!(served_by(&address), "generation 2");

    // The old API server answers again (generation 1 is kept): its controller finds the
    // address taken (Azure refuses it with PublicIPAddressInUse) and clients stay with
    // generation 2.
    world.simulator.inject(Fault::ApiServerUp {
        cluster: Takeover::cluster_id(1),
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, holder) = world.address().await;
    assert!(
        holder_is_of(holder.as_deref(), &world.load_balancer(2).await),
        "{holder:?}"
    );
    assert_eq!(served_by(&address), "generation 2");
}
