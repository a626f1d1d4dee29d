//! In-memory progress of campaign streams, so `GET /api/v1/campaigns/{id}` shows a
//! campaign while it is still arriving (lines read, accepted, rejected, messages
//! stored). Kept per stored campaign id; several streams into one campaign add up.
//! Only the most recent [`MAX_TRACKED`] campaigns are kept: finished ones are
//! forgotten oldest first (the engine's campaign status remains).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

/// Campaigns tracked at most; finished ones beyond it are forgotten.
pub const MAX_TRACKED: usize = 1024;

/// One campaign's ingest counters.
#[derive(Debug)]
pub struct Progress {
    /// Lines read, the template line included.
    pub lines: AtomicU64,
    /// Recipients durably stored.
    pub accepted: AtomicU64,
    /// Recipients refused (bad line, bad address, spool kept busy).
    pub rejected: AtomicU64,
    /// Messages stored.
    pub messages: AtomicU64,
    /// Streams into this campaign still reading.
    active: AtomicU64,
    /// When the last stream finished (for forgetting the oldest).
    finished: Mutex<Option<Instant>>,
}

/// A snapshot, as `GET /api/v1/campaigns/{id}` shows it under `ingest`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ProgressView {
    /// Lines read, the template line included.
    pub lines: u64,
    /// Recipients durably stored.
    pub accepted: u64,
    /// Recipients refused.
    pub rejected: u64,
    /// Messages stored.
    pub messages: u64,
    /// Whether no stream into the campaign is still running.
    pub done: bool,
}

impl Progress {
    fn new() -> Progress {
        Progress {
            lines: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            active: AtomicU64::new(0),
            finished: Mutex::new(None),
        }
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The current counts.
    pub fn view(&self) -> ProgressView {
        ProgressView {
            lines: self.lines.load(Ordering::Relaxed),
            accepted: self.accepted.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            messages: self.messages.load(Ordering::Relaxed),
            done: self.active.load(Ordering::Acquire) == 0,
        }
    }
}

/// The tracked campaigns.
#[derive(Debug, Default)]
pub struct ProgressTable {
    /// Stored campaign id -> its counters. A plain mutex: touched once per stream
    /// start/end and per status request, never per line.
    map: Mutex<std::collections::HashMap<String, Arc<Progress>>>,
}

/// Marks a stream finished when dropped (also when the request is cancelled).
#[derive(Debug)]
pub struct StreamGuard {
    /// The campaign's counters.
    pub progress: Arc<Progress>,
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if let Ok(mut f) = self.progress.finished.lock() {
            *f = Some(Instant::now());
        }
        self.progress.active.fetch_sub(1, Ordering::AcqRel);
    }
}

impl ProgressTable {
    /// Starts a stream into `campaign` (stored id).
    pub fn begin(&self, campaign: &str) -> StreamGuard {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_TRACKED && !map.contains_key(campaign) {
            forget_oldest_finished(&mut map);
        }
        let progress = map
            .entry(campaign.to_string())
            .or_insert_with(|| Arc::new(Progress::new()))
            .clone();
        progress.active.fetch_add(1, Ordering::AcqRel);
        StreamGuard { progress }
    }

    /// The progress of `campaign` (stored id), if a stream ran recently.
    pub fn get(&self, campaign: &str) -> Option<ProgressView> {
        let map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        map.get(campaign).map(|p| p.view())
    }
}

fn forget_oldest_finished(map: &mut std::collections::HashMap<String, Arc<Progress>>) {
    let oldest = map
        .iter()
        .filter(|(_, p)| p.active.load(Ordering::Acquire) == 0)
        .filter_map(|(k, p)| {
            let f = p.finished.lock().ok().and_then(|f| *f)?;
            Some((f, k.clone()))
        })
        .min();
    if let Some((_, key)) = oldest {
        map.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_add_up_and_finish() {
        let t = ProgressTable::default();
        assert_eq!(t.get("a:x"), None);
        let g1 = t.begin("a:x");
        let g2 = t.begin("a:x");
        Progress::add(&g1.progress.accepted, 3);
        Progress::add(&g2.progress.accepted, 4);
        let v = t.get("a:x").unwrap();
        assert_eq!((v.accepted, v.done), (7, false));
        drop(g1);
        assert!(!t.get("a:x").unwrap().done);
        drop(g2);
        assert!(t.get("a:x").unwrap().done);
    }

    #[test]
    fn forgets_finished_campaigns_beyond_the_cap() {
        let t = ProgressTable::default();
        let running = t.begin("running");
        for i in 0..MAX_TRACKED + 10 {
            drop(t.begin(&format!("c{i}")));
        }
        assert!(t.map.lock().unwrap().len() <= MAX_TRACKED);
        assert!(
            t.get("running").is_some(),
            "a running stream is never forgotten"
        );
        assert!(t.get(&format!("c{}", MAX_TRACKED + 9)).is_some());
        drop(running);
    }
}
