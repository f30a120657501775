//! ferry's shared state in Azure Blob Storage, behind `ferry_state::StateBackend`.
//!
//! Four blobs in one container, named after the state blob `B` (and with `[watch] quorum`, one
//! more per watcher, `B.watch-verdicts/NAME`):
//! - `B`: the state JSON. Every write carries the ETag of the version this process last read or
//!   wrote (`If-Match`, or `If-None-Match: *` for the first), so two writers can never silently
//!   overwrite each other: the second gets [`StateError::Conflict`].
//! - `B.journal`: an append blob with one block per journal record. Appends are atomic per block
//!   and need no read-modify-write, so a record costs one request, and another operator's
//!   machine reads the whole journal with one download to resume. Each record is also appended
//!   to a local `journal.jsonl` first, for the operator who ran the apply.
//! - `B.watch-leader`: the lease that elects one acting `ferry watch` among the watchers of the
//!   deployment, and in its content what that watcher alerted ([`WatchLeader`]). Apart from the
//!   lock: a watcher leads for as long as it runs, while an apply holds the lock for its length.
//! - `B.lock`: an empty blob whose lease is the lock and whose metadata records holder, host,
//!   pid, operation, start and lease end. A separate blob, because metadata writes change a
//!   blob's ETag: on the state blob they would break our own `If-Match` writes.
//!
//! The lease is finite (60 s by default, Azure allows 15 to 60) and renewed in the background
//! every third of it from acquisition to release, so that a crashed process's lock simply
//! expires while a live but slow one keeps it (through a long plan review as well as the apply).
//!
//! The backend runs its requests on its own small tokio runtime and the synchronous trait
//! methods wait for them: the engine's journal writes are synchronous by design.
//!
//! A request that finds the service unreachable (no connection, a 5xx) is retried for
//! `retry_for`, then fails. From then on every request is tried once, until one gets an answer:
//! an apply whose storage went away stops within `retry_for` of the first write that failed and
//! then ends (each running step's save, the journal's end, the lock's release) without paying
//! the retries again for each of them, where otherwise it would take minutes to give up.
//!
//! The pieces: `config` (what the caller gives), `transport` (the HTTPS client, retries and what
//! a failed request means), `state` (the state blob and its ETag), `journal` (the append blob),
//! `lock` (the lease and the holder in its metadata). This file holds the backend that ties them.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::http::policies::RetryHeaders;
use azure_core::http::{ClientOptions, RetryOptions, StatusCode, Transport};
use azure_storage_blob::{
    AppendBlobClient, BlobClient, BlobClientOptions, BlobContainerClient,
    BlobContainerClientOptions,
};
use ferry_state::journal::{JournalError, JournalRecord};
use ferry_state::lock::{IfHolderRuns, LockError, LockInfo, LockRequest};
use ferry_state::{Journal, StateBackend, StateError, StateFile};

mod config;
mod journal;
mod leader;
mod lock;
mod state;
mod transport;

pub use config::{BlobAuth, BlobError, BlobStateConfig};
pub use leader::{Turn, WatchLeader, WatchLeaderError};

use lock::Held;
use state::{Version, remote_state};
use transport::{
    GiveUpAfter, NoteAnswers, blob_url, credential, http_client, status, without_query,
};

/// The clients and the runtime they run on; shared with the journal mirror.
struct Inner {
    runtime: tokio::runtime::Handle,
    state: BlobClient,
    journal: AppendBlobClient,
    /// The journal's URL as a plain blob, for downloading it.
    journal_reader: BlobClient,
    lock: BlobClient,
    /// `B.watch-leader`: the lease `ferry watch` elects its acting watcher by.
    watch_leader: BlobClient,
    container: BlobContainerClient,
    /// URLs without queries, for messages.
    state_place: String,
    journal_place: String,
    lock_place: String,
    watch_leader_place: String,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The clients' URLs may hold a SAS: show only the places.
        f.debug_struct("Inner")
            .field("state", &self.state_place)
            .field("journal", &self.journal_place)
            .field("lock", &self.lock_place)
            .finish()
    }
}

impl Inner {
    /// Runs `future` on the backend's runtime and waits for it, from any thread, inside a
    /// tokio runtime or not.
    fn run<T: Send + 'static>(
        self: &Arc<Self>,
        future: impl FnOnce(Arc<Inner>) -> BoxedFuture<T>,
    ) -> Option<T> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let work = future(self.clone());
        self.runtime.spawn(async move {
            let _ = sender.send(work.await);
        });
        receiver.recv().ok()
    }
}

type BoxedFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send>>;

/// Azure Blob Storage as ferry's state backend.
#[derive(Debug)]
pub struct BlobBackend {
    inner: Arc<Inner>,
    /// Owned so that it lives as long as the backend; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    version: Arc<Mutex<Version>>,
    held: Mutex<Option<Held>>,
    local_journal: PathBuf,
    lease: Duration,
}

impl Drop for BlobBackend {
    fn drop(&mut self) {
        if let Some(held) = self.held.lock().ok().and_then(|mut held| held.take()) {
            held.renewal.abort();
        }
        // Shutting down in the background is allowed inside another runtime, where a plain
        // drop of a runtime panics.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl BlobBackend {
    pub fn new(config: BlobStateConfig) -> Result<Self, BlobError> {
        if config.lease < BlobStateConfig::SHORTEST_LEASE
            || config.lease > BlobStateConfig::LONGEST_LEASE
        {
            return Err(BlobError::Config(format!(
                "a lease of {}s is outside Azure's 15 to 60 seconds",
                config.lease.as_secs()
            )));
        }
        if config.container_url.scheme() != "https" {
            return Err(BlobError::Config(format!(
                "{} must use https: Azure Storage refuses tokens over plain HTTP",
                config.container_url
            )));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ferry-state-blob")
            .enable_all()
            .build()
            .map_err(|error| BlobError::Config(format!("cannot start a runtime: {error}")))?;
        let unreachable = Arc::new(AtomicBool::new(false));
        let client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http_client(&config)?))),
            retry: RetryOptions::custom(Arc::new(GiveUpAfter {
                retry_for: config.retry_for,
                unreachable: unreachable.clone(),
                retry_headers: RetryHeaders {
                    retry_headers: vec![
                        azure_core::http::headers::RETRY_AFTER_MS,
                        azure_core::http::headers::X_MS_RETRY_AFTER_MS,
                        azure_core::http::headers::RETRY_AFTER,
                    ],
                },
            })),
            per_try_policies: vec![Arc::new(NoteAnswers { unreachable })],
            ..ClientOptions::default()
        };
        let (token, sas) = match &config.auth {
            BlobAuth::Credential(choice) => (Some(credential(choice, &client_options)?), None),
            BlobAuth::Sas(query) => (None, Some(query)),
        };
        let client = |name: &str| -> Result<(BlobClient, String), BlobError> {
            let url = blob_url(&config.container_url, name, sas)?;
            let place = without_query(&url);
            let options = BlobClientOptions {
                client_options: client_options.clone(),
                ..BlobClientOptions::default()
            };
            // Building the bearer policy needs a runtime context in some azure_core versions.
            let _entered = runtime.enter();
            BlobClient::new(url, token.clone(), Some(options))
                .map(|client| (client, place))
                .map_err(|error| BlobError::Config(format!("blob {name}: {error}")))
        };
        let (state, state_place) = client(&config.blob)?;
        let (journal, journal_place) = client(&format!("{}.journal", config.blob))?;
        let (lock, lock_place) = client(&format!("{}.lock", config.blob))?;
        let (watch_leader, watch_leader_place) = client(&format!("{}.watch-leader", config.blob))?;
        let container = {
            let mut url = config.container_url.clone();
            if let Some(sas) = sas {
                url.set_query(Some(sas.expose()));
            }
            let options = BlobContainerClientOptions {
                client_options: client_options.clone(),
                ..BlobContainerClientOptions::default()
            };
            let _entered = runtime.enter();
            BlobContainerClient::new(url, token.clone(), Some(options))
                .map_err(|error| BlobError::Config(format!("container: {error}")))?
        };
        let inner = Arc::new(Inner {
            runtime: runtime.handle().clone(),
            state,
            journal: journal.append_blob_client(),
            journal_reader: journal,
            lock,
            watch_leader,
            container,
            state_place,
            journal_place,
            lock_place,
            watch_leader_place,
        });
        Ok(BlobBackend {
            inner,
            runtime: Some(runtime),
            version: Arc::new(Mutex::new(Version::Unread)),
            held: Mutex::new(None),
            local_journal: config.local_journal,
            lease: config.lease,
        })
    }

    /// Creates the container if it does not exist (needs the right to create containers).
    pub fn create_container(&self) -> Result<(), StateError> {
        let place = self.inner.state_place.clone();
        let created = self
            .inner
            .run(|inner| {
                Box::pin(async move {
                    match inner.container.create(None).await {
                        Ok(_) => Ok(()),
                        Err(error) if status(&error) == Some(StatusCode::Conflict) => Ok(()),
                        Err(error) => Err(error),
                    }
                })
            })
            .ok_or_else(|| StateError::Remote {
                place: place.clone(),
                doing: "create the container of",
                reason: Self::stopped(&place),
            })?;
        created.map_err(|error| remote_state(&place, "create the container of", &error))
    }

    fn stopped(place: &str) -> String {
        format!("the request to {place} was dropped because ferry is shutting down")
    }
}

impl StateBackend for BlobBackend {
    fn location(&self) -> String {
        self.inner.state_place.clone()
    }

    fn lease(&self) -> Duration {
        self.lease
    }

    fn load_state(&self) -> Result<StateFile, StateError> {
        state::load(self)
    }

    fn save_state(&self, state: &StateFile) -> Result<(), StateError> {
        state::save(self, state)
    }

    fn read_journal(&self) -> Result<Vec<JournalRecord>, JournalError> {
        journal::read(self)
    }

    fn open_journal(&self) -> Result<Journal, JournalError> {
        journal::open(self)
    }

    fn acquire_lock(&self, request: &LockRequest) -> Result<LockInfo, LockError> {
        lock::acquire(self, request)
    }

    fn renew_lock(&self, id: &str, _lease: Duration) -> Result<(), LockError> {
        lock::renew(self, id)
    }

    fn verify_lock(&self, id: &str) -> Result<(), LockError> {
        // The background renewal learns first that the lease was broken or lost.
        self.renew_lock(id, self.lease)
    }

    fn release_lock(&self, id: &str) -> Result<(), LockError> {
        lock::release(self, id)
    }

    fn read_lock(&self) -> Result<Option<LockInfo>, LockError> {
        lock::read(self)
    }

    fn force_unlock(&self, id: &str, if_running: IfHolderRuns) -> Result<LockInfo, LockError> {
        lock::force_unlock(self, id, if_running)
    }

    fn lock_place(&self) -> PathBuf {
        PathBuf::from(&self.inner.lock_place)
    }
}
