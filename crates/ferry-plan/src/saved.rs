//! Saved plans: `ferry plan -o FILE` writes one, `ferry apply FILE` applies exactly it, but only
//! while the observations it was made from still hold (safety invariant 5 of ARCHITECTURE.md).

use std::collections::BTreeMap;

use ferry_core::{Generation, InstanceAddress, Observation, Plan, Snapshot};
use serde::{Deserialize, Serialize};

/// The one saved-plan layout this version reads and writes.
/// Version 2 holds a plan of format 2, whose retirements go last by the plan's rule rather
/// than by edges: a ferry that reads only version 1 would start them too early, so it refuses
/// these. Version 1 plans are read (their explicit edges say no less).
pub const SAVED_PLAN_FORMAT_VERSION: &str = "2";

/// A plan with the fingerprint of every observation it was made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    pub format_version: String,
    /// The deployment the plan belongs to, so that it is not applied to another one.
    pub deployment: String,
    /// The spec the plan was made from, and the `--var` values given, so that `ferry apply FILE`
    /// reads the same world again.
    #[serde(default)]
    pub spec_path: String,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Who made the plan, with which ferry, and when, for `ferry show` and the reviewer:
    /// `user@host`, the version, an RFC 3339 time. Empty in plans saved before they were kept.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub author: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ferry_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    pub active_generation: Generation,
    /// Instance address to [`Observation::fingerprint`], with the reading in words for people.
    pub observations: BTreeMap<InstanceAddress, Fingerprint>,
    pub plan: Plan,
}

/// One observation's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub digest: String,
    pub reading: String,
    /// Each attribute's own fingerprint, so that a stale plan names the attributes that
    /// changed (digests, not values: a reviewer's file need not carry what was read).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// A short digest of one attribute's value.
fn attribute_digest(value: &serde_json::Value) -> String {
    use sha2::Digest;
    let bytes = serde_json::to_vec(value).expect("values always serialise");
    sha2::Sha256::digest(&bytes)[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn attribute_digests(observation: &Observation) -> BTreeMap<String, String> {
    match observation {
        Observation::Present { attributes, .. } => attributes
            .iter()
            .filter(|(name, _)| !ferry_core::fields::is_gauge(name))
            .map(|(name, value)| (name.clone(), attribute_digest(value)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// An observation that no longer holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleObservation {
    /// The instance, or `active generation`.
    pub subject: String,
    /// The reading when the plan was made, and now (`None`: not read now).
    pub then: String,
    pub now: Option<String>,
    /// The attributes whose values differ, as `name`, `name (new)` or `name (gone)`; empty
    /// when the plan did not record them or none differ.
    pub attributes: Vec<String>,
}

impl std::fmt::Display for StaleObservation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let changed = self.attributes.join(", ");
        match &self.now {
            Some(now) if *now == self.then && !changed.is_empty() => {
                write!(f, "{}: {changed} changed ({now})", self.subject)
            }
            Some(now) if *now == self.then => {
                write!(f, "{}: its attributes changed ({now})", self.subject)
            }
            Some(now) => {
                write!(f, "{}: was {}, now {now}", self.subject, self.then)?;
                if !changed.is_empty() {
                    write!(f, "; {changed} changed")?;
                }
                Ok(())
            }
            None => write!(f, "{}: was {}, now not read", self.subject, self.then),
        }
    }
}

/// The attributes whose digests differ between `then` and `now`.
fn changed_attributes(
    then: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> Vec<String> {
    if then.is_empty() || now.is_empty() {
        return Vec::new();
    }
    let mut changed = Vec::new();
    for (name, digest) in then {
        match now.get(name) {
            Some(current) if current == digest => {}
            Some(_) => changed.push(name.clone()),
            None => changed.push(format!("{name} (gone)")),
        }
    }
    for name in now.keys().filter(|name| !then.contains_key(*name)) {
        changed.push(format!("{name} (new)"));
    }
    changed
}

/// Why a saved plan cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    #[error("this is not a saved ferry plan ({0}): make one with ferry plan -o FILE")]
    Malformed(serde_json::Error),
    #[error(
        "this saved plan has format {0}, and this ferry reads formats 1 and {SAVED_PLAN_FORMAT_VERSION}: plan again with this version"
    )]
    Version(String),
}

impl From<serde_json::Error> for SavedPlanError {
    fn from(error: serde_json::Error) -> Self {
        SavedPlanError::Malformed(error)
    }
}

impl SavedPlan {
    pub fn new(deployment: &str, plan: Plan, snapshot: &Snapshot) -> Self {
        Self {
            format_version: SAVED_PLAN_FORMAT_VERSION.to_owned(),
            deployment: deployment.to_owned(),
            spec_path: String::new(),
            variables: BTreeMap::new(),
            author: String::new(),
            ferry_version: env!("CARGO_PKG_VERSION").to_owned(),
            created_at: String::new(),
            active_generation: snapshot.active_generation,
            observations: snapshot
                .resources
                .iter()
                .map(|(instance, observation)| {
                    (
                        instance.clone(),
                        Fingerprint {
                            digest: observation.fingerprint(),
                            reading: observation.describe(),
                            attributes: attribute_digests(observation),
                        },
                    )
                })
                .collect(),
            plan,
        }
    }

    /// Records who made the plan (`user@host`) and when (RFC 3339): the caller knows the
    /// clock and the user, this library does not.
    pub fn made_by(mut self, author: &str, created_at: &str) -> Self {
        self.author = author.to_owned();
        self.created_at = created_at.to_owned();
        self
    }

    /// Records where the spec is and which `--var` values were given. Give an absolute path:
    /// the plan is applied from wherever its file is.
    pub fn for_spec(
        mut self,
        path: &std::path::Path,
        variables: &BTreeMap<String, String>,
    ) -> Self {
        self.spec_path = path.display().to_string();
        self.variables = variables.clone();
        self
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("saved plans always serialise");
        text.push('\n');
        text
    }

    pub fn from_json(text: &str) -> Result<Self, SavedPlanError> {
        let version: serde_json::Value = serde_json::from_str(text)?;
        match version.get("format_version").and_then(|v| v.as_str()) {
            Some(SAVED_PLAN_FORMAT_VERSION | "1") => Ok(serde_json::from_value(version)?),
            Some(other) => Err(SavedPlanError::Version(other.to_owned())),
            None => Err(SavedPlanError::Version("(none)".to_owned())),
        }
    }

    /// Every observation that differs now from when the plan was made: empty when the plan may
    /// be applied.
    pub fn stale(&self, now: &Snapshot) -> Vec<StaleObservation> {
        let mut stale: Vec<StaleObservation> = self
            .observations
            .iter()
            .filter_map(|(instance, then)| {
                let current = now.get(instance);
                if current.map(Observation::fingerprint).as_deref() == Some(then.digest.as_str()) {
                    return None;
                }
                Some(StaleObservation {
                    subject: instance.to_string(),
                    then: then.reading.clone(),
                    now: current.map(Observation::describe),
                    attributes: current
                        .map(|current| {
                            changed_attributes(&then.attributes, &attribute_digests(current))
                        })
                        .unwrap_or_default(),
                })
            })
            .collect();
        stale.extend(
            now.resources
                .iter()
                .filter(|(instance, _)| !self.observations.contains_key(*instance))
                .map(|(instance, observation)| StaleObservation {
                    subject: instance.to_string(),
                    then: "not read".to_owned(),
                    now: Some(observation.describe()),
                    attributes: Vec::new(),
                }),
        );
        if now.active_generation != self.active_generation {
            stale.insert(
                0,
                StaleObservation {
                    subject: "active generation".to_owned(),
                    then: format!("generation {}", self.active_generation),
                    now: Some(format!("generation {}", now.active_generation)),
                    attributes: Vec::new(),
                },
            );
        }
        stale
    }
}
