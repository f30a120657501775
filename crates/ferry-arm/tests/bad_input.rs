//! Bad answers from ARM: each gives a clear error naming what was wrong, never a panic.

mod support;

use ferry_arm::models::{Disk, ResourceGroup};
use ferry_arm::{ArmError, WriteOptions, api_version};
use ferry_sim::Fault;
use serde_json::json;
use support::{group_id, resource_id, start};

fn canned(path_contains: &str, status: u16, headers: &[(&str, &str)], body: &str) -> Fault {
    Fault::RawResponse {
        method: None,
        path_contains: path_contains.to_owned(),
        status,
        headers: headers
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        body: body.to_owned(),
        count: Some(1),
    }
}

#[tokio::test]
async fn every_bad_answer_has_a_clear_error() {
    let world = start().await;
    let client = &world.client;
    world
        .simulator
        .seed(&group_id("rg-bad"), json!({"location": "westeurope"}))
        .unwrap();
    let endpoint = world.simulator.endpoint().to_owned();
    let disk = resource_id("rg-bad", "Microsoft.Compute/disks", "d");
    let body = json!({"location": "westeurope"});
    let mut messages = Vec::new();

    world
        .simulator
        .inject(canned("rg-bad", 200, &[], "{\"id\": \"/subscriptions/"));
    let error = client
        .get::<ResourceGroup>(&group_id("rg-bad"), api_version::RESOURCES)
        .await
        .unwrap_err();
    assert!(matches!(error, ArmError::InvalidBody { .. }));
    messages.push(("malformed JSON", error));

    world.simulator.inject(canned(
        "/disks/d",
        200,
        &[],
        r#"{"properties": {"storageProfile": {"dataDisks": [{"name": "no-lun"}]}}}"#,
    ));
    let error = client
        .get::<ferry_arm::models::VirtualMachine>(&disk, api_version::COMPUTE)
        .await
        .unwrap_err();
    messages.push(("missing field", error));

    world.simulator.inject(canned(
        "/disks/d",
        201,
        &[],
        r#"{"properties": {"provisioningState": "Exploding"}}"#,
    ));
    let error = client
        .put_and_wait::<_, Disk>(&disk, api_version::DISKS, &body, &WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ArmError::UnknownProvisioningState { .. }));
    messages.push(("unknown provisioningState", error));

    let operation = format!(
        "{endpoint}/subscriptions/s/providers/Microsoft.Simulator/locations/local/operations/odd?api-version=1"
    );
    world.simulator.inject(canned(
        "/disks/d",
        201,
        &[("Azure-AsyncOperation", &operation)],
        "{}",
    ));
    world.simulator.inject(canned(
        "/operations/odd",
        200,
        &[],
        r#"{"status": "Exploding"}"#,
    ));
    let error = client
        .put_and_wait::<_, Disk>(&disk, api_version::DISKS, &body, &WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ArmError::UnknownOperationStatus { .. }));
    messages.push(("unknown operation status", error));

    world.simulator.inject(canned(
        "/disks/d",
        201,
        &[("Azure-AsyncOperation", &operation)],
        "{}",
    ));
    world.simulator.inject(canned(
        "/operations/odd",
        200,
        &[],
        r#"{"percentComplete": 50}"#,
    ));
    let error = client
        .put_and_wait::<_, Disk>(&disk, api_version::DISKS, &body, &WriteOptions::default())
        .await
        .unwrap_err();
    messages.push(("operation status without status", error));

    world.simulator.inject(canned(
        "/disks/d",
        202,
        &[("Location", &operation), ("Retry-After", "soon")],
        "",
    ));
    let error = client
        .put_and_wait::<_, Disk>(&disk, api_version::DISKS, &body, &WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ArmError::InvalidHeader { .. }));
    messages.push(("non-numeric Retry-After", error));

    world.simulator.inject(canned(
        "rg-bad",
        302,
        &[("Location", "https://elsewhere.example/steal")],
        "",
    ));
    let error = client
        .get::<ResourceGroup>(&group_id("rg-bad"), api_version::RESOURCES)
        .await
        .unwrap_err();
    assert!(matches!(error, ArmError::RedirectOffHost { .. }));
    messages.push(("redirect off-host", error));

    world.simulator.inject(canned(
        "/disks/d",
        201,
        &[(
            "Azure-AsyncOperation",
            "https://elsewhere.example/operation",
        )],
        "{}",
    ));
    let error = client
        .put_and_wait::<_, Disk>(&disk, api_version::DISKS, &body, &WriteOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, ArmError::OperationOffHost { .. }));
    messages.push(("operation off-host", error));

    world
        .simulator
        .inject(canned("rg-bad", 400, &[], "<html>bad gateway</html>"));
    let error = client
        .get::<ResourceGroup>(&group_id("rg-bad"), api_version::RESOURCES)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some("HttpStatus400"));
    messages.push(("error without ARM body", error));

    let rendered: Vec<String> = messages
        .iter()
        .map(|(case, error)| {
            format!(
                "{case}:\n  {}",
                support::redact(&world.simulator, &error.to_string())
            )
        })
        .collect();
    insta::assert_snapshot!(rendered.join("\n"));
}

#[tokio::test]
async fn configuration_mistakes_are_explained() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = ferry_arm::ArmClientConfig::azure_public();
    config.endpoint = ferry_arm::Url::parse("http://127.0.0.1:1").unwrap();
    let plain_http = ferry_arm::ArmClient::new(config).unwrap_err();
    let mut config = ferry_arm::ArmClientConfig::azure_public();
    config.ca_file = Some(folder.path().join("missing.pem"));
    let missing_ca = ferry_arm::ArmClient::new(config).unwrap_err();
    let empty = folder.path().join("empty.pem");
    std::fs::write(&empty, "not a certificate").unwrap();
    let mut config = ferry_arm::ArmClientConfig::azure_public();
    config.ca_file = Some(empty);
    let empty_ca = ferry_arm::ArmClient::new(config).unwrap_err();
    let no_credential = ArmError::NoCredential {
        attempts: vec![
            ferry_arm::CredentialAttempt {
                credential: "client secret (environment)",
                reason: "AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET are not all set"
                    .to_owned(),
            },
            ferry_arm::CredentialAttempt {
                credential: "workload identity",
                reason: "AZURE_FEDERATED_TOKEN_FILE is not set".to_owned(),
            },
            ferry_arm::CredentialAttempt {
                credential: "managed identity",
                reason: "no managed identity endpoint answered".to_owned(),
            },
            ferry_arm::CredentialAttempt {
                credential: "Azure CLI",
                reason: "az is not installed".to_owned(),
            },
        ],
    };
    let rendered = [plain_http, missing_ca, empty_ca, no_credential]
        .iter()
        .map(|error| {
            error
                .to_string()
                .replace(&folder.path().display().to_string(), "TMP")
        })
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!(rendered);
}
