//! Operator controls and housekeeping on the scheduler: suspend, resume and purge a
//! domain or a campaign, sweep expired messages, reap idle domains, report sizes.
//!
//! Everything works on the compact in-memory entries (16 bytes each) and the
//! message table; nothing loads a message or touches the spool. Purges return the
//! messages that became finished, for the caller to remove from the spool.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::domain::Entry;
use super::scheduler::{lock, Scheduler};
use crate::model::{CampaignId, MessageId};

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Queued recipients removed (in-flight ones settle normally).
    pub recipients: u64,
    /// Messages left with no unfinished recipient: remove them from the spool.
    pub finished: Vec<MessageId>,
}

/// Queue sizes, for metrics and the queue listing API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Domain queues held (including idle ones not reaped yet).
    pub domains: usize,
    /// Messages with unfinished recipients.
    pub messages: usize,
    /// Recipients ready to send.
    pub ready: usize,
    /// Recipients waiting for a retry.
    pub deferred: usize,
    /// Recipients held by a suspended campaign.
    pub held: usize,
    /// Recipients taken and not yet settled.
    pub in_flight: usize,
}

/// One domain's queue, for the queue listing API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DomainStats {
    /// Recipients ready to send.
    pub ready: usize,
    /// Recipients waiting for a retry.
    pub deferred: usize,
    /// Recipients held by a suspended campaign.
    pub held: usize,
    /// Recipients taken and not yet settled.
    pub in_flight: usize,
    /// Whether the operator suspended the domain.
    pub suspended: bool,
}

impl Scheduler {
    /// Stops handing out batches for `domain` (recipients keep arriving, retries
    /// keep coming due, expiry still applies).
    pub fn suspend_domain(&self, domain: &str) {
        self.domains.entry(Arc::from(domain)).or_default().suspended = true;
    }

    /// Undoes [`Scheduler::suspend_domain`]; returns whether it was suspended.
    pub fn resume_domain(&self, domain: &str) -> bool {
        let Some(mut q) = self.domains.get_mut(domain) else {
            return false;
        };
        let was = std::mem::replace(&mut q.suspended, false);
        let key = q.key().clone();
        self.list_if_ready(&key, &mut q);
        was
    }

    /// Removes every queued recipient of `domain`.
    pub fn purge_domain(&self, domain: &str) -> PurgeReport {
        let mut removed = Vec::new();
        if let Some(mut q) = self.domains.get_mut(domain) {
            q.remove_where(|_| true, &mut removed);
        }
        self.finish_purged(&removed)
    }

    /// Holds back every recipient of `campaign` from now on (in every domain) until
    /// [`Scheduler::resume_campaign`]. O(1): entries move aside as they are met.
    pub fn suspend_campaign(&self, campaign: &CampaignId) {
        let idx = self.intern(Some(campaign));
        lock(&self.campaigns).suspended.insert(idx);
        self.any_campaign_suspended.store(true, Ordering::Release);
    }

    /// Releases a suspended campaign's held recipients; returns how many.
    pub fn resume_campaign(&self, campaign: &CampaignId) -> usize {
        let idx = {
            let mut cs = lock(&self.campaigns);
            let Some(&idx) = cs.ids.get(campaign) else {
                return 0;
            };
            cs.suspended.remove(&idx);
            self.any_campaign_suspended
                .store(!cs.suspended.is_empty(), Ordering::Release);
            idx
        };
        let mut released = 0;
        for mut item in self.domains.iter_mut() {
            if item.held.is_empty() {
                continue;
            }
            let key = item.key().clone();
            let q = item.value_mut();
            let held = std::mem::take(&mut q.held);
            for e in held {
                if self.messages.get(e.msg).campaign == idx {
                    q.ready.push_back(e);
                    released += 1;
                } else {
                    q.held.push(e);
                }
            }
            self.list_if_ready(&key, q);
        }
        released
    }

    /// Removes every queued recipient of `campaign`, in every domain.
    pub fn purge_campaign(&self, campaign: &CampaignId) -> PurgeReport {
        let Some(idx) = lock(&self.campaigns).ids.get(campaign).copied() else {
            return PurgeReport::default();
        };
        let doomed = self.messages.of_campaign(idx);
        if doomed.is_empty() {
            return PurgeReport::default();
        }
        let mut removed = Vec::new();
        for mut item in self.domains.iter_mut() {
            item.value_mut()
                .remove_where(|e| doomed.contains(&e.msg), &mut removed);
        }
        self.finish_purged(&removed)
    }

    fn finish_purged(&self, removed: &[Entry]) -> PurgeReport {
        let mut report = PurgeReport {
            recipients: removed.len() as u64,
            finished: Vec::new(),
        };
        for e in removed {
            let (id, done) = self.messages.finish(e.msg, 1);
            if done {
                report.finished.push(id);
            }
        }
        report
    }

    /// Removes the queued (ready, deferred, held) recipients of every message that
    /// expired since the last sweep; they are reported by the next tick. One scan
    /// of the message table, and a scan of the queues only if some message expired.
    pub fn sweep_expired(&self) {
        let doomed = self.messages.take_newly_expired(self.now_secs());
        if doomed.is_empty() {
            return;
        }
        let mut removed = Vec::new();
        for mut item in self.domains.iter_mut() {
            removed.clear();
            item.value_mut()
                .remove_where(|e| doomed.contains(&e.msg), &mut removed);
            let key = item.key().clone();
            self.expire(&key, &removed);
        }
    }

    /// Drops domain queues idle (nothing queued or in flight, not suspended) for
    /// the configured TTL; returns how many.
    pub fn reap_idle(&self) -> usize {
        let now = self.now_secs();
        let ttl = self.config.idle_domain_ttl.as_secs().min(u32::MAX as u64) as u32;
        let before = self.domains.len();
        self.domains.retain(|_, q| {
            !(q.is_idle() && !q.suspended && now.saturating_sub(q.last_active) >= ttl)
        });
        let reaped = before.saturating_sub(self.domains.len());
        if reaped > 0 {
            self.domains.shrink_to_fit();
        }
        reaped
    }

    /// Sizes of the whole queue (a scan of the domain map).
    pub fn stats(&self) -> QueueStats {
        let mut s = QueueStats {
            domains: self.domains.len(),
            messages: self.messages.len(),
            ..Default::default()
        };
        for item in self.domains.iter() {
            s.ready += item.ready.len();
            s.deferred += item.deferred.len();
            s.held += item.held.len();
            s.in_flight += item.in_flight as usize;
        }
        s
    }

    /// One domain's queue, if it has one.
    pub fn domain_stats(&self, domain: &str) -> Option<DomainStats> {
        self.domains.get(domain).map(|q| DomainStats {
            ready: q.ready.len(),
            deferred: q.deferred.len(),
            held: q.held.len(),
            in_flight: q.in_flight as usize,
            suspended: q.suspended,
        })
    }
}
