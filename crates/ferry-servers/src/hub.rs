//! The hub stand-in (`specs/data100/hooks/demo-hub.sh`): its environment, and the guard that
//! stops its HTTPS servers however a run ends.

use std::path::PathBuf;
use std::process::Command;

use crate::DemoCa;

/// Stops the hub stand-ins' HTTPS servers (`specs/data100/hooks/demo-hub.sh`, one per ingress
/// address, its pid in `hubs/<address>/pid` under the demo CA folder) when dropped: a server
/// left on an ingress address would answer the next run with an old certificate.
#[derive(Debug)]
pub struct HubServers(pub PathBuf);

impl HubServers {
    /// The guard for the hubs started with `DEMO_CA_DIR` set to this CA's folder.
    pub fn of(ca: &DemoCa) -> HubServers {
        HubServers(ca.folder.join("hubs"))
    }
}

impl Drop for HubServers {
    fn drop(&mut self) {
        for entry in std::fs::read_dir(&self.0).into_iter().flatten().flatten() {
            if let Ok(pid) = std::fs::read_to_string(entry.path().join("pid")) {
                let _ = Command::new("kill").arg(pid.trim()).status();
            }
        }
    }
}

/// The environment of the hub stand-in: its CA, and how long each hub's "helm" takes.
pub fn hub_environment(
    ca: &DemoCa,
    staging_seconds: f64,
    prod_seconds: f64,
) -> Vec<(String, String)> {
    vec![
        ("DEMO_CA_DIR".into(), ca.folder.display().to_string()),
        (
            "DEMO_HUB_SECONDS_STAGING".into(),
            format!("{staging_seconds:.2}"),
        ),
        ("DEMO_HUB_SECONDS_PROD".into(), format!("{prod_seconds:.2}")),
    ]
}
