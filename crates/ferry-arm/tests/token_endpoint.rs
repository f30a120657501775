//! A token endpoint that refuses connections (issue 18, item 3): `ferry plan` took 161 s to
//! fail, the credential's own retries nested inside ARM's. Now the first request fails at
//! once, as a credential error that names the endpoint and what to check, and nothing above it
//! retries it; throttling and 5xx from ARM are still retried
//! (`against_simulator.rs::throttling_is_honoured_and_server_errors_are_retried`).

mod support;

use ferry_arm::models::ResourceGroup;
use ferry_arm::{ArmClient, ArmClientConfig, ArmError, CredentialChoice, Url, api_version};
use ferry_core::Secret;
use support::group_id;

/// A loopback port nobody listens on: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test]
async fn a_token_endpoint_that_refuses_connections_fails_at_once_naming_it() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = ferry_sim::start(ferry_sim::SimulatorConfig::for_tests(
        folder.path().join("sim"),
    ))
    .await
    .unwrap();
    let mut config = ArmClientConfig::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
    );
    let authority = format!("https://127.0.0.1:{}", closed_port());
    config.authority_host = Some(Url::parse(&format!("{authority}/")).unwrap());
    config.credential = CredentialChoice::ClientSecret {
        tenant_id: ferry_sim::TENANT_ID.to_owned(),
        client_id: ferry_sim::CLIENT_ID.to_owned(),
        client_secret: Secret::new(ferry_sim::CLIENT_SECRET),
    };
    // The retries a real deployment gets, not the simulator's quick ones.
    config.retry = ferry_arm::RetrySettings::default();
    let client = ArmClient::new(config).unwrap();
    let started = std::time::Instant::now();
    let error = client
        .get::<ResourceGroup>(&group_id("rg"), api_version::RESOURCES)
        .await
        .unwrap_err();
    // Measured, never asserted: 161 s before, about 4 s now (the token endpoint's short budget).
    eprintln!("failed after {:?}", started.elapsed());
    let message = error.to_string();
    assert!(
        matches!(error, ArmError::Credential { .. }) && !error.is_transient(),
        "a credential error, which nothing retries: {error:?}"
    );
    assert!(
        message.contains(&format!("the token endpoint {authority} cannot be reached"))
            && message.to_lowercase().contains("refused")
            && message.contains("check the authority host"),
        "{message}"
    );
    assert!(!message.contains(ferry_sim::CLIENT_SECRET), "{message}");
    assert!(
        simulator.token_requests().is_empty(),
        "no token was asked of the simulator"
    );
}
