//! VM restore points: `Microsoft.Compute/restorePointCollections`, their `restorePoints`, each
//! restore point's `diskRestorePoints`, and a disk restored from one
//! (`creationData.createOption: Restore`).
//!
//! A restore point holds every included managed disk of its VM at one moment: when its PUT is
//! accepted, the simulator copies each included disk's backing file (`snapshots/{uniqueId}.img`,
//! sparse like the disks') while it holds the world's lock, so no write lands between two of
//! the copies. A disk restored from a disk restore point starts with that copy: a ZFS pool
//! spread over several disks comes back as one moment's pool (crash-consistent).
//!
//! What Compute answers, and where each answer comes from (ComputeRP 2024-11-01's
//! restorePoint.json, DiskRP 2025-01-02's diskRestorePoint.json and diskRPCommon.json):
//! - a collection's PUT answers 200 or 201 at once (no long-running operation); "when updating
//!   a restore point collection, only tags may be modified": a changed `source.id` is `400
//!   BadRequest` (the simulator's wording);
//! - a collection's `source.id` names a VM that must exist (`404 NotFound`) in the
//!   collection's region: a collection made for a VM of another region is a cross-region
//!   copy's target, which the simulator does not serve, so a mismatch is `400 BadRequest`
//!   (the code is ARM's generic one; Azure's exact wording is not in the specs);
//! - deleting a collection "will also delete all the contained restore points"
//!   (RestorePointCollections_Delete), a long-running delete;
//! - a restore point's PUT is long-running (201, `x-ms-long-running-operation`); "updating
//!   properties of an existing restore point is not allowed": a second PUT is `409
//!   OperationNotAllowed`; its collection must exist (`404 ParentResourceNotFound`);
//!   `consistencyMode` is `CrashConsistent`, `FileSystemConsistent` or `ApplicationConsistent`
//!   (`ConsistencyModeTypes`), another is `400 InvalidParameter`; an `excludeDisks` entry must
//!   be one of the VM's disks (`400 InvalidParameter`, the simulator's wording);
//! - disk restore points are made by Compute, read only: a PUT or DELETE on one is `405
//!   MethodNotAllowed` (diskRestorePoint.json declares only GET, list and the access actions);
//! - a disk `Restore`d from a disk restore point needs `sourceResourceId` (missing: `400
//!   InvalidParameter`); one DiskRP cannot find, or of another region, is `404 NotFound`, as
//!   for a `Copy` (`snapshots.rs`).

use serde_json::{Map, Value, json};

use super::body::{iso_time_now, properties_mut};
use super::ids::{Kind, kind_of, lower, name_of};
use super::regions::normalise_location;
use super::snapshots::CopySource;
use super::{Refusal, SimResponse, Stored, World};

/// `ConsistencyModeTypes` (restorePoint.json, ComputeRP 2024-11-01).
const CONSISTENCY_MODES: &[&str] = &[
    "CrashConsistent",
    "FileSystemConsistent",
    "ApplicationConsistent",
];

fn bad_request(message: String) -> Refusal {
    SimResponse::error(400, "BadRequest", message)
}

fn invalid_parameter(target: &str, message: String) -> Refusal {
    SimResponse::json(
        400,
        &json!({"error": {"code": "InvalidParameter", "message": message, "target": target}}),
    )
}

/// The collection a restore point (or a disk restore point) id sits in.
fn collection_of(id: &str) -> String {
    let lowered = lower(id);
    let marker = "/restorepoints/";
    match lowered.find(marker) {
        Some(at) => id[..at].to_owned(),
        None => id.to_owned(),
    }
}

/// A disk restore point's id: its restore point's, then the disk's name and a unique suffix, as
/// Compute names them (`dataDisk123_68785190-...`, RestorePoint_Create.json).
fn disk_restore_point_id(restore_point_id: &str, disk_name: &str, unique: &str) -> String {
    format!("{restore_point_id}/diskRestorePoints/{disk_name}_{unique}")
}

/// One disk a restore point takes: where it sits on the VM, and the disk's stored body.
struct IncludedDisk {
    lun: Option<i64>,
    stored: Stored,
}

impl World {
    /// A collection's checks on a write: its source VM exists in its region, and an update
    /// keeps its source.
    pub(super) fn check_restore_point_collection(
        &self,
        body: &Value,
        previous: &Value,
    ) -> Result<(), Refusal> {
        let Some(source) = body
            .pointer("/properties/source/id")
            .and_then(Value::as_str)
        else {
            return Err(invalid_parameter(
                "source",
                "Required parameter 'source.id' is missing (null).".to_owned(),
            ));
        };
        if let Some(kept) = previous
            .pointer("/properties/source/id")
            .and_then(Value::as_str)
            && !kept.eq_ignore_ascii_case(source)
        {
            return Err(bad_request(format!(
                "only tags may be modified when updating a restore point collection: its source is {kept}, not {source}; create another collection for another VM"
            )));
        }
        if kind_of(source) != Kind::VirtualMachine {
            return Err(invalid_parameter(
                "source.id",
                format!(
                    "The source '{source}' of a restore point collection must be a virtual machine."
                ),
            ));
        }
        let Some(vm) = self.resources.get(&lower(source)) else {
            return Err(SimResponse::error(
                404,
                "NotFound",
                format!(
                    "The entity was not found: virtual machine {} does not exist.",
                    name_of(source)
                ),
            ));
        };
        let location = body.get("location").and_then(Value::as_str);
        let vm_location = vm.body.get("location").and_then(Value::as_str);
        if location.map(normalise_location) != vm_location.map(normalise_location) {
            return Err(bad_request(format!(
                "the restore point collection is in {} but its source virtual machine {} is in {}: create the collection in the VM's region",
                location.unwrap_or_default(),
                name_of(source),
                vm_location.unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// A collection's server-owned fields: its id, and its source's location.
    pub(super) fn fill_restore_point_collection_fields(
        &mut self,
        body: &mut Value,
        previous: &Value,
    ) {
        let unique = previous
            .pointer("/properties/restorePointCollectionId")
            .cloned()
            .unwrap_or_else(|| json!(self.next_identifier()));
        let source_location = body
            .pointer("/properties/source/id")
            .and_then(Value::as_str)
            .and_then(|source| self.resources.get(&lower(source)))
            .and_then(|vm| vm.body.get("location").cloned());
        let properties = properties_mut(body);
        properties.insert("restorePointCollectionId".to_owned(), unique);
        if let Some(source) = properties.get_mut("source").and_then(Value::as_object_mut)
            && let Some(location) = source_location
        {
            source.insert("location".to_owned(), location);
        }
    }

    /// A restore point's checks before it is taken: not an update, its collection exists, its
    /// consistency mode is one Compute knows, and what it excludes is the VM's.
    pub(super) fn check_restore_point(
        &self,
        id: &str,
        body: &Value,
        existing: bool,
    ) -> Result<(), Refusal> {
        if existing {
            return Err(SimResponse::error(
                409,
                "OperationNotAllowed",
                format!(
                    "Updating properties of an existing restore point is not allowed: {} exists; delete it or create a restore point of another name",
                    name_of(id)
                ),
            ));
        }
        let collection_id = collection_of(id);
        let Some(collection) = self.resources.get(&lower(&collection_id)) else {
            return Err(SimResponse::error(
                404,
                "ParentResourceNotFound",
                format!(
                    "Can not perform requested operation on nested resource. Parent resource '{}' not found.",
                    name_of(&collection_id)
                ),
            ));
        };
        if let Some(mode) = body
            .pointer("/properties/consistencyMode")
            .and_then(Value::as_str)
            && !CONSISTENCY_MODES
                .iter()
                .any(|known| known.eq_ignore_ascii_case(mode))
        {
            return Err(invalid_parameter(
                "consistencyMode",
                format!("The value '{mode}' of parameter 'consistencyMode' is invalid."),
            ));
        }
        let vm_id = collection
            .body
            .pointer("/properties/source/id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(vm) = self.resources.get(&lower(vm_id)) else {
            return Err(SimResponse::error(
                404,
                "NotFound",
                format!(
                    "The source virtual machine {} of restore point collection {} does not exist.",
                    name_of(vm_id),
                    name_of(&collection_id)
                ),
            ));
        };
        let disks = vm_disk_ids(&vm.body);
        for excluded in excluded_disks(body) {
            if !disks
                .iter()
                .any(|(_, disk)| disk.eq_ignore_ascii_case(&excluded))
            {
                return Err(invalid_parameter(
                    "excludeDisks",
                    format!(
                        "Disk {excluded} in excludeDisks is not attached to virtual machine {}.",
                        name_of(vm_id)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Takes a restore point: every included disk's data copied now, one disk restore point
    /// stored for each, and the VM's metadata in `sourceMetadata`. Called once the PUT is
    /// accepted, under the world's lock, so the copies are of one moment.
    pub(super) fn take_restore_point(&mut self, id: &str, body: &mut Value) -> Result<(), Refusal> {
        let collection_id = collection_of(id);
        let vm_id = self
            .resources
            .get(&lower(&collection_id))
            .and_then(|collection| collection.body.pointer("/properties/source/id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(vm) = self.resources.get(&lower(&vm_id)).cloned() else {
            return Ok(());
        };
        let excluded = excluded_disks(body);
        let included: Vec<IncludedDisk> = vm_disk_ids(&vm.body)
            .into_iter()
            .filter(|(_, disk)| !excluded.iter().any(|gone| gone.eq_ignore_ascii_case(disk)))
            .filter_map(|(lun, disk)| {
                self.resources
                    .get(&lower(&disk))
                    .cloned()
                    .map(|stored| IncludedDisk { lun, stored })
            })
            .collect();
        let now = iso_time_now();
        let location = vm.body.get("location").cloned().unwrap_or(Value::Null);
        let mut data_disks = Vec::new();
        let mut os_disk = Value::Null;
        for disk in included {
            let disk_name = name_of(&disk.stored.id);
            let unique = self.next_identifier();
            let disk_restore_point = disk_restore_point_id(id, &disk_name, &unique);
            let target = self.snapshot_file(&unique);
            let source = self.backing_file(&disk.stored.id);
            super::snapshots::copy_sparse(source.as_deref(), &target, 0).map_err(|reason| {
                SimResponse::error(
                    500,
                    "InternalServerError",
                    format!(
                        "the simulator could not copy {disk_name} into {}: {reason}",
                        target.display()
                    ),
                )
            })?;
            let source_unique = disk
                .stored
                .body
                .pointer("/properties/uniqueId")
                .cloned()
                .unwrap_or(Value::Null);
            let size = disk
                .stored
                .body
                .pointer("/properties/diskSizeGB")
                .cloned()
                .unwrap_or(json!(32));
            let stored = Stored {
                id: disk_restore_point.clone(),
                etag: self.next_etag(),
                body: json!({
                    "id": disk_restore_point,
                    "name": name_of(&disk_restore_point),
                    "type": "Microsoft.Compute/restorePointCollections/restorePoints/diskRestorePoints",
                    "properties": {
                        "timeCreated": now,
                        "sourceResourceId": disk.stored.id,
                        "sourceUniqueId": source_unique,
                        "familyId": source_unique,
                        "networkAccessPolicy": "AllowAll",
                        "publicNetworkAccess": "Disabled",
                        // The simulator's own: where the copy is, and what size it restores to.
                        "uniqueId": unique,
                        "diskSizeGB": size,
                        "location": location,
                    },
                }),
            };
            self.resources.insert(lower(&disk_restore_point), stored);
            let entry = json!({
                "name": disk_name,
                "managedDisk": {"id": disk.stored.id},
                "diskRestorePoint": {"id": disk_restore_point},
            });
            match disk.lun {
                Some(lun) => {
                    let mut entry = entry;
                    entry["lun"] = json!(lun);
                    data_disks.push(entry);
                }
                None => os_disk = entry,
            }
        }
        let mut storage_profile = Map::new();
        if !os_disk.is_null() {
            storage_profile.insert("osDisk".to_owned(), os_disk);
        }
        storage_profile.insert("dataDisks".to_owned(), Value::Array(data_disks));
        let vm_unique = vm
            .body
            .pointer("/properties/vmId")
            .cloned()
            .unwrap_or(Value::Null);
        let properties = properties_mut(body);
        properties
            .entry("consistencyMode")
            .or_insert(json!("CrashConsistent"));
        properties.insert("timeCreated".to_owned(), json!(now));
        properties.insert(
            "sourceMetadata".to_owned(),
            json!({
                "vmId": vm_unique,
                "hardwareProfile": vm.body.pointer("/properties/hardwareProfile").cloned().unwrap_or(Value::Null),
                "storageProfile": Value::Object(storage_profile),
                "location": location,
            }),
        );
        Ok(())
    }

    /// What a disk `Restore`d from `creationData.sourceResourceId` copies: a disk restore point
    /// in the new disk's region.
    pub(super) fn restore_source(
        &self,
        body: &Value,
        creation: &Value,
    ) -> Result<CopySource, Refusal> {
        let Some(source_id) = creation.get("sourceResourceId").and_then(Value::as_str) else {
            return Err(invalid_parameter(
                "sourceResourceId",
                "Required parameter 'sourceResourceId' is missing (null).".to_owned(),
            ));
        };
        let not_found = || {
            SimResponse::error(
                404,
                "NotFound",
                format!("Resource {} is not found.", name_of(source_id)),
            )
        };
        if kind_of(source_id) != Kind::DiskRestorePoint {
            return Err(invalid_parameter(
                "sourceResourceId",
                format!(
                    "the simulator restores disks from a disk restore point only, not {source_id}: name one from its restore point's diskRestorePoints list"
                ),
            ));
        }
        let source = self
            .resources
            .get(&lower(source_id))
            .ok_or_else(not_found)?;
        let location = body.get("location").and_then(Value::as_str);
        let source_location = source
            .body
            .pointer("/properties/location")
            .and_then(Value::as_str);
        if location.map(normalise_location) != source_location.map(normalise_location) {
            return Err(not_found());
        }
        let size_gb = source
            .body
            .pointer("/properties/diskSizeGB")
            .and_then(Value::as_i64)
            .unwrap_or(32);
        if body
            .pointer("/properties/diskSizeGB")
            .and_then(Value::as_i64)
            .is_some_and(|wanted| wanted < size_gb)
        {
            return Err(SimResponse::error(
                400,
                "BadRequest",
                "Disks or snapshot cannot be resized down.",
            ));
        }
        let unique = source
            .body
            .pointer("/properties/uniqueId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let source_unique = source
            .body
            .pointer("/properties/sourceUniqueId")
            .and_then(Value::as_str)
            .unwrap_or_default();
        Ok(CopySource::new(
            source.id.clone(),
            source_unique.to_owned(),
            size_gb,
            Some(self.snapshot_file(unique)),
        ))
    }

    /// Removes a deleted disk restore point's copy.
    pub(super) fn remove_disk_restore_point_file(&self, stored: &Stored) {
        if let Some(unique) = stored
            .body
            .pointer("/properties/uniqueId")
            .and_then(Value::as_str)
        {
            let _ = std::fs::remove_file(self.snapshot_file(unique));
        }
    }

    /// The refusal of a write or delete on a disk restore point: Compute makes them.
    pub(super) fn refuse_disk_restore_point_write(id: &str, method: &str) -> Refusal {
        SimResponse::error(
            405,
            "MethodNotAllowed",
            format!(
                "{method} is not supported on disk restore point {}: Compute makes them with their restore point; delete the restore point instead",
                name_of(id)
            ),
        )
    }
}

/// The managed disks a VM's body holds: its OS disk (no LUN) and its data disks by LUN.
fn vm_disk_ids(vm: &Value) -> Vec<(Option<i64>, String)> {
    let mut disks = Vec::new();
    if let Some(os) = vm
        .pointer("/properties/storageProfile/osDisk/managedDisk/id")
        .and_then(Value::as_str)
    {
        disks.push((None, os.to_owned()));
    }
    for data in vm
        .pointer("/properties/storageProfile/dataDisks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(disk) = data.pointer("/managedDisk/id").and_then(Value::as_str) {
            disks.push((data.get("lun").and_then(Value::as_i64), disk.to_owned()));
        }
    }
    disks
}

fn excluded_disks(body: &Value) -> Vec<String> {
    body.pointer("/properties/excludeDisks")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.get("id").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}
