//! The VM provider's steps: create, update or replace (the network interface first, then the
//! VM), fence, delete.

use async_trait::async_trait;
use ferry_arm::deployment::AzureDeployment;
use ferry_arm::{ReadVia, ResourceId, StepOperations};
use ferry_core::fields::vm::ADMIN_USERNAME;
use ferry_core::provider::ReadRound;
use ferry_core::{
    Action, ApplyContext, Kind, Observation, Provider, ReadContext, Step, StepError, StepOutcome,
    Value,
};
use serde_json::json;

use super::power::{fence_vm, update_vm};
use super::read::{outputs_now, read_attributes, read_observation};
use super::{
    ComputeError, DEFAULT_IMAGE, VmProvider, already_replaced, delete_instance, desired_id,
    location, referenced_id, step_error, with_tags,
};

#[async_trait]
impl Provider for VmProvider {
    fn kind(&self) -> Kind {
        Kind::Vm
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
        let azure = &*self.azure;
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
    let existing = read_attributes(azure, instance, fields, outputs, ReadVia::Single).await?;
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
            .get(ADMIN_USERNAME)
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
