//! Reading an instance from ARM into the spec's field names and shapes plus the kind's outputs:
//! the attributes every tracked resource shares, then each kind's own (a VM's size, image, power
//! state, network interface and addresses).

use ferry_arm::deployment::{AzureDeployment, OutputsOf, generations_around, location_value};
use ferry_arm::{ReadVia, ResourceId};
use ferry_core::fields::vm;
use ferry_core::{
    Attributes, Health, InstanceAddress, Kind, Observation, ReadContext, StepOutcome, Value,
};
use serde_json::json;

use super::power::sizes_in_place;
use super::{ComputeError, desired_id, get, read_id, step_error, tags_of, text};

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

/// Reads one instance's attributes, or `None` when ARM says it does not exist.
pub(super) async fn read_attributes(
    azure: &AzureDeployment,
    instance: &InstanceAddress,
    fields: &Attributes,
    outputs: OutputsOf<'_>,
    via: ReadVia,
) -> Result<Option<(Attributes, Health)>, ComputeError> {
    let id = read_id(azure, instance, fields, outputs)?;
    let Some(body) = get(azure, &id, via).await? else {
        // The remembered id may be stale (a renamed resource): try where the spec puts it.
        let wanted = desired_id(azure, instance, fields, outputs)?;
        if wanted == id {
            return Ok(None);
        }
        return match get(azure, &wanted, via).await? {
            Some(body) => describe(azure, instance, &wanted, &body, fields, outputs, via)
                .await
                .map(Some),
            None => Ok(None),
        };
    };
    describe(azure, instance, &id, &body, fields, outputs, via)
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
    via: ReadVia,
) -> Result<(Attributes, Health), ComputeError> {
    let provisioning = text(body, "/properties/provisioningState");
    if instance.kind() == Kind::ResourceGroup
        && provisioning
            .as_deref()
            .is_some_and(|state| state.eq_ignore_ascii_case("deleting"))
    {
        return Err(ComputeError::GroupBeingDeleted {
            instance: instance.clone(),
            group: id.name().to_owned(),
        });
    }
    let mut attributes = common_attributes(azure, body, id, fields, outputs);
    // A failed one reads unhealthy here, as it always has, and is left to its own steps.
    let mut health = match ferry_arm::provisioning::health_of(body) {
        Health::Failed { reason } => Health::Unhealthy { reason },
        other => other,
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
            describe_vm(azure, id, body, fields, outputs, via, &mut attributes).await?;
            if let Some(state) = attributes.get(vm::POWER_STATE).and_then(Value::as_str)
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
    via: ReadVia,
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
        attributes.insert(vm::ADMIN_USERNAME.into(), json!(user));
    }
    if let Some(key) = text(
        body,
        "/properties/osProfile/linuxConfiguration/ssh/publicKeys/0/keyData",
    ) {
        attributes.insert("ssh_public_key".into(), json!(key));
    }
    let device_folder = fields
        .get(vm::DEVICE_FOLDER)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| {
            azure
                .device_folder(id)
                .map(|folder| folder.display().to_string())
        })
        .unwrap_or_else(|| vm::DEFAULT_DEVICE_FOLDER.to_owned());
    attributes.insert(vm::DEVICE_FOLDER.into(), json!(device_folder));
    let view = azure.virtual_machine_instance_view(id, via).await?;
    let power_state = view.power_state().unwrap_or("unknown").to_owned();
    attributes.insert(vm::POWER_STATE.into(), json!(power_state));
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
    let Some(nic) = get(azure, &nic_id, via).await? else {
        return Ok(());
    };
    let configuration = nic
        .pointer("/properties/ipConfigurations/0/properties")
        .cloned()
        .unwrap_or(Value::Null);
    if let Some(address) = text(&configuration, "/privateIPAddress") {
        attributes.insert(vm::PRIVATE_IP.into(), json!(address));
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
        if let Some(address) = get(azure, &public, via)
            .await?
            .and_then(|body| text(&body, "/properties/ipAddress"))
        {
            attributes.insert(vm::PUBLIC_ADDRESS.into(), json!(address));
        }
    }
    Ok(())
}

pub(super) async fn read_observation(
    azure: &AzureDeployment,
    context: &ReadContext<'_>,
) -> Observation {
    match read_attributes(
        azure,
        context.instance,
        context.fields,
        context.outputs,
        ReadVia::Lists,
    )
    .await
    {
        Ok(Some((attributes, health))) => Observation::Present { attributes, health },
        Ok(None) => Observation::Absent,
        Err(error) => Observation::Unknown {
            reason: error.to_string(),
        },
    }
}

/// What every step ends with: the instance as ARM has it now, as its outputs.
pub(super) async fn outputs_now(
    azure: &AzureDeployment,
    instance: &InstanceAddress,
    fields: &Attributes,
    outputs: OutputsOf<'_>,
) -> Result<StepOutcome, ComputeError> {
    match read_attributes(azure, instance, fields, outputs, ReadVia::Single).await? {
        Some((attributes, _)) => Ok(StepOutcome {
            outputs: attributes,
        }),
        None => Err(step_error(
            instance,
            "ARM does not show it after the step succeeded; plan again",
        )),
    }
}
