//! One pooled session's life: connect to the site (MX hosts in preference order),
//! then take batches for any domain of the site, send several per
//! [`ClientSession::send`] call (back to back when the server offers PIPELINING and
//! CHUNKING), hand the outcomes to the results thread, until the session has been
//! idle for `idle_timeout`, has run `max_messages_per_connection` transactions, the
//! server drops it, or shutdown begins. Then QUIT.
//!
//! Rate limits (site and domain GCRA) are waited for with a timed sleep in this
//! session's task only: other sessions and sites go on.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::dispatcher::{fail, fail_at};
use super::engine::Shared;
use super::prepare::{build_job, local_reply, BuiltJob, NotSent, Prepared};
use super::results::{Attempt, RcptResult, Settlement, Work};
use super::site::Site;
use super::stats::{bump, drop_by};
use crate::egress::{ClientSession, ConnectInfo, Endpoint, Job, JobOutcome, SendReport, TlsPolicy};
use crate::queue::Batch;
use crate::shaping::ConnectionPermit;
use crate::smtp::reply::Reply;
use crate::smtp::status::EnhancedStatus;
use crate::smtp::transaction::RecipientOutcome;
use crate::spool::SpoolError;

/// Most recipients failed at once when a site turns out to be down.
const MAX_FAIL_BACKLOG: usize = 10_000;
/// Longest pause in opening sessions after one was refused while others run.
const HOLD: Duration = Duration::from_secs(5);

/// Counts a connected session in `site.connected` while it lives.
struct Connected<'a>(&'a Site);

impl<'a> Connected<'a> {
    fn new(site: &'a Site) -> Self {
        site.connected.fetch_add(1, Ordering::AcqRel);
        Connected(site)
    }
}

impl Drop for Connected<'_> {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One session's place in its site's and the engine's counts: counted when made
/// (by the dispatcher, before spawning), uncounted when dropped, however the task
/// ends (including an abort before its first poll).
pub(crate) struct SessionGuard {
    shared: Arc<Shared>,
    site: Arc<Site>,
}

impl SessionGuard {
    /// Counts a new session of `site`.
    pub fn new(shared: &Arc<Shared>, site: &Arc<Site>) -> SessionGuard {
        site.sessions.fetch_add(1, Ordering::AcqRel);
        bump(&shared.counters.sessions, 1);
        SessionGuard {
            shared: shared.clone(),
            site: site.clone(),
        }
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.site.sessions.fetch_sub(1, Ordering::AcqRel);
        drop_by(&self.shared.counters.sessions, 1);
        self.shared.wake.notify_one();
    }
}

/// Runs one session of `site` with its connection `permit`; `guard` counts it.
pub(crate) async fn run(
    shared: Arc<Shared>,
    site: Arc<Site>,
    permit: ConnectionPermit,
    guard: SessionGuard,
) {
    let _guard = guard;
    let mut closing = shared.closing.subscribe();
    if *closing.borrow() {
        return;
    }
    let endpoints = site.endpoints(shared.smtp_port);
    let connected = tokio::select! {
        r = ClientSession::connect_reporting(&endpoints, &site.options) => r,
        _ = closing.wait_for(|c| *c) => return,
    };
    let (mut session, info) = match connected {
        Ok(s) => s,
        Err(failure) => {
            let reply = failure.error.reply();
            shared.shaper.on_smtp_reply(site.id.as_str(), &reply);
            if site.session_count() > 1 {
                // Other sessions are connected or connecting: the site may well be
                // up but refusing more connections now ("421 too many
                // connections"). Hold new sessions back for a while instead of
                // failing its work; the last session to fail decides.
                site.hold_until(Instant::now() + shared.dead_period.min(HOLD));
            } else {
                site_down(&shared, &site, &reply, failure.answered.as_ref());
            }
            return;
        }
    };
    let _connected = Connected::new(&site);
    bump(&shared.counters.connections, 1);
    if !info.skipped.is_empty() {
        // A preferred MX failed and a later one answered: spare the next sessions
        // the wait (a black-holed primary costs a connect timeout each time).
        let until = Instant::now() + shared.dead_period;
        let failed = info.skipped.iter().map(|(e, _)| e.addr);
        site.demote(failed.filter(|a| *a != info.addr), until);
    }
    let caps = session.capabilities();
    let window = if caps.pipelining && caps.chunking {
        site.options.window.max_transactions.max(1)
    } else {
        1
    };
    let limits = site.limits().clone();
    let max_tx = u64::from(limits.max_messages_per_connection.max(1));
    loop {
        if *closing.borrow() {
            break;
        }
        let done = session.transactions();
        if done >= max_tx {
            break;
        }
        let room = window.min((max_tx - done) as usize);
        let Some(batches) = gather(&shared, &site, room, limits.idle_timeout, &mut closing).await
        else {
            break;
        };
        send(&shared, &site, &mut session, &info, batches, &mut closing).await;
        if !session.is_reusable() {
            break;
        }
    }
    session.quit().await;
    drop(permit);
}

/// Waits (up to `idle`) for a first batch, then takes more without waiting, up to
/// `room`. `None` when idle too long or shutting down.
async fn gather(
    shared: &Shared,
    site: &Site,
    room: usize,
    idle: Duration,
    closing: &mut watch::Receiver<bool>,
) -> Option<Vec<Batch>> {
    let deadline = tokio::time::Instant::now() + idle;
    let first = loop {
        let notified = site.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if let Some(b) = site.next_batch(&shared.scheduler) {
            break b;
        }
        site.idle.fetch_add(1, Ordering::AcqRel);
        let woken = tokio::select! {
            _ = &mut notified => true,
            _ = tokio::time::sleep_until(deadline) => false,
            _ = closing.wait_for(|c| *c) => false,
        };
        site.idle.fetch_sub(1, Ordering::AcqRel);
        if !woken {
            return None;
        }
    };
    let mut batches = vec![first];
    while batches.len() < room {
        match site.next_batch(&shared.scheduler) {
            Some(b) => batches.push(b),
            None => break,
        }
    }
    Some(batches)
}

/// A batch on its way: its message and the job built from it.
struct Item {
    batch: Batch,
    prepared: Arc<Prepared>,
    built: BuiltJob,
}

/// Prepares, rate-limits and sends `batches`; hands every outcome on.
async fn send(
    shared: &Arc<Shared>,
    site: &Site,
    session: &mut ClientSession,
    info: &Arc<ConnectInfo>,
    batches: Vec<Batch>,
    closing: &mut watch::Receiver<bool>,
) {
    let loaded = load(shared, batches).await;
    let mut items: Vec<Item> = Vec::with_capacity(loaded.len());
    let mut jobs: Vec<Job> = Vec::with_capacity(loaded.len());
    let mut rest = loaded.into_iter();
    while let Some((batch, prepared)) = rest.next() {
        let prepared = match prepared {
            Ok(p) => p,
            Err(e) => {
                let reply = if e.is_transient() {
                    local_reply(451, EnhancedStatus::new(4, 3, 0), &e.to_string())
                } else {
                    local_reply(554, EnhancedStatus::new(5, 3, 0), &e.to_string())
                };
                fail(shared, batch, &reply, Some(&site.id));
                continue;
            }
        };
        let (max_rcpts, tls) = site.policy(&batch.domain);
        if let Some(reply) = tls_refusal(tls, info) {
            // The domain's own rule wants more TLS than this session has: never
            // send in clear; defer (a later session, or the operator, may fix it).
            fail(shared, batch, &reply, Some(&site.id));
            continue;
        }
        let mut built = build_job(&prepared, &batch, max_rcpts);
        let Some(job) = built.job.take() else {
            settle(
                shared,
                batch,
                &prepared,
                &built,
                None,
                &Arc::new(Attempt::default()),
            );
            continue;
        };
        let n = job.rcpts.len() as u32;
        let go = loop {
            match shared.shaper.try_send(&site.shaper, &batch.domain, n) {
                Ok(()) => break true,
                // Send what may go now; this and the rest wait for the next round.
                Err(_) if !jobs.is_empty() => break false,
                Err(wait) => {
                    let stop = tokio::select! {
                        _ = tokio::time::sleep(wait) => false,
                        _ = closing.wait_for(|c| *c) => true,
                    };
                    if stop {
                        break false;
                    }
                }
            }
        };
        if !go {
            let mut back = vec![batch];
            back.extend(rest.by_ref().map(|(b, _)| b));
            site.unstage(back);
            break;
        }
        jobs.push(job);
        items.push(Item {
            batch,
            prepared,
            built,
        });
    }
    if jobs.is_empty() {
        return;
    }
    let started = Instant::now();
    let report = session.send(&jobs).await;
    let attempt = Arc::new(Attempt {
        site: Some(site.id.clone()),
        mx_host: Some(info.host.clone()),
        mx_ip: Some(info.addr.ip()),
        tls: info.tls.as_ref().map(|t| t.version.clone()),
        elapsed: Some(started.elapsed()),
    });
    adapt(shared, site, &report);
    let collateral = collateral(&report);
    for ((item, mut outcome), collateral) in items.into_iter().zip(report.jobs).zip(collateral) {
        if collateral {
            outcome = JobOutcome::NotSent;
        }
        settle(
            shared,
            item.batch,
            &item.prepared,
            &item.built,
            Some(outcome),
            &attempt,
        );
    }
}

/// Which jobs only went down with the connection: when a session ends in an error
/// (a 421, a drop), every transaction in flight gets the same failure, but only
/// the first of them met it; the ones written behind it were never processed.
/// The first counts an attempt (so a message that makes the server hang up is
/// retried later, not at once); the others go again at once, as if never sent,
/// instead of all waiting for a retry together and meeting the same fate again.
fn collateral(report: &SendReport) -> Vec<bool> {
    let mut out = vec![false; report.jobs.len()];
    let Some(error) = &report.error else {
        return out;
    };
    let fatal = error.reply();
    let is_fatal = |r: &Reply| {
        *r == fatal
            || (r.enhanced == Some(EnhancedStatus::CONNECTION_DROPPED)
                && r.text().starts_with("connection lost"))
    };
    let mut first = true;
    for (j, job) in report.jobs.iter().enumerate() {
        let JobOutcome::Attempted(outcomes) = job else {
            continue;
        };
        let all_fatal = !outcomes.is_empty()
            && outcomes.iter().all(|o| match o {
                RecipientOutcome::Transient(r) => is_fatal(r),
                RecipientOutcome::Delivered(_)
                | RecipientOutcome::Permanent(_)
                | RecipientOutcome::TooManyRecipients(_) => false,
            });
        if all_fatal {
            out[j] = !first;
            first = false;
        }
    }
    out
}

/// Why a domain whose rules require `policy` may not go over a session with
/// `info`'s TLS, if it may not.
fn tls_refusal(policy: Option<TlsPolicy>, info: &ConnectInfo) -> Option<Reply> {
    let ok = match (policy?, &info.tls) {
        (TlsPolicy::Disabled | TlsPolicy::Opportunistic, _) => true,
        (TlsPolicy::Required, tls) => tls.is_some(),
        (TlsPolicy::RequiredVerified, tls) => tls.as_ref().is_some_and(|t| t.verified),
    };
    (!ok).then(|| {
        local_reply(
            451,
            EnhancedStatus::new(4, 7, 10),
            &format!(
                "TLS required for this domain; session with {} is not {}",
                info.host,
                if info.tls.is_some() {
                    "verified"
                } else {
                    "encrypted"
                }
            ),
        )
    })
}

/// Loads the batches' messages (from the cache, or the spool on a blocking thread).
async fn load(
    shared: &Arc<Shared>,
    batches: Vec<Batch>,
) -> Vec<(Batch, Result<Arc<Prepared>, SpoolError>)> {
    let all_cached = batches.iter().all(|b| shared.cache.cached(b.id).is_some());
    if all_cached {
        return batches
            .into_iter()
            .map(|b| {
                let p = shared.cache.get(&*shared.spool, b.id);
                (b, p)
            })
            .collect();
    }
    let s = shared.clone();
    let ids: Vec<_> = batches.iter().map(|b| b.id).collect();
    let loaded = tokio::task::spawn_blocking(move || {
        ids.into_iter()
            .map(|id| s.cache.get(&*s.spool, id))
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    let mut loaded = loaded.into_iter();
    batches
        .into_iter()
        .map(|b| {
            let p = loaded
                .next()
                .unwrap_or_else(|| Err(SpoolError::Read("loader failed".into())));
            (b, p)
        })
        .collect()
}

/// Hands one batch's outcomes to the results thread: the job's (if it ran) for
/// the recipients in it, and the not-sent ones for the others.
fn settle(
    shared: &Shared,
    batch: Batch,
    prepared: &Prepared,
    built: &BuiltJob,
    outcome: Option<JobOutcome>,
    attempt: &Arc<Attempt>,
) {
    let mut results = vec![RcptResult::requeue(); batch.recipients.len()];
    for (i, why) in &built.not_sent {
        if let Some(slot) = results.get_mut(*i) {
            *slot = match why {
                NotSent::Refused(reply) => RcptResult::failed(reply),
                NotSent::OverLimit => RcptResult::requeue(),
            };
        }
    }
    match outcome {
        Some(JobOutcome::Attempted(outcomes)) => {
            // "Too many recipients" for the first RCPT is no limit being reached
            // but a refusal: retrying at once would loop, so it counts as a 4xx.
            let refused_first = matches!(
                outcomes.first(),
                Some(RecipientOutcome::TooManyRecipients(_))
            );
            for (j, &i) in built.sent.iter().enumerate() {
                if let (Some(slot), Some(o)) = (results.get_mut(i), outcomes.get(j)) {
                    *slot = match o {
                        RecipientOutcome::TooManyRecipients(r) if refused_first => {
                            RcptResult::failed(r)
                        }
                        _ => RcptResult::from_outcome(o),
                    };
                }
            }
        }
        // Not written: queue again at once on another connection, no attempt.
        Some(JobOutcome::NotSent) | None => {}
    }
    shared.results(Work::Settle(Settlement {
        batch,
        results,
        meta: Some(prepared.meta.clone()),
        attempt: attempt.clone(),
        wake: true,
    }));
}

/// Feeds the first throttling-looking reply of a send to the adaptive shaper.
fn adapt(shared: &Shared, site: &Site, report: &SendReport) {
    let site_name = site.id.as_str();
    if let Some(e) = &report.error {
        if shared.shaper.on_smtp_reply(site_name, &e.reply()) {
            return;
        }
    }
    for job in &report.jobs {
        let JobOutcome::Attempted(outcomes) = job else {
            continue;
        };
        for o in outcomes {
            if let RecipientOutcome::Transient(r) = o {
                if shared.shaper.on_smtp_reply(site_name, r) {
                    return;
                }
            }
        }
    }
}

/// Every MX of the site failed to connect: mark it down for the dead period and
/// fail its backlog (defer, or bounce for a 5xx refusal) so it is not retried
/// at once.
/// `answered`: the MX that gave `reply`, if one got past the TCP connect (logged).
fn site_down(shared: &Shared, site: &Site, reply: &Reply, answered: Option<&Endpoint>) {
    site.mark_dead(Instant::now() + shared.dead_period, reply.clone());
    for batch in site.take_backlog(&shared.scheduler, MAX_FAIL_BACKLOG) {
        fail_at(shared, batch, reply, Some(&site.id), answered);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::{SendStats, SessionError};
    use crate::smtp::ehlo::Capabilities;
    use crate::smtp::status::ReplyCode;

    fn report(jobs: Vec<JobOutcome>, error: Option<SessionError>) -> SendReport {
        SendReport {
            jobs,
            error,
            stats: SendStats::default(),
            connection: Arc::new(ConnectInfo {
                host: "mx.test".into(),
                addr: "127.0.0.1:25".parse().unwrap(),
                banner: Reply::ok("hi"),
                capabilities: Capabilities::default(),
                tls: None,
                tls_fallback: None,
                skipped: Vec::new(),
            }),
        }
    }

    #[test]
    fn only_the_first_transaction_hit_by_a_421_counts() {
        let r421 = Reply::new(
            ReplyCode::SERVICE_UNAVAILABLE,
            Some(EnhancedStatus::new(4, 4, 2)),
            "closing",
        );
        let busy = Reply::new(ReplyCode::MAILBOX_BUSY, None, "busy");
        let t = |r: &Reply| RecipientOutcome::Transient(r.clone());
        let jobs = vec![
            JobOutcome::Attempted(vec![RecipientOutcome::Delivered(Reply::ok("ok")), t(&busy)]),
            JobOutcome::Attempted(vec![t(&busy)]),
            JobOutcome::Attempted(vec![t(&r421), t(&r421)]),
            JobOutcome::Attempted(vec![t(&r421)]),
            JobOutcome::NotSent,
        ];
        let error = SessionError::Rejected {
            phase: "during a transaction",
            reply: r421.clone(),
        };
        assert_eq!(
            collateral(&report(jobs.clone(), Some(error))),
            [false, false, false, true, false]
        );
        assert_eq!(collateral(&report(jobs, None)), [false; 5]);
    }

    #[test]
    fn domain_tls_rules_refuse_weaker_sessions() {
        let plain = report(Vec::new(), None).connection;
        let mut tls = (*plain).clone();
        tls.tls = Some(crate::egress::TlsInfo {
            version: "TLSv1_3".into(),
            cipher: "x".into(),
            verified: false,
        });
        assert!(tls_refusal(None, &plain).is_none());
        assert!(tls_refusal(Some(TlsPolicy::Opportunistic), &plain).is_none());
        let refused = tls_refusal(Some(TlsPolicy::Required), &plain).unwrap();
        assert_eq!(refused.enhanced, Some(EnhancedStatus::new(4, 7, 10)));
        assert!(tls_refusal(Some(TlsPolicy::Required), &tls).is_none());
        assert!(tls_refusal(Some(TlsPolicy::RequiredVerified), &tls).is_some());
    }
}
