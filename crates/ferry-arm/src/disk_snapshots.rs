//! Managed-disk snapshots (`Microsoft.Compute/snapshots`) and disks copied from them: the
//! requests a failover drill makes to rehearse on copies of production's disks (issue 17).
//!
//! A snapshot is a `Copy` of a disk, incremental unless asked otherwise (only the blocks changed
//! since the disk's previous snapshot are stored and billed); a disk is a `Copy` of a snapshot,
//! holding the snapshot's data. Both are long-running PUTs like a disk's, and are started and
//! waited for the same way: [`crate::StepOperations`] sends them again while ARM answers busy,
//! and records each operation it waits for, so that an interrupted caller can resume it.
//! Reading a disk to snapshot it is the only thing done to the disk itself.

use std::collections::BTreeMap;

use crate::client::ArmClient;
use crate::deployment::StepOperations;
use crate::error::ArmError;
use crate::id::ResourceId;
use crate::models::{CreationData, Disk, DiskProperties, Sku, Snapshot, SnapshotProperties};
use crate::provider_calls::api_version;

/// Where a snapshot is stored. Incremental snapshots are stored on standard storage only, so
/// these are the two a drill chooses between: locally or zone-redundant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SnapshotSku {
    #[default]
    StandardLrs,
    StandardZrs,
}

impl SnapshotSku {
    /// ARM's name (`SnapshotStorageAccountTypes`, snapshot.json).
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotSku::StandardLrs => "Standard_LRS",
            SnapshotSku::StandardZrs => "Standard_ZRS",
        }
    }
}

/// A snapshot of one managed disk.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotOfDisk {
    /// The disk copied; it is only read.
    pub source_disk: ResourceId,
    /// The disk's region: DiskRP finds the source only in the snapshot's own region.
    pub location: String,
    pub sku: SnapshotSku,
    /// `true` unless a full copy is wanted.
    pub incremental: bool,
    pub tags: BTreeMap<String, String>,
}

impl SnapshotOfDisk {
    /// An incremental, locally redundant snapshot of `source_disk`, without tags.
    pub fn new(source_disk: ResourceId, location: impl Into<String>) -> Self {
        SnapshotOfDisk {
            source_disk,
            location: location.into(),
            sku: SnapshotSku::default(),
            incremental: true,
            tags: BTreeMap::new(),
        }
    }

    /// The PUT body.
    pub fn body(&self) -> Snapshot {
        Snapshot {
            location: Some(self.location.clone()),
            tags: (!self.tags.is_empty()).then(|| self.tags.clone()),
            sku: Some(Sku {
                name: Some(self.sku.as_str().to_owned()),
                ..Sku::default()
            }),
            properties: Some(SnapshotProperties {
                creation_data: Some(copy_of(&self.source_disk)),
                incremental: Some(self.incremental),
                ..SnapshotProperties::default()
            }),
            ..Snapshot::default()
        }
    }
}

/// A new managed disk holding a snapshot's data.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskFromSnapshot {
    pub snapshot: ResourceId,
    /// The snapshot's region.
    pub location: String,
    /// The availability zone (`"1"`), or `None` for a regional disk.
    pub zone: Option<String>,
    /// The disk's SKU (`Premium_LRS`); `None` leaves ARM's default.
    pub sku: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl DiskFromSnapshot {
    /// The PUT body. Its size is the snapshot's, which ARM fills in.
    pub fn body(&self) -> Disk {
        Disk {
            location: Some(self.location.clone()),
            tags: (!self.tags.is_empty()).then(|| self.tags.clone()),
            sku: self.sku.as_ref().map(|name| Sku {
                name: Some(name.clone()),
                ..Sku::default()
            }),
            zones: self.zone.as_ref().map(|zone| vec![zone.clone()]),
            properties: Some(DiskProperties {
                creation_data: Some(copy_of(&self.snapshot)),
                ..DiskProperties::default()
            }),
            ..Disk::default()
        }
    }
}

fn copy_of(source: &ResourceId) -> CreationData {
    CreationData {
        create_option: Some("Copy".to_owned()),
        source_resource_id: Some(source.as_str().to_owned()),
        ..CreationData::default()
    }
}

/// Why a request was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotRequestError {
    #[error(
        "{id} is not a snapshot (its type is {resource_type}): ferry deletes only snapshots here"
    )]
    NotASnapshot { id: String, resource_type: String },
    #[error(
        "{id} is not a managed disk (its type is {resource_type}): a snapshot is taken of a disk"
    )]
    NotADisk { id: String, resource_type: String },
}

fn require_type(id: &ResourceId, wanted: &str) -> Result<(), SnapshotRequestError> {
    let resource_type = id.resource_type();
    if resource_type.eq_ignore_ascii_case(wanted) {
        return Ok(());
    }
    let id_text = id.as_str().to_owned();
    Err(if wanted.ends_with("snapshots") {
        SnapshotRequestError::NotASnapshot {
            id: id_text,
            resource_type,
        }
    } else {
        SnapshotRequestError::NotADisk {
            id: id_text,
            resource_type,
        }
    })
}

const SNAPSHOTS: &str = "Microsoft.Compute/snapshots";
const DISKS: &str = "Microsoft.Compute/disks";

/// `ResourceGroupNotFound`: a group that does not exist holds nothing.
fn group_absent(error: &ArmError) -> bool {
    error.code() == Some("ResourceGroupNotFound")
}

impl ArmClient {
    /// Every snapshot in `group` (a resource group id), following `nextLink`. A group that
    /// does not exist holds none; any other failure is an error, never an empty list.
    pub async fn snapshots_in(&self, group: &ResourceId) -> Result<Vec<Snapshot>, ArmError> {
        match self
            .list(
                &format!("{group}/providers/{SNAPSHOTS}"),
                api_version::SNAPSHOTS,
            )
            .await
        {
            Err(error) if group_absent(&error) => Ok(Vec::new()),
            other => other,
        }
    }

    /// The snapshots in `group` tagged `key` = `value` (the list has no tag filter on ARM's
    /// side: every snapshot of the group is read, and the tag compared exactly).
    pub async fn snapshots_tagged(
        &self,
        group: &ResourceId,
        key: &str,
        value: &str,
    ) -> Result<Vec<Snapshot>, ArmError> {
        let mut snapshots = self.snapshots_in(group).await?;
        snapshots.retain(|snapshot| snapshot.has_tag(key, value));
        Ok(snapshots)
    }

    /// Every managed disk in `group`, with the same meaning of absence.
    pub async fn disks_in(&self, group: &ResourceId) -> Result<Vec<Disk>, ArmError> {
        match self
            .list(&format!("{group}/providers/{DISKS}"), api_version::DISKS)
            .await
        {
            Err(error) if group_absent(&error) => Ok(Vec::new()),
            other => other,
        }
    }
}

impl StepOperations<'_> {
    /// Creates the snapshot `id` of a disk and waits until it is provisioned; returns it as ARM
    /// has it then. A PUT of a snapshot that exists is an update that copies nothing again.
    pub async fn create_snapshot(
        &self,
        id: &ResourceId,
        request: &SnapshotOfDisk,
    ) -> Result<Snapshot, SnapshotCallError> {
        require_type(id, SNAPSHOTS)?;
        require_type(&request.source_disk, DISKS)?;
        Ok(self.put(id, &request.body()).await?)
    }

    /// Creates the disk `id` from a snapshot and waits until it is provisioned.
    pub async fn create_disk_from_snapshot(
        &self,
        id: &ResourceId,
        request: &DiskFromSnapshot,
    ) -> Result<Disk, SnapshotCallError> {
        require_type(id, DISKS)?;
        require_type(&request.snapshot, SNAPSHOTS)?;
        Ok(self.put(id, &request.body()).await?)
    }

    /// Deletes the snapshot `id` and waits until it is gone; one already gone is success.
    /// Anything but a snapshot is refused before a request is sent.
    pub async fn delete_snapshot(&self, id: &ResourceId) -> Result<(), SnapshotCallError> {
        require_type(id, SNAPSHOTS)?;
        Ok(self.delete(id).await?)
    }
}

/// A snapshot call's failure: refused before sending, or ARM's answer.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotCallError {
    #[error(transparent)]
    Request(#[from] SnapshotRequestError),
    #[error(transparent)]
    Arm(#[from] ArmError),
}

impl SnapshotCallError {
    /// The step error under `message`: ARM's failures judged by [`ArmError::step_error`], a
    /// request refused before sending permanent.
    pub fn step_error(&self, message: String) -> ferry_core::StepError {
        match self {
            SnapshotCallError::Arm(error) => error.step_error(message),
            SnapshotCallError::Request(_) => ferry_core::StepError::permanent(message),
        }
    }

    /// ARM's error, when ARM answered.
    pub fn arm(&self) -> Option<&ArmError> {
        match self {
            SnapshotCallError::Arm(error) => Some(error),
            SnapshotCallError::Request(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(text: &str) -> ResourceId {
        ResourceId::parse(text).unwrap()
    }

    #[test]
    fn a_snapshot_request_is_an_incremental_copy_of_the_disk() {
        let disk =
            id("/subscriptions/s/resourceGroups/prod/providers/Microsoft.Compute/disks/data0");
        let mut request = SnapshotOfDisk::new(disk, "westeurope");
        request.tags.insert("ferry-drill".into(), "d1".into());
        assert_eq!(
            serde_json::to_value(request.body()).unwrap(),
            json!({
                "location": "westeurope",
                "tags": {"ferry-drill": "d1"},
                "sku": {"name": "Standard_LRS"},
                "properties": {
                    "creationData": {
                        "createOption": "Copy",
                        "sourceResourceId": "/subscriptions/s/resourceGroups/prod/providers/Microsoft.Compute/disks/data0"
                    },
                    "incremental": true
                }
            })
        );
        request.sku = SnapshotSku::StandardZrs;
        request.incremental = false;
        let body = serde_json::to_value(request.body()).unwrap();
        assert_eq!(body["sku"], json!({"name": "Standard_ZRS"}));
        assert_eq!(body["properties"]["incremental"], false);
    }

    #[test]
    fn a_disk_request_copies_the_snapshot_into_its_zone() {
        let snapshot =
            id("/subscriptions/s/resourceGroups/drill/providers/Microsoft.Compute/snapshots/s0");
        let request = DiskFromSnapshot {
            snapshot,
            location: "westeurope".into(),
            zone: Some("2".into()),
            sku: Some("Premium_LRS".into()),
            tags: BTreeMap::new(),
        };
        assert_eq!(
            serde_json::to_value(request.body()).unwrap(),
            json!({
                "location": "westeurope",
                "sku": {"name": "Premium_LRS"},
                "zones": ["2"],
                "properties": {"creationData": {
                    "createOption": "Copy",
                    "sourceResourceId": "/subscriptions/s/resourceGroups/drill/providers/Microsoft.Compute/snapshots/s0"
                }}
            })
        );
    }

    #[test]
    fn only_a_snapshot_is_deleted_and_only_a_disk_snapshotted() {
        let disk =
            id("/subscriptions/s/resourceGroups/prod/providers/Microsoft.Compute/disks/data0");
        assert_eq!(
            require_type(&disk, SNAPSHOTS).unwrap_err().to_string(),
            "/subscriptions/s/resourceGroups/prod/providers/Microsoft.Compute/disks/data0 is not a snapshot (its type is Microsoft.Compute/disks): ferry deletes only snapshots here"
        );
        let vm = id(
            "/subscriptions/s/resourceGroups/prod/providers/Microsoft.Compute/virtualMachines/vm",
        );
        assert!(
            require_type(&vm, DISKS)
                .unwrap_err()
                .to_string()
                .contains("is not a managed disk")
        );
        assert!(require_type(&disk, DISKS).is_ok());
    }
}
