//! A VM of the serving generation that reads deallocated is started again, planned by the
//! real planner from the provider's reading and applied by the provider against the ARM
//! simulator: a VM deallocated behind ferry's back, and a resize whose start failed or that
//! was killed between its PATCH and its start.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ferry_compute::{
    ResourceGroupProvider, ResourceGroupRules, VmProvider, VmRules, VnetProvider, VnetRules,
};
use ferry_core::{
    ApplyContext, InstanceAddress, Observation, Plan, Provider, RuleBook, Snapshot, StepError,
};
use ferry_plan::PlanConfig;
use ferry_plan::render::{self, TextOptions};
use ferry_sim::Fault;
use ferry_spec::Spec;
use ferry_testkit::provider_harness::{Harness, instance};
use serde_json::json;

const INSTANCES: [&str; 3] = ["resource_group.main@g1", "vnet.main@g1", "vm.web@g1"];

fn rules() -> RuleBook {
    RuleBook::new()
        .with(Box::new(ResourceGroupRules))
        .with(Box::new(VnetRules))
        .with(Box::new(VmRules))
}

fn spec(size: &str) -> Spec {
    let text = format!(
        r#"
[deployment]
name = "web"
location = "westeurope"

[failover]
mode = "off"

[resource_group.main]
name = "web-g${{generation}}"

[vnet.main]
name = "web-vnet"
resource_group = "resource_group.main"
address_space = ["10.1.0.0/16"]
subnets = {{ default = "10.1.0.0/24" }}

[vm.web]
name = "web-vm"
resource_group = "resource_group.main"
vnet = "vnet.main"
size = "{size}"
ssh_public_key = "ssh-ed25519 AAAA test"
"#
    );
    ferry_spec::load_sources(
        Path::new("spec"),
        vec![(PathBuf::from("web.toml"), text)],
        &ferry_spec::LoadOptions::default(),
        &rules(),
    )
    .unwrap_or_else(|errors| panic!("{}", errors.render(false)))
}

fn provider(harness: &Harness, instance: &InstanceAddress) -> Box<dyn Provider> {
    let azure = harness.azure.clone();
    match instance.kind() {
        ferry_core::Kind::ResourceGroup => Box::new(ResourceGroupProvider::new(azure)),
        ferry_core::Kind::Vnet => Box::new(VnetProvider::new(azure)),
        _ => Box::new(VmProvider::new(azure)),
    }
}

/// What `ferry observe` reads of generation 1: each instance through its provider, with the
/// spec's fields resolved as the planner resolves them.
async fn observe(harness: &Harness, spec: &Spec) -> Snapshot {
    let rules = rules();
    let mut snapshot = Snapshot::new(1);
    for text in INSTANCES {
        let instance = instance(text);
        let fields = ferry_plan::resolve::resolve_fields(
            spec,
            rules.get(instance.kind()).unwrap(),
            &instance.address,
            1,
            &|other, output| harness.outputs(other)?.get(output).cloned(),
        );
        let observation = harness
            .read(&*provider(harness, &instance), &instance, &fields)
            .await;
        snapshot.insert(instance, observation);
    }
    snapshot
}

fn plan(spec: &Spec, snapshot: &Snapshot) -> Plan {
    ferry_plan::plan(spec, snapshot, &rules(), &PlanConfig::default())
        .unwrap_or_else(|errors| panic!("{errors}"))
}

fn text(plan: &Plan) -> String {
    render::text(plan, &TextOptions { color: false })
}

/// Applies every step of `plan` in order, as the engine would with one at a time, and returns
/// the first error with the progress lines.
async fn apply(harness: &Harness, plan: &Plan) -> (Result<(), StepError>, Vec<String>) {
    let lines = Mutex::new(Vec::new());
    for step in &plan.steps {
        let state = harness.state.lock().unwrap().clone();
        let outputs = move |instance: &InstanceAddress| state.get(instance).cloned();
        let progress = |line: String| lines.lock().unwrap().push(line);
        let record = |operation: String| harness.recorded.lock().unwrap().push(operation);
        let result = provider(harness, &step.address)
            .apply(
                step,
                ApplyContext {
                    inputs: &step.inputs,
                    outputs: &outputs,
                    progress: &progress,
                    resume_token: None,
                    record_resume_token: &record,
                },
            )
            .await;
        match result {
            Ok(outcome) => {
                harness
                    .state
                    .lock()
                    .unwrap()
                    .insert(step.address.clone(), outcome.outputs);
            }
            Err(error) => return (Err(error), lines.into_inner().unwrap()),
        }
    }
    (Ok(()), lines.into_inner().unwrap())
}

/// Generation 1 of the spec at `size`, built by its own plan and apply.
async fn built(size: &str) -> Harness {
    let harness = Harness::start(&[
        ("resource_group.main", json!({"name": "web-g${generation}"})),
        (
            "vnet.main",
            json!({"name": "web-vnet", "resource_group": "resource_group.main"}),
        ),
        (
            "vm.web",
            json!({"name": "web-vm", "resource_group": "resource_group.main"}),
        ),
    ])
    .await;
    let spec = spec(size);
    let first = plan(&spec, &Snapshot::new(0));
    apply(&harness, &first).await.0.unwrap();
    let converged = plan(&spec, &observe(&harness, &spec).await);
    assert!(converged.is_empty(), "{}", text(&converged));
    harness
}

fn vm_id(harness: &Harness) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/web-vm",
        harness.group_id("web-g1")
    )
}

/// The writes the simulator saw on the VM since event `since`, such as `POST start 202`.
fn vm_writes(harness: &Harness, since: usize) -> Vec<String> {
    let vm = vm_id(harness).to_ascii_lowercase();
    harness.simulator.events()[since..]
        .iter()
        .filter(|event| event.what == "request" && event.method != "GET")
        .filter_map(|event| {
            let path = event.path.to_ascii_lowercase();
            let action = path.strip_prefix(&vm)?.trim_start_matches('/').to_owned();
            Some(
                format!("{} {action}", event.method).trim_end().to_owned()
                    + &format!(" {}", event.outcome),
            )
        })
        .collect()
}

/// A power operation or PATCH sent straight to ARM, as the portal or a killed step does.
async fn behind_ferrys_back(harness: &Harness, action: &str, body: Option<serde_json::Value>) {
    let client = harness.azure.client();
    let options = ferry_arm::WriteOptions::default();
    match body {
        Some(body) => {
            let _: Option<serde_json::Value> = client
                .patch_and_wait(
                    &vm_id(harness),
                    ferry_arm::api_version::COMPUTE,
                    &body,
                    &options,
                )
                .await
                .unwrap();
        }
        None => {
            let _: Option<serde_json::Value> = client
                .post_and_wait::<(), serde_json::Value>(
                    &format!("{}/{action}", vm_id(harness)),
                    ferry_arm::api_version::COMPUTE,
                    None,
                    &options,
                )
                .await
                .unwrap();
        }
    }
}

fn power_state(snapshot: &Snapshot) -> Option<&serde_json::Value> {
    snapshot
        .get(&instance("vm.web@g1"))
        .and_then(|observation| observation.attribute("power_state"))
}

#[tokio::test]
async fn a_vm_deallocated_behind_ferrys_back_is_started_by_the_next_plan_and_apply() {
    let harness = built("Standard_D4s_v5").await;
    let spec = spec("Standard_D4s_v5");
    behind_ferrys_back(&harness, "deallocate", None).await;

    let deallocated = observe(&harness, &spec).await;
    assert_eq!(power_state(&deallocated), Some(&json!("deallocated")));
    assert!(matches!(
        deallocated.get(&instance("vm.web@g1")),
        Some(Observation::Present { health, .. }) if !health.is_healthy()
    ));
    let start = plan(&spec, &deallocated);
    assert_eq!(
        text(&start),
        "\
1. ~ update vm.web@g1  ~1m  (critical path)
     it is deallocated: started again, so that it serves
     ~ power_state = \"deallocated\" -> \"running\"

Plan: 1 to update (1 step).
Estimated duration: 1m.
Critical path:
     update vm.web@g1 (1m)
"
    );

    let since = harness.simulator.events().len();
    let (result, lines) = apply(&harness, &start).await;
    result.unwrap();
    assert_eq!(
        vm_writes(&harness, since),
        ["POST start 202"],
        "no PATCH: nothing else changes"
    );
    assert_eq!(
        lines,
        ["starting web-vm (it is deallocated) so that it serves"]
    );
    let running = observe(&harness, &spec).await;
    assert_eq!(power_state(&running), Some(&json!("running")));
    assert!(running.get(&instance("vm.web@g1")).unwrap().is_healthy());
    let again = plan(&spec, &running);
    assert!(again.is_empty(), "{}", text(&again));

    // The same step applied again (a retry) finds it running: no start, only the PATCH of
    // what the step holds, as every update of a running VM sends.
    let since = harness.simulator.events().len();
    apply(&harness, &start).await.0.unwrap();
    assert_eq!(vm_writes(&harness, since), ["PATCH 200"]);
}

#[tokio::test]
async fn a_resize_whose_start_failed_is_finished_by_the_next_plan_and_apply() {
    let harness = built("Standard_D4s_v5").await;
    let spec = spec("Standard_E8s_v5");
    // Azure has no capacity for the new size: the start after the PATCH fails.
    harness.simulator.inject(Fault::RawResponse {
        method: Some("POST".into()),
        path_contains: "virtualMachines/web-vm/start".into(),
        status: 409,
        headers: Vec::new(),
        body: json!({"error": {"code": "AllocationFailed", "message": "Allocation failed. We do not have sufficient capacity for the requested VM size in this region."}}).to_string(),
        count: Some(1),
    });
    let resize = plan(&spec, &observe(&harness, &spec).await);
    assert!(
        text(&resize).contains("deallocated to resize to Standard_E8s_v5"),
        "{}",
        text(&resize)
    );
    let (result, _) = apply(&harness, &resize).await;
    let error = result.unwrap_err();
    assert!(
        error.message.starts_with(
            "vm.web@g1: the VM was deallocated and resized to Standard_E8s_v5, but did not start again: AllocationFailed: "
        ) && error.message.contains("(POST ")
            && error.message.ends_with(
                "it stays deallocated and serves nothing until it starts: the next `ferry apply` starts it (its plan shows the start); if Azure has no capacity for Standard_E8s_v5 there (AllocationFailed), change its size in the spec and apply again"
            ),
        "{error}"
    );

    // The size reads as the spec's, and the power state is what the next plan converges.
    let left = observe(&harness, &spec).await;
    assert_eq!(
        left.get(&instance("vm.web@g1"))
            .and_then(|observation| observation.attribute("size")),
        Some(&json!("Standard_E8s_v5"))
    );
    let finish = plan(&spec, &left);
    assert_eq!(
        text(&finish).lines().take(3).collect::<Vec<_>>(),
        [
            "1. ~ update vm.web@g1  ~1m  (critical path)",
            "     it is deallocated: started again, so that it serves",
            "     ~ power_state = \"deallocated\" -> \"running\"",
        ]
    );
    let since = harness.simulator.events().len();
    apply(&harness, &finish).await.0.unwrap();
    assert_eq!(vm_writes(&harness, since), ["POST start 202"]);
    let again = plan(&spec, &observe(&harness, &spec).await);
    assert!(again.is_empty(), "{}", text(&again));
}

#[tokio::test]
async fn a_resize_killed_between_its_patch_and_its_start_is_finished_by_the_next_plan_and_apply() {
    let harness = built("Standard_D4s_v5").await;
    let spec = spec("Standard_E8s_v5");
    // What the killed step did: deallocated the VM and PATCHed its size, and no more.
    behind_ferrys_back(&harness, "deallocate", None).await;
    behind_ferrys_back(
        &harness,
        "",
        Some(json!({"properties": {"hardwareProfile": {"vmSize": "Standard_E8s_v5"}}})),
    )
    .await;
    let left = observe(&harness, &spec).await;
    let finish = plan(&spec, &left);
    assert_eq!(
        text(&finish).lines().nth(1),
        Some("     it is deallocated: started again, so that it serves")
    );
    let since = harness.simulator.events().len();
    apply(&harness, &finish).await.0.unwrap();
    assert_eq!(vm_writes(&harness, since), ["POST start 202"]);
    let running = observe(&harness, &spec).await;
    assert_eq!(power_state(&running), Some(&json!("running")));
    let again = plan(&spec, &running);
    assert!(again.is_empty(), "{}", text(&again));
}

#[tokio::test]
async fn a_deallocated_vm_whose_size_changes_too_is_resized_then_started() {
    let harness = built("Standard_D4s_v5").await;
    behind_ferrys_back(&harness, "deallocate", None).await;
    let spec = spec("Standard_E8s_v5");
    let both = plan(&spec, &observe(&harness, &spec).await);
    assert_eq!(
        text(&both).lines().nth(1),
        Some(
            "     it is deallocated: resized to Standard_E8s_v5 and started again, so that it serves"
        )
    );
    let since = harness.simulator.events().len();
    let (result, lines) = apply(&harness, &both).await;
    result.unwrap();
    assert_eq!(
        vm_writes(&harness, since),
        ["PATCH 200", "POST start 202"],
        "no deallocation: it is deallocated already"
    );
    assert_eq!(lines, ["starting web-vm again"]);
    let running = observe(&harness, &spec).await;
    assert_eq!(power_state(&running), Some(&json!("running")));
    assert!(plan(&spec, &running).is_empty());
}

/// The step's inputs, not the VM's reading at apply time, decide a start: a step whose plan
/// did not show one (the VM ran when it was planned) leaves a VM it finds deallocated so.
#[tokio::test]
async fn only_a_step_that_shows_the_start_starts_a_vm() {
    let harness = built("Standard_D4s_v5").await;
    let spec = spec("Standard_E8s_v5");
    let resize = plan(&spec, &observe(&harness, &spec).await);
    assert!(!resize.steps[0].inputs.contains_key("power_state"));
    behind_ferrys_back(&harness, "deallocate", None).await;
    let since = harness.simulator.events().len();
    apply(&harness, &resize).await.0.unwrap();
    assert_eq!(vm_writes(&harness, since), ["PATCH 200"]);
    let left = harness.outputs(&instance("vm.web@g1")).unwrap();
    assert_eq!(left["power_state"], json!("deallocated"));
    // The next plan shows the start.
    let next = plan(&spec, &observe(&harness, &spec).await);
    assert_eq!(
        next.steps[0].reason,
        "it is deallocated: started again, so that it serves"
    );
}
