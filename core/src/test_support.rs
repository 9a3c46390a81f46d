//! Helpers for the core's unit tests.

use std::time::Instant;

/// Some instant to measure from. Unit tests only compare instants derived
/// from this one, so reading the clock here cannot make a test depend on
/// real time.
#[allow(clippy::disallowed_methods)]
pub(crate) fn epoch() -> Instant {
    Instant::now()
}
