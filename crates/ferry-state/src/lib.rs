//! What ferry must remember that the cloud cannot tell it, kept in local files.
//!
//! Three files live in one directory (the CLI uses `<spec dir>/.ferry/`), see [`StateDir`]:
//! - `state.json`: the active generation and each instance's outputs (its real id among them),
//!   saved atomically ([`StateFile`]);
//! - `journal.jsonl`: an append-only record of every apply, fsynced before a step proceeds, from
//!   which an interrupted apply is resumed ([`journal`]);
//! - `lock.json`: a lease that stops two operators applying at once ([`lock`]).
//!
//! [`StateBackend`] is the interface the engine and the CLI use, so that this local folder
//! ([`LocalBackend`]) and a shared store (Azure Blob Storage, in `ferry-state-blob`) work the
//! same way.
//!
//! Nothing here reads a clock behind the caller's back: functions that care about time take
//! `now`, which keeps the tests free of sleeps.

mod atomic;
pub mod backend;
pub mod journal;
pub mod lock;
mod paths;
mod state;

pub use backend::{LocalBackend, StateBackend, acquire_waiting};
pub use journal::{
    Journal, JournalError, JournalMirror, JournalRecord, JournalSummary, StepPhase, StepResult,
};
pub use lock::{LockError, LockInfo, LockRequest};
pub use paths::StateDir;
pub use state::{InstanceRecord, STATE_FORMAT_VERSION, StateError, StateFile};

/// Formats a wall-clock time the way every ferry file shows it: RFC 3339, UTC, whole seconds.
pub fn format_time(time: std::time::SystemTime) -> String {
    humantime::format_rfc3339_seconds(time).to_string()
}
