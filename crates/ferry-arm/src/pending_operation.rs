//! Long-running operations as values: what a write started ([`Started`]) and, while it runs,
//! what to poll ([`PendingOperation`], serialisable), so an interrupted apply can resume.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::client::Fetched;

/// How an operation reports its progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PollStyle {
    /// `Azure-AsyncOperation`: a status resource with `status` (preferred by ARM).
    AzureAsyncOperation,
    /// `Location`: 202 while running, then 200/204 with the result.
    Location,
    /// No header: the resource's own `provisioningState`.
    ProvisioningState,
}

/// An operation ARM accepted and is still running. Serialisable: save it in the apply
/// journal, and after a restart call [`crate::ArmClient::wait`] with it instead of
/// sending the request again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingOperation {
    /// The method of the request that started it (`PUT`, `PATCH`, `DELETE`, `POST`).
    pub method: String,
    /// The URL of the request that started it (read again at the end of a PUT or PATCH).
    pub resource_url: String,
    /// The URL to poll.
    pub operation_url: String,
    /// The `Location` header, when it came with `Azure-AsyncOperation` (a POST's result).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location_url: Option<String>,
    pub style: PollStyle,
    /// The first wait ARM asked for; not worth saving.
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

/// What a write returned at once.
#[derive(Debug, Clone)]
pub enum Started<T> {
    /// Done in the first response (with its body, if it had one).
    Completed(Option<Fetched<T>>),
    /// Running: poll or wait for it.
    Pending(PendingOperation),
}

impl<T> Started<T> {
    /// The operation to save, when there is one.
    pub fn pending(&self) -> Option<&PendingOperation> {
        match self {
            Started::Pending(operation) => Some(operation),
            Started::Completed(_) => None,
        }
    }
}
