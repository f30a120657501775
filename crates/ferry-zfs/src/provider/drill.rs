//! A failover drill's pool (`zfs_pool.drill`, issue 17): its create imports the copy of
//! production's pool that the drill's copied disks hold, on the drill's own host, once the
//! checks below say that the copy is all it would import and that it can collide with nothing.
//!
//! Why this is not the failover's import, and why it is safe all the same (safety invariant 1
//! of ARCHITECTURE.md: a pool is imported on at most one host):
//! - The disks are the drill's own copies of production's (a snapshot, then a new disk from
//!   it), attached to the drill's VM only; production's disks are never attached anywhere by a
//!   drill (the drill's safety pass and its guarded providers refuse any step on a production
//!   instance). Each disk must carry the drill's tag in its reading, which only the drill's
//!   copy step writes: a disk without it is refused.
//! - The copy was last imported by production's host, which still runs it, so ZFS asks for
//!   `-f` ("in use from another system"). What ZFS means is production's disks; these are
//!   other disks with the same bytes, which no other system can have. So the drill imports with
//!   `-f` without any fence: fencing production is exactly what a drill never does. The
//!   failover's import is not changed: there `-f` still needs the plan's fence, and the fenced
//!   hosts are still asked right before.
//! - A copy carries production's pool id (GUID) and its vdevs' ids. On a host whose ZFS also
//!   sees production's pool (imported, or on disks in its device folder) or another copy, two
//!   pools with one id would meet, and ZFS cannot tell them apart: the import is refused
//!   rather than renamed, since a new name would not give the copy a new id. The drill's pool
//!   keeps production's name on the drill's own host, where no other pool has it, so the
//!   hooks and shares the spec names work unchanged.

use ferry_core::fields::DRILL_TAG;
use ferry_core::{Attributes, InstanceAddress, StepOutcome, Value};

use super::ZfsError;
use super::host::{PoolState, importable_pools, pool_state, query};
use super::import::Mounting;
use super::steps::StepTarget;

/// The pool's disks whose reading carries no drill tag of `drill`: not this drill's copies.
pub(super) fn disks_not_copies(
    disks: &[InstanceAddress],
    drill: &str,
    outputs: &dyn Fn(&InstanceAddress) -> Option<Attributes>,
) -> Vec<String> {
    disks
        .iter()
        .filter(|disk| {
            let tag = outputs(disk).and_then(|attributes| {
                attributes
                    .get("tags")
                    .and_then(|tags| tags.get(DRILL_TAG))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            tag.as_deref() != Some(drill)
        })
        .map(ToString::to_string)
        .collect()
}

/// The drill whose tag every one of `disks` carries in its reading, if they all carry one
/// drill's (and there is at least one disk).
pub(super) fn drill_of_disks(
    disks: &[InstanceAddress],
    outputs: &dyn Fn(&InstanceAddress) -> Option<Attributes>,
) -> Option<String> {
    let first = disks.first()?;
    let tag = outputs(first)?
        .get("tags")?
        .get(DRILL_TAG)?
        .as_str()?
        .to_owned();
    disks_not_copies(disks, &tag, outputs)
        .is_empty()
        .then_some(tag)
}

impl StepTarget<'_> {
    /// The create of a drill's pool: the copy imported (with `-f` when ZFS asks for it, see
    /// the module's comment), then its datasets made to match, as any create ends. Done again
    /// after an interruption, it finds the copy imported and goes on.
    pub(super) async fn import_drill_copy(
        &self,
        drill: &str,
        not_copies: Vec<String>,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<StepOutcome, ZfsError> {
        let label = self.label();
        let host = self.host.instance.to_string();
        if !not_copies.is_empty() {
            return Err(ZfsError::DrillDisksNotCopies {
                pool: label,
                drill: drill.to_owned(),
                tag: DRILL_TAG,
                disks: not_copies,
            });
        }
        let collides = |detail: String| ZfsError::DrillCopyCollides {
            pool: label.clone(),
            host: host.clone(),
            detail,
        };
        let found = match pool_state(&self.host, self.wanted()).await? {
            PoolState::Imported { .. } => return self.update().await,
            PoolState::ImportedElsewhere { devices } => {
                return Err(collides(format!(
                    "its ZFS holds a pool named {} imported on {}, which are not on this host: it shares its ZFS with another host",
                    self.pool(),
                    devices.join(", ")
                )));
            }
            PoolState::NotFound => {
                return Err(ZfsError::DrillCopyNotFound {
                    pool: label,
                    host,
                    name: self.pool().to_owned(),
                    folder: self.host.device_folder.clone(),
                });
            }
            PoolState::Importable(found) => found,
        };
        let expected: Vec<&str> = self
            .expected
            .iter()
            .map(|(_, path)| path.as_str())
            .collect();
        let leaves: Vec<&str> = found
            .pool
            .vdevs
            .iter()
            .filter(|row| !row.is_group())
            .map(|row| row.path())
            .collect();
        let elsewhere: Vec<&str> = leaves
            .iter()
            .copied()
            .filter(|path| !expected.contains(path))
            .collect();
        if !elsewhere.is_empty() {
            return Err(collides(format!(
                "the pool named {} that `zpool import -d {}` lists is on {}, which are not the drill's copies",
                self.pool(),
                self.host.device_folder,
                elsewhere.join(", ")
            )));
        }
        if found.by_id {
            return Err(collides(format!(
                "`zpool import -d {}` lists another pool named {} beside the copy",
                self.host.device_folder,
                self.pool()
            )));
        }
        let id = found.pool.id.clone();
        let listed_twice = importable_pools(&self.host, &label)
            .await?
            .into_iter()
            .filter(|pool| pool.id == id)
            .count()
            > 1;
        if listed_twice {
            return Err(collides(format!(
                "`zpool import -d {}` lists the copy's id {id} more than once",
                self.host.device_folder
            )));
        }
        let imported = query(
            &self.host,
            &label,
            &["zpool", "list", "-H", "-o", "name,guid"],
        )
        .await?;
        if let Some(name) = imported.stdout.lines().find_map(|line| {
            let (name, guid) = line.split_once('\t')?;
            (guid.trim() == id).then(|| name.to_owned())
        }) {
            return Err(collides(format!(
                "the pool {name} imported there has the copy's id {id}: it is production's pool or another copy of it"
            )));
        }
        let force = found.pool.needs_force();
        progress(format!(
            "the drill's disks hold a copy of production's pool {} (id {id}): importing it{}",
            self.pool(),
            if force {
                " with -f, since production's host last had it (these disks are copies that only this host has)"
            } else {
                ""
            }
        ));
        // No fenced host to ask: a drill fences nothing, and production's host holds
        // production's disks, not these.
        self.import(force, &[], Mounting::Mounted, progress).await?;
        self.update().await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Disk readings: each disk's `ferry-drill` tag, or no tags, or no reading at all.
    fn readings(disk: &InstanceAddress) -> Option<Attributes> {
        let mut attributes = Attributes::new();
        match disk.to_string().as_str() {
            "disk.home0" | "disk.home1" => {
                attributes.insert("tags".into(), json!({DRILL_TAG: "d1", "owner": "x"}));
            }
            "disk.other" => {
                attributes.insert("tags".into(), json!({DRILL_TAG: "d2"}));
            }
            "disk.untagged" => {
                attributes.insert("tags".into(), json!({"owner": "x"}));
            }
            _ => return None,
        }
        Some(attributes)
    }

    fn disks(names: &[&str]) -> Vec<InstanceAddress> {
        names
            .iter()
            .map(|name| format!("disk.{name}").parse().unwrap())
            .collect()
    }

    #[test]
    fn a_drills_pool_is_on_copies_only_when_every_disk_carries_the_drills_tag() {
        let all = disks(&["home0", "home1", "other", "untagged", "unread"]);
        assert_eq!(
            disks_not_copies(&all, "d1", &readings),
            ["disk.other", "disk.untagged", "disk.unread"]
        );
        assert_eq!(
            drill_of_disks(&disks(&["home0", "home1"]), &readings).as_deref(),
            Some("d1")
        );
        assert_eq!(drill_of_disks(&disks(&["home0", "other"]), &readings), None);
        assert_eq!(drill_of_disks(&disks(&["untagged"]), &readings), None);
        assert_eq!(drill_of_disks(&[], &readings), None);
    }

    #[test]
    fn a_drills_import_refusals_say_why_and_what_to_do() {
        let pool = "zfs_pool.home".to_owned();
        let host = "vm.nfs@g1".to_owned();
        let refusals = [
            ZfsError::DrillDisksNotCopies {
                pool: pool.clone(),
                drill: "d1".into(),
                tag: DRILL_TAG,
                disks: vec!["disk.home2".into(), "disk.home3".into()],
            },
            ZfsError::DrillCopyNotFound {
                pool: pool.clone(),
                host: host.clone(),
                name: "data100".into(),
                folder: "/dev/disk/azure/scsi1".into(),
            },
            ZfsError::DrillCopyCollides {
                pool,
                host,
                detail: "the pool data100 imported there has the copy's id 9961266767913307871: it is production's pool or another copy of it".into(),
            },
        ];
        let shown: Vec<String> = refusals.iter().map(ToString::to_string).collect();
        insta::assert_snapshot!(shown.join("\n\n"));
    }
}
