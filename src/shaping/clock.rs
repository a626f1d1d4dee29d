//! Monotonic time as the shapers see it, behind a trait so tests drive it by hand.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Monotonic nanoseconds since an arbitrary start. Called on hot paths: no I/O,
/// no allocation.
pub trait Clock: Send + Sync + Debug {
    /// Nanoseconds since this clock's start.
    fn now_nanos(&self) -> u64;
}

/// tokio's clock: real time in production, and paused, auto-advancing time in
/// `#[tokio::test(start_paused = true)]` tests, so waits computed from it match
/// `tokio::time::sleep`.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    /// When the clock was made: time zero.
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock starting now.
    pub fn new() -> TokioClock {
        TokioClock {
            start: tokio::time::Instant::now(),
        }
    }
}

impl Default for TokioClock {
    fn default() -> Self {
        TokioClock::new()
    }
}

impl Clock for TokioClock {
    fn now_nanos(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock {
    /// Nanoseconds since start.
    now: AtomicU64,
}

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> ManualClock {
        ManualClock::default()
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
            Ordering::SeqCst,
        );
    }
}

impl Clock for ManualClock {
    fn now_nanos(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}
