//! Where the state, journal and lock files sit inside a state directory.

use std::path::{Path, PathBuf};

/// A directory holding one deployment's state files (`<spec dir>/.ferry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    pub root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The conventional place for a spec in `spec_dir`.
    pub fn for_spec_dir(spec_dir: &Path) -> Self {
        Self::new(spec_dir.join(".ferry"))
    }

    pub fn state_path(&self) -> PathBuf {
        self.root.join("state.json")
    }

    pub fn journal_path(&self) -> PathBuf {
        self.root.join("journal.jsonl")
    }

    pub fn lock_path(&self) -> PathBuf {
        self.root.join("lock.json")
    }

    /// The file an applying process holds its OS lock on ([`crate::lock::ProcessLock`]).
    pub fn process_lock_path(&self) -> PathBuf {
        self.root.join("lock.flock")
    }

    /// Creates the directory if needed, so that the first apply can write its files.
    pub fn create(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.root)
    }
}
