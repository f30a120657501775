//! Choosing an Azure credential: an explicit one, or the chain Azure users expect, in a fixed order.
//!
//! The chain's order, first to last:
//! 1. client secret from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`, `AZURE_CLIENT_SECRET`;
//! 2. workload identity (`AZURE_FEDERATED_TOKEN_FILE` with tenant and client id, as AKS sets);
//! 3. managed identity (IMDS or App Service), with `AZURE_CLIENT_ID` as the user-assigned id if set;
//! 4. the Azure CLI's login (`az login`).
//!
//! The first credential that yields a token is remembered; when none does, the error lists each
//! one tried and why it failed. Secrets never appear in `Debug` output or in errors.
//!
//! The chain reads its variables from a [`CredentialVariables`] map: the process environment
//! ([`ChainedCredential::from_environment`]) or one a caller builds (tests, a program holding
//! its own settings). The exception is the managed identity's own variables
//! (`IDENTITY_ENDPOINT`, `IDENTITY_HEADER`, ...): `azure_identity` 1.0 reads them from the
//! process environment and offers no way to pass them.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::ClientOptions;
use azure_identity::{
    AzureCliCredential, AzureCliCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, Executor, ManagedIdentityCredential,
    ManagedIdentityCredentialOptions, UserAssignedId, WorkloadIdentityCredential,
    WorkloadIdentityCredentialOptions,
};
use ferry_core::Secret;

use crate::error::CredentialAttempt;

/// Which credential the client uses.
#[derive(Clone)]
pub enum CredentialChoice {
    /// The documented chain (see the module documentation), reading the process environment.
    Chain,
    /// The documented chain, reading these variables instead of the process environment.
    ChainWith(CredentialVariables),
    /// A service principal with a client secret.
    ClientSecret {
        tenant_id: String,
        client_id: String,
        client_secret: Secret,
    },
    /// Workload identity from the environment AKS sets up.
    WorkloadIdentity,
    /// The VM's or App Service's managed identity; `client_id` picks a user-assigned one.
    ManagedIdentity { client_id: Option<String> },
    /// The Azure CLI's current login.
    AzureCli,
    /// A fixed bearer token (tests, or a token obtained elsewhere).
    StaticToken(Secret),
    /// Any other credential.
    Custom(Arc<dyn TokenCredential>),
}

impl std::fmt::Debug for CredentialChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CredentialChoice::Chain => f.write_str("Chain"),
            CredentialChoice::ChainWith(variables) => {
                f.debug_tuple("ChainWith").field(variables).finish()
            }
            CredentialChoice::ClientSecret {
                tenant_id,
                client_id,
                ..
            } => f
                .debug_struct("ClientSecret")
                .field("tenant_id", tenant_id)
                .field("client_id", client_id)
                .field("client_secret", &"[redacted]")
                .finish(),
            CredentialChoice::WorkloadIdentity => f.write_str("WorkloadIdentity"),
            CredentialChoice::ManagedIdentity { client_id } => f
                .debug_struct("ManagedIdentity")
                .field("client_id", client_id)
                .finish(),
            CredentialChoice::AzureCli => f.write_str("AzureCli"),
            CredentialChoice::StaticToken(_) => f.write_str("StaticToken([redacted])"),
            CredentialChoice::Custom(credential) => write!(f, "Custom({credential:?})"),
        }
    }
}

/// The variables the credential chain reads, by name. `Debug` shows the names only: the map
/// may hold `AZURE_CLIENT_SECRET`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CredentialVariables {
    variables: BTreeMap<String, String>,
}

impl CredentialVariables {
    /// The process environment's variables (those whose name and value are UTF-8).
    pub fn from_process() -> Self {
        std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
            .collect()
    }

    /// A variable's value; an empty one counts as unset, as Azure's SDKs treat it.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.variables
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.variables.insert(name.into(), value.into());
    }
}

impl<Name: Into<String>, Value: Into<String>> FromIterator<(Name, Value)> for CredentialVariables {
    fn from_iter<T: IntoIterator<Item = (Name, Value)>>(pairs: T) -> Self {
        CredentialVariables {
            variables: pairs
                .into_iter()
                .map(|(name, value)| (name.into(), value.into()))
                .collect(),
        }
    }
}

impl std::fmt::Debug for CredentialVariables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.variables.keys()).finish()
    }
}

/// A credential that always returns the same token.
pub struct StaticTokenCredential {
    token: Secret,
}

impl StaticTokenCredential {
    pub fn new(token: Secret) -> Self {
        StaticTokenCredential { token }
    }
}

impl std::fmt::Debug for StaticTokenCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StaticTokenCredential([redacted])")
    }
}

#[async_trait::async_trait]
impl TokenCredential for StaticTokenCredential {
    async fn get_token(
        &self,
        _scopes: &[&str],
        _options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        // A far expiry: the bearer policy would otherwise ask again before every request.
        let expires_on = time::OffsetDateTime::now_utc() + time::Duration::hours(12);
        Ok(AccessToken::new(self.token.expose().to_owned(), expires_on))
    }
}

type CredentialSlot = (&'static str, Result<Arc<dyn TokenCredential>, String>);

/// The documented chain of credentials.
pub struct ChainedCredential {
    candidates: Vec<CredentialSlot>,
    /// Index of the candidate that last produced a token, tried first next time.
    chosen: Mutex<Option<usize>>,
    /// Why each candidate failed, from the last time they all did.
    last_attempts: Mutex<Vec<CredentialAttempt>>,
}

impl std::fmt::Debug for ChainedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.candidates.iter().map(|(name, _)| *name).collect();
        f.debug_struct("ChainedCredential")
            .field("candidates", &names)
            .field("chosen", &self.chosen())
            .finish()
    }
}

impl ChainedCredential {
    /// Builds the chain from the process environment.
    pub fn from_environment(client_options: &ClientOptions) -> Self {
        Self::from_variables(&CredentialVariables::from_process(), client_options)
    }

    /// Builds the chain from `variables`; a candidate whose settings are missing stays in the
    /// list with the reason, so the final error can say what was tried.
    ///
    /// `client_options` carry the transport (with its CA) and the authority host for Entra ID;
    /// when they name no authority host, `AZURE_AUTHORITY_HOST` from `variables` is used, as
    /// AKS's workload identity sets it.
    pub fn from_variables(variables: &CredentialVariables, client_options: &ClientOptions) -> Self {
        let mut client_options = client_options.clone();
        if client_options.cloud.is_none()
            && let Some(authority_host) = variables.get("AZURE_AUTHORITY_HOST")
        {
            let mut custom = azure_core::cloud::CustomConfiguration::default();
            custom.authority_host = authority_host.trim_end_matches('/').to_owned();
            client_options.cloud = Some(Arc::new(custom.into()));
        }
        let client_options = &client_options;
        let mut candidates: Vec<CredentialSlot> = Vec::new();
        let client_secret = match (
            variables.get("AZURE_TENANT_ID"),
            variables.get("AZURE_CLIENT_ID"),
            variables.get("AZURE_CLIENT_SECRET"),
        ) {
            (Some(tenant_id), Some(client_id), Some(secret)) => {
                build_client_secret(tenant_id, client_id, &Secret::new(secret), client_options)
            }
            _ => Err(
                "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are not all set"
                    .to_owned(),
            ),
        };
        candidates.push(("client secret (environment)", client_secret));

        let workload = if variables.get("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            build_workload_identity(variables, client_options)
        } else {
            Err("AZURE_FEDERATED_TOKEN_FILE is not set".to_owned())
        };
        candidates.push(("workload identity", workload));

        let managed = build_managed_identity(
            variables.get("AZURE_CLIENT_ID").map(str::to_owned),
            client_options,
        )
        .map(probe_imds_first);
        candidates.push(("managed identity", managed));

        let cli = build_azure_cli(variables);
        candidates.push(("Azure CLI", cli));

        ChainedCredential {
            candidates,
            chosen: Mutex::new(None),
            last_attempts: Mutex::new(Vec::new()),
        }
    }

    /// The credential that produced the last token, which the chain tries first.
    pub fn chosen(&self) -> Option<&'static str> {
        let chosen = self.chosen.lock().ok().and_then(|chosen| *chosen)?;
        Some(self.candidates[chosen].0)
    }

    /// Why each credential failed the last time none worked.
    pub fn last_attempts(&self) -> Vec<CredentialAttempt> {
        self.last_attempts
            .lock()
            .map(|attempts| attempts.clone())
            .unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl TokenCredential for ChainedCredential {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let chosen = self.chosen.lock().ok().and_then(|chosen| *chosen);
        if let Some(index) = chosen
            && let Ok(credential) = &self.candidates[index].1
            && let Ok(token) = credential.get_token(scopes, options.clone()).await
        {
            return Ok(token);
        }
        let mut attempts = Vec::new();
        for (index, (name, candidate)) in self.candidates.iter().enumerate() {
            match candidate {
                Err(reason) => attempts.push(CredentialAttempt {
                    credential: name,
                    reason: reason.clone(),
                }),
                Ok(credential) => match credential.get_token(scopes, options.clone()).await {
                    Ok(token) => {
                        if let Ok(mut chosen) = self.chosen.lock() {
                            *chosen = Some(index);
                        }
                        return Ok(token);
                    }
                    Err(error) => attempts.push(CredentialAttempt {
                        credential: name,
                        reason: first_line(&error.to_string()),
                    }),
                },
            }
        }
        let message = attempts
            .iter()
            .map(|attempt| format!("{}: {}", attempt.credential, attempt.reason))
            .collect::<Vec<_>>()
            .join("; ");
        if let Ok(mut last) = self.last_attempts.lock() {
            *last = attempts;
        }
        Err(azure_core::Error::with_message(
            azure_core::error::ErrorKind::Credential,
            format!("no credential in the chain worked: {message}"),
        ))
    }
}

pub(crate) fn build_client_secret(
    tenant_id: &str,
    client_id: &str,
    client_secret: &Secret,
    client_options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, String> {
    let options = ClientSecretCredentialOptions {
        client_options: with_readable_entra_errors(client_options),
    };
    ClientSecretCredential::new(
        tenant_id,
        client_id.to_owned(),
        azure_core::credentials::Secret::new(client_secret.expose().to_owned()),
        Some(options),
    )
    .map(|credential| credential as Arc<dyn TokenCredential>)
    .map_err(|error| first_line(&error.to_string()))
}

/// A managed identity answers on the machine over plain HTTP (IMDS at 169.254.169.254, App
/// Service's `IDENTITY_ENDPOINT` on localhost), so it gets `azure_core`'s own HTTP client, which
/// follows no redirects either, instead of ferry's HTTPS-only transport: that one refuses
/// `http://` URLs, and no managed identity could ever give a token through it.
pub(crate) fn build_managed_identity(
    client_id: Option<String>,
    client_options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, String> {
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(UserAssignedId::ClientId),
        client_options: ClientOptions {
            transport: None,
            ..client_options.clone()
        },
    };
    ManagedIdentityCredential::new(Some(options))
        .map(|credential| credential as Arc<dyn TokenCredential>)
        .map_err(|error| first_line(&error.to_string()))
}

/// Workload identity as AKS sets it up: the tenant, the client id and the file holding the
/// service account token, all from `variables`.
pub(crate) fn build_workload_identity(
    variables: &CredentialVariables,
    client_options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, String> {
    let (Some(tenant_id), Some(client_id), Some(token_file)) = (
        variables.get("AZURE_TENANT_ID"),
        variables.get("AZURE_CLIENT_ID"),
        variables.get("AZURE_FEDERATED_TOKEN_FILE"),
    ) else {
        return Err(
            "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE are not all set"
                .to_owned(),
        );
    };
    let mut options = WorkloadIdentityCredentialOptions {
        tenant_id: Some(tenant_id.to_owned()),
        client_id: Some(client_id.to_owned()),
        token_file_path: Some(PathBuf::from(token_file)),
        ..WorkloadIdentityCredentialOptions::default()
    };
    options.credential_options.client_options = with_readable_entra_errors(client_options);
    WorkloadIdentityCredential::new(Some(options))
        .map(|credential| credential as Arc<dyn TokenCredential>)
        .map_err(|error| first_line(&error.to_string()))
}

/// The Azure CLI, run with `PATH` from `variables` (the process's when they have none).
pub(crate) fn build_azure_cli(
    variables: &CredentialVariables,
) -> Result<Arc<dyn TokenCredential>, String> {
    let options = AzureCliCredentialOptions {
        executor: Some(Arc::new(CommandWithPath {
            path: variables.get("PATH").map(str::to_owned),
        })),
        ..AzureCliCredentialOptions::default()
    };
    AzureCliCredential::new(Some(options))
        .map(|credential| credential as Arc<dyn TokenCredential>)
        .map_err(|error| first_line(&error.to_string()))
}

/// Runs the Azure CLI (through `/bin/sh`, as `azure_identity` does) with a given `PATH`.
#[derive(Debug)]
struct CommandWithPath {
    path: Option<String>,
}

#[async_trait::async_trait]
impl Executor for CommandWithPath {
    async fn run(&self, program: &OsStr, args: &[&OsStr]) -> std::io::Result<std::process::Output> {
        let mut command = tokio::process::Command::new(program);
        command.args(args).kill_on_drop(true);
        if let Some(path) = &self.path {
            command.env("PATH", path);
        }
        command.output().await
    }
}

/// True when `azure_identity`'s managed identity will use IMDS: none of the variables that
/// name another source is set. It reads them from the process environment, so this does too.
fn managed_identity_uses_imds() -> bool {
    ["IDENTITY_ENDPOINT", "MSI_ENDPOINT"]
        .iter()
        .all(|name| std::env::var_os(name).is_none())
}

/// IMDS's address on every Azure VM.
const IMDS_ADDRESS: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(std::net::Ipv4Addr::new(169, 254, 169, 254)),
    80,
);
/// How long IMDS has to accept a connection before the chain moves on, as Azure's other SDKs
/// probe it.
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// In the chain, IMDS is first probed with one short connection: off Azure, packets to
/// 169.254.169.254 are often dropped, and `azure_identity`'s IMDS credential retries for up to
/// 72 s, which would hold the chain that long before it reached the Azure CLI.
fn probe_imds_first(credential: Arc<dyn TokenCredential>) -> Arc<dyn TokenCredential> {
    if managed_identity_uses_imds() {
        Arc::new(ProbedImds {
            credential,
            address: IMDS_ADDRESS,
            timeout: IMDS_PROBE_TIMEOUT,
            probed: tokio::sync::OnceCell::new(),
        })
    } else {
        credential
    }
}

struct ProbedImds {
    credential: Arc<dyn TokenCredential>,
    address: SocketAddr,
    timeout: Duration,
    /// The probe's outcome, kept: IMDS does not come and go while ferry runs.
    probed: tokio::sync::OnceCell<Result<(), String>>,
}

impl std::fmt::Debug for ProbedImds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbedImds")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl TokenCredential for ProbedImds {
    async fn get_token(
        &self,
        scopes: &[&str],
        options: Option<TokenRequestOptions<'_>>,
    ) -> azure_core::Result<AccessToken> {
        let probed = self
            .probed
            .get_or_init(|| probe(self.address, self.timeout))
            .await;
        if let Err(reason) = probed {
            return Err(azure_core::Error::with_message(
                azure_core::error::ErrorKind::Credential,
                reason.clone(),
            ));
        }
        self.credential.get_token(scopes, options).await
    }
}

/// One TCP connection to `address` within `timeout`.
async fn probe(address: SocketAddr, timeout: Duration) -> Result<(), String> {
    let connected = tokio::task::spawn_blocking(move || {
        std::net::TcpStream::connect_timeout(&address, timeout)
    })
    .await;
    match connected {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(format!(
            "no IMDS endpoint at {address} ({error}): this is not an Azure VM with a managed identity"
        )),
        Err(error) => Err(format!("could not probe IMDS at {address}: {error}")),
    }
}

/// The options of a credential that asks Entra ID's token endpoint, with
/// [`EntraErrorOnOneLine`] first.
fn with_readable_entra_errors(client_options: &ClientOptions) -> ClientOptions {
    let mut options = client_options.clone();
    options
        .per_call_policies
        .insert(0, Arc::new(EntraErrorOnOneLine));
    options
}

/// Entra ID's `error_description` always ends with trace lines after `\r\n` (`Trace ID`,
/// `Correlation ID`, `Timestamp`). `azure_identity` 1.0 reads it as a borrowed `&str`, which
/// serde_json cannot give for a string holding escapes, so every refusal (a wrong secret, an
/// unknown federated token) would read "invalid type: string ..., expected a borrowed string".
/// This policy puts the description of the token endpoint's error answers on one line, without
/// the characters JSON escapes, so that `azure_identity` reports Entra's own message and code.
#[derive(Debug)]
struct EntraErrorOnOneLine;

#[async_trait::async_trait]
impl azure_core::http::policies::Policy for EntraErrorOnOneLine {
    async fn send(
        &self,
        context: &azure_core::http::Context,
        request: &mut azure_core::http::Request,
        next: &[Arc<dyn azure_core::http::policies::Policy>],
    ) -> azure_core::http::policies::PolicyResult {
        let response = next[0].send(context, request, &next[1..]).await?;
        if response.status().is_success() || !request.url().path().ends_with("/oauth2/v2.0/token") {
            return Ok(response);
        }
        let (status, mut headers, body) = response.deconstruct();
        let body = body.collect().await?;
        let Ok(mut answer) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return Ok(azure_core::http::AsyncRawResponse::from_bytes(
                status, headers, body,
            ));
        };
        if let Some(description) = answer
            .get_mut("error_description")
            .filter(|description| description.is_string())
        {
            let text = description.as_str().unwrap_or_default();
            *description = serde_json::Value::String(without_json_escapes(text));
        }
        let body = serde_json::to_vec(&answer).unwrap_or_else(|_| body.to_vec());
        headers.remove(azure_core::http::headers::CONTENT_LENGTH);
        Ok(azure_core::http::AsyncRawResponse::from_bytes(
            status, headers, body,
        ))
    }
}

/// `text` on one line, with no character that JSON writes as an escape.
fn without_json_escapes(text: &str) -> String {
    let replaced: String = text
        .chars()
        .map(|character| match character {
            '"' => '\'',
            '\\' => '/',
            character if character.is_control() => ' ',
            character => character,
        })
        .collect();
    replaced.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The credential's own message in an error from the pipeline: the innermost error of kind
/// `Credential` (the pipeline wraps it in context such as "non-transport error occurred which
/// will not be retried"), first line only.
pub(crate) fn credential_message(error: &azure_core::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(current) = source {
        if let Some(inner) = current.downcast_ref::<azure_core::Error>()
            && matches!(inner.kind(), azure_core::error::ErrorKind::Credential)
        {
            message = inner.to_string();
        }
        source = current.source();
    }
    first_line(&message)
}

/// Azure SDK errors append troubleshooting links on later lines; the first line says enough.
pub(crate) fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_imds_probe_fails_fast_where_nothing_listens_and_passes_where_something_does() {
        // Loopback stands in for 169.254.169.254, which tests may not reach.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let open = listener.local_addr().unwrap();
        assert_eq!(probe(open, Duration::from_secs(1)).await, Ok(()));
        drop(listener);
        let closed = probe(open, Duration::from_secs(1)).await.unwrap_err();
        assert!(
            closed.starts_with(&format!("no IMDS endpoint at {open} (")),
            "{closed}"
        );
        assert!(closed.ends_with("this is not an Azure VM with a managed identity"));
    }

    #[test]
    fn variables_show_their_names_only() {
        let variables: CredentialVariables = [
            ("AZURE_CLIENT_SECRET", "hunter2"),
            ("AZURE_TENANT_ID", "tenant"),
            ("EMPTY", ""),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            format!("{variables:?}"),
            r#"{"AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "EMPTY"}"#
        );
        assert_eq!(variables.get("AZURE_TENANT_ID"), Some("tenant"));
        assert_eq!(variables.get("EMPTY"), None);
        let choice = CredentialChoice::ChainWith(variables);
        assert!(!format!("{choice:?}").contains("hunter2"));
    }
}
