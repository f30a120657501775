//! A failover drill's copies of one VM's disks at one moment (issue 17): one crash-consistent
//! restore point of production's VM per drill, and each drill disk `Restore`d from the disk
//! restore point of its source.
//!
//! Why: a ZFS pool spread over several disks, copied by one snapshot per disk, is copied at as
//! many moments as it has disks, and a pool written to between them comes back inconsistent.
//! A restore point takes every included disk of its VM at one moment (write-order consistent
//! across them, as after a power cut), which a pool imports as it would after a crash. A disk
//! attached to no VM is consistent with itself, and keeps the snapshot path
//! ([`crate::copies`]).
//!
//! Production's VM is only read (a GET, and named as the collection's source); its disks are
//! only named by the restore point that copies them. The collection is made in the drill
//! disk's resource group with the drill's tag, so the drill's clean-up and its sweep by tag
//! find it. Its name and the restore point's are derived from the drill id and the VM's name:
//! a step run again (after a kill) finds the restore point by name instead of taking another,
//! which would be of another moment.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use ferry_arm::{
    CrashConsistentRestorePoint, DiskFromRestorePoint, ResourceId, RestorePointCallError,
    RestorePointCollectionOfVm, StepOperations,
};
use ferry_core::InstanceAddress;
use serde_json::Value;

use crate::provider::DiskError;

/// The restore points a disk provider is taking, one lock per collection: the disk steps of
/// one VM run at once, and the first takes the restore point while the others wait for it and
/// reuse it (single-flight). The lock is only held for the read-then-create of the restore
/// point, never across the disks' own creates. The key is the collection's id, in the drill
/// disk's group: a drill whose copies of one VM's disks went to two groups would take two
/// restore points (two moments); a drill's spec puts a pool's disks in one group.
#[derive(Debug, Default)]
pub(crate) struct RestorePoints {
    in_flight: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// What a drill disk's copy through a restore point needs to know.
pub(crate) struct OneMomentCopy<'a> {
    pub disk: &'a InstanceAddress,
    /// The drill disk to make.
    pub id: &'a ResourceId,
    /// Production's disk: only read.
    pub source: &'a ResourceId,
    /// Production's VM the source is attached to (its reading's `managedBy`): only read.
    pub vm: &'a ResourceId,
    pub location: String,
    pub sku: Option<String>,
    /// The drill's id, the value of its tag.
    pub drill: &'a str,
    /// Every tag the copy and the collection carry, the drill's included.
    pub tags: BTreeMap<String, String>,
}

/// The collection's name: the VM's, for the drill (`rpc-d1-nfs-g1`).
pub fn collection_name(drill: &str, vm: &str) -> String {
    format!("rpc-{drill}-{vm}")
}

/// The restore point's name in its collection (`rp-d1`).
pub fn restore_point_name(drill: &str) -> String {
    format!("rp-{drill}")
}

fn step_error(disk: &InstanceAddress, message: String) -> DiskError {
    DiskError::Step {
        disk: disk.clone(),
        message,
    }
}

fn call_error(disk: &InstanceAddress, error: RestorePointCallError) -> DiskError {
    match error {
        RestorePointCallError::Arm(error) => error.into(),
        RestorePointCallError::Request(error) => step_error(disk, error.to_string()),
    }
}

impl RestorePoints {
    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        in_flight.entry(key.to_owned()).or_default().clone()
    }

    /// Makes the drill disk `copy.id` from the restore point of `copy.vm` taken for this
    /// drill, taking it first if no step has. Returns the new disk's body.
    pub(crate) async fn copy(
        &self,
        operations: &StepOperations<'_>,
        copy: &OneMomentCopy<'_>,
    ) -> Result<Value, DiskError> {
        let restore_point = self.restore_point_of(operations, copy).await?;
        let points = operations
            .client()
            .disk_restore_points(&restore_point)
            .await
            .map_err(|error| call_error(copy.disk, error))?;
        let Some(point) = points
            .iter()
            .find(|point| point.source_disk.eq_ignore_ascii_case(copy.source.as_str()))
        else {
            return Err(step_error(
                copy.disk,
                format!(
                    "the restore point {restore_point} of {} holds no copy of {} (the disk was attached after it was taken, or is the VM's OS disk): clean the drill up (ferry drill SPEC --clean --id {}) and drill again",
                    copy.vm.name(),
                    copy.source,
                    copy.drill
                ),
            ));
        };
        operations.progress(format!("restoring {} into {}", point.id, copy.id));
        let request = DiskFromRestorePoint {
            disk_restore_point: point.id.clone(),
            location: copy.location.clone(),
            zone: None,
            sku: copy.sku.clone(),
            tags: copy.tags.clone(),
        };
        operations
            .create_disk_from_restore_point(copy.id, &request)
            .await
            .map_err(|error| call_error(copy.disk, error))
    }

    /// The restore point of `copy.vm` for this drill, taken once: under the collection's lock,
    /// read by name (taken by another step, or by this step before a kill), else taken.
    async fn restore_point_of(
        &self,
        operations: &StepOperations<'_>,
        copy: &OneMomentCopy<'_>,
    ) -> Result<ResourceId, DiskError> {
        let client = operations.client();
        let collection = ResourceId::provider_resource(
            copy.id.subscription_id(),
            copy.id.resource_group_name().unwrap_or_default(),
            "Microsoft.Compute",
            "restorePointCollections",
            &collection_name(copy.drill, copy.vm.name()),
        );
        let restore_point = ResourceId::parse(&format!(
            "{collection}/restorePoints/{}",
            restore_point_name(copy.drill)
        ))
        .map_err(|error| step_error(copy.disk, format!("{collection}: {error}")))?;
        let lock = self.lock_for(&collection.as_str().to_ascii_lowercase());
        let _taking = lock.lock().await;

        if let Some(existing) = client.read::<Value>(&restore_point).await? {
            let state = existing
                .value
                .pointer("/properties/provisioningState")
                .and_then(Value::as_str)
                .unwrap_or("Succeeded");
            return match state {
                "Succeeded" => Ok(restore_point),
                "Failed" | "Canceled" => Err(step_error(
                    copy.disk,
                    format!(
                        "the restore point {restore_point} of {} is {state}: clean the drill up (ferry drill SPEC --clean --id {}), which deletes it, and drill again",
                        copy.vm.name(),
                        copy.drill
                    ),
                )),
                // Taken before a kill and still being made: ARM finishes it on its own.
                _ => Err(DiskError::Pending {
                    disk: copy.disk.clone(),
                    message: format!(
                        "the restore point {restore_point} is still being taken ({state}): the step is tried again"
                    ),
                }),
            };
        }
        // A collection of the drill's name that is not the drill's is never written to.
        if let Some(existing) = client.read::<Value>(&collection).await? {
            let tag = existing
                .value
                .pointer(&format!("/tags/{}", ferry_core::fields::DRILL_TAG))
                .and_then(Value::as_str);
            if tag != Some(copy.drill) {
                return Err(step_error(
                    copy.disk,
                    format!(
                        "{collection} exists without the drill's tag {}={}: ferry never writes to what is not the drill's; delete it or drill under another id",
                        ferry_core::fields::DRILL_TAG,
                        copy.drill
                    ),
                ));
            }
        }
        let vm = client.read::<Value>(copy.vm).await?.ok_or_else(|| {
            step_error(
                copy.disk,
                format!(
                    "{}: production's disk {} names it as its VM, but ARM does not show it: read production again, then drill",
                    copy.vm,
                    copy.source.name()
                ),
            )
        })?;
        let location = vm
            .value
            .get("location")
            .and_then(Value::as_str)
            .unwrap_or(&copy.location)
            .to_owned();
        // The OS disk is not a drill's to copy: the drill's VM boots its own.
        let exclude_disks = vm
            .value
            .pointer("/properties/storageProfile/osDisk/managedDisk/id")
            .and_then(Value::as_str)
            .and_then(|id| ResourceId::parse(id).ok())
            .into_iter()
            .collect();
        operations.progress(format!(
            "taking one restore point of {} into {collection}",
            copy.vm.name()
        ));
        operations
            .create_restore_point_collection(
                &collection,
                &RestorePointCollectionOfVm {
                    vm: copy.vm.clone(),
                    location,
                    tags: copy.tags.clone(),
                },
            )
            .await
            .map_err(|error| call_error(copy.disk, error))?;
        operations
            .create_restore_point(
                &restore_point,
                &CrashConsistentRestorePoint { exclude_disks },
            )
            .await
            .map_err(|error| call_error(copy.disk, error))?;
        Ok(restore_point)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_come_from_the_drill_and_the_vm() {
        assert_eq!(collection_name("d1", "nfs-g1"), "rpc-d1-nfs-g1");
        assert_eq!(restore_point_name("d1"), "rp-d1");
    }
}
