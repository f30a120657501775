//! Test and benchmark helpers for ferry.
