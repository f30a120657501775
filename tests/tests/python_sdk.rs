//! A second opinion on the ARM simulator's protocol: Microsoft's Python management SDKs
//! (`tests/python-sdk/drive_simulator.py`, in the virtualenv `xtask/setup/60-python-sdk.sh`
//! makes) drive the simulator through every type ferry uses, each long-running operation
//! through the SDK's own poller, and every operation must pass.

use std::path::PathBuf;
use std::process::Command;

use ferry_sim::SimulatorConfig;
use serde_json::Value;

const SETUP_SCRIPT: &str = "xtask/setup/60-python-sdk.sh";
const SUBSCRIPTION: &str = "00000000-0000-0000-0000-000000000001";

fn python_sdk_folder() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python-sdk")
}

#[tokio::test]
async fn microsoft_s_python_sdks_agree_with_the_simulator() {
    let python = python_sdk_folder().join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run `bash {SETUP_SCRIPT}` (or `cargo xtask setup`) to make the virtualenv with Microsoft's Python SDKs",
        python.display()
    );
    let folder = tempfile::tempdir().unwrap();
    let simulator = ferry_sim::start(SimulatorConfig::for_tests(folder.path().join("sim")))
        .await
        .unwrap();
    let mut command = Command::new(&python);
    command
        .arg(python_sdk_folder().join("drive_simulator.py"))
        .arg(simulator.endpoint())
        .arg(simulator.ca_file())
        .arg(SUBSCRIPTION)
        // The SDKs read no proxy or cloud settings of the machine's.
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("AZURE_CLOUD");
    // The simulator answers on this runtime while the script runs on a blocking thread.
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", python.display()));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let operations: Vec<&Value> = lines
        .iter()
        .filter(|line| line.get("operation").is_some())
        .collect();
    let failures: Vec<String> = operations
        .iter()
        .filter(|line| line["ok"] != Value::Bool(true))
        .map(|line| {
            format!(
                "- {}: {}",
                line["operation"].as_str().unwrap_or_default(),
                line["error"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert!(
        failures.is_empty() && output.status.success(),
        "{} of {} operations failed through Microsoft's Python SDKs (exit {}):\n{}\nstderr:\n{}",
        failures.len(),
        operations.len(),
        output.status,
        failures.join("\n"),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = lines
        .iter()
        .find(|line| line.get("operations").is_some())
        .unwrap_or_else(|| panic!("the script printed no summary:\n{stdout}"));
    assert_eq!(
        summary["operations"].as_u64(),
        Some(operations.len() as u64)
    );
    assert!(
        operations.len() >= 46,
        "only {} operations ran:\n{stdout}",
        operations.len()
    );
}
