//! The providers of resource groups, virtual networks and public IPs, whose steps are one PUT
//! or one delete of one ARM resource.

use async_trait::async_trait;
use ferry_arm::deployment::AzureDeployment;
use ferry_arm::{ReadVia, StepOperations};
use ferry_core::provider::ReadRound;
use ferry_core::{
    Action, ApplyContext, Attributes, Kind, Observation, Provider, ReadContext, Step, StepError,
    StepOutcome, Value,
};
use serde_json::json;

use super::read::{outputs_now, read_attributes, read_observation};
use super::{
    ComputeError, PublicIpProvider, ResourceGroupProvider, VnetProvider, already_replaced,
    delete_instance, desired_id, location, step_error, with_tags,
};

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
    let existing =
        read_attributes(azure, instance, fields, context.outputs, ReadVia::Single).await?;
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
            // Azure refuses to delete an address a network interface holds
            // (`PublicIPAddressCannotBeDeleted`): it is let go of first, and given back to the
            // same IP configuration once the new address exists (the id is the same).
            let holder = if instance.kind() == Kind::PublicIp {
                release_from_interface(azure, operations, instance, &old).await?
            } else {
                None
            };
            operations.progress(format!("deleting {old} to replace it"));
            operations.delete(&old).await?;
            if let Some(holder) = holder {
                operations
                    .put::<_, Value>(&id, &network_body(instance.kind(), fields))
                    .await?;
                give_back_to_interface(operations, instance, &holder, &id).await?;
                return outputs_now(azure, instance, fields, context.outputs).await;
            }
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

/// The IP configuration of a network interface that holds the public IP `address`, taken off
/// it; `None` when nothing or no interface holds it (a load balancer's frontend is not
/// ferry's to change here: the delete then fails with Azure's own words).
async fn release_from_interface(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    instance: &ferry_core::InstanceAddress,
    address: &ferry_arm::ResourceId,
) -> Result<Option<String>, ComputeError> {
    let Some(body) = azure.read_resource(address, ReadVia::Single).await? else {
        return Ok(None);
    };
    let Some(holder) = body
        .pointer("/properties/ipConfiguration/id")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Ok(None);
    };
    if interface_of(&holder).is_none() {
        return Ok(None);
    }
    operations.progress(format!(
        "taking {address} off {holder}, which holds it, to replace it"
    ));
    set_interface_address(operations, instance, &holder, None).await?;
    Ok(Some(holder))
}

/// Gives the replaced address back to the IP configuration that held it.
async fn give_back_to_interface(
    operations: &StepOperations<'_>,
    instance: &ferry_core::InstanceAddress,
    holder: &str,
    address: &ferry_arm::ResourceId,
) -> Result<(), ComputeError> {
    operations.progress(format!("giving {address} back to {holder}"));
    set_interface_address(operations, instance, holder, Some(address)).await
}

/// Sets (or, with `None`, removes) the public IP of one IP configuration of a network
/// interface: the interface read with its ETag and PUT back with `If-Match`, nothing else
/// changed.
async fn set_interface_address(
    operations: &StepOperations<'_>,
    instance: &ferry_core::InstanceAddress,
    holder: &str,
    address: Option<&ferry_arm::ResourceId>,
) -> Result<(), ComputeError> {
    let Some((interface, configuration)) = interface_of(holder) else {
        return Ok(());
    };
    let fetched = operations
        .client()
        .read::<Value>(&interface)
        .await?
        .ok_or_else(|| ComputeError::Step {
            instance: instance.clone(),
            message: format!("{interface}, which held the address, is gone"),
        })?;
    let mut nic = fetched.value;
    for item in nic
        .pointer_mut("/properties/ipConfigurations")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if !item["name"]
            .as_str()
            .is_some_and(|name| name.eq_ignore_ascii_case(&configuration))
        {
            continue;
        }
        match address {
            Some(address) => {
                item["properties"]["publicIPAddress"] = json!({"id": address.as_str()});
            }
            None => {
                if let Some(properties) = item["properties"].as_object_mut() {
                    properties.remove("publicIPAddress");
                }
            }
        }
    }
    operations
        .put_if_match::<_, Value>(&interface, &nic, fetched.etag.as_deref())
        .await?;
    Ok(())
}

/// The network interface and IP configuration name of an IP configuration's id.
fn interface_of(holder: &str) -> Option<(ferry_arm::ResourceId, String)> {
    let lower = holder.to_ascii_lowercase();
    if !lower.contains("/providers/microsoft.network/networkinterfaces/") {
        return None;
    }
    let at = lower.find("/ipconfigurations/")?;
    let interface = ferry_arm::ResourceId::parse(&holder[..at]).ok()?;
    Some((
        interface,
        holder[at + "/ipconfigurations/".len()..].to_owned(),
    ))
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

            fn begin_read_round(&self) -> ReadRound {
                ReadRound::new(self.azure.begin_read_round())
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
    let operations = StepOperations::new(
        azure.client(),
        context.record_resume_token,
        context.progress,
    );
    operations
        .resume(context.resume_token)
        .await
        .map_err(ComputeError::from)?;
    let result = match step.action {
        Action::Create | Action::Update | Action::Replace => {
            put_simple(azure, &operations, step, context).await
        }
        Action::Delete | Action::Retire => {
            let orphan = if step.address.kind() == Kind::PublicIp {
                delete_orphan_interface(azure, &operations, &step.address, context.outputs).await
            } else {
                Ok(())
            };
            match orphan {
                Ok(()) => delete_instance(azure, &operations, &step.address, context.outputs).await,
                Err(error) => Err(error),
            }
        }
        other => Err(step_error(
            &step.address,
            format!("{} has no `{other}` step", step.address.kind()),
        )),
    };
    Ok(result?)
}

/// A network interface that still holds the address though its VM is gone (a VM's delete
/// killed between the VM and its interface, which Azure deletes separately): it serves
/// nothing, and Azure refuses to delete the address while it holds it
/// (`PublicIPAddressCannotBeDeleted`), so it goes first. An interface whose VM exists is
/// left alone: the delete then fails with Azure's own words.
async fn delete_orphan_interface(
    azure: &AzureDeployment,
    operations: &StepOperations<'_>,
    instance: &ferry_core::InstanceAddress,
    outputs: ferry_arm::deployment::OutputsOf<'_>,
) -> Result<(), ComputeError> {
    let Ok(address) = azure.id_of(instance, outputs) else {
        return Ok(());
    };
    let Some(body) = azure.read_resource(&address, ReadVia::Single).await? else {
        return Ok(());
    };
    let Some((interface, _)) = body
        .pointer("/properties/ipConfiguration/id")
        .and_then(Value::as_str)
        .and_then(interface_of)
    else {
        return Ok(());
    };
    let Some(nic) = azure.read_resource(&interface, ReadVia::Single).await? else {
        return Ok(());
    };
    let vm = nic
        .pointer("/properties/virtualMachine/id")
        .and_then(Value::as_str)
        .and_then(|text| ferry_arm::ResourceId::parse(text).ok());
    let vm_exists = match vm {
        Some(vm) => azure.read_resource(&vm, ReadVia::Single).await?.is_some(),
        None => false,
    };
    if !vm_exists {
        operations.progress(format!(
            "deleting {interface}, which holds the address though its VM is gone"
        ));
        operations.delete(&interface).await?;
    }
    Ok(())
}
