//! What the simulator's tests of managed disks share: a simulator of their own with ferry's
//! ARM client, ARM ids, creates, and a disk's bytes written and read where its VM sees them.
// Each test file uses only part of this.
#![allow(dead_code)]

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use ferry_arm::api_version::RESOURCES;
use ferry_arm::{ArmClient, ArmClientConfig, ArmError, Url, WriteOptions};
use ferry_sim::{Simulator, SimulatorConfig};
use serde_json::{Value, json};

pub const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";

/// Where a pool's label would be: far enough into the disk that a hole precedes it.
pub const DATA_OFFSET: u64 = 3 << 20;

pub struct World {
    pub simulator: Simulator,
    pub client: ArmClient,
    pub _folder: tempfile::TempDir,
}

pub async fn start_with(adjust: impl FnOnce(&mut SimulatorConfig)) -> World {
    let folder = tempfile::tempdir().unwrap();
    let mut config = SimulatorConfig::for_tests(folder.path().join("sim"));
    adjust(&mut config);
    let simulator = ferry_sim::start(config).await.unwrap();
    let client = ArmClient::new(ArmClientConfig::simulator(
        Url::parse(simulator.endpoint()).unwrap(),
        simulator.ca_file().to_path_buf(),
    ))
    .unwrap();
    World {
        simulator,
        client,
        _folder: folder,
    }
}

pub async fn start() -> World {
    start_with(|_| {}).await
}

pub fn group_id(name: &str) -> String {
    format!("/subscriptions/{SUBSCRIPTION}/resourceGroups/{name}")
}

pub fn disk_id(group: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/disks/{name}",
        group_id(group)
    )
}

pub fn vm_id(group: &str, name: &str) -> String {
    format!(
        "{}/providers/Microsoft.Compute/virtualMachines/{name}",
        group_id(group)
    )
}

pub async fn create(client: &ArmClient, path: &str, version: &str, body: Value) -> Value {
    client
        .put_and_wait(path, version, &body, &WriteOptions::default())
        .await
        .unwrap_or_else(|error| panic!("creating {path}: {error}"))
}

pub async fn create_group(client: &ArmClient, name: &str, location: &str) {
    create(
        client,
        &group_id(name),
        RESOURCES,
        json!({"location": location}),
    )
    .await;
}

pub fn empty_disk(location: &str, size_gb: i64) -> Value {
    json!({"location": location, "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": size_gb}})
}

pub fn write_at(device: &Path, offset: u64, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(device)
        .unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

pub fn read_at(device: &Path, offset: u64, length: usize) -> Vec<u8> {
    let mut file = std::fs::File::open(device).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut bytes = vec![0; length];
    file.read_exact(&mut bytes).unwrap();
    bytes
}

/// The status, code and message of ARM's answer, on one line.
pub fn answer(error: &ArmError) -> String {
    match error {
        ArmError::Service(service) => {
            format!("{} {}: {}", service.status, service.code, service.message)
        }
        other => panic!("not an answer from ARM: {other}"),
    }
}

pub async fn put_refused(client: &ArmClient, path: &str, version: &str, body: Value) -> String {
    match client
        .put::<_, Value>(path, version, &body, &WriteOptions::default())
        .await
    {
        Ok(_) => panic!("PUT {path} was accepted"),
        Err(error) => answer(&error),
    }
}
