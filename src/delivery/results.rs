//! Results: per-recipient outcomes become scheduler decisions, spool records and
//! delivery-log events, on one thread.
//!
//! Sessions, the dispatcher and the expiry tick hand `Work` over a channel; the
//! thread settles each batch with the scheduler, then writes the state changes of
//! everything it drained in one unsynced [`Spool::update`] (a crash may lose a
//! result and deliver twice, never lose a message), then removes finished messages.
//! One thread keeps the order the spool needs: a message's last update is written
//! before its removal, and nothing is written after it.
//!
//! Campaign counters ride along: each final outcome of a campaign's recipient adds
//! to a per-group delta written in the same batch as the states. Operator purges
//! come through here too ([`Work::Purge`]), so a purged message's removal is
//! ordered with every other write of that message. Every `prune_every` the
//! thread also drops completion records older than the status retention.
//!
//! Outcome mapping (no `_` arms): `Delivered` -> final, `Transient` -> retry per
//! the policy (or expired, past the lifetime), `Permanent` -> bounce,
//! `TooManyRecipients` -> queued again at once without counting an attempt.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

use super::admin::PurgeSummary;
use super::log::{rfc3339, EventKind, LogEvent, LogHandle};
use super::prepare::MessageCache;
use super::stats::{bump, drop_by, Counters};
use crate::dns::SiteId;
use crate::model::{
    CampaignCounters, CampaignId, MessageId, MessageMeta, RecipientStatus, StoredReply, Timestamp,
};
use crate::queue::{Batch, Clock, Decision, ExpiredRecipient, Outcome, PurgedRecipient, Scheduler};
use crate::smtp::reply::Reply;
use crate::smtp::transaction::RecipientOutcome;
use crate::spool::{Spool, SpoolError, StateUpdate};

/// Most work items written in one spool batch.
const MAX_DRAIN: usize = 512;

/// One piece of work for the results thread.
#[derive(Debug)]
pub(crate) enum Work {
    /// A batch's results.
    Settle(Settlement),
    /// Recipients the scheduler expired on its own (from `tick`).
    Expired(Vec<ExpiredRecipient>),
    /// Recipients an operator purge took from the scheduler.
    Purge(PurgeWork),
}

/// An operator purge's recipients, and where to report once they are written.
#[derive(Debug)]
pub(crate) struct PurgeWork {
    /// The recipients the scheduler removed.
    pub purged: Vec<PurgedRecipient>,
    /// Answered after the spool writes of the group that carried them.
    pub done: oneshot::Sender<Result<PurgeSummary, SpoolError>>,
}

/// The results of one batch.
#[derive(Debug)]
pub(crate) struct Settlement {
    /// The batch, as taken.
    pub batch: Batch,
    /// One per batch recipient, in order.
    pub results: Vec<RcptResult>,
    /// The message's meta, when the sender had it (else loaded for the log).
    pub meta: Option<Arc<MessageMeta>>,
    /// Where and how the attempt was made.
    pub attempt: Arc<Attempt>,
    /// Wake the dispatcher if recipients were queued again (false for batches the
    /// dispatcher itself handed back, which would only come straight back).
    pub wake: bool,
}

/// One recipient's result.
#[derive(Debug, Clone)]
pub(crate) struct RcptResult {
    /// What to tell the scheduler.
    pub outcome: Outcome,
    /// The reply behind it (none for a recipient not attempted).
    pub reply: Option<Reply>,
}

impl RcptResult {
    /// From the planner's outcome for an attempted recipient.
    pub fn from_outcome(o: &RecipientOutcome) -> RcptResult {
        let (outcome, reply) = match o {
            RecipientOutcome::Delivered(r) => (Outcome::Delivered, r),
            RecipientOutcome::Transient(r) => (Outcome::Deferred, r),
            RecipientOutcome::Permanent(r) => (Outcome::Bounced, r),
            RecipientOutcome::TooManyRecipients(r) => (Outcome::NotAttempted, r),
        };
        RcptResult {
            outcome,
            reply: Some(reply.clone()),
        }
    }

    /// Not attempted: queue again at once.
    pub fn requeue() -> RcptResult {
        RcptResult {
            outcome: Outcome::NotAttempted,
            reply: None,
        }
    }

    /// Failed with `reply`: bounce if it is permanent, else defer.
    pub fn failed(reply: &Reply) -> RcptResult {
        RcptResult {
            outcome: if reply.is_permanent() {
                Outcome::Bounced
            } else {
                Outcome::Deferred
            },
            reply: Some(reply.clone()),
        }
    }
}

/// Where an attempt went, for the log.
#[derive(Debug, Default)]
pub(crate) struct Attempt {
    /// The site.
    pub site: Option<SiteId>,
    /// The MX host connected to.
    pub mx_host: Option<String>,
    /// Its address.
    pub mx_ip: Option<IpAddr>,
    /// TLS version.
    pub tls: Option<String>,
    /// How long the exchange took.
    pub elapsed: Option<Duration>,
}

/// The sending side: counts work in flight for [`Counters::pending_results`].
#[derive(Debug, Clone)]
pub(crate) struct ResultsTx {
    tx: mpsc::Sender<Work>,
    counters: Arc<Counters>,
}

impl ResultsTx {
    /// Hands `work` to the results thread.
    pub fn send(&self, work: Work) {
        bump(&self.counters.pending_results, 1);
        if self.tx.send(work).is_err() {
            // The thread is gone (shutdown): the spool still holds the old state,
            // so the recipients go again after a restart.
            drop_by(&self.counters.pending_results, 1);
        }
    }
}

/// What the results thread works with.
pub(crate) struct ResultsCtx {
    pub scheduler: Arc<Scheduler>,
    pub spool: Arc<dyn Spool>,
    pub cache: Arc<MessageCache>,
    pub clock: Arc<dyn Clock>,
    pub log: LogHandle,
    pub counters: Arc<Counters>,
    /// The dispatcher's wake-up.
    pub wake: Arc<Notify>,
    /// How long completion records are kept (by message creation time).
    pub status_retention: Duration,
    /// How often old completion records are pruned.
    pub prune_every: Duration,
}

/// Starts the results thread; it ends when every [`ResultsTx`] is dropped.
pub(crate) fn start(ctx: ResultsCtx) -> std::io::Result<(ResultsTx, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let sender = ResultsTx {
        tx,
        counters: ctx.counters.clone(),
    };
    let thread = std::thread::Builder::new()
        .name("volley-results".into())
        .spawn(move || run(ctx, rx))?;
    Ok((sender, thread))
}

fn run(ctx: ResultsCtx, rx: mpsc::Receiver<Work>) {
    let mut group = Vec::with_capacity(MAX_DRAIN);
    let mut last = LastAttempts::default();
    // Prune once at start, then every `prune_every`.
    let mut next_prune = Instant::now();
    loop {
        if Instant::now() >= next_prune {
            prune(&ctx);
            next_prune = Instant::now() + ctx.prune_every;
        }
        let wait = next_prune.saturating_duration_since(Instant::now());
        let first = match rx.recv_timeout(wait) {
            Ok(w) => w,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        group.push(first);
        while group.len() < MAX_DRAIN {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let n = group.len() as u64;
        let mut out = Output::default();
        for work in group.drain(..) {
            match work {
                Work::Settle(s) => settle(&ctx, s, &mut out, &mut last),
                Work::Expired(list) => expired(&ctx, list, &mut out, &mut last),
                Work::Purge(p) => purge(&ctx, p, &mut out, &mut last),
            }
        }
        let counters: Vec<(CampaignId, CampaignCounters)> = out.counters.drain().collect();
        let finished: Vec<(MessageId, Option<Arc<MessageMeta>>)> = out
            .removes
            .iter()
            .map(|id| {
                let meta = out.metas.get(id).cloned().flatten();
                (*id, meta.or_else(|| ctx.cache.meta(*id)))
            })
            .collect();
        let mut written = Ok(());
        if !out.updates.is_empty() || !counters.is_empty() || !finished.is_empty() {
            // One write for the group: results, counters and finished messages.
            written = ctx.spool.settle_group(&out.updates, &counters, &finished);
            if let Err(e) = &written {
                eprintln!(
                    "volley: writing {} results and removing {} finished messages failed: {e}",
                    out.updates.len(),
                    finished.len()
                );
            }
        }
        for id in out.removes {
            ctx.cache.invalidate(id);
        }
        for event in out.events {
            ctx.log.send(event);
        }
        for (done, summary) in out.purges {
            let _ = done.send(written.clone().map(|()| summary));
        }
        drop_by(&ctx.counters.pending_results, n);
        if out.wake {
            ctx.wake.notify_one();
        }
    }
}

/// Drops completion records of messages created more than the retention ago.
fn prune(ctx: &ResultsCtx) {
    let now = ctx.clock.now().as_millis();
    let cutoff = Timestamp(now.saturating_sub(ctx.status_retention.as_millis() as u64));
    if let Err(e) = ctx.spool.prune_completed(cutoff) {
        eprintln!("volley: pruning old completion records failed: {e}");
    }
}

/// Most deferred recipients whose last attempt is remembered (about 50 bytes
/// each): the scheduler's expiry report does not carry attempts or replies.
const MAX_REMEMBERED: usize = 1_000_000;

/// The last failed attempt of each deferred recipient, for the `expired` event.
#[derive(Default)]
struct LastAttempts {
    map: HashMap<(MessageId, u32), (u16, Arc<Reply>)>,
}

impl LastAttempts {
    fn remember(&mut self, key: (MessageId, u32), attempts: u16, reply: Arc<Reply>) {
        if self.map.len() < MAX_REMEMBERED || self.map.contains_key(&key) {
            self.map.insert(key, (attempts, reply));
        }
    }

    fn forget(&mut self, key: &(MessageId, u32)) -> Option<(u16, Arc<Reply>)> {
        self.map.remove(key)
    }
}

/// What a drained group produced.
#[derive(Default)]
struct Output {
    updates: Vec<StateUpdate>,
    removes: Vec<MessageId>,
    events: Vec<LogEvent>,
    wake: bool,
    /// Metas loaded for logging in this group.
    metas: HashMap<MessageId, Option<Arc<MessageMeta>>>,
    /// Campaign counter deltas of this group's final outcomes.
    counters: HashMap<CampaignId, CampaignCounters>,
    /// Purges to answer once this group is written.
    purges: Vec<(
        oneshot::Sender<Result<PurgeSummary, SpoolError>>,
        PurgeSummary,
    )>,
}

impl Output {
    /// Counts a recipient's new state in its campaign's delta (final states only).
    fn count(&mut self, meta: Option<&MessageMeta>, status: &RecipientStatus) {
        let Some(campaign) = meta.and_then(|m| m.campaign.as_ref()) else {
            return;
        };
        if !status.is_final() {
            return;
        }
        let delta = CampaignCounters::outcome(status);
        match self.counters.get_mut(campaign) {
            Some(c) => c.add(&delta),
            None => {
                self.counters.insert(campaign.clone(), delta);
            }
        }
    }
}

fn stored(reply: &Reply) -> StoredReply {
    let lines = reply.lines.join("\n");
    let text = match reply.enhanced {
        Some(e) => format!("{e} {lines}"),
        None => lines,
    };
    StoredReply {
        code: reply.code.get(),
        text,
    }
}

fn meta_for(ctx: &ResultsCtx, out: &mut Output, id: MessageId) -> Option<Arc<MessageMeta>> {
    out.metas
        .entry(id)
        .or_insert_with(|| {
            ctx.cache
                .meta(id)
                .or_else(|| ctx.spool.load_meta(id).ok().map(Arc::new))
        })
        .clone()
}

fn settle(ctx: &ResultsCtx, s: Settlement, out: &mut Output, last: &mut LastAttempts) {
    let Settlement {
        batch,
        results,
        meta,
        attempt,
        wake,
    } = s;
    let id = batch.id;
    let domain = batch.domain.clone();
    let rcpts = batch.recipients.clone();
    let outcomes: Vec<Outcome> = results.iter().map(|r| r.outcome).collect();
    let settled = ctx.scheduler.settle(batch, &outcomes);
    let now = ctx.clock.now();
    let meta = meta.or_else(|| meta_for(ctx, out, id));
    let mut shared_reply: Option<Arc<Reply>> = None;
    for (i, decision) in settled.decisions.iter().enumerate() {
        let (Some(r), Some(rcpt)) = (results.get(i), rcpts.get(i)) else {
            continue;
        };
        let key = (id, rcpt.rcpt);
        match (decision, &r.reply) {
            (Decision::Retry { attempts, .. }, Some(reply)) => {
                // Recipients of one batch usually share one reply: one allocation.
                let arc = match &shared_reply {
                    Some(a) if **a == *reply => a.clone(),
                    _ => Arc::new(reply.clone()),
                };
                shared_reply = Some(arc.clone());
                last.remember(key, *attempts, arc);
            }
            (Decision::Requeued, _) => {}
            _ => {
                last.forget(&key);
            }
        }
        let kind = match (*decision, r.outcome) {
            (Decision::Final, Outcome::Delivered) => {
                bump(&ctx.counters.delivered, 1);
                Some((EventKind::Delivered, RecipientStatus::Delivered, None))
            }
            (Decision::Final, Outcome::Bounced | Outcome::Deferred | Outcome::NotAttempted) => {
                bump(&ctx.counters.bounced, 1);
                let reply = r.reply.as_ref().map(stored).unwrap_or(StoredReply {
                    code: 554,
                    text: "5.0.0 failed".into(),
                });
                Some((EventKind::Bounced, RecipientStatus::Bounced(reply), None))
            }
            (Decision::Retry { attempts, due }, _) => {
                bump(&ctx.counters.deferred, 1);
                let last_reply = r.reply.as_ref().map(stored).unwrap_or(StoredReply {
                    code: 451,
                    text: "4.0.0 deferred".into(),
                });
                let status = RecipientStatus::Deferred {
                    attempts,
                    next_due: due,
                    last_reply,
                };
                Some((EventKind::Deferred, status, Some(due)))
            }
            (Decision::Expired, _) => {
                bump(&ctx.counters.expired, 1);
                Some((EventKind::Expired, RecipientStatus::Expired, None))
            }
            (Decision::Requeued, _) => {
                // Batches the dispatcher handed back (`wake` false) are not
                // outcomes of anything: not counted.
                if wake {
                    bump(&ctx.counters.requeued, 1);
                    out.wake = true;
                }
                None
            }
        };
        let Some((event, status, next_retry)) = kind else {
            continue;
        };
        out.count(meta.as_deref(), &status);
        out.updates.push(StateUpdate {
            domain: domain.clone(),
            id,
            rcpt: rcpt.rcpt,
            status,
        });
        out.events.push(log_event(
            event,
            id,
            &domain,
            rcpt.rcpt,
            meta.as_deref(),
            &attempt,
            r.reply.as_ref(),
            // This attempt's number; a recipient handed back untried made none.
            match r.outcome {
                Outcome::NotAttempted => rcpt.attempts,
                Outcome::Delivered | Outcome::Bounced | Outcome::Deferred => {
                    rcpt.attempts.saturating_add(1)
                }
            },
            now,
            next_retry,
        ));
    }
    if settled.finished {
        out.removes.push(id);
    }
}

fn expired(
    ctx: &ResultsCtx,
    list: Vec<ExpiredRecipient>,
    out: &mut Output,
    last: &mut LastAttempts,
) {
    let now = ctx.clock.now();
    let none = Attempt::default();
    for e in list {
        bump(&ctx.counters.expired, 1);
        let meta = meta_for(ctx, out, e.id);
        let (attempts, reply) = last
            .forget(&(e.id, e.rcpt))
            .map_or((0, None), |(n, r)| (n, Some(r)));
        out.count(meta.as_deref(), &RecipientStatus::Expired);
        out.updates.push(StateUpdate {
            domain: e.domain.clone(),
            id: e.id,
            rcpt: e.rcpt,
            status: RecipientStatus::Expired,
        });
        out.events.push(log_event(
            EventKind::Expired,
            e.id,
            &e.domain,
            e.rcpt,
            meta.as_deref(),
            &none,
            reply.as_deref(),
            attempts,
            now,
            None,
        ));
        if e.finished {
            out.removes.push(e.id);
        }
    }
}

fn purge(ctx: &ResultsCtx, work: PurgeWork, out: &mut Output, last: &mut LastAttempts) {
    let now = ctx.clock.now();
    let none = Attempt::default();
    let mut summary = PurgeSummary::default();
    for p in work.purged {
        summary.recipients += 1;
        bump(&ctx.counters.purged, 1);
        let meta = meta_for(ctx, out, p.id);
        let reply = last.forget(&(p.id, p.rcpt)).map(|(_, r)| r);
        out.count(meta.as_deref(), &RecipientStatus::Purged);
        out.updates.push(StateUpdate {
            domain: p.domain.clone(),
            id: p.id,
            rcpt: p.rcpt,
            status: RecipientStatus::Purged,
        });
        out.events.push(log_event(
            EventKind::Purged,
            p.id,
            &p.domain,
            p.rcpt,
            meta.as_deref(),
            &none,
            reply.as_deref(),
            p.attempts,
            now,
            None,
        ));
        if p.finished {
            summary.messages_removed += 1;
            out.removes.push(p.id);
        }
    }
    out.purges.push((work.done, summary));
}

#[allow(clippy::too_many_arguments)]
fn log_event(
    event: EventKind,
    id: MessageId,
    domain: &str,
    rcpt: u32,
    meta: Option<&MessageMeta>,
    attempt: &Attempt,
    reply: Option<&Reply>,
    attempt_no: u16,
    now: Timestamp,
    next_retry: Option<Timestamp>,
) -> LogEvent {
    let recipient = meta
        .and_then(|m| m.envelope.recipients.get(rcpt as usize))
        .map_or_else(|| format!("#{rcpt}"), |r| r.address.clone());
    let created = meta.map_or(id.timestamp(), |m| m.created);
    LogEvent {
        ts: rfc3339(now),
        event,
        message_id: id.to_string(),
        recipient,
        domain: domain.to_string(),
        site: attempt.site.as_ref().map(|s| s.to_string()),
        mx_host: attempt.mx_host.clone(),
        mx_ip: attempt.mx_ip,
        tls: attempt.tls.clone(),
        code: reply.map(|r| r.code.get()),
        enhanced: reply.and_then(|r| r.enhanced).map(|e| e.to_string()),
        reply: reply.map(Reply::text),
        attempt: attempt_no,
        queue_time_ms: now.saturating_since(created).as_millis() as u64,
        delivery_time_ms: attempt.elapsed.map(|d| d.as_millis() as u64),
        next_retry: next_retry.map(rfc3339),
    }
}

/// Whether the results thread is still working on something.
pub(crate) fn busy(counters: &Counters) -> bool {
    counters.pending_results.load(Ordering::Relaxed) > 0
}
