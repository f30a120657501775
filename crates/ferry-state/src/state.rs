//! The state file: the active generation and the outputs of every instance ferry made.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use ferry_core::fs::{WriteOptions, write_atomically};
use ferry_core::{Attributes, Expression, Failover, Generation, InstanceAddress, Value};
use serde::{Deserialize, Serialize};

/// The one state layout this version reads and writes.
pub const STATE_FORMAT_VERSION: &str = "1";

/// What ferry remembers of one instance.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceRecord {
    /// The outputs its last successful step returned, the real resource id among them.
    pub outputs: Attributes,
}

/// The content of `state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateFile {
    pub format_version: String,
    /// The generation that serves now; `0` before the first apply.
    pub active_generation: Generation,
    /// A failover an apply started and no apply has finished yet: saved before its first
    /// step, cleared when `active_generation` becomes its target. Every plan made meanwhile
    /// finishes this failover (safety invariant 9 of ARCHITECTURE.md), whatever the old generation reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<Failover>,
    /// When each older generation stopped serving (the failover away from it finished, RFC
    /// 3339): where its retention (`[failover] retire_old`) counts from. Kept while the state
    /// remembers any of its instances; lost with the state, after which a kept generation
    /// waits for `--retire-old now` rather than guessing when its time is up.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub stood_down: BTreeMap<Generation, String>,
    /// Keyed by instance address: `vm.nfs@g1`, `disk.home0`.
    pub instances: BTreeMap<InstanceAddress, InstanceRecord>,
}

impl Default for StateFile {
    fn default() -> Self {
        Self {
            format_version: STATE_FORMAT_VERSION.to_owned(),
            active_generation: 0,
            failover: None,
            stood_down: BTreeMap::new(),
            instances: BTreeMap::new(),
        }
    }
}

/// Why the state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {}", crate::describe_io(source, path))]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "state file {path} is not valid ferry state ({source}): restore it from a backup, or move it away to start from empty state"
    )]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "state file {path} has format version {found}, and this ferry reads version {STATE_FORMAT_VERSION}: use the ferry release that wrote it"
    )]
    Version { path: PathBuf, found: String },
    #[error(
        "cannot save state file {path}: {}; the previous state is left as it was",
        crate::describe_io(source, path)
    )]
    Write { path: PathBuf, source: io::Error },
    /// A shared state was written by someone else since this process read it: saving would
    /// silently overwrite their change, so nothing was written.
    #[error(
        "state {place} was changed by someone else since this ferry read it: nothing was overwritten; make sure no other apply runs without the lock, then run the command again to start from the new state"
    )]
    Conflict { place: String },
    /// A remote state store did not answer or refused.
    #[error("cannot {doing} state {place}: {reason}")]
    Remote {
        place: String,
        doing: &'static str,
        reason: String,
    },
}

impl StateFile {
    /// Reads the state at `path`; a missing file is the empty state of a first apply.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::from_json(&text, path)
    }

    /// Reads a state from its JSON text; `place` names where it came from in errors.
    pub fn from_json(text: &str, place: &Path) -> Result<Self, StateError> {
        let state: StateFile =
            serde_json::from_str(text).map_err(|source| StateError::Corrupt {
                path: place.to_owned(),
                source,
            })?;
        if state.format_version != STATE_FORMAT_VERSION {
            return Err(StateError::Version {
                path: place.to_owned(),
                found: state.format_version,
            });
        }
        Ok(state)
    }

    /// The state as its file holds it: pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("state always serialises");
        text.push('\n');
        text
    }

    /// Writes the state atomically: a crash leaves the old file or the new one, whole.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        write_atomically(path, self.to_json().as_bytes(), &WriteOptions::default()).map_err(
            |source| StateError::Write {
                path: path.to_owned(),
                source,
            },
        )
    }

    pub fn outputs(&self, instance: &InstanceAddress) -> Option<&Attributes> {
        self.instances.get(instance).map(|record| &record.outputs)
    }

    /// Remembers the outputs a step returned (the apply engine calls [`StateFile::forget`]
    /// instead after a delete or a retire).
    pub fn record_outputs(&mut self, instance: &InstanceAddress, outputs: Attributes) {
        self.instances
            .insert(instance.clone(), InstanceRecord { outputs });
    }

    pub fn forget(&mut self, instance: &InstanceAddress) {
        self.instances.remove(instance);
    }

    /// Answers `${kind.name@gN.output}` from the remembered outputs, as
    /// `ferry_core::value::resolve` wants its lookup.
    pub fn lookup_output(&self, expression: &Expression) -> Option<Value> {
        match expression {
            Expression::Output {
                address,
                generation,
                output,
            } => self
                .outputs(&address.at(*generation))
                .and_then(|outputs| outputs.get(output))
                .cloned(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance(text: &str) -> InstanceAddress {
        text.parse().unwrap()
    }

    #[test]
    fn a_missing_file_is_the_empty_state() {
        let directory = tempfile::tempdir().unwrap();
        let state = StateFile::load(&directory.path().join("state.json")).unwrap();
        assert_eq!(state, StateFile::default());
        assert_eq!(state.active_generation, 0);
    }

    #[test]
    fn saving_round_trips_and_leaves_no_temporary_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.json");
        let mut state = StateFile {
            active_generation: 2,
            ..StateFile::default()
        };
        state.record_outputs(
            &instance("vm.nfs@g2"),
            [("id".to_owned(), json!("/subscriptions/x/vm/nfs-g2"))].into(),
        );
        state.record_outputs(&instance("disk.home0"), Attributes::new());
        state.save(&path).unwrap();
        // Saving again replaces the file rather than appending to it.
        state.save(&path).unwrap();
        assert_eq!(StateFile::load(&path).unwrap(), state);
        let names: Vec<String> = std::fs::read_dir(directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["state.json"]);
        insta::assert_snapshot!(std::fs::read_to_string(&path).unwrap(), @r#"
        {
          "format_version": "1",
          "active_generation": 2,
          "instances": {
            "vm.nfs@g2": {
              "outputs": {
                "id": "/subscriptions/x/vm/nfs-g2"
              }
            },
            "disk.home0": {
              "outputs": {}
            }
          }
        }
        "#);
    }

    #[test]
    fn outputs_answer_output_expressions_only() {
        let mut state = StateFile::default();
        state.record_outputs(
            &instance("vm.nfs@g2"),
            [("private_ip".to_owned(), json!("10.0.0.4"))].into(),
        );
        let expression = |text: &str| {
            ferry_core::value::unresolved(&json!(text))
                .into_iter()
                .next()
                .unwrap()
        };
        assert_eq!(
            state.lookup_output(&expression("${vm.nfs@g2.private_ip}")),
            Some(json!("10.0.0.4"))
        );
        assert_eq!(
            state.lookup_output(&expression("${vm.nfs@g1.private_ip}")),
            None
        );
        assert_eq!(state.lookup_output(&expression("${var.port}")), None);
    }

    #[test]
    fn bad_files_say_what_to_do() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("state.json");
        std::fs::write(&path, "{ not json").unwrap();
        let corrupt = StateFile::load(&path).unwrap_err().to_string();
        std::fs::write(
            &path,
            r#"{"format_version": "9", "active_generation": 1, "instances": {}}"#,
        )
        .unwrap();
        let version = StateFile::load(&path).unwrap_err().to_string();
        let shown = format!("{corrupt}\n{version}")
            .replace(&directory.path().display().to_string(), "<dir>");
        insta::assert_snapshot!(shown, @r"
        state file <dir>/state.json is not valid ferry state (key must be a string at line 1 column 3): restore it from a backup, or move it away to start from empty state
        state file <dir>/state.json has format version 9, and this ferry reads version 1: use the ferry release that wrote it
        ");
    }
}
