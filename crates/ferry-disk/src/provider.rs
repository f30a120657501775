//! The `disk` provider on the ARM client: managed disks, attached through their VM's
//! `storageProfile.dataDisks`, moved between resource groups with `moveResources`.
//!
//! A disk is attached to at most one VM at every instant, and this provider never relies on
//! ARM to refuse a second attachment: an attach is refused here while the disk is attached to
//! any other VM, and a move while it is attached at all. A disk's id changes when it moves;
//! every step returns the id ARM shows afterwards, so that ferry's state follows the disk.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ferry_arm::deployment::{
    AzureDeployment, OutputsOf, generations_around, location_value, tags_from, tags_of_body,
    text_at,
};
use ferry_arm::models::MoveResourcesRequest;
use ferry_arm::{ArmError, LocateError, ResourceId, StepOperations, api_version};
use ferry_core::{
    Action, ApplyContext, Attributes, Generation, InstanceAddress, Kind, Observation, Provider,
    ReadContext, Step, StepError, StepOutcome, Value,
};
use serde_json::json;

/// Why a disk step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("{0}")]
    Arm(Box<ArmError>),
    #[error("{0}")]
    Locate(#[from] LocateError),
    #[error(
        "{disk}: ARM shows no managed disk named {name} in any resource group ferry knows for it; plan again"
    )]
    NotFound { disk: InstanceAddress, name: String },
    #[error(
        "{disk}: it is attached to {holder}, so it is not attached to {vm}: a disk is attached to one VM at a time; detach it from {holder} first (a failover plans the fence and the detach)"
    )]
    AttachedElsewhere {
        disk: InstanceAddress,
        holder: String,
        vm: String,
    },
    #[error(
        "{disk}: it is still attached to {holder}, and an attached disk cannot move: detach it first, then apply again"
    )]
    MoveWhileAttached {
        disk: InstanceAddress,
        holder: String,
    },
    #[error(
        "{disk}: lun {lun} of {vm} is taken by another disk ({other}): give each disk its own lun in the spec"
    )]
    LunTaken {
        disk: InstanceAddress,
        vm: String,
        lun: i64,
        other: String,
    },
    #[error("{disk}: {message}")]
    Step {
        disk: InstanceAddress,
        message: String,
    },
}

impl From<ArmError> for DiskError {
    fn from(error: ArmError) -> Self {
        Self::Arm(Box::new(error))
    }
}

impl From<DiskError> for StepError {
    fn from(error: DiskError) -> Self {
        match &error {
            DiskError::Arm(arm) if arm.is_transient() => {
                StepError::transient(error.to_string(), arm.retry_after())
            }
            _ => StepError::permanent(error.to_string()),
        }
    }
}

/// `disk`: `Microsoft.Compute/disks`.
#[derive(Debug, Clone)]
pub struct DiskProvider {
    azure: Arc<AzureDeployment>,
    vm_locks: VmLocks,
}

impl DiskProvider {
    pub fn new(azure: Arc<AzureDeployment>) -> Self {
        Self {
            azure,
            vm_locks: VmLocks::default(),
        }
    }
}

/// One lock per VM: attaching and detaching rewrite the VM's whole `dataDisks` list, so two
/// disks' steps on one VM take turns (and `If-Match` guards against other writers).
#[derive(Debug, Clone, Default)]
struct VmLocks {
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl VmLocks {
    async fn lock(&self, vm: &ResourceId) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(vm.normalized())
            .or_default()
            .clone();
        lock.lock_owned().await
    }
}

/// How often a VM write is tried again when another writer changed the VM in between.
const PRECONDITION_ATTEMPTS: u32 = 5;

/// A disk as ARM has it now.
struct Found {
    id: ResourceId,
    body: Value,
}

fn reference(hint: &Attributes, name: &str) -> Option<InstanceAddress> {
    hint.get(name)
        .and_then(Value::as_str)
        .and_then(|text| text.parse().ok())
}

/// The generations worth searching: around the group and VM the spec or the step names.
fn generations(hint: &Attributes) -> std::ops::RangeInclusive<Generation> {
    let group = generations_around(hint.get("resource_group"));
    let vm = generations_around(hint.get("vm"));
    1..=(*group.end()).max(*vm.end())
}

/// Finds the disk: at the id ferry's state remembers, then in the group the spec puts it in
/// at each generation that may hold it (a move may have finished without ferry hearing of it).
/// `Ok(None)` only when every place answered 404.
async fn locate(
    azure: &AzureDeployment,
    disk: &InstanceAddress,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Option<Found>, DiskError> {
    let mut candidates: Vec<ResourceId> = Vec::new();
    if let Some(id) = azure.remembered_id(disk, outputs)? {
        candidates.push(id);
    }
    let name = hint
        .get("name")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| azure.name_at(&disk.address, 1));
    if let Some(name) = name {
        let subscription = azure.subscription()?;
        let mut groups: Vec<InstanceAddress> =
            reference(hint, "resource_group").into_iter().collect();
        for generation in generations(hint) {
            if let Some(group) = azure.group_at(&disk.address, generation) {
                groups.push(group);
            }
        }
        for group in groups {
            if let Some(group_name) = azure.group_name(&group, outputs) {
                let id = ResourceId::provider_resource(
                    subscription,
                    &group_name,
                    "Microsoft.Compute",
                    "disks",
                    &name,
                );
                if !candidates.contains(&id) {
                    candidates.push(id);
                }
            }
        }
    }
    if candidates.is_empty() {
        return Err(LocateError::NoName {
            instance: disk.clone(),
        }
        .into());
    }
    for id in candidates {
        if let Some(fetched) = azure.client().read::<Value>(&id).await? {
            let id = text_at(&fetched.value, "/id")
                .and_then(|text| ResourceId::parse(&text).ok())
                .unwrap_or(id);
            return Ok(Some(Found {
                id,
                body: fetched.value,
            }));
        }
    }
    Ok(None)
}

/// The VM a disk is attached to, by ARM's `managedBy`.
fn holder(found: &Found) -> Option<ResourceId> {
    text_at(&found.body, "/managedBy").and_then(|text| ResourceId::parse(&text).ok())
}

/// The disk's attributes with the spec's names: references become instance addresses.
async fn describe(
    azure: &AzureDeployment,
    found: &Found,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Attributes, DiskError> {
    let body = &found.body;
    let mut attributes = Attributes::new();
    attributes.insert("id".into(), json!(found.id.as_str()));
    attributes.insert(
        "name".into(),
        json!(text_at(body, "/name").unwrap_or_else(|| found.id.name().to_owned())),
    );
    if let Some(group) = found.id.resource_group_name() {
        attributes.insert(
            "resource_group".into(),
            azure.group_reference(group, hint.get("resource_group"), outputs),
        );
    }
    attributes.insert(
        "location".into(),
        location_value(
            body.get("location").and_then(Value::as_str),
            hint.get("location"),
        ),
    );
    attributes.insert("tags".into(), tags_of_body(body));
    attributes.insert(
        "size_gb".into(),
        json!(
            body.pointer("/properties/diskSizeGB")
                .and_then(Value::as_i64)
        ),
    );
    attributes.insert("sku".into(), json!(text_at(body, "/sku/name")));
    attributes.insert(
        "disk_state".into(),
        json!(text_at(body, "/properties/diskState")),
    );
    if let Some(vm) = holder(found) {
        let reference = azure
            .instance_with_id(Kind::Vm, &vm, generations(hint), outputs)
            .map(|instance| instance.to_string())
            .unwrap_or_else(|| vm.as_str().to_owned());
        attributes.insert("vm".into(), json!(reference));
        if let Some(vm_body) = azure.client().read::<Value>(&vm).await?
            && let Some(lun) = data_disks(&vm_body.value)
                .iter()
                .find(|entry| is_disk(entry, &found.id))
                .and_then(|entry| entry.get("lun"))
        {
            attributes.insert("lun".into(), lun.clone());
        }
    }
    Ok(attributes)
}

fn data_disks(vm: &Value) -> Vec<Value> {
    vm.pointer("/properties/storageProfile/dataDisks")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn is_disk(entry: &Value, disk: &ResourceId) -> bool {
    entry
        .pointer("/managedDisk/id")
        .and_then(Value::as_str)
        .is_some_and(|id| id.eq_ignore_ascii_case(disk.as_str()))
}

/// What ferry knows about the disk beyond the step: its remembered outputs, under the step's
/// inputs.
fn hint_for(step: &Step, context: &ApplyContext<'_>) -> Attributes {
    let mut hint = (context.outputs)(&step.address).unwrap_or_default();
    for (name, value) in context.inputs {
        hint.insert(name.clone(), value.clone());
    }
    hint
}

#[async_trait]
impl Provider for DiskProvider {
    fn kind(&self) -> Kind {
        Kind::Disk
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        let azure = &*self.azure;
        let result = async {
            match locate(azure, context.instance, context.fields, context.outputs).await? {
                Some(found) => describe(azure, &found, context.fields, context.outputs)
                    .await
                    .map(Some),
                None => Ok(None),
            }
        }
        .await;
        match result {
            Ok(Some(attributes)) => Observation::present(attributes),
            Ok(None) => Observation::Absent,
            Err(error) => Observation::Unknown {
                reason: error.to_string(),
            },
        }
    }

    async fn apply(
        &self,
        step: &Step,
        context: ApplyContext<'_>,
    ) -> Result<StepOutcome, StepError> {
        let azure = &*self.azure;
        let operations =
            StepOperations::new(azure.client(), context.record_operation, context.progress);
        operations
            .resume(context.resume_operation)
            .await
            .map_err(DiskError::from)?;
        let hint = hint_for(step, &context);
        let disk = &step.address;
        let outputs = context.outputs;
        let result = async {
            let found = match step.action {
                Action::Create => create(azure, &self.vm_locks, &operations, disk, &hint, outputs).await?,
                Action::Update => update(azure, &self.vm_locks, &operations, disk, &hint, outputs).await?,
                Action::Detach => {
                    let found = require(azure, disk, &hint, outputs).await?;
                    let vm = reference(&hint, "vm").ok_or_else(|| DiskError::Step {
                        disk: disk.clone(),
                        message: "the detach names no vm: plan again".into(),
                    })?;
                    let force = hint.get("detach_option").and_then(Value::as_str)
                        == Some("ForceDetach");
                    let vm_id = azure.id_of(&vm, outputs)?;
                    let _turn = self.vm_locks.lock(&vm_id).await;
                    detach(azure, &operations, disk, &found, &vm_id, force).await?;
                    require(azure, disk, &hint, outputs).await?
                }
                Action::Move => move_disk(azure, &operations, disk, &hint, outputs).await?,
                Action::Attach => {
                    let found = require(azure, disk, &hint, outputs).await?;
                    attach_as_planned(azure, &self.vm_locks, &operations, disk, found, &hint, outputs).await?
                }
                Action::Delete => {
                    if let Some(found) = locate(azure, disk, &hint, outputs).await? {
                        operations.delete(&found.id).await?;
                    }
                    return Ok(StepOutcome::default());
                }
                other => {
                    return Err(DiskError::Step {
                        disk: disk.clone(),
                        message: format!(
                            "a disk has no `{other}` step: it is stateful, and ferry never replaces or retires one"
                        ),
                    });
                }
            };
            Ok(StepOutcome {
                outputs: describe(azure, &found, &hint, outputs).await?,
            })
        }
        .await;
        result.map_err(StepError::from)
    }
}

async fn require(
    azure: &AzureDeployment,
    disk: &InstanceAddress,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Found, DiskError> {
    locate(azure, disk, hint, outputs)
        .await?
        .ok_or_else(|| DiskError::NotFound {
            disk: disk.clone(),
            name: hint
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("?")
                .to_owned(),
        })
}

/// The id the spec puts a new disk at.
fn desired_id(
    azure: &AzureDeployment,
    disk: &InstanceAddress,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<ResourceId, DiskError> {
    let name = hint
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| DiskError::Step {
            disk: disk.clone(),
            message: "the step has no name: plan again".into(),
        })?;
    let group = reference(hint, "resource_group")
        .and_then(|group| azure.group_name(&group, outputs))
        .ok_or_else(|| LocateError::NoGroup {
            instance: disk.clone(),
        })?;
    Ok(ResourceId::provider_resource(
        azure.subscription()?,
        &group,
        "Microsoft.Compute",
        "disks",
        name,
    ))
}

async fn create(
    azure: &AzureDeployment,
    locks: &VmLocks,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Found, DiskError> {
    let found = match locate(azure, disk, hint, outputs).await? {
        // Created by an earlier attempt: creating is done.
        Some(found) => found,
        None => {
            let id = desired_id(azure, disk, hint, outputs)?;
            let mut body = json!({
                "location": hint.get("location").cloned().unwrap_or(Value::Null),
                "sku": {"name": hint.get("sku").and_then(Value::as_str).unwrap_or("Premium_LRS")},
                "properties": {
                    "creationData": {"createOption": "Empty"},
                    "diskSizeGB": hint.get("size_gb").cloned().unwrap_or(json!(32)),
                }
            });
            if let Some(tags) = tags_from(hint) {
                body["tags"] = json!(tags);
            }
            let value: Value = operations.put(&id, &body).await?;
            Found { id, body: value }
        }
    };
    if hint.get("vm").is_some() {
        return attach_as_planned(azure, locks, operations, disk, found, hint, outputs).await;
    }
    Ok(found)
}

/// An update in place: size (grow only; the rules refuse a shrink), SKU, tags, and the
/// attachment when the spec names a VM and a lun.
async fn update(
    azure: &AzureDeployment,
    locks: &VmLocks,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Found, DiskError> {
    let found = require(azure, disk, hint, outputs).await?;
    let mut patch = json!({});
    if let Some(size) = hint.get("size_gb").and_then(Value::as_i64)
        && found
            .body
            .pointer("/properties/diskSizeGB")
            .and_then(Value::as_i64)
            != Some(size)
    {
        patch["properties"] = json!({"diskSizeGB": size});
    }
    if let Some(sku) = hint.get("sku").and_then(Value::as_str)
        && text_at(&found.body, "/sku/name").as_deref() != Some(sku)
    {
        patch["sku"] = json!({"name": sku});
    }
    if let Some(tags) = tags_from(hint)
        && tags_of_body(&found.body) != json!(tags)
    {
        patch["tags"] = json!(tags);
    }
    let found = if patch.as_object().is_some_and(|fields| !fields.is_empty()) {
        let body: Value = operations.patch(&found.id, &patch).await?;
        Found { id: found.id, body }
    } else {
        found
    };
    if hint.get("vm").is_some() {
        return attach_as_planned(azure, locks, operations, disk, found, hint, outputs).await;
    }
    Ok(found)
}

/// Attaches the disk to the step's `vm` at its `lun`, unless it is there already. A disk on
/// the same VM at another lun is detached first; one on another VM is refused.
async fn attach_as_planned(
    azure: &AzureDeployment,
    locks: &VmLocks,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    found: Found,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Found, DiskError> {
    let vm = reference(hint, "vm").ok_or_else(|| DiskError::Step {
        disk: disk.clone(),
        message: "the attach names no vm: plan again".into(),
    })?;
    let lun = hint
        .get("lun")
        .and_then(Value::as_i64)
        .ok_or_else(|| DiskError::Step {
            disk: disk.clone(),
            message: "the attach names no lun: plan again".into(),
        })?;
    let vm_id = azure.id_of(&vm, outputs)?;
    if let Some(current) = holder(&found)
        && current != vm_id
    {
        return Err(DiskError::AttachedElsewhere {
            disk: disk.clone(),
            holder: azure
                .instance_with_id(Kind::Vm, &current, generations(hint), outputs)
                .map(|instance| instance.to_string())
                .unwrap_or_else(|| current.as_str().to_owned()),
            vm: vm.to_string(),
        });
    }
    let _turn = locks.lock(&vm_id).await;
    for attempt in 1..=PRECONDITION_ATTEMPTS {
        let fetched =
            azure
                .client()
                .read::<Value>(&vm_id)
                .await?
                .ok_or_else(|| DiskError::Step {
                    disk: disk.clone(),
                    message: format!("{vm} ({vm_id}) does not exist: create it first"),
                })?;
        let mut kept: Vec<Value> = Vec::new();
        let mut relocate = false;
        for entry in data_disks(&fetched.value) {
            if entry.get("toBeDetached").and_then(Value::as_bool) == Some(true) {
                continue;
            }
            let entry_lun = entry.get("lun").and_then(Value::as_i64);
            if is_disk(&entry, &found.id) {
                if entry_lun == Some(lun) {
                    // Attached where the plan wants it: done.
                    return require(azure, disk, hint, outputs).await;
                }
                relocate = true;
                continue;
            }
            if entry_lun == Some(lun) {
                return Err(DiskError::LunTaken {
                    disk: disk.clone(),
                    vm: vm.to_string(),
                    lun,
                    other: text_at(&entry, "/managedDisk/id").unwrap_or_default(),
                });
            }
            kept.push(entry);
        }
        if relocate {
            // The same VM at another lun: a detach, then the attach below.
            detach(azure, operations, disk, &found, &vm_id, false).await?;
            continue;
        }
        kept.push(json!({
            "lun": lun,
            "createOption": "Attach",
            "managedDisk": {"id": found.id.as_str()},
        }));
        operations.progress(format!(
            "attaching {} to {} at lun {lun}",
            found.id.name(),
            vm_id.name()
        ));
        match operations
            .patch_if_match::<_, Value>(
                &vm_id,
                &json!({"properties": {"storageProfile": {"dataDisks": kept}}}),
                fetched.etag.as_deref(),
            )
            .await
        {
            Ok(_) => return require(azure, disk, hint, outputs).await,
            Err(error) if error.is_precondition_failed() && attempt < PRECONDITION_ATTEMPTS => {
                continue;
            }
            Err(error) => return Err(error.into()),
        }
    }
    require(azure, disk, hint, outputs).await
}

/// Detaches the disk from `vm_id` through the VM (`toBeDetached`, with `ForceDetach` when the
/// plan says the old VM could not be read), and checks that ARM released it.
async fn detach(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    found: &Found,
    vm_id: &ResourceId,
    force: bool,
) -> Result<(), DiskError> {
    for attempt in 1..=PRECONDITION_ATTEMPTS {
        let fetched = match azure.client().read::<Value>(vm_id).await? {
            Some(fetched) => fetched,
            // A VM that is gone holds nothing.
            None => return Ok(()),
        };
        let mut entries = data_disks(&fetched.value);
        let mut listed = false;
        for entry in &mut entries {
            if is_disk(entry, &found.id) {
                listed = true;
                entry["toBeDetached"] = json!(true);
                if force {
                    entry["detachOption"] = json!("ForceDetach");
                }
            }
        }
        if !listed {
            break;
        }
        operations.progress(format!(
            "{}detaching {} from {}",
            if force { "force-" } else { "" },
            found.id.name(),
            vm_id.name()
        ));
        match operations
            .patch_if_match::<_, Value>(
                vm_id,
                &json!({"properties": {"storageProfile": {"dataDisks": entries}}}),
                fetched.etag.as_deref(),
            )
            .await
        {
            Ok(_) => break,
            Err(error) if error.is_precondition_failed() && attempt < PRECONDITION_ATTEMPTS => {}
            Err(error) => return Err(error.into()),
        }
    }
    let after = azure.client().read::<Value>(&found.id).await?;
    if let Some(owner) = after
        .as_ref()
        .and_then(|fetched| text_at(&fetched.value, "/managedBy"))
        .filter(|owner| owner.eq_ignore_ascii_case(vm_id.as_str()))
    {
        return Err(DiskError::Step {
            disk: disk.clone(),
            message: format!(
                "ARM still shows it attached to {owner} after the detach; apply again to retry"
            ),
        });
    }
    Ok(())
}

/// Moves the disk to the step's `resource_group`: `validateMoveResources`, then
/// `moveResources`. Its id changes; the outputs carry the new one.
async fn move_disk(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Found, DiskError> {
    let found = require(azure, disk, hint, outputs).await?;
    let group = reference(hint, "resource_group").ok_or_else(|| DiskError::Step {
        disk: disk.clone(),
        message: "the move names no resource_group: plan again".into(),
    })?;
    let target_name = azure
        .group_name(&group, outputs)
        .ok_or_else(|| LocateError::NoGroup {
            instance: disk.clone(),
        })?;
    if found
        .id
        .resource_group_name()
        .is_some_and(|current| current.eq_ignore_ascii_case(&target_name))
    {
        return Ok(found);
    }
    if let Some(current) = holder(&found) {
        return Err(DiskError::MoveWhileAttached {
            disk: disk.clone(),
            holder: current.as_str().to_owned(),
        });
    }
    let source = found
        .id
        .resource_group_id()
        .ok_or_else(|| DiskError::Step {
            disk: disk.clone(),
            message: format!("{} is not in a resource group", found.id),
        })?;
    let target = ResourceId::resource_group(azure.subscription()?, &target_name);
    let request = MoveResourcesRequest {
        resources: vec![found.id.as_str().to_owned()],
        target_resource_group: target.as_str().to_owned(),
        extra: Default::default(),
    };
    operations.progress(format!(
        "validating the move of {} to {target_name}",
        found.id.name()
    ));
    operations
        .post(
            &format!("{source}/validateMoveResources"),
            api_version::RESOURCES,
            Some(&request),
        )
        .await?;
    operations.progress(format!("moving {} to {target_name}", found.id.name()));
    operations
        .post(
            &format!("{source}/moveResources"),
            api_version::RESOURCES,
            Some(&request),
        )
        .await?;
    let moved = found.id.in_resource_group(&target_name);
    match azure.client().read::<Value>(&moved).await? {
        Some(fetched) => Ok(Found {
            id: moved,
            body: fetched.value,
        }),
        None => Err(DiskError::Step {
            disk: disk.clone(),
            message: format!("ARM does not show {moved} after the move; plan again"),
        }),
    }
}
