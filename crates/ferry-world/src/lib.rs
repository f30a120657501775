//! The simulated world behind `ferry --world`: try ferry, run its demo and its end-to-end
//! tests with the real engine, state, journal and lock, and no cloud.
//!
//! - [`World`]: instances and their attributes, which read unhealthy, and the record of every
//!   provider call (tests assert ordering and concurrency on it);
//! - [`MemoryProvider`]: a provider for any kind that acts on a world: a create stores its
//!   inputs, a delete removes the instance, and each kind's own effect (a fence deallocates, a
//!   VM gets an address) comes from that kind's rules ([`ferry_core::KindRules::simulate`]),
//!   so that adding a kind touches its own crate only; [`Behaviour`] adds latency and faults;
//! - [`file`](mod@file): the world kept in a JSON file between commands, and providers that save it
//!   after every step.

pub mod file;
mod memory;

pub use file::WorldFileError;
pub use memory::{
    Behaviour, Call, CallOutcome, MemoryProvider, WORLD_FORMAT_VERSION, World, WorldFormatError,
    memory_providers,
};
