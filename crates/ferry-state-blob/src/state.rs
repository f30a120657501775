//! The state blob: read with its ETag, written only over the version this process knows
//! (`If-Match`, or `If-None-Match: *` for the first), a lost answer told from a conflict by
//! the content.

use std::path::Path;

use azure_core::http::{Etag, RequestContent, StatusCode};
use azure_storage_blob::models::BlobClientUploadOptions;
use ferry_state::{StateError, StateFile};

use crate::BlobBackend;
use crate::transport::{container_missing, describe, download, status};

/// What this process knows of the state blob's version.
#[derive(Debug, Clone)]
pub(crate) enum Version {
    /// Never read: a save must not replace anything.
    Unread,
    /// Read, and it did not exist.
    Absent,
    Known(Etag),
}

pub(crate) fn remote_state(
    place: &str,
    doing: &'static str,
    error: &azure_core::Error,
) -> StateError {
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

pub(crate) fn load(backend: &BlobBackend) -> Result<StateFile, StateError> {
    let place = backend.inner.state_place.clone();
    let downloaded = backend
        .inner
        .run(|inner| Box::pin(async move { download(&inner.state).await }))
        .ok_or_else(|| StateError::Remote {
            place: place.clone(),
            doing: "read",
            reason: BlobBackend::stopped(&place),
        })?
        .map_err(|error| remote_state(&place, "read", &error))?;
    match downloaded {
        None => {
            backend.set_version(Version::Absent);
            Ok(StateFile::default())
        }
        Some((bytes, etag)) => {
            let text = String::from_utf8_lossy(&bytes);
            let state = StateFile::from_json(&text, Path::new(&place))?;
            backend.set_version(etag.map_or(Version::Unread, Version::Known));
            Ok(state)
        }
    }
}

pub(crate) fn save(backend: &BlobBackend, state: &StateFile) -> Result<(), StateError> {
    let place = backend.inner.state_place.clone();
    let text = state.to_json();
    let version = backend.version();
    if matches!(version, Version::Unread) {
        // Without a version to compare, any write could overwrite someone's state.
        return Err(StateError::Conflict { place });
    }
    let body = text.clone().into_bytes();
    let outcome = backend
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
            reason: BlobBackend::stopped(&place),
        })?;
    match outcome {
        Ok(Some(etag)) => {
            backend.set_version(Version::Known(etag));
            Ok(())
        }
        Ok(None) => {
            // Written, but we cannot tell its version: the next save must not guess.
            backend.set_version(Version::Unread);
            Err(StateError::Remote {
                place,
                doing: "check the save of",
                reason: "the service gave no ETag for the write; run the command again".to_owned(),
            })
        }
        Err(None) => Err(StateError::Conflict { place }),
        Err(Some(error)) => Err(remote_state(&place, "save", &error)),
    }
}

impl BlobBackend {
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
