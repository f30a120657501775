//! Where an apply keeps what it must not lose: the state, the journal, and what the journal
//! says about an earlier apply that did not finish.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use ferry_state::journal::JournalError;
use ferry_state::lock::LockError;
use ferry_state::{
    Journal, JournalSummary, LocalBackend, StateBackend, StateDir, StateError, StateFile,
};

/// The state and journal an apply reads and writes.
#[derive(Debug, Default)]
pub struct Store {
    /// Updated with each successful step's outputs.
    pub state: StateFile,
    /// Where the state is saved after each successful step and the lock is renewed: the local
    /// folder or a shared store. `None` uses `state_path` and `HeldLock::path` instead.
    pub backend: Option<Arc<dyn StateBackend>>,
    /// Without a backend: the file to save `state` to after each successful step; `None`
    /// keeps it in memory only.
    pub state_path: Option<PathBuf>,
    /// Where to journal each step; `None` journals nothing (tests, benchmarks).
    pub journal: Option<Journal>,
    /// The journal of the applies since the last complete one: its finished steps are not run
    /// again, and its started-but-unfinished steps resume their recorded operations. Set it to
    /// `JournalSummary::default()` to run every step afresh.
    pub resume: JournalSummary,
    /// The lock this apply holds (from [`StateBackend::acquire_lock`]). The engine checks it
    /// still holds it before starting each step ([`Store::verify_lock`]) and when every step
    /// ended, renews its lease every third of the lease while it runs, and starts no step once
    /// it was lost (someone ran `ferry force-unlock` or deleted the lock): a lost lock fails
    /// the apply.
    pub lock: Option<HeldLock>,
}

/// A lock taken before the apply, for the engine to keep renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    /// Where the lock is ([`StateBackend::lock_place`]); renewed there directly when the
    /// store has no backend.
    pub path: PathBuf,
    pub id: String,
    pub lease: Duration,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "cannot create state directory {path}: {}",
        ferry_state::describe_io(source, path)
    )]
    Directory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

impl Store {
    /// A store that lives in memory only.
    pub fn in_memory(state: StateFile) -> Self {
        Self {
            state,
            ..Self::default()
        }
    }

    /// Loads the state and the journal's summary from the local `directory` and opens the
    /// journal for appending. Take the lock first.
    pub fn open(directory: &StateDir) -> Result<Self, StoreError> {
        directory.create().map_err(|source| StoreError::Directory {
            path: directory.root.clone(),
            source,
        })?;
        Self::open_backend(Arc::new(LocalBackend::new(directory.clone())))
    }

    /// Loads the state and the journal's summary from `backend` and opens its journal for
    /// appending. Take the lock (`StateBackend::acquire_lock`) first, so that nobody writes
    /// between this read and the apply's writes.
    pub fn open_backend(backend: Arc<dyn StateBackend>) -> Result<Self, StoreError> {
        Ok(Self {
            state: backend.load_state()?,
            resume: JournalSummary::from_records(&backend.read_journal()?),
            journal: Some(backend.open_journal()?),
            backend: Some(backend),
            state_path: None,
            lock: None,
        })
    }

    /// Saves `state` where this store keeps it (nowhere for an in-memory store).
    pub fn save_state(&self, state: &StateFile) -> Result<(), StateError> {
        match (&self.backend, &self.state_path) {
            (Some(backend), _) => backend.save_state(state),
            (None, Some(path)) => state.save(path),
            (None, None) => Ok(()),
        }
    }

    /// Says whether this store still holds its lock (always, without one): asked before each
    /// step starts, so that a lock broken by `ferry force-unlock` or deleted stops the apply at
    /// its next step, not at its next renewal.
    pub fn verify_lock(&self) -> Result<(), LockError> {
        match (&self.lock, &self.backend) {
            (None, _) => Ok(()),
            (Some(lock), Some(backend)) => backend.verify_lock(&lock.id),
            (Some(lock), None) => ferry_state::lock::verify(&lock.path, &lock.id),
        }
    }

    /// Renews the lock this store holds, if any.
    pub fn renew_lock(&self) -> Result<(), LockError> {
        match (&self.lock, &self.backend) {
            (None, _) => Ok(()),
            (Some(lock), Some(backend)) => backend.renew_lock(&lock.id, lock.lease),
            (Some(lock), None) => {
                ferry_state::lock::renew(&lock.path, &lock.id, lock.lease, SystemTime::now())
                    .map(|_| ())
            }
        }
    }
}
