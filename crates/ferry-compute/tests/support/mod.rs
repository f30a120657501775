//! The harness shared by the Azure providers' tests: one file, kept with the simulator.

#![allow(dead_code, unused_imports)]

#[path = "../../../ferry-sim/testing/provider_harness.rs"]
mod provider_harness;

pub use provider_harness::*;
