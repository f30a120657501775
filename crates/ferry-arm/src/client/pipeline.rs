//! How an [`ArmClient`](super::ArmClient) is built: the HTTPS transport (extra CA, no
//! redirects), the pipeline's retries, the credential chosen in the config, and a wrapper that
//! makes a credential whose token endpoint cannot be reached fail at once.

use std::sync::Arc;
use std::time::Duration;

use azure_core::credentials::TokenCredential;
use azure_core::http::policies::Policy;
use azure_core::http::policies::auth::BearerTokenAuthorizationPolicy;
use azure_core::http::{ClientOptions, ExponentialRetryOptions, Pipeline, RetryOptions, Transport};

use super::{ArmClient, ArmClientConfig};
use crate::credential::{
    ChainedCredential, CredentialChoice, CredentialVariables, StaticTokenCredential,
    build_azure_cli, build_client_secret, build_managed_identity, build_workload_identity,
    credential_message,
};
use crate::error::ArmError;

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
        // Every try passes the pacer, retries of a 429 included.
        let pacer = super::pacing::Pacer::new(config.pacing.clone());
        let pipeline = Pipeline::new(
            Some(env!("CARGO_PKG_NAME")),
            Some(env!("CARGO_PKG_VERSION")),
            client_options_for_arm,
            Vec::new(),
            vec![pacer.clone() as Arc<dyn Policy>, authorization],
            None,
        );
        Ok(ArmClient {
            pipeline,
            endpoint: config.endpoint,
            polling: config.polling,
            busy: config.busy,
            pacer,
            chain,
            credential_name: credential_name(&config.credential),
        })
    }
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

/// True when a credential's error came from a connection that failed: the token service is
/// unreachable.
pub(super) fn reached_no_server(error: &azure_core::Error) -> bool {
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
