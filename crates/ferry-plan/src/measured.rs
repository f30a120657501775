//! Durations measured by this deployment's drills, fed back into its plans' estimates
//! (issue 17): a figure per resource and action (`vm.nfs:create`), with the number of drills
//! behind it and the date of the last one. Pure: `ferry-ops` reads and writes the file.

use std::collections::{BTreeMap, HashMap};

use ferry_core::{Action, Plan, ResourceAddress, StepId};
use serde::{Deserialize, Serialize};

/// The one layout of the durations file this version reads and writes.
pub const MEASURED_FORMAT_VERSION: &str = "1";

/// What the drills measured: `drill-durations.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredDurations {
    pub format_version: String,
    /// By `RESOURCE:ACTION` (`vm.nfs:create`): the same step in every generation.
    pub steps: BTreeMap<String, MeasuredFigure>,
}

/// One step's figure: the mean of what `drills` drills measured, the last on `last`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeasuredFigure {
    pub seconds: u64,
    pub drills: u32,
    /// When the last drill behind it ran (RFC 3339).
    pub last: String,
}

impl Default for MeasuredDurations {
    fn default() -> Self {
        Self {
            format_version: MEASURED_FORMAT_VERSION.to_owned(),
            steps: BTreeMap::new(),
        }
    }
}

impl MeasuredDurations {
    /// The key of a step of `resource` doing `action`, whatever its generation.
    pub fn key(resource: &ResourceAddress, action: Action) -> String {
        format!("{resource}:{action}")
    }

    /// Adds one drill's measurement of `key`: the figure becomes the mean of every drill's.
    pub fn record(&mut self, key: String, seconds: u64, at: &str) {
        let figure = self.steps.entry(key).or_insert(MeasuredFigure {
            seconds: 0,
            drills: 0,
            last: String::new(),
        });
        let total = u128::from(figure.seconds) * u128::from(figure.drills) + u128::from(seconds);
        figure.drills = figure.drills.saturating_add(1);
        figure.seconds =
            u64::try_from((total + u128::from(figure.drills) / 2) / u128::from(figure.drills))
                .unwrap_or(u64::MAX);
        figure.last = at.to_owned();
    }
}

/// `plan` with each step's estimate replaced by the drills' figure for its resource and
/// action, when there is one, and its estimated duration, critical path and time to recovery
/// computed again from them; a note says how many steps and drills it rests on. A plan with
/// no step the figures name is returned as it was.
pub fn with_measured(mut plan: Plan, measured: &MeasuredDurations) -> Plan {
    let mut replaced = 0usize;
    let mut drills = 0u32;
    let mut last = String::new();
    for step in &mut plan.steps {
        let key = MeasuredDurations::key(&step.address.address, step.action);
        if let Some(figure) = measured.steps.get(&key) {
            step.estimate_seconds = figure.seconds;
            replaced += 1;
            drills = drills.max(figure.drills);
            if figure.last > last {
                last.clone_from(&figure.last);
            }
        }
    }
    if replaced == 0 {
        return plan;
    }
    retime(&mut plan);
    plan.notes.push(format!(
        "estimates: {replaced} of the {} steps take what this deployment's drills measured (up to {drills} drills, the last at {last}), the others their kind's",
        plan.steps.len()
    ));
    plan
}

/// The plan's estimated duration, critical path and time to recovery from its steps'
/// estimates, as the planner computes them (retirements after every other step).
fn retime(plan: &mut Plan) {
    let starts = crate::order::earliest_starts(plan);
    let finish: HashMap<&StepId, u64> = plan
        .steps
        .iter()
        .map(|step| {
            (
                &step.id,
                starts[&step.id].saturating_add(step.estimate_seconds),
            )
        })
        .collect();
    let last_of_the_rest = plan
        .steps
        .iter()
        .filter(|step| !step.action.goes_last())
        .max_by_key(|step| finish[&step.id]);
    let mut cursor = plan.steps.iter().max_by_key(|step| finish[&step.id]);
    plan.estimated_seconds = cursor.map_or(0, |step| finish[&step.id]);
    let mut path = Vec::new();
    while let Some(step) = cursor {
        path.push(step.id.clone());
        let start = starts[&step.id];
        let before = step
            .after
            .iter()
            .filter_map(|id| plan.steps.iter().find(|other| &other.id == id))
            .chain(last_of_the_rest.filter(|_| step.action.goes_last()))
            .filter(|other| other.id != step.id)
            .max_by_key(|other| finish[&other.id]);
        cursor = before.filter(|other| finish[&other.id] == start && start > 0);
    }
    path.reverse();
    plan.critical_path = path;
    if plan.recovery_seconds.is_some() {
        let back = last_of_the_rest.map_or(0, |step| finish[&step.id]);
        let cached = plan.recovery_cached.as_ref().and_then(|cached| {
            plan.steps
                .iter()
                .filter(|step| step.address == cached.address && !step.action.goes_last())
                .map(|step| finish[&step.id].saturating_add(cached.seconds))
                .max()
        });
        plan.recovery_seconds = Some(back.max(cached.unwrap_or(0)));
    }
}
