//! Scenario files: a world to start from (resources that already exist) and faults to inject.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::{Fault, SimulatorError};

/// A starting world, read from TOML (`.toml`) or JSON (anything else).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Overrides the time scale given on the command line.
    #[serde(default)]
    pub time_scale: Option<f64>,
    #[serde(default)]
    pub resources: Vec<SeededResource>,
    #[serde(default)]
    pub faults: Vec<Fault>,
}

/// A resource as ARM would hold it: its id and the body of a PUT.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeededResource {
    pub id: String,
    #[serde(default = "empty_object")]
    pub body: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::json!({})
}

impl Scenario {
    pub fn load(path: &Path) -> Result<Self, SimulatorError> {
        let text = std::fs::read_to_string(path).map_err(|error| SimulatorError::Scenario {
            path: path.display().to_string(),
            reason: format!("could not read it: {error}"),
        })?;
        Self::parse(
            &text,
            path.extension()
                .is_some_and(|extension| extension == "toml"),
        )
        .map_err(|reason| SimulatorError::Scenario {
            path: path.display().to_string(),
            reason,
        })
    }

    pub fn parse(text: &str, is_toml: bool) -> Result<Self, String> {
        if is_toml {
            toml::from_str(text).map_err(|error| error.to_string())
        } else {
            serde_json::from_str(text).map_err(|error| error.to_string())
        }
    }
}
