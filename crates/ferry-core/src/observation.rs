//! What providers read from the world: one [`Observation`] per resource instance, gathered in a
//! [`Snapshot`] that `ferry observe` writes and `ferry plan --observed` reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::address::{Generation, InstanceAddress};
use crate::fields;
use crate::value::{Attributes, Value};

/// Whether a resource that exists is doing its job, as far as its provider can tell.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Health {
    Healthy,
    /// Present but not serving: for an AKS cluster, ARM says it is provisioned and its API
    /// server's `/readyz` does not answer.
    Unhealthy {
        reason: String,
    },
    /// Its provisioning failed (ARM's `provisioningState` Failed, a create that ended in a
    /// quota error): it exists but was never built right. The plan replaces it, as Terraform
    /// replaces a tainted resource; a stateful one is reported, never replaced.
    Failed {
        reason: String,
    },
    /// Its create is still under way: ARM reports `provisioningState` Creating, from a create
    /// an earlier apply started and did not see finish (killed, or its time limit). It exists
    /// but is not built yet, so nothing that needs it may start: the plan creates it again,
    /// which resumes the recorded operation or waits for it, then sends the same request.
    Creating {
        reason: String,
    },
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }

    /// Why it is not healthy, when it is not.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Health::Healthy => None,
            Health::Unhealthy { reason }
            | Health::Failed { reason }
            | Health::Creating { reason } => Some(reason),
        }
    }
}

/// The actual state of one resource instance.
///
/// `Unknown` is never treated as `Absent`: nothing is created or deleted on an unknown reading.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Observation {
    Present {
        /// The resource's attributes and outputs, with the names the spec uses.
        attributes: Attributes,
        health: Health,
    },
    Absent,
    /// The provider could not tell (an unreachable API, a timeout), and says why.
    Unknown {
        reason: String,
    },
}

impl Observation {
    pub fn present(attributes: Attributes) -> Self {
        Observation::Present {
            attributes,
            health: Health::Healthy,
        }
    }

    pub fn attributes(&self) -> Option<&Attributes> {
        match self {
            Observation::Present { attributes, .. } => Some(attributes),
            _ => None,
        }
    }

    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes()
            .and_then(|attributes| attributes.get(name))
    }

    pub fn is_present(&self) -> bool {
        matches!(self, Observation::Present { .. })
    }

    pub fn is_healthy(&self) -> bool {
        matches!(
            self,
            Observation::Present {
                health: Health::Healthy,
                ..
            }
        )
    }

    /// For a VM: whether ARM shows it can no longer write to any disk (gone, or deallocated).
    /// This is what a fence establishes and what an import of a pool relies on.
    pub fn is_fenced_host(&self) -> bool {
        match self {
            Observation::Absent => true,
            Observation::Present { attributes, .. } => {
                attributes
                    .get(fields::vm::POWER_STATE)
                    .and_then(Value::as_str)
                    == Some("deallocated")
            }
            Observation::Unknown { .. } => false,
        }
    }

    /// A short stable digest of this reading, stored in saved plans so that `ferry apply`
    /// can tell whether the world still looks the way it did when the plan was made.
    ///
    /// The digest covers whether the instance is present, its attributes and whether it is
    /// healthy, but not the words of a reason: an API server that refuses connections says
    /// "reset by peer" on one read and "handshake eof" on the next, and neither makes a plan
    /// stale. Nor does a gauge ([`fields::GAUGES`]), which moves with the clock alone.
    pub fn fingerprint(&self) -> String {
        let without_gauges;
        let this = match self {
            Observation::Present { attributes, health }
                if attributes.iter().any(|(name, _)| fields::is_gauge(name)) =>
            {
                without_gauges = Observation::Present {
                    attributes: attributes
                        .iter()
                        .filter(|(name, _)| !fields::is_gauge(name))
                        .map(|(name, value)| (name.clone(), value.clone()))
                        .collect(),
                    health: health.clone(),
                };
                &without_gauges
            }
            other => other,
        };
        let canonical = match this {
            // A failed provisioning is its own reading (it plans a replacement); the key is
            // there only then, so that every other reading keeps its fingerprint.
            Observation::Present {
                attributes,
                health: Health::Failed { .. },
            } => serde_json::json!({
                "status": "present",
                "attributes": attributes,
                "healthy": false,
                "failed": true,
            }),
            Observation::Present { attributes, health } => serde_json::json!({
                "status": "present",
                "attributes": attributes,
                "healthy": health.is_healthy(),
            }),
            Observation::Absent => serde_json::json!({"status": "absent"}),
            Observation::Unknown { .. } => serde_json::json!({"status": "unknown"}),
        };
        let canonical = serde_json::to_vec(&canonical).expect("observations always serialise");
        let digest = Sha256::digest(&canonical);
        digest[..12]
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }

    /// One line for people: `present, healthy`, `present, unhealthy: readyz timed out`, `absent`.
    pub fn describe(&self) -> String {
        match self {
            Observation::Present {
                health: Health::Healthy,
                ..
            } => "present, healthy".to_owned(),
            Observation::Present {
                health: Health::Unhealthy { reason },
                ..
            } => format!("present, unhealthy: {reason}"),
            Observation::Present {
                health: Health::Failed { reason },
                ..
            } => format!("present, provisioning failed: {reason}"),
            Observation::Present {
                health: Health::Creating { reason },
                ..
            } => format!("present, still being created: {reason}"),
            Observation::Absent => "absent".to_owned(),
            Observation::Unknown { reason } => format!("unknown: {reason}"),
        }
    }
}

/// The observations of a whole deployment at one moment: the input of the planner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Always `"1"` for this layout.
    pub format_version: String,
    /// The generation that serves now (from ferry's state); `0` before the first apply.
    pub active_generation: Generation,
    /// A failover that an earlier apply started and did not finish (from ferry's state): the
    /// planner finishes it rather than deciding again from the readings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_in_progress: Option<crate::Failover>,
    /// When each older generation stopped serving (its failover finished, RFC 3339), from
    /// ferry's state, for as long as something of it remains: the start of its retention.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stood_down: BTreeMap<Generation, String>,
    /// Every instance read, keyed by instance address (`vm.nfs@g1`, `disk.home0`). An instance
    /// missing from the map was not read, which the planner treats like `Unknown`.
    pub resources: BTreeMap<InstanceAddress, Observation>,
}

/// The one snapshot layout this version reads and writes.
pub const SNAPSHOT_FORMAT_VERSION: &str = "1";

impl Snapshot {
    pub fn new(active_generation: Generation) -> Self {
        Self {
            format_version: SNAPSHOT_FORMAT_VERSION.to_owned(),
            active_generation,
            failover_in_progress: None,
            stood_down: BTreeMap::new(),
            resources: BTreeMap::new(),
        }
    }

    pub fn get(&self, instance: &InstanceAddress) -> Option<&Observation> {
        self.resources.get(instance)
    }

    pub fn insert(&mut self, instance: InstanceAddress, observation: Observation) {
        self.resources.insert(instance, observation);
    }

    /// Inserts many readings at once; into an empty snapshot, the map is built from them
    /// sorted, which fills its nodes: inserted one by one in the order reads end, a large
    /// snapshot's nodes were left half empty.
    pub fn extend(&mut self, readings: Vec<(InstanceAddress, Observation)>) {
        if self.resources.is_empty() {
            self.resources = readings.into_iter().collect();
        } else {
            self.resources.extend(readings);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snapshots_round_trip_in_their_documented_layout() {
        let text = r#"{
  "format_version": "1",
  "active_generation": 1,
  "resources": {
    "aks_cluster.hub@g1": {
      "status": "present",
      "attributes": {"fqdn": "hub.example"},
      "health": {"state": "unhealthy", "reason": "GET /readyz timed out after 5s"}
    },
    "disk.home0": {"status": "absent"},
    "zfs_pool.home": {"status": "unknown", "reason": "ssh: connection refused"}
  }
}"#;
        let snapshot: Snapshot = serde_json::from_str(text).unwrap();
        let hub = snapshot
            .get(&"aks_cluster.hub@g1".parse().unwrap())
            .unwrap();
        assert_eq!(hub.attribute("fqdn"), Some(&json!("hub.example")));
        assert!(hub.is_present() && !hub.is_healthy());
        let again: Snapshot =
            serde_json::from_str(&serde_json::to_string(&snapshot).unwrap()).unwrap();
        assert_eq!(again, snapshot);
    }

    #[test]
    fn fingerprints_change_with_the_reading_but_not_with_its_wording() {
        let healthy = Observation::present(Attributes::new());
        let unhealthy = Observation::Present {
            attributes: Attributes::new(),
            health: Health::Unhealthy {
                reason: "down".into(),
            },
        };
        assert_eq!(healthy.fingerprint(), healthy.clone().fingerprint());
        assert_ne!(healthy.fingerprint(), unhealthy.fingerprint());
        assert_eq!(healthy.fingerprint().len(), 24);
        let reworded = Observation::Present {
            attributes: Attributes::new(),
            health: Health::Unhealthy {
                reason: "connection reset by peer".into(),
            },
        };
        assert_eq!(unhealthy.fingerprint(), reworded.fingerprint());
        let changed = Observation::present(
            [("size_gb".to_owned(), serde_json::json!(2048))]
                .into_iter()
                .collect(),
        );
        assert_ne!(healthy.fingerprint(), changed.fingerprint());
    }

    /// A replica's lag grows by the second while nothing changes: a saved plan made a minute
    /// ago still holds, whatever the lag read then and now; the replica's role still counts.
    #[test]
    fn a_gauge_is_not_part_of_a_fingerprint() {
        let replica = |lag: u64, role: &str| {
            Observation::present(
                [
                    (
                        fields::zfs_pool::REPLICA_LAG_SECONDS.to_owned(),
                        serde_json::json!(lag),
                    ),
                    (
                        fields::zfs_pool::REPLICATION_ROLE.to_owned(),
                        serde_json::json!(role),
                    ),
                ]
                .into_iter()
                .collect(),
            )
        };
        assert_eq!(
            replica(3, "replica").fingerprint(),
            replica(75, "replica").fingerprint()
        );
        assert_ne!(
            replica(3, "replica").fingerprint(),
            replica(3, "primary").fingerprint()
        );
    }
}
