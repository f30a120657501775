//! Shared set-up of the tests that run the client against an in-process simulator.

#![allow(dead_code)]

pub mod credentials;

use ferry_arm::models::Disk;
use ferry_arm::{ArmClient, ArmClientConfig, Url, WriteOptions, api_version};
use ferry_sim::{Simulator, SimulatorConfig};
use serde_json::{Value, json};

pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";

/// A running simulator, a client pointed at it, and the folder they use.
pub struct World {
    pub simulator: Simulator,
    pub client: ArmClient,
    pub folder: tempfile::TempDir,
}

pub async fn start() -> World {
    start_with(|_| {}).await
}

pub async fn start_with(adjust: impl FnOnce(&mut SimulatorConfig)) -> World {
    let folder = tempfile::tempdir().unwrap();
    let mut config = SimulatorConfig::for_tests(folder.path().join("sim"));
    adjust(&mut config);
    let simulator = ferry_sim::start(config).await.unwrap();
    let client = client_for(&simulator);
    World {
        simulator,
        client,
        folder,
    }
}

pub fn client_for(simulator: &Simulator) -> ArmClient {
    let config = ArmClientConfig::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
    );
    ArmClient::new(config).unwrap()
}

pub fn group_id(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}")
}

pub fn resource_id(group: &str, kind: &str, name: &str) -> String {
    format!("{}/providers/{kind}/{name}", group_id(group))
}

/// Replaces the simulator's random port, so messages can be snapshots.
pub fn redact(simulator: &Simulator, text: &str) -> String {
    let mut text = text.replace(simulator.endpoint(), "https://SIMULATOR");
    // Request ids and operation ids come from counters shared by the tests of a process.
    for marker in ["x-ms-request-id ", "/operations/", "/operationResults/"] {
        let mut searched = 0;
        while let Some(found) = text[searched..].find(marker) {
            let start = searched + found + marker.len();
            let end = text[start..]
                .find(|character: char| !(character.is_ascii_hexdigit() || character == '-'))
                .map_or(text.len(), |offset| start + offset);
            text.replace_range(start..end, "ID");
            searched = start + 2;
        }
    }
    text
}

/// Creates the resource group `name` in westeurope and waits for it.
pub async fn create_group(client: &ArmClient, name: &str) {
    let _: Value = client
        .put_and_wait(
            &group_id(name),
            api_version::RESOURCES,
            &json!({"location": "westeurope"}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
}

/// Creates an empty 64 GB disk and waits for it; its id.
pub async fn create_disk(client: &ArmClient, group: &str, name: &str) -> String {
    let id = resource_id(group, "Microsoft.Compute/disks", name);
    let disk: Disk = client
        .put_and_wait(
            &id,
            api_version::DISKS,
            &json!({"location": "westeurope", "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 64}}),
            &WriteOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(disk.provisioning_state(), Some("Succeeded"));
    id
}

/// A small VM's body in westeurope with these data disks.
pub fn vm_body(disks: Value) -> Value {
    json!({
        "location": "westeurope",
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_D2s_v3"},
            "storageProfile": {"dataDisks": disks},
        }
    })
}
