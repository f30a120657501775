//! What the caller gives the backend: where the state is, how to prove who it is, and its
//! timings; and why the backend could not be set up from it.

use std::path::PathBuf;
use std::time::Duration;

use azure_core::http::Url;
use ferry_arm::CredentialChoice;
use ferry_core::Secret;

/// How the backend proves who it is.
#[derive(Clone, Debug)]
pub enum BlobAuth {
    /// An Entra ID token from this credential (the same choices and chain as ARM's).
    Credential(CredentialChoice),
    /// A shared access signature: the query of a container SAS URL, without the `?`.
    Sas(Secret),
}

/// Where the state is and how to reach it.
#[derive(Clone, Debug)]
pub struct BlobStateConfig {
    /// The container's URL without a query, e.g.
    /// `https://ACCOUNT.blob.core.windows.net/CONTAINER`.
    pub container_url: Url,
    /// The state blob's name; may contain `/`.
    pub blob: String,
    pub auth: BlobAuth,
    /// A PEM file of extra trusted CA certificates (Azurite's test CA, a TLS-inspecting proxy).
    pub ca_file: Option<PathBuf>,
    /// Where the local copy of the journal is appended.
    pub local_journal: PathBuf,
    /// The lock's lease: 15 to 60 seconds, as Azure allows.
    pub lease: Duration,
    /// One HTTP exchange.
    pub request_timeout: Duration,
    /// How long a request is retried while the service cannot be reached or answers 5xx, 408
    /// or 429; after one has failed so, requests are tried once until one gets an answer.
    pub retry_for: Duration,
}

impl BlobStateConfig {
    /// Azure's lease limits.
    pub const SHORTEST_LEASE: Duration = Duration::from_secs(15);
    pub const LONGEST_LEASE: Duration = Duration::from_secs(60);

    /// The default endpoint of `account`'s container in Azure's public cloud.
    pub fn public_container_url(account: &str, container: &str) -> Result<Url, BlobError> {
        Url::parse(&format!(
            "https://{account}.blob.core.windows.net/{container}"
        ))
        .map_err(|error| {
            BlobError::Config(format!(
                "account {account} and container {container} do not make a URL: {error}"
            ))
        })
    }

    /// Splits a container SAS URL (`https://.../CONTAINER?sv=...&sig=...`) into the container
    /// URL and the signature. Errors never show the signature.
    pub fn split_sas_url(sas_url: &Secret) -> Result<(Url, Secret), BlobError> {
        let mut url = Url::parse(sas_url.expose()).map_err(|_| {
            BlobError::Config(
                "the SAS URL is not a URL: give the container's SAS URL, https://ACCOUNT.blob.core.windows.net/CONTAINER?sv=...&sig=...".to_owned(),
            )
        })?;
        let query = url.query().unwrap_or_default().to_owned();
        if !query.contains("sig=") {
            return Err(BlobError::Config(
                "the SAS URL has no signature (sig=...): generate a container SAS with read, add, create and write permissions".to_owned(),
            ));
        }
        url.set_query(None);
        url.set_fragment(None);
        Ok((url, Secret::new(query)))
    }
}

/// Why the backend could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("azure_blob state: {0}")]
    Config(String),
    #[error("azure_blob state: cannot use the CA file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
}
