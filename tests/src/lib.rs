//! End-to-end tests that cross crates live in this package's `tests/` folder.
