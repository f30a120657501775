//! The one interface the engine and the CLI use for state, journal and lock, whatever holds them:
//! the local folder ([`LocalBackend`]) or a shared store such as Azure Blob Storage (the
//! `ferry-state-blob` crate).
//!
//! The interface is synchronous on purpose. The engine must write a journal record before a
//! step proceeds, including from inside a provider's `record_resume_token` callback, which is not
//! async; a remote backend runs its I/O on its own runtime and the caller waits for it, exactly
//! as it waits for the local file's fsync.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::journal::{self, Journal, JournalError, JournalRecord};
use crate::lock::{self, IfHolderRuns, LockError, LockInfo, LockRequest, ProcessLock};
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

    /// One attempt to take the lock: refused with [`LockError::Held`] (or `Running`, `Stale`)
    /// naming the holder. See [`acquire_waiting`] to wait for it.
    fn acquire_lock(&self, request: &LockRequest) -> Result<LockInfo, LockError>;

    /// Keeps our lock alive for another `lease`, or says it was lost ([`LockError::Lost`]).
    /// A backend that renews in the background only reports how that goes.
    fn renew_lock(&self, id: &str, lease: Duration) -> Result<(), LockError>;

    /// Says, cheaply, whether we still hold our lock ([`LockError::Lost`] when not): the engine
    /// asks before it starts each step, and starts none once the answer is no.
    fn verify_lock(&self, id: &str) -> Result<(), LockError>;

    /// Gives our lock up; refuses if the lock there is not ours any more.
    fn release_lock(&self, id: &str) -> Result<(), LockError>;

    /// The lock held now, if any.
    fn read_lock(&self) -> Result<Option<LockInfo>, LockError>;

    /// Breaks the lock with this id and returns what it held. A holder that provably still
    /// runs (this host, its pid alive and started when the lock says) is refused
    /// ([`LockError::HolderRuns`]) unless `if_running` says to break it anyway.
    fn force_unlock(&self, id: &str, if_running: IfHolderRuns) -> Result<LockInfo, LockError>;

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
            Err(error) if error.is_held() && std::time::Instant::now() < give_up => {
                let left = give_up.saturating_duration_since(std::time::Instant::now());
                std::thread::sleep(poll.min(left).max(Duration::from_millis(10)));
            }
            other => return other,
        }
    }
}

/// The state folder on this machine: `state.json`, `journal.jsonl`, `lock.json` (the lease)
/// and `lock.flock` (the process lock, held while an apply runs).
#[derive(Debug, Clone)]
pub struct LocalBackend {
    directory: StateDir,
    lease: Duration,
    /// The process lock this backend holds, with the id of the lease taken with it.
    held: Arc<Mutex<Option<(String, ProcessLock)>>>,
}

impl LocalBackend {
    /// A local lock's lease: long, because only this machine's renewals keep it, and a stale
    /// local lock is reported, never taken over.
    pub const LEASE: Duration = Duration::from_secs(300);

    pub fn new(directory: StateDir) -> Self {
        Self {
            directory,
            lease: Self::LEASE,
            held: Arc::new(Mutex::new(None)),
        }
    }

    pub fn directory(&self) -> &StateDir {
        &self.directory
    }

    fn create(&self) -> std::io::Result<()> {
        self.directory.create()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Option<(String, ProcessLock)>> {
        self.held
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Why the process lock at `path` could not be taken: who holds it, as its file says.
    fn process_lock_busy(&self, path: &std::path::Path) -> LockError {
        // A holder that is gone wrote this before it died, and the live one has not written
        // its name yet: say it is being taken rather than name the dead one.
        match ProcessLock::holder(path) {
            Some(holder) if !matches!(lock::liveness(&holder), lock::Liveness::Gone(_)) => {
                LockError::Running {
                    path: self.directory.lock_path(),
                    lock: Box::new(holder),
                }
            }
            _ => LockError::Busy {
                path: self.directory.lock_path(),
            },
        }
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
        // The process lock first: while another process holds it, that process runs, whatever
        // the lease file says or whether it is there at all.
        let process_path = self.directory.process_lock_path();
        let Some(mut process_lock) = ProcessLock::try_take(&process_path)? else {
            return Err(self.process_lock_busy(&process_path));
        };
        // A lease left by a process that died is reported (stale), never taken over; dropping
        // the process lock on the way out lets it go.
        let info = lock::acquire(&path, request, SystemTime::now())?;
        if let Err(error) = process_lock.record(&info) {
            let _ = lock::release(&path, &info.id);
            return Err(error);
        }
        if let Some((_, previous)) = self.held().replace((info.id.clone(), process_lock)) {
            previous.release();
        }
        Ok(info)
    }

    fn renew_lock(&self, id: &str, lease: Duration) -> Result<(), LockError> {
        lock::renew(&self.directory.lock_path(), id, lease, SystemTime::now()).map(|_| ())
    }

    fn verify_lock(&self, id: &str) -> Result<(), LockError> {
        let lost = || LockError::Lost {
            path: self.directory.lock_path(),
            id: id.to_owned(),
        };
        match &*self.held() {
            Some((held_id, process_lock)) if held_id == id => {
                if !process_lock.still_in_place() {
                    return Err(LockError::Lost {
                        path: process_lock.path().to_owned(),
                        id: id.to_owned(),
                    });
                }
            }
            _ => return Err(lost()),
        }
        lock::verify(&self.directory.lock_path(), id)
    }

    fn release_lock(&self, id: &str) -> Result<(), LockError> {
        let released = lock::release(&self.directory.lock_path(), id);
        // The process lock goes whatever became of the lease: this apply is over.
        let mut held = self.held();
        if held.as_ref().is_some_and(|(held_id, _)| held_id == id)
            && let Some((_, process_lock)) = held.take()
        {
            process_lock.release();
        }
        released
    }

    fn read_lock(&self) -> Result<Option<LockInfo>, LockError> {
        lock::read(&self.directory.lock_path())
    }

    fn force_unlock(&self, id: &str, if_running: IfHolderRuns) -> Result<LockInfo, LockError> {
        lock::force_unlock(&self.directory.lock_path(), id, if_running)
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
            process_start: lock::process_start_time(std::process::id()),
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
            format_version: crate::journal::JOURNAL_FORMAT_VERSION.into(),
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
            matches!(&error, LockError::Running { lock, .. } if lock.holder == "alice"),
            "{error}"
        );
        backend.release_lock(&held.id).unwrap();
        acquire_waiting(&backend, &request("bob"), Duration::ZERO, Duration::ZERO).unwrap();
    }

    /// What `ls` shows of the state folder, with the lock's id and pid replaced.
    fn shown(error: &LockError, directory: &std::path::Path, lock: &LockInfo) -> String {
        error
            .to_string()
            .replace(&directory.display().to_string(), "<dir>")
            .replace(&lock.id, "<id>")
            .replace(&format!("(pid {})", lock.pid), "(pid <pid>)")
            .replace(&lock.host, "<host>")
            .replace(&lock.started_at, "<time>")
    }

    #[test]
    fn deleting_the_lease_file_lets_no_second_apply_in_and_the_holder_learns_it() {
        let directory = tempfile::tempdir().unwrap();
        let state = StateDir::new(directory.path());
        let holder = LocalBackend::new(state.clone());
        let lock = holder.acquire_lock(&request("alice")).unwrap();
        holder.verify_lock(&lock.id).unwrap();
        std::fs::remove_file(state.lock_path()).unwrap();
        // Another operator's ferry, a backend of its own over the same folder.
        let other = LocalBackend::new(state.clone());
        let refused = other.acquire_lock(&request("bob")).unwrap_err();
        insta::assert_snapshot!(shown(&refused, directory.path(), &lock), @"<dir>/lock.json is locked by alice@<host> (pid <pid>) for `apply` since <time>, and that process still runs (it holds the lock file open): wait for it to finish (`--lock-timeout 10m` waits), or stop that process; its lock frees itself when it ends");
        // The holder stops before its next step.
        let lost = holder.verify_lock(&lock.id).unwrap_err();
        assert!(matches!(lost, LockError::Lost { .. }), "{lost}");
        // Releasing frees the process lock even though the lease is gone.
        assert!(holder.release_lock(&lock.id).is_err());
        other.acquire_lock(&request("bob")).unwrap();
    }

    #[test]
    fn deleting_the_process_lock_file_is_noticed_by_the_holder() {
        let directory = tempfile::tempdir().unwrap();
        let state = StateDir::new(directory.path());
        let holder = LocalBackend::new(state.clone());
        let lock = holder.acquire_lock(&request("alice")).unwrap();
        std::fs::remove_file(state.process_lock_path()).unwrap();
        let lost = holder.verify_lock(&lock.id).unwrap_err();
        assert!(matches!(lost, LockError::Lost { .. }), "{lost}");
    }

    #[test]
    fn a_stale_lease_is_reported_and_the_process_lock_let_go() {
        let directory = tempfile::tempdir().unwrap();
        let state = StateDir::new(directory.path());
        // A lease a dead process left (kill -9): its process lock died with it.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        lock::acquire(
            &state.lock_path(),
            &LockRequest {
                pid: dead,
                process_start: None,
                ..request("alice")
            },
            SystemTime::now(),
        )
        .unwrap();
        let backend = LocalBackend::new(state.clone());
        let error = backend.acquire_lock(&request("bob")).unwrap_err();
        assert!(matches!(error, LockError::Stale { .. }), "{error}");
        // Refused, so the process lock is free again for whoever force-unlocks and applies.
        assert!(
            ProcessLock::try_take(&state.process_lock_path())
                .unwrap()
                .is_some()
        );
    }
}
