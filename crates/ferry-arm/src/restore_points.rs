//! VM restore points (`Microsoft.Compute/restorePointCollections/{c}/restorePoints/{rp}`) and
//! disks restored from their disk restore points: the requests a failover drill makes so that
//! the copies of a VM's data disks are of one moment (issue 17).
//!
//! A restore point holds every disk of its VM that it does not exclude as it was at one moment
//! (`CrashConsistent`: write-order consistent across the disks, as after a power cut), each as a
//! disk restore point; a disk made with `createOption: Restore` from one holds that disk's data.
//! A ZFS pool spread over several disks copied this way imports as one moment's pool, which
//! separate snapshots taken one after the other do not promise.
//!
//! The collection's PUT is synchronous (200 or 201), the restore point's long-running (201),
//! the collection's DELETE long-running and takes the restore points with it (ComputeRP
//! 2024-11-01's restorePoint.json); disk restore points are DiskRP's, read only
//! (diskRestorePoint.json, 2025-01-02). Every write goes through [`StepOperations`], which sends
//! it again while ARM answers busy and records the operation it waits for. Reading the VM and
//! its disks to take the restore point is the only thing done to them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::client::ArmClient;
use crate::deployment::StepOperations;
use crate::error::ArmError;
use crate::id::ResourceId;
use crate::provider_calls::api_version;

const VIRTUAL_MACHINES: &str = "Microsoft.Compute/virtualMachines";
const COLLECTIONS: &str = "Microsoft.Compute/restorePointCollections";
const RESTORE_POINTS: &str = "Microsoft.Compute/restorePointCollections/restorePoints";
const DISK_RESTORE_POINTS: &str =
    "Microsoft.Compute/restorePointCollections/restorePoints/diskRestorePoints";
const DISKS: &str = "Microsoft.Compute/disks";

/// A restore point collection for one VM: in the VM's region (a collection in another region
/// holds copies of restore points, which a drill does not make).
#[derive(Debug, Clone, PartialEq)]
pub struct RestorePointCollectionOfVm {
    /// The VM whose disks are copied; it is only read.
    pub vm: ResourceId,
    pub location: String,
    pub tags: BTreeMap<String, String>,
}

impl RestorePointCollectionOfVm {
    /// The PUT body.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "location": self.location,
            "properties": {"source": {"id": self.vm.as_str()}},
        });
        if !self.tags.is_empty() {
            body["tags"] = json!(self.tags);
        }
        body
    }
}

/// A crash-consistent restore point of a collection's VM, leaving out `exclude_disks` (the OS
/// disk, which a drill does not copy).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CrashConsistentRestorePoint {
    pub exclude_disks: Vec<ResourceId>,
}

impl CrashConsistentRestorePoint {
    /// The PUT body.
    pub fn body(&self) -> Value {
        let mut properties = json!({"consistencyMode": "CrashConsistent"});
        if !self.exclude_disks.is_empty() {
            properties["excludeDisks"] = Value::Array(
                self.exclude_disks
                    .iter()
                    .map(|disk| json!({"id": disk.as_str()}))
                    .collect(),
            );
        }
        json!({"properties": properties})
    }
}

/// A new managed disk holding one disk restore point's data.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskFromRestorePoint {
    pub disk_restore_point: ResourceId,
    /// The restore point's region: DiskRP finds the source only in the disk's own region.
    pub location: String,
    /// The availability zone (`"1"`), or `None` for a regional disk.
    pub zone: Option<String>,
    /// The disk's SKU (`Premium_LRS`); `None` leaves ARM's default.
    pub sku: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl DiskFromRestorePoint {
    /// The PUT body. Its size is the source disk's, which ARM fills in.
    pub fn body(&self) -> Value {
        let mut body = json!({
            "location": self.location,
            "properties": {"creationData": {
                "createOption": "Restore",
                "sourceResourceId": self.disk_restore_point.as_str(),
            }},
        });
        if let Some(sku) = &self.sku {
            body["sku"] = json!({"name": sku});
        }
        if let Some(zone) = &self.zone {
            body["zones"] = json!([zone]);
        }
        if !self.tags.is_empty() {
            body["tags"] = json!(self.tags);
        }
        body
    }
}

/// One disk restore point of a restore point: which disk it copied, and where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskRestorePointOf {
    pub id: ResourceId,
    /// The disk copied (`properties.sourceResourceId`).
    pub source_disk: String,
}

/// Why a request was not sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestorePointRequestError {
    #[error(
        "{id} is not a {wanted} (its type is {resource_type}): check the id ferry was given for it"
    )]
    WrongType {
        id: String,
        wanted: &'static str,
        resource_type: String,
    },
}

fn require_type(
    id: &ResourceId,
    resource_type: &str,
    wanted: &'static str,
) -> Result<(), RestorePointRequestError> {
    let actual = id.resource_type();
    if actual.eq_ignore_ascii_case(resource_type) {
        return Ok(());
    }
    Err(RestorePointRequestError::WrongType {
        id: id.as_str().to_owned(),
        wanted,
        resource_type: actual,
    })
}

/// A restore point call's failure: refused before sending, or ARM's answer.
#[derive(Debug, thiserror::Error)]
pub enum RestorePointCallError {
    #[error(transparent)]
    Request(#[from] RestorePointRequestError),
    #[error(transparent)]
    Arm(#[from] ArmError),
}

impl RestorePointCallError {
    /// The step error under `message`: ARM's failures judged by [`ArmError::step_error`], a
    /// request refused before sending permanent.
    pub fn step_error(&self, message: String) -> ferry_core::StepError {
        match self {
            RestorePointCallError::Arm(error) => error.step_error(message),
            RestorePointCallError::Request(_) => ferry_core::StepError::permanent(message),
        }
    }
}

impl ArmClient {
    /// The disk restore points of `restore_point`, following `nextLink`: one per disk it took.
    pub async fn disk_restore_points(
        &self,
        restore_point: &ResourceId,
    ) -> Result<Vec<DiskRestorePointOf>, RestorePointCallError> {
        require_type(restore_point, RESTORE_POINTS, "restore point")?;
        let items: Vec<Value> = self
            .list(
                &format!("{restore_point}/diskRestorePoints"),
                api_version::DISKS,
            )
            .await?;
        let mut found = Vec::new();
        for item in items {
            let (Some(id), Some(source)) = (
                item.get("id").and_then(Value::as_str),
                item.pointer("/properties/sourceResourceId")
                    .and_then(Value::as_str),
            ) else {
                continue;
            };
            let Ok(id) = ResourceId::parse(id) else {
                continue;
            };
            found.push(DiskRestorePointOf {
                id,
                source_disk: source.to_owned(),
            });
        }
        Ok(found)
    }
}

impl StepOperations<'_> {
    /// Creates (or, for its tags only, updates) the restore point collection `id` of a VM;
    /// returns it as ARM has it.
    pub async fn create_restore_point_collection(
        &self,
        id: &ResourceId,
        request: &RestorePointCollectionOfVm,
    ) -> Result<Value, RestorePointCallError> {
        require_type(id, COLLECTIONS, "restore point collection")?;
        require_type(&request.vm, VIRTUAL_MACHINES, "virtual machine")?;
        Ok(self.put(id, &request.body()).await?)
    }

    /// Takes the restore point `id` in its collection and waits until it is provisioned. ARM
    /// refuses a second PUT of a restore point (`409 OperationNotAllowed`): a caller that may
    /// have taken it already reads it first.
    pub async fn create_restore_point(
        &self,
        id: &ResourceId,
        request: &CrashConsistentRestorePoint,
    ) -> Result<Value, RestorePointCallError> {
        require_type(id, RESTORE_POINTS, "restore point")?;
        Ok(self.put(id, &request.body()).await?)
    }

    /// Creates the disk `id` from a disk restore point and waits until it is provisioned.
    pub async fn create_disk_from_restore_point(
        &self,
        id: &ResourceId,
        request: &DiskFromRestorePoint,
    ) -> Result<Value, RestorePointCallError> {
        require_type(id, DISKS, "managed disk")?;
        require_type(
            &request.disk_restore_point,
            DISK_RESTORE_POINTS,
            "disk restore point",
        )?;
        Ok(self.put(id, &request.body()).await?)
    }

    /// Deletes the restore point collection `id`, with its restore points, and waits until it
    /// is gone; one already gone is success. Anything but a collection is refused before a
    /// request is sent.
    pub async fn delete_restore_point_collection(
        &self,
        id: &ResourceId,
    ) -> Result<(), RestorePointCallError> {
        require_type(id, COLLECTIONS, "restore point collection")?;
        Ok(self.delete(id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(text: &str) -> ResourceId {
        ResourceId::parse(text).unwrap()
    }

    #[test]
    fn a_restore_point_is_crash_consistent_and_leaves_out_what_it_is_told() {
        let os = id("/subscriptions/s/resourceGroups/prod/providers/Microsoft.Compute/disks/os");
        let request = CrashConsistentRestorePoint {
            exclude_disks: vec![os],
        };
        assert_eq!(
            request.body(),
            json!({"properties": {
                "consistencyMode": "CrashConsistent",
                "excludeDisks": [{"id": "/subscriptions/s/resourceGroups/prod/providers/Microsoft.Compute/disks/os"}],
            }})
        );
    }

    #[test]
    fn only_the_right_types_are_sent() {
        let disk = id("/subscriptions/s/resourceGroups/prod/providers/Microsoft.Compute/disks/d0");
        assert_eq!(
            require_type(&disk, COLLECTIONS, "restore point collection")
                .unwrap_err()
                .to_string(),
            "/subscriptions/s/resourceGroups/prod/providers/Microsoft.Compute/disks/d0 is not a restore point collection (its type is Microsoft.Compute/disks): check the id ferry was given for it"
        );
        let point = id(
            "/subscriptions/s/resourceGroups/d/providers/Microsoft.Compute/restorePointCollections/c/restorePoints/rp/diskRestorePoints/d0_1",
        );
        assert!(require_type(&point, DISK_RESTORE_POINTS, "disk restore point").is_ok());
    }
}
