//! The ARM client: an `azure_core` pipeline (pacing by ARM's remaining-count headers, bearer
//! token, retries of 429/5xx) and typed
//! GET/PUT/PATCH/DELETE/POST by resource id, with long-running operations that can be resumed.
//!
//! `config` holds what a client is built from, `pipeline` how it is built (transport,
//! retries, credential), `pacing` the pacer every try passes, `response` ARM's answer as it came; here is the one way a request
//! is sent. `reads`, `writes` and `polling` are the requests themselves: GET and lists,
//! PUT/PATCH/DELETE/POST that return at once or wait, and long-running operations polled
//! until they end.

mod config;
mod pacing;
mod pipeline;
mod polling;
mod reads;
mod response;
mod writes;

use std::sync::Arc;

use azure_core::http::headers::HeaderName;
use azure_core::http::{Context, Method, Pipeline, PipelineSendOptions, Request, Url};

use crate::credential::{ChainedCredential, credential_message};
use crate::error::ArmError;
use pipeline::reached_no_server;

pub use config::{
    AZURE_PUBLIC_ENDPOINT, ArmClientConfig, BusySettings, PollSettings, RetrySettings,
};
pub use pacing::{PacingReport, PacingSettings};
pub use polling::PollOutcome;
pub use response::{ArmResponse, Fetched};

const AZURE_ASYNC_OPERATION: HeaderName = HeaderName::from_static("azure-asyncoperation");
const LOCATION: HeaderName = HeaderName::from_static("location");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
const ETAG: HeaderName = HeaderName::from_static("etag");
const IF_MATCH: HeaderName = HeaderName::from_static("if-match");
const IF_NONE_MATCH: HeaderName = HeaderName::from_static("if-none-match");
const CONTENT_TYPE: HeaderName = HeaderName::from_static("content-type");

/// Optional conditions and query parameters of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Only write if the resource still has this ETag (`*`: if it exists at all).
    pub if_match: Option<String>,
    /// `*`: only create, never overwrite.
    pub if_none_match: Option<String>,
    /// Extra query parameters (`forceDeletion=true`).
    pub query: Vec<(String, String)>,
}

/// The ARM client. Cheap to clone; share one per subscription.
#[derive(Clone, Debug)]
pub struct ArmClient {
    pipeline: Pipeline,
    endpoint: Url,
    polling: PollSettings,
    busy: BusySettings,
    /// Shared by every clone: one pacer per client.
    pacer: Arc<pacing::Pacer>,
    chain: Option<Arc<ChainedCredential>>,
    /// The configured credential's name, for errors about it.
    credential_name: &'static str,
}

impl ArmClient {
    pub fn endpoint(&self) -> &Url {
        &self.endpoint
    }

    /// How writes refused as busy are sent again.
    pub fn busy_settings(&self) -> &BusySettings {
        &self.busy
    }

    /// What the pacer did so far: requests, those it held back and for how long, 429s.
    pub fn pacing_report(&self) -> PacingReport {
        self.pacer.report()
    }

    /// The credential chain, when the client uses it: which credential it chose, and why each
    /// failed when none worked.
    pub fn credential_chain(&self) -> Option<&ChainedCredential> {
        self.chain.as_deref()
    }

    /// The full URL of an ARM path (`/subscriptions/...`) with its api-version.
    pub fn url_for(
        &self,
        path: &str,
        api_version: &str,
        query: &[(String, String)],
    ) -> Result<Url, ArmError> {
        let mut url = self
            .endpoint
            .join(path)
            .map_err(|error| ArmError::Request {
                url: path.to_owned(),
                reason: error.to_string(),
            })?;
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("api-version", api_version);
            for (name, value) in query {
                pairs.append_pair(name, value);
            }
        }
        Ok(url)
    }

    /// Sends one request through the pipeline and returns ARM's answer as it is, except that
    /// redirects are refused (ARM does not redirect, and the token must not leave the host).
    pub async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        options: &WriteOptions,
    ) -> Result<ArmResponse, ArmError> {
        let mut request = Request::new(url.clone(), method);
        if let Some(body) = body {
            request.insert_header(CONTENT_TYPE, "application/json");
            request.set_body(body);
        }
        if let Some(etag) = &options.if_match {
            request.insert_header(IF_MATCH, etag.clone());
        }
        if let Some(etag) = &options.if_none_match {
            request.insert_header(IF_NONE_MATCH, etag.clone());
        }
        let context = Context::new();
        let send_options = PipelineSendOptions {
            skip_checks: true,
            ..Default::default()
        };
        let raw = self
            .pipeline
            .send(&context, &mut request, Some(send_options))
            .await
            .map_err(|error| self.transport_error(method_name(method), &url, error))?;
        let (status, headers, body) = raw.deconstruct();
        let response = ArmResponse {
            method: method_name(method).to_owned(),
            url,
            status: u16::from(status),
            headers,
            body: body.to_vec(),
        };
        if (300..400).contains(&response.status) {
            return Err(match response.header("location") {
                Some(location) if !self.same_host(location) => ArmError::RedirectOffHost {
                    method: response.method.clone(),
                    url: response.url.to_string(),
                    location: location.to_owned(),
                },
                _ => ArmError::UnexpectedRedirect {
                    method: response.method.clone(),
                    url: response.url.to_string(),
                    status: response.status,
                },
            });
        }
        Ok(response)
    }

    fn transport_error(&self, method: &str, url: &Url, error: azure_core::Error) -> ArmError {
        if matches!(error.kind(), azure_core::error::ErrorKind::Credential) {
            if let Some(chain) = &self.chain {
                let attempts = chain.last_attempts();
                if !attempts.is_empty() {
                    return ArmError::NoCredential { attempts };
                }
            } else if !reached_no_server(&error) {
                // The credential's service answered and refused (a wrong secret, an identity
                // that is not assigned): not a network problem, and retrying will not help.
                return ArmError::Credential {
                    credential: self.credential_name,
                    reason: credential_message(&error),
                };
            }
        }
        let mut reason = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(inner) = source {
            reason.push_str(": ");
            reason.push_str(&inner.to_string());
            source = inner.source();
        }
        ArmError::Transport {
            method: method.to_owned(),
            url: url.to_string(),
            reason,
        }
    }

    fn same_host(&self, url: &str) -> bool {
        match Url::parse(url) {
            Ok(url) => {
                url.scheme() == "https"
                    && url.host_str().map(str::to_ascii_lowercase)
                        == self.endpoint.host_str().map(str::to_ascii_lowercase)
                    && url.port_or_known_default() == self.endpoint.port_or_known_default()
            }
            Err(_) => false,
        }
    }

    fn checked_operation_url(&self, url: &str) -> Result<Url, ArmError> {
        if !self.same_host(url) {
            return Err(ArmError::OperationOffHost {
                operation_url: url.to_owned(),
                endpoint: self.endpoint.to_string(),
            });
        }
        Url::parse(url).map_err(|error| ArmError::Request {
            url: url.to_owned(),
            reason: error.to_string(),
        })
    }

    /// Sends and turns any error status into an [`ArmError`].
    async fn send_checked(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        options: &WriteOptions,
    ) -> Result<ArmResponse, ArmError> {
        let response = self.send(method, url, body, options).await?;
        if response.status >= 400 {
            return Err(response.service_error());
        }
        Ok(response)
    }
}

fn method_name(method: Method) -> &'static str {
    match method {
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Patch => "PATCH",
        Method::Delete => "DELETE",
        Method::Post => "POST",
        Method::Head => "HEAD",
        _ => "OTHER",
    }
}
