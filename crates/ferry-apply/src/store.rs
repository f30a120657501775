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

/// The state and journal an apply reads and writes, and the lock it holds.
///
/// A store over a state backend is opened only with the lock taken ([`Store::open_backend`]):
/// the state and journal that other processes share are never written without it. An
/// in-memory store (tests, benchmarks, a library user with no state to share) needs none.
/// `ferry_ops::Deployment::apply` takes the lock, opens the store and applies in one call.
#[derive(Debug, Default)]
pub struct Store {
    /// Updated with each successful step's outputs.
    pub state: StateFile,
    /// Where the state is saved after each successful step and the lock is renewed: the local
    /// folder or a shared store. `None` uses `state_path` and `HeldLock::path` instead.
    pub(crate) backend: Option<Arc<dyn StateBackend>>,
    /// Without a backend: the file to save `state` to after each successful step; `None`
    /// keeps it in memory only.
    pub(crate) state_path: Option<PathBuf>,
    /// Where to journal each step; `None` journals nothing (tests, benchmarks).
    pub(crate) journal: Option<Journal>,
    /// The journal of the applies since the last complete one: its finished steps are not run
    /// again, and its started-but-unfinished steps resume from their recorded resume tokens.
    /// Set it to `JournalSummary::default()` to run every step afresh.
    pub resume: JournalSummary,
    /// The lock this apply holds (from [`StateBackend::acquire_lock`]). The engine checks it
    /// still holds it before starting each step ([`Store::verify_lock`]) and when every step
    /// ended, renews its lease every third of the lease while it runs, and starts no step once
    /// it was lost (someone ran `ferry force-unlock` or deleted the lock): a lost lock fails
    /// the apply.
    pub(crate) lock: Option<HeldLock>,
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

impl HeldLock {
    /// Takes `backend`'s lock for this process now, without waiting: the lock a store over
    /// that backend is opened with. (`ferry_ops` waits for a held lock; this does not.)
    pub fn take(backend: &dyn StateBackend, operation: &str) -> Result<Self, LockError> {
        let lease = backend.lease();
        let info = backend.acquire_lock(&ferry_state::LockRequest::for_this_process(
            operation, lease,
        ))?;
        Ok(Self {
            path: backend.lock_place(),
            id: info.id,
            lease,
        })
    }
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
    #[error(transparent)]
    Lock(#[from] LockError),
}

impl Store {
    /// A store that lives in memory only.
    pub fn in_memory(state: StateFile) -> Self {
        Self {
            state,
            ..Self::default()
        }
    }

    /// An in-memory store that also saves the state to `path` after each successful step,
    /// with no journal and no lock: for tests of what a failed save does.
    pub fn saving_to(mut self, path: PathBuf) -> Self {
        self.state_path = Some(path);
        self
    }

    /// An in-memory store that also journals to `journal`, with no lock: for tests of what the
    /// journal records.
    pub fn journaling_to(mut self, journal: Journal) -> Self {
        self.journal = Some(journal);
        self
    }

    /// This store holds `lock`: the engine checks it before each step and renews it. Without
    /// a backend, the lock is the local lock file at `lock.path`.
    pub fn holding(mut self, lock: HeldLock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// The lock this store holds, if any.
    pub fn lock(&self) -> Option<&HeldLock> {
        self.lock.as_ref()
    }

    /// Takes the lock of the local `directory` for this process (without waiting) and opens
    /// the store under it; [`Store::release_lock`] gives it back.
    pub fn lock_and_open(directory: &StateDir, operation: &str) -> Result<Self, StoreError> {
        directory.create().map_err(|source| StoreError::Directory {
            path: directory.root.clone(),
            source,
        })?;
        let backend = Arc::new(LocalBackend::new(directory.clone()));
        let lock = HeldLock::take(&*backend, operation)?;
        Self::open_backend(backend, lock)
    }

    /// Gives back the lock this store holds, if any: an apply's caller does, once the apply
    /// ended, whatever happened.
    pub fn release_lock(&mut self) -> Result<(), LockError> {
        match (self.lock.take(), &self.backend) {
            (Some(lock), Some(backend)) => backend.release_lock(&lock.id),
            (Some(lock), None) => ferry_state::lock::release(&lock.path, &lock.id),
            (None, _) => Ok(()),
        }
    }

    /// Loads the state and the journal's summary from `backend` and opens its journal for
    /// appending, under `lock`: taken first (`StateBackend::acquire_lock`), so that nobody
    /// writes between this read and the apply's writes.
    ///
    /// When the state or the journal cannot be read, the lock is given back before the error
    /// is returned: nobody holds a store that was never opened, so nobody else would.
    pub fn open_backend(
        backend: Arc<dyn StateBackend>,
        lock: HeldLock,
    ) -> Result<Self, StoreError> {
        let opened = (|| -> Result<_, StoreError> {
            let state = backend.load_state()?;
            let resume = JournalSummary::from_records(&backend.read_journal()?);
            let journal = backend.open_journal()?;
            Ok((state, resume, journal))
        })();
        match opened {
            Ok((state, resume, journal)) => Ok(Self {
                state,
                resume,
                journal: Some(journal),
                backend: Some(backend),
                state_path: None,
                lock: Some(lock),
            }),
            Err(error) => {
                // The read's error is the one to report; a failed release leaves a lease that
                // `ferry force-unlock` clears, and the process lock goes with the process.
                let _ = backend.release_lock(&lock.id);
                Err(error)
            }
        }
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
