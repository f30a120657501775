//! Why an operation stopped: one error type for every operation, each variant saying what to
//! do next.

use ferry_plan::PlanErrors;

/// Why an operation could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// The spec does not load; its errors carry their files, lines and columns.
    #[error("{0}")]
    Spec(ferry_spec::SpecErrors),
    /// The spec's `[state]` cannot be used as written.
    #[error("{0}")]
    StateSetup(String),
    #[error(transparent)]
    Blob(#[from] ferry_state_blob::BlobError),
    #[error(transparent)]
    State(#[from] ferry_state::StateError),
    #[error(transparent)]
    Lock(#[from] ferry_state::lock::LockError),
    #[error(transparent)]
    Store(#[from] ferry_apply::StoreError),
    #[error(transparent)]
    World(#[from] ferry_world::WorldFileError),
    #[error(transparent)]
    Providers(#[from] ferry_providers::SetupError),
    #[error(transparent)]
    Observe(#[from] ferry_observe::MissingProviders),
    #[error(transparent)]
    Apply(#[from] ferry_apply::ApplyError),
    /// The planner refused: every problem at once.
    #[error("{0}")]
    Plan(#[from] PlanErrors),
    /// A provider's guard refused the plan (DNS's share of a zone, unless forced).
    #[error("{0}")]
    Guard(String),
    /// A snapshot file that this ferry does not read.
    #[error("{0}")]
    Snapshot(String),
    /// A saved plan made for another deployment.
    #[error("{plan} is a plan for deployment {planned}, but {spec} is deployment {deployment}")]
    OtherDeployment {
        plan: String,
        planned: String,
        spec: String,
        deployment: String,
    },
    /// The readings a saved plan was made from no longer hold.
    #[error(
        "the world changed since this plan was made, so it is not applied:\n{}\nmake a new plan with ferry plan",
        changes.iter().map(|change| format!("  {change}")).collect::<Vec<_>>().join("\n")
    )]
    Stale { changes: Vec<String> },
    /// A file the operation writes (a plan for review) could not be written.
    #[error("{0}")]
    Write(String),
    /// The operation would do something unsafe or meaningless; the text says what to do.
    #[error("{0}")]
    Refused(String),
    /// The operation's own runtime could not start.
    #[error("cannot start the operation's runtime: {0}")]
    Runtime(std::io::Error),
}
