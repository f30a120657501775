//! Test and benchmark helpers for ferry: never used by the product itself.
//!
//! - [`World`] and [`MemoryProvider`]: an in-memory world and a provider for any kind that
//!   acts on it, with configurable latency and faults, recording every call so that tests can
//!   assert ordering and concurrency on the instants the (paused) tokio clock gave them;
//! - [`random`]: random DAG plans for property tests and benchmarks;
//! - [`baseline`]: the schedulers the apply engine is compared with (level by level, one at a
//!   time) and the critical path, for the makespan benchmark.

pub mod baseline;
mod memory;
pub mod random;

pub use memory::{Behaviour, Call, CallOutcome, MemoryProvider, World, memory_providers};
