//! Cancelling an apply from outside it (the CLI wires Ctrl-C here), in two strengths.

use std::sync::Arc;

use tokio::sync::watch;

/// How far an apply has been asked to stop. Only ever increases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum CancelLevel {
    #[default]
    Running,
    /// Start no new step; let running steps finish (and record their results).
    StopStarting,
    /// Drop running steps' futures at once; they are reported as interrupted and, as the
    /// journal has no end for them, are re-run (from their resume tokens) by the next apply.
    Abort,
}

/// A cheap, cloneable handle that cancels an apply. Create one, keep a clone for the signal
/// handler, and pass it to [`apply`](crate::apply).
#[derive(Debug, Clone)]
pub struct ApplyControl {
    sender: Arc<watch::Sender<CancelLevel>>,
}

impl Default for ApplyControl {
    fn default() -> Self {
        Self::new()
    }
}

impl ApplyControl {
    pub fn new() -> Self {
        Self {
            sender: Arc::new(watch::Sender::new(CancelLevel::Running)),
        }
    }

    /// Graceful cancel: start nothing more, let running steps finish.
    pub fn stop_starting(&self) {
        self.raise(CancelLevel::StopStarting);
    }

    /// Hard cancel: abort running steps too.
    pub fn abort(&self) {
        self.raise(CancelLevel::Abort);
    }

    /// One step stronger than now, and the new level: what a Ctrl-C handler calls, so that the
    /// first Ctrl-C stops gracefully and the second aborts.
    pub fn escalate(&self) -> CancelLevel {
        let next = match self.level() {
            CancelLevel::Running => CancelLevel::StopStarting,
            _ => CancelLevel::Abort,
        };
        self.raise(next);
        next
    }

    pub fn level(&self) -> CancelLevel {
        *self.sender.borrow()
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<CancelLevel> {
        self.sender.subscribe()
    }

    fn raise(&self, level: CancelLevel) {
        self.sender.send_if_modified(|current| {
            let raised = level > *current;
            if raised {
                *current = level;
            }
            raised
        });
    }
}
