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
use crate::model::{CampaignId, MessageId, Timestamp};

/// What a purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Queued recipients removed (in-flight ones settle normally).
    pub recipients: u64,
    /// Messages left with no unfinished recipient: remove them from the spool.
    pub finished: Vec<MessageId>,
    /// Each removed recipient: persist it as purged, count and log it.
    pub purged: Vec<PurgedRecipient>,
}

/// One recipient a purge removed from the queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurgedRecipient {
    /// Its domain.
    pub domain: Arc<str>,
    /// Its message.
    pub id: MessageId,
    /// Its index in the envelope.
    pub rcpt: u32,
    /// Failed attempts it had.
    pub attempts: u16,
    /// It was the message's last unfinished recipient: remove the message.
    pub finished: bool,
}

/// Where a queued recipient of a message is, for the message status API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueuedAs {
    /// Ready to send.
    Ready,
    /// Waiting for a retry due at this time.
    Deferred(Timestamp),
    /// Held back by a suspended campaign.
    Held,
}

/// What the scheduler knows of one message (for the message status API).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageQueue {
    /// Recipients not final yet (queued or in flight).
    pub remaining: u32,
    /// Queued recipients (envelope index, where); the other unfinished ones are
    /// in flight.
    pub queued: Vec<(u32, QueuedAs)>,
}

/// What the scheduler knows of one campaign (for the campaign status API).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CampaignQueue {
    /// Recipients ready or held.
    pub queued: u64,
    /// Recipients waiting for a retry.
    pub deferred: u64,
    /// Recipients taken and not yet settled.
    pub in_flight: u64,
    /// Whether the campaign is suspended.
    pub suspended: bool,
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
    /// Of `ready`, those in suspended domains (not sendable until resumed).
    pub suspended: usize,
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
        let mut report = PurgeReport::default();
        if let Some(mut q) = self.domains.get_mut(domain) {
            q.remove_where(|_| true, &mut removed);
            let key = q.key().clone();
            drop(q);
            self.finish_purged(&key, &removed, &mut report);
        }
        report
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
        let mut by_domain = Vec::new();
        for mut item in self.domains.iter_mut() {
            let mut removed = Vec::new();
            item.value_mut()
                .remove_where(|e| doomed.contains(&e.msg), &mut removed);
            if !removed.is_empty() {
                by_domain.push((item.key().clone(), removed));
            }
        }
        let mut report = PurgeReport::default();
        for (domain, removed) in by_domain {
            self.finish_purged(&domain, &removed, &mut report);
        }
        report
    }

    /// Marks purged entries final in the message table (no domain guard held:
    /// the table's shards are leaves of the lock order anyway).
    fn finish_purged(&self, domain: &Arc<str>, removed: &[Entry], report: &mut PurgeReport) {
        report.recipients += removed.len() as u64;
        for e in removed {
            let (id, finished) = self.messages.finish(e.msg, 1);
            if finished {
                report.finished.push(id);
            }
            report.purged.push(PurgedRecipient {
                domain: domain.clone(),
                id,
                rcpt: e.rcpt,
                attempts: e.attempts,
                finished,
            });
        }
    }

    /// Where the queued recipients of message `id` are, looking in the queues of
    /// `domains` (its recipients' domains); `None` if the scheduler does not hold
    /// the message. A scan of the message table and of those domains' queues:
    /// for the status API, not hot paths.
    pub fn message_queue(&self, id: MessageId, domains: &[&str]) -> Option<MessageQueue> {
        let mref = self.messages.find(id)?;
        let mut view = MessageQueue {
            remaining: self.messages.get(mref).remaining,
            queued: Vec::new(),
        };
        for domain in domains {
            let Some(q) = self.domains.get(*domain) else {
                continue;
            };
            let mine = |e: &&Entry| e.msg == mref;
            for e in q.ready.iter().filter(mine) {
                view.queued.push((e.rcpt, QueuedAs::Ready));
            }
            for e in q.held.iter().filter(mine) {
                view.queued.push((e.rcpt, QueuedAs::Held));
            }
            for b in q.deferred.iter().filter(|b| b.0.msg == mref) {
                let due = Timestamp::from_secs(b.0.due as u64);
                view.queued.push((b.0.rcpt, QueuedAs::Deferred(due)));
            }
        }
        Some(view)
    }

    /// The queued, deferred and in-flight recipients of `campaign`; `None` if the
    /// scheduler never saw it. Scans the message table and every queue: for the
    /// status API, not hot paths.
    pub fn campaign_queue(&self, campaign: &CampaignId) -> Option<CampaignQueue> {
        let (idx, suspended) = {
            let cs = lock(&self.campaigns);
            let idx = *cs.ids.get(campaign)?;
            (idx, cs.suspended.contains(&idx))
        };
        let (refs, remaining) = self.messages.of_campaign_remaining(idx);
        let mut view = CampaignQueue {
            suspended,
            ..Default::default()
        };
        if refs.is_empty() {
            return Some(view);
        }
        for q in self.domains.iter() {
            let mine = |e: &Entry| refs.contains(&e.msg);
            view.queued += q.ready.iter().filter(|e| mine(e)).count() as u64;
            view.queued += q.held.iter().filter(|e| mine(e)).count() as u64;
            view.deferred += q.deferred.iter().filter(|b| mine(&b.0)).count() as u64;
        }
        view.in_flight = remaining.saturating_sub(view.queued + view.deferred);
        Some(view)
    }

    /// Every domain queue whose name starts with `prefix` (all with `None`), with
    /// its sizes. A scan of the domain map.
    pub fn domain_queues(&self, prefix: Option<&str>) -> Vec<(Arc<str>, DomainStats)> {
        self.domains
            .iter()
            .filter(|item| prefix.is_none_or(|p| item.key().starts_with(p)))
            .map(|q| {
                let stats = DomainStats {
                    ready: q.ready.len(),
                    deferred: q.deferred.len(),
                    held: q.held.len(),
                    in_flight: q.in_flight as usize,
                    suspended: q.suspended,
                };
                (q.key().clone(), stats)
            })
            .collect()
    }

    /// Whether `campaign` is suspended.
    pub fn is_campaign_suspended(&self, campaign: &CampaignId) -> bool {
        let cs = lock(&self.campaigns);
        cs.ids
            .get(campaign)
            .is_some_and(|i| cs.suspended.contains(i))
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
            if item.suspended {
                s.suspended += item.ready.len();
            }
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
