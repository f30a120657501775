//! The seam between the `dns_record` provider and the servers that hold zones.
//!
//! The provider decides (ownership, what to change, when to wait); a backend only reads and
//! writes record sets of one zone. RFC 2136 servers are one backend ([`crate::rfc2136`]);
//! Azure DNS (record sets over ARM, with ETags) plugs in as another by implementing
//! [`DnsBackend`], and carries its ETag in [`Reading::version`].

use std::fmt;

use async_trait::async_trait;

use crate::record::{RecordKey, RecordSet};

/// What a backend reads of one record set and its ownership marker.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Reading {
    /// The record set, or `None` when the name has no records of that type.
    pub record_set: Option<RecordSet>,
    /// Every deployment whose ferry marker claims this record set's type (usually none or
    /// one).
    pub owners: Vec<String>,
    /// An opaque version for optimistic concurrency (Azure's ETag), passed back on write.
    pub version: Option<String>,
}

/// What must still hold when a write reaches the server, so that a change made by someone
/// else between ferry's read and its write is refused rather than overwritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The record set must not exist (a create that takes nothing over).
    Absent,
    /// The record set must still be at the version read (Azure: `If-Match`); `None` when the
    /// backend has no versions.
    Unchanged(Option<String>),
}

/// One change to one record set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Make the record set hold exactly `record_set`, and mark it as `owner`'s (replacing any
    /// other deployment's marker for this type).
    Upsert {
        record_set: RecordSet,
        owner: String,
        precondition: Precondition,
    },
    /// Remove the record set and `owner`'s marker for it.
    Delete {
        owner: String,
        precondition: Precondition,
    },
}

/// Why a backend could not read or write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The server did not answer, or the connection broke: a retry may help.
    #[error("{server} did not answer: {message}; check that it runs and that ferry can reach it")]
    Unreachable { server: String, message: String },
    /// The server rejected the request's signature or key.
    #[error(
        "{server} refused the update's TSIG signature ({reason}): check tsig_key_name, tsig_algorithm and the secret in {secret_source} for zone `{zone}`"
    )]
    Unauthorized {
        server: String,
        zone: String,
        reason: String,
        secret_source: String,
    },
    /// The server refused the change (REFUSED, NOTAUTH, NOTZONE, ...).
    #[error("{server} refused the change to {record}: {reason}")]
    Refused {
        server: String,
        record: String,
        reason: String,
    },
    /// The record set changed since ferry read it; the write was refused, nothing was
    /// overwritten.
    #[error(
        "{record} changed on {server} since ferry read it ({detail}), so ferry changed nothing: run `ferry plan` again and apply the new plan"
    )]
    Conflict {
        server: String,
        record: String,
        /// How the server said so: `the update's prerequisite failed (NXRRSET)`,
        /// `its etag no longer matches (412 PreconditionFailed)`.
        detail: String,
    },
    /// Azure Resource Manager answered with an error that a retry will not fix (a missing
    /// zone, a credential without rights to it, a record set ARM will not accept).
    #[error("azure dns could not {operation} {record}: {message}")]
    Arm {
        /// `read`, `write`, `delete`
        operation: &'static str,
        record: String,
        message: String,
    },
    /// The zone's settings or secret are missing or wrong.
    #[error("zone `{zone}`: {message}")]
    Configuration { zone: String, message: String },
    /// The server does not hold the zone, or will not answer for it.
    #[error(
        "{server} {problem} for {query}: point the zone's server at its primary (the server that holds zone `{zone}`)"
    )]
    NotPrimary {
        server: String,
        zone: String,
        query: String,
        /// `refused the query`, `answered without authority`
        problem: String,
    },
    /// The answer could not be understood.
    #[error("{server} sent an answer ferry cannot read: {message}")]
    Protocol { server: String, message: String },
}

impl BackendError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Unreachable { .. })
    }
}

/// A server that holds one zone's record sets.
#[async_trait]
pub trait DnsBackend: Send + Sync + fmt::Debug {
    /// A short description for messages: `rfc2136 127.0.0.1:5353`, `azure dns`.
    fn describe(&self) -> String;

    /// Reads a record set and its marker from the zone's authoritative data (the primary
    /// server, or Azure's record set), never from a resolver's cache.
    async fn read(&self, key: &RecordKey) -> Result<Reading, BackendError>;

    /// Writes one change; either all of it takes effect or none.
    async fn write(&self, key: &RecordKey, change: &Change) -> Result<(), BackendError>;

    /// How this backend marks `deployment`'s ownership of `key`, for messages.
    fn ownership_marker(&self, key: &RecordKey, deployment: &str) -> String {
        format!(
            "a TXT \"{}\" at {}",
            key.marker_text(deployment),
            key.marker_fqdn()
        )
    }

    /// Who answers reads, for progress lines: `the primary` (RFC 2136), `azure dns`.
    fn authority(&self) -> &'static str {
        "the primary"
    }
}
