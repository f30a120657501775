//! Test and benchmark helpers for ferry. The product uses one piece of it: the simulated
//! world behind `ferry --world`, for trying ferry without a cloud.
//!
//! - [`World`] and [`MemoryProvider`]: an in-memory world and a provider for any kind that
//!   acts on it, with configurable latency and faults, recording every call so that tests can
//!   assert ordering and concurrency on the instants the (paused) tokio clock gave them;
//! - [`random`]: random DAG plans for property tests and benchmarks;
//! - [`synthetic`]: spec text of any size shaped like data100, for planner benchmarks and
//!   property tests;
//! - [`baseline`]: the schedulers the apply engine is compared with (level by level, one at a
//!   time) and the critical path, for the makespan benchmark.

pub mod baseline;
mod memory;
pub mod random;
pub mod synthetic;

pub use memory::{Behaviour, Call, CallOutcome, MemoryProvider, World, memory_providers};
