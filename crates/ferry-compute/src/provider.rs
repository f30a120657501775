//! The Azure providers of the compute kinds, on the ARM client: resource groups, virtual
//! networks, public IP addresses and virtual machines with their network interface.
//!
//! Each read reports the spec's field names and value shapes (references as instance
//! addresses) plus the kind's outputs, so that the planner compares like with like; each step
//! returns the same attributes as its outputs. Every write goes through
//! [`StepOperations`], which records a long-running operation as soon as ARM accepts it and
//! polls a recorded one instead of sending its request again.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ferry_arm::deployment::{
    self, AzureDeployment, OutputsOf, generations_around, location_value, tags_from,
};
use ferry_arm::{ArmError, LocateError, PendingOperation, ResourceId, StepOperations, api_version};
use ferry_core::{
    Action, ApplyContext, Attributes, Health, InstanceAddress, Kind, Observation, Provider,
    ReadContext, Step, StepError, StepOutcome, Value,
};
use serde_json::json;

/// Where an Azure Linux VM shows its data disks when nothing else is known.
pub const DEFAULT_DEVICE_FOLDER: &str = "/dev/disk/azure/scsi1";
const DEFAULT_IMAGE: &str = "Canonical:ubuntu-24_04-lts:server:latest";

/// Why a compute step was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ComputeError {
    #[error("{0}")]
    Arm(Box<ArmError>),
    #[error("{0}")]
    Locate(#[from] LocateError),
    #[error(
        "{instance}: resource group {group} still holds managed disks ({}): ferry never deletes a group with data in it; move the disks out (a failover moves them) or delete them explicitly with allow_destroy, then apply again",
        disks.join(", ")
    )]
    GroupHoldsDisks {
        instance: InstanceAddress,
        group: String,
        disks: Vec<String>,
    },
    #[error(
        "{instance}: replacing a resource group would delete everything in it: keep its name and location, or plan a failover, which builds a new group beside it"
    )]
    GroupReplacement { instance: InstanceAddress },
    #[error("{instance}: {message}")]
    Step {
        instance: InstanceAddress,
        message: String,
    },
    #[error(
        "{instance}: ARM did not show the VM deallocated after the deallocation (power state {state}); check it in the portal, then apply again"
    )]
    NotFenced {
        instance: InstanceAddress,
        state: String,
    },
    /// The start that ends a resize by deallocation failed: the VM has its new size and is
    /// not serving until the next plan, which reads it deallocated, starts it.
    #[error(
        "{instance}: the VM was deallocated and resized to {size}, but did not start again: {source}; it stays deallocated and serves nothing until it starts: the next `ferry apply` starts it (its plan shows the start); if Azure has no capacity for {size} there (AllocationFailed), change its size in the spec and apply again"
    )]
    NotStartedAfterResize {
        instance: InstanceAddress,
        size: String,
        source: Box<ArmError>,
    },
    #[error(
        "{instance}: the VM was deallocated and resized to {size}, but ARM did not show it running after the start (power state {state}); check it in the portal: the next `ferry apply` starts it if it is not running"
    )]
    NotRunningAfterResize {
        instance: InstanceAddress,
        size: String,
        state: String,
    },
    /// The start of a VM of the serving generation that read deallocated or stopped failed.
    #[error(
        "{instance}: the VM is {state} and did not start: {source}; it serves nothing until it starts: apply again (the next plan starts it again); if Azure has no capacity for its size there (AllocationFailed), change its size in the spec and apply again"
    )]
    NotStarted {
        instance: InstanceAddress,
        state: String,
        source: Box<ArmError>,
    },
    #[error(
        "{instance}: ARM did not show the VM running after its start (power state {state}); check it in the portal: the next `ferry apply` starts it if it is not running"
    )]
    NotRunning {
        instance: InstanceAddress,
        state: String,
    },
}

impl From<ArmError> for ComputeError {
    fn from(error: ArmError) -> Self {
        Self::Arm(Box::new(error))
    }
}

impl From<ComputeError> for StepError {
    fn from(error: ComputeError) -> Self {
        match &error {
            ComputeError::Arm(arm)
            | ComputeError::NotStartedAfterResize { source: arm, .. }
            | ComputeError::NotStarted { source: arm, .. }
                if arm.is_transient() =>
            {
                StepError::transient(error.to_string(), arm.retry_after())
            }
            _ => StepError::permanent(error.to_string()),
        }
    }
}

fn step_error(instance: &InstanceAddress, message: impl Into<String>) -> ComputeError {
    ComputeError::Step {
        instance: instance.clone(),
        message: message.into(),
    }
}

/// GET by id: `None` for 404.
async fn get(azure: &AzureDeployment, id: &ResourceId) -> Result<Option<Value>, ArmError> {
    Ok(azure
        .client()
        .read::<Value>(id)
        .await?
        .map(|fetched| fetched.value))
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    deployment::text_at(value, pointer)
}

fn tags_of(body: &Value) -> Value {
    deployment::tags_of_body(body)
}

/// The common attributes of a tracked resource in a group: `name`, `resource_group` (as the
/// instance address of the group, when ferry knows it), `location`, `tags` and `id`.
fn common_attributes(
    azure: &AzureDeployment,
    body: &Value,
    id: &ResourceId,
    fields: &Attributes,
    outputs: OutputsOf<'_>,
) -> Attributes {
    let mut attributes = Attributes::new();
    attributes.insert("id".into(), json!(id.as_str()));
    attributes.insert(
        "name".into(),
        json!(text(body, "/name").unwrap_or_else(|| id.name().to_owned())),
    );
    if let Some(group) = id.resource_group_name()
        && id.namespace().is_some()
    {
        attributes.insert(
            "resource_group".into(),
            observed_group(azure, group, fields.get("resource_group"), outputs),
        );
    }
    attributes.insert(
        "location".into(),
        location_value(
            body.get("location").and_then(Value::as_str),
            fields.get("location"),
        ),
    );
    attributes.insert("tags".into(), tags_of(body));
    attributes
}

/// A group's Azure name as the spec writes it (see [`AzureDeployment::group_reference`]).
pub fn observed_group(
    azure: &AzureDeployment,
    group_name: &str,
    desired: Option<&Value>,
    outputs: OutputsOf<'_>,
) -> Value {
    azure.group_reference(group_name, desired, outputs)
}

/// The id of the instance being read: what the state remembers, else where the spec puts it.
fn read_id(
    azure: &AzureDeployment,
    instance: &InstanceAddress,
    fields: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<ResourceId, LocateError> {
    azure.read_id(instance, fields, outputs)
}

/// Where the spec (resolved for this instance) puts it.
fn desired_id(
    azure: &AzureDeployment,
    instance: &InstanceAddress,
    fields: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<ResourceId, LocateError> {
    azure.desired_id(instance, fields, outputs)
}

/// The id of another instance a step refers to (`vnet = "vnet.main@g2"`).
fn referenced_id(
    azure: &AzureDeployment,
    reference: Option<&Value>,
    outputs: OutputsOf<'_>,
) -> Result<Option<ResourceId>, LocateError> {
    let Some(instance) = reference
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<InstanceAddress>().ok())
    else {
        return Ok(None);
    };
    azure.id_of(&instance, outputs).map(Some)
}

fn already_replaced(step: &Step, observed: &Attributes) -> bool {
    deployment::already_replaced(step, observed)
}

/// The shared shape of the four providers: a kind, the deployment, and a read function.
macro_rules! azure_provider {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        pub struct $name {
            azure: Arc<AzureDeployment>,
        }

        impl $name {
            pub fn new(azure: Arc<AzureDeployment>) -> Self {
                Self { azure }
            }
        }
    };
}

azure_provider!(
    /// `resource_group`: `Microsoft.Resources/resourceGroups`.
    ResourceGroupProvider
);
azure_provider!(
    /// `vnet`: `Microsoft.Network/virtualNetworks` with its subnets.
    VnetProvider
);
azure_provider!(
    /// `public_ip`: `Microsoft.Network/publicIPAddresses`.
    PublicIpProvider
);
azure_provider!(
    /// `vm`: `Microsoft.Compute/virtualMachines` with its network interface `{name}-nic`.
    VmProvider
);

/// Reads one instance's attributes, or `None` when ARM says it does not exist.
async fn read_attributes(
    azure: &AzureDeployment,
    instance: &InstanceAddress,
    fields: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<Option<(Attributes, Health)>, ComputeError> {
    let id = read_id(azure, instance, fields, outputs)?;
    let Some(body) = get(azure, &id).await? else {
        // The remembered id may be stale (a renamed resource): try where the spec puts it.
        let wanted = desired_id(azure, instance, fields, outputs)?;
        if wanted == id {
            return Ok(None);
        }
        return match get(azure, &wanted).await? {
            Some(body) => describe(azure, instance, &wanted, &body, fields, outputs)
                .await
                .map(Some),
            None => Ok(None),
        };
    };
    describe(azure, instance, &id, &body, fields, outputs)
        .await
        .map(Some)
}

async fn describe(
    azure: &AzureDeployment,
    instance: &InstanceAddress,
    id: &ResourceId,
    body: &Value,
    fields: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<(Attributes, Health), ComputeError> {
    let mut attributes = common_attributes(azure, body, id, fields, outputs);
    let provisioning = text(body, "/properties/provisioningState");
    let mut health = match provisioning.as_deref() {
        Some(state) if state.eq_ignore_ascii_case("failed") => Health::Unhealthy {
            reason: "ARM reports provisioningState Failed".to_owned(),
        },
        _ => Health::Healthy,
    };
    match instance.kind() {
        Kind::ResourceGroup => {}
        Kind::Vnet => {
            let prefixes = body
                .pointer("/properties/addressSpace/addressPrefixes")
                .cloned()
                .unwrap_or_else(|| json!([]));
            attributes.insert("address_space".into(), prefixes);
            let mut subnets = serde_json::Map::new();
            let mut subnet_ids = serde_json::Map::new();
            for subnet in body
                .pointer("/properties/subnets")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = text(subnet, "/name") else {
                    continue;
                };
                let prefix = text(subnet, "/properties/addressPrefix")
                    .or_else(|| text(subnet, "/properties/addressPrefixes/0"));
                subnets.insert(name.clone(), json!(prefix));
                subnet_ids.insert(
                    name.clone(),
                    json!(text(subnet, "/id").unwrap_or_else(|| format!("{id}/subnets/{name}"))),
                );
            }
            attributes.insert("subnets".into(), Value::Object(subnets));
            attributes.insert("subnet_ids".into(), Value::Object(subnet_ids));
        }
        Kind::PublicIp => {
            attributes.insert("sku".into(), json!(text(body, "/sku/name")));
            attributes.insert(
                "allocation".into(),
                json!(text(body, "/properties/publicIPAllocationMethod")),
            );
            attributes.insert("address".into(), json!(text(body, "/properties/ipAddress")));
        }
        Kind::Vm => {
            describe_vm(azure, id, body, fields, outputs, &mut attributes).await?;
            if let Some(state) = attributes.get("power_state").and_then(Value::as_str)
                && state != "running"
                && health.is_healthy()
            {
                // A deallocated VM is where a fence leaves it: present, not serving.
                health = Health::Unhealthy {
                    reason: format!("the VM is {state}"),
                };
            }
        }
        _ => {}
    }
    Ok((attributes, health))
}

async fn describe_vm(
    azure: &AzureDeployment,
    id: &ResourceId,
    body: &Value,
    fields: &Attributes,
    outputs: OutputsOf<'_>,
    attributes: &mut Attributes,
) -> Result<(), ComputeError> {
    let generations = generations_around(fields.get("vnet"));
    attributes.insert(
        "size".into(),
        json!(text(body, "/properties/hardwareProfile/vmSize")),
    );
    if let Some(image) = body.pointer("/properties/storageProfile/imageReference") {
        let part = |name: &str| image.get(name).and_then(Value::as_str).unwrap_or_default();
        attributes.insert(
            "image".into(),
            json!(format!(
                "{}:{}:{}:{}",
                part("publisher"),
                part("offer"),
                part("sku"),
                part("version")
            )),
        );
    }
    if let Some(user) = text(body, "/properties/osProfile/adminUsername") {
        attributes.insert("admin_username".into(), json!(user));
    }
    if let Some(key) = text(
        body,
        "/properties/osProfile/linuxConfiguration/ssh/publicKeys/0/keyData",
    ) {
        attributes.insert("ssh_public_key".into(), json!(key));
    }
    let device_folder = fields
        .get("device_folder")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            azure
                .device_folder(id)
                .map(|folder| folder.display().to_string())
        })
        .unwrap_or_else(|| DEFAULT_DEVICE_FOLDER.to_owned());
    attributes.insert("device_folder".into(), json!(device_folder));
    let view = azure.client().virtual_machine_instance_view(id).await?;
    let power_state = view.power_state().unwrap_or("unknown").to_owned();
    attributes.insert("power_state".into(), json!(power_state));
    // Read only while a resize is pending, so a converged VM's reading (and a saved plan's
    // fingerprint of it) does not change with the sizes Azure has free in its cluster.
    if let (Some(current), Some(wanted)) = (
        text(body, "/properties/hardwareProfile/vmSize"),
        fields.get("size").and_then(Value::as_str),
    ) && !wanted.contains("${")
        && !current.eq_ignore_ascii_case(wanted)
    {
        let in_place = power_state == "deallocated"
            || sizes_in_place(azure, id)
                .await?
                .iter()
                .any(|name| name.eq_ignore_ascii_case(wanted));
        attributes.insert("resizable_in_place".into(), json!(in_place));
    }
    let nic_id = text(body, "/properties/networkProfile/networkInterfaces/0/id")
        .and_then(|text| ResourceId::parse(&text).ok());
    let Some(nic_id) = nic_id else {
        return Ok(());
    };
    let Some(nic) = get(azure, &nic_id).await? else {
        return Ok(());
    };
    let configuration = nic
        .pointer("/properties/ipConfigurations/0/properties")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(address) = text(&configuration, "/privateIPAddress") {
        attributes.insert("private_ip".into(), json!(address));
    }
    if let Some(subnet) =
        text(&configuration, "/subnet/id").and_then(|text| ResourceId::parse(&text).ok())
    {
        attributes.insert("subnet".into(), json!(subnet.name()));
        let vnet_text = subnet.as_str().rsplitn(3, '/').nth(2).unwrap_or_default();
        if let Ok(vnet) = ResourceId::parse(vnet_text) {
            let reference = azure
                .instance_with_id(Kind::Vnet, &vnet, generations.clone(), outputs)
                .map(|instance| instance.to_string())
                .unwrap_or_else(|| vnet.as_str().to_owned());
            attributes.insert("vnet".into(), json!(reference));
        }
    }
    if let Some(public) =
        text(&configuration, "/publicIPAddress/id").and_then(|text| ResourceId::parse(&text).ok())
    {
        let reference = azure
            .instance_with_id(Kind::PublicIp, &public, generations, outputs)
            .map(|instance| instance.to_string())
            .unwrap_or_else(|| public.as_str().to_owned());
        attributes.insert("public_ip".into(), json!(reference));
        if let Some(address) = get(azure, &public)
            .await?
            .and_then(|body| text(&body, "/properties/ipAddress"))
        {
            attributes.insert("public_address".into(), json!(address));
        }
    }
    Ok(())
}

async fn read_observation(azure: &AzureDeployment, context: &ReadContext<'_>) -> Observation {
    match read_attributes(azure, context.instance, context.fields, context.outputs).await {
        Ok(Some((attributes, health))) => Observation::Present { attributes, health },
        Ok(None) => Observation::Absent,
        Err(error) => Observation::Unknown {
            reason: error.to_string(),
        },
    }
}

/// What every step ends with: the instance as ARM has it now, as its outputs.
async fn outputs_now(
    azure: &AzureDeployment,
    instance: &InstanceAddress,
    fields: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<StepOutcome, ComputeError> {
    match read_attributes(azure, instance, fields, outputs).await? {
        Some((attributes, _)) => Ok(StepOutcome {
            outputs: attributes,
        }),
        None => Err(step_error(
            instance,
            "ARM does not show it after the step succeeded; plan again",
        )),
    }
}

fn location(fields: &Attributes) -> Value {
    fields.get("location").cloned().unwrap_or(Value::Null)
}

fn with_tags(mut body: Value, fields: &Attributes) -> Value {
    if let Some(tags) = tags_from(fields) {
        body["tags"] = json!(tags);
    }
    body
}

/// The body of a resource PUT for one of the network kinds.
fn network_body(kind: Kind, fields: &Attributes) -> Value {
    let body = match kind {
        Kind::ResourceGroup => json!({"location": location(fields)}),
        Kind::Vnet => {
            let subnets: Vec<Value> = fields
                .get("subnets")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .map(
                    |(name, prefix)| json!({"name": name, "properties": {"addressPrefix": prefix}}),
                )
                .collect();
            json!({
                "location": location(fields),
                "properties": {
                    "addressSpace": {"addressPrefixes": fields.get("address_space").cloned().unwrap_or_else(|| json!([]))},
                    "subnets": subnets,
                }
            })
        }
        _ => json!({
            "location": location(fields),
            "sku": {"name": fields.get("sku").and_then(Value::as_str).unwrap_or("Standard")},
            "properties": {
                "publicIPAllocationMethod": fields.get("allocation").and_then(Value::as_str).unwrap_or("Static"),
                "publicIPAddressVersion": "IPv4",
            }
        }),
    };
    with_tags(body, fields)
}

/// Creates, updates or replaces a resource group, network or public IP: one PUT.
async fn put_simple(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    step: &Step,
    context: &ApplyContext<'_>,
) -> Result<StepOutcome, ComputeError> {
    let instance = &step.address;
    let fields = context.inputs;
    let id = desired_id(azure, instance, fields, context.outputs)?;
    let existing = read_attributes(azure, instance, fields, context.outputs).await?;
    if step.action == Action::Replace {
        if instance.kind() == Kind::ResourceGroup {
            return Err(ComputeError::GroupReplacement {
                instance: instance.clone(),
            });
        }
        let done = existing
            .as_ref()
            .is_some_and(|(attributes, _)| already_replaced(step, attributes));
        if !done && let Some(old) = azure.remembered_id(instance, context.outputs)? {
            operations.progress(format!("deleting {old} to replace it"));
            operations.delete(&old).await?;
        }
    }
    let creating_again = step.action == Action::Create
        && existing.as_ref().is_some_and(|(attributes, _)| {
            attributes.get("id").and_then(Value::as_str) == Some(id.as_str())
        });
    if !creating_again {
        operations
            .put::<_, Value>(&id, &network_body(instance.kind(), fields))
            .await?;
    }
    outputs_now(azure, instance, fields, context.outputs).await
}

/// Deletes one instance (a delete, a retirement, or the first half of a replacement).
async fn delete_instance(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    instance: &InstanceAddress,
    outputs: OutputsOf<'_>,
) -> Result<StepOutcome, ComputeError> {
    let id = azure.id_of(instance, outputs)?;
    match instance.kind() {
        Kind::ResourceGroup => {
            let disks_path = format!("{id}/providers/Microsoft.Compute/disks");
            let disks = match azure
                .client()
                .list::<Value>(&disks_path, api_version::DISKS)
                .await
            {
                Ok(disks) => disks,
                Err(error) if error.is_not_found() => return Ok(StepOutcome::default()),
                Err(error) => return Err(error.into()),
            };
            if !disks.is_empty() {
                return Err(ComputeError::GroupHoldsDisks {
                    instance: instance.clone(),
                    group: id.name().to_owned(),
                    disks: disks
                        .iter()
                        .filter_map(|disk| text(disk, "/name"))
                        .collect(),
                });
            }
            operations.delete(&id).await?;
        }
        Kind::Vm => {
            let nic = get(azure, &id)
                .await?
                .and_then(|body| text(&body, "/properties/networkProfile/networkInterfaces/0/id"));
            operations.delete(&id).await?;
            if let Some(nic) = nic.and_then(|text| ResourceId::parse(&text).ok()) {
                operations.delete(&nic).await?;
            }
        }
        _ => operations.delete(&id).await?,
    }
    Ok(StepOutcome::default())
}

/// The providers whose steps are a plain create, update or delete of one ARM resource.
macro_rules! simple_provider {
    ($name:ident, $kind:expr) => {
        #[async_trait]
        impl Provider for $name {
            fn kind(&self) -> Kind {
                $kind
            }

            async fn read(&self, context: ReadContext<'_>) -> Observation {
                read_observation(&self.azure, &context).await
            }

            async fn apply(
                &self,
                step: &Step,
                context: ApplyContext<'_>,
            ) -> Result<StepOutcome, StepError> {
                apply_simple(&self.azure, step, &context).await
            }
        }
    };
}

simple_provider!(ResourceGroupProvider, Kind::ResourceGroup);
simple_provider!(VnetProvider, Kind::Vnet);
simple_provider!(PublicIpProvider, Kind::PublicIp);

async fn apply_simple(
    azure: &AzureDeployment,
    step: &Step,
    context: &ApplyContext<'_>,
) -> Result<StepOutcome, StepError> {
    let operations =
        StepOperations::new(azure.client(), context.record_operation, context.progress);
    operations
        .resume(context.resume_operation)
        .await
        .map_err(ComputeError::from)?;
    let result = match step.action {
        Action::Create | Action::Update | Action::Replace => {
            put_simple(azure, &operations, step, context).await
        }
        Action::Delete | Action::Retire => {
            delete_instance(azure, &operations, &step.address, context.outputs).await
        }
        other => Err(step_error(
            &step.address,
            format!("{} has no `{other}` step", step.address.kind()),
        )),
    };
    Ok(result?)
}

#[async_trait]
impl Provider for VmProvider {
    fn kind(&self) -> Kind {
        Kind::Vm
    }

    async fn read(&self, context: ReadContext<'_>) -> Observation {
        read_observation(&self.azure, &context).await
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
            .map_err(ComputeError::from)?;
        let result = match step.action {
            Action::Create | Action::Update | Action::Replace => {
                put_vm(azure, &operations, step, &context).await
            }
            Action::Fence => fence_vm(azure, &operations, &step.address, context.outputs).await,
            Action::Delete | Action::Retire => {
                delete_instance(azure, &operations, &step.address, context.outputs).await
            }
            other => Err(step_error(
                &step.address,
                format!("vm has no `{other}` step"),
            )),
        };
        Ok(result?)
    }
}

/// Creates, updates or replaces a VM: its network interface first, then the VM. An update
/// keeps the VM's data disks: it is a PATCH of what changed, never a PUT without them.
async fn put_vm(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    step: &Step,
    context: &ApplyContext<'_>,
) -> Result<StepOutcome, ComputeError> {
    let instance = &step.address;
    let fields = context.inputs;
    let outputs = context.outputs;
    let id = desired_id(azure, instance, fields, outputs)?;
    let existing = read_attributes(azure, instance, fields, outputs).await?;
    let mut exists = existing.as_ref().is_some_and(|(attributes, _)| {
        attributes.get("id").and_then(Value::as_str) == Some(id.as_str())
    });
    if step.action == Action::Replace {
        let done = existing
            .as_ref()
            .is_some_and(|(attributes, _)| already_replaced(step, attributes));
        if !done && let Some(old) = azure.remembered_id(instance, outputs)? {
            operations.progress(format!("deleting {old} to replace it"));
            delete_instance(azure, operations, instance, outputs).await?;
            exists = false;
        }
    }
    let vnet = referenced_id(azure, fields.get("vnet"), outputs)?
        .ok_or_else(|| step_error(instance, "the step has no vnet: plan again"))?;
    let subnet = fields
        .get("subnet")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let public_ip = referenced_id(azure, fields.get("public_ip"), outputs)?;
    let nic_id = ResourceId::provider_resource(
        azure.subscription()?,
        id.resource_group_name().unwrap_or_default(),
        "Microsoft.Network",
        "networkInterfaces",
        &format!("{}-nic", id.name()),
    );
    let mut configuration = json!({
        "subnet": {"id": format!("{vnet}/subnets/{subnet}")},
        "privateIPAllocationMethod": "Dynamic",
        "primary": true,
    });
    if let Some(public_ip) = &public_ip {
        configuration["publicIPAddress"] = json!({"id": public_ip.as_str()});
    }
    let nic_body = with_tags(
        json!({
            "location": location(fields),
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": configuration}]}
        }),
        fields,
    );
    let nic_needed = !exists
        || existing
            .as_ref()
            .is_some_and(|(attributes, _)| attributes.get("public_ip") != fields.get("public_ip"));
    if nic_needed {
        operations.put::<_, Value>(&nic_id, &nic_body).await?;
    }
    let size = fields
        .get("size")
        .and_then(Value::as_str)
        .ok_or_else(|| step_error(instance, "the step has no size: plan again"))?;
    if exists {
        if step.action != Action::Create {
            update_vm(azure, operations, context, instance, &id, size).await?;
        }
    } else {
        let image = fields
            .get("image")
            .and_then(Value::as_str)
            .unwrap_or(DEFAULT_IMAGE);
        let parts: Vec<&str> = image.split(':').collect();
        let [publisher, offer, sku, version] = parts[..] else {
            return Err(step_error(
                instance,
                format!("image `{image}` is not publisher:offer:sku:version"),
            ));
        };
        let user = fields
            .get("admin_username")
            .and_then(Value::as_str)
            .unwrap_or("azureuser");
        let key = fields
            .get("ssh_public_key")
            .and_then(Value::as_str)
            .ok_or_else(|| step_error(instance, "the step has no ssh_public_key: plan again"))?;
        let body = with_tags(
            json!({
                "location": location(fields),
                "properties": {
                    "hardwareProfile": {"vmSize": size},
                    "storageProfile": {
                        "imageReference": {"publisher": publisher, "offer": offer, "sku": sku, "version": version},
                        "osDisk": {"createOption": "FromImage", "managedDisk": {"storageAccountType": "Premium_LRS"}, "deleteOption": "Delete"},
                        "dataDisks": [],
                    },
                    "osProfile": {
                        "computerName": id.name(),
                        "adminUsername": user,
                        "linuxConfiguration": {
                            "disablePasswordAuthentication": true,
                            "ssh": {"publicKeys": [{"path": format!("/home/{user}/.ssh/authorized_keys"), "keyData": key}]},
                        },
                    },
                    "networkProfile": {"networkInterfaces": [{"id": nic_id.as_str(), "properties": {"primary": true}}]},
                }
            }),
            fields,
        );
        operations.put::<_, Value>(&id, &body).await?;
    }
    outputs_now(azure, instance, fields, outputs).await
}

/// Deallocates a VM and waits until ARM shows it deallocated: only then can nothing on it
/// write to the disks that move away. A VM that is gone is fenced already.
async fn fence_vm(
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
    outputs_after.insert("power_state".into(), json!("deallocated"));
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
async fn sizes_in_place(azure: &AzureDeployment, id: &ResourceId) -> Result<Vec<String>, ArmError> {
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
async fn update_vm(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    context: &ApplyContext<'_>,
    instance: &InstanceAddress,
    id: &ResourceId,
    size: &str,
) -> Result<(), ComputeError> {
    let start = context.inputs.get("power_state").and_then(Value::as_str) == Some("running");
    let mut patch = json!({"properties": {"hardwareProfile": {"vmSize": size}}});
    let tags = tags_from(context.inputs);
    if let Some(tags) = &tags {
        patch["tags"] = json!(tags);
    }
    let body = get(azure, id)
        .await?
        .ok_or_else(|| step_error(instance, "ARM does not show the VM any more: plan again"))?;
    let current = text(&body, "/properties/hardwareProfile/vmSize").unwrap_or_default();
    let resized = current.eq_ignore_ascii_case(size);
    let tagged = tags
        .as_ref()
        .is_none_or(|tags| tags_of(&body) == json!(tags));
    let state = power_state(azure, id).await?;
    if state == "deallocated" {
        let carrying_on = resuming_a_resize(context.resume_operation, id);
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
