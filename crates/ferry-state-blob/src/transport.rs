//! How requests reach the service: blob URLs, the HTTPS client (extra CA, timeouts, no
//! redirects), the credential, the retry policy that gives up after `retry_for` and then tries
//! once until the service answers, and what a failed request means in a message.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::error::ErrorKind;
use azure_core::http::policies::{Policy, PolicyResult, RetryHeaders, RetryPolicy};
use azure_core::http::{ClientOptions, Context, Etag, Request, StatusCode, Url};
use azure_storage_blob::BlobClient;
use azure_storage_blob::models::BlobClientDownloadOptions;
use ferry_arm::{ChainedCredential, CredentialChoice, StaticTokenCredential};
use ferry_core::Secret;

use crate::{BlobError, BlobStateConfig};

pub(crate) fn blob_url(
    container: &Url,
    name: &str,
    sas: Option<&Secret>,
) -> Result<Url, BlobError> {
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

pub(crate) fn without_query(url: &Url) -> String {
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
pub(crate) struct GiveUpAfter {
    pub(crate) retry_for: Duration,
    pub(crate) unreachable: Arc<AtomicBool>,
    pub(crate) retry_headers: RetryHeaders,
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
pub(crate) struct NoteAnswers {
    pub(crate) unreachable: Arc<AtomicBool>,
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

pub(crate) fn http_client(config: &BlobStateConfig) -> Result<reqwest::Client, BlobError> {
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
pub(crate) fn credential(
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

/// What a failed request means to us.
pub(crate) fn describe(error: &azure_core::Error) -> String {
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

pub(crate) fn status(error: &azure_core::Error) -> Option<StatusCode> {
    error.http_status()
}

fn code(error: &azure_core::Error) -> Option<&str> {
    match error.kind() {
        ErrorKind::HttpResponse { error_code, .. } => error_code.as_deref(),
        _ => None,
    }
}

pub(crate) fn container_missing(error: &azure_core::Error) -> bool {
    code(error) == Some("ContainerNotFound")
}

/// Downloads a whole blob with its ETag; `None` when it does not exist.
pub(crate) async fn download(
    client: &BlobClient,
) -> azure_core::Result<Option<(Vec<u8>, Option<Etag>)>> {
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
