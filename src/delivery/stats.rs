//! Engine counters (`Counters`, shared atomics) and the snapshot handed out
//! ([`EngineStats`]).

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the engine: queue gauges from the scheduler and cumulative
/// per-recipient event counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Recipients queued and not in flight: ready, waiting for a retry, or held by a
    /// suspended campaign (gauge).
    pub queued: u64,
    /// Recipients ready to send now (gauge).
    pub ready: u64,
    /// Recipients waiting for a retry (gauge).
    pub waiting_retry: u64,
    /// Recipients taken from the queues and not yet settled: staged on a site,
    /// being sent, or waiting for their results to be written (gauge).
    pub in_flight: u64,
    /// Messages with at least one unfinished recipient (gauge).
    pub messages: u64,
    /// SMTP sessions open or connecting now (gauge).
    pub sessions: u64,
    /// Recipients delivered (2xx at end of data), since start.
    pub delivered: u64,
    /// Deferrals (4xx, connection or DNS trouble): one per recipient per failed
    /// attempt, since start.
    pub deferred: u64,
    /// Recipients bounced (5xx, permanent routing failure), since start.
    pub bounced: u64,
    /// Recipients expired (message lifetime reached), since start.
    pub expired: u64,
    /// Recipients removed by operator purges, since start.
    pub purged: u64,
    /// Recipients queued again at once without an attempt (452 too many
    /// recipients, beyond a domain's recipients-per-transaction limit, or their
    /// transaction never reached a server that hung up), since start.
    pub requeued: u64,
    /// SMTP connections established, since start.
    pub connections: u64,
    /// Messages injected through the handle, since start.
    pub injected: u64,
    /// Messages recovered from the spool at start.
    pub recovered: u64,
}

/// The engine's live counters, updated by the results thread and the sessions.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    /// See [`EngineStats::delivered`].
    pub delivered: AtomicU64,
    /// See [`EngineStats::deferred`].
    pub deferred: AtomicU64,
    /// See [`EngineStats::bounced`].
    pub bounced: AtomicU64,
    /// See [`EngineStats::expired`].
    pub expired: AtomicU64,
    /// See [`EngineStats::purged`].
    pub purged: AtomicU64,
    /// See [`EngineStats::requeued`].
    pub requeued: AtomicU64,
    /// See [`EngineStats::connections`].
    pub connections: AtomicU64,
    /// See [`EngineStats::sessions`].
    pub sessions: AtomicU64,
    /// See [`EngineStats::injected`].
    pub injected: AtomicU64,
    /// See [`EngineStats::recovered`].
    pub recovered: AtomicU64,
    /// Work items handed to the results thread and not yet fully processed
    /// (settled, written, logged): part of "not idle".
    pub pending_results: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

/// Reads a counter.
pub(crate) fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Subtracts from a counter, never below zero.
pub(crate) fn drop_by(c: &AtomicU64, n: u64) {
    let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
        Some(v.saturating_sub(n))
    });
}
