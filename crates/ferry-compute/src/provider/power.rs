//! A VM's power and size: the fence (deallocate, then wait until ARM shows it deallocated),
//! the resize in place or by deallocation, and the start of a VM that must serve.

use std::time::Duration;

use ferry_arm::deployment::{AzureDeployment, OutputsOf, tags_from};
use ferry_arm::{ArmError, PendingOperation, ReadVia, ResourceId, StepOperations, api_version};
use ferry_core::fields::vm;
use ferry_core::{ApplyContext, InstanceAddress, StepOutcome, Value};
use serde_json::json;

use super::{ComputeError, get, step_error, tags_of, text};

/// Deallocates a VM and waits until ARM shows it deallocated: only then can nothing on it
/// write to the disks that move away. A VM that is gone is fenced already.
pub(super) async fn fence_vm(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    instance: &InstanceAddress,
    outputs: OutputsOf<'_>,
) -> Result<StepOutcome, ComputeError> {
    let id = azure.id_of(instance, outputs)?;
    let state = match power_state(azure, &id).await {
        Ok(state) => state,
        Err(error) if error.is_not_found() => return Ok(StepOutcome::default()),
        Err(error) => return Err(error.into()),
    };
    deallocate(azure, operations, instance, &id, &state).await?;
    let mut outputs_after = outputs(instance).unwrap_or_default();
    outputs_after.insert(vm::POWER_STATE.into(), json!("deallocated"));
    outputs_after.insert("id".into(), json!(id.as_str()));
    Ok(StepOutcome {
        outputs: outputs_after,
    })
}

/// The VM's power state as its instance view shows it (`running`, `deallocated`, ...).
async fn power_state(azure: &AzureDeployment, id: &ResourceId) -> Result<String, ArmError> {
    let view = azure.client().virtual_machine_instance_view(id).await?;
    Ok(view.power_state().unwrap_or("unknown").to_owned())
}

/// Deallocates a VM that is in `state` now, unless it is deallocated already, and waits until
/// ARM shows it deallocated.
async fn deallocate(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    instance: &InstanceAddress,
    id: &ResourceId,
    state: &str,
) -> Result<(), ComputeError> {
    if state != "deallocated" {
        operations.progress(format!("deallocating {} (now {state})", id.name()));
        operations
            .post::<()>(&format!("{id}/deallocate"), api_version::COMPUTE, None)
            .await?;
    }
    match settle(azure, id, "deallocated").await? {
        Ok(()) => Ok(()),
        Err(state) => Err(ComputeError::NotFenced {
            instance: instance.clone(),
            state,
        }),
    }
}

/// Waits until the instance view shows `wanted`: ARM may finish a power operation a moment
/// before the instance view says so. `Err` carries the last state seen.
async fn settle(
    azure: &AzureDeployment,
    id: &ResourceId,
    wanted: &str,
) -> Result<Result<(), String>, ArmError> {
    let mut state = String::new();
    for attempt in 0..20u32 {
        state = power_state(azure, id).await?;
        if state == wanted {
            return Ok(Ok(()));
        }
        tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt + 1))).await;
    }
    Ok(Err(state))
}

/// The sizes ARM can resize the VM to where it is now (`GET {vm}/vmSizes`): while it runs,
/// those its hardware cluster hosts; once deallocated, every size of the region.
pub(super) async fn sizes_in_place(
    azure: &AzureDeployment,
    id: &ResourceId,
) -> Result<Vec<String>, ArmError> {
    let sizes = azure
        .client()
        .list::<Value>(&format!("{id}/vmSizes"), api_version::COMPUTE)
        .await?;
    Ok(sizes
        .iter()
        .filter_map(|size| text(size, "/name"))
        .collect())
}

/// ARM's refusal of a resize that the VM's hardware cluster cannot host while it runs.
fn needs_deallocation(error: &ArmError) -> bool {
    error.is_conflict()
        && error
            .code()
            .is_some_and(|code| code.eq_ignore_ascii_case("OperationNotAllowed"))
}

/// Whether the operation an interrupted attempt of this step recorded is part of a resize of
/// this VM: its deallocation, its PATCH or its start. Such an attempt found the VM running.
fn resuming_a_resize(recorded: Option<&str>, id: &ResourceId) -> bool {
    let Some(operation) =
        recorded.and_then(|text| serde_json::from_str::<PendingOperation>(text).ok())
    else {
        return false;
    };
    let Ok(url) = ferry_arm::Url::parse(&operation.resource_url) else {
        return false;
    };
    let path = url.path().trim_end_matches('/').to_ascii_lowercase();
    let vm = id.as_str().trim_end_matches('/').to_ascii_lowercase();
    match operation.method.to_ascii_uppercase().as_str() {
        "PATCH" => path == vm,
        "POST" => path == format!("{vm}/deallocate") || path == format!("{vm}/start"),
        _ => false,
    }
}

/// Brings an existing VM to the step's size and tags: a PATCH, which keeps its data disks;
/// and to running when the step's inputs say `power_state = "running"`, which the plan puts
/// there only for a VM of the serving generation that read deallocated or stopped
/// (`VmRules::implied_changes`).
///
/// A new size is one PATCH when the VM's `vmSizes` lists it: its hardware cluster hosts that
/// size, and Azure restarts the VM to resize it. Any other size of a running VM needs the VM
/// off its hardware first: deallocate, PATCH, start, and wait until ARM shows it running; the
/// VM stops for a few minutes. ARM refusing an in-place PATCH (`409 OperationNotAllowed`,
/// when its cluster changed since `vmSizes` answered) takes the same way. A stopped VM still
/// holds its hardware and is resized the same way.
///
/// A VM deallocated before the step takes any size. A step that starts it PATCHes what
/// changes, if anything, then starts it and waits until ARM shows it running. Any other step
/// leaves it deallocated: only a plan that showed the start starts a VM, so one deallocated
/// between the plan and the apply (by hand, say) stays so until a plan shows its start.
///
/// A retried step carries on where its attempt stopped. When the operation that attempt
/// recorded is this VM's deallocation, PATCH or start, the VM was running when the step began,
/// so a VM found deallocated is resized if it is not yet and started. The PATCH of a VM that
/// was deallocated before a step that does not start it is therefore not recorded: a retry
/// must never mistake it for the middle of a resize and start that VM.
pub(super) async fn update_vm(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    context: &ApplyContext<'_>,
    instance: &InstanceAddress,
    id: &ResourceId,
    size: &str,
) -> Result<(), ComputeError> {
    let start = context.inputs.get(vm::POWER_STATE).and_then(Value::as_str) == Some("running");
    let mut patch = json!({"properties": {"hardwareProfile": {"vmSize": size}}});
    let tags = tags_from(context.inputs);
    if let Some(tags) = &tags {
        patch["tags"] = json!(tags);
    }
    let body = get(azure, id, ReadVia::Single)
        .await?
        .ok_or_else(|| step_error(instance, "ARM does not show the VM any more: plan again"))?;
    let current = text(&body, "/properties/hardwareProfile/vmSize").unwrap_or_default();
    let resized = current.eq_ignore_ascii_case(size);
    let tagged = tags
        .as_ref()
        .is_none_or(|tags| tags_of(&body) == json!(tags));
    let state = power_state(azure, id).await?;
    if state == "deallocated" {
        let carrying_on = resuming_a_resize(context.resume_token, id);
        if !carrying_on && !start {
            let unrecorded = StepOperations::new(azure.client(), &|_: String| {}, context.progress);
            unrecorded.patch::<_, Value>(id, &patch).await?;
            return Ok(());
        }
        if carrying_on {
            operations.progress(format!(
                "{} is deallocated: carrying on with the resize to {size} that an earlier attempt began",
                id.name()
            ));
        }
        if !resized || !tagged {
            operations.patch::<_, Value>(id, &patch).await?;
        }
        return if carrying_on || !resized {
            start_after_resize(azure, operations, instance, id, size).await
        } else {
            start_again(azure, operations, instance, id, &state).await
        };
    }
    if resized {
        operations.patch::<_, Value>(id, &patch).await?;
    } else {
        let in_place = sizes_in_place(azure, id)
            .await?
            .iter()
            .any(|name| name.eq_ignore_ascii_case(size));
        let mut resized_in_place = false;
        if in_place {
            operations.progress(format!(
                "resizing {} from {current} to {size} in place (Azure restarts it)",
                id.name()
            ));
            match operations.patch::<_, Value>(id, &patch).await {
                Ok(_) => resized_in_place = true,
                Err(error) if needs_deallocation(&error) => operations.progress(format!(
                    "ARM refused to resize {} where it runs: {error}",
                    id.name()
                )),
                Err(error) => return Err(error.into()),
            }
        }
        if !resized_in_place {
            operations.progress(format!(
                "{size} is not available on the hardware {} runs on: deallocating it, resizing it from {current} and starting it again; it stops for a few minutes",
                id.name()
            ));
            deallocate(azure, operations, instance, id, &state).await?;
            operations.patch::<_, Value>(id, &patch).await?;
            return start_after_resize(azure, operations, instance, id, size).await;
        }
    }
    if start && state != "running" {
        return start_again(azure, operations, instance, id, &state).await;
    }
    Ok(())
}

/// Why a start did not leave a VM running.
enum StartFailure {
    /// ARM refused the start, or could not be asked (such as `AllocationFailed`).
    Refused(ArmError),
    /// ARM took the start but did not show the VM running; the last state seen.
    NotRunning(String),
}

/// Starts a VM unless ARM shows it running already, and waits until ARM shows it running.
async fn start_vm(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    id: &ResourceId,
    progress: String,
) -> Result<(), StartFailure> {
    if power_state(azure, id)
        .await
        .map_err(StartFailure::Refused)?
        != "running"
    {
        operations.progress(progress);
        operations
            .post::<()>(&format!("{id}/start"), api_version::COMPUTE, None)
            .await
            .map_err(StartFailure::Refused)?;
    }
    match settle(azure, id, "running")
        .await
        .map_err(StartFailure::Refused)?
    {
        Ok(()) => Ok(()),
        Err(state) => Err(StartFailure::NotRunning(state)),
    }
}

/// Starts a VM deallocated for its resize (or resized while deallocated) and waits until ARM
/// shows it running.
async fn start_after_resize(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    instance: &InstanceAddress,
    id: &ResourceId,
    size: &str,
) -> Result<(), ComputeError> {
    start_vm(
        azure,
        operations,
        id,
        format!("starting {} again", id.name()),
    )
    .await
    .map_err(|failure| match failure {
        StartFailure::Refused(source) => ComputeError::NotStartedAfterResize {
            instance: instance.clone(),
            size: size.to_owned(),
            source: Box::new(source),
        },
        StartFailure::NotRunning(state) => ComputeError::NotRunningAfterResize {
            instance: instance.clone(),
            size: size.to_owned(),
            state,
        },
    })
}

/// Starts a VM of the serving generation that the plan read `state` (deallocated or stopped)
/// and waits until ARM shows it running.
async fn start_again(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    instance: &InstanceAddress,
    id: &ResourceId,
    state: &str,
) -> Result<(), ComputeError> {
    start_vm(
        azure,
        operations,
        id,
        format!("starting {} (it is {state}) so that it serves", id.name()),
    )
    .await
    .map_err(|failure| match failure {
        StartFailure::Refused(source) => ComputeError::NotStarted {
            instance: instance.clone(),
            state: state.to_owned(),
            source: Box::new(source),
        },
        StartFailure::NotRunning(last) => ComputeError::NotRunning {
            instance: instance.clone(),
            state: last,
        },
    })
}
