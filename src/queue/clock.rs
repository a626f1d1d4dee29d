//! Time as the scheduler sees it, behind a trait so tests drive it by hand.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::model::Timestamp;

/// The source of "now" for the scheduler. Called on hot paths: no I/O, no allocation.
pub trait Clock: Send + Sync {
    /// The current wall-clock time.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that only moves when told to: tests of retries and expiry run instantly.
#[derive(Debug, Default)]
pub struct ManualClock {
    /// Milliseconds since the epoch.
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start`.
    pub fn new(start: Timestamp) -> ManualClock {
        ManualClock {
            now: AtomicU64::new(start.as_millis()),
        }
    }

    /// Sets the time.
    pub fn set(&self, t: Timestamp) {
        self.now.store(t.as_millis(), Ordering::SeqCst);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.now.load(Ordering::SeqCst))
    }
}
