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

use std::sync::{Arc, Mutex};

use azure_core::credentials::{AccessToken, TokenCredential, TokenRequestOptions};
use azure_core::http::ClientOptions;
use azure_identity::{
    AzureCliCredential, ClientSecretCredential, ClientSecretCredentialOptions,
    ManagedIdentityCredential, ManagedIdentityCredentialOptions, UserAssignedId,
    WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};
use ferry_core::Secret;

use crate::error::CredentialAttempt;

/// Which credential the client uses.
#[derive(Clone)]
pub enum CredentialChoice {
    /// The documented chain (see the module documentation).
    Chain,
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
            .finish()
    }
}

impl ChainedCredential {
    /// Builds the chain from the environment; a candidate whose settings are missing stays
    /// in the list with the reason, so the final error can say what was tried.
    pub fn from_environment(client_options: &ClientOptions) -> Self {
        let mut candidates: Vec<CredentialSlot> = Vec::new();
        let environment = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
        let client_secret = match (
            environment("AZURE_TENANT_ID"),
            environment("AZURE_CLIENT_ID"),
            environment("AZURE_CLIENT_SECRET"),
        ) {
            (Some(tenant_id), Some(client_id), Some(secret)) => {
                build_client_secret(&tenant_id, &client_id, &Secret::new(secret), client_options)
            }
            _ => Err(
                "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are not all set"
                    .to_owned(),
            ),
        };
        candidates.push(("client secret (environment)", client_secret));

        let workload = if environment("AZURE_FEDERATED_TOKEN_FILE").is_some() {
            build_workload_identity(client_options)
        } else {
            Err("AZURE_FEDERATED_TOKEN_FILE is not set".to_owned())
        };
        candidates.push(("workload identity", workload));

        let managed = build_managed_identity(environment("AZURE_CLIENT_ID"), client_options);
        candidates.push(("managed identity", managed));

        let cli = build_azure_cli();
        candidates.push(("Azure CLI", cli));

        ChainedCredential {
            candidates,
            chosen: Mutex::new(None),
            last_attempts: Mutex::new(Vec::new()),
        }
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
        client_options: client_options.clone(),
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

pub(crate) fn build_managed_identity(
    client_id: Option<String>,
    client_options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, String> {
    let options = ManagedIdentityCredentialOptions {
        user_assigned_id: client_id.map(UserAssignedId::ClientId),
        client_options: client_options.clone(),
    };
    ManagedIdentityCredential::new(Some(options))
        .map(|credential| credential as Arc<dyn TokenCredential>)
        .map_err(|error| first_line(&error.to_string()))
}

pub(crate) fn build_workload_identity(
    client_options: &ClientOptions,
) -> Result<Arc<dyn TokenCredential>, String> {
    let mut options = WorkloadIdentityCredentialOptions::default();
    options.credential_options.client_options = client_options.clone();
    WorkloadIdentityCredential::new(Some(options))
        .map(|credential| credential as Arc<dyn TokenCredential>)
        .map_err(|error| first_line(&error.to_string()))
}

pub(crate) fn build_azure_cli() -> Result<Arc<dyn TokenCredential>, String> {
    AzureCliCredential::new(None)
        .map(|credential| credential as Arc<dyn TokenCredential>)
        .map_err(|error| first_line(&error.to_string()))
}

/// Azure SDK errors append troubleshooting links on later lines; the first line says enough.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_owned()
}
