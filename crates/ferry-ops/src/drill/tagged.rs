//! A drill on Azure found and proven gone by its tag: every resource and resource group it
//! makes carries `ferry-drill=ID`, so ARM's lists of the subscription filtered by that tag
//! (`ferry_arm::subscription_lists`) find what the drill left wherever it is, whether its
//! state recorded it or not (a drill killed between a create's request and its journal
//! entry, a snapshot copied outside the drill's groups), and, empty, prove its clean-up.

use ferry_arm::{ArmClient, ResourceId, TaggedInSubscription, WriteOptions};
use ferry_plan::drill::{DRILL_TAG, DrillId, ProductionIdentities};

/// Where a drill on Azure lists what carries its tag.
#[derive(Debug, Clone)]
pub struct TaggedLists {
    pub client: ArmClient,
    pub subscription: String,
}

/// What a sweep by tag deletes.
pub(super) enum SweepScope<'a> {
    /// Before the clean-up's plan: the managed disks carrying the tag that the drill's
    /// readings do not show (their ARM ids, lower-case, are given): a group holding one would
    /// be refused the plan's deletion (ferry never deletes a group with data in it); and the
    /// restore point collections carrying the tag, which no reading shows (the disk provider
    /// takes one per production VM to copy its disks at one moment, and a drill killed
    /// between the restore point and its disks leaves one): each holds copies of
    /// production's data. Nothing else: a VM's interfaces and addresses are its own
    /// instance's, not instances the readings name, and go with it.
    UnknownTo(&'a std::collections::BTreeSet<String>),
    /// After the plan: everything still carrying the tag, groups included.
    Everything,
}

/// What the sweep by tag did.
#[derive(Debug, Default)]
pub(super) struct Sweep {
    /// The ARM ids it deleted.
    pub deleted: Vec<String>,
    /// What it could not delete, with why.
    pub failures: Vec<String>,
}

impl TaggedLists {
    /// What carries the drill's tag in the subscription now.
    pub(super) async fn of_drill(&self, id: &DrillId) -> Result<TaggedInSubscription, String> {
        self.client
            .tagged_in_subscription(&self.subscription, DRILL_TAG, id.as_str())
            .await
            .map_err(|error| {
                format!(
                    "the subscription {}'s lists of what is tagged {DRILL_TAG}={id} failed: {error}; run ferry drill SPEC --clean --id {id} again",
                    self.subscription
                )
            })
    }

    /// Deletes whatever still carries the drill's tag after its clean-up's plan: each resource
    /// outside the tagged groups (VMs before what they hold), then each tagged group, whose
    /// deletion takes what it holds. Nothing production's readings hold is deleted, tag or not.
    pub(super) async fn sweep(
        &self,
        id: &DrillId,
        production: &ProductionIdentities,
        scope: SweepScope<'_>,
    ) -> Sweep {
        let mut sweep = Sweep::default();
        let tagged = match self.of_drill(id).await {
            Ok(tagged) => tagged,
            Err(failure) => {
                sweep.failures.push(failure);
                return sweep;
            }
        };
        let group_ids: Vec<String> = match scope {
            SweepScope::Everything => tagged
                .groups
                .iter()
                .filter_map(|group| group.id.clone())
                .collect(),
            SweepScope::UnknownTo(_) => Vec::new(),
        };
        let in_a_tagged_group = |id: &str| {
            let lowered = id.to_ascii_lowercase();
            group_ids
                .iter()
                .any(|group| lowered.starts_with(&format!("{}/", group.to_ascii_lowercase())))
        };
        let mut resources: Vec<String> = tagged
            .resources
            .iter()
            .filter_map(|resource| resource.id.clone())
            .filter(|id| !in_a_tagged_group(id))
            .filter(|id| match scope {
                SweepScope::Everything => true,
                SweepScope::UnknownTo(known) => {
                    (!known.contains(&id.to_lowercase()) && deletion_rank(id) == DISK_RANK)
                        || is_restore_point_collection(id)
                }
            })
            .collect();
        resources.sort_by_key(|id| deletion_rank(id));
        for target in resources.into_iter().chain(group_ids) {
            if let Some(owner) = production.owner_of_id(&target) {
                sweep.failures.push(format!(
                    "{target} carries the drill's tag {DRILL_TAG}={id} but is production's ({owner}): left alone; remove the tag or the resource by hand"
                ));
                continue;
            }
            let resource_id = match ResourceId::parse(&target) {
                Ok(resource_id) => resource_id,
                Err(error) => {
                    sweep
                        .failures
                        .push(format!("{target}: not an ARM id ARM should list: {error}"));
                    continue;
                }
            };
            match self
                .client
                .delete_resource(&resource_id, &WriteOptions::default())
                .await
            {
                Ok(()) => sweep.deleted.push(target),
                Err(error) if error.is_not_found() => sweep.deleted.push(target),
                Err(error) => sweep.failures.push(format!(
                    "{target}: its deletion by the drill's tag failed: {error}"
                )),
            }
        }
        sweep
    }
}

/// Whether `name` is what the name template `template` gives at some generation
/// (`data100-g${generation}-drill` names `data100-g7-drill`), compared ignoring case as ARM
/// compares group names.
pub(super) fn named_by(template: &str, name: &str) -> bool {
    let (template, name) = (template.to_ascii_lowercase(), name.to_ascii_lowercase());
    match template.split_once("${generation}") {
        None => template == name,
        Some((before, after)) => name
            .strip_prefix(before)
            .and_then(|rest| rest.strip_suffix(after))
            .is_some_and(|generation| {
                !generation.is_empty() && generation.chars().all(|c| c.is_ascii_digit())
            }),
    }
}

/// [`deletion_rank`] of a managed disk.
const DISK_RANK: u8 = 4;

/// [`deletion_rank`] of a restore point collection (its delete takes its restore points).
const RESTORE_POINTS_RANK: u8 = 6;

/// Whether `id` is a restore point collection: the drill's own, one per production VM whose
/// disks it copied, which its clean-up deletes by the tag and reports apart from leftovers.
pub(super) fn is_restore_point_collection(id: &str) -> bool {
    deletion_rank(id) == RESTORE_POINTS_RANK
}

/// The order a leftover is deleted in: a VM before the disks and interfaces it holds, an
/// interface before its public IP, a disk before the snapshot or restore point it was copied
/// from.
fn deletion_rank(id: &str) -> u8 {
    let lowered = id.to_ascii_lowercase();
    let ranked = [
        "/microsoft.containerservice/managedclusters/",
        "/microsoft.compute/virtualmachines/",
        "/microsoft.network/networkinterfaces/",
        "/microsoft.network/publicipaddresses/",
        "/microsoft.compute/disks/",
        "/microsoft.compute/snapshots/",
        "/microsoft.compute/restorepointcollections/",
    ];
    ranked
        .iter()
        .position(|marker| lowered.contains(marker))
        .map_or(u8::MAX, |position| {
            u8::try_from(position).unwrap_or(u8::MAX)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_name_is_matched_to_its_template_at_any_generation() {
        let template = "data100-g${generation}-drill";
        assert!(named_by(template, "data100-g7-drill"));
        assert!(named_by(template, "DATA100-G12-DRILL"));
        assert!(!named_by(template, "data100-g-drill"));
        assert!(!named_by(template, "data100-g1"));
        assert!(!named_by(template, "data100-gx-drill"));
        assert!(named_by("shared-drill", "shared-drill"));
    }

    #[test]
    fn a_vm_goes_before_what_it_holds_and_a_disk_before_its_snapshot() {
        let mut ids = [
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/snapshots/s0",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Network/virtualNetworks/v",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/restorePointCollections/rpc",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/disks/d0",
            "/subscriptions/s/resourceGroups/g/providers/Microsoft.Compute/virtualMachines/vm",
        ];
        ids.sort_by_key(|id| deletion_rank(id));
        let names: Vec<&str> = ids
            .iter()
            .map(|id| id.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["vm", "d0", "s0", "rpc", "v"]);
    }
}
