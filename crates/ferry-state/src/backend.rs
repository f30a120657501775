//! The one interface the engine and the CLI use for state, journal and lock, whatever holds them:
//! the local folder ([`LocalBackend`]) or a shared store such as Azure Blob Storage (the
//! `ferry-state-blob` crate).
//!
//! The interface is synchronous on purpose. The engine must write a journal record before a
//! step proceeds, including from inside a provider's `record_operation` callback, which is not
//! async; a remote backend runs its I/O on its own runtime and the caller waits for it, exactly
//! as it waits for the local file's fsync.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::journal::{self, Journal, JournalError, JournalRecord};
use crate::lock::{self, LockError, LockInfo, LockRequest};
use crate::{StateDir, StateError, StateFile};

/// Where ferry keeps one deployment's state, journal and lock.
pub trait StateBackend: Send + Sync + std::fmt::Debug {
    /// Where the state is, for messages: a folder, or a blob URL without its query.
    fn location(&self) -> String;

    /// The lease a lock here gets: the CLI asks for this one.
    fn lease(&self) -> Duration;

    /// The state as saved now; the empty state before the first apply.
    fn load_state(&self) -> Result<StateFile, StateError>;

    /// Saves the state. A shared backend refuses with [`StateError::Conflict`] when someone
    /// else wrote it since this backend last loaded or saved it, and never overwrites it then.
    fn save_state(&self, state: &StateFile) -> Result<(), StateError>;

    /// Every journal record of the earlier applies, oldest first.
    fn read_journal(&self) -> Result<Vec<JournalRecord>, JournalError>;

    /// Opens the journal this apply appends to (the local file, plus the shared copy when
    /// there is one).
    fn open_journal(&self) -> Result<Journal, JournalError>;

    /// One attempt to take the lock: refused with [`LockError::Held`] (or `Stale`) naming the
    /// holder. See [`acquire_waiting`] to wait for it.
    fn acquire_lock(&self, request: &LockRequest) -> Result<LockInfo, LockError>;

    /// Keeps our lock alive for another `lease`, or says it was lost ([`LockError::Lost`]).
    /// A backend that renews in the background only reports how that goes.
    fn renew_lock(&self, id: &str, lease: Duration) -> Result<(), LockError>;

    /// Gives our lock up; refuses if the lock there is not ours any more.
    fn release_lock(&self, id: &str) -> Result<(), LockError>;

    /// The lock held now, if any.
    fn read_lock(&self) -> Result<Option<LockInfo>, LockError>;

    /// Breaks the lock with this id, whoever holds it, and returns what it held.
    fn force_unlock(&self, id: &str) -> Result<LockInfo, LockError>;

    /// Where the lock is, as [`LockError`] names it.
    fn lock_place(&self) -> PathBuf;
}

/// Takes the lock, waiting up to `timeout` while another apply holds it. A stale lock is
/// reported at once: waiting cannot clear it, only `ferry force-unlock` can.
pub fn acquire_waiting(
    backend: &dyn StateBackend,
    request: &LockRequest,
    timeout: Duration,
    poll: Duration,
) -> Result<LockInfo, LockError> {
    let give_up = std::time::Instant::now() + timeout;
    loop {
        match backend.acquire_lock(request) {
            Err(LockError::Held { .. }) if std::time::Instant::now() < give_up => {
                let left = give_up.saturating_duration_since(std::time::Instant::now());
                std::thread::sleep(poll.min(left).max(Duration::from_millis(10)));
            }
            other => return other,
        }
    }
}

/// The state folder on this machine: `state.json`, `journal.jsonl`, `lock.json`.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    directory: StateDir,
    lease: Duration,
}

impl LocalBackend {
    /// A local lock's lease: long, because only this machine's renewals keep it, and a stale
    /// local lock is reported, never taken over.
    pub const LEASE: Duration = Duration::from_secs(300);

    pub fn new(directory: StateDir) -> Self {
        Self {
            directory,
            lease: Self::LEASE,
        }
    }

    pub fn directory(&self) -> &StateDir {
        &self.directory
    }

    fn create(&self) -> std::io::Result<()> {
        self.directory.create()
    }
}

impl StateBackend for LocalBackend {
    fn location(&self) -> String {
        self.directory.root.display().to_string()
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn load_state(&self) -> Result<StateFile, StateError> {
        StateFile::load(&self.directory.state_path())
    }

    fn save_state(&self, state: &StateFile) -> Result<(), StateError> {
        // Locally the lock alone keeps writers apart: the file has no version to compare.
        state.save(&self.directory.state_path())
    }

    fn read_journal(&self) -> Result<Vec<JournalRecord>, JournalError> {
        journal::read_records(&self.directory.journal_path())
    }

    fn open_journal(&self) -> Result<Journal, JournalError> {
        let path = self.directory.journal_path();
        self.create()
            .map_err(|source| JournalError::Open { path, source })?;
        Journal::open(&self.directory.journal_path())
    }

    fn acquire_lock(&self, request: &LockRequest) -> Result<LockInfo, LockError> {
        let path = self.directory.lock_path();
        self.create().map_err(|source| LockError::Io {
            path: path.clone(),
            doing: "create the folder of",
            source,
        })?;
        lock::acquire(&path, request, SystemTime::now())
    }

    fn renew_lock(&self, id: &str, lease: Duration) -> Result<(), LockError> {
        lock::renew(&self.directory.lock_path(), id, lease, SystemTime::now()).map(|_| ())
    }

    fn release_lock(&self, id: &str) -> Result<(), LockError> {
        lock::release(&self.directory.lock_path(), id)
    }

    fn read_lock(&self) -> Result<Option<LockInfo>, LockError> {
        lock::read(&self.directory.lock_path())
    }

    fn force_unlock(&self, id: &str) -> Result<LockInfo, LockError> {
        lock::force_unlock(&self.directory.lock_path(), id)
    }

    fn lock_place(&self) -> PathBuf {
        self.directory.lock_path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(holder: &str) -> LockRequest {
        LockRequest {
            holder: holder.to_owned(),
            pid: std::process::id(),
            host: lock::this_host(),
            operation: "apply".to_owned(),
            lease: LocalBackend::LEASE,
        }
    }

    #[test]
    fn the_local_backend_round_trips_state_journal_and_lock() {
        let directory = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(StateDir::new(directory.path().join(".ferry")));
        assert_eq!(backend.load_state().unwrap(), StateFile::default());
        let lock = backend.acquire_lock(&request("alice")).unwrap();
        let state = StateFile {
            active_generation: 3,
            ..StateFile::default()
        };
        backend.save_state(&state).unwrap();
        assert_eq!(backend.load_state().unwrap(), state);
        let record = JournalRecord::ApplyStarted {
            apply_id: "a1".into(),
            at: "2024-05-02T13:00:00Z".into(),
            steps: 1,
        };
        backend.open_journal().unwrap().append(&record).unwrap();
        assert_eq!(backend.read_journal().unwrap(), vec![record]);
        backend.renew_lock(&lock.id, LocalBackend::LEASE).unwrap();
        assert_eq!(backend.read_lock().unwrap().unwrap().id, lock.id);
        backend.release_lock(&lock.id).unwrap();
        assert_eq!(backend.read_lock().unwrap(), None);
    }

    #[test]
    fn waiting_for_a_held_lock_gives_up_naming_the_holder() {
        let directory = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(StateDir::new(directory.path()));
        let held = backend.acquire_lock(&request("alice")).unwrap();
        let error = acquire_waiting(
            &backend,
            &request("bob"),
            Duration::from_millis(50),
            Duration::from_millis(10),
        )
        .unwrap_err();
        assert!(
            matches!(&error, LockError::Held { lock, .. } if lock.holder == "alice"),
            "{error}"
        );
        backend.release_lock(&held.id).unwrap();
        acquire_waiting(&backend, &request("bob"), Duration::ZERO, Duration::ZERO).unwrap();
    }
}
