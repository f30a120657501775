//! A failover drill's copies of production's disks (issue 17): each disk snapshotted, and a new
//! disk made from each snapshot in the drill's resource group; and their removal, proven by
//! lists that come back empty.
//!
//! Production's disks are only ever read (a GET) and named as a snapshot's source: no request
//! writes to them. Everything a drill makes carries its tag, and nothing without the tag is
//! written or deleted: a target name taken by a disk or snapshot without it is refused, naming
//! it. Running either function again after a crash finishes the work: what exists with the tag
//! is taken as done, and deleting what is gone is success.

// CopyError keeps ARM's whole error, as ferry-arm's own functions do; it comes after a round
// trip, so its size costs nothing measurable.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;

use ferry_arm::models::{Disk, Snapshot};
use ferry_arm::{
    ArmError, DiskFromSnapshot, ResourceId, SnapshotCallError, SnapshotOfDisk, SnapshotSku,
    StepOperations,
};
use ferry_core::naming::{MANAGED_DISK, NameRule};
use futures_util::StreamExt;

/// Azure's rule for a snapshot's name is a managed disk's.
const SNAPSHOT: NameRule = NameRule {
    what: "a snapshot name",
    ..MANAGED_DISK
};

/// The tag that marks what one drill made (`ferry-drill` = `2025-06-01-a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillTag {
    pub key: String,
    pub value: String,
}

/// One disk to copy, and the names of its snapshot and of the new disk.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskCopyRequest {
    /// The production disk: only read.
    pub source: ResourceId,
    pub snapshot_name: String,
    pub copy_name: String,
}

/// Where and how the copies are made.
#[derive(Debug, Clone, PartialEq)]
pub struct CopyConfig {
    /// The resource group id the snapshots go to (the drill's, so that nothing is created
    /// beside production's disks).
    pub snapshot_group: ResourceId,
    /// The resource group id the new disks go to.
    pub target_group: ResourceId,
    /// The new disks' availability zone; `None` for regional disks.
    pub zone: Option<String>,
    pub snapshot_sku: SnapshotSku,
    /// Put on every snapshot and disk made; removal finds them by it.
    pub tag: DrillTag,
    /// Further tags for both.
    pub tags: BTreeMap<String, String>,
    /// How many disks are copied at once (at least 1).
    pub parallelism: usize,
}

/// One disk copied.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskCopy {
    pub source: ResourceId,
    pub snapshot: ResourceId,
    pub copy: ResourceId,
    /// When the snapshot was taken, as ARM reports it: the moment the copy's data is from.
    pub snapshot_time: Option<String>,
}

/// Why a copy or a removal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("`{name}` cannot be used: {reason}; choose another name")]
    InvalidName { name: String, reason: String },
    #[error(
        "the drill tag needs a key and a value: set both, so that its copies can be found and removed"
    )]
    EmptyTag,
    #[error(
        "{source_disk}: no such managed disk (it may have moved to another group): read its id again, then copy it"
    )]
    SourceMissing { source_disk: String },
    #[error(
        "{id} exists without the drill's tag {key}={value}: ferry never writes to or deletes a disk or snapshot that is not the drill's; choose another name"
    )]
    NotTheDrills {
        id: String,
        key: String,
        value: String,
    },
    #[error(
        "{id} is one of the disks copied: a copy never replaces its source; choose another name"
    )]
    TargetIsASource { id: String },
    #[error("{what}: {error}")]
    Call {
        what: String,
        error: SnapshotCallError,
    },
    #[error(
        "after the removal, ARM still lists what carries {key}={value}: {}; run the removal again",
        .ids.join(", ")
    )]
    Remains {
        key: String,
        value: String,
        ids: Vec<String>,
    },
    #[error("{} disks were not copied:\n{}", .failures.len(), render_failures(.failures))]
    Failed {
        /// What was copied anyway.
        copied: Vec<DiskCopy>,
        failures: Vec<CopyError>,
    },
}

fn render_failures(failures: &[CopyError]) -> String {
    failures
        .iter()
        .map(|failure| format!("  - {failure}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn call(what: impl Into<String>) -> impl FnOnce(SnapshotCallError) -> CopyError {
    let what = what.into();
    move |error| CopyError::Call { what, error }
}

fn arm_call(what: impl Into<String>) -> impl FnOnce(ArmError) -> CopyError {
    let what = what.into();
    move |error| CopyError::Call {
        what,
        error: SnapshotCallError::Arm(error),
    }
}

impl CopyError {
    /// The step error: ARM's failures judged by [`ArmError::step_error`], the rest permanent.
    pub fn step_error(&self) -> ferry_core::StepError {
        let message = self.to_string();
        match self {
            CopyError::Call { error, .. } => error.step_error(message),
            CopyError::Remains { .. } => ferry_core::StepError::transient(message, None),
            _ => ferry_core::StepError::permanent(message),
        }
    }
}

fn tags_of(config: &CopyConfig) -> BTreeMap<String, String> {
    let mut tags = config.tags.clone();
    tags.insert(config.tag.key.clone(), config.tag.value.clone());
    tags
}

fn carries(tags: Option<&BTreeMap<String, String>>, tag: &DrillTag) -> bool {
    tags.and_then(|tags| tags.get(&tag.key))
        .is_some_and(|value| *value == tag.value)
}

fn check_tag(tag: &DrillTag) -> Result<(), CopyError> {
    if tag.key.trim().is_empty() || tag.value.trim().is_empty() {
        return Err(CopyError::EmptyTag);
    }
    Ok(())
}

/// Snapshots each disk of `requests` and makes a new disk from each snapshot, at most
/// `config.parallelism` disks at once. Every name is checked before anything is sent. The
/// copies are returned in the order asked; when some fail, [`CopyError::Failed`] carries the
/// others' copies and each failure.
pub async fn copy_disks(
    operations: &StepOperations<'_>,
    requests: &[DiskCopyRequest],
    config: &CopyConfig,
) -> Result<Vec<DiskCopy>, CopyError> {
    check_tag(&config.tag)?;
    for request in requests {
        for (rule, name) in [
            (&SNAPSHOT, &request.snapshot_name),
            (&MANAGED_DISK, &request.copy_name),
        ] {
            rule.check(name).map_err(|reason| CopyError::InvalidName {
                name: name.clone(),
                reason,
            })?;
        }
        let copy = target(&config.target_group, "disks", &request.copy_name);
        if requests.iter().any(|other| other.source == copy) {
            return Err(CopyError::TargetIsASource {
                id: copy.as_str().to_owned(),
            });
        }
    }
    // Owned requests: a closure over borrowed ones is not `Send` for every lifetime, which a
    // provider's `async_trait` step needs.
    let results: Vec<Result<DiskCopy, CopyError>> = futures_util::stream::iter(requests.to_vec())
        .map(|request| async move { copy_one(operations, &request, config).await })
        .buffered(config.parallelism.max(1))
        .collect()
        .await;
    let mut copied = Vec::new();
    let mut failures = Vec::new();
    for result in results {
        match result {
            Ok(copy) => copied.push(copy),
            Err(error) => failures.push(error),
        }
    }
    if failures.is_empty() {
        Ok(copied)
    } else {
        Err(CopyError::Failed { copied, failures })
    }
}

/// The id of `name` of `resource_type` (`disks`, `snapshots`) in the resource group `group`.
fn target(group: &ResourceId, resource_type: &str, name: &str) -> ResourceId {
    ResourceId::provider_resource(
        group.subscription_id(),
        group.resource_group_name().unwrap_or(group.name()),
        "Microsoft.Compute",
        resource_type,
        name,
    )
}

async fn copy_one(
    operations: &StepOperations<'_>,
    request: &DiskCopyRequest,
    config: &CopyConfig,
) -> Result<DiskCopy, CopyError> {
    let client = operations.client();
    let source_name = request.source.name();
    let missing = || CopyError::SourceMissing {
        source_disk: request.source.as_str().to_owned(),
    };
    let source: Disk = client
        .read(&request.source)
        .await
        .map_err(arm_call(format!("reading {source_name}")))?
        .ok_or_else(missing)?
        .value;
    let location = source.location.clone().unwrap_or_default();
    let snapshot_id = target(&config.snapshot_group, "snapshots", &request.snapshot_name);
    let copy_id = target(&config.target_group, "disks", &request.copy_name);

    // What exists under the drill's names must be the drill's.
    let existing_snapshot: Option<Snapshot> = client
        .read(&snapshot_id)
        .await
        .map_err(arm_call(format!("reading {snapshot_id}")))?
        .map(|fetched| fetched.value);
    let existing_copy: Option<Disk> = client
        .read(&copy_id)
        .await
        .map_err(arm_call(format!("reading {copy_id}")))?
        .map(|fetched| fetched.value);
    for (id, tags) in [
        (
            &snapshot_id,
            existing_snapshot.as_ref().map(|s| s.tags.as_ref()),
        ),
        (&copy_id, existing_copy.as_ref().map(|d| d.tags.as_ref())),
    ] {
        if let Some(tags) = tags
            && !carries(tags, &config.tag)
        {
            return Err(CopyError::NotTheDrills {
                id: id.as_str().to_owned(),
                key: config.tag.key.clone(),
                value: config.tag.value.clone(),
            });
        }
    }

    let snapshot = match existing_snapshot.filter(|snapshot| {
        snapshot
            .provisioning_state()
            .is_none_or(|state| state == "Succeeded")
    }) {
        // Taken by an earlier run: its moment is kept, not taken again.
        Some(snapshot) => snapshot,
        None => {
            operations.progress(format!("snapshotting {source_name} into {snapshot_id}"));
            let snapshot = SnapshotOfDisk {
                sku: config.snapshot_sku,
                tags: tags_of(config),
                ..SnapshotOfDisk::new(request.source.clone(), location.clone())
            };
            match operations.create_snapshot(&snapshot_id, &snapshot).await {
                Ok(snapshot) => snapshot,
                // The disk went away (a move finished) while ARM held the request back.
                Err(SnapshotCallError::Arm(error)) if error.is_not_found() => {
                    return match client.read::<Disk>(&request.source).await {
                        Ok(None) => Err(missing()),
                        _ => Err(call(format!("snapshotting {source_name}"))(
                            SnapshotCallError::Arm(error),
                        )),
                    };
                }
                Err(error) => return Err(call(format!("snapshotting {source_name}"))(error)),
            }
        }
    };
    operations.progress(format!("copying {snapshot_id} into {copy_id}"));
    let disk = DiskFromSnapshot {
        snapshot: snapshot_id.clone(),
        location,
        zone: config.zone.clone(),
        sku: source.sku.as_ref().and_then(|sku| sku.name.clone()),
        tags: tags_of(config),
    };
    operations
        .create_disk_from_snapshot(&copy_id, &disk)
        .await
        .map_err(call(format!(
            "copying {snapshot_id} into {}",
            request.copy_name
        )))?;
    Ok(DiskCopy {
        source: request.source.clone(),
        snapshot: snapshot_id,
        copy: copy_id,
        snapshot_time: snapshot
            .properties
            .as_ref()
            .and_then(|properties| properties.time_created.clone()),
    })
}

/// What a removal deleted, and the lists read afterwards that prove nothing of the drill
/// remains.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Removal {
    pub disks_deleted: Vec<ResourceId>,
    pub snapshots_deleted: Vec<ResourceId>,
}

/// Deletes every disk and snapshot in `groups` that carries `tag` (the copies first, then the
/// snapshots), then lists the groups again and fails unless nothing with the tag is left.
/// What does not carry the tag is never deleted. Safe to run again at any point.
pub async fn remove_copies(
    operations: &StepOperations<'_>,
    groups: &[ResourceId],
    tag: &DrillTag,
    parallelism: usize,
) -> Result<Removal, CopyError> {
    check_tag(tag)?;
    let (disks, snapshots) = tagged(operations, groups, tag).await?;
    let parallelism = parallelism.max(1);
    let deleted = |ids: Vec<ResourceId>, snapshots: bool| async move {
        let results: Vec<Result<ResourceId, CopyError>> = futures_util::stream::iter(ids)
            .map(|id| async move {
                operations.progress(format!("deleting {id}"));
                let result = if snapshots {
                    operations.delete_snapshot(&id).await
                } else {
                    operations.delete(&id).await.map_err(SnapshotCallError::Arm)
                };
                result
                    .map(|()| id.clone())
                    .map_err(call(format!("deleting {id}")))
            })
            .buffer_unordered(parallelism)
            .collect()
            .await;
        results.into_iter().collect::<Result<Vec<_>, _>>()
    };
    let disks_deleted = deleted(disks, false).await?;
    let snapshots_deleted = deleted(snapshots, true).await?;
    let (disks, snapshots) = tagged(operations, groups, tag).await?;
    if !disks.is_empty() || !snapshots.is_empty() {
        return Err(CopyError::Remains {
            key: tag.key.clone(),
            value: tag.value.clone(),
            ids: disks
                .iter()
                .chain(&snapshots)
                .map(|id| id.as_str().to_owned())
                .collect(),
        });
    }
    Ok(Removal {
        disks_deleted,
        snapshots_deleted,
    })
}

/// The disks and snapshots in `groups` that carry `tag`, from complete lists.
async fn tagged(
    operations: &StepOperations<'_>,
    groups: &[ResourceId],
    tag: &DrillTag,
) -> Result<(Vec<ResourceId>, Vec<ResourceId>), CopyError> {
    let client = operations.client();
    let mut disks = Vec::new();
    let mut snapshots = Vec::new();
    for group in groups {
        let listed = client
            .disks_in(group)
            .await
            .map_err(arm_call(format!("listing the disks of {group}")))?;
        disks.extend(
            listed
                .into_iter()
                .filter(|disk| carries(disk.tags.as_ref(), tag))
                .filter_map(|disk| ResourceId::parse(disk.id.as_deref()?).ok()),
        );
        let listed = client
            .snapshots_tagged(group, &tag.key, &tag.value)
            .await
            .map_err(arm_call(format!("listing the snapshots of {group}")))?;
        snapshots.extend(
            listed
                .into_iter()
                .filter_map(|snapshot| ResourceId::parse(snapshot.id.as_deref()?).ok()),
        );
    }
    Ok((disks, snapshots))
}
