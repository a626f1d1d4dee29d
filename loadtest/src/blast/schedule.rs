//! The open-loop schedule: which message goes next and when it is due.
//!
//! Message `i` is due at `start + i / rate`, whatever the server is doing. A
//! connection claims the next index only when it has room to send it, then sends it
//! at its due time; latency is measured from the due time, so a stalled server shows
//! up as latency rather than as fewer samples (coordinated-omission correction).
//! Without a rate every claim is due at once and latency runs from the write.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// One message handed to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// The message's number in the run (0-based); also picks its recipients.
    pub index: u64,
    /// When it should be written; `None` without `--rate` (as soon as possible).
    pub due: Option<Instant>,
}

/// The run's shared schedule. Claims are one relaxed `fetch_add`: no lock on the
/// hot path.
#[derive(Debug)]
pub struct Schedule {
    /// Set by the first claim, so connection set-up is not charged to message 0.
    start: OnceLock<Instant>,
    /// Messages per second; `None` = unlimited.
    rate: Option<f64>,
    /// `--messages`: no index at or past this is handed out.
    limit: Option<u64>,
    /// `--duration`: nothing due (or, unlimited, claimed) after `start + duration`.
    duration: Option<Duration>,
    /// With `duration`: how long after its end to keep sending what was due
    /// (backlog) and waiting for replies; nothing is handed out after that.
    grace: Duration,
    /// The next index to hand out (may run past `limit`; claims check it).
    next: AtomicU64,
    /// Claims that succeeded.
    handed_out: AtomicU64,
    /// Set by Ctrl-C or a fatal error: no more claims.
    stopped: AtomicBool,
}

/// When message `index` is due, relative to the start, at `rate` per second.
pub fn due_offset(index: u64, rate: f64) -> Duration {
    Duration::from_secs_f64(index as f64 / rate)
}

impl Schedule {
    pub fn new(rate: Option<f64>, limit: Option<u64>, duration: Option<Duration>) -> Self {
        Schedule {
            start: OnceLock::new(),
            rate,
            limit,
            duration,
            grace: Duration::ZERO,
            next: AtomicU64::new(0),
            handed_out: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
        }
    }

    /// Sets the grace period after `--duration` (see [`Schedule::deadline`]).
    pub fn with_grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// With `--duration`: the hard end of the run, `start + duration + grace`.
    /// Messages still unsent then are counted as unsent, replies still owed as lost.
    pub fn deadline(&self) -> Option<Instant> {
        Some(self.started()? + self.duration? + self.grace)
    }

    /// Claims that succeeded so far.
    pub fn handed_out(&self) -> u64 {
        self.handed_out.load(Ordering::Relaxed)
    }

    /// Messages the run planned but never handed out because it was stopped or
    /// hit its deadline (a server too slow for `--rate`).
    pub fn never_sent(&self) -> u64 {
        let cut_short = self.stopped.load(Ordering::Relaxed)
            || self.deadline().is_some_and(|d| Instant::now() >= d);
        match self.planned() {
            Some(planned) if cut_short => planned.saturating_sub(self.handed_out()),
            _ => 0,
        }
    }

    /// The run's start (fixed by the first call).
    pub fn start(&self) -> Instant {
        *self.start.get_or_init(Instant::now)
    }

    /// The start, if the run has begun.
    pub fn started(&self) -> Option<Instant> {
        self.start.get().copied()
    }

    /// Hands out the next message, or `None` once the run has all it will get.
    pub fn claim(&self) -> Option<Claim> {
        if self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let start = self.start();
        if self
            .duration
            .is_some_and(|d| start.elapsed() >= d + self.grace)
        {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed);
        if self.limit.is_some_and(|l| index >= l) {
            return None;
        }
        let claim = match self.rate {
            Some(rate) => {
                let offset = due_offset(index, rate);
                if self.duration.is_some_and(|d| offset >= d) {
                    return None;
                }
                Claim {
                    index,
                    due: Some(start + offset),
                }
            }
            None => {
                if self.duration.is_some_and(|d| start.elapsed() >= d) {
                    return None;
                }
                Claim { index, due: None }
            }
        };
        self.handed_out.fetch_add(1, Ordering::Relaxed);
        Some(claim)
    }

    /// Whether no further claim can succeed (used before reconnecting).
    pub fn is_done(&self) -> bool {
        if self.stopped.load(Ordering::Relaxed) {
            return true;
        }
        let next = self.next.load(Ordering::Relaxed);
        if self.limit.is_some_and(|l| next >= l) {
            return true;
        }
        let Some(d) = self.duration else { return false };
        if self.deadline().is_some_and(|end| Instant::now() >= end) {
            return true;
        }
        match (self.rate, self.started()) {
            (Some(rate), _) => due_offset(next, rate) >= d,
            (None, Some(start)) => start.elapsed() >= d,
            (None, None) => false,
        }
    }

    /// Stops handing out messages (Ctrl-C, fatal error).
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    /// How many messages the run plans to send, if that is known in advance.
    pub fn planned(&self) -> Option<u64> {
        let by_time = match (self.rate, self.duration) {
            (Some(rate), Some(d)) => Some((d.as_secs_f64() * rate).ceil() as u64),
            _ => None,
        };
        match (self.limit, by_time) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_offsets_follow_the_rate() {
        for (index, rate, micros) in [
            (0, 1000.0, 0),
            (1, 1000.0, 1_000),
            (1500, 1000.0, 1_500_000),
            (3, 3.0, 1_000_000),
            (7, 0.5, 14_000_000),
        ] {
            assert_eq!(
                due_offset(index, rate).as_micros(),
                micros,
                "index {index} rate {rate}"
            );
        }
    }

    #[test]
    fn message_limit_stops_claims() {
        let s = Schedule::new(None, Some(3), None);
        let got: Vec<u64> = std::iter::from_fn(|| s.claim()).map(|c| c.index).collect();
        assert_eq!(got, [0, 1, 2]);
        assert!(s.is_done());
        assert!(s.claim().is_none());
    }

    #[test]
    fn duration_bounds_due_times_with_a_rate() {
        // 10/s for 1 s: indices 0..=9 are due before the end, 10 is not.
        let s = Schedule::new(Some(10.0), None, Some(Duration::from_secs(1)));
        let claims: Vec<Claim> = std::iter::from_fn(|| s.claim()).collect();
        assert_eq!(claims.len(), 10);
        let start = s.started().unwrap();
        assert_eq!(claims[4].due, Some(start + Duration::from_millis(400)));
        assert!(s.is_done());
        assert_eq!(s.planned(), Some(10));
    }

    #[test]
    fn a_backlog_is_cut_at_the_deadline() {
        let s = Schedule::new(Some(1000.0), None, Some(Duration::from_millis(20)))
            .with_grace(Duration::from_millis(30));
        assert!(s.claim().is_some());
        let deadline = s.deadline().unwrap();
        assert_eq!(deadline, s.started().unwrap() + Duration::from_millis(50));
        assert_eq!(s.never_sent(), 0, "not cut short yet");
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            s.claim().is_none(),
            "messages 1..20 were due, but the deadline passed"
        );
        assert!(s.is_done());
        assert_eq!(s.never_sent(), 19);
    }

    #[test]
    fn stop_ends_claims() {
        let s = Schedule::new(None, None, Some(Duration::from_secs(60)));
        assert!(s.claim().is_some());
        assert!(!s.is_done());
        s.stop();
        assert!(s.claim().is_none());
        assert!(s.is_done());
    }

    #[test]
    fn planned_takes_the_smaller_bound() {
        assert_eq!(
            Schedule::new(Some(100.0), Some(50), Some(Duration::from_secs(2))).planned(),
            Some(50)
        );
        assert_eq!(
            Schedule::new(None, Some(50), Some(Duration::from_secs(2))).planned(),
            Some(50)
        );
        assert_eq!(
            Schedule::new(None, None, Some(Duration::from_secs(2))).planned(),
            None
        );
    }
}
