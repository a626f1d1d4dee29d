//! [`Gcra`]: the generic cell rate algorithm, a rate limiter that keeps one number
//! (the theoretical arrival time of the next event) instead of a bucket of tokens
//! refilled by a timer. Pure: the caller passes "now" as monotonic nanoseconds, so
//! tests drive it with a fake clock and nothing sleeps.
//!
//! With emission interval `T` (the rate's spacing) and burst `B`, an event costing
//! `n` units at time `now` is allowed when `max(tat, now) + n*T - now <= max(B, n)*T`,
//! and then moves `tat` to `max(tat, now) + n*T`. So `B` events may pass at once
//! after an idle period, then one per `T`; an idle period never stores more than
//! `B` events (the `max(tat, now)`), and a single request larger than `B` passes
//! only when the limiter is fully rested, then pays for all its units.

use std::time::Duration;

use super::Rate;

/// A GCRA rate limiter. Called on hot paths: no I/O, no allocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gcra {
    /// The spacing between events (the rate's emission interval), in nanoseconds.
    interval: u64,
    /// Events that may pass back to back after a rest; at least 1.
    burst: u32,
    /// The theoretical arrival time: when the limiter will be back to "one event
    /// may pass now" if nothing else happens. Nanoseconds on the caller's clock.
    tat: u64,
}

impl Gcra {
    /// A limiter for `rate` allowing bursts of `burst` events (0 counts as 1).
    pub fn new(rate: Rate, burst: u32) -> Gcra {
        Gcra::with_interval(rate.interval_nanos(), burst)
    }

    /// A limiter with an explicit emission interval in nanoseconds.
    pub fn with_interval(interval: u64, burst: u32) -> Gcra {
        Gcra {
            interval: interval.max(1),
            burst: burst.max(1),
            tat: 0,
        }
    }

    /// The current emission interval, in nanoseconds.
    pub fn interval(&self) -> u64 {
        self.interval
    }

    /// The burst size.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// Changes the spacing (adaptive slow-down and restore) without forgetting the
    /// debt already taken: events admitted so far stay paid for at the old rate.
    pub fn set_interval(&mut self, interval: u64) {
        self.interval = interval.max(1);
    }

    /// Takes one event at `now`: `Ok` if it may pass, otherwise `Err(wait)`: how
    /// long until it would (nothing is taken then).
    pub fn try_acquire(&mut self, now: u64) -> Result<(), Duration> {
        self.try_acquire_n(now, 1)
    }

    /// Takes `n` events at once (e.g. the recipients of one transaction).
    pub fn try_acquire_n(&mut self, now: u64, n: u32) -> Result<(), Duration> {
        let new_tat = self.check(now, n)?;
        self.tat = new_tat;
        Ok(())
    }

    /// Like [`try_acquire_n`](Self::try_acquire_n) without taking anything: the
    /// would-be new `tat` or the wait. Lets a caller check several limiters before
    /// committing to all of them.
    pub fn check(&self, now: u64, n: u32) -> Result<u64, Duration> {
        let n = u64::from(n.max(1));
        let cost = self.interval.saturating_mul(n);
        let limit = self.interval.saturating_mul(n.max(u64::from(self.burst)));
        let new_tat = self.tat.max(now).saturating_add(cost);
        let ahead = new_tat - now;
        if ahead <= limit {
            Ok(new_tat)
        } else {
            Err(Duration::from_nanos(ahead - limit))
        }
    }

    /// Commits a `tat` returned by [`check`](Self::check).
    pub fn commit(&mut self, tat: u64) {
        self.tat = self.tat.max(tat);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn exact_spacing_without_burst() {
        let mut g = Gcra::new("10/s".parse().unwrap(), 1);
        let mut now = 5_000 * MS;
        assert_eq!(g.try_acquire(now), Ok(()));
        assert_eq!(g.try_acquire(now), Err(Duration::from_millis(100)));
        now += 60 * MS;
        assert_eq!(g.try_acquire(now), Err(Duration::from_millis(40)));
        now += 40 * MS;
        assert_eq!(g.try_acquire(now), Ok(()));
        // A steady caller that waits exactly as told gets exactly 10 per second.
        let start = now;
        let mut passed = 1; // the one just taken at `start`
        while now < start + 1_000 * MS {
            match g.try_acquire(now) {
                Ok(()) => passed += 1,
                Err(wait) => now += wait.as_nanos() as u64,
            }
        }
        assert_eq!(passed, 10);
    }

    #[test]
    fn burst_then_steady() {
        let mut g = Gcra::new("1/s".parse().unwrap(), 5);
        let now = 100_000 * MS;
        for _ in 0..5 {
            assert_eq!(g.try_acquire(now), Ok(()));
        }
        assert_eq!(g.try_acquire(now), Err(Duration::from_secs(1)));
        assert_eq!(g.try_acquire(now + 999 * MS), Err(Duration::from_millis(1)));
        assert_eq!(g.try_acquire(now + 1_000 * MS), Ok(()));
        assert!(g.try_acquire(now + 1_000 * MS).is_err());
    }

    #[test]
    fn long_idle_does_not_accumulate_beyond_burst() {
        let mut g = Gcra::new("100/s".parse().unwrap(), 3);
        assert_eq!(g.try_acquire(0), Ok(()));
        let later = 3_600_000 * MS; // an hour of silence
        for _ in 0..3 {
            assert_eq!(g.try_acquire(later), Ok(()));
        }
        assert_eq!(g.try_acquire(later), Err(Duration::from_millis(10)));
    }

    #[test]
    fn weighted_requests_and_oversized_requests() {
        let mut g = Gcra::new("10/s".parse().unwrap(), 4);
        let now = 1_000_000 * MS;
        assert_eq!(g.try_acquire_n(now, 3), Ok(()));
        // One unit of burst left: 2 more must wait one interval.
        assert_eq!(g.try_acquire_n(now, 2), Err(Duration::from_millis(100)));
        // Larger than the burst: passes only when fully rested, then pays in full.
        let rested = now + 10_000 * MS;
        assert_eq!(g.try_acquire_n(rested, 20), Ok(()));
        assert_eq!(
            g.try_acquire(rested + 1_000 * MS),
            Err(Duration::from_millis(700))
        );
        assert_eq!(g.try_acquire(rested + 1_700 * MS), Ok(()));
    }

    #[test]
    fn check_then_commit_is_acquire() {
        let mut a = Gcra::new("5/s".parse().unwrap(), 2);
        let mut b = a.clone();
        for t in [0, 1, 2, 300, 301, 900] {
            let now = t * MS;
            let r = a.try_acquire(now);
            let c = b.check(now, 1).map(|tat| b.commit(tat));
            assert_eq!(r, c);
            assert_eq!(a, b);
        }
    }

    #[test]
    fn slower_interval_applies_from_now() {
        let mut g = Gcra::new("10/s".parse().unwrap(), 1);
        assert_eq!(g.try_acquire(0), Ok(()));
        g.set_interval(200 * MS);
        // The next event was due at 100 ms under the old rate; from then on, 200 ms.
        assert_eq!(g.try_acquire(100 * MS), Ok(()));
        assert_eq!(g.try_acquire(200 * MS), Err(Duration::from_millis(100)));
        assert_eq!(g.try_acquire(300 * MS), Ok(()));
    }
}
