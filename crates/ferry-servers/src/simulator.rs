//! The ARM simulator as its own `ferry-sim` process: starting it, its fault control API, the
//! environment that points ferry at it, the loopback addresses it hands out, and reading its
//! state dumps.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::{Process, ServerError, create_folder, error, free_port, need, run};

/// The loopback addresses the simulator hands to public IPs and API servers, in order
/// (`ferry-sim` starts at 127.0.1.1): sshd listens on all of them, so that each NFS VM's
/// public address reaches it. sshd listens on at most 16 sockets, enough for five
/// generations of three addresses each (ingress, NFS VM, API server).
pub fn simulator_addresses(count: u8) -> Vec<Ipv4Addr> {
    addresses_from(Ipv4Addr::new(127, 0, 1, 1), count)
}

/// `count` addresses from `first` on, as a simulator started at `first` hands them out.
pub fn addresses_from(first: Ipv4Addr, count: u8) -> Vec<Ipv4Addr> {
    (0..u32::from(count))
        .map(|offset| Ipv4Addr::from(u32::from(first) + offset))
        .collect()
}

/// The `ferry-sim` binary, run as its own process as an operator would run it.
#[derive(Debug)]
pub struct SimulatorProcess {
    process: Process,
    pub endpoint: String,
    pub ca_file: PathBuf,
    /// Holds `disks/` and `vms/{vm}/scsi1/lunN`: `FERRY_ARM_DEVICE_ROOT`.
    pub data_directory: PathBuf,
    pub state_dump: PathBuf,
}

/// How to run `ferry-sim`.
#[derive(Debug, Clone)]
pub struct SimulatorSettings {
    pub binary: PathBuf,
    pub data_directory: PathBuf,
    /// 0.01: an 8-minute AKS create takes 4.8 s.
    pub time_scale: f64,
    /// Each disk's sparse backing file (zfs-fuse needs at least 64 MiB per vdev).
    pub disk_backing_size: u64,
}

impl SimulatorProcess {
    pub fn start(settings: &SimulatorSettings) -> Result<SimulatorProcess, ServerError> {
        need("curl", "curl")?;
        create_folder("ferry-sim", &settings.data_directory)?;
        let port = free_port()?;
        let state_dump = settings.data_directory.join("state-dump.json");
        let log = settings.data_directory.join("ferry-sim.log");
        let log_file = std::fs::File::create(&log)
            .map_err(|failure| error("ferry-sim", format!("cannot create its log: {failure}")))?;
        let mut process = Process::spawn(
            "ferry-sim",
            Command::new(&settings.binary)
                .arg("--address")
                .arg(format!("127.0.0.1:{port}"))
                .arg("--time-scale")
                .arg(settings.time_scale.to_string())
                .arg("--data-directory")
                .arg(&settings.data_directory)
                .arg("--disk-backing-size")
                .arg(settings.disk_backing_size.to_string())
                .arg("--state-dump")
                .arg(&state_dump)
                .stdout(Stdio::piped())
                .stderr(log_file),
        )?;
        // It prints its endpoint and CA file once it listens.
        let stdout = process
            .child
            .stdout
            .take()
            .ok_or_else(|| error("ferry-sim", "no standard output"))?;
        let mut endpoint = None;
        let mut ca_file = None;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(value) = line.strip_prefix("endpoint:") {
                endpoint = Some(value.trim().to_owned());
            }
            if let Some(value) = line.strip_prefix("ca file:") {
                ca_file = Some(PathBuf::from(value.trim()));
                break;
            }
        }
        // Keep reading what it prints later: a closed pipe would end it at its next line.
        std::thread::spawn(move || lines.for_each(drop));
        let (Some(endpoint), Some(ca_file)) = (endpoint, ca_file) else {
            return Err(error(
                "ferry-sim",
                format!(
                    "did not print its endpoint; its log {}:\n{}",
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                ),
            ));
        };
        Ok(SimulatorProcess {
            process,
            endpoint,
            ca_file,
            data_directory: settings.data_directory.clone(),
            state_dump,
        })
    }

    /// The environment that points ferry's Azure providers at this simulator.
    pub fn ferry_environment(&self) -> Vec<(&'static str, String)> {
        simulator_environment(&self.endpoint, &self.ca_file, &self.data_directory)
    }

    /// Its control API, which a thread of its own may keep.
    pub fn control(&self) -> SimulatorControl {
        SimulatorControl {
            endpoint: self.endpoint.clone(),
            ca_file: self.ca_file.clone(),
        }
    }

    /// Injects a fault, as `POST /ferry-sim/faults` (`{"kind": "api_server_down", ...}`).
    pub fn inject(&self, fault: &serde_json::Value) -> Result<(), ServerError> {
        self.control().inject(fault)
    }

    pub fn clear_faults(&self) -> Result<(), ServerError> {
        self.control().clear_faults()
    }

    /// The world as the simulator sees it: resources, operations, faults.
    pub fn state(&self) -> Result<serde_json::Value, ServerError> {
        self.control().state()
    }

    /// Stops it with Ctrl-C, so that it writes its state dump.
    pub fn stop(mut self) -> PathBuf {
        self.process.interrupt();
        self.state_dump.clone()
    }
}

/// A simulator's control API (`/ferry-sim/...`), spoken with curl.
#[derive(Debug, Clone)]
pub struct SimulatorControl {
    pub endpoint: String,
    pub ca_file: PathBuf,
}

impl SimulatorControl {
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<String, ServerError> {
        let mut command = Command::new("curl");
        command
            .args(["-sS", "--fail-with-body", "--cacert"])
            .arg(&self.ca_file)
            .args(["-X", method]);
        if let Some(body) = body {
            command
                .args(["-H", "content-type: application/json", "--data"])
                .arg(body.to_string());
        }
        command.arg(format!("{}{path}", self.endpoint));
        run("ferry-sim", &mut command)
    }

    /// Injects a fault, as `POST /ferry-sim/faults` (`{"kind": "api_server_down", ...}`).
    pub fn inject(&self, fault: &serde_json::Value) -> Result<(), ServerError> {
        self.call("POST", "/ferry-sim/faults", Some(fault))
            .map(|_| ())
    }

    pub fn clear_faults(&self) -> Result<(), ServerError> {
        self.call("DELETE", "/ferry-sim/faults", None).map(|_| ())
    }

    /// The world as the simulator sees it: resources, operations, faults, power states.
    pub fn state(&self) -> Result<serde_json::Value, ServerError> {
        let text = self.call("GET", "/ferry-sim/state", None)?;
        serde_json::from_str(&text)
            .map_err(|failure| error("ferry-sim", format!("its state is not JSON: {failure}")))
    }
}

/// The environment that points ferry's Azure providers at a simulator, whether it runs as
/// the `ferry-sim` process or in the test's own process.
pub fn simulator_environment(
    endpoint: &str,
    ca_file: &Path,
    data_directory: &Path,
) -> Vec<(&'static str, String)> {
    vec![
        ("FERRY_ARM_ENDPOINT", endpoint.to_owned()),
        ("FERRY_ARM_CA_FILE", ca_file.display().to_string()),
        ("FERRY_ARM_SIMULATOR", "1".to_owned()),
        (
            "FERRY_ARM_DEVICE_ROOT",
            data_directory.display().to_string(),
        ),
    ]
}

/// The resources of a simulator state dump (`GET /ferry-sim/state` or `dump_state`),
/// wherever its layout keeps them, each body with its `id`.
pub fn state_resources(state: &serde_json::Value) -> Vec<serde_json::Value> {
    match &state["resources"] {
        serde_json::Value::Array(items) => items
            .iter()
            .map(|item| {
                item.get("body").cloned().map_or(item.clone(), |mut body| {
                    if body.get("id").is_none() {
                        body["id"] = item["id"].clone();
                    }
                    body
                })
            })
            .collect(),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(id, body)| {
                let mut body = body.get("body").cloned().unwrap_or_else(|| body.clone());
                if body.get("id").is_none() {
                    body["id"] = serde_json::Value::from(id.clone());
                }
                body
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The address ARM gave a public IP of one resource group, from a simulator state dump.
pub fn public_address(state: &serde_json::Value, group: &str, name: &str) -> Option<String> {
    state_resources(state)
        .into_iter()
        .find(|resource| {
            let id = resource["id"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase();
            id.contains(&format!("/resourcegroups/{group}/"))
                && id.ends_with(&format!("/publicipaddresses/{name}"))
        })
        .and_then(|resource| {
            resource["properties"]["ipAddress"]
                .as_str()
                .map(str::to_owned)
        })
}

/// Whether a simulator state dump holds anything in the resource group.
pub fn group_exists(state: &serde_json::Value, group: &str) -> bool {
    state_resources(state).iter().any(|resource| {
        resource["id"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .contains(&format!("/resourcegroups/{group}"))
    })
}
