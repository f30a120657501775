//! ferry's apply engine: carries out a [`Plan`](ferry_core::Plan) through the providers.
//!
//! A step starts as soon as every step in its `after` list has succeeded (event-driven, not in
//! level-by-level waves), within a global parallelism limit and each provider's own
//! [`concurrency_limit`](ferry_core::Provider::concurrency_limit) or the limit the caller sets
//! for its kind ([`ApplyConfig::kind_parallelism`]). Transient errors are retried
//! with backoff, each attempt has a time limit, a failure skips only the steps that depend on
//! it, and cancellation comes in two strengths (stop starting; abort). The journal is written
//! before each step starts and after it ends, and the state is saved after each successful
//! step, so that an interrupted apply resumes where it stopped.
//!
//! The entry point is [`apply`]; what its [`Event`]s look like on a terminal is the CLI's
//! business, and `ferry_ops` wraps it in the lock and the plan's guards.

mod cancel;
mod config;
mod engine;
mod event;
mod report;
mod store;

pub use cancel::{ApplyControl, CancelLevel};
pub use config::{ApplyConfig, RetryPolicy};
pub use engine::{ApplyError, apply};
pub use event::{Event, EventKind};
pub use report::{ApplyReport, Counts, StepReport, StepStatus};
pub use store::{HeldLock, Store, StoreError};
