//! Status and operator controls of a running engine: message and campaign status,
//! the queue listing, suspend / resume / purge of domains and campaigns. The HTTP
//! API exposes these (`GET /api/v1/messages/{id}`, `GET /api/v1/campaigns/{id}`,
//! `GET /api/v1/queue`, ...); the types serialize to its JSON.
//!
//! Where the answers come from:
//! - a queued message: its meta and recipient records (spool), and where the
//!   scheduler holds each unfinished recipient (ready, deferred, held; an
//!   unfinished recipient in no queue is in flight);
//! - a finished message: its completion record (spool, kept for
//!   `[spool] status_retention` from its creation), written in the batch that
//!   removed it;
//! - a campaign: its persisted counters (injected messages and recipients;
//!   delivered, bounced, expired, purged recipients) and the scheduler's live
//!   queued / deferred / in-flight counts and suspension;
//! - the queue listing: the scheduler's per-domain sizes, the router's cached
//!   site of each domain and the dispatcher's sessions per site.
//!
//! Spool reads and scans of the queues run on the blocking pool. Purges go
//! through the results thread, so a purged message's records are written in
//! order with its other results; the call returns once they are written.
//! Suspensions live in memory only: a restart resumes everything.

use std::collections::HashMap;

use serde::Serialize;
use tokio::sync::oneshot;

use super::engine::{lock, EngineHandle, Shared};
use super::log::rfc3339;
use super::results::{PurgeWork, Work};
use crate::model::{
    CampaignId, CompletedMessage, MessageId, MessageMeta, RecipientStatus, StoredReply,
};
use crate::queue::{MessageQueue, PurgeReport, QueuedAs};
use crate::spool::SpoolError;

/// Recipients by state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StateCounts {
    /// Waiting to be sent (ready or held by a suspension), never tried or requeued.
    pub queued: u64,
    /// Waiting for a retry after a temporary failure.
    pub deferred: u64,
    /// Taken by a session, result not written yet.
    pub in_flight: u64,
    /// Accepted by the receiver: final.
    pub delivered: u64,
    /// Refused for good: final.
    pub bounced: u64,
    /// Reached the message lifetime undelivered: final.
    pub expired: u64,
    /// Removed by an operator purge: final.
    pub purged: u64,
}

/// One recipient of a message.
#[derive(Debug, Clone, Serialize)]
pub struct RecipientView {
    /// The address as sent in RCPT TO.
    pub recipient: String,
    /// Its domain.
    pub domain: String,
    /// `queued`, `deferred`, `in_flight`, `delivered`, `bounced`, `expired`, `purged`.
    pub state: &'static str,
    /// Temporary failures recorded so far (a deferred recipient's count; 0 for a
    /// recipient never deferred: the records of final states keep no count).
    pub attempts: u32,
    /// When a deferred recipient is tried again (RFC 3339).
    pub next_attempt: Option<String>,
    /// The last reply kept (`code text`): a deferral's or a bounce's. Replies
    /// of deliveries are not stored (the delivery log has them).
    pub last_reply: Option<String>,
}

/// A message's status.
#[derive(Debug, Clone, Serialize)]
pub struct MessageStatus {
    /// 32 hex digits.
    pub id: String,
    /// Its owner.
    pub tenant: Option<String>,
    /// Its campaign (stored form, `TENANT:name` for a tenant's campaign).
    pub campaign: Option<String>,
    /// When it was accepted (RFC 3339).
    pub created: String,
    /// When undelivered recipients expire (RFC 3339).
    pub expires: String,
    /// `queued` while any recipient is unfinished, else `completed`.
    pub state: &'static str,
    /// Recipients by state.
    pub counts: StateCounts,
    /// Every recipient, in envelope order.
    pub recipients: Vec<RecipientView>,
}

/// A campaign's status.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignStatus {
    /// The campaign id (stored form).
    pub campaign: String,
    /// The tenant of its messages, if they had one.
    pub tenant: Option<String>,
    /// Whether an operator suspended it.
    pub suspended: bool,
    /// Messages injected so far.
    pub messages: u64,
    /// Recipients injected so far.
    pub recipients: u64,
    /// Recipients by state.
    pub counts: StateCounts,
}

/// One domain's queue.
#[derive(Debug, Clone, Serialize)]
pub struct DomainQueue {
    /// The domain.
    pub domain: String,
    /// Its site (MX set), when routed.
    pub site: Option<String>,
    /// Recipients ready to send.
    pub ready: u64,
    /// Recipients waiting for a retry.
    pub deferred: u64,
    /// Recipients held by a suspended campaign.
    pub held: u64,
    /// Recipients taken and not yet settled.
    pub in_flight: u64,
    /// Whether an operator suspended the domain.
    pub suspended: bool,
}

/// One site's totals over the listed domains routed to it.
#[derive(Debug, Clone, Serialize)]
pub struct SiteQueue {
    /// The site key.
    pub site: String,
    /// Listed domains routed to it.
    pub domains: u64,
    /// Recipients ready to send.
    pub ready: u64,
    /// Recipients waiting for a retry.
    pub deferred: u64,
    /// Recipients held by a suspended campaign.
    pub held: u64,
    /// Recipients taken and not yet settled.
    pub in_flight: u64,
    /// SMTP sessions open or connecting.
    pub sessions: u64,
}

/// The queue listing.
#[derive(Debug, Clone, Serialize)]
pub struct QueueListing {
    /// Domain queues matching the prefix (all of them without one), before the
    /// limit.
    pub domains_total: u64,
    /// Messages with unfinished recipients (the whole queue).
    pub messages: u64,
    /// Recipients ready to send, in the matching domains.
    pub ready: u64,
    /// Recipients waiting for a retry, in the matching domains.
    pub deferred: u64,
    /// Recipients held by suspended campaigns, in the matching domains.
    pub held: u64,
    /// Recipients in flight, in the matching domains.
    pub in_flight: u64,
    /// The listed domains, largest queues first.
    pub domains: Vec<DomainQueue>,
    /// The sites of the listed domains, largest queues first (unrouted domains
    /// are in none).
    pub sites: Vec<SiteQueue>,
}

/// What a purge removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PurgeSummary {
    /// Queued recipients purged (in-flight ones settle normally).
    pub recipients: u64,
    /// Messages removed from the spool because nothing of them was left (their
    /// completion records remain).
    pub messages_removed: u64,
}

impl EngineHandle {
    /// The status of message `id`. `None` when the id was never seen (or its
    /// completion record aged out).
    pub async fn message_status(&self, id: MessageId) -> Result<Option<MessageStatus>, SpoolError> {
        let shared = self.shared.clone();
        blocking(move || message_status(&shared, id)).await
    }

    /// The status of `campaign`. `None` when the campaign is unknown (no message
    /// of it was ever injected, and it was never suspended).
    pub async fn campaign_status(
        &self,
        campaign: &CampaignId,
    ) -> Result<Option<CampaignStatus>, SpoolError> {
        let shared = self.shared.clone();
        let campaign = campaign.clone();
        blocking(move || {
            let counters = shared.spool.load_counters(&campaign)?;
            let live = shared.scheduler.campaign_queue(&campaign);
            if counters.is_none() && live.is_none() {
                return Ok(None);
            }
            let c = counters.unwrap_or_default();
            let q = live.unwrap_or_default();
            Ok(Some(CampaignStatus {
                campaign: campaign.0.clone(),
                tenant: c.tenant.map(|t| t.0),
                suspended: q.suspended,
                messages: c.messages,
                recipients: c.recipients,
                counts: StateCounts {
                    queued: q.queued,
                    deferred: q.deferred,
                    in_flight: q.in_flight,
                    delivered: c.delivered,
                    bounced: c.bounced,
                    expired: c.expired,
                    purged: c.purged,
                },
            }))
        })
        .await
    }

    /// Domains (largest queues first, at most `limit`, optionally only those
    /// starting with `domain_prefix`) and their sites. A scan of the domain map
    /// (microseconds per domain).
    pub fn queue_listing(&self, domain_prefix: Option<&str>, limit: usize) -> QueueListing {
        let shared = &self.shared;
        let mut all = shared.scheduler.domain_queues(domain_prefix);
        let mut listing = QueueListing {
            domains_total: all.len() as u64,
            messages: shared.scheduler.stats().messages as u64,
            ready: 0,
            deferred: 0,
            held: 0,
            in_flight: 0,
            domains: Vec::new(),
            sites: Vec::new(),
        };
        for (_, d) in &all {
            listing.ready += d.ready as u64;
            listing.deferred += d.deferred as u64;
            listing.held += d.held as u64;
            listing.in_flight += d.in_flight as u64;
        }
        let size = |d: &crate::queue::DomainStats| d.ready + d.deferred + d.held + d.in_flight;
        all.sort_unstable_by(|a, b| size(&b.1).cmp(&size(&a.1)).then_with(|| a.0.cmp(&b.0)));
        all.truncate(limit);
        let mut sites: HashMap<String, SiteQueue> = HashMap::new();
        for (domain, d) in all {
            let site = shared.router.cached_site(&domain).map(|s| s.to_string());
            if let Some(site) = &site {
                let s = sites.entry(site.clone()).or_insert_with(|| SiteQueue {
                    site: site.clone(),
                    domains: 0,
                    ready: 0,
                    deferred: 0,
                    held: 0,
                    in_flight: 0,
                    sessions: 0,
                });
                s.domains += 1;
                s.ready += d.ready as u64;
                s.deferred += d.deferred as u64;
                s.held += d.held as u64;
                s.in_flight += d.in_flight as u64;
            }
            listing.domains.push(DomainQueue {
                domain: domain.to_string(),
                site,
                ready: d.ready as u64,
                deferred: d.deferred as u64,
                held: d.held as u64,
                in_flight: d.in_flight as u64,
                suspended: d.suspended,
            });
        }
        {
            let running = lock(&shared.sites);
            for s in sites.values_mut() {
                let id = crate::dns::SiteId::new(s.site.as_str());
                s.sessions = running
                    .get(&id)
                    .map_or(0, |site| site.session_count() as u64);
            }
        }
        listing.sites = sites.into_values().collect();
        let total = |s: &SiteQueue| s.ready + s.deferred + s.held + s.in_flight;
        listing
            .sites
            .sort_unstable_by(|a, b| total(b).cmp(&total(a)).then_with(|| a.site.cmp(&b.site)));
        listing
    }

    /// Stops sending to `domain` until resumed (recipients keep queueing, retries
    /// come due, expiry applies). In memory: a restart resumes it.
    pub fn suspend_domain(&self, domain: &str) {
        self.shared
            .scheduler
            .suspend_domain(&domain.to_ascii_lowercase());
    }

    /// Undoes [`EngineHandle::suspend_domain`]; returns whether it was suspended.
    pub fn resume_domain(&self, domain: &str) -> bool {
        let was = self
            .shared
            .scheduler
            .resume_domain(&domain.to_ascii_lowercase());
        self.shared.wake.notify_one();
        was
    }

    /// Removes every queued recipient of `domain` from the scheduler and the spool
    /// (marked purged; messages left with nothing unfinished are removed), counts
    /// and logs each. In-flight recipients settle normally. Returns once written.
    pub async fn purge_domain(&self, domain: &str) -> Result<PurgeSummary, SpoolError> {
        if self.shared.is_closing() {
            return Err(SpoolError::Closed);
        }
        let report = self
            .shared
            .scheduler
            .purge_domain(&domain.to_ascii_lowercase());
        self.write_purge(report).await
    }

    /// Holds back every recipient of `campaign` (in every domain) until resumed.
    /// In memory: a restart resumes it.
    pub fn suspend_campaign(&self, campaign: &CampaignId) {
        self.shared.scheduler.suspend_campaign(campaign);
    }

    /// Releases a suspended campaign; returns how many held recipients it released.
    pub fn resume_campaign(&self, campaign: &CampaignId) -> usize {
        let released = self.shared.scheduler.resume_campaign(campaign);
        self.shared.wake.notify_one();
        released
    }

    /// [`EngineHandle::purge_domain`] for every queued recipient of `campaign`.
    pub async fn purge_campaign(&self, campaign: &CampaignId) -> Result<PurgeSummary, SpoolError> {
        if self.shared.is_closing() {
            return Err(SpoolError::Closed);
        }
        let report = self.shared.scheduler.purge_campaign(campaign);
        self.write_purge(report).await
    }

    /// Hands a purge's recipients to the results thread and waits for its write.
    async fn write_purge(&self, report: PurgeReport) -> Result<PurgeSummary, SpoolError> {
        if report.purged.is_empty() {
            return Ok(PurgeSummary::default());
        }
        let (done, answer) = oneshot::channel();
        let tx = lock(&self.shared.results).clone();
        // After shutdown began the spool keeps the recipients (they come back
        // after a restart): say so rather than pretend.
        let tx = tx.ok_or(SpoolError::Closed)?;
        tx.send(Work::Purge(PurgeWork {
            purged: report.purged,
            done,
        }));
        answer.await.map_err(|_| SpoolError::Closed)?
    }
}

/// Runs a spool read on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, SpoolError> + Send + 'static,
) -> Result<T, SpoolError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SpoolError::Read(format!("status task failed: {e}")))?
}

fn message_status(shared: &Shared, id: MessageId) -> Result<Option<MessageStatus>, SpoolError> {
    let meta = match shared.spool.load_meta(id) {
        Ok(meta) => meta,
        Err(SpoolError::NotFound(_)) => {
            return Ok(shared.spool.load_completed(id)?.map(|c| completed_view(&c)));
        }
        Err(e) => return Err(e),
    };
    let statuses = shared.spool.load_statuses(&meta)?;
    if statuses.iter().all(Option::is_none) {
        // Removed between the two reads: the completion record has the answer.
        if let Some(done) = shared.spool.load_completed(id)? {
            return Ok(Some(completed_view(&done)));
        }
    }
    let mut domains: Vec<&str> = meta
        .envelope
        .recipients
        .iter()
        .map(|r| r.domain.as_str())
        .collect();
    domains.sort_unstable();
    domains.dedup();
    let queue = shared.scheduler.message_queue(id, &domains);
    Ok(Some(live_view(&meta, statuses, queue)))
}

/// `code text`, on one line.
fn reply_text(r: &StoredReply) -> String {
    format!("{} {}", r.code, r.text.replace('\n', " "))
}

/// A recipient whose state the spool's record decides.
fn final_view(address: &str, domain: &str, status: &RecipientStatus) -> RecipientView {
    let (state, attempts, next_attempt, last_reply) = match status {
        RecipientStatus::Scheduled => ("queued", 0, None, None),
        RecipientStatus::Deferred {
            attempts,
            next_due,
            last_reply,
        } => (
            "deferred",
            *attempts as u32,
            Some(rfc3339(*next_due)),
            Some(reply_text(last_reply)),
        ),
        RecipientStatus::Delivered => ("delivered", 0, None, None),
        RecipientStatus::Bounced(r) => ("bounced", 0, None, Some(reply_text(r))),
        RecipientStatus::Expired => ("expired", 0, None, None),
        RecipientStatus::Purged => ("purged", 0, None, None),
    };
    RecipientView {
        recipient: address.to_string(),
        domain: domain.to_string(),
        state,
        attempts,
        next_attempt,
        last_reply,
    }
}

fn count(counts: &mut StateCounts, state: &str) {
    let slot = match state {
        "queued" => &mut counts.queued,
        "deferred" => &mut counts.deferred,
        "in_flight" => &mut counts.in_flight,
        "delivered" => &mut counts.delivered,
        "bounced" => &mut counts.bounced,
        "expired" => &mut counts.expired,
        _ => &mut counts.purged,
    };
    *slot += 1;
}

fn completed_view(done: &CompletedMessage) -> MessageStatus {
    let mut counts = StateCounts::default();
    let recipients: Vec<RecipientView> = done
        .recipients
        .iter()
        .map(|(address, domain, status)| {
            let v = final_view(address, domain, status);
            count(&mut counts, v.state);
            v
        })
        .collect();
    MessageStatus {
        id: done.id.to_string(),
        tenant: done.tenant.as_ref().map(|t| t.0.clone()),
        campaign: done.campaign.as_ref().map(|c| c.0.clone()),
        created: rfc3339(done.created),
        expires: rfc3339(done.expires),
        state: "completed",
        counts,
        recipients,
    }
}

fn live_view(
    meta: &MessageMeta,
    statuses: Vec<Option<RecipientStatus>>,
    queue: Option<MessageQueue>,
) -> MessageStatus {
    let queued: HashMap<u32, QueuedAs> = queue
        .as_ref()
        .map(|q| q.queued.iter().copied().collect())
        .unwrap_or_default();
    let held_by_scheduler = queue.is_some();
    let mut counts = StateCounts::default();
    let mut unfinished = false;
    let recipients: Vec<RecipientView> = meta
        .envelope
        .recipients
        .iter()
        .zip(statuses.into_iter().chain(std::iter::repeat(None)))
        .enumerate()
        .map(|(i, (r, status))| {
            let status = status.unwrap_or(RecipientStatus::Purged);
            let mut v = final_view(&r.address, &r.domain, &status);
            if !status.is_final() {
                unfinished = true;
                // The scheduler knows where it is now; the record, what came before.
                match (held_by_scheduler, queued.get(&(i as u32))) {
                    (true, Some(QueuedAs::Ready | QueuedAs::Held)) => {
                        v.state = "queued";
                        v.next_attempt = None;
                    }
                    (true, Some(QueuedAs::Deferred(due))) => {
                        v.state = "deferred";
                        v.next_attempt.get_or_insert_with(|| rfc3339(*due));
                    }
                    (true, None) => v.state = "in_flight",
                    (false, _) => {}
                }
            }
            count(&mut counts, v.state);
            v
        })
        .collect();
    MessageStatus {
        id: meta.id.to_string(),
        tenant: meta.tenant.as_ref().map(|t| t.0.clone()),
        campaign: meta.campaign.as_ref().map(|c| c.0.clone()),
        created: rfc3339(meta.created),
        expires: rfc3339(meta.expires),
        state: if unfinished { "queued" } else { "completed" },
        counts,
        recipients,
    }
}
