//! What an apply did, step by step.

use std::time::Duration;

use ferry_core::StepId;

use crate::cancel::CancelLevel;

/// Where a step ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepStatus {
    /// Never started: the apply stopped first (a cancel, a storage failure).
    NotStarted,
    Done,
    /// Done by an earlier, interrupted apply, as its journal shows; not run again.
    AlreadyDone,
    Failed {
        error: String,
    },
    /// Not run because this step failed.
    Skipped {
        because: StepId,
    },
    /// Aborted while running; the next apply runs it again.
    Interrupted,
    /// It took effect, but its outputs could not be saved in the state (`error` says why), so
    /// its end is not journaled either: it is not recorded as done, and the next apply treats
    /// it as started and unfinished.
    NotSaved {
        error: String,
    },
}

/// One step's line in the report, in plan order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepReport {
    pub id: StepId,
    pub status: StepStatus,
    /// Calls made to the provider (more than one after transient errors).
    pub attempts: u32,
    /// Times counted from the apply's start.
    pub started: Option<Duration>,
    pub finished: Option<Duration>,
}

/// How many steps ended up in each status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub done: usize,
    pub already_done: usize,
    pub failed: usize,
    pub skipped: usize,
    pub not_started: usize,
    pub interrupted: usize,
    pub not_saved: usize,
}

/// The result of [`apply`](crate::apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyReport {
    pub apply_id: String,
    pub steps: Vec<StepReport>,
    pub elapsed: Duration,
    /// The strongest cancel the apply saw.
    pub cancel: CancelLevel,
    /// Why the apply stopped starting steps early, if the state or journal failed.
    pub storage_error: Option<String>,
}

impl ApplyReport {
    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for step in &self.steps {
            match step.status {
                StepStatus::NotStarted => counts.not_started += 1,
                StepStatus::Done => counts.done += 1,
                StepStatus::AlreadyDone => counts.already_done += 1,
                StepStatus::Failed { .. } => counts.failed += 1,
                StepStatus::Skipped { .. } => counts.skipped += 1,
                StepStatus::Interrupted => counts.interrupted += 1,
                StepStatus::NotSaved { .. } => counts.not_saved += 1,
            }
        }
        counts
    }

    /// Every step of the plan is done, now or by an earlier apply, and everything ferry must
    /// remember is saved.
    pub fn succeeded(&self) -> bool {
        self.storage_error.is_none()
            && self
                .steps
                .iter()
                .all(|step| matches!(step.status, StepStatus::Done | StepStatus::AlreadyDone))
    }

    pub fn step(&self, id: &StepId) -> Option<&StepReport> {
        self.steps.iter().find(|step| &step.id == id)
    }

    /// The ids of the steps with a status matching `predicate`, in plan order.
    pub fn ids(&self, predicate: impl Fn(&StepStatus) -> bool) -> Vec<&StepId> {
        self.steps
            .iter()
            .filter(|step| predicate(&step.status))
            .map(|step| &step.id)
            .collect()
    }
}

impl Counts {
    /// `12 done, 1 failed, 3 skipped`: the non-zero counts.
    pub fn describe(&self) -> String {
        let parts = [
            (self.done, "done"),
            (self.not_saved, "done but not saved"),
            (self.already_done, "already done"),
            (self.failed, "failed"),
            (self.skipped, "skipped"),
            (self.interrupted, "interrupted"),
            (self.not_started, "not started"),
        ];
        let shown: Vec<String> = parts
            .iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, what)| format!("{count} {what}"))
            .collect();
        if shown.is_empty() {
            "nothing to do".to_owned()
        } else {
            shown.join(", ")
        }
    }
}
