//! The Azure Blob state backend against a real Azurite over HTTPS: state round trip, ETag
//! conflicts between two writers, the lease lock (refusal naming the holder, expiry after a
//! crash, force-unlock, background renewal), the shared journal, SAS URLs, and a service that
//! stops answering.

mod azurite;

use std::time::Duration;

use ferry_core::Secret;
use ferry_state::journal::JournalRecord;
use ferry_state::lock::{IfHolderRuns, LockError, LockRequest};
use ferry_state::{StateBackend, StateError, StateFile, acquire_waiting};
use ferry_state_blob::{BlobAuth, BlobBackend, BlobStateConfig};

use azurite::azurite;
use ferry_servers::Azurite;

fn request(holder: &str) -> LockRequest {
    LockRequest {
        holder: holder.to_owned(),
        pid: std::process::id(),
        host: "test-host".to_owned(),
        operation: "apply data100".to_owned(),
        lease: BlobStateConfig::SHORTEST_LEASE,
        // Another host's process: force-unlock cannot see whether it runs.
        process_start: None,
    }
}

fn state(generation: u32) -> StateFile {
    let mut state = StateFile {
        active_generation: generation,
        ..StateFile::default()
    };
    state.record_outputs(
        &"vm.nfs@g1".parse().unwrap(),
        [(
            "id".to_owned(),
            serde_json::json!("/subscriptions/x/vm/nfs-g1"),
        )]
        .into(),
    );
    state
}

fn started(apply: &str) -> JournalRecord {
    JournalRecord::ApplyStarted {
        format_version: ferry_state::JOURNAL_FORMAT_VERSION.to_owned(),
        apply_id: apply.to_owned(),
        at: "2024-05-02T13:00:00Z".to_owned(),
        steps: 3,
    }
}

/// Retries `attempt` once a second until it returns `Some`, for at most `limit`: for what the
/// service decides in its own time (a lease running out). Never asserts a duration.
fn eventually<T>(limit: Duration, mut attempt: impl FnMut() -> Option<T>) -> T {
    let give_up = std::time::Instant::now() + limit;
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(
            std::time::Instant::now() < give_up,
            "still not so after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn state_and_journal_round_trip_through_the_blobs() {
    let local = tempfile::tempdir().unwrap();
    let writer = azurite().backend("roundtrip", "data100/state.json", local.path());
    assert_eq!(writer.load_state().unwrap(), StateFile::default());
    writer.save_state(&state(1)).unwrap();
    // A second save goes on from the version the first one wrote.
    writer.save_state(&state(2)).unwrap();
    let journal = writer.open_journal().unwrap();
    journal.append(&started("a1")).unwrap();
    journal.append(&started("a2")).unwrap();

    // Another machine: a fresh backend with its own local journal.
    let elsewhere = tempfile::tempdir().unwrap();
    let reader = azurite().backend("roundtrip", "data100/state.json", elsewhere.path());
    assert_eq!(reader.load_state().unwrap(), state(2));
    assert_eq!(
        reader.read_journal().unwrap(),
        vec![started("a1"), started("a2")]
    );
    // Opening the journal again keeps what is there.
    reader
        .open_journal()
        .unwrap()
        .append(&started("a3"))
        .unwrap();
    assert_eq!(writer.read_journal().unwrap().len(), 3);
    // The writer's machine has its own copy of what it wrote.
    let local_copy =
        ferry_state::journal::read_records(&local.path().join("journal.jsonl")).unwrap();
    assert_eq!(local_copy, vec![started("a1"), started("a2")]);
    assert!(
        writer
            .location()
            .ends_with("/devstoreaccount1/roundtrip/data100/state.json")
    );
}

#[test]
fn two_writers_never_silently_overwrite_each_other() {
    let local = tempfile::tempdir().unwrap();
    let first = azurite().backend("writers", "state.json", local.path());
    let second = azurite().backend("writers", "state.json", local.path());
    assert_eq!(first.load_state().unwrap(), StateFile::default());
    assert_eq!(second.load_state().unwrap(), StateFile::default());
    first.save_state(&state(1)).unwrap();
    // Both read an empty state; the second write would replace the first's.
    let error = second.save_state(&state(7)).unwrap_err();
    assert!(matches!(error, StateError::Conflict { .. }), "{error}");
    let message = error
        .to_string()
        .replace(&azurite().port.to_string(), "PORT");
    assert_eq!(
        message,
        "state https://127.0.0.1:PORT/devstoreaccount1/writers/state.json was changed by someone else since this ferry read it: nothing was overwritten; make sure no other apply runs without the lock, then run the command again to start from the new state"
    );
    assert_eq!(first.load_state().unwrap(), state(1));
    // Once it has read the new version, the second writer may write; now the first is stale.
    assert_eq!(second.load_state().unwrap(), state(1));
    second.save_state(&state(2)).unwrap();
    assert!(matches!(
        first.save_state(&state(3)).unwrap_err(),
        StateError::Conflict { .. }
    ));
    assert_eq!(second.load_state().unwrap(), state(2));
    // A backend that never read the state does not write it blind.
    let blind = azurite().backend("writers", "state.json", local.path());
    assert!(matches!(
        blind.save_state(&state(9)).unwrap_err(),
        StateError::Conflict { .. }
    ));
}

#[test]
fn a_held_lease_refuses_a_second_apply_naming_the_holder_until_released() {
    let local = tempfile::tempdir().unwrap();
    let alice = azurite().backend("held", "state.json", local.path());
    let bob = azurite().backend("held", "state.json", local.path());
    let lock = alice.acquire_lock(&request("alice")).unwrap();
    let error = acquire_waiting(
        &bob,
        &request("bob"),
        Duration::from_secs(2),
        Duration::from_millis(500),
    )
    .unwrap_err();
    let LockError::Held { lock: holder, .. } = &error else {
        panic!("expected a held lock, got {error}");
    };
    assert_eq!(holder.id, lock.id);
    assert_eq!(holder.holder, "alice");
    assert_eq!(holder.host, "test-host");
    assert_eq!(holder.pid, std::process::id());
    assert_eq!(holder.operation, "apply data100");
    assert_eq!(holder.started_at, lock.started_at);
    let message = error
        .to_string()
        .replace(&azurite().port.to_string(), "PORT")
        .replace(&lock.id, "ID")
        .replace(&std::process::id().to_string(), "PID")
        .replace(&lock.started_at, "START")
        .replace(&holder.expires_at, "END");
    assert_eq!(
        message,
        "https://127.0.0.1:PORT/devstoreaccount1/held/state.json.lock is locked by alice@test-host (pid PID) for `apply data100` since START, lease until END: wait for it to finish, or if you are sure it is not running, run `ferry force-unlock ID`"
    );
    assert_eq!(bob.read_lock().unwrap().unwrap().id, lock.id);
    // Only the holder releases; then the lock is free at once.
    assert!(matches!(
        bob.release_lock(&lock.id).unwrap_err(),
        LockError::Lost { .. }
    ));
    alice.release_lock(&lock.id).unwrap();
    assert_eq!(alice.read_lock().unwrap(), None);
    let taken = bob.acquire_lock(&request("bob")).unwrap();
    bob.release_lock(&taken.id).unwrap();
}

#[test]
fn a_crashed_holders_lease_expires_and_the_lock_can_then_be_taken() {
    let local = tempfile::tempdir().unwrap();
    let crashed = azurite().backend("crash", "state.json", local.path());
    let lock = crashed.acquire_lock(&request("alice")).unwrap();
    // Dropping the backend stops its renewals without releasing, as a kill -9 would.
    drop(crashed);
    let bob = azurite().backend("crash", "state.json", local.path());
    assert!(matches!(
        bob.acquire_lock(&request("bob")).unwrap_err(),
        LockError::Held { .. }
    ));
    // Waiting longer than the 15 s lease gets the lock: nobody had to break it.
    let taken = acquire_waiting(
        &bob,
        &request("bob"),
        Duration::from_secs(60),
        Duration::from_secs(1),
    )
    .unwrap();
    assert_ne!(taken.id, lock.id);
    assert_eq!(bob.read_lock().unwrap().unwrap().holder, "bob");
    bob.release_lock(&taken.id).unwrap();
}

#[test]
fn force_unlock_breaks_only_the_named_lease_and_the_holder_learns_it_lost_it() {
    let local = tempfile::tempdir().unwrap();
    let alice = azurite().backend("unlock", "state.json", local.path());
    let operator = azurite().backend("unlock", "state.json", local.path());
    assert!(matches!(
        operator
            .force_unlock("anything", IfHolderRuns::Refuse)
            .unwrap_err(),
        LockError::NotLocked { .. }
    ));
    let lock = alice.acquire_lock(&request("alice")).unwrap();
    let wrong = operator
        .force_unlock("not-the-id", IfHolderRuns::Refuse)
        .unwrap_err();
    let LockError::WrongId { found, .. } = &wrong else {
        panic!("expected a wrong id, got {wrong}");
    };
    assert_eq!(found, &lock.id);
    // The wrong id broke nothing.
    assert!(matches!(
        operator.acquire_lock(&request("bob")).unwrap_err(),
        LockError::Held { .. }
    ));
    let broken = operator
        .force_unlock(&lock.id, IfHolderRuns::Refuse)
        .unwrap();
    assert_eq!(broken.holder, "alice");
    let taken = operator.acquire_lock(&request("bob")).unwrap();
    // Alice's background renewal finds its lease gone, and her engine would stop.
    eventually(Duration::from_secs(60), || {
        alice
            .renew_lock(&lock.id, BlobStateConfig::SHORTEST_LEASE)
            .err()
    });
    assert!(matches!(
        alice.release_lock(&lock.id).unwrap_err(),
        LockError::Lost { .. } | LockError::Remote { .. }
    ));
    assert_eq!(operator.read_lock().unwrap().unwrap().holder, "bob");
    operator.release_lock(&taken.id).unwrap();
}

#[test]
fn renewal_keeps_the_lock_past_its_lease() {
    let local = tempfile::tempdir().unwrap();
    let alice = azurite().backend("renewal", "state.json", local.path());
    let bob = azurite().backend("renewal", "state.json", local.path());
    let lock = alice.acquire_lock(&request("alice")).unwrap();
    // Longer than the 15 s lease: only the background renewals keep it.
    std::thread::sleep(Duration::from_secs(20));
    assert!(matches!(
        bob.acquire_lock(&request("bob")).unwrap_err(),
        LockError::Held { .. }
    ));
    alice
        .renew_lock(&lock.id, BlobStateConfig::SHORTEST_LEASE)
        .unwrap();
    // The renewals keep the recorded lease end current.
    let seen = bob.read_lock().unwrap().unwrap();
    assert_ne!(seen.expires_at, lock.expires_at);
    alice.release_lock(&lock.id).unwrap();
    let taken = bob.acquire_lock(&request("bob")).unwrap();
    bob.release_lock(&taken.id).unwrap();
}

#[test]
fn a_sas_url_reaches_the_same_blobs_without_a_token() {
    let local = tempfile::tempdir().unwrap();
    // The container is made with a token; the SAS then does everything else.
    azurite().backend("sas", "state.json", local.path());
    let (container_url, signature) =
        BlobStateConfig::split_sas_url(&Secret::new(azurite().sas_url("sas"))).unwrap();
    let config = BlobStateConfig {
        container_url,
        auth: BlobAuth::Sas(signature),
        ..azurite().config("sas", "state.json", local.path())
    };
    let backend = BlobBackend::new(config).unwrap();
    assert_eq!(backend.load_state().unwrap(), StateFile::default());
    backend.save_state(&state(4)).unwrap();
    backend
        .open_journal()
        .unwrap()
        .append(&started("s1"))
        .unwrap();
    let lock = backend.acquire_lock(&request("carol")).unwrap();
    // The signature never shows in a place or a message.
    assert!(!backend.location().contains("sig="));
    assert!(!format!("{backend:?}").contains("sig="));
    backend.release_lock(&lock.id).unwrap();
    let token_reader = azurite().backend("sas", "state.json", local.path());
    assert_eq!(token_reader.load_state().unwrap(), state(4));
    assert_eq!(token_reader.read_journal().unwrap(), vec![started("s1")]);

    let missing = BlobStateConfig::split_sas_url(&Secret::new(
        "https://127.0.0.1:1/devstoreaccount1/sas?sv=2018-11-09",
    ))
    .unwrap_err();
    assert_eq!(
        missing.to_string(),
        "azure_blob state: the SAS URL has no signature (sig=...): generate a container SAS with read, add, create and write permissions"
    );
}

/// Stands in for a service that accepts connections and drops them at once, on the port of a
/// stopped Azurite, counting the connections: each is one attempt of a request.
struct DroppingEverything {
    attempts: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DroppingEverything {
    fn on(port: u16) -> Self {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let attempts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = std::thread::spawn({
            let attempts = attempts.clone();
            let stop = stop.clone();
            move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((connection, _)) => {
                            attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            drop(connection);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            }
        });
        DroppingEverything {
            attempts,
            stop,
            thread: Some(thread),
        }
    }

    fn attempts(&self) -> usize {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for DroppingEverything {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// An apply whose storage goes away must end, not retry every remaining write for a minute
/// each: the first request that finds the service unreachable is retried for `retry_for`,
/// later ones are tried once, until the service answers again. Nothing is written meanwhile.
#[test]
fn an_unreachable_service_is_retried_for_a_while_then_tried_once_until_it_answers() {
    let folder = tempfile::tempdir().unwrap();
    let local = tempfile::tempdir().unwrap();
    let mut server = Azurite::start(&folder.path().join("azurite")).unwrap();
    let config = BlobStateConfig {
        retry_for: Duration::from_secs(3),
        ..azurite::config(&server, "down", "state.json", local.path())
    };
    let backend = BlobBackend::new(config).unwrap();
    backend.create_container().unwrap();
    assert_eq!(backend.load_state().unwrap(), StateFile::default());
    backend.save_state(&state(1)).unwrap();

    server.stop().unwrap();
    let dropping = DroppingEverything::on(server.port);
    let error = backend.save_state(&state(2)).unwrap_err();
    let message = error.to_string().replace(&server.port.to_string(), "PORT");
    assert!(
        message.starts_with(
            "cannot save state https://127.0.0.1:PORT/devstoreaccount1/down/state.json: the storage service cannot be reached ("
        ) && message.ends_with("): check the endpoint and the network"),
        "{message}"
    );
    let first = dropping.attempts();
    assert!(first > 1, "the first request is retried: {first} attempts");
    // Known to be unreachable: each request is now tried once, whatever it is.
    assert!(backend.save_state(&state(2)).is_err());
    assert_eq!(dropping.attempts(), first + 1);
    let journal_error = backend.read_journal().unwrap_err();
    assert!(
        journal_error
            .to_string()
            .contains("the storage service cannot be reached"),
        "{journal_error}"
    );
    assert_eq!(dropping.attempts(), first + 2);
    let lock_error = backend.read_lock().unwrap_err();
    assert!(
        matches!(lock_error, LockError::Remote { .. }),
        "{lock_error}"
    );
    assert_eq!(dropping.attempts(), first + 3);

    // Back, with its data: what was saved before is there, nothing else was written.
    drop(dropping);
    server.start_again().unwrap();
    assert_eq!(backend.load_state().unwrap(), state(1));
    backend.save_state(&state(2)).unwrap();
    // An answer clears the alarm: a later outage is retried again before it is given up.
    server.stop().unwrap();
    let dropping = DroppingEverything::on(server.port);
    assert!(backend.save_state(&state(3)).is_err());
    assert!(dropping.attempts() > 1, "{} attempts", dropping.attempts());
    drop(dropping);
    server.start_again().unwrap();
    assert_eq!(backend.load_state().unwrap(), state(2));
}
