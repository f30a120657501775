//! Shared set-up of the tests that run the client against an in-process simulator.

#![allow(dead_code)]

pub mod credentials;

use ferry_arm::{ArmClient, ArmClientConfig, Url};
use ferry_sim::{Simulator, SimulatorConfig};

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
