//! Counters: process totals as relaxed atomics, fed from per-connection local counts
//! that are flushed when the stats clock ticks (every 100 ms), at connection end and
//! at shutdown, so the hot path touches no shared cache line per message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reply codes are 200..=599.
const CODES: usize = 400;

/// Process-wide totals.
pub struct Stats {
    /// Messages accepted (2xx at end of data).
    pub messages: AtomicU64,
    /// Accepted recipients of accepted messages.
    pub recipients: AtomicU64,
    /// Content bytes of accepted messages.
    pub bytes: AtomicU64,
    /// Connections accepted since start.
    pub connections: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
    /// Replies sent, by code (index: code - 200).
    replies: Box<[AtomicU64]>,
    /// Bumped by the stats clock; a connection flushes when it sees it change.
    epoch: AtomicU64,
}

impl Default for Stats {
    fn default() -> Self {
        Stats {
            messages: AtomicU64::new(0),
            recipients: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            open: AtomicU64::new(0),
            replies: (0..CODES).map(|_| AtomicU64::new(0)).collect(),
            epoch: AtomicU64::new(0),
        }
    }
}

/// The final summary printed on stdout.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub messages: u64,
    pub recipients: u64,
    pub bytes: u64,
    pub connections: u64,
    pub elapsed_s: f64,
    /// Reply code (as a string, e.g. `"250"`) to count.
    pub replies: BTreeMap<String, u64>,
}

impl Stats {
    pub fn summary(&self, elapsed: Duration) -> Summary {
        let replies = self
            .replies
            .iter()
            .enumerate()
            .map(|(i, n)| (i + 200, n.load(Relaxed)))
            .filter(|&(_, n)| n > 0)
            .map(|(code, n)| (code.to_string(), n))
            .collect();
        Summary {
            messages: self.messages.load(Relaxed),
            recipients: self.recipients.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            connections: self.connections.load(Relaxed),
            elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            replies,
        }
    }

    fn epoch(&self) -> u64 {
        self.epoch.load(Relaxed)
    }
}

/// One connection's counts since its last flush.
#[derive(Debug, Default)]
pub struct Local {
    pub messages: u64,
    pub recipients: u64,
    pub bytes: u64,
    /// (code, count); a handful of distinct codes per connection, so a linear scan.
    replies: Vec<(u16, u64)>,
    /// The stats epoch at the last flush.
    epoch: u64,
}

impl Local {
    /// Counts one reply with `code`.
    #[inline]
    pub fn reply(&mut self, code: u16) {
        for e in self.replies.iter_mut() {
            if e.0 == code {
                e.1 += 1;
                return;
            }
        }
        self.replies.push((code, 1));
    }

    /// Adds everything to the totals and starts over.
    pub fn flush(&mut self, stats: &Stats) {
        if self.messages > 0 {
            stats.messages.fetch_add(self.messages, Relaxed);
            stats.recipients.fetch_add(self.recipients, Relaxed);
            stats.bytes.fetch_add(self.bytes, Relaxed);
            (self.messages, self.recipients, self.bytes) = (0, 0, 0);
        }
        for e in self.replies.iter_mut().filter(|e| e.1 > 0) {
            if let Some(slot) = (e.0 as usize)
                .checked_sub(200)
                .and_then(|i| stats.replies.get(i))
            {
                slot.fetch_add(e.1, Relaxed);
            }
            e.1 = 0;
        }
        self.epoch = stats.epoch();
    }

    /// Flushes if the stats clock ticked since the last flush (one relaxed load).
    #[inline]
    pub fn maybe_flush(&mut self, stats: &Stats) {
        if stats.epoch() != self.epoch {
            self.flush(stats);
        }
    }
}

/// Ticks the epoch every 100 ms and, unless `quiet`, prints rates to stderr once a
/// second. Runs until the task is dropped.
pub async fn clock(stats: Arc<Stats>, quiet: bool) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = (Instant::now(), 0u64, 0u64, 0u64);
    let mut n = 0u64;
    loop {
        tick.tick().await;
        stats.epoch.fetch_add(1, Relaxed);
        n += 1;
        if quiet || n % 10 != 0 {
            continue;
        }
        let now = Instant::now();
        let (m, r, b) = (
            stats.messages.load(Relaxed),
            stats.recipients.load(Relaxed),
            stats.bytes.load(Relaxed),
        );
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-9);
        eprintln!(
            "sink: {:.0} msgs/s, {:.0} rcpts/s, {:.1} MB/s, {} conns open, {} msgs total",
            (m - last.1) as f64 / dt,
            (r - last.2) as f64 / dt,
            (b - last.3) as f64 / dt / 1e6,
            stats.open.load(Relaxed),
            m
        );
        last = (now, m, r, b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_counts_flush_into_totals() {
        let stats = Stats::default();
        let mut local = Local::default();
        local.reply(250);
        local.reply(250);
        local.reply(452);
        local.messages = 2;
        local.recipients = 3;
        local.bytes = 100;
        local.flush(&stats);
        local.reply(250);
        local.flush(&stats);
        let s = stats.summary(Duration::from_millis(1500));
        assert_eq!((s.messages, s.recipients, s.bytes), (2, 3, 100));
        assert_eq!(s.replies["250"], 3);
        assert_eq!(s.replies["452"], 1);
        assert_eq!(s.replies.len(), 2);
        assert_eq!(s.elapsed_s, 1.5);
    }
}
