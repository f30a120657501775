//! Data disks attached to VMs: a VM write's checks and reservations, the disks' state
//! afterwards, and the filesystem mirror of attachments (a `lunN` link per disk, like
//! `/dev/disk/azure/scsi1`, to the disk's backing file).

use std::path::PathBuf;

use serde_json::{Value, json};

use super::body::properties_mut;
use super::ids::{Kind, group_id_of, group_name, kind_of, lower, name_of};
use super::{Refusal, SimRequest, SimResponse, World};

impl World {
    /// The folder that mirrors a VM's `/dev/disk/azure/scsi1`, one `lunN` link per attached
    /// disk, by VM id or by VM name. Two VMs of the same name in different groups (one per
    /// generation) get their own folders, `vms/{group}/{vm}/scsi1`; a name finds the VM of that
    /// name that exists (the last created, when several do).
    pub fn attachment_directory(&self, vm: &str) -> PathBuf {
        let id = if vm.starts_with('/') {
            Some(vm.to_owned())
        } else {
            self.resources
                .values()
                .filter(|stored| {
                    kind_of(&stored.id) == Kind::VirtualMachine
                        && name_of(&stored.id).eq_ignore_ascii_case(vm)
                })
                .max_by_key(|stored| {
                    stored
                        .body
                        .pointer("/properties/vmId")
                        .and_then(Value::as_str)
                        .and_then(|id| u64::from_str_radix(id.get(..8)?, 16).ok())
                        .unwrap_or(0)
                })
                .map(|stored| stored.id.clone())
        };
        let (group, name) = match &id {
            Some(id) => (lower(&group_name(id)), lower(&name_of(id))),
            None => ("_".to_owned(), lower(vm)),
        };
        self.settings
            .data_directory
            .join("vms")
            .join(group)
            .join(name)
            .join("scsi1")
    }

    /// Checks and reserves the disks in a VM body; returns whether any attachment changes.
    pub(super) fn apply_vm_disk_request(
        &mut self,
        vm_id: &str,
        body: &mut Value,
        previous: &Value,
    ) -> Result<bool, Refusal> {
        let location = body
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let group = group_id_of(vm_id).unwrap_or_default();
        let vm_name = name_of(vm_id);
        let mut wanted: Vec<(i64, String, bool)> = Vec::new();
        let mut implicit_disks: Vec<(String, Value)> = Vec::new();
        let mut luns = std::collections::HashSet::new();
        if let Some(data_disks) = body
            .get_mut("properties")
            .and_then(|properties| properties.get_mut("storageProfile"))
            .and_then(|profile| profile.get_mut("dataDisks"))
            .and_then(Value::as_array_mut)
        {
            for disk in data_disks.iter_mut() {
                let Some(lun) = disk.get("lun").and_then(Value::as_i64) else {
                    return Err(SimResponse::error(
                        400,
                        "InvalidParameter",
                        "Required parameter 'dataDisk.lun' is missing (null).",
                    ));
                };
                if !luns.insert(lun) {
                    return Err(SimResponse::error(
                        400,
                        "InvalidParameter",
                        format!(
                            "A disk at LUN {lun} already exists; each data disk needs its own LUN."
                        ),
                    ));
                }
                let detaching = disk
                    .get("toBeDetached")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                let create_option = disk
                    .get("createOption")
                    .and_then(Value::as_str)
                    .unwrap_or("Attach")
                    .to_owned();
                let disk_id = disk
                    .pointer("/managedDisk/id")
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                let disk_id = match disk_id {
                    Some(id) => id,
                    None if create_option.eq_ignore_ascii_case("Empty") => {
                        let name = disk
                            .get("name")
                            .and_then(Value::as_str)
                            .map(str::to_owned)
                            .unwrap_or_else(|| format!("{vm_name}_DataDisk_{lun}"));
                        let id = format!("{group}/providers/Microsoft.Compute/disks/{name}");
                        let size = disk.get("diskSizeGB").and_then(Value::as_i64).unwrap_or(32);
                        implicit_disks.push((id.clone(), json!({"location": location, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": size}})));
                        if !disk.get("managedDisk").is_some_and(Value::is_object) {
                            disk["managedDisk"] = json!({});
                        }
                        disk["managedDisk"]["id"] = json!(id.clone());
                        disk["name"] = json!(name);
                        id
                    }
                    None => {
                        return Err(SimResponse::error(
                            400,
                            "InvalidParameter",
                            format!(
                                "Data disk at LUN {lun} needs managedDisk.id to attach an existing disk."
                            ),
                        ));
                    }
                };
                wanted.push((lun, disk_id, detaching));
            }
        }
        // Validate before changing anything.
        let implicit_ids: Vec<String> = implicit_disks.iter().map(|(id, _)| lower(id)).collect();
        for (_, disk_id, detaching) in &wanted {
            if *detaching {
                continue;
            }
            if implicit_ids.contains(&lower(disk_id))
                && !self.resources.contains_key(&lower(disk_id))
            {
                continue;
            }
            let Some(disk) = self.resources.get(&lower(disk_id)) else {
                return Err(SimResponse::error(
                    404,
                    "NotFound",
                    format!(
                        "Disk {} does not exist; create it before attaching it.",
                        name_of(disk_id)
                    ),
                ));
            };
            if let Some(owner) = disk.body.get("managedBy").and_then(Value::as_str)
                && !owner.eq_ignore_ascii_case(vm_id)
            {
                return Err(SimResponse::error(
                    409,
                    "ConflictingUserInput",
                    format!(
                        "Disk '{}' cannot be attached as the disk is already owned by VM '{}'.",
                        name_of(disk_id),
                        owner
                    ),
                ));
            }
        }
        let previously_attached: Vec<String> = previous
            .pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
            .map(|disks| {
                disks
                    .iter()
                    .filter_map(|disk| {
                        disk.pointer("/managedDisk/id")
                            .and_then(Value::as_str)
                            .map(lower)
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (disk_id, disk_body) in implicit_disks {
            if !self.resources.contains_key(&lower(&disk_id)) {
                let request = SimRequest {
                    method: "PUT".to_owned(),
                    path: disk_id.clone(),
                    query: Vec::new(),
                    headers: Vec::new(),
                    body: Vec::new(),
                };
                let _ = self.write_body(&request, &disk_id, disk_body, None, true);
            }
        }
        let mut changed = false;
        for (_, disk_id, detaching) in &wanted {
            let was_attached = previously_attached.contains(&lower(disk_id));
            if *detaching {
                changed |= was_attached;
                continue;
            }
            changed |= !was_attached;
            // Reserve at once, so a concurrent attach elsewhere gets its 409.
            if let Some(disk) = self.resources.get_mut(&lower(disk_id)) {
                disk.body["managedBy"] = json!(vm_id);
            }
        }
        let still_listed: Vec<String> = wanted.iter().map(|(_, id, _)| lower(id)).collect();
        changed |= previously_attached
            .iter()
            .any(|id| !still_listed.contains(id));
        Ok(changed)
    }

    /// After a VM write: drop detached disks, settle each disk's state, mirror the links.
    pub(super) fn settle_vm_disks(&mut self, vm_id: &str) {
        let key = lower(vm_id);
        let Some(stored) = self.resources.get(&key).cloned() else {
            return;
        };
        let mut body = stored.body.clone();
        let mut kept = Vec::new();
        let mut detached = Vec::new();
        if let Some(data_disks) = body
            .pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
        {
            for disk in data_disks {
                let disk_id = disk
                    .pointer("/managedDisk/id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                if disk
                    .get("toBeDetached")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                {
                    detached.push(lower(&disk_id));
                } else {
                    kept.push(disk.clone());
                }
            }
        }
        if body
            .pointer("/properties/storageProfile/dataDisks")
            .is_some()
        {
            body["properties"]["storageProfile"]["dataDisks"] = Value::Array(kept.clone());
        }
        let kept_ids: Vec<String> = kept
            .iter()
            .filter_map(|disk| {
                disk.pointer("/managedDisk/id")
                    .and_then(Value::as_str)
                    .map(lower)
            })
            .collect();
        // Every disk that names this VM as owner but is no longer listed is released.
        let owned: Vec<String> = self
            .resources
            .iter()
            .filter(|(_, disk)| {
                disk.body
                    .get("managedBy")
                    .and_then(Value::as_str)
                    .is_some_and(|owner| owner.eq_ignore_ascii_case(vm_id))
            })
            .map(|(key, _)| key.clone())
            .collect();
        for disk_key in owned.iter().chain(detached.iter()) {
            if !kept_ids.contains(disk_key)
                && let Some(disk) = self.resources.get_mut(disk_key)
                && let Some(object) = disk.body.as_object_mut()
            {
                object.remove("managedBy");
                properties_mut(&mut disk.body).insert("diskState".to_owned(), json!("Unattached"));
            }
        }
        if let Some(stored) = self.resources.get_mut(&key) {
            stored.body = body;
        }
        self.refresh_vm_disks(vm_id);
    }

    /// Sets `diskState` of the VM's disks and rewrites its `lunN` links from ARM's view.
    pub(super) fn refresh_vm_disks(&mut self, vm_id: &str) {
        let Some(stored) = self.resources.get(&lower(vm_id)).cloned() else {
            return;
        };
        let running = self
            .power_states
            .get(&lower(vm_id))
            .is_none_or(|state| state == "running");
        let folder = self.attachment_directory(vm_id);
        let _ = std::fs::remove_dir_all(&folder);
        let disks: Vec<(i64, String)> = stored
            .body
            .pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
            .map(|disks| {
                disks
                    .iter()
                    .filter_map(|disk| {
                        Some((
                            disk.get("lun")?.as_i64()?,
                            disk.pointer("/managedDisk/id")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        if running {
            let _ = std::fs::create_dir_all(&folder);
        }
        for (lun, disk_id) in disks {
            let backing = self.backing_file(&disk_id);
            if let Some(disk) = self.resources.get_mut(&lower(&disk_id)) {
                disk.body["managedBy"] = json!(stored.id.clone());
                properties_mut(&mut disk.body).insert(
                    "diskState".to_owned(),
                    json!(if running { "Attached" } else { "Reserved" }),
                );
            }
            // A deallocated VM has no host, so no device: the links exist only while it runs.
            if running && let Some(backing) = backing {
                let _ = std::os::unix::fs::symlink(&backing, folder.join(format!("lun{lun}")));
            }
        }
    }
}
