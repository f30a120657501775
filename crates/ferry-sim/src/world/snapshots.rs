//! Managed-disk snapshots (`Microsoft.Compute/snapshots`) and disks copied from a snapshot or
//! a disk: DiskRP's checks of `creationData` on a create, a snapshot's server-owned fields, and
//! the data each copy starts with.
//!
//! A snapshot holds a copy of its source disk's backing file as it was when the snapshot's PUT
//! was accepted (`snapshots/{uniqueId}.img`, sparse like the disks'); a disk created from it
//! starts with that copy, so a ZFS pool on the new disk imports with the data of the snapshot's
//! moment. The copy lives as long as the snapshot, whatever happens to its source disk later:
//! snapshots "have a lifetime independent of their parent managed disks" (Azure's announcement
//! of incremental snapshots, 2019), and deleting a disk that has snapshots is allowed.
//!
//! What DiskRP answers, and where each answer comes from:
//! - `creationData` is required on a snapshot (`SnapshotProperties.required`, DiskRP
//!   2025-01-02's snapshot.json), `createOption` in it (`CreationData.required`,
//!   diskRPCommon.json); a missing one is `400 InvalidParameter`, "Required parameter '...' is
//!   missing (null)." with the parameter as target, as DiskRP words it for `sourceUri`
//!   (MicrosoftDocs/azure-docs#38676);
//! - a `createOption` outside `DiskCreateOption` (diskRPCommon.json's enum) is `400
//!   InvalidParameter` with the value and the parameter, Compute's wording for a value it does
//!   not accept;
//! - `Copy` needs `sourceResourceId` ("If createOption is Copy, this is the ARM id of the source
//!   snapshot or disk", diskRPCommon.json): missing, it is the same `InvalidParameter`;
//! - a source DiskRP cannot find is `404 NotFound`, "Resource {name} is not found."
//!   (Azure/azure-cli-extensions#5362 and #4542, MicrosoftDocs/azure-docs#17522); DiskRP looks
//!   for the source in the new resource's region, so a source in another region is the same
//!   `NotFound` (Azure/azure-cli#9233: a disk in chinanorth2 snapshotted into chinanorth);
//! - a copy smaller than its source is `400 BadRequest`, "Disks or snapshot cannot be resized
//!   down." (DiskRP's answer quoted by Azure/azure-libraries-for-java's and
//!   azure-libraries-for-net's skipped tests and by Azure PowerShell users);
//! - a snapshot's `sku.name` is one of `Standard_LRS`, `Premium_LRS`, `Standard_ZRS`
//!   (`SnapshotSku`, snapshot.json); another is `400 InvalidParameter`, "SKU {name} is not
//!   supported for resource type Snapshot in this region. Supported SKUs for this region are
//!   Premium_LRS,Standard_LRS,Standard_ZRS" (Azure/azure-sdk-for-java#29811).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::body::{iso_time_now, keep_previous, properties_mut};
use super::ids::{Kind, kind_of, lower, name_of};
use super::{Refusal, SimResponse, Stored, World};

/// `DiskCreateOption` (diskRPCommon.json, DiskRP 2025-01-02).
const CREATE_OPTIONS: &[&str] = &[
    "Empty",
    "Attach",
    "FromImage",
    "Import",
    "Copy",
    "Restore",
    "Upload",
    "CopyStart",
    "ImportSecure",
    "UploadPreparedSecure",
    "CopyFromSanSnapshot",
];

/// `SnapshotStorageAccountTypes` (snapshot.json, DiskRP 2025-01-02).
const SNAPSHOT_SKUS: &[&str] = &["Standard_LRS", "Premium_LRS", "Standard_ZRS"];

/// What a `Copy` copies: a disk or a snapshot, as stored when the copy was asked.
#[derive(Debug, Clone)]
pub(super) struct CopySource {
    id: String,
    unique_id: String,
    size_gb: i64,
    /// Where the source's bytes are: a disk's backing file or a snapshot's copy.
    data: Option<PathBuf>,
}

impl CopySource {
    pub(super) fn new(id: String, unique_id: String, size_gb: i64, data: Option<PathBuf>) -> Self {
        Self {
            id,
            unique_id,
            size_gb,
            data,
        }
    }
}

/// What a disk copied from `source` starts with: the source's size unless it asks for more,
/// and the source's `uniqueId` in `creationData.sourceUniqueId`.
pub(super) fn copied_disk_fields(body: &mut Value, source: &CopySource) {
    let properties = properties_mut(body);
    properties
        .entry("diskSizeGB")
        .or_insert(json!(source.size_gb));
    if let Some(creation) = properties
        .get_mut("creationData")
        .and_then(Value::as_object_mut)
    {
        creation.insert("sourceUniqueId".to_owned(), json!(source.unique_id));
    }
}

/// A `400 InvalidParameter` naming its parameter as the target, as Compute answers.
fn invalid_parameter(target: &str, message: String) -> Refusal {
    SimResponse::json(
        400,
        &json!({"error": {"code": "InvalidParameter", "message": message, "target": target}}),
    )
}

fn missing_parameter(name: &str) -> Refusal {
    invalid_parameter(
        name,
        format!("Required parameter '{name}' is missing (null)."),
    )
}

fn size_in_gb(body: &Value) -> Option<i64> {
    body.pointer("/properties/diskSizeGB")
        .and_then(Value::as_i64)
}

impl World {
    /// DiskRP's checks of a new disk's or snapshot's `creationData`, and the source a `Copy`
    /// copies. A disk without `creationData` is let through, as the simulator always has (its
    /// seeds and scenarios write disks by size alone); a snapshot needs one.
    pub(super) fn check_creation_data(
        &self,
        kind: Kind,
        body: &Value,
    ) -> Result<Option<CopySource>, Refusal> {
        let Some(creation) = body.pointer("/properties/creationData") else {
            return match kind {
                Kind::Snapshot => Err(missing_parameter("creationData")),
                _ => Ok(None),
            };
        };
        let Some(option) = creation.get("createOption").and_then(Value::as_str) else {
            return Err(missing_parameter("createOption"));
        };
        let Some(option) = CREATE_OPTIONS
            .iter()
            .find(|known| known.eq_ignore_ascii_case(option))
        else {
            return Err(invalid_parameter(
                "createOption",
                format!(
                    "The value '{option}' of parameter 'creationData.createOption' is invalid."
                ),
            ));
        };
        if kind == Kind::Snapshot {
            self.check_snapshot_sku(body)?;
        }
        match (*option, kind) {
            ("Copy", _) => self.copy_source(body, creation).map(Some),
            // A disk from a VM restore point's disk restore point (`restore_points.rs`).
            ("Restore", Kind::Disk) => self.restore_source(body, creation).map(Some),
            // A snapshot of nothing has a size and no data.
            ("Empty", Kind::Snapshot) => Ok(None),
            (other, Kind::Snapshot) => Err(invalid_parameter(
                "createOption",
                format!(
                    "the simulator makes snapshots with createOption Copy (or Empty) only, not {other}: copy a managed disk by its sourceResourceId"
                ),
            )),
            _ => Ok(None),
        }
    }

    fn check_snapshot_sku(&self, body: &Value) -> Result<(), Refusal> {
        let Some(sku) = body.pointer("/sku/name").and_then(Value::as_str) else {
            return Ok(());
        };
        if SNAPSHOT_SKUS
            .iter()
            .any(|known| known.eq_ignore_ascii_case(sku))
        {
            return Ok(());
        }
        Err(invalid_parameter(
            "sku",
            format!(
                "SKU {sku} is not supported for resource type Snapshot in this region. Supported SKUs for this region are Premium_LRS,Standard_LRS,Standard_ZRS"
            ),
        ))
    }

    /// The disk or snapshot a `Copy` names, in the new resource's region, no bigger than the
    /// copy asks.
    fn copy_source(&self, body: &Value, creation: &Value) -> Result<CopySource, Refusal> {
        let Some(source_id) = creation.get("sourceResourceId").and_then(Value::as_str) else {
            return Err(missing_parameter("sourceResourceId"));
        };
        let not_found = || {
            SimResponse::error(
                404,
                "NotFound",
                format!("Resource {} is not found.", name_of(source_id)),
            )
        };
        let source_kind = kind_of(source_id);
        if !matches!(source_kind, Kind::Disk | Kind::Snapshot) {
            return Err(not_found());
        }
        let source = self
            .resources
            .get(&lower(source_id))
            .ok_or_else(not_found)?;
        let location = body.get("location").and_then(Value::as_str);
        let source_location = source.body.get("location").and_then(Value::as_str);
        if location.map(super::regions::normalise_location)
            != source_location.map(super::regions::normalise_location)
        {
            return Err(not_found());
        }
        let size_gb = size_in_gb(&source.body).unwrap_or(32);
        if size_in_gb(body).is_some_and(|wanted| wanted < size_gb) {
            return Err(SimResponse::error(
                400,
                "BadRequest",
                "Disks or snapshot cannot be resized down.",
            ));
        }
        let unique_id = source
            .body
            .pointer("/properties/uniqueId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let data = match source_kind {
            Kind::Disk => self.backing_file(&source.id),
            _ => Some(self.snapshot_file(&unique_id)),
        };
        Ok(CopySource {
            id: source.id.clone(),
            unique_id,
            size_gb,
            data,
        })
    }

    /// A snapshot's server-owned fields; on a create, what it copies is in `source`.
    pub(super) fn fill_snapshot_fields(
        &mut self,
        body: &mut Value,
        previous: &Value,
        source: Option<&CopySource>,
    ) {
        for field in [
            "uniqueId",
            "timeCreated",
            "diskSizeGB",
            "diskSizeBytes",
            "incremental",
            "incrementalSnapshotFamilyId",
        ] {
            keep_previous(body, previous, field);
        }
        if let Some(creation) = previous.pointer("/properties/creationData") {
            properties_mut(body).insert("creationData".to_owned(), creation.clone());
        }
        let unique = self.next_identifier();
        if let Some(sku) = body.get_mut("sku").and_then(Value::as_object_mut)
            && let Some(name) = sku.get("name").and_then(Value::as_str)
        {
            // `tier` is read-only: the official examples answer `Standard_LRS` with `Standard`.
            let tier = if name.starts_with("Premium") {
                "Premium"
            } else {
                "Standard"
            };
            sku.insert("tier".to_owned(), json!(tier));
        }
        let properties = properties_mut(body);
        properties.entry("uniqueId").or_insert(json!(unique));
        properties
            .entry("timeCreated")
            .or_insert(json!(iso_time_now()));
        let incremental = properties
            .get("incremental")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        properties.insert("incremental".to_owned(), json!(incremental));
        if let Some(source) = source {
            // A snapshot is its source's size; a larger `diskSizeGB` asks for a resize.
            let size = properties
                .get("diskSizeGB")
                .and_then(Value::as_i64)
                .unwrap_or(source.size_gb)
                .max(source.size_gb);
            properties.insert("diskSizeGB".to_owned(), json!(size));
            // `sourceUniqueId` names what was copied ("the unique id identifying the source of
            // this resource", diskRPCommon.json); scripts match a disk's snapshots by it.
            if let Some(creation) = properties
                .get_mut("creationData")
                .and_then(Value::as_object_mut)
            {
                creation.insert("sourceUniqueId".to_owned(), json!(source.unique_id));
            }
            // Incremental snapshots of one disk share a family; the simulator names it after
            // the disk.
            if incremental && kind_of(&source.id) == Kind::Disk {
                properties
                    .entry("incrementalSnapshotFamilyId")
                    .or_insert(json!(source.unique_id));
            }
        }
        let size = properties
            .get("diskSizeGB")
            .and_then(Value::as_i64)
            .unwrap_or(32);
        properties.insert("diskSizeGB".to_owned(), json!(size));
        properties
            .entry("diskSizeBytes")
            .or_insert(json!(size.saturating_mul(1 << 30)));
    }

    /// Where a snapshot's copy of its source's bytes lives.
    pub(super) fn snapshot_file(&self, unique_id: &str) -> PathBuf {
        self.settings
            .data_directory
            .join("snapshots")
            .join(format!("{unique_id}.img"))
    }

    /// Copies a new snapshot's or disk's data from its source, before it is stored: the bytes
    /// of the moment the PUT was accepted.
    pub(super) fn copy_data(
        &self,
        kind: Kind,
        body: &Value,
        source: &CopySource,
    ) -> Result<(), Refusal> {
        let Some(unique) = body.pointer("/properties/uniqueId").and_then(Value::as_str) else {
            return Ok(());
        };
        let target = match kind {
            Kind::Snapshot => self.snapshot_file(unique),
            _ => self
                .settings
                .data_directory
                .join("disks")
                .join(format!("{unique}.img")),
        };
        let wanted = match kind {
            Kind::Snapshot => 0,
            _ => self.settings.disk_backing_size.unwrap_or_else(|| {
                u64::try_from(size_in_gb(body).unwrap_or(source.size_gb))
                    .unwrap_or(0)
                    .saturating_mul(1 << 30)
            }),
        };
        copy_sparse(source.data.as_deref(), &target, wanted).map_err(|reason| {
            SimResponse::error(
                500,
                "InternalServerError",
                format!(
                    "the simulator could not copy {} into {}: {reason}",
                    name_of(&source.id),
                    target.display()
                ),
            )
        })
    }

    /// Removes a deleted snapshot's copy.
    pub(super) fn remove_snapshot_file(&self, stored: &Stored) {
        if let Some(unique) = stored
            .body
            .pointer("/properties/uniqueId")
            .and_then(Value::as_str)
        {
            let _ = std::fs::remove_file(self.snapshot_file(unique));
        }
    }
}

/// Copies `source` (absent: a disk never provisioned, so no data) to `target`, keeping holes
/// as holes: a 32 GiB disk with a pool's few megabytes costs those megabytes, not 32 GiB of
/// reads and writes inside the world's lock. `target` is at least `length` long.
pub(super) fn copy_sparse(source: Option<&Path>, target: &Path, length: u64) -> Result<(), String> {
    let mut output = File::create(target).map_err(|error| error.to_string())?;
    let mut end = 0;
    if let Some(source) = source.filter(|path| path.exists()) {
        let mut input = File::open(source).map_err(|error| error.to_string())?;
        end = input.metadata().map_err(|error| error.to_string())?.len();
        let mut offset = 0;
        let mut buffer = vec![0; 1 << 20];
        while offset < end {
            // The next extent of data, then where it ends; no data left is ENXIO.
            let Ok(start) = rustix::fs::seek(&input, rustix::fs::SeekFrom::Data(offset)) else {
                break;
            };
            let stop = rustix::fs::seek(&input, rustix::fs::SeekFrom::Hole(start))
                .map_err(|error| error.to_string())?;
            input
                .seek(SeekFrom::Start(start))
                .map_err(|error| error.to_string())?;
            output
                .seek(SeekFrom::Start(start))
                .map_err(|error| error.to_string())?;
            let mut remaining = stop - start;
            while remaining > 0 {
                let chunk = usize::try_from(remaining.min(buffer.len() as u64)).unwrap_or(0);
                input
                    .read_exact(&mut buffer[..chunk])
                    .map_err(|error| error.to_string())?;
                output
                    .write_all(&buffer[..chunk])
                    .map_err(|error| error.to_string())?;
                remaining -= chunk as u64;
            }
            offset = stop;
        }
    }
    output
        .set_len(end.max(length))
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparse_copy_keeps_the_data_and_the_length() {
        let folder = std::env::temp_dir().join(format!("ferry-sim-sparse-{}", std::process::id()));
        std::fs::create_dir_all(&folder).unwrap();
        let source = folder.join("source.img");
        let mut file = File::create(&source).unwrap();
        file.set_len(64 << 20).unwrap();
        file.seek(SeekFrom::Start(5 << 20)).unwrap();
        file.write_all(b"pool label").unwrap();
        file.seek(SeekFrom::Start((64 << 20) - 4)).unwrap();
        file.write_all(b"tail").unwrap();
        drop(file);
        let target = folder.join("target.img");
        copy_sparse(Some(&source), &target, 0).unwrap();
        assert_eq!(
            std::fs::read(&source).unwrap(),
            std::fs::read(&target).unwrap()
        );
        let bigger = folder.join("bigger.img");
        copy_sparse(Some(&source), &bigger, 128 << 20).unwrap();
        assert_eq!(std::fs::metadata(&bigger).unwrap().len(), 128 << 20);
        let nothing = folder.join("nothing.img");
        copy_sparse(None, &nothing, 1 << 20).unwrap();
        assert_eq!(std::fs::metadata(&nothing).unwrap().len(), 1 << 20);
        std::fs::remove_dir_all(&folder).unwrap();
    }
}
