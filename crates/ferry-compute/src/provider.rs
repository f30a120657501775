//! The Azure providers of the compute kinds, on the ARM client: resource groups, virtual
//! networks, public IP addresses and virtual machines with their network interface.
//!
//! Each read reports the spec's field names and value shapes (references as instance
//! addresses) plus the kind's outputs, so that the planner compares like with like; each step
//! returns the same attributes as its outputs. Every write goes through
//! [`StepOperations`], which records a long-running operation as soon as ARM accepts it and
//! polls a recorded one instead of sending its request again.
//!
//! This file holds the four providers and the helpers they share; `read` reads an instance,
//! `simple` holds the providers whose steps are one PUT or delete, `vm` the VM's create and
//! update, `power` its fence, resize and start, and `error` the [`ComputeError`].

use std::sync::Arc;

use ferry_arm::deployment::{self, AzureDeployment, OutputsOf, tags_from};
use ferry_arm::{ArmError, LocateError, ReadVia, ResourceId, StepOperations, api_version};
use ferry_core::{Attributes, InstanceAddress, Kind, Step, StepOutcome, Value};
use serde_json::json;

mod error;
mod power;
mod read;
mod simple;
mod vm;

pub use error::ComputeError;
pub use read::observed_group;

use error::step_error;

const DEFAULT_IMAGE: &str = "Canonical:ubuntu-24_04-lts:server:latest";

/// A resource by id, `None` when ARM says it does not exist: its own GET, or within an
/// observation's read round its group's list (`via`).
async fn get(
    azure: &AzureDeployment,
    id: &ResourceId,
    via: ReadVia,
) -> Result<Option<Value>, ArmError> {
    azure.read_resource(id, via).await
}

fn text(value: &Value, pointer: &str) -> Option<String> {
    deployment::text_at(value, pointer)
}

fn tags_of(body: &Value) -> Value {
    deployment::tags_of_body(body)
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

fn location(fields: &Attributes) -> Value {
    fields.get("location").cloned().unwrap_or(Value::Null)
}

fn with_tags(mut body: Value, fields: &Attributes) -> Value {
    if let Some(tags) = tags_from(fields) {
        body["tags"] = json!(tags);
    }
    body
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
            // The interface the VM names, or, once the VM is gone (its delete done, the
            // interface's not: a retried step), the one ferry made for it: `{vm}-nic`.
            let named = get(azure, &id, ReadVia::Single)
                .await?
                .and_then(|body| text(&body, "/properties/networkProfile/networkInterfaces/0/id"));
            let nic = named.or_else(|| {
                Some(format!(
                    "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Network/networkInterfaces/{}-nic",
                    azure.subscription().ok()?,
                    id.resource_group_name()?,
                    id.name()
                ))
            });
            operations.delete(&id).await?;
            if let Some(nic) = nic.and_then(|text| ResourceId::parse(&text).ok()) {
                operations.delete(&nic).await?;
            }
        }
        _ => operations.delete(&id).await?,
    }
    Ok(StepOutcome::default())
}
