//! The lock: a lease on its own blob, the holder recorded in the blob's metadata, renewed in
//! the background every third of the lease, broken by `force-unlock`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use azure_core::http::{Etag, RequestContent, StatusCode};
use azure_storage_blob::BlobClient;
use azure_storage_blob::models::{
    BlobClientAcquireLeaseResultHeaders, BlobClientBreakLeaseOptions,
    BlobClientGetPropertiesResultHeaders, BlobClientSetMetadataOptions, BlobClientUploadOptions,
    LeaseState,
};
use ferry_state::format_time;
use ferry_state::lock::{self, IfHolderRuns, LockError, LockInfo, LockRequest};

use crate::transport::{container_missing, describe, status};
use crate::{BlobBackend, Inner};

/// The lock this process holds, and its background renewal.
#[derive(Debug)]
pub(crate) struct Held {
    info: LockInfo,
    lease_id: String,
    pub(crate) renewal: tokio::task::JoinHandle<()>,
    /// Set by the renewal when the lease was lost; read by `renew_lock`.
    lost: Arc<Mutex<Option<String>>>,
}

pub(crate) fn acquire(backend: &BlobBackend, request: &LockRequest) -> Result<LockInfo, LockError> {
    let place = backend.inner.lock_place.clone();
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
        expires_at: format_time(now + backend.lease),
        process_start: request.process_start,
    };
    let lease_seconds = backend.lease.as_secs() as i32;
    let metadata = to_metadata(&info);
    let attempt = backend
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
        .ok_or_else(|| remote("take", BlobBackend::stopped(&place)))?;
    match attempt {
        LockAttempt::Taken(lease_id) => {
            let lost = Arc::new(Mutex::new(None));
            let renewal = backend.inner.runtime.spawn(renew_in_background(
                backend.inner.clone(),
                lease_id.clone(),
                info.clone(),
                backend.lease,
                lost.clone(),
            ));
            let mut held = backend.held.lock().unwrap_or_else(|p| p.into_inner());
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

pub(crate) fn renew(backend: &BlobBackend, id: &str) -> Result<(), LockError> {
    let held = backend.held.lock().unwrap_or_else(|p| p.into_inner());
    let lost = || LockError::Lost {
        path: PathBuf::from(&backend.inner.lock_place),
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

pub(crate) fn release(backend: &BlobBackend, id: &str) -> Result<(), LockError> {
    let place = backend.inner.lock_place.clone();
    let held = {
        let mut slot = backend.held.lock().unwrap_or_else(|p| p.into_inner());
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
    let released = backend
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
            reason: BlobBackend::stopped(&place),
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
                    backend.lease.as_secs()
                ),
            }
        }
    })
}

pub(crate) fn read(backend: &BlobBackend) -> Result<Option<LockInfo>, LockError> {
    let place = backend.inner.lock_place.clone();
    let read = backend
        .inner
        .run(|inner| Box::pin(async move { read_lease(&inner.lock).await }))
        .ok_or_else(|| LockError::Remote {
            place: place.clone(),
            doing: "read",
            reason: BlobBackend::stopped(&place),
        })?;
    read.map_err(|error| LockError::Remote {
        place: place.clone(),
        doing: "read",
        reason: describe(&error),
    })
}

pub(crate) fn force_unlock(
    backend: &BlobBackend,
    id: &str,
    if_running: IfHolderRuns,
) -> Result<LockInfo, LockError> {
    let place = backend.inner.lock_place.clone();
    let path = PathBuf::from(&place);
    let lock = read(backend)?.ok_or_else(|| LockError::NotLocked { path: path.clone() })?;
    if lock.id != id {
        return Err(LockError::WrongId {
            path,
            given: id.to_owned(),
            found: lock.id,
            spec: None,
        });
    }
    lock::refuse_running_holder(&path, &lock, if_running)?;
    let broken = backend
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
            reason: BlobBackend::stopped(&place),
        })?;
    broken.map_err(|error| LockError::Remote {
        place,
        doing: "break",
        reason: describe(&error),
    })?;
    Ok(lock)
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
        match renew_once(&inner.lock, &lease_id, lease, &mut last_renewed).await {
            Renewal::Renewed => {
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
            Renewal::Lost(reason) => {
                *lost.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                return;
            }
            Renewal::NotYet => {}
        }
    }
}

/// How one renewal of a lease went.
pub(crate) enum Renewal {
    Renewed,
    /// Another lease, or none (someone broke ours), or no renewal for a whole lease period:
    /// the lease may have gone, and whoever holds it must stop acting on it.
    Lost(String),
    /// A passing fault while the lease may still hold: try again at the next tick.
    NotYet,
}

/// Renews the lease `lease_id` on `client` once; `last_renewed` is when it last succeeded.
/// The one rule of every lease ferry keeps (the apply lock, the watch leader).
pub(crate) async fn renew_once(
    client: &BlobClient,
    lease_id: &str,
    lease: Duration,
    last_renewed: &mut Instant,
) -> Renewal {
    match client.renew_lease(lease_id.to_owned(), None).await {
        Ok(_) => {
            *last_renewed = Instant::now();
            Renewal::Renewed
        }
        Err(error)
            if matches!(
                status(&error),
                Some(StatusCode::Conflict | StatusCode::PreconditionFailed)
            ) =>
        {
            Renewal::Lost(describe(&error))
        }
        Err(error) if last_renewed.elapsed() >= lease => Renewal::Lost(describe(&error)),
        Err(_) => Renewal::NotYet,
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
