//! Errors of the ARM client: ARM's own error body kept whole, plus what ferry needs to decide on a retry.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// ARM's error object: `{"error": {"code", "message", "target", "details"}}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmErrorDetail {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<ArmErrorDetail>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// The envelope ARM wraps error objects in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmErrorResponse {
    pub error: ArmErrorDetail,
}

/// An error that ARM returned for a request, with everything it said about it.
#[derive(Debug, Clone, PartialEq)]
pub struct ArmServiceError {
    pub status: u16,
    pub method: String,
    pub url: String,
    /// ARM's code (`ConflictingUserInput`, `ResourceGroupNotFound`), or `HttpStatus{N}` when the
    /// body carried no error object.
    pub code: String,
    pub message: String,
    pub target: Option<String>,
    pub details: Vec<ArmErrorDetail>,
    /// `x-ms-request-id`, which Azure support asks for.
    pub request_id: Option<String>,
    /// How long ARM asked us to wait (`Retry-After` in seconds, or `x-ms-retry-after-ms`).
    pub retry_after: Option<Duration>,
}

/// Everything that can go wrong talking to ARM.
#[derive(Debug, thiserror::Error)]
pub enum ArmError {
    #[error("{}", render_service_error(.0))]
    Service(Box<ArmServiceError>),

    /// Said code and message first, then where (the operation, ARM's request id) in
    /// parentheses, then what to do.
    #[error(
        "{code}: {message} (long-running operation {operation_url} ended {status}{}){}",
        request_suffix(.request_id),
        code_advice(.code).unwrap_or_default()
    )]
    OperationFailed {
        operation_url: String,
        /// `Failed`, `Canceled` or `Cancelled`, as ARM spelled it.
        status: String,
        code: String,
        message: String,
        target: Option<String>,
        details: Vec<ArmErrorDetail>,
        request_id: Option<String>,
    },

    #[error(
        "long-running operation {operation_url} reported status `{status}`, which ferry does not know: expected InProgress, Succeeded, Failed or Canceled"
    )]
    UnknownOperationStatus {
        operation_url: String,
        status: String,
    },

    #[error(
        "resource {url} reported provisioningState `{state}`, which ferry does not know: expected Succeeded, Failed, Canceled or an in-progress state"
    )]
    UnknownProvisioningState { url: String, state: String },

    #[error(
        "{method} {url} answered {status} with a body that is not the expected JSON ({reason}){}; the first bytes were: {snippet}",
        request_suffix(.request_id).replacen(", ", " (", 1) + if .request_id.is_some() { ")" } else { "" }
    )]
    InvalidBody {
        method: String,
        url: String,
        status: u16,
        reason: String,
        snippet: String,
        request_id: Option<String>,
    },

    #[error("{method} {url} answered with header {header}: `{value}`, which is not {expected}")]
    InvalidHeader {
        method: String,
        url: String,
        header: String,
        value: String,
        expected: &'static str,
    },

    #[error(
        "{method} {url} redirected to {location}, on another host than the ARM endpoint; ferry never sends its token elsewhere: check the endpoint setting"
    )]
    RedirectOffHost {
        method: String,
        url: String,
        location: String,
    },

    #[error(
        "{method} {url} answered {status} (a redirect) without usable Location; ARM does not redirect: check the endpoint setting"
    )]
    UnexpectedRedirect {
        method: String,
        url: String,
        status: u16,
    },

    #[error(
        "ARM gave an operation URL {operation_url} on another host than the endpoint {endpoint}; ferry never sends its token elsewhere"
    )]
    OperationOffHost {
        operation_url: String,
        endpoint: String,
    },

    #[error(
        "could not reach ARM for {method} {url}: {reason}; check the network and the endpoint setting"
    )]
    Transport {
        method: String,
        url: String,
        reason: String,
    },

    #[error("could not build a request for {url}: {reason}")]
    Request { url: String, reason: String },

    #[error("the {credential} credential gave no token: {reason}; check its settings")]
    Credential {
        credential: &'static str,
        reason: String,
    },

    #[error("no Azure credential worked; tried, in order:\n{}\nset one of these up (for example `az login`) or pass a credential in the client config", render_attempts(.attempts))]
    NoCredential { attempts: Vec<CredentialAttempt> },

    #[error(
        "could not read the CA file {path}: {reason}; pass a PEM file with one or more certificates"
    )]
    CaFile { path: String, reason: String },

    #[error("invalid ARM client config: {0}")]
    Config(String),

    #[error(
        "waited for long-running operation {operation_url} longer than {limit:?}; resume polling it later with the saved operation"
    )]
    OperationTimeout {
        operation_url: String,
        limit: Duration,
    },
}

/// One credential that the chain tried, and why it did not work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialAttempt {
    pub credential: &'static str,
    pub reason: String,
}

fn render_attempts(attempts: &[CredentialAttempt]) -> String {
    attempts
        .iter()
        .map(|attempt| format!("  - {}: {}", attempt.credential, attempt.reason))
        .collect::<Vec<_>>()
        .join("\n")
}

fn request_suffix(request_id: &Option<String>) -> String {
    match request_id {
        Some(id) => format!(", x-ms-request-id {id}"),
        None => String::new(),
    }
}

/// The words every advice for an error that applying again does not fix ends with, so that a
/// report can tell them apart from a failure the next apply resumes.
pub const FIX_FIRST: &str = "applying again will not help until it changes";

/// ARM's codes for a request it could not route to a resource provider.
const UNROUTED_CODES: &[&str] = &[
    "InvalidResourceType",
    "InvalidResourceNamespace",
    "InvalidApiVersionParameter",
    "NoRegisteredProviderFound",
];

/// What to do about an ARM error code that no retry fixes: a quota is raised or a size
/// changed by a person, not by applying again.
pub fn code_advice(code: &str) -> Option<&'static str> {
    let advice = match code {
        "QuotaExceeded"
        | "DiskQuotaExceeded"
        | "InsufficientVCPUQuota"
        | "QuotaExceededForResource" => {
            "; a quota stops it, and applying again will not help until it changes: request a higher quota in that region (Azure portal, Quotas), or choose a smaller size or another region in the spec, then run ferry apply"
        }
        "AllocationFailed" | "ZonalAllocationFailed" | "SkuNotAvailable" => {
            "; Azure has no capacity for this size there now, and applying again will not help until it changes: choose another size (or region) in the spec, or wait for capacity, then run ferry apply"
        }
        "InvalidParameter" | "BadRequest" | "InvalidTemplate" | "PropertyChangeNotAllowed" => {
            "; Azure refuses a value the spec gives, and applying again will not help until it changes: fix the spec where the message points, then run ferry plan"
        }
        "InvalidResourceType"
        | "InvalidResourceNamespace"
        | "InvalidApiVersionParameter"
        | "NoRegisteredProviderFound" => {
            "; ARM does not serve this type or api-version there, and applying again will not help until it changes: check the resource type and region in the spec, and that this ferry's api-versions are ones Azure still serves"
        }
        "LocationNotAvailableForResourceGroup"
        | "LocationNotAvailableForResourceType"
        | "InvalidResourceGroupLocation"
        | "InvalidResourceLocation" => {
            "; Azure has no such region for it, or it already exists in another one (Azure never moves a resource between regions), and applying again will not help until it changes: fix `location` in the spec, then run ferry plan"
        }
        "MissingSubscriptionRegistration" => {
            "; the subscription has not registered this resource provider, and applying again will not help until it changes: register it (az provider register --namespace NAMESPACE), then run ferry apply"
        }
        "ResourceGroupBeingDeleted" => {
            "; the resource group is being deleted and takes no writes: wait until its deletion ends, then run ferry apply"
        }
        "AuthorizationFailed" | "LinkedAuthorizationFailed" => {
            "; the credential lacks a role for this, and applying again will not help until it changes: grant it (Contributor on the resource group or subscription), then run ferry apply"
        }
        _ => return None,
    };
    Some(advice)
}

fn render_service_error(error: &ArmServiceError) -> String {
    let advice = code_advice(&error.code).unwrap_or(match error.status {
        409 => {
            "; the resource is busy or in conflict: wait for other operations or fix the conflict, then retry"
        }
        412 => {
            "; the resource changed since it was read (ETag mismatch): read it again and re-plan"
        }
        429 => "; ARM is throttling requests: retry after the given delay",
        401 | 403 => "; check the credential and its role assignments",
        404 => "; check the resource id and that its resource group exists",
        500..=599 => "; ARM had a server error: retrying may help",
        _ => "",
    });
    let target = match &error.target {
        Some(target) => format!(" (target {target})"),
        None => String::new(),
    };
    // ARM's code and message first, which is what a person acts on; the request that got
    // them (and the id Azure support asks for) in parentheses; the advice last.
    format!(
        "{}: {}{} ({} {} answered {}{}){}",
        error.code,
        error.message,
        target,
        error.method,
        error.url,
        error.status,
        request_suffix(&error.request_id),
        advice
    )
}

impl ArmError {
    /// The HTTP status ARM answered with, when it answered with an error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ArmError::Service(error) => Some(error.status),
            _ => None,
        }
    }

    /// ARM's error code, for a service error or a failed operation.
    pub fn code(&self) -> Option<&str> {
        match self {
            ArmError::Service(error) => Some(&error.code),
            ArmError::OperationFailed { code, .. } => Some(code),
            _ => None,
        }
    }

    /// 404 for a resource or group that does not exist. ARM also answers 404 when it cannot
    /// route the request at all (`InvalidResourceType`: a type or api-version it does not
    /// have): that says nothing of the resource, so it is not "absent".
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
            && !matches!(self.code(), Some(code) if UNROUTED_CODES.contains(&code))
    }

    /// 409: a conflict (the disk is attached elsewhere, a group is locked by a move).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// 412: an `If-Match`/`If-None-Match` precondition failed.
    pub fn is_precondition_failed(&self) -> bool {
        self.status() == Some(412)
    }

    /// ARM refused (or ended) a write because another operation holds the resource or its
    /// group: a write in progress on it (`ConflictingConcurrentWriteNotAllowed`, AKS's
    /// `OperationNotAllowed` naming another operation in progress, Network's
    /// `AnotherOperationInProgress`, `RetryableError`), or a move that locks its group
    /// (`ScopeLocked`). It frees itself when that operation ends, usually in minutes, so the
    /// same request is sent again later. A permanent conflict (a disk attached elsewhere, a
    /// management lock that a person must remove, an AKS refusal of another kind) is not busy.
    pub fn is_busy(&self) -> bool {
        let (code, message) = match self {
            ArmError::Service(error) if matches!(error.status, 409 | 429) => {
                (error.code.as_str(), error.message.as_str())
            }
            ArmError::OperationFailed { code, message, .. } => (code.as_str(), message.as_str()),
            _ => return false,
        };
        let message = message.to_ascii_lowercase();
        match code {
            "ConflictingConcurrentWriteNotAllowed"
            | "AnotherOperationInProgress"
            | "RetryableError"
            | "RetryableErrorDueToAnotherOperation"
            | "ResourceGroupBeingMoved"
            | "MoveResourcesInProgress" => true,
            // A move's lock on the group ends with the move; a management lock (whose message
            // asks to remove it) stays until a person does.
            "ScopeLocked" => !message.contains("remove the lock"),
            // AKS: "Operation is not allowed: Another operation (Updating) is in progress".
            "OperationNotAllowed" => {
                message.contains("another operation") && message.contains("in progress")
            }
            // Compute's older wording: "The request failed due to conflict with a concurrent
            // request."
            "Conflict" => message.contains("concurrent request"),
            _ => false,
        }
    }

    /// A retry may succeed: throttling, server errors, a dropped connection, an operation
    /// that ARM itself failed with an internal error, a resource busy with another write.
    pub fn is_transient(&self) -> bool {
        if self.is_busy() {
            return true;
        }
        match self {
            ArmError::Service(error) => {
                error.status == 429 || error.status == 408 || (500..=599).contains(&error.status)
            }
            ArmError::Transport { .. } => true,
            ArmError::OperationFailed { code, .. } => {
                matches!(
                    code.as_str(),
                    "InternalServerError" | "InternalOperationError" | "RetryableError"
                )
            }
            ArmError::OperationTimeout { .. } => true,
            _ => false,
        }
    }

    /// How long ARM asked us to wait before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ArmError::Service(error) => error.retry_after,
            _ => None,
        }
    }

    /// The `x-ms-request-id` of the failing response, when there was one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            ArmError::Service(error) => error.request_id.as_deref(),
            ArmError::OperationFailed { request_id, .. }
            | ArmError::InvalidBody { request_id, .. } => request_id.as_deref(),
            _ => None,
        }
    }

    /// The step error for a failure whose cause is this ARM error, under `message` (a
    /// provider's own error, naming its instance): transient, after ARM's `Retry-After` when
    /// it sent one, when a retry may succeed; permanent otherwise. The one place a provider's
    /// ARM failure is judged for a retry.
    pub fn step_error(&self, message: String) -> ferry_core::StepError {
        if self.is_transient() {
            ferry_core::StepError::transient(message, self.retry_after())
        } else {
            ferry_core::StepError::permanent(message)
        }
    }
}

/// Parses `Retry-After` as ARM sends it: whole seconds. An HTTP date is also accepted,
/// because the HTTP standard allows it; anything else is an error naming the header.
pub fn parse_retry_after(value: &str) -> Result<Duration, &'static str> {
    let trimmed = value.trim();
    if let Ok(seconds) = trimmed.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    if let Ok(date) =
        time::OffsetDateTime::parse(trimmed, &time::format_description::well_known::Rfc2822)
    {
        let now = time::OffsetDateTime::now_utc();
        let wait = (date - now).max(time::Duration::ZERO);
        return Ok(Duration::from_secs_f64(wait.as_seconds_f64()));
    }
    Err("a number of seconds or an HTTP date")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service_error(status: u16, retry_after: Option<Duration>) -> ArmError {
        ArmError::Service(Box::new(ArmServiceError {
            status,
            method: "GET".to_owned(),
            url: "https://management.azure.com/subscriptions/s".to_owned(),
            code: format!("HttpStatus{status}"),
            message: String::new(),
            target: None,
            details: Vec::new(),
            request_id: None,
            retry_after,
        }))
    }

    fn refused(status: u16, code: &str, message: &str) -> ArmError {
        ArmError::Service(Box::new(ArmServiceError {
            status,
            method: "PUT".to_owned(),
            url: "https://management.azure.com/subscriptions/s".to_owned(),
            code: code.to_owned(),
            message: message.to_owned(),
            target: None,
            details: Vec::new(),
            request_id: None,
            retry_after: None,
        }))
    }

    #[test]
    fn busy_answers_are_retried_and_permanent_conflicts_are_not() {
        let busy = [
            refused(
                409,
                "ConflictingConcurrentWriteNotAllowed",
                "The operation was interrupted by a conflicting concurrent write on the same entity. Please retry later.",
            ),
            refused(
                409,
                "OperationNotAllowed",
                "Operation is not allowed: Another operation (Updating) is in progress, please wait for it to finish before starting a new operation. See https://aka.ms/aks-pending-operation for more details",
            ),
            refused(
                409,
                "ScopeLocked",
                "the resource group 'g' is locked while resources move into or out of it; retry after the move",
            ),
            refused(
                409,
                "AnotherOperationInProgress",
                "Another operation on this or dependent resource is in progress.",
            ),
            refused(
                429,
                "RetryableErrorDueToAnotherOperation",
                "locked by another operation",
            ),
            ArmError::OperationFailed {
                operation_url: "https://management.azure.com/operations/1".to_owned(),
                status: "Failed".to_owned(),
                code: "RetryableError".to_owned(),
                message: "a retryable error occurred".to_owned(),
                target: None,
                details: Vec::new(),
                request_id: None,
            },
        ];
        for error in &busy {
            assert!(error.is_busy() && error.is_transient(), "{error}");
            assert!(error.step_error(error.to_string()).transient, "{error}");
        }
        let permanent = [
            refused(
                409,
                "ConflictingUserInput",
                "Disk d is already attached to VM v.",
            ),
            refused(
                409,
                "InvalidResourceLocation",
                "The resource already exists in location westeurope.",
            ),
            refused(
                409,
                "OperationNotAllowed",
                "Unable to resize the VM 'web-vm' because the requested size Standard_D8s_v5 is not available in the current hardware cluster.",
            ),
            refused(
                409,
                "ScopeLocked",
                "The scope 'g' cannot perform write operation because following scope(s) are locked: 'g'. Please remove the lock and try again.",
            ),
        ];
        for error in &permanent {
            assert!(!error.is_busy() && !error.is_transient(), "{error}");
            assert!(!error.step_error(error.to_string()).transient, "{error}");
        }
    }

    #[test]
    fn a_step_error_keeps_the_providers_message_and_retries_only_what_arm_may_grant() {
        let wait = Some(Duration::from_secs(10));
        let throttled = service_error(429, wait).step_error("disk.home0: throttled".to_owned());
        assert!(throttled.transient);
        assert_eq!(throttled.retry_after, wait);
        assert_eq!(throttled.message, "disk.home0: throttled");
        let missing = service_error(404, None).step_error("disk.home0: gone".to_owned());
        assert!(!missing.transient);
        assert_eq!(missing.message, "disk.home0: gone");
    }
}
