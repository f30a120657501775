//! Reads within a read round against the ARM simulator, counted by the simulator's request
//! stats: a group's VMs with one list (and their power states with the subscription's
//! `statusOnly` list), lists of several pages, a missing group, lists that fail (read one by
//! one, never absent), a later round that reads afresh, and a step's reads that never use the
//! round.

use ferry_compute::{PublicIpProvider, VmProvider};
use ferry_core::{Action, Observation};
use ferry_sim::Fault;
use ferry_testkit::provider_harness::{Harness, attributes, instance};
use serde_json::json;

const VMS: [&str; 4] = ["a", "b", "c", "d"];

fn resources() -> Vec<(&'static str, serde_json::Value)> {
    let mut resources = vec![
        (
            "resource_group.main",
            json!({"name": "fleet-g${generation}"}),
        ),
        (
            "public_ip.web",
            json!({"name": "web-ip", "resource_group": "resource_group.main"}),
        ),
    ];
    for (address, name) in [
        ("vm.a", "vm-a"),
        ("vm.b", "vm-b"),
        ("vm.c", "vm-c"),
        ("vm.d", "vm-d"),
    ] {
        resources.push((
            address,
            json!({"name": name, "resource_group": "resource_group.main"}),
        ));
    }
    resources
}

async fn fleet(page_size: usize) -> Harness {
    let harness = Harness::start_with(&resources(), |config| config.page_size = page_size).await;
    harness.seed_group("resource_group.main@g1", "fleet-g1");
    for vm in VMS {
        harness.seed_vm(&format!("vm.{vm}@g1"), "fleet-g1", &format!("vm-{vm}"));
    }
    harness
}

fn vm_fields(vm: &str, generation: u32) -> ferry_core::Attributes {
    attributes(json!({
        "name": format!("vm-{vm}"),
        "resource_group": format!("resource_group.main@g{generation}"),
    }))
}

/// Every VM of generation `generation`, read concurrently, in order.
async fn read_vms(harness: &Harness, generation: u32) -> Vec<Observation> {
    let provider = VmProvider::new(harness.azure.clone());
    let read = |vm: &'static str| {
        let provider = provider.clone();
        async move {
            harness
                .read(
                    &provider,
                    &instance(&format!("vm.{vm}@g{generation}")),
                    &vm_fields(vm, generation),
                )
                .await
        }
    };
    let (a, b, c, d) = tokio::join!(read("a"), read("b"), read("c"), read("d"));
    vec![a, b, c, d]
}

#[tokio::test]
async fn a_round_reads_a_groups_vms_with_one_list_and_their_power_with_another() {
    let harness = fleet(100).await;
    harness.simulator.reset_request_stats();
    let one_by_one = read_vms(&harness, 1).await;
    // Each VM: its GET and its instance view.
    assert_eq!(harness.simulator.request_stats().requests, 8);
    for observation in &one_by_one {
        assert!(observation.is_present(), "{}", observation.describe());
    }

    harness.simulator.reset_request_stats();
    let round = harness.azure.begin_read_round();
    let listed = read_vms(&harness, 1).await;
    drop(round);
    assert_eq!(listed, one_by_one, "a list shows what the GETs show");
    let stats = harness.simulator.request_stats();
    // The subscription's groups, then what the spec's resources at generation 1 need, fetched
    // at once: the group's VMs, their interfaces and its public IPs, and the subscription's VMs
    // with statusOnly. One request each, however many VMs wait for them at once.
    assert_eq!((stats.requests, stats.throttled), (5, 0), "{stats:?}");
}

#[tokio::test]
async fn lists_of_several_pages_are_read_to_their_end() {
    let harness = fleet(1).await;
    let one_by_one = read_vms(&harness, 1).await;
    harness.simulator.reset_request_stats();
    let round = harness.azure.begin_read_round();
    let listed = read_vms(&harness, 1).await;
    drop(round);
    assert_eq!(listed, one_by_one);
    // One page per item: one group, four VMs in the group's list, four in statusOnly's, and
    // an empty page each of interfaces and public IPs.
    assert_eq!(
        harness.simulator.request_stats().requests,
        1 + 4 + 4 + 1 + 1
    );
}

#[tokio::test]
async fn everything_in_a_missing_group_is_absent_from_the_groups_list_alone() {
    let harness = fleet(100).await;
    let round = harness.azure.begin_read_round();
    harness.simulator.reset_request_stats();
    let next_generation = read_vms(&harness, 2).await;
    assert_eq!(next_generation, vec![Observation::Absent; 4]);
    assert_eq!(
        harness.simulator.request_stats().requests,
        1,
        "only the subscription's groups were listed"
    );
    drop(round);

    // Without the groups' list, each list in the group answers 404 ResourceGroupNotFound:
    // absent too.
    harness.simulator.inject(Fault::RawResponse {
        method: Some("GET".into()),
        path_contains: "/resourcegroups".into(),
        status: 403,
        headers: Vec::new(),
        body: json!({"error": {"code": "AuthorizationFailed", "message": "no"}}).to_string(),
        count: Some(1),
    });
    let round = harness.azure.begin_read_round();
    harness.simulator.reset_request_stats();
    let next_generation = read_vms(&harness, 2).await;
    drop(round);
    assert_eq!(next_generation, vec![Observation::Absent; 4]);
    // The refused groups' list, statusOnly's, and the group's VMs, interfaces and public IPs.
    assert_eq!(harness.simulator.request_stats().requests, 5);
}

#[tokio::test]
async fn a_list_that_fails_is_never_read_as_absent() {
    let harness = fleet(100).await;
    let one_by_one = read_vms(&harness, 1).await;
    let vm_list = format!(
        "{}/providers/Microsoft.Compute/virtualMachines",
        harness.group_id("fleet-g1")
    );
    // The group's list is refused once: every VM is read with its own GET.
    harness.simulator.inject(Fault::RawResponse {
        method: Some("GET".into()),
        path_contains: vm_list.clone(),
        status: 403,
        headers: Vec::new(),
        body: json!({"error": {"code": "AuthorizationFailed", "message": "no"}}).to_string(),
        count: Some(1),
    });
    let round = harness.azure.begin_read_round();
    let listed = read_vms(&harness, 1).await;
    drop(round);
    assert_eq!(listed, one_by_one);

    // Refused every time: unknown, with ARM's reason, and never absent.
    harness.simulator.clear_faults();
    harness.simulator.inject(Fault::RawResponse {
        method: Some("GET".into()),
        path_contains: vm_list,
        status: 403,
        headers: Vec::new(),
        body: json!({"error": {"code": "AuthorizationFailed", "message": "no"}}).to_string(),
        count: None,
    });
    let round = harness.azure.begin_read_round();
    let refused = read_vms(&harness, 1).await;
    drop(round);
    for observation in refused {
        let Observation::Unknown { reason } = &observation else {
            panic!("{}", observation.describe());
        };
        assert!(reason.contains("AuthorizationFailed"), "{reason}");
    }
}

#[tokio::test]
async fn a_later_round_reads_afresh_and_a_step_never_reads_from_a_round() {
    let harness = fleet(100).await;
    let provider = PublicIpProvider::new(harness.azure.clone());
    let ip = instance("public_ip.web@g1");
    let fields = attributes(json!({
        "name": "web-ip", "resource_group": "resource_group.main@g1", "location": "westeurope",
        "sku": "Standard", "allocation": "Static"
    }));
    let round = harness.azure.begin_read_round();
    assert_eq!(
        harness.read(&provider, &ip, &fields).await,
        Observation::Absent
    );
    // The create reads the IP before and after its PUT with GETs of its own: a list read
    // before the IP existed would tell it the IP it just made is missing.
    let outputs = harness
        .apply(&provider, &ip, Action::Create, &fields, Vec::new(), None)
        .await
        .unwrap();
    assert_eq!(outputs["name"], json!("web-ip"));
    // Within the round, the list read before the create still answers.
    assert_eq!(
        harness.read(&provider, &ip, &fields).await,
        Observation::Absent
    );
    drop(round);
    let _next_round = harness.azure.begin_read_round();
    assert!(harness.read(&provider, &ip, &fields).await.is_present());
}
