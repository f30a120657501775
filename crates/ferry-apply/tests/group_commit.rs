//! Steps that end together are saved together: the state is written once for all of them
//! and their ends journaled with one fsync, so that a wide plan of short steps (200 hooks) is
//! not bound by one state save and two journal fsyncs per step. Counted on a state backend
//! that counts its saves, with steps that take their estimates on tokio's paused clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ferry_apply::{ApplyConfig, ApplyControl, HeldLock, Store, apply};
use ferry_core::Kind;
use ferry_state::journal::JournalError;
use ferry_state::{
    IfHolderRuns, JournalRecord, LocalBackend, LockError, LockInfo, LockRequest, StateBackend,
    StateDir, StateError, StateFile,
};
use ferry_testkit::random::{plan_of, step};
use ferry_world::{Behaviour, World, memory_providers};

/// The local backend, counting the state's saves.
#[derive(Debug)]
struct CountingBackend {
    inner: LocalBackend,
    saves: AtomicUsize,
}

impl StateBackend for CountingBackend {
    fn location(&self) -> String {
        self.inner.location()
    }
    fn lease(&self) -> Duration {
        self.inner.lease()
    }
    fn load_state(&self) -> Result<StateFile, StateError> {
        self.inner.load_state()
    }
    fn save_state(&self, state: &StateFile) -> Result<(), StateError> {
        self.saves.fetch_add(1, Ordering::SeqCst);
        self.inner.save_state(state)
    }
    fn read_journal(&self) -> Result<Vec<JournalRecord>, JournalError> {
        self.inner.read_journal()
    }
    fn open_journal(&self) -> Result<ferry_state::Journal, JournalError> {
        self.inner.open_journal()
    }
    fn acquire_lock(&self, request: &LockRequest) -> Result<LockInfo, LockError> {
        self.inner.acquire_lock(request)
    }
    fn renew_lock(&self, id: &str, lease: Duration) -> Result<(), LockError> {
        self.inner.renew_lock(id, lease)
    }
    fn verify_lock(&self, id: &str) -> Result<(), LockError> {
        self.inner.verify_lock(id)
    }
    fn release_lock(&self, id: &str) -> Result<(), LockError> {
        self.inner.release_lock(id)
    }
    fn read_lock(&self) -> Result<Option<LockInfo>, LockError> {
        self.inner.read_lock()
    }
    fn force_unlock(&self, id: &str, if_running: IfHolderRuns) -> Result<LockInfo, LockError> {
        self.inner.force_unlock(id, if_running)
    }
    fn lock_place(&self) -> std::path::PathBuf {
        self.inner.lock_place()
    }
}

#[tokio::test(start_paused = true)]
async fn steps_that_end_together_are_saved_and_journaled_together() {
    let folder = tempfile::tempdir().unwrap();
    let backend = Arc::new(CountingBackend {
        inner: LocalBackend::new(StateDir::new(folder.path().join("state"))),
        saves: AtomicUsize::new(0),
    });
    // 20 hooks that all take 10 s, and 20 that take 20 s: two moments at which steps end.
    let steps = (0..40)
        .map(|index| {
            let seconds = if index < 20 { 10 } else { 20 };
            step(&format!("hook.h{index}:create"), seconds, &[])
        })
        .collect();
    let plan = plan_of(steps);
    let world = World::new();
    let providers = memory_providers(&world, |provider| {
        provider
            .behaviour(Behaviour::from_estimates())
            .concurrency(40)
    });
    let lock = HeldLock::take(&*backend, "test").unwrap();
    let mut store = Store::open_backend(backend.clone(), lock).unwrap();
    let config = ApplyConfig {
        parallelism: 40,
        ..ApplyConfig::default()
    };
    let report = apply(
        &plan,
        &providers,
        &config,
        &mut store,
        &ApplyControl::new(),
        &|_| {},
    )
    .await
    .unwrap();
    assert!(report.succeeded(), "{report:?}");
    assert_eq!(world.max_running_of(Kind::Hook), 40);
    // One save per moment at which steps ended (one step per save would be 40), and one for
    // the generation the apply converged at the end.
    assert_eq!(backend.saves.load(Ordering::SeqCst), 3);
    // Every step's start and end are in the journal, each once.
    let records = backend.read_journal().unwrap();
    let count = |started: bool| {
        records
            .iter()
            .filter(|record| match record {
                JournalRecord::StepStarted { .. } => started,
                JournalRecord::StepFinished { .. } => !started,
                _ => false,
            })
            .count()
    };
    assert_eq!((count(true), count(false)), (40, 40));
    store.release_lock().unwrap();
}
