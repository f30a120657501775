//! Reading the simulator's record disk by disk, for tests that check the order in which ARM
//! saw a failover's disk operations when several disks share one request.

use std::collections::BTreeMap;

use crate::SimEvent;

/// Where, in a list of events, one disk's operations were accepted and ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiskRecord {
    /// Positions of the accepted (2xx) VM writes that detach the disk.
    pub detach_requests: Vec<usize>,
    /// Whether any of them was a `ForceDetach`.
    pub force_detached: bool,
    /// Positions of the succeeded operations of those writes.
    pub detached: Vec<usize>,
    /// Positions of the accepted `moveResources` requests that carry the disk (not their
    /// validations).
    pub move_requests: Vec<usize>,
    /// Positions of the succeeded moves that carried the disk.
    pub moved: Vec<usize>,
    /// Positions of the accepted VM writes that attach the disk.
    pub attach_requests: Vec<usize>,
    /// Positions of the succeeded operations of those writes.
    pub attached: Vec<usize>,
}

/// Each disk named in `events`, by name, with its record.
pub fn disk_records(events: &[SimEvent]) -> BTreeMap<String, DiskRecord> {
    let mut records: BTreeMap<String, DiskRecord> = BTreeMap::new();
    for (position, event) in events.iter().enumerate() {
        let request = event.what == "request";
        let counts = if request {
            event.outcome.starts_with('2')
        } else {
            event.outcome == "Succeeded"
        };
        if !counts
            || event
                .path
                .to_ascii_lowercase()
                .ends_with("/validatemoveresources")
        {
            continue;
        }
        for change in &event.disks {
            let Some((action, disk)) = change.split_once(' ') else {
                continue;
            };
            let record = records.entry(disk.to_owned()).or_default();
            if action == "force-detach" && request {
                record.force_detached = true;
            }
            let positions = match (action, request) {
                ("detach" | "force-detach", true) => &mut record.detach_requests,
                ("detach" | "force-detach", false) => &mut record.detached,
                ("move", true) => &mut record.move_requests,
                ("move", false) => &mut record.moved,
                ("attach", true) => &mut record.attach_requests,
                ("attach", false) => &mut record.attached,
                _ => continue,
            };
            positions.push(position);
        }
    }
    records
}

/// The failover's order for each of `disks`, as ARM saw it: every detach requested after
/// position `fenced` (where the fence ended), the move requested only after the disk's detach
/// ended, the attach requested only after its move ended, and each disk moved exactly once.
/// The error says which disk broke which rule.
pub fn check_failover_order(
    events: &[SimEvent],
    fenced: usize,
    disks: &[&str],
) -> Result<(), String> {
    let records = disk_records(events);
    for disk in disks {
        let record = records
            .get(*disk)
            .ok_or_else(|| format!("{disk}: ARM saw no request for it"))?;
        let first = |positions: &[usize], what: &str| {
            positions
                .first()
                .copied()
                .ok_or_else(|| format!("{disk}: no {what}: {record:?}"))
        };
        if record
            .detach_requests
            .iter()
            .any(|&request| request < fenced)
        {
            return Err(format!(
                "{disk}: detached before the fence ended: {record:?}"
            ));
        }
        let detached = first(&record.detached, "detach ended")?;
        if record.move_requests.len() != 1 || record.moved.len() != 1 {
            return Err(format!("{disk}: not moved exactly once: {record:?}"));
        }
        if record.move_requests[0] < detached {
            return Err(format!("{disk}: moved before its detach ended: {record:?}"));
        }
        if first(&record.attach_requests, "attach requested")? < record.moved[0] {
            return Err(format!(
                "{disk}: attached before its move ended: {record:?}"
            ));
        }
        first(&record.attached, "attach ended")?;
    }
    Ok(())
}
