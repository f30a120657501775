//! The credential chain, each path for real on loopback: a client secret and workload identity
//! against the simulator's Entra ID token endpoint, a managed identity through App Service's
//! local endpoint, the Azure CLI as fake `az` programs; the chain's order, the credential it
//! remembers, and the error that lists every credential when none works, with no secret in it.
//!
//! Not exercised: a managed identity through IMDS, which lives at 169.254.169.254 on every
//! Azure VM, an address tests may not reach and cannot take over; `azure_identity` 1.0 fixes
//! that address, so IMDS has no loopback stand-in. The App Service endpoint covers the same
//! request code (`azure_identity` serves both through one credential with another URL), and
//! the chain's quick probe of IMDS is unit-tested against loopback in `src/credential.rs`.
//!
//! The variables the chain reads come from a [`CredentialVariables`] map, so tests share no
//! process-wide state. The managed identity's own variables (`IDENTITY_ENDPOINT`, ...) are the
//! exception: `azure_identity` reads them from the process environment only, so the tests that
//! reach the managed identity run their body in a child process started with them
//! (`support::credentials::run_in_child`). Tests that stop before it run in-process: a chain
//! that reached it there would try IMDS.

mod support;

use ferry_arm::models::ResourceGroup;
use ferry_arm::{
    ArmClient, ArmClientConfig, ArmError, CredentialChoice, CredentialVariables, Url, api_version,
};
use ferry_core::Secret;
use ferry_sim::{ClientProof, Simulator, TokenRequest};
use serde_json::json;
use support::credentials::{AppServiceIdentity, FakeAz, IdentityAnswer, in_child, run_in_child};
use support::group_id;

const WRONG_SECRET: &str = "a-wrong-secret-that-must-never-be-shown";
const WRONG_FEDERATED_TOKEN: &str = "a-federated-token-entra-does-not-know";

async fn simulator(folder: &tempfile::TempDir) -> Simulator {
    let config = ferry_sim::SimulatorConfig::for_tests(folder.path().join("sim"));
    let simulator = ferry_sim::start(config).await.unwrap();
    simulator
        .seed(&group_id("rg"), json!({"location": "westeurope"}))
        .unwrap();
    simulator
}

/// A client of the simulator, whose token endpoint is the authority host, with `credential`.
fn config_for(simulator: &Simulator, credential: CredentialChoice) -> ArmClientConfig {
    let mut config = ArmClientConfig::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
    );
    config.credential = credential;
    config
}

fn client_for(simulator: &Simulator, credential: CredentialChoice) -> ArmClient {
    ArmClient::new(config_for(simulator, credential)).unwrap()
}

/// One ARM request that needs a bearer token.
async fn read_group(client: &ArmClient) -> Result<ResourceGroup, ArmError> {
    client
        .get::<ResourceGroup>(&group_id("rg"), api_version::RESOURCES)
        .await
        .map(|fetched| fetched.value)
}

fn scope_of(simulator: &Simulator) -> String {
    format!("{}/.default", simulator.endpoint())
}

fn variables(pairs: &[(&str, &str)]) -> CredentialVariables {
    pairs.iter().copied().collect()
}

fn federated_token_file(folder: &tempfile::TempDir, token: &str) -> String {
    let path = folder.path().join("azure-identity-token");
    std::fs::write(&path, token).unwrap();
    path.display().to_string()
}

fn issued(proof: ClientProof, simulator: &Simulator) -> TokenRequest {
    TokenRequest {
        tenant: ferry_sim::TENANT_ID.to_owned(),
        grant_type: Some("client_credentials".to_owned()),
        client_id: Some(ferry_sim::CLIENT_ID.to_owned()),
        proof,
        scope: Some(scope_of(simulator)),
        refused: None,
    }
}

fn assertion() -> ClientProof {
    ClientProof::ClientAssertion {
        assertion_type: Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_owned()),
    }
}

/// Entra's trace and correlation ids come from a counter shared by the simulators of a process.
fn redact_trace_ids(text: &str) -> String {
    let mut text = text.to_owned();
    for marker in ["Trace ID: ", "Correlation ID: "] {
        let mut searched = 0;
        while let Some(found) = text[searched..].find(marker) {
            let start = searched + found + marker.len();
            let end = text[start..]
                .find(|character: char| !(character.is_ascii_hexdigit() || character == '-'))
                .map_or(text.len(), |offset| start + offset);
            text.replace_range(start..end, "ID");
            searched = start;
        }
    }
    text
}

fn assert_never_shown(secrets: &[&str], texts: &[String]) {
    for text in texts {
        for secret in secrets {
            assert!(!text.contains(secret), "a secret is shown in: {text}");
        }
    }
}

#[tokio::test]
async fn the_client_secret_comes_first_and_its_grant_carries_the_secret() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator(&folder).await;
    // Workload identity is set up too: the client secret still wins, being first.
    let token_file = federated_token_file(&folder, ferry_sim::FEDERATED_TOKEN);
    let client = client_for(
        &simulator,
        CredentialChoice::ChainWith(variables(&[
            ("AZURE_TENANT_ID", ferry_sim::TENANT_ID),
            ("AZURE_CLIENT_ID", ferry_sim::CLIENT_ID),
            ("AZURE_CLIENT_SECRET", ferry_sim::CLIENT_SECRET),
            ("AZURE_FEDERATED_TOKEN_FILE", &token_file),
        ])),
    );
    read_group(&client).await.unwrap();
    assert_eq!(
        simulator.token_requests(),
        vec![issued(ClientProof::ClientSecret, &simulator)],
        "one client credentials grant with the secret, at {{authority}}/{{tenant}}/oauth2/v2.0/token"
    );
    let chain = client.credential_chain().unwrap();
    assert_eq!(chain.chosen(), Some("client secret (environment)"));
    assert_never_shown(
        &[ferry_sim::CLIENT_SECRET],
        &[format!("{client:?}"), format!("{chain:?}")],
    );
}

#[tokio::test]
async fn without_a_client_secret_workload_identity_sends_the_federated_token_as_an_assertion() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator(&folder).await;
    let token_file = federated_token_file(&folder, ferry_sim::FEDERATED_TOKEN);
    // The variables AKS's workload identity webhook sets, authority host included: the client
    // config names none, so the chain takes `AZURE_AUTHORITY_HOST` from them.
    let mut config = config_for(
        &simulator,
        CredentialChoice::ChainWith(variables(&[
            ("AZURE_TENANT_ID", ferry_sim::TENANT_ID),
            ("AZURE_CLIENT_ID", ferry_sim::CLIENT_ID),
            ("AZURE_FEDERATED_TOKEN_FILE", &token_file),
            (
                "AZURE_AUTHORITY_HOST",
                &format!("{}/", simulator.endpoint()),
            ),
        ])),
    );
    config.authority_host = None;
    let client = ArmClient::new(config).unwrap();
    read_group(&client).await.unwrap();
    assert_eq!(
        simulator.token_requests(),
        vec![issued(assertion(), &simulator)]
    );
    let chain = client.credential_chain().unwrap();
    assert_eq!(chain.chosen(), Some("workload identity"));
    assert_never_shown(
        &[ferry_sim::FEDERATED_TOKEN],
        &[format!("{client:?}"), format!("{chain:?}")],
    );
}

#[tokio::test]
async fn a_wrong_client_secret_is_refused_with_entras_code_and_never_shown() {
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator(&folder).await;
    let config = config_for(
        &simulator,
        CredentialChoice::ClientSecret {
            tenant_id: ferry_sim::TENANT_ID.to_owned(),
            client_id: ferry_sim::CLIENT_ID.to_owned(),
            client_secret: Secret::new(WRONG_SECRET),
        },
    );
    let client = ArmClient::new(config.clone()).unwrap();
    let error = read_group(&client).await.unwrap_err();
    assert!(
        matches!(error, ArmError::Credential { .. }),
        "a refused credential is not a network problem: {error:?}"
    );
    assert!(!error.is_transient(), "a wrong secret stays wrong");
    // Entra's own message and code: the description's trace lines are on the same line.
    insta::assert_snapshot!(redact_trace_ids(&error.to_string()), @"the client secret credential gave no token: ClientSecretCredential authentication failed. AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'ferry-simulator-client'. Trace ID: ID Correlation ID: ID; check its settings");
    let mut refused = issued(ClientProof::ClientSecret, &simulator);
    refused.refused = Some("AADSTS7000215".to_owned());
    assert_eq!(simulator.token_requests(), vec![refused]);
    assert_never_shown(
        &[WRONG_SECRET],
        &[
            error.to_string(),
            format!("{error:?}"),
            format!("{config:?}"),
            format!("{client:?}"),
            format!("{:?}", simulator.token_requests()),
        ],
    );
}

#[tokio::test]
async fn the_chain_remembers_the_credential_that_worked() {
    use azure_core::credentials::TokenCredential;
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator(&folder).await;
    let token_file = federated_token_file(&folder, ferry_sim::FEDERATED_TOKEN);
    let client = client_for(
        &simulator,
        CredentialChoice::ChainWith(variables(&[
            ("AZURE_TENANT_ID", ferry_sim::TENANT_ID),
            ("AZURE_CLIENT_ID", ferry_sim::CLIENT_ID),
            ("AZURE_CLIENT_SECRET", WRONG_SECRET),
            ("AZURE_FEDERATED_TOKEN_FILE", &token_file),
        ])),
    );
    read_group(&client).await.unwrap();
    let proofs = |requests: Vec<TokenRequest>| {
        requests
            .into_iter()
            .map(|request| (request.proof, request.refused))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        proofs(simulator.token_requests()),
        vec![
            (ClientProof::ClientSecret, Some("AADSTS7000215".to_owned())),
            (assertion(), None),
        ],
        "the wrong secret first, then workload identity"
    );
    let chain = client.credential_chain().unwrap();
    assert_eq!(chain.chosen(), Some("workload identity"));
    // Another scope, so no credential has the token cached: only the remembered one is asked.
    let other_scope = format!("{}/other/.default", simulator.endpoint());
    chain.get_token(&[&other_scope], None).await.unwrap();
    let requests = simulator.token_requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[2].proof, assertion());
    assert_eq!(requests[2].scope.as_deref(), Some(other_scope.as_str()));
    assert_eq!(chain.chosen(), Some("workload identity"));
}

#[tokio::test]
async fn a_managed_identity_gets_its_token_from_the_app_service_endpoint_over_plain_http() {
    if !in_child() {
        let identity = AppServiceIdentity::start(IdentityAnswer::Token).await;
        run_in_child(
            "a_managed_identity_gets_its_token_from_the_app_service_endpoint_over_plain_http",
            &identity.variables(),
        )
        .await;
        let requests = identity.requests();
        assert_eq!(requests.len(), 2, "{requests:#?}");
        for request in &requests {
            assert_eq!(
                (request.method.as_str(), request.path.as_str()),
                ("GET", "/msi/token")
            );
            assert_eq!(request.query["api-version"], "2019-08-01");
            let resource = &request.query["resource"];
            assert!(
                resource.starts_with("https://127.0.0.1:") && !resource.ends_with("/.default"),
                "the scope becomes a resource: {resource}"
            );
            assert_eq!(request.headers["x-identity-header"], identity.header);
        }
        // The chain passes AZURE_CLIENT_ID as a user-assigned identity; alone, the
        // credential asks for the system-assigned one.
        assert_eq!(
            requests[0].query.get("client_id").map(String::as_str),
            Some("user-assigned-client")
        );
        assert_eq!(requests[1].query.get("client_id"), None);
        return;
    }
    // In the child: IDENTITY_ENDPOINT and IDENTITY_HEADER are in this process's environment.
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator(&folder).await;
    let nothing_else = FakeAz::missing();
    let chained = client_for(
        &simulator,
        CredentialChoice::ChainWith(variables(&[
            ("AZURE_CLIENT_ID", "user-assigned-client"),
            ("PATH", &nothing_else.path()),
        ])),
    );
    read_group(&chained).await.unwrap();
    assert_eq!(
        chained.credential_chain().unwrap().chosen(),
        Some("managed identity")
    );
    let alone = client_for(
        &simulator,
        CredentialChoice::ManagedIdentity { client_id: None },
    );
    read_group(&alone).await.unwrap();
    assert_eq!(
        simulator.token_requests(),
        vec![],
        "a managed identity does not ask Entra ID"
    );
}

#[tokio::test]
async fn the_azure_cli_is_used_when_the_three_before_it_fail() {
    if !in_child() {
        let identity = AppServiceIdentity::start(IdentityAnswer::NotAssigned).await;
        run_in_child(
            "the_azure_cli_is_used_when_the_three_before_it_fail",
            &identity.variables(),
        )
        .await;
        assert_eq!(
            identity.requests().len(),
            1,
            "the managed identity was tried"
        );
        return;
    }
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator(&folder).await;
    let az = FakeAz::logged_in();
    let client = client_for(
        &simulator,
        CredentialChoice::ChainWith(variables(&[("PATH", &az.path())])),
    );
    read_group(&client).await.unwrap();
    assert_eq!(
        client.credential_chain().unwrap().chosen(),
        Some("Azure CLI")
    );
    assert_eq!(
        az.arguments().unwrap(),
        [
            "account",
            "get-access-token",
            "-o",
            "json",
            "--scope",
            &scope_of(&simulator)
        ]
    );
    assert_eq!(simulator.token_requests(), vec![]);
}

#[tokio::test]
async fn when_nothing_works_the_error_names_each_credential_and_why() {
    if !in_child() {
        let identity = AppServiceIdentity::start(IdentityAnswer::NotAssigned).await;
        let mut environment = identity.variables();
        // Variables the child's process holds: the chain must read its map, not these.
        environment.push(("AZURE_CLIENT_SECRET", ferry_sim::CLIENT_SECRET.to_owned()));
        run_in_child(
            "when_nothing_works_the_error_names_each_credential_and_why",
            &environment,
        )
        .await;
        assert_eq!(identity.requests().len(), 2);
        return;
    }
    let folder = tempfile::tempdir().unwrap();
    let simulator = simulator(&folder).await;

    // Nothing set up, and no `az` on PATH.
    let missing = FakeAz::missing();
    let client = client_for(
        &simulator,
        CredentialChoice::ChainWith(variables(&[("PATH", &missing.path())])),
    );
    let error = read_group(&client).await.unwrap_err();
    assert!(matches!(error, ArmError::NoCredential { .. }), "{error:?}");
    assert!(!error.is_transient());
    insta::assert_snapshot!(error, @r"
    no Azure credential worked; tried, in order:
      - client secret (environment): AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are not all set
      - workload identity: AZURE_FEDERATED_TOKEN_FILE is not set
      - managed identity: ManagedIdentityCredential authentication failed. The requested identity has not been assigned to this resource
      - Azure CLI: AzureCliCredential authentication failed. az not found on PATH
    set one of these up (for example `az login`) or pass a credential in the client config
    ");
    assert_eq!(simulator.token_requests(), vec![]);

    // Everything set up, and everything wrong.
    let token_file = federated_token_file(&folder, WRONG_FEDERATED_TOKEN);
    let az = FakeAz::not_logged_in();
    let client = client_for(
        &simulator,
        CredentialChoice::ChainWith(variables(&[
            ("AZURE_TENANT_ID", ferry_sim::TENANT_ID),
            ("AZURE_CLIENT_ID", ferry_sim::CLIENT_ID),
            ("AZURE_CLIENT_SECRET", WRONG_SECRET),
            ("AZURE_FEDERATED_TOKEN_FILE", &token_file),
            ("PATH", &az.path()),
        ])),
    );
    let error = read_group(&client).await.unwrap_err();
    insta::assert_snapshot!(redact_trace_ids(&error.to_string()), @r"
    no Azure credential worked; tried, in order:
      - client secret (environment): ClientSecretCredential authentication failed. AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app 'ferry-simulator-client'. Trace ID: ID Correlation ID: ID
      - workload identity: WorkloadIdentityCredential authentication failed. AADSTS70021: No matching federated identity record found for presented assertion. Trace ID: ID Correlation ID: ID
      - managed identity: ManagedIdentityCredential authentication failed. The requested identity has not been assigned to this resource
      - Azure CLI: AzureCliCredential authentication failed. ERROR: Please run 'az login' to setup account.
    set one of these up (for example `az login`) or pass a credential in the client config
    ");
    let refusals: Vec<Option<String>> = simulator
        .token_requests()
        .into_iter()
        .map(|request| request.refused)
        .collect();
    assert_eq!(
        refusals,
        [
            Some("AADSTS7000215".to_owned()),
            Some("AADSTS70021".to_owned())
        ]
    );
    assert!(az.arguments().is_some(), "az was run");
    let header = std::env::var("IDENTITY_HEADER").unwrap();
    let chain = client.credential_chain().unwrap();
    assert_never_shown(
        &[WRONG_SECRET, WRONG_FEDERATED_TOKEN, &header],
        &[
            error.to_string(),
            format!("{error:?}"),
            format!("{client:?}"),
            format!("{chain:?}"),
            format!("{:?}", chain.last_attempts()),
        ],
    );
}
