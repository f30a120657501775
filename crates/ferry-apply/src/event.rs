//! What an apply tells its caller as it goes: one [`Event`] per thing that happened.
//!
//! The caller passes a `&(dyn Fn(&Event) + Send + Sync)` to [`apply`](crate::apply); it is
//! called inline, from the apply's own task, so it must be quick (render a line, send on a
//! channel). Events of one step come in order: started, progress/resume token/retrying, then
//! one of succeeded, failed or interrupted.

use std::time::Duration;

use ferry_core::StepId;

use crate::report::Counts;

/// Something that happened, and when, counted from the start of the apply (on tokio's clock,
/// so a paused clock gives reproducible times).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub elapsed: Duration,
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventKind {
    ApplyStarted {
        apply_id: String,
        steps: usize,
        /// Steps the journal shows done by an earlier, interrupted apply.
        already_done: usize,
    },
    /// A step finished by an earlier apply, not run again.
    StepAlreadyDone {
        step: StepId,
    },
    StepStarted {
        step: StepId,
        /// The resume token this run resumes the step from, if an earlier apply (or attempt)
        /// recorded one.
        resume_token: Option<String>,
    },
    /// A line from the provider (a hook's output, a poll's result).
    StepProgress {
        step: StepId,
        line: String,
    },
    /// The provider recorded the step's resume token (an ARM operation's URL to poll, a DNS
    /// wait's deadline); it is in the journal.
    StepResumeTokenRecorded {
        step: StepId,
        token: String,
    },
    StepRetrying {
        step: StepId,
        /// The attempt that failed, from 1.
        attempt: u32,
        delay: Duration,
        error: String,
    },
    StepSucceeded {
        step: StepId,
        took: Duration,
    },
    StepFailed {
        step: StepId,
        error: String,
    },
    /// Not run because `because` failed (directly or through a chain of steps).
    StepSkipped {
        step: StepId,
        because: StepId,
    },
    /// Aborted by a hard cancel while running.
    StepInterrupted {
        step: StepId,
    },
    /// The apply was asked to stop: `hard` aborts running steps too.
    Stopping {
        hard: bool,
    },
    /// The state or journal could not be written; no new step starts.
    StorageFailed {
        error: String,
    },
    ApplyFinished {
        counts: Counts,
    },
}
