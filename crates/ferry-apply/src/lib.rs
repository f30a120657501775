//! The apply engine.
