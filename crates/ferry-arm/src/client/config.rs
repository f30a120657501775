//! What an [`ArmClient`](super::ArmClient) is built from: the endpoint, the credential, and
//! how requests are retried and operations polled; with the settings for Azure's public
//! cloud and for the simulator.

use std::path::PathBuf;
use std::time::Duration;

use azure_core::http::Url;

use super::pacing::PacingSettings;
use crate::credential::CredentialChoice;

/// The public Azure cloud's ARM endpoint.
pub const AZURE_PUBLIC_ENDPOINT: &str = "https://management.azure.com";

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

/// How long a write that ARM refuses as busy (another operation holds the resource or its
/// group, [`ArmError::is_busy`](crate::ArmError::is_busy)) is sent again: after `first_wait`,
/// doubling up to `longest_wait`, until `give_up_after`. The operations that hold a resource
/// take minutes (a VM update, an AKS update, a move), so the waits grow to a minute; after ten
/// minutes the busy error goes to the engine, which retries the step as a transient failure
/// within its own attempts and time limit.
#[derive(Debug, Clone, PartialEq)]
pub struct BusySettings {
    pub first_wait: Duration,
    pub longest_wait: Duration,
    pub give_up_after: Duration,
}

impl Default for BusySettings {
    fn default() -> Self {
        BusySettings {
            first_wait: Duration::from_secs(5),
            longest_wait: Duration::from_secs(60),
            give_up_after: Duration::from_secs(10 * 60),
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
    pub busy: BusySettings,
    /// Slowing down before ARM throttles, by its remaining-count headers.
    pub pacing: PacingSettings,
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
            busy: BusySettings::default(),
            pacing: PacingSettings::default(),
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
            // The simulator's operations last milliseconds; its throttling, when on, is ARM's.
            busy: BusySettings {
                first_wait: Duration::from_millis(20),
                longest_wait: Duration::from_millis(500),
                give_up_after: Duration::from_secs(10 * 60),
            },
            pacing: PacingSettings::default(),
            request_timeout: Duration::from_secs(30),
        }
    }
}
