//! Writes that overlap: a resource whose write is still running (an operation a client started,
//! or another writer's) refuses the next write on it, each ARM type with its own code and
//! message; reads are never refused.
//!
//! One model for every type: a resource is held by the operation in progress on it, and the
//! operation's end frees it. What Azure answers a second write, by type:
//! - a VM or a managed disk (Microsoft.Compute): `409 ConflictingConcurrentWriteNotAllowed`,
//!   "The operation was interrupted by a conflicting concurrent write on the same entity.
//!   Please retry later." (seen from Compute on VM updates and data-disk attachments, as
//!   Terraform's and the Azure CLI's users report it);
//! - an AKS cluster: `409 OperationNotAllowed`, "Operation is not allowed: Another operation
//!   (Updating) is in progress, please wait for it to finish before starting a new operation.
//!   See <https://aka.ms/aks-pending-operation> for more details." (AKS's troubleshooting page);
//! - a network resource: `409 AnotherOperationInProgress`, "Another operation on this or
//!   dependent resource is in progress." with the operation's status URL.
//!
//! A disk attached or detached through its VM is held by that VM's operation too: Azure changes
//! the disk's `managedBy` and state as part of it, and a write on the disk meanwhile (or a
//! second VM's attach of it) is refused like a write on the VM. Groups, DNS zones and record
//! sets are written synchronously and are never held.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::ids::{Kind, is_network_kind, kind_of, lower, name_of};
use super::{Refusal, SimResponse, World};

/// What holds a resource: an operation in progress, or another writer for a while.
#[derive(Debug, Clone, serde::Serialize)]
pub(super) struct Hold {
    /// The operation's id, when a request started it.
    pub operation: Option<String>,
    /// `Creating`, `Updating` or `Deleting`, as AKS names the operation in progress.
    pub activity: &'static str,
}

/// Another writer, injected as a fault: when it starts and how long it runs.
#[derive(Debug, Clone)]
pub(super) struct OtherWriter {
    pub resource: String,
    pub duration: Duration,
    /// `None` until it starts (at the first write on its resource).
    pub start: Option<Instant>,
    /// Whether its write has changed the resources it matches (their ETags) yet.
    pub wrote: bool,
}

impl OtherWriter {
    fn matches(&self, id: &str) -> bool {
        let wanted = lower(self.resource.trim_end_matches('/'));
        lower(id.trim_end_matches('/')) == wanted || lower(&name_of(id)) == wanted
    }

    fn running(&self, now: Instant) -> bool {
        self.start
            .is_some_and(|start| now >= start && now < start + self.duration)
    }
}

impl World {
    /// Adds another writer on `resource` for `seconds` of Azure's time.
    pub(super) fn add_other_writer(
        &mut self,
        resource: &str,
        seconds: u64,
        after_seconds: u64,
        at_first_write: bool,
    ) {
        let start = (!at_first_write)
            .then(|| Instant::now() + self.scaled(Duration::from_secs(after_seconds)));
        self.other_writers.push(OtherWriter {
            resource: resource.to_owned(),
            duration: self.scaled(Duration::from_secs(seconds)),
            start,
            wrote: false,
        });
    }

    /// Refuses a write on `id` while a write on it runs. A writer waiting for the first write
    /// on `id` starts now, just ahead of this one.
    pub(super) fn require_idle(&mut self, id: &str) -> Result<(), Refusal> {
        let now = Instant::now();
        let mut other = None;
        let mut changed = false;
        for writer in &mut self.other_writers {
            if !writer.matches(id) {
                continue;
            }
            if writer.start.is_none() {
                writer.start = Some(now);
            }
            if writer.start.is_some_and(|start| now >= start) && !writer.wrote {
                writer.wrote = true;
                changed = true;
            }
            if writer.running(now) {
                other = Some(Hold {
                    operation: None,
                    activity: "Updating",
                });
            }
        }
        // Its write changed the resource: an `If-Match` with the ETag read before it fails.
        if changed {
            let etag = self.next_etag();
            if let Some(stored) = self.resources.get_mut(&lower(id)) {
                stored.etag = etag;
            }
        }
        let hold = match other {
            Some(hold) => hold,
            None => match self.holds.get(&lower(id)) {
                Some(hold) => hold.clone(),
                None => return Ok(()),
            },
        };
        Err(self.busy_refusal(id, &hold))
    }

    /// Refuses a VM write that attaches or detaches a disk held by another write.
    pub(super) fn require_disks_idle(&mut self, disks: &[String]) -> Result<(), Refusal> {
        for disk in disks {
            self.require_idle(disk)?;
        }
        Ok(())
    }

    /// Marks `ids` as held by `operation` until it ends.
    pub(super) fn hold(&mut self, ids: &[String], operation: &str, activity: &'static str) {
        for id in ids {
            if matches!(
                kind_of(id),
                Kind::Group | Kind::DnsZone | Kind::RecordSet | Kind::Other
            ) {
                continue;
            }
            self.holds.insert(
                lower(id),
                Hold {
                    operation: Some(operation.to_owned()),
                    activity,
                },
            );
        }
    }

    /// Frees what `operation` held: it ended.
    pub(super) fn release(&mut self, operation: &str) {
        self.holds
            .retain(|_, hold| hold.operation.as_deref() != Some(operation));
    }

    fn busy_refusal(&self, id: &str, hold: &Hold) -> Refusal {
        match kind_of(id) {
            Kind::ManagedCluster => SimResponse::error(
                409,
                "OperationNotAllowed",
                format!(
                    "Operation is not allowed: Another operation ({}) is in progress, please wait for it to finish before starting a new operation. See https://aka.ms/aks-pending-operation for more details",
                    hold.activity
                ),
            ),
            kind if is_network_kind(kind) => {
                let status_url = hold
                    .operation
                    .as_ref()
                    .map(|operation| {
                        self.operation_urls(&super::ids::subscription_of(id), operation)
                            .0
                    })
                    .unwrap_or_default();
                SimResponse::error(
                    409,
                    "AnotherOperationInProgress",
                    format!(
                        "Another operation on this or dependent resource is in progress. To retrieve status of the operation use uri: {status_url}."
                    ),
                )
            }
            _ => SimResponse::error(
                409,
                "ConflictingConcurrentWriteNotAllowed",
                "The operation was interrupted by a conflicting concurrent write on the same entity. Please retry later.",
            ),
        }
    }
}

/// The managed disks whose attachment a VM body changes from `previous`: those it detaches
/// (`toBeDetached`), attaches (new in it) or drops.
pub(super) fn disks_changing(previous: &Value, body: &Value) -> Vec<String> {
    let disks = |value: &Value| -> Vec<(String, bool)> {
        value
            .pointer("/properties/storageProfile/dataDisks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|disk| {
                let id = disk.pointer("/managedDisk/id").and_then(Value::as_str)?;
                let detaching = disk.get("toBeDetached").and_then(Value::as_bool) == Some(true);
                Some((id.to_owned(), detaching))
            })
            .collect()
    };
    let before = disks(previous);
    let after = disks(body);
    let attached_before = |id: &str| {
        before
            .iter()
            .any(|(old, detaching)| !detaching && old.eq_ignore_ascii_case(id))
    };
    let mut changing: Vec<String> = Vec::new();
    for (id, detaching) in &after {
        if *detaching || !attached_before(id) {
            changing.push(id.clone());
        }
    }
    for (id, detaching) in &before {
        if !detaching && !after.iter().any(|(new, _)| new.eq_ignore_ascii_case(id)) {
            changing.push(id.clone());
        }
    }
    changing.sort_by_key(|id| lower(id));
    changing.dedup_by(|a, b| a.eq_ignore_ascii_case(b));
    changing
}
