//! A static IP that outlives generations (`static_ip`): the standby's idle ingress asks for it
//! ahead of any failover, the failover detaches it from the old cluster's load balancer before
//! the new generation's ingress needs it, and no DNS record changes, so that the time to
//! recovery counts no resolver's cache. An address held by what is not one of the deployment's
//! clusters, or whose holder cannot be read, is never taken.

mod support;

use ferry_core::fields::static_ip::HELD_BY;
use ferry_core::{Action, Health, InstanceAddress, Observation, Plan, Snapshot, Value};
use ferry_plan::render::{self, TextOptions};
use ferry_plan::{PlanConfig, PlanErrors};
use ferry_spec::Spec;
use support::{converge, spec};

const SPEC: &str = r#"
[deployment]
name = "web"
subscription = "00000000-0000-0000-0000-000000000000"
location = "westeurope"

[failover]
mode = "automatic"
triggers = ["aks_cluster.hub"]
standby = "warm"

[zones."example.org"]
backend = "rfc2136"
server = "127.0.0.1:53"
tsig_key_name = "ferry"
tsig_algorithm = "hmac-sha256"
tsig_secret_file = "/etc/ferry/tsig.key"

[resource_group.main]
name = "web-g${generation}"

[aks_cluster.hub]
name = "web-hub"
resource_group = "resource_group.main"
dns_prefix = "web-g${generation}"

# The address clients know, in a group no generation deletes.
[static_ip.ingress]
name = "web-ingress"
resource_group = "web-shared"
service = "hub/proxy-public"

# The idle release asks for the address ahead of any failover; its cloud controller takes it
# once the old cluster's load balancer lets go of it.
[hook.hub_idle]
command = ["./deploy-hub.sh", "--idle"]
env = { KUBECONFIG = "${aks_cluster.hub.kubeconfig}", INGRESS_IP = "${static_ip.ingress.address}" }
standby = true
estimate_seconds = 600

[hook.hub_active]
command = ["./deploy-hub.sh", "--activate"]
env = { KUBECONFIG = "${aks_cluster.hub.kubeconfig}", INGRESS_IP = "${static_ip.ingress.address}" }
estimate_seconds = 60
depends_on = ["hook.hub_idle"]

[dns_record.hub]
zone = "example.org"
name = "hub"
type = "A"
ttl = 300
values = ["${static_ip.ingress.address}"]
depends_on = ["hook.hub_active"]
"#;

fn web() -> Spec {
    spec(&[("main.toml", SPEC)])
}

fn plan(snapshot: &Snapshot) -> Result<Plan, PlanErrors> {
    ferry_plan::plan(
        &web(),
        snapshot,
        &ferry_providers::rule_book(),
        &PlanConfig::default(),
    )
}

fn address(text: &str) -> InstanceAddress {
    text.parse().unwrap()
}

fn text(plan: &Plan) -> String {
    render::text(plan, &TextOptions { color: false })
}

fn step<'a>(plan: &'a Plan, id: &str) -> &'a ferry_core::Step {
    plan.steps
        .iter()
        .find(|step| step.id.to_string() == id)
        .unwrap_or_else(|| panic!("no {id}:\n{}", text(plan)))
}

/// The frontend of `cluster`'s load balancer that holds the address, as Azure names it: the
/// load balancer `kubernetes` in the cluster's node resource group.
fn frontend_of(world: &Snapshot, cluster: &str) -> String {
    let group = world
        .get(&address(cluster))
        .and_then(|reading| reading.attribute("node_resource_group"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("{cluster} has no node resource group"))
        .to_owned();
    format!(
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/{group}/providers/Microsoft.Network/loadBalancers/kubernetes/frontendIPConfigurations/a9f1c2"
    )
}

fn set_attribute(world: &mut Snapshot, instance: &str, name: &str, value: Value) {
    match world.resources.get_mut(&address(instance)) {
        Some(Observation::Present { attributes, .. }) => {
            attributes.insert(name.into(), value);
        }
        other => panic!("{instance} is not present: {other:?}"),
    }
}

/// Generation 1 and its warm standby built, the address held by generation 1's ingress; the
/// API server of generation 1 has stopped answering.
fn outage() -> Snapshot {
    let mut world = ordinary_day();
    match world.resources.get_mut(&address("aks_cluster.hub@g1")) {
        Some(Observation::Present { health, .. }) => {
            *health = Health::Unhealthy {
                reason: "the API server does not answer".into(),
            }
        }
        other => panic!("aks_cluster.hub@g1 is not present: {other:?}"),
    }
    world
}

/// Generation 1 and its warm standby built and healthy, the address held by generation 1's
/// ingress.
fn ordinary_day() -> Snapshot {
    let first = plan(&Snapshot::new(0)).unwrap();
    let mut world = converge(&Snapshot::new(0), &first, 1);
    // What AKS names each cluster's node resource group, as the provider reads it.
    for generation in [1, 2] {
        set_attribute(
            &mut world,
            &format!("aks_cluster.hub@g{generation}"),
            "node_resource_group",
            format!("MC_web-g{generation}_web-hub_westeurope").into(),
        );
    }
    let holder = frontend_of(&world, "aks_cluster.hub@g1");
    set_attribute(&mut world, "static_ip.ingress", HELD_BY, holder.into());
    world
}

#[test]
fn the_first_plan_creates_the_address_before_the_standby_asks_for_it() {
    let plan = plan(&Snapshot::new(0)).unwrap();
    let create = step(&plan, "static_ip.ingress:create");
    assert_eq!(create.inputs["resource_group"], "web-shared");
    // The standby's idle release (generation 2) needs the address: it waits for its create,
    // although the address belongs to no generation.
    let idle = step(&plan, "hook.hub_idle@g2:run");
    assert!(
        idle.after.iter().any(|id| id == &create.id),
        "{:?}\n{}",
        idle.after,
        text(&plan)
    );
    assert!(
        plan.steps
            .iter()
            .any(|step| step.id.to_string() == "aks_cluster.hub@g2:create"),
        "the standby is built: {}",
        text(&plan)
    );
}

/// `service` steers the detach; Azure has no such attribute, and a reading without it is no
/// change.
#[test]
fn a_converged_world_without_the_service_in_its_reading_has_no_changes() {
    let mut world = ordinary_day();
    match world.resources.get_mut(&address("static_ip.ingress")) {
        Some(Observation::Present { attributes, .. }) => {
            attributes.remove("service");
        }
        other => panic!("static_ip.ingress is not present: {other:?}"),
    }
    let plan = plan(&world).unwrap();
    assert!(
        !plan
            .steps
            .iter()
            .any(|step| step.address == address("static_ip.ingress")),
        "{}",
        text(&plan)
    );
}

#[test]
fn a_failover_detaches_the_address_from_the_old_cluster_and_changes_no_dns_record() {
    let world = outage();
    let plan = plan(&world).unwrap();
    let shown = text(&plan);
    let failover = plan.failover.as_ref().expect("a failover");
    assert_eq!(
        (failover.from_generation, failover.to_generation),
        (1, 2),
        "{shown}"
    );
    let detach = step(&plan, "static_ip.ingress:detach");
    assert_eq!(detach.action, Action::Detach);
    assert_eq!(
        detach.inputs[HELD_BY],
        frontend_of(&world, "aks_cluster.hub@g1").as_str()
    );
    // The new generation's ingress takes the address once it is free.
    let active = step(&plan, "hook.hub_active@g2:run");
    assert!(
        plan.ancestors(&active.id).contains(&detach.id),
        "the activation waits for the detach:\n{shown}"
    );
    // The record already holds the address: no DNS change, and no resolver's cache to wait
    // out in the time to recovery.
    assert!(
        !plan
            .steps
            .iter()
            .any(|step| step.address.kind() == ferry_core::Kind::DnsRecord),
        "{shown}"
    );
    assert_eq!(plan.recovery_cached, None, "{shown}");
    insta::assert_snapshot!(shown);
}

#[test]
fn an_address_the_new_generation_holds_already_needs_no_detach() {
    let mut world = outage();
    // A resumed failover: the standby's ingress took the address after the detach.
    let first = plan(&world).unwrap();
    world = converge(&world, &first, 1);
    let holder = frontend_of(&world, "aks_cluster.hub@g2");
    set_attribute(&mut world, "static_ip.ingress", HELD_BY, holder.into());
    let again = plan(&world).unwrap();
    assert!(
        !again
            .steps
            .iter()
            .any(|step| step.id.to_string() == "static_ip.ingress:detach"),
        "{}",
        text(&again)
    );
}

#[test]
fn an_address_held_by_what_is_not_the_deployments_is_never_taken() {
    let mut world = outage();
    set_attribute(
        &mut world,
        "static_ip.ingress",
        HELD_BY,
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/someone-else/providers/Microsoft.Network/networkInterfaces/their-vm-nic/ipConfigurations/ipconfig1".into(),
    );
    let errors = plan(&world).expect_err("refused");
    insta::assert_snapshot!(errors.to_string());
}

/// What would block the takeover shows on an ordinary day, not during the outage.
#[test]
fn readiness_names_a_foreign_holder_on_an_ordinary_day() {
    let rules = ferry_providers::rule_book();
    let world = ordinary_day();
    let ready = ferry_plan::readiness(&web(), &world, &rules, &PlanConfig::default()).unwrap();
    assert!(ready.ready, "{:?}", ready.blockers);
    let mut taken = world;
    set_attribute(
        &mut taken,
        "static_ip.ingress",
        HELD_BY,
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/lab/providers/Microsoft.Network/loadBalancers/lab-lb/frontendIPConfigurations/public".into(),
    );
    let blocked = ferry_plan::readiness(&web(), &taken, &rules, &PlanConfig::default()).unwrap();
    assert!(!blocked.ready);
    let reasons: Vec<String> = blocked
        .blockers
        .iter()
        .map(|blocker| blocker.reason.clone())
        .collect();
    insta::assert_snapshot!(reasons.join("\n"));
}

#[test]
fn an_address_whose_holder_cannot_be_read_is_never_taken() {
    let mut world = outage();
    world.insert(
        address("static_ip.ingress"),
        Observation::Unknown {
            reason: "ARM answered 503 ServiceUnavailable".into(),
        },
    );
    let errors = plan(&world).expect_err("refused");
    insta::assert_snapshot!(errors.to_string());
}

#[test]
fn a_static_ip_named_per_generation_is_refused_at_load() {
    let text = SPEC.replace(
        "resource_group = \"web-shared\"",
        "resource_group = \"web-g${generation}\"",
    );
    let errors = ferry_spec::load_sources(
        std::path::Path::new("spec"),
        [(std::path::PathBuf::from("main.toml"), text)]
            .into_iter()
            .collect(),
        &ferry_spec::LoadOptions::default(),
        &ferry_providers::rule_book(),
    )
    .expect_err("refused");
    insta::assert_snapshot!(errors.render(false));
}
