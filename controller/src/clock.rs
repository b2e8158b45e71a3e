//! The controller's wall clock, ns since the Unix epoch: capture times and the look-back of
//! queries.
//!
//! Its own module because the API and the capture store both read it, and neither should import
//! the other for it.

use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
