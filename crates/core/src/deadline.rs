//! Deadlines as the front ends compute them from their protocol's timeout fields.

use std::time::{Duration, Instant};

/// `timeout` from now, or `None` when it is too far away to represent (no deadline then).
pub fn after(timeout: Duration) -> Option<Instant> {
    Instant::now().checked_add(timeout)
}

/// The earlier of two optional deadlines.
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}
