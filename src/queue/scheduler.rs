//! The scheduler: a sharded map of per-domain queues, a timer wheel of domain
//! wake-ups, and the table of queued messages.
//!
//! Flow: [`Scheduler::enqueue`] (at injection and recovery) → [`Scheduler::take_batch`]
//! / [`Scheduler::take_next`] (egress) → [`Scheduler::settle`] (results) →
//! [`Scheduler::tick`] (a driver, every second or so: retries come due, expiry
//! sweeps, idle domains are reaped). Nothing here does I/O or awaits; locks are held
//! for the length of a queue operation only, never across a call out.
//!
//! Lock order (never the reverse): a domain's dashmap shard first; then the wheel,
//! the ready list or the campaign set (leaves), or the expired list and then a
//! message-table shard (a leaf).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;

use super::clock::Clock;
use super::domain::{DomainQueue, Entry};
use super::messages::{MessageTable, MsgRef};
use super::retry::{RetryPolicy, SplitMix64};
use super::wheel::Wheel;
use crate::model::{CampaignId, MessageId, PendingMessage, Timestamp};

/// Scheduler settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SchedulerConfig {
    /// Most recipients per batch (one SMTP transaction), unless the caller passes a
    /// per-domain limit to [`Scheduler::take_batch_max`]. Default: 100.
    pub max_batch_recipients: usize,
    /// When deferred recipients are tried again. Default: [`RetryPolicy::default`].
    pub retry: RetryPolicy,
    /// How long a message may stay queued ([`Scheduler::expiry_for`]). Default: 5 days.
    pub message_lifetime: Duration,
    /// How often [`Scheduler::tick`] sweeps ready and held recipients of expired
    /// messages out (deferred ones expire exactly on time, and no recipient is ever
    /// handed out after its expiry). Default: 10 s.
    pub expiry_sweep_interval: Duration,
    /// An empty domain queue is dropped after this long without activity.
    /// Default: 10 minutes.
    pub idle_domain_ttl: Duration,
    /// Seed of the retry jitter (fixed in tests). Default: random.
    pub jitter_seed: Option<u64>,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            max_batch_recipients: 100,
            retry: RetryPolicy::default(),
            message_lifetime: Duration::from_secs(5 * 86_400),
            expiry_sweep_interval: Duration::from_secs(10),
            idle_domain_ttl: Duration::from_secs(600),
            jitter_seed: None,
        }
    }
}

/// Recipients of one message for one domain, to send in one transaction.
#[derive(Debug)]
#[must_use = "a taken batch must be settled, or its recipients stay in flight"]
pub struct Batch {
    /// The destination domain.
    pub domain: Arc<str>,
    /// The message (load its meta and body from the spool).
    pub id: MessageId,
    /// When its recipients expire.
    pub expires: Timestamp,
    /// The recipients, in envelope order within the message.
    pub recipients: Vec<BatchRecipient>,
    /// The message's slot.
    pub(crate) msg: MsgRef,
}

/// One recipient of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecipient {
    /// Index in the envelope's recipient list.
    pub rcpt: u32,
    /// Failed attempts before this one.
    pub attempts: u16,
}

/// What an attempt came to, per recipient, as reported to [`Scheduler::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: done.
    Delivered,
    /// 5xx: done (bounce).
    Bounced,
    /// 4xx or connection trouble: retry per the policy.
    Deferred,
    /// Not tried (e.g. 452 too many recipients): queue again at once, no attempt
    /// counted.
    NotAttempted,
}

/// What the scheduler decided for a recipient; the caller writes it to the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Final (delivered or bounced, as reported).
    Final,
    /// Queued for retry: persist `Deferred { attempts, next_due: due }`. A due time
    /// equal to the expiry means the recipient will expire then, untried.
    Retry {
        /// Failed attempts now.
        attempts: u16,
        /// When it will be tried again.
        due: Timestamp,
    },
    /// Queued again at once; nothing to persist.
    Requeued,
    /// The message expired: persist `Expired` (final).
    Expired,
}

/// The result of [`Scheduler::settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// One decision per batch recipient, in batch order.
    pub decisions: Vec<Decision>,
    /// Every recipient of the message is now final: remove it from the spool.
    pub finished: bool,
}

/// A recipient the scheduler expired on its own (found queued past its expiry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredRecipient {
    /// Its domain.
    pub domain: Arc<str>,
    /// Its message.
    pub id: MessageId,
    /// Its index in the envelope.
    pub rcpt: u32,
    /// It was the message's last unfinished recipient: remove the message.
    pub finished: bool,
}

/// What one [`Scheduler::tick`] did.
#[derive(Debug, Default)]
pub struct Tick {
    /// Recipients expired since the last tick: persist `Expired`, log, remove
    /// finished messages.
    pub expired: Vec<ExpiredRecipient>,
    /// Deferred recipients that became ready.
    pub promoted: usize,
    /// Idle domain queues dropped.
    pub reaped: usize,
}

/// Interned campaigns: entries carry a `u32` instead of a string.
#[derive(Debug, Default)]
pub(crate) struct Campaigns {
    /// Campaign id → index (from 1; 0 means "no campaign").
    pub ids: HashMap<CampaignId, u32>,
    /// Indices of suspended campaigns.
    pub suspended: HashSet<u32>,
}

/// The scheduler. Shared by reference (`Arc<Scheduler>`) between the ingest, egress
/// and result tasks; every method takes `&self`.
pub struct Scheduler {
    /// Settings.
    pub(crate) config: SchedulerConfig,
    /// Time source.
    pub(crate) clock: Arc<dyn Clock>,
    /// Per-domain queues, sharded.
    pub(crate) domains: DashMap<Arc<str>, DomainQueue>,
    /// Queued messages.
    pub(crate) messages: MessageTable,
    /// Domain wake-ups at the due time of their earliest deferred entry.
    pub(crate) wheel: Mutex<Wheel<Arc<str>>>,
    /// Domains with ready entries, for [`Scheduler::take_next`] (round-robin).
    pub(crate) ready_list: Mutex<VecDeque<Arc<str>>>,
    /// Campaign interning and suspension.
    pub(crate) campaigns: Mutex<Campaigns>,
    /// Fast path: no campaign is suspended, skip the lookup on take.
    pub(crate) any_campaign_suspended: AtomicBool,
    /// Recipients expired outside a tick, reported by the next tick.
    pub(crate) expired: Mutex<Vec<ExpiredRecipient>>,
    /// Retry jitter.
    rng: Mutex<SplitMix64>,
    /// Time of the last expiry sweep and reaping, Unix seconds.
    last_sweep: AtomicU32,
    last_reap: AtomicU32,
}

/// Locks a mutex, ignoring poisoning: every critical section leaves its data valid.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Seconds, rounded up: an entry is never due before its time.
fn secs_ceil(t: Timestamp) -> u32 {
    t.as_secs_ceil().min(u32::MAX as u64) as u32
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(config: SchedulerConfig, clock: Arc<dyn Clock>) -> Scheduler {
        let now = clock.now().as_secs();
        let seed = config
            .jitter_seed
            .unwrap_or_else(|| crate::model::IdGenerator::new().generate(Timestamp(now)).0 as u64);
        Scheduler {
            config,
            wheel: Mutex::new(Wheel::new(now)),
            clock,
            domains: DashMap::new(),
            messages: MessageTable::new(),
            ready_list: Mutex::default(),
            campaigns: Mutex::default(),
            any_campaign_suspended: AtomicBool::new(false),
            expired: Mutex::default(),
            rng: Mutex::new(SplitMix64::new(seed)),
            last_sweep: AtomicU32::new(now as u32),
            last_reap: AtomicU32::new(now as u32),
        }
    }

    /// The expiry of a message created at `created`, per the configured lifetime.
    pub fn expiry_for(&self, created: Timestamp) -> Timestamp {
        created.saturating_add(self.config.message_lifetime)
    }

    /// Now, in whole Unix seconds.
    pub(crate) fn now_secs(&self) -> u32 {
        self.clock.now().as_secs().min(u32::MAX as u64) as u32
    }

    /// Interned index of a campaign (0 for none).
    pub(crate) fn intern(&self, campaign: Option<&CampaignId>) -> u32 {
        let Some(c) = campaign else { return 0 };
        let mut cs = lock(&self.campaigns);
        if let Some(&i) = cs.ids.get(c) {
            return i;
        }
        let i = cs.ids.len() as u32 + 1;
        cs.ids.insert(c.clone(), i);
        i
    }

    /// Queues a message's unfinished recipients: due ones ready, the others
    /// deferred. Returns how many were queued (0 if the message already expired:
    /// its recipients are reported by the next tick).
    pub fn enqueue(&self, msg: &PendingMessage<'_>) -> usize {
        let n = msg.recipients.len();
        if n == 0 {
            return 0;
        }
        let now = self.now_secs();
        let expires = msg.expires.as_secs().min(u32::MAX as u64) as u32;
        let campaign = self.intern(msg.campaign);
        let mref = self.messages.insert(msg.id, campaign, expires, n as u32);
        if expires <= now {
            let mut expired = lock(&self.expired);
            for r in &msg.recipients {
                let (id, finished) = self.messages.finish(mref, 1);
                expired.push(ExpiredRecipient {
                    domain: Arc::from(r.domain),
                    id,
                    rcpt: r.rcpt,
                    finished,
                });
            }
            return 0;
        }
        let mut order: Vec<_> = msg.recipients.iter().collect();
        order.sort_by_key(|r| r.domain); // stable: envelope order within a domain
        for group in order.chunk_by(|a, b| a.domain == b.domain) {
            let domain = group[0].domain;
            let mut q = match self.domains.get_mut(domain) {
                Some(q) => q,
                None => self.domains.entry(Arc::from(domain)).or_default(),
            };
            let mut wake = None;
            for r in group {
                let e = Entry {
                    msg: mref,
                    rcpt: r.rcpt,
                    due: secs_ceil(r.due),
                    attempts: r.attempts,
                };
                if e.due <= now {
                    q.ready.push_back(e);
                } else if let Some(w) = q.defer(e) {
                    wake = Some(w);
                }
            }
            q.last_active = now;
            let key = q.key().clone();
            self.list_if_ready(&key, &mut q);
            if let Some(w) = wake {
                lock(&self.wheel).insert(w as u64, key);
            }
        }
        n
    }

    /// Puts a domain with ready work on the ready list (once).
    pub(crate) fn list_if_ready(&self, key: &Arc<str>, q: &mut DomainQueue) {
        if q.has_ready() && !q.listed {
            q.listed = true;
            lock(&self.ready_list).push_back(key.clone());
        }
    }

    /// The next batch for `domain`, up to the configured recipients per batch.
    pub fn take_batch(&self, domain: &str) -> Option<Batch> {
        self.take_batch_max(domain, self.config.max_batch_recipients)
    }

    /// The next batch for `domain`, up to `max` recipients (the domain's limit).
    /// `None` if nothing is ready or the domain is suspended.
    pub fn take_batch_max(&self, domain: &str, max: usize) -> Option<Batch> {
        let now = self.now_secs();
        let mut q = self.domains.get_mut(domain)?;
        let key = q.key().clone();
        self.take_from(&key, &mut q, now, max)
    }

    /// The next batch of any domain with ready work, domains taking turns.
    pub fn take_next(&self) -> Option<Batch> {
        let now = self.now_secs();
        loop {
            let key = lock(&self.ready_list).pop_front()?;
            let Some(mut q) = self.domains.get_mut(&*key) else {
                continue;
            };
            q.listed = false;
            let batch = self.take_from(&key, &mut q, now, self.config.max_batch_recipients);
            self.list_if_ready(&key, &mut q);
            if batch.is_some() {
                return batch;
            }
        }
    }

    fn take_from(
        &self,
        key: &Arc<str>,
        q: &mut DomainQueue,
        now: u32,
        max: usize,
    ) -> Option<Batch> {
        if q.suspended {
            return None;
        }
        let mut run = Vec::new();
        loop {
            run.clear();
            q.take_run(max.max(1), &mut run);
            let first = *run.first()?;
            let slot = self.messages.get(first.msg);
            if slot.expires <= now {
                self.expire(key, &run);
                continue;
            }
            if slot.campaign != 0 && self.campaign_suspended(slot.campaign) {
                q.held.extend_from_slice(&run);
                continue;
            }
            q.in_flight += run.len() as u32;
            q.last_active = now;
            return Some(Batch {
                domain: key.clone(),
                id: slot.id,
                expires: Timestamp::from_secs(slot.expires as u64),
                recipients: run
                    .iter()
                    .map(|e| BatchRecipient {
                        rcpt: e.rcpt,
                        attempts: e.attempts,
                    })
                    .collect(),
                msg: first.msg,
            });
        }
    }

    pub(crate) fn campaign_suspended(&self, campaign: u32) -> bool {
        self.any_campaign_suspended.load(Ordering::Acquire)
            && lock(&self.campaigns).suspended.contains(&campaign)
    }

    /// Marks queued entries expired, to be reported by the next tick.
    pub(crate) fn expire(&self, domain: &Arc<str>, entries: &[Entry]) {
        if entries.is_empty() {
            return;
        }
        let mut expired = lock(&self.expired);
        for e in entries {
            let (id, finished) = self.messages.finish(e.msg, 1);
            expired.push(ExpiredRecipient {
                domain: domain.clone(),
                id,
                rcpt: e.rcpt,
                finished,
            });
        }
    }

    /// Applies a batch's results: one outcome per batch recipient, in order (missing
    /// ones count as [`Outcome::Deferred`]). Computes retry times, expires what can
    /// no longer be retried, and says whether the message is finished.
    pub fn settle(&self, batch: Batch, outcomes: &[Outcome]) -> Settled {
        let now_ts = self.clock.now();
        let now = now_ts.as_secs().min(u32::MAX as u64) as u32;
        let slot = self.messages.get(batch.msg);
        let expired = slot.expires <= now;
        let expires_ts = Timestamp::from_secs(slot.expires as u64);
        let mut decisions = Vec::with_capacity(batch.recipients.len());
        let (mut finals, mut again, mut later) = (0u32, Vec::new(), Vec::new());
        // One jitter draw per attempt count in a batch: recipients that failed
        // together retry together, in one transaction, not one per recipient.
        let mut drawn: Option<(u16, Duration)> = None;
        for (i, r) in batch.recipients.iter().enumerate() {
            let entry = |due, attempts| Entry {
                msg: batch.msg,
                rcpt: r.rcpt,
                due,
                attempts,
            };
            let decision = match outcomes.get(i).copied().unwrap_or(Outcome::Deferred) {
                Outcome::Delivered | Outcome::Bounced => Decision::Final,
                Outcome::Deferred | Outcome::NotAttempted if expired => Decision::Expired,
                Outcome::Deferred => {
                    let attempts = r.attempts.saturating_add(1);
                    let delay = match drawn {
                        Some((a, d)) if a == attempts => d,
                        _ => {
                            let d = self.config.retry.delay(attempts, &mut lock(&self.rng));
                            drawn = Some((attempts, d));
                            d
                        }
                    };
                    let due = now_ts.saturating_add(delay).min(expires_ts);
                    later.push(entry(secs_ceil(due), attempts));
                    Decision::Retry { attempts, due }
                }
                Outcome::NotAttempted => {
                    again.push(entry(now, r.attempts));
                    Decision::Requeued
                }
            };
            if matches!(decision, Decision::Final | Decision::Expired) {
                finals += 1;
            }
            decisions.push(decision);
        }
        let finished = finals > 0 && self.messages.finish(batch.msg, finals).1;
        let mut q = self.domains.entry(batch.domain.clone()).or_default();
        q.in_flight = q.in_flight.saturating_sub(batch.recipients.len() as u32);
        q.last_active = now;
        for e in again.into_iter().rev() {
            q.ready.push_front(e);
        }
        let mut wake = None;
        for e in later {
            if let Some(w) = q.defer(e) {
                wake = Some(w);
            }
        }
        self.list_if_ready(&batch.domain, &mut q);
        if let Some(w) = wake {
            lock(&self.wheel).insert(w as u64, batch.domain.clone());
        }
        Settled {
            decisions,
            finished,
        }
    }

    /// Moves due retries to the ready queues, expires what is due to expire, and
    /// every sweep interval / reap interval sweeps expired messages and reaps idle
    /// domains. Call every second or so (or at [`Scheduler::next_wake`]).
    pub fn tick(&self) -> Tick {
        let now = self.now_secs();
        let mut fired = Vec::new();
        lock(&self.wheel).advance(now as u64, &mut fired);
        let mut tick = Tick::default();
        let (mut moved, mut dead) = (Vec::new(), Vec::new());
        for (fired_at, key) in fired {
            let Some(mut q) = self.domains.get_mut(&*key) else {
                continue;
            };
            let registered = q.wake_at;
            moved.clear();
            dead.clear();
            let next = q.promote_due(now, &mut moved);
            for e in &moved {
                if self.messages.get(e.msg).expires <= now {
                    dead.push(*e);
                } else {
                    q.ready.push_back(*e);
                }
            }
            tick.promoted += moved.len() - dead.len();
            self.expire(&key, &dead);
            self.list_if_ready(&key, &mut q);
            // The wheel already holds `registered` unless this firing was it.
            if let Some(n) = next.filter(|&n| n != registered || fired_at == registered as u64) {
                lock(&self.wheel).insert(n as u64, key.clone());
            }
        }
        if self.interval_elapsed(&self.last_sweep, now, self.config.expiry_sweep_interval) {
            self.sweep_expired();
        }
        let reap_every = self.config.idle_domain_ttl.min(Duration::from_secs(60));
        if self.interval_elapsed(&self.last_reap, now, reap_every) {
            tick.reaped = self.reap_idle();
        }
        tick.expired = std::mem::take(&mut *lock(&self.expired));
        tick
    }

    fn interval_elapsed(&self, last: &AtomicU32, now: u32, every: Duration) -> bool {
        let prev = last.load(Ordering::Relaxed);
        now.saturating_sub(prev) as u64 >= every.as_secs()
            && last
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// When the next deferred recipient may come due (Unix seconds; a lower bound),
    /// for a driver that sleeps until then.
    pub fn next_wake(&self) -> Option<Timestamp> {
        lock(&self.wheel).next_due().map(Timestamp::from_secs)
    }
}
