//! Why a zfs_pool read or step failed, and which failures are worth a retry.

use ferry_core::{Action, StepError};

use crate::parse::ParseError;
use crate::ssh::SshError;

/// Why a zfs_pool read or step failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ZfsError {
    #[error("{0}")]
    Ssh(#[from] SshError),
    #[error("{0}")]
    Parse(#[from] ParseError),
    #[error("{pool}: {message}")]
    Setting { pool: String, message: String },
    #[error(
        "{pool}: the host {host} has no recorded address yet: create it first, or check ferry's state"
    )]
    HostNotKnown { pool: String, host: String },
    #[error("{pool}: `{command}` failed on {host}: {stderr}")]
    Command {
        pool: String,
        host: String,
        command: String,
        stderr: String,
    },
    #[error(
        "{pool}: refused to import on {host}: the pool is imported by another host ({detail}); fence that host, then import with force"
    )]
    ImportedElsewhere {
        pool: String,
        host: String,
        detail: String,
    },
    #[error(
        "{pool}: refused to import on {host} although the plan fenced the other hosts: the pool is still imported by another host ({detail}); make sure the fence took effect (the old VM deallocated), then apply again"
    )]
    StillImportedAfterFence {
        pool: String,
        host: String,
        detail: String,
    },
    #[error(
        "{pool}: refused to promote the replica on {host} although the plan fenced {old_host}: {detail}; make sure the fence took effect (the old VM deallocated), then apply again"
    )]
    StillPrimaryAfterFence {
        pool: String,
        host: String,
        old_host: String,
        detail: String,
    },
    #[error(
        "{pool}: cannot import on {host}: {}; attach the missing disks to the host, then apply again",
        missing.join(", ")
    )]
    MissingDisks {
        pool: String,
        host: String,
        missing: Vec<String>,
    },
    #[error(
        "{pool}: imported on {host} but {state}, not ONLINE: {}; replace or reattach those disks with zpool, then plan again",
        problems.join(", ")
    )]
    NotOnline {
        pool: String,
        host: String,
        state: String,
        problems: Vec<String>,
    },
    #[error(
        "{pool}: no pool of that name is imported on {host} or found in {folder}; check pool_name and that its disks are attached"
    )]
    NotFound {
        pool: String,
        host: String,
        folder: String,
    },
    #[error(
        "{pool}: `zpool import -d {folder}` on {host} lists {} pools of that name, and ferry cannot tell which one is this pool: {}; ferry imports none of them rather than guess: detach from {host} the disks of the pool that is not this one, or rename that one by its id (`zpool import -d {folder} ID NEWNAME`, then `zpool export NEWNAME`), then plan again",
        candidates.len(),
        candidates.join("; ")
    )]
    AmbiguousPool {
        pool: String,
        host: String,
        folder: String,
        candidates: Vec<String>,
    },
    #[error(
        "{pool}: the pool already exists on the disks in {folder} but is not imported: plan again to import it instead of creating it"
    )]
    ExistsNotImported { pool: String, folder: String },
    #[error(
        "{pool}: refused to seed the replica on {host}: the pool on its disks is writable and no replica ({reason}); an old primary fenced rather than handed over may hold writes that {primary} never got, and ferry never rolls back or overwrites it: the pool stays imported on {host} as it is, unmounted; copy from it what {primary} lacks, then destroy it there (`zpool destroy {name}`) and apply again to seed a new replica on its disks"
    )]
    WritablePoolOnReplicaDisks {
        pool: String,
        host: String,
        primary: String,
        name: String,
        reason: String,
    },
    #[error(
        "{pool}: refused to import a copy of production's pool for drill {drill}: {} carry no tag {tag}={drill}, so nothing says they are this drill's copies; a drill's pool is imported only from the drill's own copies of production's disks: clean the drill up (ferry drill --clean), then drill again",
        disks.join(", ")
    )]
    DrillDisksNotCopies {
        pool: String,
        drill: String,
        tag: &'static str,
        disks: Vec<String>,
    },
    #[error(
        "{pool}: the drill's disks on {host} hold no copy of production's pool {name} (`zpool import -d {folder}` lists none on them); a drill imports the pool production's disks held when they were copied and never creates an empty one in its place: check that production's pool is on the disks the spec names (ferry state list), then clean the drill up (ferry drill --clean) and drill again"
    )]
    DrillCopyNotFound {
        pool: String,
        host: String,
        name: String,
        folder: String,
    },
    #[error(
        "{pool}: refused to import the drill's copy of production's pool on {host}: {detail}; a copy carries production's pool id (GUID), so a host that sees production's pool or another copy of it must never import it: give the drill's pool a host of its own that sees only the drill's disks, then clean the drill up (ferry drill --clean) and drill again"
    )]
    DrillCopyCollides {
        pool: String,
        host: String,
        detail: String,
    },
    #[error("{pool}: {source}")]
    Replication {
        pool: String,
        source: crate::replication::ReplicationError,
    },
    #[error("{pool}: zfs_pool has no `{action}` step")]
    Unsupported { pool: String, action: Action },
}

impl ZfsError {
    pub(super) fn into_step_error(self) -> StepError {
        let transient = match &self {
            ZfsError::Ssh(error) => error.is_transient(),
            ZfsError::Replication { source, .. } => source.is_transient(),
            _ => false,
        };
        if transient {
            StepError::transient(self.to_string(), None)
        } else {
            StepError::permanent(self.to_string())
        }
    }
}
