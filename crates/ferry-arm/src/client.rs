//! The ARM client: an `azure_core` pipeline (bearer token, retries of 429/5xx) and typed
//! GET/PUT/PATCH/DELETE/POST by resource id, with long-running operations that can be resumed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::headers::{HeaderName, Headers};
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{
    ClientOptions, Context, ExponentialRetryOptions, Method, Pipeline, PipelineSendOptions,
    Request, RetryOptions, Transport, Url,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::credential::{
    ChainedCredential, CredentialChoice, CredentialVariables, StaticTokenCredential,
    build_azure_cli, build_client_secret, build_managed_identity, build_workload_identity,
    credential_message,
};
use crate::error::{ArmError, ArmErrorResponse, ArmServiceError, parse_retry_after};
use crate::id::ResourceId;
use crate::models::{AsyncOperationStatus, ListPage, OperationPhase};
use crate::operation::{PendingOperation, PollStyle, Started};

/// The public Azure cloud's ARM endpoint.
pub const AZURE_PUBLIC_ENDPOINT: &str = "https://management.azure.com";

const AZURE_ASYNC_OPERATION: HeaderName = HeaderName::from_static("azure-asyncoperation");
const LOCATION: HeaderName = HeaderName::from_static("location");
const RETRY_AFTER: HeaderName = HeaderName::from_static("retry-after");
const RETRY_AFTER_MS: HeaderName = HeaderName::from_static("x-ms-retry-after-ms");
const REQUEST_ID: HeaderName = HeaderName::from_static("x-ms-request-id");
const ETAG: HeaderName = HeaderName::from_static("etag");
const IF_MATCH: HeaderName = HeaderName::from_static("if-match");
const IF_NONE_MATCH: HeaderName = HeaderName::from_static("if-none-match");
const CONTENT_TYPE: HeaderName = HeaderName::from_static("content-type");

/// How the pipeline retries throttled (429) and failed (5xx) requests. Waits are the larger of
/// ARM's `Retry-After` and an exponential back-off from `initial_delay`.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    pub max_retries: u32,
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Past this total, the last error is returned (marked transient) for the engine to handle.
    pub max_total_elapsed: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_retries: 6,
            initial_delay: Duration::from_millis(800),
            max_delay: Duration::from_secs(30),
            max_total_elapsed: Duration::from_secs(120),
        }
    }
}

/// How long-running operations are polled. ARM's `Retry-After` is honoured within
/// `[minimum_interval, maximum_interval]`; without it, `default_interval` is used.
#[derive(Debug, Clone)]
pub struct PollSettings {
    pub default_interval: Duration,
    pub minimum_interval: Duration,
    pub maximum_interval: Duration,
    /// Give up waiting (not the operation) after this long; `None` waits for ever.
    pub timeout: Option<Duration>,
}

impl Default for PollSettings {
    fn default() -> Self {
        PollSettings {
            default_interval: Duration::from_secs(10),
            minimum_interval: Duration::from_secs(1),
            maximum_interval: Duration::from_secs(60),
            timeout: None,
        }
    }
}

/// Everything the client needs to know; the same code talks to Azure and to the simulator.
#[derive(Debug, Clone)]
pub struct ArmClientConfig {
    /// `https://management.azure.com` for Azure, the simulator's address otherwise.
    pub endpoint: Url,
    /// Entra ID's authority host (`https://login.microsoftonline.com`); `None` for Azure's
    /// default, or `AZURE_AUTHORITY_HOST` when set.
    pub authority_host: Option<Url>,
    /// A PEM file of extra trusted CA certificates (the simulator's CA).
    pub ca_file: Option<PathBuf>,
    pub credential: CredentialChoice,
    /// The token scope; `None` derives `{endpoint}/.default`.
    pub scope: Option<String>,
    pub retry: RetrySettings,
    pub polling: PollSettings,
    /// One HTTP exchange, not a whole long-running operation.
    pub request_timeout: Duration,
}

impl ArmClientConfig {
    /// Azure's public cloud, with the documented credential chain.
    pub fn azure_public() -> Self {
        ArmClientConfig {
            endpoint: Url::parse(AZURE_PUBLIC_ENDPOINT).expect("constant URL parses"),
            authority_host: None,
            ca_file: None,
            credential: CredentialChoice::Chain,
            scope: None,
            retry: RetrySettings::default(),
            polling: PollSettings::default(),
            request_timeout: Duration::from_secs(100),
        }
    }

    /// A simulator at `endpoint` whose CA is in `ca_file`: the simulator's token endpoint
    /// issues the token for a client secret credential, as Entra ID would. The tenant, client
    /// and secret are the ones `ferry_sim` knows (`TENANT_ID`, `CLIENT_ID`, `CLIENT_SECRET`).
    pub fn simulator(endpoint: Url, ca_file: PathBuf) -> Self {
        ArmClientConfig {
            authority_host: Some(endpoint.clone()),
            endpoint,
            ca_file: Some(ca_file),
            credential: CredentialChoice::ClientSecret {
                tenant_id: "00000000-0000-0000-0000-000000000000".to_owned(),
                client_id: "ferry-simulator-client".to_owned(),
                client_secret: ferry_core::Secret::new("ferry-simulator-secret"),
            },
            scope: None,
            retry: RetrySettings {
                max_retries: 6,
                initial_delay: Duration::from_millis(20),
                max_delay: Duration::from_millis(500),
                max_total_elapsed: Duration::from_secs(30),
            },
            polling: PollSettings {
                default_interval: Duration::from_millis(20),
                minimum_interval: Duration::from_millis(5),
                maximum_interval: Duration::from_secs(2),
                timeout: None,
            },
            request_timeout: Duration::from_secs(30),
        }
    }
}

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

    fn request_id(&self) -> Option<String> {
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
    fn retry_after(&self) -> Result<Option<Duration>, ArmError> {
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

    fn service_error(&self) -> ArmError {
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
    chain: Option<Arc<ChainedCredential>>,
    /// The configured credential's name, for errors about it.
    credential_name: &'static str,
}

impl ArmClient {
    pub fn new(config: ArmClientConfig) -> Result<Self, ArmError> {
        if config.endpoint.scheme() != "https" {
            return Err(ArmError::Config(format!(
                "endpoint {} must use https: ARM and the simulator only speak HTTPS",
                config.endpoint
            )));
        }
        let http_client = build_http_client(&config)?;
        let mut client_options = ClientOptions {
            transport: Some(Transport::new(Arc::new(http_client))),
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: to_time_duration(config.retry.initial_delay),
                max_retries: config.retry.max_retries,
                max_total_elapsed: to_time_duration(config.retry.max_total_elapsed),
                max_delay: to_time_duration(config.retry.max_delay),
            }),
            ..ClientOptions::default()
        };
        if let Some(authority_host) = &config.authority_host {
            let mut custom = azure_core::cloud::CustomConfiguration::default();
            custom.authority_host = authority_host.as_str().trim_end_matches('/').to_owned();
            client_options.cloud = Some(Arc::new(custom.into()));
        }
        // The token endpoint gets a short retry budget of its own: a refused connection there
        // fails in seconds (the credential's retries nested inside ARM's took 161 s), while a
        // throttled or failing token service is still tried again a few times.
        let authority = config.authority_host.as_ref().map_or_else(
            || match std::env::var("AZURE_AUTHORITY_HOST") {
                Ok(host) if !host.is_empty() => host,
                _ => "https://login.microsoftonline.com".to_owned(),
            },
            |host| host.as_str().trim_end_matches('/').to_owned(),
        );
        let client_options_for_arm = client_options.clone();
        let client_options = ClientOptions {
            retry: RetryOptions::exponential(ExponentialRetryOptions {
                initial_delay: to_time_duration(
                    config.retry.initial_delay.min(Duration::from_millis(500)),
                ),
                max_retries: 3,
                max_total_elapsed: to_time_duration(Duration::from_secs(10)),
                max_delay: to_time_duration(Duration::from_secs(2)),
            }),
            ..client_options
        };
        let mut chain = None;
        let mut remember_chain = |built: ChainedCredential| {
            let built = Arc::new(built);
            chain = Some(built.clone());
            built as Arc<dyn TokenCredential>
        };
        let credential: Arc<dyn TokenCredential> = match &config.credential {
            CredentialChoice::Chain => {
                remember_chain(ChainedCredential::from_environment(&client_options))
            }
            CredentialChoice::ChainWith(variables) => remember_chain(
                ChainedCredential::from_variables(variables, &client_options),
            ),
            CredentialChoice::ClientSecret {
                tenant_id,
                client_id,
                client_secret,
            } => build_client_secret(tenant_id, client_id, client_secret, &client_options)
                .map_err(|reason| {
                    ArmError::Config(format!("client secret credential: {reason}"))
                })?,
            CredentialChoice::WorkloadIdentity => {
                build_workload_identity(&CredentialVariables::from_process(), &client_options)
                    .map_err(|reason| {
                        ArmError::Config(format!("workload identity credential: {reason}"))
                    })?
            }
            CredentialChoice::ManagedIdentity { client_id } => {
                build_managed_identity(client_id.clone(), &client_options).map_err(|reason| {
                    ArmError::Config(format!("managed identity credential: {reason}"))
                })?
            }
            CredentialChoice::AzureCli => build_azure_cli(&CredentialVariables::from_process())
                .map_err(|reason| ArmError::Config(format!("Azure CLI credential: {reason}")))?,
            CredentialChoice::StaticToken(token) => {
                Arc::new(StaticTokenCredential::new(token.clone()))
            }
            CredentialChoice::Custom(credential) => credential.clone(),
        };
        let scope = config.scope.clone().unwrap_or_else(|| {
            format!(
                "{}/.default",
                config.endpoint.as_str().trim_end_matches('/')
            )
        });
        let credential: Arc<dyn TokenCredential> = Arc::new(FailFastCredential {
            inner: credential,
            authority,
        });
        let authorization: Arc<dyn Policy> =
            Arc::new(BearerTokenAuthorizationPolicy::new(credential, [scope]));
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            client_options_for_arm,
            Vec::new(),
            vec![authorization],
            None,
        );
        Ok(ArmClient {
            pipeline,
            endpoint: config.endpoint,
            polling: config.polling,
            chain,
            credential_name: credential_name(&config.credential),
        })
    }

    pub fn endpoint(&self) -> &Url {
        &self.endpoint
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

    // ---- reads ---------------------------------------------------------------------------

    /// GET a resource (or any ARM path, such as `{vm}/instanceView`).
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Fetched<T>, ArmError> {
        let url = self.url_for(path, api_version, &[])?;
        let response = self
            .send_checked(Method::Get, url, None, &WriteOptions::default())
            .await?;
        let value = response.json()?;
        Ok(Fetched {
            value,
            etag: response.headers.get_optional_string(&ETAG),
        })
    }

    /// GET a resource, with `None` for 404 (absent, or its group is absent).
    pub async fn get_if_exists<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Option<Fetched<T>>, ArmError> {
        match self.get(path, api_version).await {
            Ok(fetched) => Ok(Some(fetched)),
            Err(error) if error.is_not_found() => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// GET a resource by id.
    pub async fn get_resource<T: DeserializeOwned>(
        &self,
        id: &ResourceId,
        api_version: &str,
    ) -> Result<Fetched<T>, ArmError> {
        self.get(id.as_str(), api_version).await
    }

    /// Every item of a list, following `nextLink` (only on the endpoint's host).
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
    ) -> Result<Vec<T>, ArmError> {
        let mut items = Vec::new();
        let mut url = self.url_for(path, api_version, &[])?;
        loop {
            let response = self
                .send_checked(Method::Get, url, None, &WriteOptions::default())
                .await?;
            let page: ListPage<T> = response.json()?;
            items.extend(page.value);
            match page.next_link {
                Some(next) if !next.is_empty() => url = self.checked_operation_url(&next)?,
                _ => return Ok(items),
            }
        }
    }

    // ---- writes ---------------------------------------------------------------------------

    /// PUT (create or replace) and return at once: done, or an operation to wait for.
    pub async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
        options: &WriteOptions,
    ) -> Result<Started<T>, ArmError> {
        self.start(
            Method::Put,
            path,
            api_version,
            Some(to_json(path, body)?),
            options,
        )
        .await
    }

    /// PATCH (merge) and return at once.
    pub async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
        options: &WriteOptions,
    ) -> Result<Started<T>, ArmError> {
        self.start(
            Method::Patch,
            path,
            api_version,
            Some(to_json(path, body)?),
            options,
        )
        .await
    }

    /// DELETE and return at once. A 204 (already absent) is success.
    pub async fn delete(
        &self,
        path: &str,
        api_version: &str,
        options: &WriteOptions,
    ) -> Result<Started<()>, ArmError> {
        match self
            .start::<serde_json::Value>(Method::Delete, path, api_version, None, options)
            .await?
        {
            Started::Completed(_) => Ok(Started::Completed(None)),
            Started::Pending(operation) => Ok(Started::Pending(operation)),
        }
    }

    /// POST an action (`{id}/deallocate`, `{group}/moveResources`) and return at once.
    pub async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: Option<&B>,
        options: &WriteOptions,
    ) -> Result<Started<T>, ArmError> {
        let body = match body {
            Some(body) => Some(to_json(path, body)?),
            None => None,
        };
        self.start(Method::Post, path, api_version, body, options)
            .await
    }

    /// PUT and wait for the resource to be provisioned; returns it as ARM has it afterwards.
    pub async fn put_and_wait<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
        options: &WriteOptions,
    ) -> Result<T, ArmError> {
        let started = self.put(path, api_version, body, options).await?;
        self.finish_resource(path, api_version, started).await
    }

    /// PATCH and wait; returns the resource afterwards.
    pub async fn patch_and_wait<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: &B,
        options: &WriteOptions,
    ) -> Result<T, ArmError> {
        let started = self.patch(path, api_version, body, options).await?;
        self.finish_resource(path, api_version, started).await
    }

    /// DELETE and wait until the resource is gone.
    pub async fn delete_and_wait(
        &self,
        path: &str,
        api_version: &str,
        options: &WriteOptions,
    ) -> Result<(), ArmError> {
        if let Started::Pending(operation) = self.delete(path, api_version, options).await? {
            self.wait::<serde_json::Value>(&operation).await?;
        }
        Ok(())
    }

    /// POST and wait; returns the action's result, if it has one.
    pub async fn post_and_wait<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        body: Option<&B>,
        options: &WriteOptions,
    ) -> Result<Option<T>, ArmError> {
        match self.post(path, api_version, body, options).await? {
            Started::Completed(value) => Ok(value.map(|fetched| fetched.value)),
            Started::Pending(operation) => self.wait(&operation).await,
        }
    }

    async fn finish_resource<T: DeserializeOwned>(
        &self,
        path: &str,
        api_version: &str,
        started: Started<T>,
    ) -> Result<T, ArmError> {
        match started {
            Started::Completed(Some(fetched)) => Ok(fetched.value),
            Started::Completed(None) => Ok(self.get(path, api_version).await?.value),
            Started::Pending(operation) => match self.wait(&operation).await? {
                Some(value) => Ok(value),
                None => Ok(self.get(path, api_version).await?.value),
            },
        }
    }

    async fn start<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        api_version: &str,
        body: Option<Vec<u8>>,
        options: &WriteOptions,
    ) -> Result<Started<T>, ArmError> {
        let url = self.url_for(path, api_version, &options.query)?;
        let response = self
            .send_checked(method, url.clone(), body, options)
            .await?;
        let retry_after = response.retry_after()?;
        let async_operation = response.headers.get_optional_string(&AZURE_ASYNC_OPERATION);
        let location = response.headers.get_optional_string(&LOCATION);
        let pending =
            |operation_url: Url, style: PollStyle, location_url: Option<String>| PendingOperation {
                method: method_name(method).to_owned(),
                resource_url: url.to_string(),
                operation_url: operation_url.to_string(),
                location_url,
                style,
                retry_after,
            };
        if let Some(operation_url) = async_operation {
            let operation_url = self.checked_operation_url(&operation_url)?;
            return Ok(Started::Pending(pending(
                operation_url,
                PollStyle::AzureAsyncOperation,
                location,
            )));
        }
        if response.status == 202 {
            let Some(location) = location else {
                return Err(ArmError::InvalidHeader {
                    method: response.method.clone(),
                    url: response.url.to_string(),
                    header: "Location".to_owned(),
                    value: String::new(),
                    expected: "present on a 202 without Azure-AsyncOperation",
                });
            };
            let operation_url = self.checked_operation_url(&location)?;
            return Ok(Started::Pending(pending(
                operation_url,
                PollStyle::Location,
                None,
            )));
        }
        if response.status == 204 {
            return Ok(Started::Completed(None));
        }
        // 200/201 with no operation header: the body's provisioningState says whether the
        // resource is still being provisioned.
        let raw: Option<serde_json::Value> = response.json_if_any()?;
        if matches!(method, Method::Put | Method::Patch)
            && let Some(state) = raw.as_ref().and_then(provisioning_state_of)
        {
            match OperationPhase::classify(&state) {
                Some(OperationPhase::Succeeded) => {}
                Some(OperationPhase::InProgress) => {
                    return Ok(Started::Pending(pending(
                        url.clone(),
                        PollStyle::ProvisioningState,
                        None,
                    )));
                }
                Some(OperationPhase::Failed | OperationPhase::Canceled) => {
                    return Err(ArmError::OperationFailed {
                        operation_url: url.to_string(),
                        status: state,
                        code: "ProvisioningFailed".to_owned(),
                        message: "the resource reported a failed provisioningState".to_owned(),
                        target: None,
                        details: Vec::new(),
                        request_id: response.request_id(),
                    });
                }
                None => {
                    return Err(ArmError::UnknownProvisioningState {
                        url: url.to_string(),
                        state,
                    });
                }
            }
        }
        let value = match raw {
            Some(_) => Some(Fetched {
                value: response.json()?,
                etag: response.headers.get_optional_string(&ETAG),
            }),
            None => None,
        };
        Ok(Started::Completed(value))
    }

    // ---- long-running operations -------------------------------------------------------

    /// Polls `operation` once: `Ok(None)` while it runs (with the wait ARM asked for).
    pub async fn poll_once<T: DeserializeOwned>(
        &self,
        operation: &PendingOperation,
    ) -> Result<PollOutcome<T>, ArmError> {
        let operation_url = self.checked_operation_url(&operation.operation_url)?;
        let response = self
            .send(Method::Get, operation_url, None, &WriteOptions::default())
            .await?;
        let retry_after = response.retry_after()?;
        match operation.style {
            PollStyle::AzureAsyncOperation => {
                if response.status >= 400 {
                    return Err(response.service_error());
                }
                let status: AsyncOperationStatus = response.json()?;
                match OperationPhase::classify(&status.status) {
                    Some(OperationPhase::InProgress) => Ok(PollOutcome::Running { retry_after }),
                    Some(OperationPhase::Succeeded) => {
                        Ok(PollOutcome::Done(self.final_result(operation).await?))
                    }
                    Some(OperationPhase::Failed | OperationPhase::Canceled) => {
                        let error = status.error.unwrap_or_default();
                        Err(ArmError::OperationFailed {
                            operation_url: operation.operation_url.clone(),
                            status: status.status,
                            code: error.code,
                            message: error.message,
                            target: error.target,
                            details: error.details,
                            request_id: response.request_id(),
                        })
                    }
                    None => Err(ArmError::UnknownOperationStatus {
                        operation_url: operation.operation_url.clone(),
                        status: status.status,
                    }),
                }
            }
            PollStyle::Location => match response.status {
                202 => Ok(PollOutcome::Running { retry_after }),
                200 | 201 => {
                    if operation.method == "PUT" || operation.method == "PATCH" {
                        return Ok(PollOutcome::Done(self.final_result(operation).await?));
                    }
                    Ok(PollOutcome::Done(response.json_if_any()?))
                }
                204 => Ok(PollOutcome::Done(None)),
                status if status >= 400 => {
                    Err(operation_failed_from(operation, response.service_error()))
                }
                _ => Err(response.service_error()),
            },
            PollStyle::ProvisioningState => {
                if response.status >= 400 {
                    return Err(response.service_error());
                }
                let raw: serde_json::Value = response.json()?;
                let state = provisioning_state_of(&raw).unwrap_or_else(|| "Succeeded".to_owned());
                match OperationPhase::classify(&state) {
                    Some(OperationPhase::InProgress) => Ok(PollOutcome::Running { retry_after }),
                    Some(OperationPhase::Succeeded) => {
                        Ok(PollOutcome::Done(Some(response.json()?)))
                    }
                    Some(OperationPhase::Failed | OperationPhase::Canceled) => {
                        Err(ArmError::OperationFailed {
                            operation_url: operation.operation_url.clone(),
                            status: state,
                            code: "ProvisioningFailed".to_owned(),
                            message: "the resource reported a failed provisioningState".to_owned(),
                            target: None,
                            details: Vec::new(),
                            request_id: response.request_id(),
                        })
                    }
                    None => Err(ArmError::UnknownProvisioningState {
                        url: operation.operation_url.clone(),
                        state,
                    }),
                }
            }
        }
    }

    /// Waits for `operation` to finish (also one saved by an interrupted apply) and returns
    /// its result: the resource for PUT/PATCH, the action's body for POST, nothing for DELETE.
    pub async fn wait<T: DeserializeOwned>(
        &self,
        operation: &PendingOperation,
    ) -> Result<Option<T>, ArmError> {
        let started = tokio::time::Instant::now();
        let mut delay = operation.retry_after;
        loop {
            let wait = self.poll_delay(delay);
            if let Some(limit) = self.polling.timeout
                && started.elapsed() + wait > limit
            {
                return Err(ArmError::OperationTimeout {
                    operation_url: operation.operation_url.clone(),
                    limit,
                });
            }
            tokio::time::sleep(wait).await;
            match self.poll_once(operation).await? {
                PollOutcome::Running { retry_after } => delay = retry_after,
                PollOutcome::Done(value) => return Ok(value),
            }
        }
    }

    fn poll_delay(&self, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(wait) => wait.clamp(self.polling.minimum_interval, self.polling.maximum_interval),
            None => self.polling.default_interval,
        }
    }

    async fn final_result<T: DeserializeOwned>(
        &self,
        operation: &PendingOperation,
    ) -> Result<Option<T>, ArmError> {
        match operation.method.as_str() {
            "PUT" | "PATCH" => {
                let url = self.checked_operation_url(&operation.resource_url)?;
                let response = self
                    .send_checked(Method::Get, url, None, &WriteOptions::default())
                    .await?;
                response.json_if_any()
            }
            "POST" => match &operation.location_url {
                Some(location) => {
                    let url = self.checked_operation_url(location)?;
                    let response = self
                        .send_checked(Method::Get, url, None, &WriteOptions::default())
                        .await?;
                    response.json_if_any()
                }
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }
}

/// One poll's result.
#[derive(Debug)]
pub enum PollOutcome<T> {
    Running { retry_after: Option<Duration> },
    Done(Option<T>),
}

fn operation_failed_from(operation: &PendingOperation, error: ArmError) -> ArmError {
    match error {
        ArmError::Service(service) => ArmError::OperationFailed {
            operation_url: operation.operation_url.clone(),
            status: "Failed".to_owned(),
            code: service.code,
            message: service.message,
            target: service.target,
            details: service.details,
            request_id: service.request_id,
        },
        other => other,
    }
}

fn provisioning_state_of(value: &serde_json::Value) -> Option<String> {
    value
        .get("properties")?
        .get("provisioningState")?
        .as_str()
        .map(str::to_owned)
}

fn to_json<B: Serialize>(path: &str, body: &B) -> Result<Vec<u8>, ArmError> {
    serde_json::to_vec(body).map_err(|error| ArmError::Request {
        url: path.to_owned(),
        reason: error.to_string(),
    })
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

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut shortened: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        shortened.push('…');
    }
    shortened
}

fn to_time_duration(duration: Duration) -> azure_core::time::Duration {
    azure_core::time::Duration::try_from(duration).unwrap_or(azure_core::time::Duration::MAX)
}

fn credential_name(choice: &CredentialChoice) -> &'static str {
    match choice {
        CredentialChoice::Chain | CredentialChoice::ChainWith(_) => "chained",
        CredentialChoice::ClientSecret { .. } => "client secret",
        CredentialChoice::WorkloadIdentity => "workload identity",
        CredentialChoice::ManagedIdentity { .. } => "managed identity",
        CredentialChoice::AzureCli => "Azure CLI",
        CredentialChoice::StaticToken(_) => "static token",
        CredentialChoice::Custom(_) => "custom",
    }
}

/// True when a credential's error came from a connection that failed (the token service is
/// unreachable), which is worth retrying like any transport error.
/// A credential whose token endpoint cannot be reached fails at once with a message that names
/// the endpoint, as a credential error: ARM's retry policy retries only transport errors, and
/// retrying a refused connection to the token endpoint for minutes helps nobody.
#[derive(Debug)]
struct FailFastCredential {
    inner: Arc<dyn TokenCredential>,
    /// The authority host, for the message.
    authority: String,
}

#[async_trait::async_trait]
impl TokenCredential for FailFastCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<azure_core::credentials::TokenRequestOptions<'_>>,
    ) -> azure_core::Result<azure_core::credentials::AccessToken> {
        match self.inner.get_token(scopes, options).await {
            Err(error) if reached_no_server(&error) => {
                let mut reason = credential_message(&error);
                let mut source = std::error::Error::source(&error);
                while let Some(inner) = source {
                    if inner.source().is_none() {
                        reason = format!("{reason}: {inner}");
                    }
                    source = inner.source();
                }
                Err(azure_core::Error::with_message(
                    azure_core::error::ErrorKind::Credential,
                    format!(
                        "the token endpoint {} cannot be reached ({reason}); check the authority host (AZURE_AUTHORITY_HOST, or the cloud the client is set up for), the network and any proxy",
                        self.authority
                    ),
                ))
            }
            other => other,
        }
    }
}

fn reached_no_server(error: &azure_core::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(inner) = current.downcast_ref::<azure_core::Error>()
            && matches!(
                inner.kind(),
                azure_core::error::ErrorKind::Io | azure_core::error::ErrorKind::Connection
            )
        {
            return true;
        }
        source = current.source();
    }
    false
}

fn build_http_client(config: &ArmClientConfig) -> Result<reqwest::Client, ArmError> {
    // No redirects: ARM never redirects, and following one could carry the bearer token
    // to another host.
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .https_only(true)
        .timeout(config.request_timeout)
        .pool_max_idle_per_host(64);
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|error| ArmError::CaFile {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        let certificates =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| ArmError::CaFile {
                path: path.display().to_string(),
                reason: error.to_string(),
            })?;
        if certificates.is_empty() {
            return Err(ArmError::CaFile {
                path: path.display().to_string(),
                reason: "it holds no certificate".to_owned(),
            });
        }
        builder = builder.tls_certs_merge(certificates);
    }
    builder
        .build()
        .map_err(|error| ArmError::Config(format!("could not build the HTTPS client: {error}")))
}
