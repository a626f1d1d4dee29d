//! The retry policy: when a temporarily failed recipient is tried again. Pure: the
//! caller passes the attempt count and a jitter source, so the policy is a table.

use std::time::Duration;

use thiserror::Error;

/// The delay before each retry: the n-th entry after the n-th failure, the last
/// entry repeating for ever, each spread by a random jitter so that recipients
/// deferred together (a whole domain's queue after an outage) do not all come back
/// in the same second.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Delays after the 1st, 2nd, ... failure; never empty.
    schedule: Vec<Duration>,
    /// Each delay is multiplied by a factor drawn uniformly from
    /// `[1 - jitter, 1 + jitter]`; in `[0, 1)`.
    jitter: f64,
}

/// Why a retry schedule was refused.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum RetryConfigError {
    #[error("the retry schedule needs at least one delay")]
    EmptySchedule,
    #[error("retry delays must be positive")]
    ZeroDelay,
    #[error("retry jitter must be in [0, 1), got {0}")]
    BadJitter(f64),
}

impl Default for RetryPolicy {
    /// 1m, 5m, 15m, 30m, 1h, then every 2h, with 10% jitter.
    fn default() -> Self {
        let m = |n: u64| Duration::from_secs(60 * n);
        RetryPolicy {
            schedule: vec![m(1), m(5), m(15), m(30), m(60), m(120)],
            jitter: 0.1,
        }
    }
}

impl RetryPolicy {
    /// A policy from a schedule (the last delay repeats) and a jitter fraction.
    pub fn new(schedule: Vec<Duration>, jitter: f64) -> Result<RetryPolicy, RetryConfigError> {
        if schedule.is_empty() {
            return Err(RetryConfigError::EmptySchedule);
        }
        if schedule.iter().any(Duration::is_zero) {
            return Err(RetryConfigError::ZeroDelay);
        }
        if !(0.0..1.0).contains(&jitter) {
            return Err(RetryConfigError::BadJitter(jitter));
        }
        Ok(RetryPolicy { schedule, jitter })
    }

    /// The delay after `failures` failed attempts (1 for the first), before jitter.
    pub fn base_delay(&self, failures: u16) -> Duration {
        let i = (failures.max(1) as usize - 1).min(self.schedule.len() - 1);
        self.schedule[i]
    }

    /// The delay after `failures` failed attempts, with jitter from `rng`.
    pub fn delay(&self, failures: u16, rng: &mut SplitMix64) -> Duration {
        let base = self.base_delay(failures);
        if self.jitter == 0.0 {
            return base;
        }
        let factor = 1.0 + self.jitter * (2.0 * rng.next_f64() - 1.0);
        base.mul_f64(factor).max(Duration::from_secs(1))
    }
}

/// A small, fast, seedable pseudo-random generator (SplitMix64): jitter needs spread,
/// not cryptographic quality, and tests need reproducible draws.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform draw from `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60;

    #[test]
    fn default_schedule_table() {
        let p = RetryPolicy::default();
        let table: [(u16, u64); 10] = [
            (0, MIN), // never failed: treated as the first failure
            (1, MIN),
            (2, 5 * MIN),
            (3, 15 * MIN),
            (4, 30 * MIN),
            (5, 60 * MIN),
            (6, 120 * MIN),
            (7, 120 * MIN),
            (100, 120 * MIN),
            (u16::MAX, 120 * MIN),
        ];
        for (failures, secs) in table {
            assert_eq!(
                p.base_delay(failures),
                Duration::from_secs(secs),
                "after {failures} failures"
            );
        }
    }

    #[test]
    fn jitter_stays_in_bounds_and_spreads() {
        let p = RetryPolicy::default();
        let mut rng = SplitMix64::new(7);
        let draws: Vec<Duration> = (0..10_000).map(|_| p.delay(5, &mut rng)).collect();
        let (lo, hi) = (Duration::from_secs(54 * MIN), Duration::from_secs(66 * MIN));
        assert!(draws.iter().all(|d| *d >= lo && *d <= hi));
        let distinct: std::collections::HashSet<_> = draws.iter().map(|d| d.as_secs()).collect();
        assert!(
            distinct.len() > 500,
            "jitter should spread retries: {}",
            distinct.len()
        );
        // Same seed, same draws.
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        assert_eq!(p.delay(3, &mut a), p.delay(3, &mut b));
    }

    #[test]
    fn custom_schedule_and_validation() {
        let p =
            RetryPolicy::new(vec![Duration::from_secs(10), Duration::from_secs(20)], 0.0).unwrap();
        let mut rng = SplitMix64::new(1);
        let got: Vec<u64> = (1..=4).map(|n| p.delay(n, &mut rng).as_secs()).collect();
        assert_eq!(got, [10, 20, 20, 20]);
        assert_eq!(
            RetryPolicy::new(vec![], 0.1),
            Err(RetryConfigError::EmptySchedule)
        );
        assert_eq!(
            RetryPolicy::new(vec![Duration::ZERO], 0.1),
            Err(RetryConfigError::ZeroDelay)
        );
        assert_eq!(
            RetryPolicy::new(vec![Duration::from_secs(1)], 1.0),
            Err(RetryConfigError::BadJitter(1.0))
        );
    }
}
