//! Shared vocabulary of ferry: every other crate, and every provider, speaks in these types.
//!
//! This crate depends on no provider, and does no I/O but one: [`fs::write_atomically`], the
//! one helper every crate writes a file with. Providers depend on it and on nothing
//! else of ferry's, which keeps them swappable and keeps the planner pure.

pub mod address;
pub mod attributes;
pub mod fields;
pub mod fs;
pub mod limits;
pub mod naming;
pub mod observation;
pub mod plan;
pub mod provider;
pub mod registry;
pub mod resource;
pub mod retention;
pub mod secret;
pub mod time;
pub mod value;

pub use address::{AddressError, Generation, InstanceAddress, Kind, ResourceAddress, UnknownKind};
pub use observation::{Health, Observation, Snapshot};
pub use plan::{
    Action, AttributeChange, Blocker, ChangeRef, Changes, ChangesIter, DataLoss, Failover, Plan,
    PlanSummary, PlanWarning, Readiness, Step, StepId, UnknownReading,
};
pub use provider::{
    ApplyContext, ChangeClass, FailoverContext, FieldError, FieldSchema, FieldType, KindRules,
    OnChange, OutputSchema, Provider, ReadContext, SimulatedStep, StepDraft, StepError,
    StepOutcome, UpdateContext, UpdateRefinement,
};
pub use registry::{Providers, RuleBook};
pub use resource::{Ensure, ResourceSpec};
pub use retention::{KeptGeneration, KeptInstance, KeptUntil, RetireOld, StandbyGeneration};
pub use secret::Secret;
pub use value::Expression;
pub use value::{Attributes, Value};
