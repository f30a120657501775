//! Where an apply keeps what it must not lose: the state, the journal, and what the journal
//! says about an earlier apply that did not finish.

use std::path::PathBuf;
use std::time::Duration;

use ferry_state::journal::{self, JournalError};
use ferry_state::{Journal, JournalSummary, StateDir, StateError, StateFile};

/// The state and journal an apply reads and writes.
#[derive(Debug, Default)]
pub struct Store {
    /// Updated with each successful step's outputs.
    pub state: StateFile,
    /// Where to save `state` after each successful step; `None` keeps it in memory only.
    pub state_path: Option<PathBuf>,
    /// Where to journal each step; `None` journals nothing (tests, benchmarks).
    pub journal: Option<Journal>,
    /// The journal of the applies since the last complete one: its finished steps are not run
    /// again, and its started-but-unfinished steps resume their recorded operations. Set it to
    /// `JournalSummary::default()` to run every step afresh.
    pub resume: JournalSummary,
    /// The lock this apply holds (from `ferry_state::lock::acquire`). The engine renews its
    /// lease every third of the lease while it runs, and stops starting steps if the lock was
    /// lost (someone ran `ferry force-unlock`).
    pub lock: Option<HeldLock>,
}

/// A lock taken before the apply, for the engine to keep renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    pub path: PathBuf,
    pub id: String,
    pub lease: Duration,
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create state directory {path}: {source}")]
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

    /// Loads the state and the journal's summary from `directory` and opens the journal for
    /// appending. Take the lock (`ferry_state::lock::acquire`) first.
    pub fn open(directory: &StateDir) -> Result<Self, StoreError> {
        directory.create().map_err(|source| StoreError::Directory {
            path: directory.root.clone(),
            source,
        })?;
        let state_path = directory.state_path();
        let journal_path = directory.journal_path();
        Ok(Self {
            state: StateFile::load(&state_path)?,
            state_path: Some(state_path),
            resume: journal::read_summary(&journal_path)?,
            journal: Some(Journal::open(&journal_path)?),
            lock: None,
        })
    }
}
