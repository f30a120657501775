//! Test and benchmark helpers for ferry, used only as a dev-dependency (the simulated world the
//! product ships is `ferry-world`).
//!
//! - [`random`]: random DAG plans for property tests and benchmarks;
//! - [`synthetic`]: spec text of any size shaped like data100, for planner benchmarks and
//!   property tests;
//! - [`baseline`]: the schedulers the apply engine is compared with (level by level, one at a
//!   time) and the critical path, for the makespan benchmark;
//! - [`webhook_receiver`]: a scripted webhook receiver on 127.0.0.1, for `ferry watch`'s
//!   delivery tests;
//! - `provider_harness` (feature `provider-harness`): the Azure providers called one step at a
//!   time against an in-process ARM simulator, for the provider crates' tests.

pub mod baseline;
#[cfg(feature = "provider-harness")]
pub mod provider_harness;
pub mod random;
pub mod synthetic;
pub mod webhook_receiver;
