//! What a plan means for a script: the [`Verdict`] behind `ferry plan --detailed-exitcode`,
//! computed here so that the CLI, `ferry watch` and library users give the same answer.
//!
//! A verdict is a list of findings, each with a [`Severity`]; the most severe decides the exit
//! code. "No changes" (0) is said only when there is nothing to apply and every reading is
//! known and healthy.

use std::fmt;

use ferry_core::Plan;
use serde::Serialize;

/// The exit code of a command that failed (a spec, plan, read or usage error). A verdict never
/// gives it: it is here so that every code is documented in one place.
pub const EXIT_ERROR: u8 = 1;

/// How much a finding matters, from least to most severe: when several hold, the most severe
/// gives the exit code (4, then 3, 2, 5, 0; an error, 1, beats them all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Nothing to apply, and every reading known and healthy: exit 0.
    Clean,
    /// Something needs a person and no step fixes it (an unhealthy resource that is not a
    /// failover trigger; a failover that is not ready): exit 5.
    Attention,
    /// Steps to apply: exit 2.
    Changes,
    /// A trigger reads unhealthy, and the spec's `mode = "manual"` leaves the failover to the
    /// operator (`ferry plan --failover`): exit 3.
    FailoverDue,
    /// Some readings are unknown: what ferry cannot see it neither changes nor vouches for:
    /// exit 4.
    Unknown,
}

impl Severity {
    /// The exit code `--detailed-exitcode` gives for it.
    pub fn exit_code(self) -> u8 {
        match self {
            Severity::Clean => 0,
            Severity::Changes => 2,
            Severity::FailoverDue => 3,
            Severity::Unknown => 4,
            Severity::Attention => 5,
        }
    }
}

/// One thing a plan says about the world.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub message: String,
}

impl Finding {
    pub fn new(severity: Severity, message: impl Into<String>) -> Self {
        Self {
            severity,
            message: message.into(),
        }
    }
}

/// Everything a plan says about the world, and the exit code that sums it up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub findings: Vec<Finding>,
}

impl Verdict {
    /// The findings of a plan: its unknown readings, a failover left to the operator, its
    /// steps, and its warnings.
    pub fn of(plan: &Plan) -> Self {
        let mut verdict = Verdict::default();
        for reading in &plan.unknown {
            verdict.push(Finding::new(
                Severity::Unknown,
                format!("{} reads unknown: {}", reading.address, reading.reason),
            ));
        }
        if let Some(due) = &plan.failover_due {
            verdict.push(Finding::new(
                Severity::FailoverDue,
                format!(
                    "a failover is due ({due}) and the spec's failover mode is manual: run `ferry plan --failover` to plan it"
                ),
            ));
        }
        if !plan.is_empty() {
            let count = plan.steps.len();
            verdict.push(Finding::new(
                Severity::Changes,
                format!("{count} step{} to apply", if count == 1 { "" } else { "s" }),
            ));
        } else if let Some(failover) = &plan.failover {
            verdict.push(Finding::new(
                Severity::Changes,
                format!(
                    "the failover to generation {} is to be recorded as finished",
                    failover.to_generation
                ),
            ));
        }
        for warning in &plan.warnings {
            verdict.push(Finding::new(
                Severity::Attention,
                format!("{}: {}", warning.address, warning.reason),
            ));
        }
        // A failover that could not be made from these readings needs a person today.
        if let Some(readiness) = plan.readiness.as_ref().filter(|readiness| !readiness.ready) {
            let blockers: Vec<String> =
                readiness.blockers.iter().map(ToString::to_string).collect();
            verdict.push(Finding::new(
                Severity::Attention,
                format!("failover not ready: {}", blockers.join("; ")),
            ));
        }
        verdict
    }

    /// Adds a finding (a failover that is not ready, from a caller that knows it).
    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// The most severe finding's severity; `Clean` with none.
    pub fn severity(&self) -> Severity {
        self.findings
            .iter()
            .map(|finding| finding.severity)
            .max()
            .unwrap_or(Severity::Clean)
    }

    /// The exit code for `--detailed-exitcode`.
    pub fn exit_code(&self) -> u8 {
        self.severity().exit_code()
    }

    /// The findings of one severity.
    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .count()
    }

    /// One line that says what the plan means, for the end of its text: "No changes" only when
    /// that is the whole truth.
    pub fn headline(&self) -> String {
        let plural = |count: usize, one: &str, many: &str| {
            if count == 1 {
                format!("1 {one}")
            } else {
                format!("{count} {many}")
            }
        };
        let unknown = self.count(Severity::Unknown);
        let attention = self.count(Severity::Attention);
        let mut parts = Vec::new();
        if unknown > 0 {
            parts.push(format!(
                "{} unknown: ferry cannot tell whether the world matches the spec",
                plural(unknown, "reading is", "readings are")
            ));
        }
        if self.count(Severity::FailoverDue) > 0 {
            parts.push(
                "a failover is due and the spec's mode is manual: run `ferry plan --failover`"
                    .to_owned(),
            );
        }
        if attention > 0 {
            parts.push(format!(
                "{} attention that no step gives",
                plural(attention, "resource needs", "resources need")
            ));
        }
        match (self.severity(), parts.is_empty()) {
            (Severity::Clean, _) => "No changes: the world matches the spec.".to_owned(),
            (_, true) => String::new(),
            (_, false) if self.count(Severity::Changes) > 0 => {
                format!("Beyond these steps: {}.", parts.join("; "))
            }
            (_, false) => format!("Not \"no changes\": {}.", parts.join("; ")),
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{:?}: {}", finding.severity, finding.message)?;
        }
        write!(f, "exit code {}", self.exit_code())
    }
}
