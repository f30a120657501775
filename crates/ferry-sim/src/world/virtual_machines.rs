//! Virtual machines: their server-owned fields, their instance view, their power (start,
//! deallocate, power off, restart) and the `attachDetachDataDisks` action.

use std::time::Duration;

use serde_json::{Value, json};

use super::body::{keep_previous, properties_mut};
use super::ids::{lower, name_of, subscription_of};
use super::operations::Completion;
use super::routing::no_such_action;
use super::vm_sizes::VmSize;
use super::{Refusal, SimRequest, SimResponse, Stored, World};

impl World {
    pub(super) fn fill_virtual_machine_fields(&mut self, body: &mut Value, previous: &Value) {
        keep_previous(body, previous, "vmId");
        let vm_id = self.next_identifier();
        properties_mut(body).entry("vmId").or_insert(json!(vm_id));
        properties_mut(body).remove("instanceView");
    }

    /// `instanceView`, `vmSizes`, the power actions and `attachDetachDataDisks`.
    pub(super) fn virtual_machine_action(
        &mut self,
        request: &SimRequest,
        resource_id: &str,
        stored: Stored,
        action: &str,
    ) -> Result<(SimResponse, Option<(String, Duration)>), Refusal> {
        let key = lower(resource_id);
        match (request.method.as_str(), action) {
            ("GET", "instanceview") => Ok((
                SimResponse::json(200, &self.instance_view(resource_id)),
                None,
            )),
            ("GET", "vmsizes") => {
                let sizes: Vec<Value> = self
                    .sizes_available(&stored.id, &stored.body)
                    .into_iter()
                    .map(VmSize::listed)
                    .collect();
                Ok((SimResponse::json(200, &json!({"value": sizes})), None))
            }
            ("POST", "deallocate" | "poweroff" | "start" | "restart") => {
                self.require_unlocked(resource_id)?;
                self.require_idle(resource_id)?;
                let running = matches!(action, "start" | "restart");
                let transitional = if running {
                    "starting"
                } else if action == "poweroff" {
                    "stopping"
                } else {
                    "deallocating"
                };
                self.power_states
                    .insert(key.clone(), transitional.to_owned());
                let duration = if running {
                    self.settings.durations.vm_start
                } else {
                    self.settings.durations.vm_deallocate
                };
                let (operation_id, scaled) = self.begin_operation(
                    "POST",
                    &request.path,
                    duration,
                    Completion::Power {
                        vm_id: stored.id.clone(),
                        running,
                    },
                );
                self.hold(std::slice::from_ref(&stored.id), &operation_id, "Updating");
                let (status_url, result_url) =
                    self.operation_urls(&subscription_of(resource_id), &operation_id);
                let response = SimResponse::empty(202)
                    .with_header("Azure-AsyncOperation", status_url)
                    .with_header("Location", result_url)
                    .with_header("Retry-After", self.retry_after_seconds(scaled));
                Ok((response, Some((operation_id, scaled))))
            }
            ("POST", "attachdetachdatadisks") => {
                self.require_unlocked(resource_id)?;
                self.require_idle(resource_id)?;
                let body = Self::parse_body(request)?;
                let mut vm = stored.body.clone();
                let mut disks: Vec<Value> = vm
                    .pointer("/properties/storageProfile/dataDisks")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                for detach in body
                    .get("dataDisksToDetach")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let disk_id = detach
                        .get("diskId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    for disk in &mut disks {
                        if disk
                            .pointer("/managedDisk/id")
                            .and_then(Value::as_str)
                            .is_some_and(|id| id.eq_ignore_ascii_case(disk_id))
                        {
                            disk["toBeDetached"] = json!(true);
                            if let Some(option) = detach.get("detachOption") {
                                disk["detachOption"] = option.clone();
                            }
                        }
                    }
                }
                for attach in body
                    .get("dataDisksToAttach")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let disk_id = attach
                        .get("diskId")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let used: Vec<i64> = disks
                        .iter()
                        .filter_map(|disk| disk.get("lun").and_then(Value::as_i64))
                        .collect();
                    let lun = attach
                        .get("lun")
                        .and_then(Value::as_i64)
                        .unwrap_or_else(|| (0..).find(|lun| !used.contains(lun)).unwrap_or(0));
                    let mut disk = json!({"lun": lun, "createOption": "Attach", "managedDisk": {"id": disk_id}});
                    for field in ["caching", "deleteOption", "writeAcceleratorEnabled"] {
                        if let Some(value) = attach.get(field) {
                            disk[field] = value.clone();
                        }
                    }
                    disks.push(disk);
                }
                if !vm
                    .pointer("/properties/storageProfile")
                    .is_some_and(Value::is_object)
                {
                    properties_mut(&mut vm).insert("storageProfile".to_owned(), json!({}));
                }
                vm["properties"]["storageProfile"]["dataDisks"] = Value::Array(disks);
                let (_, operation) =
                    self.write_body(request, resource_id, vm, Some(stored.clone()), false)?;
                // Compute's API answers 200 with the VM's storage profile, at once or at the
                // end of the operation (`attachDetachDataDisks` in ComputeRP's
                // virtualMachine.json: 200 `StorageProfile`, 202).
                let (operation_id, scaled) = match operation {
                    Some(operation) => operation,
                    None => {
                        let profile = self.storage_profile(resource_id);
                        return Ok((SimResponse::json(200, &profile), None));
                    }
                };
                self.set_completion(
                    &operation_id,
                    Completion::DataDisks {
                        vm_id: stored.id.clone(),
                    },
                );
                let (status_url, result_url) =
                    self.operation_urls(&subscription_of(resource_id), &operation_id);
                let response = SimResponse::empty(202)
                    .with_header("Azure-AsyncOperation", status_url)
                    .with_header("Location", result_url)
                    .with_header("Retry-After", self.retry_after_seconds(scaled));
                Ok((response, Some((operation_id, scaled))))
            }
            _ => Err(no_such_action(request, resource_id, action)),
        }
    }

    /// A VM's create or update ended: it runs (unless it was deallocated), its disks settle
    /// and its network interfaces name it.
    pub(super) fn virtual_machine_provisioned(&mut self, id: &str) {
        let key = lower(id);
        self.power_states
            .entry(key.clone())
            .or_insert_with(|| "running".to_owned());
        self.settle_vm_disks(id);
        self.link_network_interfaces(id);
    }

    /// A deleted VM releases its disks; they stay, as on Azure.
    pub(super) fn virtual_machine_removed(&mut self, key: &str, stored: &Stored) {
        for disk in self.resources.values_mut() {
            if disk
                .body
                .get("managedBy")
                .and_then(Value::as_str)
                .is_some_and(|owner| owner.eq_ignore_ascii_case(&stored.id))
                && let Some(object) = disk.body.as_object_mut()
            {
                object.remove("managedBy");
                properties_mut(&mut disk.body).insert("diskState".to_owned(), json!("Unattached"));
            }
        }
        let _ = std::fs::remove_dir_all(self.attachment_directory(&stored.id));
        self.power_states.remove(key);
    }

    /// The VM's `storageProfile` as a GET shows it, `{}` when it has none.
    pub(super) fn storage_profile(&self, vm_id: &str) -> Value {
        self.resources
            .get(&lower(vm_id))
            .and_then(|stored| stored.body.pointer("/properties/storageProfile"))
            .cloned()
            .unwrap_or_else(|| json!({}))
    }

    pub(super) fn instance_view(&self, vm_id: &str) -> Value {
        let power = self
            .power_states
            .get(&lower(vm_id))
            .cloned()
            .unwrap_or_else(|| "starting".to_owned());
        let stored = self.resources.get(&lower(vm_id));
        let provisioning = stored
            .and_then(|stored| stored.body.pointer("/properties/provisioningState"))
            .and_then(Value::as_str)
            .unwrap_or("Succeeded")
            .to_ascii_lowercase();
        let disks: Vec<Value> = stored
            .and_then(|stored| stored.body.pointer("/properties/storageProfile/dataDisks"))
            .and_then(Value::as_array)
            .map(|disks| {
                disks
                    .iter()
                    .map(|disk| {
                        // Azure names each disk of the instance view, a string the definition
                        // (`DiskInstanceView.name`) types as such: the managed disk's name when
                        // the VM's entry has none.
                        let name = disk
                            .get("name")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .or_else(|| {
                                disk.pointer("/managedDisk/id")
                                    .and_then(Value::as_str)
                                    .map(name_of)
                            });
                        json!({
                            "name": name,
                            "statuses": [{"code": "ProvisioningState/succeeded", "level": "Info", "displayStatus": "Provisioning succeeded"}]
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "computerName": name_of(vm_id),
            "disks": disks,
            "statuses": [
                {"code": format!("ProvisioningState/{provisioning}"), "level": "Info", "displayStatus": format!("Provisioning {provisioning}")},
                {"code": format!("PowerState/{power}"), "level": "Info", "displayStatus": format!("VM {power}")}
            ]
        })
    }
}
