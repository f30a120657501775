//! What ferry must remember that the cloud cannot tell it, kept in local files.
//!
//! Three files live in one directory (the CLI uses `<spec dir>/.ferry/`), see [`StateDir`]:
//! - `state.json`: the active generation and each instance's outputs (its real id among them),
//!   saved atomically ([`StateFile`]);
//! - `journal.jsonl`: an append-only record of every apply, fsynced before a step proceeds, from
//!   which an interrupted apply is resumed ([`journal`]);
//! - `lock.json`: a lease that stops two operators applying at once, and `lock.flock`, the OS
//!   lock the applying process holds for its lifetime ([`lock`]).
//!
//! [`StateBackend`] is the interface the engine and the CLI use, so that this local folder
//! ([`LocalBackend`]) and a shared store (Azure Blob Storage, in `ferry-state-blob`) work the
//! same way.
//!
//! Nothing here reads a clock behind the caller's back: functions that care about time take
//! `now`, which keeps the tests free of sleeps.

pub mod backend;
pub mod journal;
pub mod lock;
mod paths;
mod state;

pub use backend::{LocalBackend, StateBackend, acquire_waiting};
pub use journal::{
    JOURNAL_FORMAT_VERSION, Journal, JournalError, JournalMirror, JournalRecord, JournalSummary,
    StepPhase, StepResult,
};
pub use lock::{IfHolderRuns, LockError, LockInfo, LockRequest};
pub use paths::StateDir;
pub use state::{InstanceRecord, STATE_FORMAT_VERSION, StateError, StateFile};

/// An I/O error on `path` in words that say what to do. A refused permission, a read-only or
/// full file system name the folder and the fix (the OS's own text only says "permission
/// denied"); anything else is the OS's text.
pub fn describe_io(error: &std::io::Error, path: &std::path::Path) -> String {
    let folder = if path.is_dir() {
        path
    } else {
        path.parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(std::path::Path::new("."))
    };
    let folder = folder.display();
    match error.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied: user {} may not write in {folder}; give that user write access to the folder (chown or chmod), or set [state] path to a folder it can write",
            lock::this_user()
        ),
        std::io::ErrorKind::ReadOnlyFilesystem => format!(
            "{folder} is on a read-only file system: mount it read-write, or set [state] path to a writable folder"
        ),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => format!(
            "no space left for {folder}: free some space on its disk, then run the command again"
        ),
        _ => error.to_string(),
    }
}

/// Formats a wall-clock time the way every ferry file shows it: ferry's one time format, kept
/// here for the backends that write state, journal and locks.
pub use ferry_core::time::format_time;

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};
    use std::path::Path;

    /// The tests run as root, which no permission stops, so the refusals are made by hand.
    #[test]
    fn a_refused_permission_names_the_folder_and_the_fix() {
        let user = crate::lock::this_user();
        let denied = crate::StateError::Write {
            path: "/srv/data100/.ferry/state.json".into(),
            source: Error::from(ErrorKind::PermissionDenied),
        };
        insta::assert_snapshot!(denied.to_string().replace(&user, "<user>"), @"cannot save state file /srv/data100/.ferry/state.json: permission denied: user <user> may not write in /srv/data100/.ferry; give that user write access to the folder (chown or chmod), or set [state] path to a folder it can write; the previous state is left as it was");
        let read_only = crate::describe_io(
            &Error::from(ErrorKind::ReadOnlyFilesystem),
            Path::new("/srv/data100/.ferry/journal.jsonl"),
        );
        insta::assert_snapshot!(read_only, @"/srv/data100/.ferry is on a read-only file system: mount it read-write, or set [state] path to a writable folder");
    }
}
