//! The election of the one acting `ferry watch` among the watchers of a deployment: a lease on
//! `B.watch-leader` beside the state blob `B`, Azure's own lease, not a protocol of ours.
//!
//! The leader holds a 15-second lease (Azure's shortest: a dead leader is replaced soonest) and
//! renews it in the background every third of it; a follower tries to take it at each of its
//! rounds, and gets it once a dead leader's lease has run out, within one lease period. The
//! blob's content is what the leader alerted, written only with the lease's id, so that only
//! the leader writes it; a new leader reads it as it takes the lease, before it acts. The
//! leader's name is in the blob's metadata, for the followers to say who leads.
//!
//! With `[watch] quorum`, each watcher also keeps its verdict (what it saw) in a small blob of
//! its own, `B.watch-verdicts/NAME`, written without a lease since only it writes there; the
//! leader lists and reads them all.
//!
//! Azure's Lease Blob: a lease lasts 15 to 60 seconds or is infinite; a write to a leased blob
//! must carry the lease id and keeps the lease (learn.microsoft.com, rest/api/storageservices/
//! lease-blob).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use azure_core::http::{Etag, RequestContent, StatusCode};
use azure_storage_blob::models::{
    BlobClientSetMetadataOptions, BlobClientUploadOptions, BlobContainerClientListBlobsOptions,
};

use crate::lock::{Renewal, renew_once};
use crate::transport::{describe, download, status};
use crate::{BlobBackend, BlobError, BlobStateConfig, Inner};

/// The metadata entry naming the leader.
const LEADER_METADATA: &str = "ferry_watch_leader";

/// Why the lead could not be taken, kept or written.
#[derive(Debug, thiserror::Error)]
#[error("cannot {doing} the watch leader blob {place}: {reason}")]
pub struct WatchLeaderError {
    pub place: String,
    pub doing: &'static str,
    pub reason: String,
}

/// What this watcher is this round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// It holds the lease. `taken_now` the first round it does, with the blob's content as the
    /// previous leader left it (`None` when the blob was empty).
    Leading {
        taken_now: bool,
        record: Option<Vec<u8>>,
    },
    /// Another watcher holds it: its name, as its metadata says.
    Following { leader: String },
}

/// This process's side of the election for one deployment.
#[derive(Debug)]
pub struct WatchLeader {
    /// Owns the runtime and the clients.
    backend: BlobBackend,
    /// This watcher's name, as the followers see it.
    name: String,
    held: Mutex<Option<HeldLead>>,
    /// `B.watch-verdicts/`: where each watcher keeps its verdict, one blob each.
    verdict_prefix: String,
    /// This watcher's verdict blob's name.
    verdict_blob: String,
    /// Whether the leader blob is known to exist: a follower then tries the lease alone each
    /// round, without the create that would only be refused.
    exists: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct HeldLead {
    lease_id: String,
    renewal: tokio::task::JoinHandle<()>,
    /// Set by the renewal when the lease was lost.
    lost: Arc<Mutex<Option<String>>>,
}

impl Drop for WatchLeader {
    fn drop(&mut self) {
        if let Some(held) = self.held.lock().ok().and_then(|mut held| held.take()) {
            held.renewal.abort();
        }
    }
}

impl WatchLeader {
    /// Azure's shortest lease: a dead leader's successor acts within it.
    pub const LEASE: Duration = BlobStateConfig::SHORTEST_LEASE;

    /// The election on the blobs of `config` (its lease is not used: the lead's is
    /// [`Self::LEASE`]); `name` is how the followers name this watcher.
    pub fn new(config: BlobStateConfig, name: &str) -> Result<Self, BlobError> {
        let verdict_prefix = format!("{}.watch-verdicts/", config.blob);
        let verdict_blob = format!("{verdict_prefix}{}", blob_name_part(name));
        let backend = BlobBackend::new(BlobStateConfig {
            lease: Self::LEASE,
            ..config
        })?;
        Ok(Self {
            backend,
            name: name.to_owned(),
            held: Mutex::new(None),
            verdict_prefix,
            verdict_blob,
            exists: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// This watcher's name, as the others see it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Replaces this watcher's verdict (`B.watch-verdicts/NAME`, a small blob of its own that
    /// only it writes) with `verdict`.
    pub fn write_verdict(&self, verdict: Vec<u8>) -> Result<(), WatchLeaderError> {
        let name = self.verdict_blob.clone();
        let written = self
            .backend
            .inner
            .run(move |inner| {
                Box::pin(async move {
                    inner
                        .container
                        .blob_client(&name)
                        .upload(RequestContent::from(verdict), None)
                        .await
                        .map(|_| ())
                })
            })
            .ok_or_else(|| {
                self.error("write a verdict beside", BlobBackend::stopped(self.place()))
            })?;
        written.map_err(|error| self.error("write a verdict beside", describe(&error)))
    }

    /// Every watcher's verdict, as written (old ones included: the caller judges their age).
    pub fn read_verdicts(&self) -> Result<Vec<Vec<u8>>, WatchLeaderError> {
        let prefix = self.verdict_prefix.clone();
        let read = self
            .backend
            .inner
            .run(move |inner| {
                Box::pin(async move {
                    use futures_util::TryStreamExt;
                    let options = BlobContainerClientListBlobsOptions {
                        prefix: Some(prefix),
                        ..BlobContainerClientListBlobsOptions::default()
                    };
                    let mut pages = inner.container.list_blobs(Some(options))?.into_pages();
                    let mut names = Vec::new();
                    while let Some(page) = pages.try_next().await? {
                        let listed = page.into_model()?;
                        names.extend(listed.blob_items.into_iter().filter_map(|blob| blob.name));
                    }
                    let mut verdicts = Vec::new();
                    for name in names {
                        // One that went between the listing and now is no verdict.
                        if let Some((bytes, _)) =
                            download(&inner.container.blob_client(&name)).await?
                        {
                            verdicts.push(bytes);
                        }
                    }
                    Ok::<_, azure_core::Error>(verdicts)
                })
            })
            .ok_or_else(|| {
                self.error(
                    "read the verdicts beside",
                    BlobBackend::stopped(self.place()),
                )
            })?;
        read.map_err(|error| self.error("read the verdicts beside", describe(&error)))
    }

    /// The leader blob's URL, without a query.
    pub fn place(&self) -> &str {
        &self.backend.inner.watch_leader_place
    }

    fn error(&self, doing: &'static str, reason: String) -> WatchLeaderError {
        WatchLeaderError {
            place: self.place().to_owned(),
            doing,
            reason,
        }
    }

    /// Keeps the lead (its renewal runs in the background) or tries to take it.
    pub fn take_turn(&self) -> Result<Turn, WatchLeaderError> {
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(lead) = held.as_ref() {
                let lost = lead.lost.lock().unwrap_or_else(|p| p.into_inner()).clone();
                if lost.is_none() {
                    return Ok(Turn::Leading {
                        taken_now: false,
                        record: None,
                    });
                }
                if let Some(lead) = held.take() {
                    lead.renewal.abort();
                }
            }
        }
        let lease_seconds = Self::LEASE.as_secs() as i32;
        let metadata = self.metadata();
        let known_to_exist = self.exists.load(std::sync::atomic::Ordering::SeqCst);
        let attempt = self
            .backend
            .inner
            .run(move |inner| {
                Box::pin(async move {
                    let client = &inner.watch_leader;
                    // The blob must exist to be leased; creating it is harmless when it does.
                    let create = BlobClientUploadOptions {
                        if_none_match: Some(Etag::from("*")),
                        ..BlobClientUploadOptions::default()
                    };
                    if !known_to_exist
                        && let Err(error) = client
                            .upload(RequestContent::from(Vec::new()), Some(create))
                            .await
                        && !matches!(
                            status(&error),
                            Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
                        )
                    {
                        return Attempt::Failed("create", describe(&error));
                    }
                    match client.acquire_lease(lease_seconds, None).await {
                        Ok(response) => {
                            use azure_storage_blob::models::BlobClientAcquireLeaseResultHeaders;
                            let Ok(Some(lease_id)) = response.lease_id() else {
                                return Attempt::Failed(
                                    "take",
                                    "the service granted a lease without its id".to_owned(),
                                );
                            };
                            // What the previous leader alerted, read before this one acts.
                            let record = match download(client).await {
                                Ok(found) => found.map(|(bytes, _)| bytes),
                                Err(error) => {
                                    let _ = client.release_lease(lease_id, None).await;
                                    return Attempt::Failed("read", describe(&error));
                                }
                            };
                            let options = BlobClientSetMetadataOptions {
                                lease_id: Some(lease_id.clone()),
                                ..BlobClientSetMetadataOptions::default()
                            };
                            let _ = client.set_metadata(&metadata, Some(options)).await;
                            Attempt::Taken(lease_id, record)
                        }
                        Err(error) if status(&error) == Some(StatusCode::Conflict) => {
                            match client.get_properties(None).await {
                                Ok(properties) => {
                                    use azure_storage_blob::models::BlobClientGetPropertiesResultHeaders;
                                    let metadata = properties.metadata().unwrap_or_default();
                                    let leader = metadata
                                        .iter()
                                        .find(|(name, _)| name.eq_ignore_ascii_case(LEADER_METADATA))
                                        .map(|(_, value)| value.clone())
                                        // Between the lease and its metadata, or from an older ferry.
                                        .unwrap_or_else(|| "another watcher".to_owned());
                                    Attempt::HeldBy(leader)
                                }
                                Err(error) => Attempt::Failed("read", describe(&error)),
                            }
                        }
                        Err(error) => Attempt::Failed("take", describe(&error)),
                    }
                })
            })
            .ok_or_else(|| self.error("take", BlobBackend::stopped(self.place())))?;
        let exists = !matches!(attempt, Attempt::Failed(..));
        self.exists
            .store(exists, std::sync::atomic::Ordering::SeqCst);
        match attempt {
            Attempt::Taken(lease_id, record) => {
                let lost = Arc::new(Mutex::new(None));
                let renewal = self.backend.inner.runtime.spawn(renew_in_background(
                    self.backend.inner.clone(),
                    lease_id.clone(),
                    lost.clone(),
                ));
                *self.held.lock().unwrap_or_else(|p| p.into_inner()) = Some(HeldLead {
                    lease_id,
                    renewal,
                    lost,
                });
                Ok(Turn::Leading {
                    taken_now: true,
                    record: record.filter(|bytes| !bytes.is_empty()),
                })
            }
            Attempt::HeldBy(leader) => Ok(Turn::Following { leader }),
            Attempt::Failed(doing, reason) => Err(self.error(doing, reason)),
        }
    }

    /// Replaces the blob's content with `record`, with the lease's id: refused unless this
    /// watcher leads. A refusal ends the lead: the next [`Self::take_turn`] tries to take it
    /// again.
    pub fn write_record(&self, record: Vec<u8>) -> Result<(), WatchLeaderError> {
        let lease_id = {
            let held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            match held.as_ref() {
                Some(lead) => lead.lease_id.clone(),
                None => return Err(self.error("write", "this watcher does not lead".to_owned())),
            }
        };
        let metadata = self.metadata();
        let written = self
            .backend
            .inner
            .run(move |inner| {
                Box::pin(async move {
                    // A Put Blob replaces the metadata too: the leader's name goes with it.
                    let options = BlobClientUploadOptions {
                        lease_id: Some(lease_id),
                        metadata: Some(metadata),
                        ..BlobClientUploadOptions::default()
                    };
                    inner
                        .watch_leader
                        .upload(RequestContent::from(record), Some(options))
                        .await
                        .map(|_| ())
                })
            })
            .ok_or_else(|| self.error("write", BlobBackend::stopped(self.place())))?;
        written.map_err(|error| {
            if matches!(
                status(&error),
                Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
            ) {
                // Another lease, or none: the lead is gone.
                if let Some(lead) = self.held.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
                    *lead.lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(describe(&error));
                }
            }
            self.error("write", describe(&error))
        })
    }

    /// Gives the lead up at once (a watcher stopping), so that a follower takes it at its next
    /// round instead of after the lease runs out.
    pub fn resign(&self) {
        let Some(lead) = self.held.lock().unwrap_or_else(|p| p.into_inner()).take() else {
            return;
        };
        lead.renewal.abort();
        let lease_id = lead.lease_id;
        let _ = self.backend.inner.run(move |inner| {
            Box::pin(async move {
                let _ = inner.watch_leader.release_lease(lease_id, None).await;
            })
        });
    }

    /// Removes this watcher's verdict, when it stops: a stopped watcher has no say. (A killed
    /// one's verdict stays, and ages out of every count.)
    pub fn remove_verdict(&self) {
        let name = self.verdict_blob.clone();
        let _ = self.backend.inner.run(move |inner| {
            Box::pin(async move {
                let _ = inner.container.blob_client(&name).delete(None).await;
            })
        });
    }

    fn metadata(&self) -> HashMap<String, String> {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii() && !c.is_ascii_control() {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        HashMap::from([(LEADER_METADATA.to_owned(), name)])
    }
}

/// `name` as one segment of a blob name: letters, digits, `@`, `.`, `-` and `_`, anything else
/// as `-`.
fn blob_name_part(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

enum Attempt {
    Taken(String, Option<Vec<u8>>),
    HeldBy(String),
    Failed(&'static str, String),
}

/// Renews the lease every third of it until aborted or lost.
async fn renew_in_background(
    inner: Arc<Inner>,
    lease_id: String,
    lost: Arc<Mutex<Option<String>>>,
) {
    let lease = WatchLeader::LEASE;
    let mut last_renewed = Instant::now();
    loop {
        tokio::time::sleep(lease / 3).await;
        match renew_once(&inner.watch_leader, &lease_id, lease, &mut last_renewed).await {
            Renewal::Renewed | Renewal::NotYet => {}
            Renewal::Lost(reason) => {
                *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                return;
            }
        }
    }
}
