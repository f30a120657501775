//! ARM's answer as it came, before interpretation: its body as JSON, its `Retry-After`, and
//! the error it carries; and a value read with its ETag.

use std::time::Duration;

use azure_core::http::Url;
use azure_core::http::headers::{HeaderName, Headers};
use serde::de::DeserializeOwned;

use super::{REQUEST_ID, RETRY_AFTER, RETRY_AFTER_MS};
use crate::error::{ArmError, ArmErrorResponse, ArmServiceError, parse_retry_after};

/// A response as ARM sent it, before interpretation.
#[derive(Debug, Clone)]
pub struct ArmResponse {
    pub method: String,
    pub url: Url,
    pub status: u16,
    pub headers: Headers,
    pub body: Vec<u8>,
}

impl ArmResponse {
    pub fn header(&self, name: &'static str) -> Option<&str> {
        self.headers
            .get_optional_str(&HeaderName::from_static(name))
    }

    pub(super) fn request_id(&self) -> Option<String> {
        self.headers.get_optional_string(&REQUEST_ID)
    }

    /// The body as `T`, with an error naming the request when it is not.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ArmError> {
        serde_json::from_slice(&self.body).map_err(|error| ArmError::InvalidBody {
            method: self.method.clone(),
            url: self.url.to_string(),
            status: self.status,
            reason: error.to_string(),
            snippet: snippet(&self.body),
            request_id: self.request_id(),
        })
    }

    /// The body as `T`, or `None` when it is empty.
    pub fn json_if_any<T: DeserializeOwned>(&self) -> Result<Option<T>, ArmError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            Ok(None)
        } else {
            self.json().map(Some)
        }
    }

    /// `Retry-After` (seconds or date) or `x-ms-retry-after-ms`, strictly parsed.
    pub(super) fn retry_after(&self) -> Result<Option<Duration>, ArmError> {
        if let Some(milliseconds) = self.headers.get_optional_str(&RETRY_AFTER_MS)
            && let Ok(milliseconds) = milliseconds.trim().parse::<u64>()
        {
            return Ok(Some(Duration::from_millis(milliseconds)));
        }
        match self.headers.get_optional_str(&RETRY_AFTER) {
            None => Ok(None),
            Some(value) => {
                parse_retry_after(value)
                    .map(Some)
                    .map_err(|expected| ArmError::InvalidHeader {
                        method: self.method.clone(),
                        url: self.url.to_string(),
                        header: "Retry-After".to_owned(),
                        value: value.to_owned(),
                        expected,
                    })
            }
        }
    }

    pub(super) fn service_error(&self) -> ArmError {
        let parsed = serde_json::from_slice::<ArmErrorResponse>(&self.body).ok();
        let (code, message, target, details) = match parsed {
            Some(ArmErrorResponse { error })
                if !error.code.is_empty() || !error.message.is_empty() =>
            {
                (error.code, error.message, error.target, error.details)
            }
            _ => (
                format!("HttpStatus{}", self.status),
                snippet(&self.body),
                None,
                Vec::new(),
            ),
        };
        ArmError::Service(Box::new(ArmServiceError {
            status: self.status,
            method: self.method.clone(),
            url: self.url.to_string(),
            code,
            message,
            target,
            details,
            request_id: self.request_id(),
            // A malformed Retry-After on an error response leaves the engine's own back-off.
            retry_after: self.retry_after().ok().flatten(),
        }))
    }
}

/// A value read from ARM, with the ETag to send back in `If-Match`.
#[derive(Debug, Clone, PartialEq)]
pub struct Fetched<T> {
    pub value: T,
    pub etag: Option<String>,
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut shortened: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        shortened.push('…');
    }
    shortened
}
