//! ferry's shared state in Azure Blob Storage, behind `ferry_state::StateBackend`.
//!
//! Three blobs in one container, named after the state blob `B`:
//! - `B`: the state JSON. Every write carries the ETag of the version this process last read or
//!   wrote (`If-Match`, or `If-None-Match: *` for the first), so two writers can never silently
//!   overwrite each other: the second gets [`StateError::Conflict`].
//! - `B.journal`: an append blob with one block per journal record. Appends are atomic per block
//!   and need no read-modify-write, so a record costs one request, and another operator's
//!   machine reads the whole journal with one download to resume. Each record is also appended
//!   to a local `journal.jsonl` first, for the operator who ran the apply.
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

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::policies::{Policy, PolicyResult, RetryHeaders, RetryPolicy};
use azure_core::http::{
    ClientOptions, Context, Etag, Request, RequestContent, RetryOptions, StatusCode, Transport, Url,
};
use azure_storage_blob::models::{
    AppendBlobClientCreateOptions, BlobClientAcquireLeaseResultHeaders,
    BlobClientBreakLeaseOptions, BlobClientDownloadOptions, BlobClientGetPropertiesResultHeaders,
    BlobClientSetMetadataOptions, BlobClientUploadOptions, LeaseState,
};
use azure_storage_blob::{
    AppendBlobClient, BlobClient, BlobClientOptions, BlobContainerClient,
    BlobContainerClientOptions,
};
use ferry_arm::{ChainedCredential, CredentialChoice, StaticTokenCredential};
use ferry_core::Secret;
use ferry_state::journal::{self, JournalError, JournalMirror, JournalRecord};
use ferry_state::lock::{self, IfHolderRuns, LockError, LockInfo, LockRequest};
use ferry_state::{Journal, StateBackend, StateError, StateFile, format_time};

/// How the backend proves who it is.
#[derive(Clone, Debug)]
pub enum BlobAuth {
    /// An Entra ID token from this credential (the same choices and chain as ARM's).
    Credential(CredentialChoice),
    /// A shared access signature: the query of a container SAS URL, without the `?`.
    Sas(Secret),
}

/// Where the state is and how to reach it.
#[derive(Clone, Debug)]
pub struct BlobStateConfig {
    /// The container's URL without a query, e.g.
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER`.
    pub container_url: Url,
    /// The state blob's name; may contain `/`.
    pub blob: String,
    pub auth: BlobAuth,
    /// A PEM file of extra trusted CA certificates (Azurite's test CA, a TLS-inspecting proxy).
    pub ca_file: Option<PathBuf>,
    /// Where the local copy of the journal is appended.
    pub local_journal: PathBuf,
    /// The lock's lease: 15 to 60 seconds, as Azure allows.
    pub lease: Duration,
    /// One HTTP exchange.
    pub request_timeout: Duration,
    /// How long a request is retried while the service cannot be reached or answers 5xx, 408
    /// or 429; after one has failed so, requests are tried once until one gets an answer.
    pub retry_for: Duration,
}

impl BlobStateConfig {
    /// Azure's lease limits.
    pub const SHORTEST_LEASE: Duration = Duration::from_secs(15);
    pub const LONGEST_LEASE: Duration = Duration::from_secs(60);

    /// The default endpoint of `account`'s container in Azure's public cloud.
    pub fn public_container_url(account: &str, container: &str) -> Result<Url, BlobError> {
        Url::parse(&format!(
            "https://{account}.blob.core.windows.net/{container}"
        ))
        .map_err(|error| {
            BlobError::Config(format!(
                "account {account} and container {container} do not make a URL: {error}"
            ))
        })
    }

    /// Splits a container SAS URL (`https://.../CONTAINER?sv=...&sig=...`) into the container
    /// URL and the signature. Errors never show the signature.
    pub fn split_sas_url(sas_url: &Secret) -> Result<(Url, Secret), BlobError> {
        let mut url = Url::parse(sas_url.expose()).map_err(|_| {
            BlobError::Config(
                "the SAS URL is not a URL: give the container's SAS URL, https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=...&sig=...".to_owned(),
            )
        })?;
        let query = url.query().unwrap_or_default().to_owned();
        if !query.contains("sig=") {
            return Err(BlobError::Config(
                "the SAS URL has no signature (sig=...): generate a container SAS with read, add, create and write permissions".to_owned(),
            ));
        }
        url.set_query(None);
        url.set_fragment(None);
        Ok((url, Secret::new(query)))
    }
}

/// Why the backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("azure_blob state: {0}")]
    Config(String),
    #[error("azure_blob state: cannot use the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
}

/// What this process knows of the state blob's version.
#[derive(Debug, Clone)]
enum Version {
    /// Never read: a save must not replace anything.
    Unread,
    /// Read, and it did not exist.
    Absent,
    Known(Etag),
}

/// The clients and the runtime they run on; shared with the journal mirror.
struct Inner {
    runtime: tokio::runtime::Handle,
    state: BlobClient,
    journal: AppendBlobClient,
    /// The journal's URL as a plain blob, for downloading it.
    journal_reader: BlobClient,
    lock: BlobClient,
    container: BlobContainerClient,
    /// URLs without queries, for messages.
    state_place: String,
    journal_place: String,
    lock_place: String,
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

/// The lock this process holds, and its background renewal.
#[derive(Debug)]
struct Held {
    info: LockInfo,
    lease_id: String,
    renewal: tokio::task::JoinHandle<()>,
    /// Set by the renewal when the lease was lost; read by `renew_lock`.
    lost: Arc<Mutex<Option<String>>>,
}

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

fn blob_url(container: &Url, name: &str, sas: Option<&Secret>) -> Result<Url, BlobError> {
    let mut url = container.clone();
    {
        let mut segments = url.path_segments_mut().map_err(|()| {
            BlobError::Config(format!("{container} cannot hold blobs: give an https URL"))
        })?;
        segments.pop_if_empty();
        for segment in name.split('/') {
            segments.push(segment);
        }
    }
    if let Some(sas) = sas {
        url.set_query(Some(sas.expose()));
    }
    Ok(url)
}

fn without_query(url: &Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// The longest a connection may take to open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The first and the longest pause between two attempts of a request.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(250);
const LONGEST_RETRY_DELAY: Duration = Duration::from_secs(4);

/// The retry policy of every request: exponential pauses for at most `retry_for`, or a single
/// attempt while the service is known to be unreachable (`unreachable`, shared with
/// [`NoteAnswers`], which clears it as soon as any request gets an answer).
#[derive(Debug)]
struct GiveUpAfter {
    retry_for: Duration,
    unreachable: Arc<AtomicBool>,
    retry_headers: RetryHeaders,
}

impl GiveUpAfter {
    fn pause(retry_count: u32) -> Duration {
        FIRST_RETRY_DELAY
            .saturating_mul(1 << retry_count.saturating_sub(1).min(16))
            .min(LONGEST_RETRY_DELAY)
    }
}

impl RetryPolicy for GiveUpAfter {
    fn is_expired(&self, since_start: azure_core::time::Duration, retry_count: u32) -> bool {
        if self.unreachable.load(Ordering::SeqCst) {
            return true;
        }
        // The pause before the next attempt counts: the last attempt starts within retry_for.
        let since_start = Duration::try_from(since_start).unwrap_or_default();
        let expired = since_start + Self::pause(retry_count + 1) > self.retry_for;
        if expired {
            self.unreachable.store(true, Ordering::SeqCst);
        }
        expired
    }

    fn retry_headers(&self) -> Option<&RetryHeaders> {
        Some(&self.retry_headers)
    }

    fn retry_status_codes(&self) -> &[StatusCode] {
        // The defaults: 408, 429, 500, 502, 503, 504.
        &[]
    }

    fn sleep_duration(&self, retry_count: u32) -> azure_core::time::Duration {
        azure_core::time::Duration::try_from(Self::pause(retry_count))
            .unwrap_or(azure_core::time::Duration::SECOND)
    }
}

/// Clears `unreachable` as soon as an attempt gets an answer other than 5xx, 408 or 429: the
/// service is back, and requests are retried again.
#[derive(Debug)]
struct NoteAnswers {
    unreachable: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl Policy for NoteAnswers {
    async fn send(
        &self,
        ctx: &Context,
        request: &mut Request,
        next: &[Arc<dyn Policy>],
    ) -> PolicyResult {
        let result = next[0].send(ctx, request, &next[1..]).await;
        if let Ok(response) = &result {
            let status = response.status();
            if !status.is_server_error()
                && !matches!(
                    status,
                    StatusCode::RequestTimeout | StatusCode::TooManyRequests
                )
            {
                self.unreachable.store(false, Ordering::SeqCst);
            }
        }
        result
    }
}

fn http_client(config: &BlobStateConfig) -> Result<reqwest::Client, BlobError> {
    // No redirects: following one could carry the bearer token to another host. No automatic
    // decompression either (the workspace's reqwest has none), as the blob client requires.
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        // A host that drops packets must not hold each attempt for the whole exchange's time.
        .connect_timeout(config.request_timeout.min(CONNECT_TIMEOUT))
        .timeout(config.request_timeout);
    if let Some(path) = &config.ca_file {
        let ca_error = |reason: String| BlobError::CaFile {
            path: path.clone(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|error| ca_error(error.to_string()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|error| ca_error(error.to_string()))?;
        if certificates.is_empty() {
            return Err(ca_error(
                "it holds no certificate: put the CA's PEM certificate in it".to_owned(),
            ));
        }
        builder = builder.tls_certs_merge(certificates);
    }
    builder
        .build()
        .map_err(|error| BlobError::Config(format!("cannot build the HTTPS client: {error}")))
}

/// The credential for a choice: the ARM client's chain and credentials, not a second chain.
fn credential(
    choice: &CredentialChoice,
    client_options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, BlobError> {
    match choice {
        CredentialChoice::Chain => Ok(Arc::new(ChainedCredential::from_environment(
            client_options,
        ))),
        CredentialChoice::StaticToken(token) => {
            Ok(Arc::new(StaticTokenCredential::new(token.clone())))
        }
        CredentialChoice::Custom(credential) => Ok(credential.clone()),
        other => Err(BlobError::Config(format!(
            "the credential {other:?} is not offered for state: use the chain (it tries the client secret, workload identity, managed identity and Azure CLI in that order) or a SAS URL"
        ))),
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
            container,
            state_place,
            journal_place,
            lock_place,
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

    fn version(&self) -> Version {
        self.version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_version(&self, version: Version) {
        *self
            .version
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = version;
    }
}

/// What a failed request means to us.
fn describe(error: &azure_core::Error) -> String {
    match error.kind() {
        ErrorKind::HttpResponse {
            status, error_code, ..
        } => format!(
            "the service answered {} {}",
            u16::from(*status),
            error_code.as_deref().unwrap_or("")
        )
        .trim_end()
        .to_owned(),
        ErrorKind::Credential => format!(
            "no Entra ID token: {}; log in (az login) or set the AZURE_* variables, or use sas_url_env",
            first_line(&error.to_string())
        ),
        // The outer messages are the pipeline's ("retry policy expired") and reqwest's (which
        // holds the URL, and with it a SAS): what went wrong is the innermost cause.
        ErrorKind::Io | ErrorKind::Connection => format!(
            "the storage service cannot be reached ({}): check the endpoint and the network",
            redact_signature(&first_line(&root_cause(error)))
        ),
        _ => redact_signature(&first_line(&error.to_string())),
    }
}

/// The text of the innermost error under `error`.
fn root_cause(error: &azure_core::Error) -> String {
    let mut cause: &dyn std::error::Error = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// `text` with the value of any `sig=` (a SAS signature) replaced: a URL in an error message
/// must not carry the secret into a log.
fn redact_signature(text: &str) -> String {
    let mut redacted = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find("sig=") {
        redacted.push_str(&rest[..position + 4]);
        redacted.push_str("[redacted]");
        rest = &rest[position + 4..];
        let end = rest
            .find(|c: char| c == '&' || c == ')' || c == '"' || c.is_whitespace())
            .unwrap_or(rest.len());
        rest = &rest[end..];
    }
    redacted.push_str(rest);
    redacted
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

fn status(error: &azure_core::Error) -> Option<StatusCode> {
    error.http_status()
}

fn code(error: &azure_core::Error) -> Option<&str> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

fn container_missing(error: &azure_core::Error) -> bool {
    code(error) == Some("ContainerNotFound")
}

/// Downloads a whole blob with its ETag; `None` when it does not exist.
async fn download(client: &BlobClient) -> azure_core::Result<Option<(Vec<u8>, Option<Etag>)>> {
    // One range request: state and journal are small, and it keeps the ETag of one version.
    let options = BlobClientDownloadOptions {
        parallel: std::num::NonZero::new(1),
        ..BlobClientDownloadOptions::default()
    };
    match client.download(Some(options)).await {
        Ok(result) => {
            let etag = result.properties.etag.clone();
            let bytes = result.body.collect().await?;
            Ok(Some((bytes.to_vec(), etag)))
        }
        Err(error)
            if status(&error) == Some(StatusCode::NotFound) && !container_missing(&error) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

fn remote_state(place: &str, doing: &'static str, error: &azure_core::Error) -> StateError {
    let mut reason = describe(error);
    if container_missing(error) {
        reason.push_str(": the container does not exist; create it (az storage container create)");
    }
    StateError::Remote {
        place: place.to_owned(),
        doing,
        reason,
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
        let place = self.inner.state_place.clone();
        let downloaded = self
            .inner
            .run(|inner| Box::pin(async move { download(&inner.state).await }))
            .ok_or_else(|| StateError::Remote {
                place: place.clone(),
                doing: "read",
                reason: Self::stopped(&place),
            })?
            .map_err(|error| remote_state(&place, "read", &error))?;
        match downloaded {
            None => {
                self.set_version(Version::Absent);
                Ok(StateFile::default())
            }
            Some((bytes, etag)) => {
                let text = String::from_utf8_lossy(&bytes);
                let state = StateFile::from_json(&text, Path::new(&place))?;
                self.set_version(etag.map_or(Version::Unread, Version::Known));
                Ok(state)
            }
        }
    }

    fn save_state(&self, state: &StateFile) -> Result<(), StateError> {
        let place = self.inner.state_place.clone();
        let text = state.to_json();
        let version = self.version();
        if matches!(version, Version::Unread) {
            // Without a version to compare, any write could overwrite someone's state.
            return Err(StateError::Conflict { place });
        }
        let body = text.clone().into_bytes();
        let outcome = self
            .inner
            .run(move |inner| {
                Box::pin(async move {
                    let mut options = BlobClientUploadOptions {
                        blob_content_type: Some("application/json".to_owned()),
                        ..BlobClientUploadOptions::default()
                    };
                    match version {
                        Version::Known(etag) => options.if_match = Some(etag),
                        _ => options.if_none_match = Some(Etag::from("*")),
                    }
                    let written = inner
                        .state
                        .upload(RequestContent::from(body.clone()), Some(options))
                        .await;
                    match written {
                        Ok(result) => Ok(result.etag),
                        Err(error)
                            if matches!(
                                status(&error),
                                Some(StatusCode::PreconditionFailed | StatusCode::Conflict)
                            ) =>
                        {
                            // The condition failed: someone else wrote, or our own earlier
                            // attempt landed and only its answer was lost (the pipeline then
                            // retried). Only the content tells them apart.
                            match download(&inner.state).await {
                                Ok(Some((current, etag))) if current == body => Ok(etag),
                                Ok(_) => Err(None),
                                Err(error) => Err(Some(error)),
                            }
                        }
                        Err(error) => Err(Some(error)),
                    }
                })
            })
            .ok_or_else(|| StateError::Remote {
                place: place.clone(),
                doing: "save",
                reason: Self::stopped(&place),
            })?;
        match outcome {
            Ok(Some(etag)) => {
                self.set_version(Version::Known(etag));
                Ok(())
            }
            Ok(None) => {
                // Written, but we cannot tell its version: the next save must not guess.
                self.set_version(Version::Unread);
                Err(StateError::Remote {
                    place,
                    doing: "check the save of",
                    reason: "the service gave no ETag for the write; run the command again"
                        .to_owned(),
                })
            }
            Err(None) => Err(StateError::Conflict { place }),
            Err(Some(error)) => Err(remote_state(&place, "save", &error)),
        }
    }

    fn read_journal(&self) -> Result<Vec<JournalRecord>, JournalError> {
        let place = self.inner.journal_place.clone();
        let remote = |reason: String| JournalError::Remote {
            place: place.clone(),
            doing: "read",
            reason,
        };
        let downloaded = self
            .inner
            .run(|inner| Box::pin(async move { download(&inner.journal_reader).await }))
            .ok_or_else(|| remote(Self::stopped(&place)))?
            .map_err(|error| remote(describe(&error)))?;
        match downloaded {
            None => Ok(Vec::new()),
            Some((bytes, _)) => {
                journal::parse_records(&String::from_utf8_lossy(&bytes), Path::new(&place))
            }
        }
    }

    fn open_journal(&self) -> Result<Journal, JournalError> {
        let place = self.inner.journal_place.clone();
        let created = self
            .inner
            .run(|inner| {
                Box::pin(async move {
                    let options = AppendBlobClientCreateOptions {
                        if_none_match: Some(Etag::from("*")),
                        ..AppendBlobClientCreateOptions::default()
                    };
                    match inner.journal.create(Some(options)).await {
                        Ok(_) => Ok(()),
                        // It exists already: appends go on after the earlier applies' records.
                        Err(error)
                            if matches!(
                                status(&error),
                                Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                            ) =>
                        {
                            Ok(())
                        }
                        Err(error) => Err(error),
                    }
                })
            })
            .ok_or_else(|| JournalError::Remote {
                place: place.clone(),
                doing: "create",
                reason: Self::stopped(&place),
            })?;
        created.map_err(|error| JournalError::Remote {
            place: place.clone(),
            doing: "create",
            reason: describe(&error),
        })?;
        if let Some(parent) = self.local_journal.parent() {
            std::fs::create_dir_all(parent).map_err(|source| JournalError::Open {
                path: self.local_journal.clone(),
                source,
            })?;
        }
        Ok(
            Journal::open(&self.local_journal)?.with_mirror(Arc::new(BlobJournal {
                inner: self.inner.clone(),
            })),
        )
    }

    fn acquire_lock(&self, request: &LockRequest) -> Result<LockInfo, LockError> {
        let place = self.inner.lock_place.clone();
        let remote = |doing: &'static str, reason: String| LockError::Remote {
            place: place.clone(),
            doing,
            reason,
        };
        let now = SystemTime::now();
        let info = LockInfo {
            id: lock::new_lock_id(request, now),
            holder: request.holder.clone(),
            pid: request.pid,
            host: request.host.clone(),
            operation: request.operation.clone(),
            started_at: format_time(now),
            expires_at: format_time(now + self.lease),
            process_start: request.process_start,
        };
        let lease_seconds = self.lease.as_secs() as i32;
        let metadata = to_metadata(&info);
        let attempt = self
            .inner
            .run(move |inner| {
                Box::pin(async move {
                    // The lock blob must exist to be leased; creating it is harmless when it
                    // does (the condition fails, nothing is written).
                    let create = BlobClientUploadOptions {
                        if_none_match: Some(Etag::from("*")),
                        ..BlobClientUploadOptions::default()
                    };
                    if let Err(error) = inner
                        .lock
                        .upload(RequestContent::from(Vec::new()), Some(create))
                        .await
                        && !matches!(
                            status(&error),
                            Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                        )
                    {
                        return LockAttempt::Failed("create", error);
                    }
                    match inner.lock.acquire_lease(lease_seconds, None).await {
                        Ok(response) => match response.lease_id() {
                            Ok(Some(lease_id)) => {
                                let options = BlobClientSetMetadataOptions {
                                    lease_id: Some(lease_id.clone()),
                                    ..BlobClientSetMetadataOptions::default()
                                };
                                match inner.lock.set_metadata(&metadata, Some(options)).await {
                                    Ok(_) => LockAttempt::Taken(lease_id),
                                    Err(error) => {
                                        // Do not keep a lease nobody can see the holder of.
                                        let _ = inner.lock.release_lease(lease_id, None).await;
                                        LockAttempt::Failed("record the holder of", error)
                                    }
                                }
                            }
                            _ => LockAttempt::NoLeaseId,
                        },
                        Err(error) if status(&error) == Some(StatusCode::Conflict) => {
                            match inner.lock.get_properties(None).await {
                                Ok(properties) => {
                                    LockAttempt::HeldBy(properties.metadata().unwrap_or_default())
                                }
                                Err(error) => LockAttempt::Failed("read", error),
                            }
                        }
                        Err(error) => LockAttempt::Failed("take", error),
                    }
                })
            })
            .ok_or_else(|| remote("take", Self::stopped(&place)))?;
        match attempt {
            LockAttempt::Taken(lease_id) => {
                let lost = Arc::new(Mutex::new(None));
                let renewal = self.inner.runtime.spawn(renew_in_background(
                    self.inner.clone(),
                    lease_id.clone(),
                    info.clone(),
                    self.lease,
                    lost.clone(),
                ));
                let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(previous) = held.replace(Held {
                    info: info.clone(),
                    lease_id,
                    renewal,
                    lost,
                }) {
                    previous.renewal.abort();
                }
                Ok(info)
            }
            LockAttempt::HeldBy(metadata) => Err(LockError::Held {
                path: PathBuf::from(&place),
                lock: Box::new(from_metadata(&metadata)),
                spec: None,
            }),
            LockAttempt::NoLeaseId => Err(remote(
                "take",
                "the service granted a lease without its id".to_owned(),
            )),
            LockAttempt::Failed(doing, error) => Err(remote(doing, describe(&error))),
        }
    }

    fn renew_lock(&self, id: &str, _lease: Duration) -> Result<(), LockError> {
        let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let lost = || LockError::Lost {
            path: PathBuf::from(&self.inner.lock_place),
            id: id.to_owned(),
        };
        match held.as_ref() {
            Some(held) if held.info.id == id => {
                // The background task renews; this only reports how that goes.
                match held.lost.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    Some(_) => Err(lost()),
                    None => Ok(()),
                }
            }
            _ => Err(lost()),
        }
    }

    fn verify_lock(&self, id: &str) -> Result<(), LockError> {
        // The background renewal learns first that the lease was broken or lost.
        self.renew_lock(id, self.lease)
    }

    fn release_lock(&self, id: &str) -> Result<(), LockError> {
        let place = self.inner.lock_place.clone();
        let held = {
            let mut slot = self.held.lock().unwrap_or_else(|p| p.into_inner());
            match slot.take() {
                Some(held) if held.info.id == id => held,
                other => {
                    *slot = other;
                    return Err(LockError::Lost {
                        path: PathBuf::from(&place),
                        id: id.to_owned(),
                    });
                }
            }
        };
        held.renewal.abort();
        let lease_id = held.lease_id;
        let released = self
            .inner
            .run(move |inner| {
                Box::pin(async move {
                    // Clear the holder first: a lease that is still ours for a moment must not
                    // name us once we are gone, and nobody else can write it meanwhile.
                    let options = BlobClientSetMetadataOptions {
                        lease_id: Some(lease_id.clone()),
                        ..BlobClientSetMetadataOptions::default()
                    };
                    let _ = inner
                        .lock
                        .set_metadata(&HashMap::new(), Some(options))
                        .await;
                    inner.lock.release_lease(lease_id, None).await.map(|_| ())
                })
            })
            .ok_or_else(|| LockError::Remote {
                place: place.clone(),
                doing: "release",
                reason: Self::stopped(&place),
            })?;
        released.map_err(|error| {
            if status(&error) == Some(StatusCode::Conflict) {
                LockError::Lost {
                    path: PathBuf::from(&place),
                    id: id.to_owned(),
                }
            } else {
                // Nobody renews it any more: the lease runs out by itself.
                LockError::Remote {
                    place: place.clone(),
                    doing: "release",
                    reason: format!(
                        "{}; its lease ends by itself within {}s, or once the service answers, `ferry force-unlock {id}` frees it at once",
                        describe(&error),
                        self.lease.as_secs()
                    ),
                }
            }
        })
    }

    fn read_lock(&self) -> Result<Option<LockInfo>, LockError> {
        let place = self.inner.lock_place.clone();
        let read = self
            .inner
            .run(|inner| Box::pin(async move { read_lease(&inner.lock).await }))
            .ok_or_else(|| LockError::Remote {
                place: place.clone(),
                doing: "read",
                reason: Self::stopped(&place),
            })?;
        read.map_err(|error| LockError::Remote {
            place: place.clone(),
            doing: "read",
            reason: describe(&error),
        })
    }

    fn force_unlock(&self, id: &str, if_running: IfHolderRuns) -> Result<LockInfo, LockError> {
        let place = self.inner.lock_place.clone();
        let path = PathBuf::from(&place);
        let lock = self
            .read_lock()?
            .ok_or_else(|| LockError::NotLocked { path: path.clone() })?;
        if lock.id != id {
            return Err(LockError::WrongId {
                path,
                given: id.to_owned(),
                found: lock.id,
                spec: None,
            });
        }
        lock::refuse_running_holder(&path, &lock, if_running)?;
        let broken = self
            .inner
            .run(|inner| {
                Box::pin(async move {
                    // A break period of 0 frees the lock at once: its holder is gone, or the
                    // operator has decided it must stop.
                    let options = BlobClientBreakLeaseOptions {
                        break_period: Some(0),
                        ..BlobClientBreakLeaseOptions::default()
                    };
                    inner.lock.break_lease(Some(options)).await.map(|_| ())
                })
            })
            .ok_or_else(|| LockError::Remote {
                place: place.clone(),
                doing: "break",
                reason: Self::stopped(&place),
            })?;
        broken.map_err(|error| LockError::Remote {
            place,
            doing: "break",
            reason: describe(&error),
        })?;
        Ok(lock)
    }

    fn lock_place(&self) -> PathBuf {
        PathBuf::from(&self.inner.lock_place)
    }
}

enum LockAttempt {
    Taken(String),
    HeldBy(HashMap<String, String>),
    NoLeaseId,
    Failed(&'static str, azure_core::Error),
}

/// The lock on the blob now: present only while its lease is active.
async fn read_lease(client: &BlobClient) -> azure_core::Result<Option<LockInfo>> {
    match client.get_properties(None).await {
        Ok(properties) => {
            let leased = matches!(
                properties.lease_state()?,
                Some(LeaseState::Leased | LeaseState::Breaking)
            );
            Ok(leased.then(|| from_metadata(&properties.metadata().unwrap_or_default())))
        }
        Err(error)
            if status(&error) == Some(StatusCode::NotFound) && !container_missing(&error) =>
        {
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// Renews the lease every third of it until aborted or lost, and keeps the metadata's lease
/// end current so that a refused apply shows it.
async fn renew_in_background(
    inner: Arc<Inner>,
    lease_id: String,
    mut info: LockInfo,
    lease: Duration,
    lost: Arc<Mutex<Option<String>>>,
) {
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(lease / 3).await;
        match inner.lock.renew_lease(lease_id.clone(), None).await {
            Ok(_) => {
                last_renewed = Instant::now();
                info.expires_at = format_time(SystemTime::now() + lease);
                let options = BlobClientSetMetadataOptions {
                    lease_id: Some(lease_id.clone()),
                    ..BlobClientSetMetadataOptions::default()
                };
                let _ = inner
                    .lock
                    .set_metadata(&to_metadata(&info), Some(options))
                    .await;
            }
            // Another lease, or none: someone broke ours.
            Err(error)
                if matches!(
                    status(&error),
                    Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                ) =>
            {
                *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(describe(&error));
                return;
            }
            Err(error) => {
                // A passing fault: try again at the next tick while the lease may still hold.
                if last_renewed.elapsed() >= lease {
                    *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(describe(&error));
                    return;
                }
            }
        }
    }
}

/// Metadata names and values must be plain ASCII (HTTP headers); anything else becomes `?`.
fn ascii(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

fn to_metadata(info: &LockInfo) -> HashMap<String, String> {
    [
        ("ferry_lock_id", info.id.clone()),
        ("ferry_holder", info.holder.clone()),
        ("ferry_host", info.host.clone()),
        ("ferry_pid", info.pid.to_string()),
        ("ferry_operation", info.operation.clone()),
        ("ferry_started_at", info.started_at.clone()),
        ("ferry_expires_at", info.expires_at.clone()),
    ]
    .into_iter()
    .chain(
        info.process_start
            .map(|start| ("ferry_process_start", start.to_string())),
    )
    .map(|(name, value)| (name.to_owned(), ascii(&value)))
    .collect()
}

fn from_metadata(metadata: &HashMap<String, String>) -> LockInfo {
    // Names come back in whatever case the service keeps; compare without it.
    let get = |name: &str| {
        metadata
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
    };
    let unknown = || "unknown".to_owned();
    LockInfo {
        // A lease without metadata is being taken at this moment (or its taker died between
        // the two requests; the lease then expires).
        id: get("ferry_lock_id").unwrap_or_else(|| "(being taken)".to_owned()),
        holder: get("ferry_holder").unwrap_or_else(unknown),
        pid: get("ferry_pid")
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_default(),
        host: get("ferry_host").unwrap_or_else(unknown),
        operation: get("ferry_operation").unwrap_or_else(unknown),
        started_at: get("ferry_started_at").unwrap_or_else(unknown),
        expires_at: get("ferry_expires_at").unwrap_or_else(unknown),
        process_start: get("ferry_process_start").and_then(|start| start.parse().ok()),
    }
}

/// The shared copy of the journal: one append-blob block per record.
#[derive(Debug)]
struct BlobJournal {
    inner: Arc<Inner>,
}

impl JournalMirror for BlobJournal {
    fn append(&self, _record: &JournalRecord, line: &str) -> Result<(), JournalError> {
        let place = self.inner.journal_place.clone();
        let body = line.as_bytes().to_vec();
        let length = body.len() as u64;
        // A retried append whose first answer was lost can repeat the record; repeating a
        // record changes no step's phase in the summary, so it is harmless.
        let appended = self
            .inner
            .run(move |inner| {
                Box::pin(async move {
                    inner
                        .journal
                        .append_block(RequestContent::from(body), length, None)
                        .await
                        .map(|_| ())
                })
            })
            .ok_or_else(|| JournalError::Remote {
                place: place.clone(),
                doing: "append to",
                reason: BlobBackend::stopped(&place),
            })?;
        appended.map_err(|error| JournalError::Remote {
            place,
            doing: "append to",
            reason: describe(&error),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_in_an_error_message_is_redacted() {
        assert_eq!(
            redact_signature(
                "error sending request for url (https://a.blob.core.windows.net/c/s?sv=2018-11-09&sig=abc%2Bdef%3D&sp=racw)"
            ),
            "error sending request for url (https://a.blob.core.windows.net/c/s?sv=2018-11-09&sig=[redacted]&sp=racw)"
        );
        assert_eq!(
            redact_signature("https://x/c?sig=secret) and https://y/c?sig=other"),
            "https://x/c?sig=[redacted]) and https://y/c?sig=[redacted]"
        );
        assert_eq!(
            redact_signature("Connection refused (os error 111)"),
            "Connection refused (os error 111)"
        );
    }

    #[test]
    fn pauses_between_attempts_double_up_to_a_limit() {
        let pauses: Vec<Duration> = (1..=7).map(GiveUpAfter::pause).collect();
        assert_eq!(
            pauses,
            [250, 500, 1000, 2000, 4000, 4000, 4000].map(Duration::from_millis)
        );
        assert_eq!(GiveUpAfter::pause(u32::MAX), LONGEST_RETRY_DELAY);
    }

    #[test]
    fn retries_stop_within_retry_for_and_at_once_while_unreachable() {
        let unreachable = Arc::new(AtomicBool::new(false));
        let policy = GiveUpAfter {
            retry_for: Duration::from_secs(3),
            unreachable: unreachable.clone(),
            retry_headers: RetryHeaders {
                retry_headers: Vec::new(),
            },
        };
        let seconds = azure_core::time::Duration::seconds;
        assert!(!policy.is_expired(seconds(0), 0));
        assert!(!policy.is_expired(seconds(2), 2));
        assert!(!unreachable.load(Ordering::SeqCst));
        // The next pause (2 s) would start the attempt after retry_for.
        assert!(policy.is_expired(seconds(2), 3));
        assert!(unreachable.load(Ordering::SeqCst));
        assert!(policy.is_expired(seconds(0), 0));
    }
}
