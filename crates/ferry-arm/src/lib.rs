//! Azure Resource Manager client of ferry: credentials, typed requests by resource id,
//! long-running operations that survive a restart, typed models that keep unknown fields,
//! and errors that keep what ARM said.
//!
//! Built on `azure_core` 1.x (pipeline, bearer token policy, retry of 429 and 5xx) and
//! `azure_identity` 1.x (credentials). The same client talks to Azure and to `ferry-sim`:
//! point [`ArmClientConfig`] at an endpoint, an authority host and a CA file.

// ArmError keeps ARM's whole error (code, message, target, details, request id) by value;
// errors come after a network round trip, so their size costs nothing measurable.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod credential;
pub mod deployment;
pub mod disk_snapshots;
pub mod error;
pub mod id;
pub mod list_reads;
pub mod models;
pub mod pending_operation;
pub mod provider_calls;
pub mod provisioning;
pub mod restore_points;
pub mod subscription_lists;

pub use client::{
    AZURE_PUBLIC_ENDPOINT, ArmClient, ArmClientConfig, ArmResponse, BusySettings, Fetched,
    PacingReport, PacingSettings, PollOutcome, PollSettings, RetrySettings, WriteOptions,
};
pub use credential::{
    ChainedCredential, CredentialChoice, CredentialVariables, StaticTokenCredential,
};
pub use deployment::{AzureDeployment, AzureSettings, LocateError, StepOperations};
pub use disk_snapshots::{
    DiskFromSnapshot, SnapshotCallError, SnapshotOfDisk, SnapshotRequestError, SnapshotSku,
};
pub use error::{ArmError, ArmErrorDetail, ArmErrorResponse, ArmServiceError, CredentialAttempt};
pub use id::{ResourceId, ResourceIdError};
pub use list_reads::{ReadRoundGuard, ReadVia};
pub use pending_operation::{PendingOperation, PollStyle, Started};
pub use provider_calls::api_version;
pub use restore_points::{
    CrashConsistentRestorePoint, DiskFromRestorePoint, DiskRestorePointOf, RestorePointCallError,
    RestorePointCollectionOfVm, RestorePointRequestError,
};
pub use subscription_lists::{TaggedInSubscription, tag_filter, tag_name_filter};

/// `azure_core`'s URL and method types, so callers need not depend on it.
pub use azure_core::http::{Method, Url};
