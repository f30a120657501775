//! What a deployment's drills measured: where it is kept, how it is read, and how a drill
//! adds to it (`ferry_plan::measured` lays it over a plan's estimates).

use std::path::{Path, PathBuf};

use ferry_core::{Action, Plan};

use super::{MeasuredStep, counterpart};
use crate::{Deployment, WorldSource};

/// Where a deployment's drills keep what they measured: beside its local state
/// (`.ferry/drill-durations.json`), or in the spec's `.ferry` folder when the state is shared.
pub fn measured_path(spec: &ferry_spec::Spec) -> PathBuf {
    let folder = match &spec.state {
        ferry_spec::StateConfig::Local { path } => path.clone(),
        _ => spec.root.join(".ferry"),
    };
    folder.join("drill-durations.json")
}

/// The figures at `path`: `None` when there is none yet.
pub fn read_measured(
    path: &Path,
) -> Result<Option<ferry_plan::measured::MeasuredDurations>, String> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("cannot read {}: {error}", path.display())),
    };
    let figures: ferry_plan::measured::MeasuredDurations =
        serde_json::from_str(&text).map_err(|error| {
            format!(
                "{} is not a drill's figures: {error}; move it away",
                path.display()
            )
        })?;
    if figures.format_version != ferry_plan::measured::MEASURED_FORMAT_VERSION {
        return Err(format!(
            "{} has format {}, and this ferry reads {}: move it away",
            path.display(),
            figures.format_version,
            ferry_plan::measured::MEASURED_FORMAT_VERSION
        ));
    }
    Ok(Some(figures))
}

impl Deployment {
    /// Adds what the drill measured to the deployment's figures ([`measured_path`]), for the
    /// failover's steps: each drill step under the failover's resource and action (a pool's
    /// create is its import, a record's its update; a disk's copy is no move, and is left out,
    /// but a staged drill's moves of its copies are kept).
    /// A simulated world's figures are scaled back by its time scale; one with no time scale,
    /// or providers the caller built, measure nothing worth keeping.
    pub(super) fn record_measurements(
        &self,
        steps: &[MeasuredStep],
        plan: &Plan,
    ) -> Result<PathBuf, String> {
        let scale = match &self.source {
            WorldSource::Live => 1.0,
            WorldSource::Simulated { time_scale, .. } if *time_scale > 0.0 => *time_scale,
            WorldSource::Simulated { .. } => {
                return Err("a simulated world with no --world-time-scale takes no time: nothing worth keeping was measured".to_owned());
            }
            WorldSource::Providers(_) => {
                return Err("the providers were built by the program, whose clock ferry does not know: nothing kept".to_owned());
            }
        };
        let path = measured_path(&self.spec);
        let mut figures = read_measured(&path)?.unwrap_or_default();
        let at = ferry_core::time::format_time(std::time::SystemTime::now());
        for step in steps {
            let Some(measured) = step.measured else {
                continue;
            };
            let Some(planned) = plan.steps.iter().find(|planned| planned.id == step.id) else {
                continue;
            };
            let action = match (planned.address.kind(), planned.action) {
                // A copy is no move; a staged drill's moves of its copies are.
                (ferry_core::Kind::Disk, Action::Create) => continue,
                (kind, Action::Create) => counterpart(kind).unwrap_or(Action::Create),
                (_, action) => action,
            };
            let seconds = (measured.as_secs_f64() / scale).round();
            figures.record(
                ferry_plan::measured::MeasuredDurations::key(&planned.address.address, action),
                // Saturating: a figure beyond u64 is no figure anyone keeps.
                seconds.clamp(0.0, u64::MAX as f64) as u64,
                &at,
            );
        }
        let text = serde_json::to_string_pretty(&figures).map_err(|error| error.to_string())?;
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder)
                .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
        }
        ferry_core::fs::write_atomically(
            &path,
            format!("{text}\n").as_bytes(),
            &ferry_core::fs::WriteOptions::default(),
        )
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        Ok(path)
    }
}
