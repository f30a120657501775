//! The journal: a local `journal.jsonl` mirrored to an append blob, one block per record, that
//! another machine downloads whole to resume.

use std::path::Path;
use std::sync::Arc;

use azure_core::http::{Etag, RequestContent, StatusCode};
use azure_storage_blob::models::AppendBlobClientCreateOptions;
use ferry_state::Journal;
use ferry_state::journal::{self, JournalError, JournalMirror, JournalRecord};

use crate::transport::{describe, download, status};
use crate::{BlobBackend, Inner};

pub(crate) fn read(backend: &BlobBackend) -> Result<Vec<JournalRecord>, JournalError> {
    let place = backend.inner.journal_place.clone();
    let remote = |reason: String| JournalError::Remote {
        place: place.clone(),
        doing: "read",
        reason,
    };
    let downloaded = backend
        .inner
        .run(|inner| Box::pin(async move { download(&inner.journal_reader).await }))
        .ok_or_else(|| remote(BlobBackend::stopped(&place)))?
        .map_err(|error| remote(describe(&error)))?;
    match downloaded {
        None => Ok(Vec::new()),
        Some((bytes, _)) => {
            journal::parse_records(&String::from_utf8_lossy(&bytes), Path::new(&place))
        }
    }
}

pub(crate) fn open(backend: &BlobBackend) -> Result<Journal, JournalError> {
    let place = backend.inner.journal_place.clone();
    let created = backend
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
            reason: BlobBackend::stopped(&place),
        })?;
    created.map_err(|error| JournalError::Remote {
        place: place.clone(),
        doing: "create",
        reason: describe(&error),
    })?;
    if let Some(parent) = backend.local_journal.parent() {
        std::fs::create_dir_all(parent).map_err(|source| JournalError::Open {
            path: backend.local_journal.clone(),
            source,
        })?;
    }
    Ok(
        Journal::open(&backend.local_journal)?.with_mirror(Arc::new(BlobJournal {
            inner: backend.inner.clone(),
        })),
    )
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
