//! A VM's size change against the ARM simulator, as Azure makes it: one PATCH when the VM's
//! hardware cluster hosts the new size (`vmSizes` lists it), else deallocate, PATCH and start;
//! a retried step carries on where its attempt stopped.

use std::sync::Mutex;

use ferry_compute::{ResourceGroupProvider, VmProvider, VmRules, VnetProvider};
use ferry_core::{
    Action, ApplyContext, Attributes, KindRules, Observation, Provider, ResourceSpec, Step,
    StepError, StepId,
};
use ferry_sim::Fault;
use ferry_testkit::provider_harness::{Harness, attributes, instance};
use serde_json::json;

fn vm_fields(size: &str) -> Attributes {
    attributes(json!({
        "name": "web-vm", "resource_group": "resource_group.main@g1", "location": "westeurope",
        "vnet": "vnet.main@g1", "subnet": "default", "size": size,
        "admin_username": "azureuser", "ssh_public_key": "ssh-ed25519 AAAA test"
    }))
}

/// A running `Standard_D4s_v5` VM in its group and network, built by the providers.
async fn running_vm() -> Harness {
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
    let azure = harness.azure.clone();
    let steps: [(Box<dyn Provider>, &str, Attributes); 3] = [
        (
            Box::new(ResourceGroupProvider::new(azure.clone())),
            "resource_group.main@g1",
            attributes(json!({"name": "web-g1", "location": "westeurope"})),
        ),
        (
            Box::new(VnetProvider::new(azure.clone())),
            "vnet.main@g1",
            attributes(json!({
                "name": "web-vnet", "resource_group": "resource_group.main@g1",
                "location": "westeurope", "address_space": ["10.1.0.0/16"],
                "subnets": {"default": "10.1.0.0/24"}
            })),
        ),
        (
            Box::new(VmProvider::new(azure)),
            "vm.web@g1",
            vm_fields("Standard_D4s_v5"),
        ),
    ];
    for (provider, address, fields) in steps {
        harness
            .apply(
                &*provider,
                &instance(address),
                Action::Create,
                &fields,
                Vec::new(),
                None,
            )
            .await
            .unwrap();
    }
    harness
}

fn vm_id(harness: &Harness) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/web-vm",
        harness.group_id("web-g1")
    )
}

/// The writes the simulator saw on the VM since event `since`: `PATCH 200`, `POST deallocate
/// 202`, with ARM's code when refused.
fn vm_writes(harness: &Harness, since: usize) -> Vec<String> {
    let vm = vm_id(harness).to_ascii_lowercase();
    harness.simulator.events()[since..]
        .iter()
        .filter(|event| event.what == "request" && event.method != "GET")
        .filter_map(|event| {
            let path = event.path.to_ascii_lowercase();
            let action = path.strip_prefix(&vm)?;
            let action = action.trim_start_matches('/');
            let mut line = format!("{} {action}", event.method);
            line = format!("{} {}", line.trim_end(), event.outcome);
            if let Some(code) = &event.code {
                line.push_str(&format!(" {code}"));
            }
            Some(line)
        })
        .collect()
}

/// Applies an update of the VM to `size`, as the engine would, with the operation an earlier
/// attempt recorded; returns the result and the progress lines.
async fn update(
    harness: &Harness,
    size: &str,
    resume: Option<&str>,
) -> (Result<Attributes, StepError>, Vec<String>) {
    let vm = instance("vm.web@g1");
    let inputs = vm_fields(size);
    let step = Step {
        id: StepId::new(&vm, Action::Update),
        address: vm.clone(),
        action: Action::Update,
        reason: "changed in place: size".into(),
        after: Vec::new(),
        estimate_seconds: 180,
        changes: Default::default(),
        inputs: inputs.clone(),
        warning: None,
    };
    let state = harness.state.lock().unwrap().clone();
    let outputs = move |instance: &ferry_core::InstanceAddress| state.get(instance).cloned();
    let lines = Mutex::new(Vec::new());
    let progress = |line: String| lines.lock().unwrap().push(line);
    let record = |operation: String| harness.recorded.lock().unwrap().push(operation);
    let provider = VmProvider::new(harness.azure.clone());
    let result = provider
        .apply(
            &step,
            ApplyContext {
                inputs: &inputs,
                outputs: &outputs,
                progress: &progress,
                resume_token: resume,
                record_resume_token: &record,
            },
        )
        .await
        .map(|outcome| outcome.outputs);
    (result, lines.into_inner().unwrap())
}

async fn read(harness: &Harness, size: &str) -> Observation {
    harness
        .read(
            &VmProvider::new(harness.azure.clone()),
            &instance("vm.web@g1"),
            &vm_fields(size),
        )
        .await
}

fn last_recorded(harness: &Harness) -> String {
    harness.recorded.lock().unwrap().last().cloned().unwrap()
}

#[tokio::test]
async fn vm_sizes_lists_the_series_of_a_running_vm_and_every_size_once_deallocated() {
    let harness = running_vm().await;
    let client = harness.azure.client();
    let path = format!("{}/vmSizes", vm_id(&harness));
    let sizes: Vec<serde_json::Value> = client
        .list(&path, ferry_arm::api_version::COMPUTE)
        .await
        .unwrap();
    assert_eq!(
        sizes[0],
        json!({
            "name": "Standard_D2s_v5", "numberOfCores": 2, "osDiskSizeInMB": 1047552,
            "resourceDiskSizeInMB": 0, "memoryInMB": 8192, "maxDataDiskCount": 4
        })
    );
    let names = |sizes: &[serde_json::Value]| -> Vec<String> {
        sizes
            .iter()
            .map(|size| size["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        names(&sizes),
        [
            "Standard_D2s_v5",
            "Standard_D4s_v5",
            "Standard_D8s_v5",
            "Standard_D16s_v5"
        ]
    );
    // Refused while it runs, with ARM's code and the sizes of its cluster.
    let error = client
        .patch_and_wait::<_, serde_json::Value>(
            &vm_id(&harness),
            ferry_arm::api_version::COMPUTE,
            &json!({"properties": {"hardwareProfile": {"vmSize": "Standard_E8s_v5"}}}),
            &ferry_arm::WriteOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(409));
    assert_eq!(error.code(), Some("OperationNotAllowed"));
    assert!(
        error.to_string().contains(
            "Unable to resize the VM 'web-vm' because the requested size Standard_E8s_v5 is not available in the current hardware cluster. The available sizes in this cluster are: Standard_D2s_v5,Standard_D4s_v5,Standard_D8s_v5,Standard_D16s_v5."
        ),
        "{error}"
    );
    let _: Option<serde_json::Value> = client
        .post_and_wait::<(), serde_json::Value>(
            &format!("{}/deallocate", vm_id(&harness)),
            ferry_arm::api_version::COMPUTE,
            None,
            &ferry_arm::WriteOptions::default(),
        )
        .await
        .unwrap();
    let sizes: Vec<serde_json::Value> = client
        .list(&path, ferry_arm::api_version::COMPUTE)
        .await
        .unwrap();
    assert_eq!(sizes.len(), ferry_compute::VM_SIZES.len());
    assert_eq!(names(&sizes), ferry_compute::VM_SIZES);
}

#[tokio::test]
async fn a_size_its_hardware_hosts_is_one_patch_and_the_vm_never_stops() {
    let harness = running_vm().await;
    let pending = read(&harness, "Standard_D8s_v5").await;
    assert_eq!(
        pending.attribute("resizable_in_place"),
        Some(&json!(true)),
        "{pending:?}"
    );
    let since = harness.simulator.events().len();
    let (outputs, lines) = update(&harness, "Standard_D8s_v5", None).await;
    let outputs = outputs.unwrap();
    assert_eq!(outputs["size"], json!("Standard_D8s_v5"));
    assert_eq!(outputs["power_state"], json!("running"));
    assert_eq!(outputs.get("resizable_in_place"), None);
    assert_eq!(vm_writes(&harness, since), ["PATCH 200"]);
    assert_eq!(
        lines,
        ["resizing web-vm from Standard_D4s_v5 to Standard_D8s_v5 in place (Azure restarts it)"]
    );
    // A converged VM's reading has no resize attribute.
    assert_eq!(
        read(&harness, "Standard_D8s_v5")
            .await
            .attribute("resizable_in_place"),
        None
    );
}

#[tokio::test]
async fn a_size_its_hardware_cannot_host_deallocates_resizes_and_starts_the_vm() {
    let harness = running_vm().await;
    let pending = read(&harness, "Standard_E8s_v5").await;
    assert_eq!(pending.attribute("resizable_in_place"), Some(&json!(false)));
    assert!(pending.is_healthy());
    let since = harness.simulator.events().len();
    let (outputs, lines) = update(&harness, "Standard_E8s_v5", None).await;
    let outputs = outputs.unwrap();
    assert_eq!(outputs["size"], json!("Standard_E8s_v5"));
    assert_eq!(outputs["power_state"], json!("running"));
    assert_eq!(
        vm_writes(&harness, since),
        ["POST deallocate 202", "PATCH 200", "POST start 202"]
    );
    assert_eq!(
        lines,
        [
            "Standard_E8s_v5 is not available on the hardware web-vm runs on: deallocating it, resizing it from Standard_D4s_v5 and starting it again; it stops for a few minutes",
            "deallocating web-vm (now running)",
            "starting web-vm again",
        ]
    );
    let reading = read(&harness, "Standard_E8s_v5").await;
    assert!(reading.is_healthy(), "{}", reading.describe());
    // Each power change and the resize ran as an operation, in that order.
    let operations: Vec<String> = harness
        .simulator
        .events()
        .iter()
        .skip(since)
        .filter(|event| event.what == "operation")
        .map(|event| format!("{} {}", event.method, event.outcome))
        .collect();
    assert_eq!(
        operations,
        ["POST Succeeded", "PATCH Succeeded", "POST Succeeded"]
    );
    // Applying the same step again changes nothing but the PATCH of what it holds.
    let since = harness.simulator.events().len();
    update(&harness, "Standard_E8s_v5", None).await.0.unwrap();
    assert_eq!(vm_writes(&harness, since), ["PATCH 200"]);
}

#[tokio::test]
async fn a_refusal_in_place_after_vm_sizes_said_yes_takes_the_deallocation() {
    // The cluster changed between `vmSizes` and the PATCH: ARM refuses, ferry deallocates.
    let harness = running_vm().await;
    harness.simulator.inject(Fault::RawResponse {
        method: Some("PATCH".into()),
        path_contains: "virtualMachines/web-vm".into(),
        status: 409,
        headers: Vec::new(),
        body: json!({"error": {"code": "OperationNotAllowed", "target": "vmSize", "message": "Unable to resize the VM 'web-vm' because the requested size Standard_D8s_v5 is not available in the current hardware cluster."}}).to_string(),
        count: Some(1),
    });
    let since = harness.simulator.events().len();
    let (outputs, lines) = update(&harness, "Standard_D8s_v5", None).await;
    assert_eq!(outputs.unwrap()["size"], json!("Standard_D8s_v5"));
    // The simulator's event log leaves out the answers its faults give.
    assert_eq!(
        vm_writes(&harness, since),
        ["POST deallocate 202", "PATCH 200", "POST start 202"]
    );
    assert!(
        lines[1].starts_with("ARM refused to resize web-vm where it runs: OperationNotAllowed: ")
            && lines[1].contains("(PATCH ")
            && lines[1].contains(" answered 409"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_step_interrupted_between_deallocation_and_resize_carries_on_without_deallocating_again()
{
    let harness = running_vm().await;
    // The attempt dies after the deallocation: its PATCH never gets through.
    harness.simulator.inject(Fault::RawResponse {
        method: Some("PATCH".into()),
        path_contains: "virtualMachines/web-vm".into(),
        status: 400,
        headers: Vec::new(),
        body:
            json!({"error": {"code": "Interrupted", "message": "the test stops the attempt here"}})
                .to_string(),
        count: Some(1),
    });
    let since = harness.simulator.events().len();
    let (first, _) = update(&harness, "Standard_E8s_v5", None).await;
    assert!(first.is_err());
    assert_eq!(vm_writes(&harness, since), ["POST deallocate 202"]);
    let deallocated = read(&harness, "Standard_E8s_v5").await;
    assert_eq!(
        deallocated.attribute("power_state"),
        Some(&json!("deallocated"))
    );
    assert_eq!(
        deallocated.attribute("size"),
        Some(&json!("Standard_D4s_v5"))
    );

    // The retry gets the deallocation as the operation to resume, as the journal gives it
    // after a kill between the two.
    let recorded = last_recorded(&harness);
    assert!(recorded.contains("/deallocate"), "{recorded}");
    let since = harness.simulator.events().len();
    let (second, lines) = update(&harness, "Standard_E8s_v5", Some(&recorded)).await;
    let outputs = second.unwrap();
    assert_eq!(outputs["size"], json!("Standard_E8s_v5"));
    assert_eq!(outputs["power_state"], json!("running"));
    assert_eq!(
        vm_writes(&harness, since),
        ["PATCH 200", "POST start 202"],
        "no second deallocation"
    );
    assert!(
        lines.contains(&"web-vm is deallocated: carrying on with the resize to Standard_E8s_v5 that an earlier attempt began".to_owned()),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_retry_that_finds_the_vm_deallocated_with_its_new_size_starts_it() {
    let harness = running_vm().await;
    // The start is refused once: the VM is left deallocated with its new size.
    harness.simulator.inject(Fault::RawResponse {
        method: Some("POST".into()),
        path_contains: "virtualMachines/web-vm/start".into(),
        status: 400,
        headers: Vec::new(),
        body:
            json!({"error": {"code": "Interrupted", "message": "the test stops the attempt here"}})
                .to_string(),
        count: Some(1),
    });
    let (first, _) = update(&harness, "Standard_E8s_v5", None).await;
    let error = first.unwrap_err();
    assert!(!error.transient);
    assert!(
        error.message.starts_with(
            "vm.web@g1: the VM was deallocated and resized to Standard_E8s_v5, but did not start again: Interrupted: the test stops the attempt here (POST "
        ),
        "{error}"
    );
    assert!(
        error.message.ends_with(
            "it stays deallocated and serves nothing until it starts: the next `ferry apply` starts it (its plan shows the start); if Azure has no capacity for Standard_E8s_v5 there (AllocationFailed), change its size in the spec and apply again"
        ),
        "{error}"
    );
    let reading = read(&harness, "Standard_E8s_v5").await;
    assert_eq!(reading.attribute("size"), Some(&json!("Standard_E8s_v5")));
    assert_eq!(
        reading.attribute("power_state"),
        Some(&json!("deallocated"))
    );

    let recorded = last_recorded(&harness);
    assert!(recorded.contains("\"PATCH\""), "{recorded}");
    let since = harness.simulator.events().len();
    let (second, _) = update(&harness, "Standard_E8s_v5", Some(&recorded)).await;
    assert_eq!(second.unwrap()["power_state"], json!("running"));
    assert_eq!(vm_writes(&harness, since), ["POST start 202"]);
}

#[tokio::test]
async fn a_vm_deallocated_before_the_step_is_resized_and_left_deallocated() {
    let harness = running_vm().await;
    let client = harness.azure.client();
    let _: Option<serde_json::Value> = client
        .post_and_wait::<(), serde_json::Value>(
            &format!("{}/deallocate", vm_id(&harness)),
            ferry_arm::api_version::COMPUTE,
            None,
            &ferry_arm::WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        read(&harness, "Standard_E8s_v5")
            .await
            .attribute("resizable_in_place"),
        Some(&json!(true)),
        "a deallocated VM takes any size"
    );
    let recorded_before = harness.recorded.lock().unwrap().len();
    let since = harness.simulator.events().len();
    let (outputs, _) = update(&harness, "Standard_E8s_v5", None).await;
    let outputs = outputs.unwrap();
    assert_eq!(outputs["size"], json!("Standard_E8s_v5"));
    assert_eq!(outputs["power_state"], json!("deallocated"));
    assert_eq!(vm_writes(&harness, since), ["PATCH 200"]);
    assert_eq!(
        harness.recorded.lock().unwrap().len(),
        recorded_before,
        "not recorded: a retry must not take it for the middle of a resize and start the VM"
    );
}

#[test]
fn an_invalid_size_is_refused_at_validation_with_the_valid_choices() {
    let mut spec = ResourceSpec::new("vm.web".parse().unwrap());
    spec.fields = attributes(json!({"name": "web-vm", "size": "Standard_E8s_v6"}));
    let errors = VmRules.validate(&spec);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "size");
    assert_eq!(errors[0].message, "`Standard_E8s_v6` is not a valid size");
    assert_eq!(
        errors[0].help.as_deref(),
        Some(
            "use one of: Standard_B2s, Standard_B2ms, Standard_B4ms, Standard_D2s_v5, Standard_D4s_v5, Standard_D8s_v5, Standard_D16s_v5, Standard_D2as_v5, Standard_D4as_v5, Standard_D8as_v5, Standard_E4s_v5, Standard_E8s_v5, Standard_E16s_v5, Standard_F4s_v2, Standard_F8s_v2"
        )
    );
}
