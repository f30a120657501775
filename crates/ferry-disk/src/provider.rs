//! The `disk` provider on the ARM client: managed disks, attached through their VM's
//! `storageProfile.dataDisks`, moved between resource groups with `moveResources`.
//!
//! A disk is attached to at most one VM at every instant, and this provider never relies on
//! ARM to refuse a second attachment: an attach is refused here while the disk is attached to
//! any other VM, and a move while it is attached at all. A disk's id changes when it moves;
//! every step returns the id ARM shows afterwards, so that ferry's state follows the disk.

use std::sync::Arc;

use async_trait::async_trait;
use ferry_arm::deployment::{
    AzureDeployment, OutputsOf, generations_around, location_value, tags_from, tags_of_body,
    text_at,
};
use ferry_arm::models::{Disk, MoveResourcesRequest};
use ferry_arm::{ArmError, LocateError, ReadVia, ResourceId, StepOperations, api_version};
use ferry_core::fields;
use ferry_core::provider::ReadRound;
use ferry_core::{
    Action, ApplyContext, Attributes, Generation, Health, InstanceAddress, Kind, Observation,
    Provider, ReadContext, Step, StepError, StepOutcome, Value,
};
use serde_json::json;

use crate::batch::{Batches, Recorder};
use crate::restore_point_copies::{OneMomentCopy, RestorePoints};

/// Why a disk step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// Shared: one ARM operation may carry several disks' changes, and each step reports it.
    #[error("{0}")]
    Arm(Arc<ArmError>),
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
    /// Something ARM is still doing on its own (a restore point being taken before a kill):
    /// the step is tried again.
    #[error("{disk}: {message}")]
    Pending {
        disk: InstanceAddress,
        message: String,
    },
    /// A drill's copy (`copy_of`) could not be made.
    #[error("{disk}: {error}")]
    Copy {
        disk: InstanceAddress,
        error: Box<crate::copies::CopyError>,
    },
}

impl From<ArmError> for DiskError {
    fn from(error: ArmError) -> Self {
        Self::Arm(Arc::new(error))
    }
}

impl From<DiskError> for StepError {
    fn from(error: DiskError) -> Self {
        let message = error.to_string();
        match &error {
            DiskError::Arm(arm) => arm.step_error(message),
            DiskError::Pending { .. } => StepError::transient(message, None),
            DiskError::Copy { error, .. } => {
                let judged = error.step_error();
                StepError { message, ..judged }
            }
            _ => StepError::permanent(message),
        }
    }
}

/// `disk`: `Microsoft.Compute/disks`.
#[derive(Debug, Clone)]
pub struct DiskProvider {
    azure: Arc<AzureDeployment>,
    vm_updates: Arc<VmUpdates>,
    moves: Arc<Moves>,
    /// A drill's restore points, one per production VM, shared by the disk steps of that VM.
    restore_points: Arc<RestorePoints>,
}

impl DiskProvider {
    pub fn new(azure: Arc<AzureDeployment>) -> Self {
        Self {
            azure,
            vm_updates: Arc::default(),
            moves: Arc::default(),
            restore_points: Arc::default(),
        }
    }
}

/// Attaching and detaching rewrite the VM's whole `dataDisks` list, and ARM takes one update
/// of a VM at a time: the disks' changes to one VM are gathered into one update (`If-Match`
/// guards against other writers).
type VmUpdates = Batches<VmChange, Result<(), VmRefusal>>;

/// A move locks both resource groups for minutes: the disks moving between the same two
/// groups go in one `moveResources`.
type Moves = Batches<ResourceId, Result<(), Arc<ArmError>>>;

/// One disk's change in a VM update.
#[derive(Debug, Clone)]
enum VmChange {
    Attach { disk: ResourceId, lun: i64 },
    Detach { disk: ResourceId, force: bool },
}

/// Why one disk's change in a VM update was not made.
#[derive(Debug)]
enum VmRefusal {
    Arm(Arc<ArmError>),
    /// The VM does not exist (an attach needs it).
    NoVm,
    /// Another disk holds the lun.
    LunTaken {
        other: String,
    },
    /// The disk is attached to this VM at another lun: detach it first.
    OtherLun,
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
    let group = generations_around(hint.get(fields::disk::RESOURCE_GROUP));
    let vm = generations_around(hint.get(fields::disk::VM));
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
    via: ReadVia,
) -> Result<Option<Found>, DiskError> {
    let mut candidates: Vec<ResourceId> = Vec::new();
    if let Some(id) = azure.remembered_id(disk, outputs)? {
        candidates.push(id);
    }
    let name = hint
        .get(fields::disk::NAME)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| azure.name_at(&disk.address, 1));
    if let Some(name) = name {
        let subscription = azure.subscription()?;
        let mut groups: Vec<InstanceAddress> = reference(hint, fields::disk::RESOURCE_GROUP)
            .into_iter()
            .collect();
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
        if let Some(body) = azure.read_resource(&id, via).await? {
            let id = text_at(&body, "/id")
                .and_then(|text| ResourceId::parse(&text).ok())
                .unwrap_or(id);
            return Ok(Some(Found { id, body }));
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
    via: ReadVia,
) -> Result<Attributes, DiskError> {
    let body = &found.body;
    let mut attributes = Attributes::new();
    attributes.insert("id".into(), json!(found.id.as_str()));
    attributes.insert(
        fields::disk::NAME.into(),
        json!(text_at(body, "/name").unwrap_or_else(|| found.id.name().to_owned())),
    );
    if let Some(group) = found.id.resource_group_name() {
        attributes.insert(
            fields::disk::RESOURCE_GROUP.into(),
            azure.group_reference(group, hint.get(fields::disk::RESOURCE_GROUP), outputs),
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
        attributes.insert(fields::disk::VM.into(), json!(reference));
        if let Some(vm_body) = azure.read_resource(&vm, via).await?
            && let Some(lun) = data_disks(&vm_body)
                .iter()
                .find(|entry| is_disk(entry, &found.id))
                .and_then(|entry| entry.get("lun"))
        {
            attributes.insert(fields::disk::LUN.into(), lun.clone());
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
            let via = ReadVia::Lists;
            match locate(
                azure,
                context.instance,
                context.fields,
                context.outputs,
                via,
            )
            .await?
            {
                Some(found) => {
                    // A disk whose create is still under way is not there to attach yet; a
                    // failed one is left to its attach and import to report, as before.
                    let health = match ferry_arm::provisioning::health_of(&found.body) {
                        creating @ Health::Creating { .. } => creating,
                        _ => Health::Healthy,
                    };
                    describe(azure, &found, context.fields, context.outputs, via)
                        .await
                        .map(|attributes| Some((attributes, health)))
                }
                None => Ok(None),
            }
        }
        .await;
        match result {
            Ok(Some((attributes, health))) => Observation::Present { attributes, health },
            Ok(None) => Observation::Absent,
            Err(error) => Observation::Unknown {
                reason: error.to_string(),
            },
        }
    }

    fn begin_read_round(&self) -> ReadRound {
        ReadRound::new(self.azure.begin_read_round())
    }

    async fn apply(
        &self,
        step: &Step,
        context: ApplyContext<'_>,
    ) -> Result<StepOutcome, StepError> {
        let azure = &*self.azure;
        let operations = StepOperations::new(
            azure.client(),
            context.record_resume_token,
            context.progress,
        );
        operations
            .resume(context.resume_token)
            .await
            .map_err(DiskError::from)?;
        let hint = hint_for(step, &context);
        let disk = &step.address;
        let outputs = context.outputs;
        let result = async {
            let found = match step.action {
                Action::Create => create(azure, &self.vm_updates, &self.restore_points, &operations, disk, &hint, outputs).await?,
                Action::Update => update(azure, &self.vm_updates, &operations, disk, &hint, outputs).await?,
                Action::Detach => {
                    let found = require(azure, disk, &hint, outputs).await?;
                    let vm = reference(&hint, fields::disk::VM).ok_or_else(|| DiskError::Step {
                        disk: disk.clone(),
                        message: "the detach names no vm: plan again".into(),
                    })?;
                    let force = hint.get("detach_option").and_then(Value::as_str)
                        == Some("ForceDetach");
                    let vm_id = azure.id_of(&vm, outputs)?;
                    detach(azure, &self.vm_updates, &operations, disk, &found, &vm_id, force).await?;
                    require(azure, disk, &hint, outputs).await?
                }
                Action::Move => move_disk(azure, &self.moves, &operations, disk, &hint, outputs).await?,
                Action::Attach => {
                    let found = require(azure, disk, &hint, outputs).await?;
                    attach_as_planned(azure, &self.vm_updates, &operations, disk, found, &hint, outputs).await?
                }
                Action::Delete => {
                    if let Some(found) = locate(azure, disk, &hint, outputs, ReadVia::Single).await? {
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
                outputs: describe(azure, &found, &hint, outputs, ReadVia::Single).await?,
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
    locate(azure, disk, hint, outputs, ReadVia::Single)
        .await?
        .ok_or_else(|| DiskError::NotFound {
            disk: disk.clone(),
            name: hint
                .get(fields::disk::NAME)
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
        .get(fields::disk::NAME)
        .and_then(Value::as_str)
        .ok_or_else(|| DiskError::Step {
            disk: disk.clone(),
            message: "the step has no name: plan again".into(),
        })?;
    let group = reference(hint, fields::disk::RESOURCE_GROUP)
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
    updates: &VmUpdates,
    restore_points: &RestorePoints,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Found, DiskError> {
    let found = match locate(azure, disk, hint, outputs, ReadVia::Single).await? {
        // Created by an earlier attempt: creating is done.
        Some(found) => found,
        None if hint.get(fields::disk::COPY_OF).is_some() => {
            let id = desired_id(azure, disk, hint, outputs)?;
            let body = copy_from(restore_points, operations, disk, &id, hint).await?;
            Found { id, body }
        }
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
    if hint.get(fields::disk::VM).is_some() {
        return attach_as_planned(azure, updates, operations, disk, found, hint, outputs).await;
    }
    Ok(found)
}

/// A failover drill's disk, made at `id` as a copy of the production disk `copy_of` names,
/// which is only read; the copy and whatever is made on the way carry the drill's tag, which
/// the step must carry. Production's disk attached to a VM (its reading's `managedBy`) is
/// copied from the VM's one restore point for this drill
/// ([`crate::restore_point_copies`]), so that the VM's disks are copies of one moment (a pool
/// spread over them imports); one attached to no VM is consistent with itself, and is copied
/// through a snapshot of its own in the same group as `id` ([`crate::copies::copy_disks`]).
/// Returns the new disk's body.
async fn copy_from(
    restore_points: &RestorePoints,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    id: &ResourceId,
    hint: &Attributes,
) -> Result<Value, DiskError> {
    use crate::copies::{CopyConfig, CopyError, DiskCopyRequest, DrillTag, copy_disks};
    let step_error = |message: String| DiskError::Step {
        disk: disk.clone(),
        message,
    };
    let text = hint
        .get(fields::disk::COPY_OF)
        .and_then(Value::as_str)
        .unwrap_or_default();
    let source = ResourceId::parse(text).map_err(|error| {
        step_error(format!(
            "copy_of `{text}` is not a managed disk's ARM id ({error}): ferry drill sets it from production's reading; drill again"
        ))
    })?;
    let mut tags = tags_from(hint).unwrap_or_default();
    let Some(drill) = tags.remove(fields::DRILL_TAG) else {
        return Err(step_error(format!(
            "a copy carries the drill's tag ({}), which this step lacks: ferry drill sets it; drill again",
            fields::DRILL_TAG
        )));
    };
    let source_disk: Disk = operations
        .client()
        .read(&source)
        .await?
        .ok_or_else(|| DiskError::Copy {
            disk: disk.clone(),
            error: Box::new(CopyError::SourceMissing {
                source_disk: source.as_str().to_owned(),
            }),
        })?
        .value;
    if let Some(vm) = source_disk.managed_by.as_deref() {
        let vm = ResourceId::parse(vm).map_err(|error| {
            step_error(format!(
                "production's disk {} names `{vm}` as its VM, which is not an ARM id ({error}): read production again, then drill",
                source.name()
            ))
        })?;
        let mut all_tags = tags.clone();
        all_tags.insert(fields::DRILL_TAG.to_owned(), drill.clone());
        return restore_points
            .copy(
                operations,
                &OneMomentCopy {
                    disk,
                    id,
                    source: &source,
                    vm: &vm,
                    location: source_disk.location.clone().unwrap_or_default(),
                    sku: source_disk.sku.as_ref().and_then(|sku| sku.name.clone()),
                    drill: &drill,
                    tags: all_tags,
                },
            )
            .await;
    }
    let group = ResourceId::resource_group(
        id.subscription_id(),
        id.resource_group_name().unwrap_or_default(),
    );
    let config = CopyConfig {
        snapshot_group: group.clone(),
        target_group: group,
        zone: None,
        snapshot_sku: ferry_arm::SnapshotSku::default(),
        tag: DrillTag {
            key: fields::DRILL_TAG.to_owned(),
            value: drill,
        },
        tags,
        parallelism: 1,
    };
    let request = DiskCopyRequest {
        source,
        snapshot_name: format!("{}-snapshot", id.name()),
        copy_name: id.name().to_owned(),
    };
    copy_disks(operations, &[request], &config)
        .await
        .map_err(|error| DiskError::Copy {
            disk: disk.clone(),
            error: Box::new(error),
        })?;
    let copied = operations
        .client()
        .read::<Value>(id)
        .await?
        .ok_or_else(|| {
            step_error(format!(
                "{id} was copied but ARM does not show it: apply again"
            ))
        })?;
    Ok(copied.value)
}

/// An update in place: size (grow only; the rules refuse a shrink), SKU, tags, and the
/// attachment when the spec names a VM and a lun.
async fn update(
    azure: &AzureDeployment,
    updates: &VmUpdates,
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
    if hint.get(fields::disk::VM).is_some() {
        return attach_as_planned(azure, updates, operations, disk, found, hint, outputs).await;
    }
    Ok(found)
}

/// Attaches the disk to the step's `vm` at its `lun`, unless it is there already. A disk on
/// the same VM at another lun is detached first; one on another VM is refused.
async fn attach_as_planned(
    azure: &AzureDeployment,
    updates: &VmUpdates,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    found: Found,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Found, DiskError> {
    let vm = reference(hint, fields::disk::VM).ok_or_else(|| DiskError::Step {
        disk: disk.clone(),
        message: "the attach names no vm: plan again".into(),
    })?;
    let lun = hint
        .get(fields::disk::LUN)
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
    operations.progress(format!(
        "attaching {} to {} at lun {lun}",
        found.id.name(),
        vm_id.name()
    ));
    let attach = VmChange::Attach {
        disk: found.id.clone(),
        lun,
    };
    let refused = match update_vm(azure, updates, operations, &vm_id, attach.clone()).await {
        Ok(()) => return require(azure, disk, hint, outputs).await,
        Err(refused) => refused,
    };
    let refused = match refused {
        // The same VM at another lun: a detach, then the attach.
        VmRefusal::OtherLun => {
            detach(azure, updates, operations, disk, &found, &vm_id, false).await?;
            match update_vm(azure, updates, operations, &vm_id, attach).await {
                Ok(()) => return require(azure, disk, hint, outputs).await,
                Err(refused) => refused,
            }
        }
        refused => refused,
    };
    Err(match refused {
        VmRefusal::Arm(error) => DiskError::Arm(error),
        VmRefusal::NoVm => DiskError::Step {
            disk: disk.clone(),
            message: format!("{vm} ({vm_id}) does not exist: create it first"),
        },
        VmRefusal::LunTaken { other } => DiskError::LunTaken {
            disk: disk.clone(),
            vm: vm.to_string(),
            lun,
            other,
        },
        VmRefusal::OtherLun => DiskError::Step {
            disk: disk.clone(),
            message: format!(
                "{vm} still shows it at another lun after detaching it; apply again to retry"
            ),
        },
    })
}

/// Detaches the disk from `vm_id` through the VM (`toBeDetached`, with `ForceDetach` when the
/// plan says the old VM could not be read), and checks that ARM released it.
async fn detach(
    azure: &AzureDeployment,
    updates: &VmUpdates,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    found: &Found,
    vm_id: &ResourceId,
    force: bool,
) -> Result<(), DiskError> {
    operations.progress(format!(
        "{}detaching {} from {}",
        if force { "force-" } else { "" },
        found.id.name(),
        vm_id.name()
    ));
    let change = VmChange::Detach {
        disk: found.id.clone(),
        force,
    };
    match update_vm(azure, updates, operations, vm_id, change).await {
        Ok(()) => {}
        Err(VmRefusal::Arm(error)) => return Err(DiskError::Arm(error)),
        Err(refused) => {
            return Err(DiskError::Step {
                disk: disk.clone(),
                message: format!("the detach from {vm_id} was refused: {refused:?}"),
            });
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

/// Makes one disk's change to a VM, in one update with the other disks' changes to that VM
/// that arrive together.
async fn update_vm(
    azure: &AzureDeployment,
    updates: &VmUpdates,
    operations: &StepOperations<'_>,
    vm_id: &ResourceId,
    change: VmChange,
) -> Result<(), VmRefusal> {
    let record = |operation: String| operations.record(operation);
    updates
        .submit(vm_id.as_str(), change, &record, |changes, recorder| {
            send_vm_update(azure, operations, recorder, vm_id, changes)
        })
        .await
}

/// Runs `work` with step operations that also record each operation for the other steps
/// whose changes it carries.
async fn shared<C: Send, R: Send, T>(
    operations: &StepOperations<'_>,
    recorder: Recorder<C, R>,
    work: impl AsyncFnOnce(&StepOperations<'_>) -> T,
) -> T {
    let record = |operation: String| {
        recorder.record(&operation);
        operations.record(operation);
    };
    let progress = |line: String| operations.progress(line);
    work(&StepOperations::new(
        operations.client(),
        &record,
        &progress,
    ))
    .await
}

/// One PATCH of the VM's `dataDisks` carrying every change that can be made, read fresh and
/// guarded by `If-Match`; a result per change.
async fn send_vm_update(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    recorder: Recorder<VmChange, Result<(), VmRefusal>>,
    vm_id: &ResourceId,
    changes: Vec<VmChange>,
) -> Vec<Result<(), VmRefusal>> {
    shared(operations, recorder, async |operations| {
        vm_update(azure, operations, vm_id, changes).await
    })
    .await
}

async fn vm_update(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    vm_id: &ResourceId,
    changes: Vec<VmChange>,
) -> Vec<Result<(), VmRefusal>> {
    let mut results: Vec<Option<Result<(), VmRefusal>>> = changes.iter().map(|_| None).collect();
    for attempt in 1..=PRECONDITION_ATTEMPTS {
        let fetched = match azure.client().read::<Value>(vm_id).await {
            Ok(Some(fetched)) => fetched,
            // A VM that is gone holds nothing: a detach is done, an attach has nowhere to go.
            Ok(None) => {
                for (result, change) in results.iter_mut().zip(&changes) {
                    result.get_or_insert(match change {
                        VmChange::Detach { .. } => Ok(()),
                        VmChange::Attach { .. } => Err(VmRefusal::NoVm),
                    });
                }
                break;
            }
            Err(error) => {
                let error = Arc::new(error);
                for result in &mut results {
                    result.get_or_insert_with(|| Err(VmRefusal::Arm(error.clone())));
                }
                break;
            }
        };
        // A disk ARM is still detaching is left out, as a finished detach would leave it.
        let mut entries: Vec<Value> = data_disks(&fetched.value)
            .into_iter()
            .filter(|entry| entry.get("toBeDetached").and_then(Value::as_bool) != Some(true))
            .collect();
        let mut sent = Vec::new();
        let mut said = Vec::new();
        for (index, change) in changes.iter().enumerate() {
            if results[index].is_some() {
                continue;
            }
            match change {
                VmChange::Detach { disk, force } => {
                    match entries.iter_mut().find(|entry| is_disk(entry, disk)) {
                        Some(entry) => {
                            entry["toBeDetached"] = json!(true);
                            if *force {
                                entry["detachOption"] = json!("ForceDetach");
                            }
                            sent.push(index);
                            said.push(format!(
                                "{}detaching {}",
                                if *force { "force-" } else { "" },
                                disk.name()
                            ));
                        }
                        None => results[index] = Some(Ok(())),
                    }
                }
                VmChange::Attach { disk, lun } => {
                    let at_lun =
                        |entry: &Value| entry.get("lun").and_then(Value::as_i64) == Some(*lun);
                    if let Some(entry) = entries.iter().find(|entry| is_disk(entry, disk)) {
                        // Attached where the plan wants it: done.
                        results[index] = Some(if at_lun(entry) {
                            Ok(())
                        } else {
                            Err(VmRefusal::OtherLun)
                        });
                    } else if let Some(other) = entries.iter().find(|entry| at_lun(entry)) {
                        results[index] = Some(Err(VmRefusal::LunTaken {
                            other: text_at(other, "/managedDisk/id").unwrap_or_default(),
                        }));
                    } else {
                        entries.push(json!({
                            "lun": lun,
                            "createOption": "Attach",
                            "managedDisk": {"id": disk.as_str()},
                        }));
                        sent.push(index);
                        said.push(format!("attaching {} at lun {lun}", disk.name()));
                    }
                }
            }
        }
        if sent.is_empty() {
            break;
        }
        if changes.len() > 1 {
            operations.progress(format!(
                "one update of {} for {} disks: {}",
                vm_id.name(),
                sent.len(),
                said.join(", ")
            ));
        }
        match operations
            .patch_if_match::<_, Value>(
                vm_id,
                &json!({"properties": {"storageProfile": {"dataDisks": entries}}}),
                fetched.etag.as_deref(),
            )
            .await
        {
            Ok(_) => {
                for index in sent {
                    results[index] = Some(Ok(()));
                }
                break;
            }
            // Another writer changed the VM in between: read it again.
            Err(error) if error.is_precondition_failed() && attempt < PRECONDITION_ATTEMPTS => {}
            Err(error) => {
                let error = Arc::new(error);
                for index in sent {
                    results[index] = Some(Err(VmRefusal::Arm(error.clone())));
                }
                break;
            }
        }
    }
    results
        .into_iter()
        .map(|result| result.unwrap_or(Ok(())))
        .collect()
}

/// Moves the disk to the step's `resource_group`: `validateMoveResources`, then
/// `moveResources`. Its id changes; the outputs carry the new one.
async fn move_disk(
    azure: &AzureDeployment,
    moves: &Moves,
    operations: &StepOperations<'_>,
    disk: &InstanceAddress,
    hint: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Found, DiskError> {
    let found = require(azure, disk, hint, outputs).await?;
    let group = reference(hint, fields::disk::RESOURCE_GROUP).ok_or_else(|| DiskError::Step {
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
    operations.progress(format!("moving {} to {target_name}", found.id.name()));
    let record = |operation: String| operations.record(operation);
    moves
        .submit(
            &format!("{source} {target}"),
            found.id.clone(),
            &record,
            |disks, recorder| {
                shared(operations, recorder, async |operations| {
                    send_move(operations, &source, &target, disks).await
                })
            },
        )
        .await
        .map_err(DiskError::Arm)?;
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

/// One `validateMoveResources` and one `moveResources` for every disk moving between the same
/// two groups. When the batch does not validate, each disk is validated alone, so that only
/// the one ARM refuses fails, and the others still move together.
async fn send_move(
    operations: &StepOperations<'_>,
    source: &ResourceId,
    target: &ResourceId,
    disks: Vec<ResourceId>,
) -> Vec<Result<(), Arc<ArmError>>> {
    let validate = |disks: Vec<ResourceId>| async move {
        let request = move_request(&disks, target);
        operations
            .post(
                &format!("{source}/validateMoveResources"),
                api_version::RESOURCES,
                Some(&request),
            )
            .await
            .map_err(Arc::new)
    };
    let names = |disks: &[&ResourceId]| {
        disks
            .iter()
            .map(|disk| disk.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let target_name = target.name();
    operations.progress(format!(
        "validating the move of {} to {target_name}",
        names(&disks.iter().collect::<Vec<_>>())
    ));
    let mut results: Vec<Option<Result<(), Arc<ArmError>>>> = disks.iter().map(|_| None).collect();
    if let Err(error) = validate(disks.clone()).await {
        if disks.len() == 1 {
            return vec![Err(error)];
        }
        for (index, disk) in disks.iter().enumerate() {
            if let Err(error) = validate(vec![disk.clone()]).await {
                results[index] = Some(Err(error));
            }
        }
    }
    let moving: Vec<&ResourceId> = disks
        .iter()
        .zip(&results)
        .filter(|(_, result)| result.is_none())
        .map(|(disk, _)| disk)
        .collect();
    if !moving.is_empty() {
        operations.progress(format!(
            "moving {} to {target_name}{}",
            names(&moving),
            if moving.len() > 1 { " in one move" } else { "" }
        ));
        let request = move_request(
            &moving
                .iter()
                .map(|disk| (*disk).clone())
                .collect::<Vec<_>>(),
            target,
        );
        let moved = operations
            .post(
                &format!("{source}/moveResources"),
                api_version::RESOURCES,
                Some(&request),
            )
            .await
            .map(|_| ())
            .map_err(Arc::new);
        for result in &mut results {
            result.get_or_insert_with(|| moved.clone());
        }
    }
    results
        .into_iter()
        .map(|result| result.unwrap_or(Ok(())))
        .collect()
}

fn move_request(disks: &[ResourceId], target: &ResourceId) -> MoveResourcesRequest {
    MoveResourcesRequest {
        resources: disks.iter().map(|disk| disk.as_str().to_owned()).collect(),
        target_resource_group: target.as_str().to_owned(),
        extra: Default::default(),
    }
}
