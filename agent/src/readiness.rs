//! Whether the agent sees what it should: ready only once the datapath is attached to every
//! current pod interface, so a probe never calls an agent ready while it is still blind.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// The agent's readiness, shared between its loop and whoever serves the probe.
#[derive(Debug)]
pub struct Readiness {
    /// When it last became ready (ns since the Unix epoch); 0 while it is not.
    since_ns: AtomicU64,
    /// Why it is not ready, for the probe's body and the logs.
    why_not: Mutex<String>,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            since_ns: AtomicU64::new(0),
            why_not: Mutex::new("the datapath is not attached yet".to_string()),
        }
    }
}

impl Readiness {
    /// Ready from `at_ns` on; returns whether this is a change.
    pub fn set_ready(&self, at_ns: u64) -> bool {
        self.since_ns
            .compare_exchange(0, at_ns.max(1), Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Not ready, because of `why`; returns whether this is a change.
    pub fn set_not_ready(&self, why: String) -> bool {
        *self.why_not.lock().unwrap_or_else(PoisonError::into_inner) = why;
        self.since_ns.swap(0, Ordering::AcqRel) != 0
    }

    /// Since when it is ready, or why it is not.
    pub fn check(&self) -> Result<u64, String> {
        match self.since_ns.load(Ordering::Acquire) {
            0 => Err(self
                .why_not
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()),
            since => Ok(since),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_says_since_when_or_why_not() {
        let r = Readiness::default();
        assert_eq!(r.check().unwrap_err(), "the datapath is not attached yet");
        assert!(r.set_ready(5));
        assert!(!r.set_ready(9), "already ready: the first time stays");
        assert_eq!(r.check(), Ok(5));
        assert!(r.set_not_ready("attaching to veth1 failed".into()));
        assert_eq!(r.check().unwrap_err(), "attaching to veth1 failed");
        assert!(!r.set_not_ready("still".into()));
    }
}
