//! Wall-clock time as persisted: milliseconds since the Unix epoch.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC). Persisted in records and compared across
/// restarts, so it is wall-clock time, not a monotonic instant; a `u64` keeps records
/// and arithmetic cheap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The epoch itself: "due at once" in every comparison.
    pub const ZERO: Timestamp = Timestamp(0);

    /// The current system time (clamped to the epoch if the clock is before it).
    pub fn now() -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp(d.as_millis() as u64)
    }

    /// From whole seconds since the epoch.
    pub const fn from_secs(secs: u64) -> Timestamp {
        Timestamp(secs.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down.
    pub const fn as_secs(self) -> u64 {
        self.0 / 1000
    }

    /// Whole seconds since the epoch, rounded up: a due time in seconds never comes
    /// before the millisecond it stands for.
    pub const fn as_secs_ceil(self) -> u64 {
        self.0.div_ceil(1000)
    }

    /// `self + d`, saturating instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> Timestamp {
        Timestamp(
            self.0
                .saturating_add(d.as_millis().min(u64::MAX as u128) as u64),
        )
    }

    /// How long after `earlier` this is; zero if it is not later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_and_rounds() {
        let t = Timestamp(1_500);
        assert_eq!(t.as_secs(), 1);
        assert_eq!(t.as_secs_ceil(), 2);
        assert_eq!(Timestamp(2_000).as_secs_ceil(), 2);
        assert_eq!(t.saturating_add(Duration::from_secs(1)), Timestamp(2_500));
        assert_eq!(
            Timestamp(u64::MAX - 1).saturating_add(Duration::MAX),
            Timestamp(u64::MAX)
        );
        assert_eq!(t.saturating_since(Timestamp(2_000)), Duration::ZERO);
        assert_eq!(
            Timestamp(2_000).saturating_since(t),
            Duration::from_millis(500)
        );
        assert!(Timestamp::now() > Timestamp::from_secs(1_600_000_000));
    }
}
